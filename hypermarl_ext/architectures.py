"""The builders behind `--arch hypermarl`, `hypermarl_linear` and `hypermarl_coupled`.

Learners build every actor and per-agent critic through `build_net(spec=NetSpec(..., role=...), ...)` and
every state-independent parameter (Gaussian log-std) through `build_agent_param(..., role=...)`, so these
architectures work with every learner:

- A role listed in `arch.generate` ("actor", "critic" or "both") gets a network whose layers are
  generated per agent by its own hypernetwork (actor and critic never share one); the other role gets
  the paper's baseline, a shared network with a one-hot agent id appended to its input (FuPS+ID).
- A learner whose critic is one joint network not built through the architecture (the off-policy
  learners' centralised Q(s, a_1..a_N) in `harl.models.off_policy.JointQCritic`) keeps that plain
  shared critic: a hypernetwork conditioned on a single context would only reparameterise one network,
  so for such a critic HyperMARL is a no-op by construction. Per-agent critics built with
  role "critic" (the on-policy V_i(s) heads) are generated per agent.
- Log-stds of generated actors are per agent (owned rows, like the embeddings, so sequential HA
  updates move only the updated agent's row); those of FuPS+ID actors are shared.
- Recurrent networks (`model.recurrent`): harl keeps the observation encoder and GRU shared (the
  entries' default `recurrent_core`) and builds the feed-forward head after the GRU with `build_net`,
  so the hypernetwork generates those layers only, as in the paper's recurrent variant.

Heterogeneous agents need nothing special: `build_net` receives the largest input and output sizes and
each agent's input mask, every agent's layers are generated at those sizes, the input is masked (or
normalised over the agent's own entries only) before the first layer, so an agent's output never
depends on padded entries, and the policies mask padded action dimensions out of every distribution.
"""

from __future__ import annotations

from torch import nn

from harl.config import EmptyConfig
from harl.errors import UserError
from harl.models.agent_mlp import AgentParam
from harl.models.net_spec import NetSpec
from harl.registry import AlgoEntry, get_architecture
from hypermarl_ext.config import CoupledHyperConfig, HyperMARLConfig, LinearHyperConfig
from hypermarl_ext.coupled import CoupledHyperMLP
from hypermarl_ext.hypernet import LinearHyperParams, MLPHyperParams, MLPHyperPopulation

ROLES = ("actor", "critic")


def generates(role: str, arch_cfg: HyperMARLConfig | LinearHyperConfig) -> bool:
    """Whether the architecture generates the networks of `role` ("actor" or "critic")."""
    if role not in ROLES:
        raise ValueError(f"unknown network role {role!r}; expected one of {ROLES}")
    return arch_cfg.generate in (role, "both")


def shared_with_id(spec: NetSpec) -> nn.Module:
    """The network of a role that is not generated: FuPS with a one-hot agent id (the paper's baseline),
    built by the registered `fups_id` architecture."""
    return get_architecture("fups_id").build_net(spec=spec, arch_cfg=EmptyConfig())


def build_hypermarl_net(*, spec: NetSpec, arch_cfg: HyperMARLConfig) -> nn.Module:
    """`hypermarl`: an `AgentMLP` whose layers MLP hypernetworks generate from agent embeddings."""
    if not generates(spec.role, arch_cfg):
        return shared_with_id(spec)
    dims, gains = spec.layers()
    params = MLPHyperParams(
        spec.n_agents,
        dims,
        gains,
        arch_cfg.embedding_dim,
        arch_cfg.hypernet_hidden_dims,
        arch_cfg.hypernet_init,
        arch_cfg.embedding,
        spec.role,
        trunk=arch_cfg.trunk,
        embedding_gain=arch_cfg.embedding_gain,
    )
    return spec.mlp(params)


def build_linear_net(*, spec: NetSpec, arch_cfg: LinearHyperConfig) -> nn.Module:
    """`hypermarl_linear`: an `AgentMLP` whose layers are θ_i = 1_i·W + b."""
    if not generates(spec.role, arch_cfg):
        return shared_with_id(spec)
    dims, gains = spec.layers()
    params = LinearHyperParams(spec.n_agents, dims, gains, arch_cfg.shared_bias, arch_cfg.hypernet_init, spec.role)
    return spec.mlp(params)


def build_coupled_net(*, spec: NetSpec, arch_cfg: CoupledHyperConfig) -> nn.Module:
    """`hypermarl_coupled`: the hypernetwork reads [agent embedding, observation] (no gradient decoupling)."""
    if not generates(spec.role, arch_cfg):
        return shared_with_id(spec)
    dims, gains = spec.layers()
    model = spec.model
    return CoupledHyperMLP(
        spec.n_agents,
        dims,
        gains,
        spec.in_mask,
        model.activation,
        model.layer_norm,
        model.feature_norm,
        arch_cfg.embedding_dim,
        arch_cfg.hypernet_hidden_dims,
        arch_cfg.hypernet_init,
        arch_cfg.embedding,
        spec.role,
        arch_cfg.embedding_gain,
    )


def generated_params(network: nn.Module) -> MLPHyperParams | MLPHyperPopulation:
    """The one MLP hypernetwork inside an actor's or critic's network (feed-forward or recurrent head), or the
    population of them inside a population's network (`--seeds`)."""
    found = [m for m in network.modules() if isinstance(m, (MLPHyperParams, MLPHyperPopulation))]
    if len(found) != 1:
        raise ValueError(f"expected one MLP hypernetwork in {type(network).__name__}, found {len(found)}")
    return found[0]


def link_hypermarl_networks(actor: nn.Module, critic: nn.Module, arch_cfg: HyperMARLConfig) -> None:
    """`share_embedding`: the critic's hypernetwork reads the actor's embedding (owned by the actor's optimiser).

    Learners call this after building both networks and before making their optimisers.
    """
    if arch_cfg.share_embedding:
        if not any(isinstance(m, (MLPHyperParams, MLPHyperPopulation)) for m in critic.modules()):
            raise UserError(
                "arch.share_embedding needs a critic generated per agent, and --critic shared builds one plain V(s); "
                "set --share_embedding false or --critic per_agent"
            )
        reader, owner = generated_params(critic), generated_params(actor)
        if isinstance(reader, MLPHyperPopulation) and isinstance(owner, MLPHyperPopulation):
            reader.read_embedding_of(owner)
        elif isinstance(reader, MLPHyperParams) and isinstance(owner, MLPHyperParams):
            reader.read_embedding_of(owner)
        else:
            raise ValueError("share_embedding links a solo actor to a solo critic, or a population to a population")


def supports_hypermarl(algo: AlgoEntry, arch_cfg: HyperMARLConfig) -> str | None:
    """`share_embedding` needs a critic the architecture generates per agent (the on-policy learners')."""
    if arch_cfg.share_embedding and not algo.on_policy:
        return (
            "arch.share_embedding needs a critic generated per agent, and its critic is one joint Q network; "
            "set --share_embedding false"
        )
    return None


def build_agent_param(
    *, n_agents: int, width: int, init_value: float, role: str, arch_cfg: HyperMARLConfig | LinearHyperConfig
) -> AgentParam:
    """Per-agent state-independent parameters for generated roles, shared ones for FuPS+ID roles."""
    return AgentParam(n_agents, width, init_value, per_agent=generates(role, arch_cfg))
