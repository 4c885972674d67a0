"""The built-in architectures: NoPS, FuPS and FuPS+ID.

Each registers an `ArchEntry` whose `build_net` returns an `AgentMLP` serving all agents and
whose `build_agent_param` returns per-agent or shared state-independent parameters. Recurrent
networks (`harl.models.recurrent`) have a per-agent encoder and GRU under `nops` and shared ones
under `fups` and `fups_id` (whose agent id enters the head after the GRU). Learners
only ever see these two builders, so a new architecture (e.g. `hypermarl_ext`) plugs in the
same way and works with every learner.
"""

from __future__ import annotations

from harl.config import EmptyConfig
from harl.models.agent_mlp import AgentMLP, AgentParam, SharedParams, StackedParams
from harl.models.net_spec import NetSpec
from harl.registry import ArchEntry, register_architecture


def _build(per_agent: bool, append_id: bool):
    def build_net(*, spec: NetSpec, arch_cfg: EmptyConfig) -> AgentMLP:
        dims, gains = spec.layers(extra_inputs=spec.n_agents if append_id else 0)
        params = StackedParams(spec.n_agents, dims, gains) if per_agent else SharedParams(dims, gains)
        return spec.mlp(params, append_id)

    def build_agent_param(
        *, n_agents: int, width: int, init_value: float, role: str, arch_cfg: EmptyConfig
    ) -> AgentParam:
        return AgentParam(n_agents, width, init_value, per_agent=per_agent)

    return build_net, build_agent_param


_nops = _build(per_agent=True, append_id=False)
_fups = _build(per_agent=False, append_id=False)
_fups_id = _build(per_agent=False, append_id=True)

register_architecture(
    ArchEntry(
        name="nops",
        config_cls=EmptyConfig,
        build_net=_nops[0],
        build_agent_param=_nops[1],
        shares_parameters=False,
        recurrent_core="per_agent",
        description="no parameter sharing: independent networks per agent (stacked weights, one bmm per layer)",
    )
)
register_architecture(
    ArchEntry(
        name="fups",
        config_cls=EmptyConfig,
        build_net=_fups[0],
        build_agent_param=_fups[1],
        shares_parameters=True,
        description="full parameter sharing: one network for all agents, no agent id",
    )
)
register_architecture(
    ArchEntry(
        name="fups_id",
        config_cls=EmptyConfig,
        build_net=_fups_id[0],
        build_agent_param=_fups_id[1],
        shares_parameters=True,
        description="full parameter sharing with a one-hot agent id appended to the input",
    )
)
