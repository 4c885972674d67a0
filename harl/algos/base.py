"""What a runner may ask of a learner: the learner protocols, and the values they exchange.

A runner drives any registered learner through these protocols only: it asks for actions (`act`,
`ActOutput`), for a buffer to collect into (`make_buffer`), for the collection schedule (`schedule`),
hands the filled buffer to `train`, and reads `networks()` and `diagnostics()` for its logs. It never
looks at a learner's attributes. Actors expose `distribution(obs, avail)` for diversity metrics.

On-policy learners (`OnPolicyLearner`) train on a rollout buffer the runner has filled and finished
(`RolloutBuffer.finish`); what follows the rollout (the critic's values, time-limit bootstraps, returns)
is theirs. Off-policy learners (`OffPolicyLearner`) train from a replay buffer for a number of updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from harl.buffers.replay import ReplayBuffer
from harl.buffers.rollout import RolloutBuffer
from harl.models.distributions import Policy


@dataclass(frozen=True)
class ActOutput:
    """Every agent's action on one vector step.

    Attributes:
        env_actions: (E, N, A) actions as the environment takes them (within bounds, padded entries zero).
        actions: (E, N, action_shape) actions as buffers store them (normalised, or indices for discrete).
        log_probs: (E, N) their log-probabilities (None where the policy has none: deterministic actors).
        hidden: (E, N, H) the actor's hidden states after the step (recurrent learners; None otherwise).
    """

    env_actions: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


@dataclass(frozen=True)
class CollectionSchedule:
    """How a learner wants experience collected, read from its config in one place (the learner's).

    Attributes:
        steps_per_iteration: vector steps collected between two calls of `train` (`episode_length` on-policy,
            `train_interval` off-policy).
        warmup_steps: env steps of uniformly random actions (`random_act`) before the policy acts and
            training starts (off-policy learners; 0 on-policy).
        updates_per_iteration: gradient updates per call of `train` (off-policy: `train_interval ×
            update_per_train`, HARL's semantics; 0 on-policy, where `train` runs its own epochs).
        min_transitions: transitions a replay buffer must hold before training starts (off-policy: one batch).
    """

    steps_per_iteration: int
    warmup_steps: int = 0
    updates_per_iteration: int = 0
    min_transitions: int = 0


@runtime_checkable
class Learner(Protocol):
    """What every learner offers a runner."""

    actor: Policy
    schedule: CollectionSchedule

    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor | None,
        *,
        deterministic: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> ActOutput:
        """Every agent's action on obs (E, N, O) and states (E, S), with available actions (E, N, A) or None,
        from the actor's hidden states (E, N, H) before the step (recurrent learners; see `initial_hidden`)."""

    def initial_hidden(self, n_envs: int) -> torch.Tensor | None:
        """The actor's hidden states (E, N, H) at the start of episodes; None for feed-forward actors."""

    def networks(self) -> dict[str, nn.Module]:
        """The trainable networks by role ("actor", "critic"); target copies are not listed."""

    def diagnostics(self) -> dict[str, float]:
        """Scalars about the learner's current state for the run's log (e.g. hypernetwork embeddings)."""

    def seed_learners(self) -> list[Learner]:
        """One solo learner per seed it trains, each holding that seed's current networks, for evaluation and
        diagnostics (`run.seeds` > 1: its members, see `harl.algos.seed_population`; `state_dict` holds the rest);
        a learner of one seed returns itself."""

    def state_dict(self) -> dict:
        """Everything the learner needs to continue: networks, optimisers, normalisers, RNGs, counters (of several
        seeds: {"seeds": one solo learner's state per seed})."""

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output."""


@runtime_checkable
class OnPolicyLearner(Learner, Protocol):
    """A learner that trains on one finished rollout at a time (PPO family)."""

    def make_buffer(self, n_envs: int) -> RolloutBuffer:
        """An empty rollout buffer for `n_envs` environments, sized by the schedule."""

    def train(self, buffer: RolloutBuffer) -> list[dict[str, float]]:
        """Learn from a finished rollout; returns metrics by their logged names, one dict per seed."""


@runtime_checkable
class OffPolicyLearner(Learner, Protocol):
    """A learner that trains from a replay buffer (SAC and DDPG families)."""

    def make_buffer(self, n_envs: int) -> ReplayBuffer:
        """An empty replay buffer for `n_envs` environments."""

    def random_act(self, n_envs: int, avail: torch.Tensor | None = None) -> ActOutput:
        """Warm-up actions, uniform over every agent's own (available: `avail` (E, N, A)) actions."""

    def train(self, buffer: ReplayBuffer, n_updates: int) -> list[dict[str, float]]:
        """Run `n_updates` gradient updates from the buffer; returns metrics averaged over them, one dict per seed."""


@runtime_checkable
class ReportsDiagnostics(Protocol):
    """A network part with scalars of its own to log (e.g. a hypernetwork's embedding distances)."""

    def diagnostics(self) -> dict[str, float]:
        """Scalars by their logged names."""


def network_diagnostics(networks: Mapping[str, nn.Module]) -> dict[str, float]:
    """What every part of the given networks that `ReportsDiagnostics` reports."""
    metrics: dict[str, float] = {}
    for network in networks.values():
        for module in network.modules():
            if isinstance(module, ReportsDiagnostics):
                metrics.update(module.diagnostics())
    return metrics
