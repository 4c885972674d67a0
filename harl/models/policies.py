"""Actors and on-policy critics built from any registered architecture.

Every actor serves all agents at once. Observations are (B, k, obs_dim_max) for k agents (all by
default, or those selected by `agents`), actions (B, k, action_shape). Each agent's distribution
covers only its own action dimensions (continuous) or its own actions (discrete): padded entries
are masked out of log-probabilities and entropies, and never sampled. Recurrent actors and critics
(`model.recurrent`, see `harl.models.recurrent`) act one step at a time from hidden states and are
evaluated on sequences (L, B, k, ·).
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from harl.config import EmptyConfig, ModelConfig
from harl.errors import UserError
from harl.models.auxiliary import ArchitectureHooks
from harl.models.distributions import CategoricalPolicies, GaussianPolicies, PolicyDistribution
from harl.models.net_spec import NetSpec
from harl.models.population import NoiseSource, population_agent_param, population_net
from harl.models.recurrent import build_agent_net
from harl.registry import ArchEntry, get_architecture
from harl.spec import EnvSpec
from harl.utils.finite import sampleable_probs

LOG_2PI = math.log(2 * math.pi)


def actor_net_spec(spec: EnvSpec, out_dim: int, model_cfg: ModelConfig) -> NetSpec:
    """The actor network of an env layout: every agent's own observation entries in, `out_dim` outputs."""
    return NetSpec(
        n_agents=spec.n_agents,
        in_dim=spec.obs_dim_max,
        out_dim=out_dim,
        hidden_sizes=tuple(model_cfg.hidden_sizes),
        out_gain=model_cfg.gain,
        in_mask=torch.as_tensor(spec.obs_mask),
        role="actor",
        model=model_cfg,
    )


@dataclass(frozen=True)
class Exploration:
    """How an actor acts in the envs (`Actor.act`): one description for every kind of policy, each reading the
    field it has a use for.

    Attributes:
        sample: stochastic policies draw their actions (False: each policy's mode).
        noise_std: deterministic policies add clipped Gaussian noise of this standard deviation (normalised units).
        epsilon: greedy policies take a uniform available action with this probability (one draw per agent and
            env).
    """

    sample: bool = False
    noise_std: float = 0.0
    epsilon: float = 0.0


GREEDY = Exploration()
"""No exploration: modes, noise-free and greedy actions (deterministic evaluation)."""
SAMPLE = Exploration(sample=True)
"""Stochastic policies' exploration: actions drawn from the policies."""


