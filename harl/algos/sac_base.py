"""The soft actor-critic machinery HASAC and MASAC share: config, squashed-Gaussian actors, the soft
twin-Q critic update and the entropy temperatures.

Temperatures (as HASAC): every agent i has its own α_i, weighting its entropy in its actor loss
and tuned towards the target entropy −(agent i's own action size); the critic target uses one
joint α, tuned towards the joint target entropy −(Σ action sizes) from the joint log-probability
Σ_i log π_i. With `auto_alpha: false` all temperatures stay at `alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harl.algos.base import ActOutput
from harl.algos.off_policy_base import OffPolicyConfig, ReplayLearner, polyak_update
from harl.buffers.replay import ReplayBatch
from harl.config import ExperimentConfig, bounded
from harl.models.off_policy import SquashedGaussianActor
from harl.registry import ArchEntry
from harl.spec import EnvSpec


@dataclass
class SACConfig(OffPolicyConfig):
    """Hyper-parameters of HASAC/MASAC (HARL's names and defaults)."""

    auto_alpha: bool = True
    """Tune the entropy temperatures towards their target entropies."""
    alpha: float = bounded(0.2, gt=0)
    """The temperature (its initial value when auto_alpha is on)."""
    alpha_lr: float = bounded(3e-4, gt=0)
    """Learning rate of the temperatures."""


class SACLearner(ReplayLearner):
    """Squashed-Gaussian actors (any architecture), a soft twin Q critic, per-agent and joint temperatures.

    Subclasses implement `update` with their actor update (sequential or simultaneous), using
    `train_critic`, `actor_loss`, `update_temperatures` and `finish_update`.
    """

    n_q = 2

    def __init__(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry, device: torch.device) -> None:
        super().__init__(spec, cfg, arch, device)
        self.target_entropy = -torch.tensor(spec.act_dims, dtype=torch.float32, device=device)  # (N,)
        start = math.log(self.cfg.alpha)
        self.log_alpha = torch.full((self.n_agents,), start, device=device, requires_grad=True)  # (N,) actors
        self.log_alpha_joint = torch.full((), start, device=device, requires_grad=True)  # critic target
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha, self.log_alpha_joint], lr=self.cfg.alpha_lr)

    def build_actor(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry) -> SquashedGaussianActor:
        return SquashedGaussianActor(spec, arch, cfg.model, cfg.arch)

    @property
    def alpha(self) -> torch.Tensor:
        """(N,) the agents' temperatures."""
        return self.log_alpha.detach().exp()

    @property
    def alpha_joint(self) -> torch.Tensor:
        """The critic target's joint temperature."""
        return self.log_alpha_joint.detach().exp()

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor | None,
        *,
        deterministic: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> ActOutput:
        """Env-ready actions (E, N, A), stored normalised actions (E, N, A) and their log-probs (E, N)."""
        actions, log_probs = self.actor.act(obs, deterministic)
        return ActOutput(self.actor.env_actions(actions), actions, log_probs)

    def train_critic(self, batch: ReplayBatch) -> dict[str, torch.Tensor]:
        """Soft twin-Q regression: next value = min_k Q'_k(s', a') − α_joint · Σ_i log π_i(a'_i | o'_i)."""
        with torch.no_grad():
            next_actions, next_log_probs = self.actor.act(batch.next_obs)  # (B, N, A), (B, N)
            next_q = self.target_critic(batch.next_state, next_actions).min(-1).values  # (B,)
            next_value = next_q - self.alpha_joint * next_log_probs.sum(-1)
        return self.fit_critic(batch, next_value)

    def actor_loss(
        self, log_probs: torch.Tensor, q: torch.Tensor, agents: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft policy loss of the selected agents given their fresh log-probs (B, k) and the joint
        action's Q (B,): mean(Σ_i α_i log π_i − Q), and each agent's own term mean(α_i log π_i − Q) (k,)."""
        weighted = self.alpha[agents] * log_probs  # (B, k)
        loss = weighted.sum(1).mean() - q.mean()
        return loss, (weighted.mean(0) - q.mean()).detach()

    def update_temperatures(self, log_probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tune α_i on agent i's log-probs (B, N) and the joint α on their sum (when auto_alpha)."""
        log_probs = log_probs.detach()
        if self.cfg.auto_alpha:
            agent_loss = -(self.log_alpha * (log_probs + self.target_entropy)).mean(0).sum()
            joint_loss = -(self.log_alpha_joint * (log_probs.sum(-1) + self.target_entropy.sum())).mean()
            self.alpha_optimizer.zero_grad()
            (agent_loss + joint_loss).backward()
            self.alpha_optimizer.step()
        return {"entropy": -log_probs.mean(0), "alpha": self.alpha, "losses/critic/alpha": self.alpha_joint}

    def finish_update(self) -> None:
        """Polyak-average the target critic and count the update."""
        polyak_update(self.critic, self.target_critic, self.cfg.polyak)
        self.updates += 1

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "log_alpha_joint": self.log_alpha_joint.detach().clone(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
            self.log_alpha_joint.copy_(state["log_alpha_joint"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
