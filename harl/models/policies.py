"""Actors and on-policy critics built from any registered architecture.

Every actor serves all agents at once. Observations are (B, k, obs_dim_max) for k agents (all by
default, or those selected by `agents`), actions (B, k, action_shape). Each agent's distribution
covers only its own action dimensions (continuous) or its own actions (discrete): padded entries
are masked out of log-probabilities and entropies, and never sampled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harl.config import ModelConfig
from harl.envs.spec import EnvSpec
from harl.registry import ArchEntry

LOG_2PI = math.log(2 * math.pi)


class Actor(nn.Module):
    """Common state of actors: the spec's masks and bounds as buffers."""

    def __init__(self, spec: EnvSpec) -> None:
        super().__init__()
        self.n_agents = spec.n_agents
        self.register_buffer("act_mask", torch.as_tensor(spec.act_mask, dtype=torch.float32))  # (N, A)
        self.register_buffer("act_low", torch.as_tensor(spec.act_low, dtype=torch.float32))  # (N, A)
        self.register_buffer("act_high", torch.as_tensor(spec.act_high, dtype=torch.float32))  # (N, A)

    def _rows(self, buffer: torch.Tensor, agents: torch.Tensor | None) -> torch.Tensor:
        return buffer if agents is None else buffer[agents]

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the environment takes them (within bounds, padded dims zero)."""
        return actions


class GaussianActor(Actor):
    """Diagonal Gaussian with a state-independent learned log-std (PPO-style, unbounded samples)."""

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        n, obs_dim, act_dim = spec.n_agents, spec.obs_dim_max, spec.act_dim_max
        self.net = arch.build_net(
            n,
            obs_dim,
            act_dim,
            model_cfg.hidden_sizes,
            model_cfg.gain,
            torch.as_tensor(spec.obs_mask),
            "actor",
            model_cfg,
            arch_cfg,
        )
        self.log_std = arch.build_agent_param(n, act_dim, math.log(model_cfg.std_init), "actor", arch_cfg)

    def _params(self, obs: torch.Tensor, agents: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.net(obs, agents)  # (B, k, A)
        log_std = self.log_std(agents).expand_as(mean)  # (B, k, A)
        return mean, log_std

    def act(
        self, obs: torch.Tensor, avail: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or take the mean of) every agent's policy. Returns actions (B, N, A), log-probs (B, N)."""
        mean, log_std = self._params(obs, None)
        actions = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        actions = actions * self.act_mask
        return actions, self._log_prob(actions, mean, log_std, self.act_mask)

    def evaluate(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        avail: torch.Tensor | None = None,
        agents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (B, k) of `actions` (B, k, A) under the current policy."""
        mean, log_std = self._params(obs, agents)
        mask = self._rows(self.act_mask, agents)
        entropy = ((0.5 + 0.5 * LOG_2PI + log_std) * mask).sum(-1)
        return self._log_prob(actions, mean, log_std, mask), entropy

    @staticmethod
    def _log_prob(actions, mean, log_std, mask) -> torch.Tensor:
        z = (actions - mean) * torch.exp(-log_std)
        return ((-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI) * mask).sum(-1)

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.act_high), self.act_low) * self.act_mask


class CategoricalActor(Actor):
    """Categorical policy over each agent's own actions, respecting available-action masks."""

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        self.net = arch.build_net(
            spec.n_agents,
            spec.obs_dim_max,
            spec.act_dim_max,
            model_cfg.hidden_sizes,
            model_cfg.gain,
            torch.as_tensor(spec.obs_mask),
            "actor",
            model_cfg,
            arch_cfg,
        )

    def _log_probs_all(
        self, obs: torch.Tensor, avail: torch.Tensor | None, agents: torch.Tensor | None
    ) -> torch.Tensor:
        logits = self.net(obs, agents)  # (B, k, A)
        valid = self._rows(self.act_mask, agents).bool().expand_as(logits)
        if avail is not None:
            valid = valid & avail.bool()
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        return F.log_softmax(logits, dim=-1)

    def act(
        self, obs: torch.Tensor, avail: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns actions (B, N, 1) int64 and log-probs (B, N)."""
        log_p = self._log_probs_all(obs, avail, None)
        if deterministic:
            actions = log_p.argmax(-1, keepdim=True)
        else:
            flat = log_p.exp().reshape(-1, log_p.shape[-1])
            actions = torch.multinomial(flat, 1).view(*log_p.shape[:-1], 1)
        return actions, log_p.gather(-1, actions).squeeze(-1)

    def evaluate(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        avail: torch.Tensor | None = None,
        agents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = self._log_probs_all(obs, avail, agents)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_p.gather(-1, actions.long()).squeeze(-1), entropy

    def probs(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, A) action probabilities (for diversity metrics)."""
        return self._log_probs_all(obs, avail, None).exp()


class AgentValueCritic(nn.Module):
    """Per-agent value heads V_i(s) on the centralised state, built by the architecture."""

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__()
        self.n_agents = spec.n_agents
        self.net = arch.build_net(
            spec.n_agents,
            spec.state_dim,
            1,
            model_cfg.critic_sizes,
            1.0,
            torch.ones(spec.n_agents, spec.state_dim, dtype=torch.bool),
            "critic",
            model_cfg,
            arch_cfg,
        )

    def forward(self, state: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """state (B, state_dim) -> values (B, k)."""
        k = self.n_agents if agents is None else agents.numel()
        return self.net(state.unsqueeze(1).expand(-1, k, -1), agents).squeeze(-1)


ON_POLICY_ACTORS = {"gaussian": GaussianActor, "categorical": CategoricalActor}
