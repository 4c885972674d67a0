"""The deterministic-policy machinery MADDPG, MATD3, HADDPG and HATD3 share: configs, deterministic
actors with target copies and exploration noise, the critic update and the actor-update schedule.

DDPG learners use one Q network and update actors every step. TD3 learners (`td3 = True`) use a
twin critic with clipped double-Q targets, target policy smoothing (clipped Gaussian noise on the
target actions) and delayed actor updates (every `policy_freq` critic updates). Actors are always
trained against the first Q head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from harl.algos.base import ActOutput
from harl.algos.off_policy_base import OffPolicyConfig, ReplayLearner, polyak_update
from harl.buffers.replay import ReplayBatch
from harl.config import ExperimentConfig, bounded
from harl.models.off_policy import DeterministicActor, GumbelCategoricalActor, OffPolicyActor
from harl.models.policies import GREEDY, Exploration
from harl.registry import ArchEntry
from harl.spec import EnvSpec


@dataclass
class DDPGConfig(OffPolicyConfig):
    """Hyper-parameters of MADDPG/HADDPG (HARL's names and defaults)."""

    critic_lr: float = bounded(1e-3, gt=0)
    """Critic learning rate."""
    expl_noise: float = bounded(0.1, ge=0)
    """Std of the Gaussian exploration noise, as a fraction of half of each agent's own action range."""


@dataclass
class TD3Config(DDPGConfig):
    """Hyper-parameters of MATD3/HATD3 (HARL's names and defaults)."""

    policy_noise: float = bounded(0.2, ge=0)
    """Std of the target policy smoothing noise (fraction of half the action range)."""
    noise_clip: float = bounded(0.5, ge=0)
    """Clip of the target policy smoothing noise (fraction of half the action range)."""
    policy_freq: int = bounded(2, gt=0)
    """Critic updates per actor update (delayed policy updates)."""


class DeterministicLearner(ReplayLearner):
    """Deterministic actors (any architecture) with target actors, and a centralised Q critic.

    Subclasses implement `update`, using `train_critic`, `actor_due`, `actor_q` and `finish_update`.
    """

    n_q = 1
    td3 = False

    def __init__(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry, device: torch.device) -> None:
        super().__init__(spec, cfg, arch, device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.first_head = torch.zeros(1, dtype=torch.long, device=device)

    def build_actor(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry) -> OffPolicyActor:
        if spec.discrete:  # Gumbel-softmax policies (the original MADDPG's treatment of discrete actions)
            return GumbelCategoricalActor(spec, arch, cfg.model, cfg.arch)
        return DeterministicActor(spec, arch, cfg.model, cfg.arch)

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
        """Env-ready actions (E, N, A) and stored normalised actions (E, N, A), with exploration noise unless
        `deterministic`."""
        layout = self.layout  # a population's envs (P·E, n, ...) as its networks' virtual agents (E, P·n, ...)
        obs, avail = layout.to_agents(obs), None if avail is None else layout.to_agents(avail)
        # Gumbel-softmax policies (discrete) explore by sampling, deterministic ones by Gaussian noise
        exploration = GREEDY if deterministic else Exploration(sample=True, noise_std=self.cfg.expl_noise)
        actions, _ = self.actor.act(obs, avail, exploration)
        return ActOutput(
            layout.to_envs(self.actor.env_actions(actions)), layout.to_envs(self.actor.stored_actions(actions))
        )

    def train_critic(self, batch: ReplayBatch) -> dict[str, torch.Tensor]:
        """Q regression on the target actors' next actions (smoothed, and min over twins, for TD3)."""
        with torch.no_grad():
            next_actions = self.target_actor(batch.next_obs, avail=batch.next_avail)  # (B, N, A)
            if self.td3 and not self.spec.discrete:  # smoothing noise on one-hot samples would not be an action
                noise = (self.actor.noise.randn_like(next_actions) * self.cfg.policy_noise).clamp(
                    -self.cfg.noise_clip, self.cfg.noise_clip
                )
                next_actions = (next_actions + noise).clamp(-1.0, 1.0) * self.actor.act_mask
            next_value = self.target_critic(batch.next_state, next_actions).min(-1).values  # (B,) or (B, P)
        return self.fit_critic(batch, next_value)

    def actor_due(self) -> bool:
        """Whether this update trains the actors (TD3: every `policy_freq`-th update)."""
        return not self.td3 or (self.updates + 1) % self.cfg.policy_freq == 0

    def actor_q(
        self, state: torch.Tensor, actions: torch.Tensor, state_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Q (B,) (a population's (B, P)) of the first head for joint normalised actions (B, N, A): what the actors
        maximise.
        `state_embedding`: the first head's precomputed `critic.embed_state`, to reuse."""
        return self.critic.min_q(state, actions, self.first_head, state_embedding)

    def finish_update(self, actors_updated: bool) -> None:
        """Polyak-average the target critic (and the target actors after an actor update); count the update."""
        polyak_update(self.critic, self.target_critic, self.cfg.polyak)
        if actors_updated:
            polyak_update(self.actor, self.target_actor, self.cfg.polyak)
        self.updates += 1

    def paired_networks(self) -> dict[str, nn.Module]:
        return {**super().paired_networks(), "target_actor": self.target_actor}

    def solo_state_dict(self) -> dict:
        return {**super().solo_state_dict(), "target_actor": self.target_actor.state_dict()}

    def load_solo_state_dict(self, state: dict) -> None:
        super().load_solo_state_dict(state)
        self.target_actor.load_state_dict(state["target_actor"])