class Actor(nn.Module, ArchitectureHooks, ABC):
    """What every actor is: the spec's masks and bounds as buffers, where its random draws come from (`noise`:
    torch's global RNG, or a population's per-seed streams), the architecture's hooks (auxiliary loss, maintenance
    schedule: `harl.models.auxiliary`), and one way to act in the envs (`act`)."""

    net: nn.Module

    def __init__(self, spec: EnvSpec) -> None:
        super().__init__()
        self.n_agents = spec.n_agents
        self.noise = NoiseSource()
        self.register_buffer("act_mask", torch.as_tensor(spec.act_mask, dtype=torch.float32))  # (N, A)
        self.register_buffer("act_low", torch.as_tensor(spec.act_low, dtype=torch.float32))  # (N, A)
        self.register_buffer("act_high", torch.as_tensor(spec.act_high, dtype=torch.float32))  # (N, A)

    @abstractmethod
    def act(
        self, obs: torch.Tensor, avail: torch.Tensor | None, exploration: Exploration
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feed-forward: every agent's action (B, N, ·) on obs (B, N, O) (`avail`: discrete policies' masks
        (B, N, A)), exploring as `exploration` says, and its log-prob (B, N) where the policy has one (None:
        deterministic and greedy policies)."""

    @classmethod
    def population(cls, members: Sequence[Self], rngs: Sequence[torch.Generator]) -> Self:
        """One actor of P members (one per seed, each built alone under its seed) for their P·n virtual agents,
        seed-major (see `harl.models.population`), seed s drawing its actions' randomness from `rngs[s]`."""
        actor = copy.deepcopy(members[0])
        actor._tile(len(members))
        actor.net = population_net([m.net for m in members])
        actor.noise = NoiseSource(rngs)
        return actor

    def _tile(self, seeds: int) -> None:
        """Serve `seeds` copies of its agents as virtual agents, seed-major (a population's masks and bounds)."""
        self.n_agents *= seeds
        for name in ("act_mask", "act_low", "act_high"):
            setattr(self, name, getattr(self, name).repeat(seeds, 1))

    def _rows(self, buffer: torch.Tensor, agents: torch.Tensor | None) -> torch.Tensor:
        return buffer if agents is None else buffer[agents]

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the environment takes them (within bounds, padded dims zero)."""
        return actions


class OnPolicyActor(Actor, ABC):
    """A stochastic policy of all agents on the architecture's network (MAPPO/HAPPO).

    Feed-forward actors take one observation per agent (`act`, `evaluate`); recurrent ones
    (`model.recurrent`) take a hidden state per agent and sequences (`act_step`, `sequence_log_probs_entropy`).
    Subclasses define their distribution on the network's outputs (`_sample`, `_log_probs_entropy`).
    """

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        self.recurrent = model_cfg.recurrent
        self.net = build_agent_net(arch, actor_net_spec(spec, spec.act_dim_max, model_cfg), arch_cfg)

    @abstractmethod
    def _sample(
        self, out: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions (..., N, action_shape) and log-probs (..., N) of every agent from network outputs (..., N, A),
        drawn from `noise` (the global RNG, or one stream per seed of a population: its agents in equal blocks)."""

    @abstractmethod
    def _log_probs_entropy(
        self, out: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (..., k) of `actions` under the distributions of network outputs (..., k, A)."""

    @abstractmethod
    def _distribution(self, obs: torch.Tensor, avail: torch.Tensor | None) -> PolicyDistribution:
        """Feed-forward: every agent's distribution on obs (B, N, O)."""

    @abstractmethod
    def _policy_params(
        self, out: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> torch.Tensor:
        """What determines the selected agents' distributions, (..., k, D), from network outputs (..., k, A)."""

    @abstractmethod
    def kl(self, old: torch.Tensor, new: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """KL(old ‖ new) (..., k) between two sets of the selected agents' distributions, each given by the
        parameters (..., k, D) `policy_terms` returns, over each agent's own action dimensions or actions."""

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> PolicyDistribution:
        """Every agent's action distribution on obs (B, N, O), for metrics (feed-forward actors only)."""
        if self.recurrent:
            raise UserError("SND scores policies on single observations; recurrent policies depend on their history")
        return self._distribution(obs, avail)

    def act(
        self, obs: torch.Tensor, avail: torch.Tensor | None, exploration: Exploration
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed-forward: sample (`exploration.sample`) or take the mode of every agent's policy on obs (B, N, O).

        Returns actions (B, N, action_shape) and log-probs (B, N).
        """
        return self._sample(self.net(obs, None), avail, not exploration.sample)

    def log_probs_entropy(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        avail: torch.Tensor | None = None,
        agents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed-forward: log-probs and entropies (B, k) of `actions` (B, k, action_shape) under the current policy."""
        return self._log_probs_entropy(self.net(obs, agents), actions, avail, agents)

    def policy_terms(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        avail: torch.Tensor | None = None,
        agents: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (L, B, k) of `actions` and the parameters (L, B, k, D) of the selected agents'
        distributions (what `kl` compares) along sequences of obs (L, B, k, O), from one network pass: recurrent
        from hidden states (B, k, H) with `resets` (see `sequence_log_probs_entropy`), or feed-forward step by step."""
        return self.policy_of(self.outputs(obs, agents, hidden, resets), actions, avail, agents)

    def outputs(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network's outputs (L, B, k, A) along sequences of obs (L, B, k, O) (see `policy_terms`)."""
        if self.recurrent:
            return self.net(obs, hidden, resets, agents)[0]
        return self.net(obs.flatten(0, 1), agents).unflatten(0, obs.shape[:2])  # (L, B, k, A)

    def policy_of(
        self, out: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`policy_terms` from the network's outputs (..., k, A): log-probs and entropies (..., k) of `actions`
        and the distributions' parameters (..., k, D)."""
        log_probs, entropy = self._log_probs_entropy(out, actions, avail, agents)
        return log_probs, entropy, self.policy_params(out, avail, agents)

    def policy_params(self, out: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None) -> torch.Tensor:
        """What determines the selected agents' distributions, (..., k, D), from network outputs (..., k, A)
        (what `kl` compares)."""
        return self._policy_params(out, avail, agents)

    def act_step(
        self,
        obs: torch.Tensor,
        hidden: torch.Tensor,
        avail: torch.Tensor | None,
        exploration: Exploration,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Recurrent: one step of every agent's policy from hidden states (B, N, H) on obs (B, N, O), sampled
        (`exploration.sample`) or each policy's mode.

        Returns actions (B, N, action_shape), log-probs (B, N) and the next hidden states (B, N, H).
        """
        out, hidden = self.net(obs.unsqueeze(0), hidden)  # (1, B, N, A), (B, N, H)
        actions, log_probs = self._sample(out[0], avail, not exploration.sample)
        return actions, log_probs, hidden

    def sequence_log_probs_entropy(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        hidden: torch.Tensor,
        resets: torch.Tensor | None,
        avail: torch.Tensor | None = None,
        agents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent: log-probs and entropies (L, B, k) of `actions` (L, B, k, action_shape) along sequences.

        Args:
            obs: (L, B, k, O) observations of the k selected agents (all when `agents` is None).
            actions: (L, B, k, action_shape) actions taken.
            hidden: (B, k, H) hidden states before the first step.
            resets: (L, B) 1.0 where an episode starts (the hidden state is zeroed before the step), a population's
                (L, B, P) per seed, or None.
            avail: (L, B, k, A) available actions, or None.
            agents: the selected agents.
        """
        out, _ = self.net(obs, hidden, resets, agents)  # (L, B, k, A)
        return self._log_probs_entropy(out, actions, avail, agents)


class GaussianActor(OnPolicyActor):
    """Diagonal Gaussian with a state-independent learned log-std (PPO-style, unbounded samples)."""

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec, arch, model_cfg, arch_cfg)
        self.log_std = arch.build_agent_param(
            n_agents=spec.n_agents,
            width=spec.act_dim_max,
            init_value=math.log(model_cfg.std_init),
            role="actor",
            arch_cfg=arch_cfg,
        )

    @classmethod
    def population(cls, members: Sequence[Self], rngs: Sequence[torch.Generator]) -> Self:
        actor = super().population(members, rngs)
        actor.log_std = population_agent_param([m.log_std for m in members if isinstance(m, GaussianActor)])
        return actor

    def _params(self, obs: torch.Tensor, agents: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed-forward: means and log-stds (B, k, A) on obs (B, k, O)."""
        mean = self.net(obs, agents)  # (B, k, A)
        return mean, self.log_std(agents).expand_as(mean)

    def _distribution(self, obs: torch.Tensor, avail: torch.Tensor | None) -> GaussianPolicies:
        return GaussianPolicies(*self._params(obs, None), self.act_mask)

    def _sample(
        self, mean: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = self.log_std(None)  # (N, A)
        # log N(mean + std * noise; mean, std) = -noise^2 / 2 - log_std - log(2 pi) / 2, over each agent's own dims
        log_norm = ((log_std + 0.5 * LOG_2PI) * self.act_mask).sum(-1)  # (N,)
        if deterministic:
            return mean * self.act_mask, (-log_norm).expand(mean.shape[:-1])
        noise = self.noise.randn_like(mean)  # (..., N, A)
        actions = torch.addcmul(mean, log_std.exp(), noise) * self.act_mask
        return actions, (noise.square() * self.act_mask).sum(-1).mul(-0.5) - log_norm

    def _log_probs_entropy(
        self, mean: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = self.log_std(agents).expand_as(mean)  # (..., k, A)
        mask = self._rows(self.act_mask, agents)
        entropy = ((0.5 + 0.5 * LOG_2PI + log_std) * mask).sum(-1)
        return self._log_prob(actions, mean, log_std, mask), entropy

    def _policy_params(
        self, mean: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> torch.Tensor:
        """Means and log-stds side by side, (..., k, 2A)."""
        return torch.cat([mean, self.log_std(agents).expand_as(mean)], dim=-1)

    def kl(self, old: torch.Tensor, new: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        mean_old, log_std_old = old.chunk(2, dim=-1)
        mean_new, log_std_new = new.chunk(2, dim=-1)
        var_ratio = torch.exp(2 * (log_std_old - log_std_new))  # σ_old² / σ_new²
        shift = ((mean_old - mean_new) * torch.exp(-log_std_new)).square()
        per_dim = 0.5 * (var_ratio + shift - 1) + log_std_new - log_std_old
        return (per_dim * self._rows(self.act_mask, agents)).sum(-1)

    @staticmethod
    def _log_prob(actions, mean, log_std, mask) -> torch.Tensor:
        z = (actions - mean) * torch.exp(-log_std)
        return ((-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI) * mask).sum(-1)

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.act_high), self.act_low) * self.act_mask


class CategoricalActor(OnPolicyActor):
    """Categorical policy over each agent's own actions, respecting available-action masks."""

    def _log_probs_all(
        self, logits: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> torch.Tensor:
        """Log-probabilities (..., k, A) of logits (..., k, A), with padded and unavailable actions masked out."""
        valid = self._rows(self.act_mask, agents).bool().expand_as(logits)
        if avail is not None:
            valid = valid & avail.bool()
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        return F.log_softmax(logits, dim=-1)

    def _sample(
        self, logits: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions (..., N, 1) int64 and their log-probs (..., N)."""
        log_p = self._log_probs_all(logits, avail, None)
        if deterministic:
            actions = log_p.argmax(-1, keepdim=True)
        else:  # invalid rows are replaced on the device and reported once per update
            actions = self.noise.multinomial(sampleable_probs(log_p.exp()))
        return actions, log_p.gather(-1, actions).squeeze(-1)

    def _log_probs_entropy(
        self, logits: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = self._log_probs_all(logits, avail, agents)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_p.gather(-1, actions.long()).squeeze(-1), entropy

    def _distribution(self, obs: torch.Tensor, avail: torch.Tensor | None) -> CategoricalPolicies:
        return CategoricalPolicies(self._log_probs_all(self.net(obs, None), avail, None).exp())  # (B, N, A)

    def _policy_params(
        self, logits: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> torch.Tensor:
        """Log-probabilities of every action, (..., k, A) (padded and unavailable ones at the float minimum)."""
        return self._log_probs_all(logits, avail, agents)

    def kl(self, old: torch.Tensor, new: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        return (old.exp() * (old - new)).sum(-1)  # masked actions: probability 0 under both


class AgentValueCritic(nn.Module, ArchitectureHooks):
    """Per-agent value heads V_i, built by the architecture: on the centralised state (MAPPO, HAPPO) or, with
    `centralised=False`, each on its own agent's observation only (IPPO's decentralised critics). Recurrent
    with `model.recurrent`: each agent's value then depends on the history of its inputs through a GRU.

    With `shared=True` (a centralised critic only) it is HARL's critic instead: one V(s) network for all agents
    (FuPS without an id: a plain MLP, or GRU network, whatever the architecture), evaluated once per state, its
    value every agent's.

    Its inputs (`inputs(obs, state)`): states (B, S) when centralised, observations (B, N, O) otherwise.
    """

    def __init__(
        self,
        spec: EnvSpec,
        arch: ArchEntry,
        model_cfg: ModelConfig,
        arch_cfg,
        *,
        centralised: bool = True,
        shared: bool = False,
    ) -> None:
        super().__init__()
        self.n_agents = spec.n_agents
        self.recurrent = model_cfg.recurrent
        self.centralised = centralised
        self.shared = shared
        sizes = {"hidden_sizes": tuple(model_cfg.critic_sizes), "out_gain": 1.0, "role": "critic", "model": model_cfg}
        if shared:  # one value head: the plain shared network of `fups` on the state
            if not centralised:
                raise ValueError("a shared V(s) reads the global state: it needs a centralised critic")
            net_spec = NetSpec.full_input(n_agents=1, in_dim=spec.state_dim, out_dim=1, **sizes)
            arch, arch_cfg = get_architecture("fups"), EmptyConfig()
        elif centralised:
            net_spec = NetSpec.full_input(n_agents=spec.n_agents, in_dim=spec.state_dim, out_dim=1, **sizes)
        else:
            in_mask = torch.as_tensor(spec.obs_mask)
            net_spec = NetSpec(n_agents=spec.n_agents, in_dim=spec.obs_dim_max, out_dim=1, in_mask=in_mask, **sizes)
        self.net = build_agent_net(arch, net_spec, arch_cfg, shared_input=centralised)
        self.seeds = 1  # the seeds of a population (see `population`)

    @classmethod
    def population(cls, members: Sequence[AgentValueCritic]) -> AgentValueCritic:
        """One critic of P members (one per seed, each built alone under its seed) for their P·n virtual agents,
        seed-major; a centralised one then reads one state per seed, (..., P, S)."""
        critic = copy.deepcopy(members[0])
        critic.seeds = len(members)
        critic.n_agents *= critic.seeds
        critic.net = population_net([m.net for m in members])
        return critic

    def inputs(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """What the critic reads from observations (..., N, O) and states (..., S): one of them."""
        return state if self.centralised else obs

    def _per_agent(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Inputs (..., S), a population's (..., P, S), or (..., k, O) -> (..., k, in) for the k selected agents."""
        if not self.centralised:
            return x
        if self.seeds > 1:  # (..., P, S) -> (..., P, k/P, S) -> (..., k, S)
            return x.unsqueeze(-2).expand(*x.shape[:-1], k // self.seeds, x.shape[-1]).flatten(-3, -2)
        return x.unsqueeze(-2).expand(*x.shape[:-1], k, x.shape[-1])

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """A shared critic's states (..., S), a population's (..., P, S) -> (..., P, S): one value head per seed."""
        return x.unsqueeze(-2) if self.seeds == 1 else x

    def forward(self, x: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """Feed-forward: inputs (B, S) or (B, k, O) -> values (B, k) of the k selected agents (all when None)."""
        k = self.n_agents if agents is None else agents.numel()
        if self.shared:  # each seed's one V(s), every agent's value
            return self.net(self._heads(x)).squeeze(-1).repeat_interleave(k // self.seeds, dim=-1)  # (B, k)
        return self.net(self._per_agent(x, k), agents).squeeze(-1)

    def forward_sequence(
        self,
        x: torch.Tensor,
        hidden: torch.Tensor,
        resets: torch.Tensor | None = None,
        every_hidden: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent: every agent's values (L, B, N) along input sequences.

        Args:
            x: (L, B, S) states or (L, B, N, O) observations.
            hidden: (B, N, H) hidden states before the first step.
            resets: (L, B) 1.0 where an episode starts (a population's (L, B, P): per seed), or None.
            every_hidden: return the hidden states after every step (L, B, N, H), not only the last.

        Returns:
            Values (L, B, N) and the hidden states after the last step (B, N, H) (or after every step).
        """
        if self.shared:  # each seed's one V(s) from its first agent's (every agent's) hidden state
            per_seed = self.n_agents // self.seeds
            values, hidden = self.net(self._heads(x), hidden[:, ::per_seed], resets, every_hidden=every_hidden)
            return values.squeeze(-1).repeat_interleave(per_seed, -1), hidden.repeat_interleave(per_seed, -2)
        values, hidden = self.net(self._per_agent(x, self.n_agents), hidden, resets, every_hidden=every_hidden)
        return values.squeeze(-1), hidden


ON_POLICY_ACTORS: dict[str, type[GaussianActor] | type[CategoricalActor]] = {
    "gaussian": GaussianActor,
    "categorical": CategoricalActor,
}
