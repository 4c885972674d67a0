"""DiCo, Diversity Control (Bettini et al., ICML 2024), as the architecture `--arch dico`.

Every agent's actor output is a shared (homogeneous) network's output plus its own (heterogeneous)
network's output rescaled so that the team's diversity sits at a target:

    π_i(o) = π_h(o) + SND_des / SND(π_h,1 .. π_h,n) · π_h,i(o)

SND of the heterogeneous components is Bettini et al.'s System Neural Diversity with the
2-Wasserstein distance on outputs alone (`harl.metrics.diversity.wasserstein_gaussian` at equal
stds): the mean over agent pairs i < j and observations o of ‖π_h,i(o) - π_h,j(o)‖₂, where, as in the
authors' code, every agent's heterogeneous network reads every observation of the batch (each agent's
network evaluated on the other agents' observations too), so only the networks differ. It is measured,
without gradient, on every batch the actor is called on (rollout steps, training minibatches, evaluation),
so the rescaled policies' SND on that batch is SND_des.

What it rescales, per actor (the architecture sees network outputs only):

- Gaussian actors (the on-policy learners): the means, as in the paper; the log-std is the shared
  state-independent one (`build_agent_param`), the authors' "std from the shared part", not rescaled;
- deterministic actors (DDPG/TD3): the pre-tanh actions, as the authors' IDDPG/MADDPG runs do;
- categorical actors: the logits (the authors' code rescales any output that is not a Gaussian's
  location); the held quantity is then the L2 distance between logits, not a distance between action
  distributions (softmax ignores a shared shift of the logits), so discrete diversity is controlled only
  approximately;
- squashed-Gaussian (SAC) actors: their one network outputs means and log-stds side by side, so both are
  rescaled and the L2 distance spans both (beyond the paper, whose stds come from the shared part).

Critics are per-agent networks (NoPS), the authors' `share_param_critic: False`. `target_diversity 0`
gives every agent the shared network's output (the per-agent networks are never consulted), `-1` the
unscaled sum (the authors' "unconstrained" setting, the seed paper's table 10 best at 4 and 8 agents).

A population of seeds (`--seeds N`, `DiCoNet.population`) stacks the members' networks and measures each seed's
SND on its own agents and observations only, so every seed is its solo run.

Not reproduced: the authors' soft-updated estimate of SND (τ = 0.01, read when acting) -- here it is
measured on every batch, the paper's equation; their state-dependent std and tanh squash of the shared
mean into the action range (`process_shared`), TanhNormal policies and action-range loss. Sequential
(HA) learners evaluate one agent at a time on its own observations, so their SND is measured on that
agent's observations only, not the team's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from harl.config import EmptyConfig, bounded, check_bounds
from harl.errors import ConfigError, shown
from harl.metrics.diversity import wasserstein_gaussian
from harl.models.agent_mlp import AgentMLP, AgentParam, SharedParams, StackedParams
from harl.models.net_spec import NetSpec
from harl.models.population import population_network
from harl.registry import ArchEntry, get_architecture, register_architecture

UNCONSTRAINED = -1.0
"""`target_diversity` of the unscaled sum (the authors' SND_des = -1)."""


@dataclass
class DiCoConfig:
    """Options of `dico`."""

    target_diversity: float = bounded(1.2, ge=-1, note="-1: unconstrained, no rescaling")
    """SND_des, the team's diversity: the mean 2-Wasserstein (L2) distance between agents' heterogeneous outputs
    after rescaling; 0 = identical agents (the shared network), -1 = the unscaled sum (the authors' unconstrained
    setting). Default: the DiCo paper's Navigation value for 2 agents with different goals."""

    def validate(self) -> None:
        check_bounds(self, "arch")
        if UNCONSTRAINED < self.target_diversity < 0:
            raise ConfigError(
                f"arch.target_diversity must be >= 0, or -1 (unconstrained); got {shown(self.target_diversity)}"
            )


class DiCoNet(nn.Module):
    """An actor network of `dico`: a shared `AgentMLP` plus per-agent `AgentMLP`s rescaled to a target SND.

    Args:
        shared: the homogeneous network (FuPS).
        hetero: the heterogeneous networks (NoPS), with the same layer sizes.
        target_diversity: SND_des (0: homogeneous; -1: unscaled).
    """

    def __init__(self, shared: AgentMLP, hetero: AgentMLP, target_diversity: float) -> None:
        super().__init__()
        self.shared = shared
        self.hetero = hetero
        self.n_agents = hetero.n_agents  # a population's: every seed's agents (P·n)
        self.seeds = 1
        self.target_diversity = target_diversity
        self.last_snd: torch.Tensor | None = None  # SND of the heterogeneous outputs on the last batch, 0-dim
        self._members: list[DiCoNet] = []  # a population's solo networks, one per seed (not submodules)

    @classmethod
    def population(cls, members: Sequence[DiCoNet]) -> DiCoNet:
        """One network of P members (one per seed, each built alone under its seed) for their P·n virtual agents:
        shared and per-agent networks stacked, each seed's SND measured on its own agents and observations and
        its scale applied to them only. Each member's `last_snd` is its seed's, as its solo run's would be."""
        net = cls(population_network([m.shared for m in members]), population_network([m.hetero for m in members]), 0.0)
        net.target_diversity, net.seeds, net._members = members[0].target_diversity, len(members), list(members)
        return net

    def forward(self, x: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, k, in_dim) for the k selected agents (all when `agents` is None; a population's: k/P per seed,
        seed-major) -> (B, k, out_dim)."""
        shared = self.shared(x, agents)  # (B, k, out)
        if self.target_diversity == 0:
            return shared
        hetero = self.hetero(x, agents)  # (B, k, out)
        if self.target_diversity == UNCONSTRAINED or self.n_agents == self.seeds:  # one agent per seed
            return shared + hetero
        snd = self.measure(x)  # (P,)
        scale = torch.where(snd > 0, self.target_diversity / snd, 1.0).to(hetero.dtype)  # identical: no change
        per_agent = scale.repeat_interleave(x.shape[1] // self.seeds).unsqueeze(-1)  # (k, 1): each seed's own
        return torch.addcmul(shared, hetero, per_agent)

    @torch.no_grad()
    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """SND (P,) (float64, one per seed) of the heterogeneous outputs on the observations x (B, k, in_dim): every
        agent's network on every one of its seed's B·k/P observations, mean L2 distance over agent pairs and
        observations."""
        seeds, n = self.seeds, self.n_agents // self.seeds
        per_seed = x.unflatten(1, (seeds, -1)).transpose(0, 1).reshape(seeds, -1, x.shape[-1])  # (P, B·k/P, in)
        every = per_seed.transpose(0, 1).unsqueeze(2).expand(-1, -1, n, -1)  # (B·k/P, P, n, in): seen by all
        out = self.hetero(every.flatten(1, 2)).unflatten(1, (seeds, n))  # (B·k/P, P, n, out)
        i, j = torch.triu_indices(n, n, offset=1, device=x.device)
        zero, mask = out.new_zeros(()), out.new_ones(out.shape[-1])
        distances = wasserstein_gaussian(out[:, :, i], zero, out[:, :, j], zero, mask)  # (B·k/P, P, pairs)
        snd = distances.transpose(0, 1).flatten(1).mean(1)  # (P,); equal stds: ‖μ_i - μ_j‖₂
        self.last_snd = snd
        for member, own in zip(self._members, snd, strict=False):
            member.last_snd = own
        return snd

    def diagnostics(self) -> dict[str, float]:
        """The unscaled SND on the last batch and the scale it gave (once a batch was measured)."""
        if self.last_snd is None:
            return {}
        snd = float(self.last_snd.reshape(-1)[0])  # a population's members report their own seeds'
        scale = self.target_diversity / snd if snd > 0 else 1.0
        return {"diversity/dico_hetero_snd": snd, "diversity/dico_scale": scale}


def build_dico_net(*, spec: NetSpec, arch_cfg: DiCoConfig) -> nn.Module:
    """Actors: a `DiCoNet` (a shared and a per-agent network of the spec's sizes); critics: NoPS."""
    if spec.role != "actor":
        return get_architecture("nops").build_net(spec=spec, arch_cfg=EmptyConfig())
    dims, gains = spec.layers()
    shared = spec.mlp(SharedParams(dims, gains))
    hetero = spec.mlp(StackedParams(spec.n_agents, dims, gains))
    return DiCoNet(shared, hetero, arch_cfg.target_diversity)


def build_dico_agent_param(
    *, n_agents: int, width: int, init_value: float, role: str, arch_cfg: DiCoConfig
) -> AgentParam:
    """The actor's log-std is shared (the homogeneous part's, not rescaled); other roles' are per agent."""
    return AgentParam(n_agents, width, init_value, per_agent=role != "actor")


register_architecture(
    ArchEntry(
        name="dico",
        config_cls=DiCoConfig,
        build_net=build_dico_net,
        build_agent_param=build_dico_agent_param,
        shares_parameters=True,
        description="DiCo: shared network + per-agent networks rescaled to a target SND (--target_diversity)",
    )
)
