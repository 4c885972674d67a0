"""Returns and advantages of a finished on-policy rollout: the critic's values on it, the time-limit bootstraps and
GAE, as functions of tensors. The learner computes them in one step (`PPOLearner.prepare`); the rollout buffer only
stores what the runner collected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harl.buffers.rollout import Sequences, TimeLimitCut


@dataclass(frozen=True)
class RolloutValues:
    """The critic on a finished rollout (`PPOLearner.value_rollout`).

    Attributes:
        values: (T+1, E, N) denormalised values at the rollout's steps and at the states after it.
        cut_values: (Σk, N) values of the final states of the time-limit cuts, in the buffer's `cuts` order
            (None: no cut).
        chunk_hidden: (⌈T/L⌉, E, N, H) the critic's hidden states before every training chunk (recurrent only).
    """

    values: torch.Tensor
    cut_values: torch.Tensor | None = None
    chunk_hidden: torch.Tensor | None = None


@dataclass(frozen=True)
class Prepared:
    """A rollout made ready for the update (`PPOLearner.prepare`).

    Attributes:
        sequences: the training sequences, with normalised advantages, values and returns.
        values: (T, E, N) the critic's denormalised values at the rollout's steps.
        returns: (T, E, N) the value targets (advantages + values).
    """

    sequences: Sequences
    values: torch.Tensor
    returns: torch.Tensor


def bootstrapped_rewards(
    rewards: torch.Tensor, cuts: Sequence[TimeLimitCut], cut_values: torch.Tensor | None, gamma: float
) -> torch.Tensor:
    """Rewards (T, E, N) with γ·V(final state) added at every step where a time limit cut an episode (its `dones`
    still end it, so GAE does not run past it): a new tensor, `rewards` unchanged."""
    if not cuts:
        return rewards
    assert cut_values is not None, "time-limit cuts need their final states' values"
    rewards, offset = rewards.clone(), 0
    for cut in cuts:
        k = len(cut.envs)
        rewards[cut.step, cut.envs] += gamma * cut_values[offset : offset + k]
        offset += k
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation: advantages and returns (T, E, N) from rewards (T, E, N), values (T+1, E, N)
    (`values[T]`: V of the states after the rollout) and episode ends `dones` (T, E)."""
    advantages = torch.zeros_like(rewards)
    gae_t = torch.zeros_like(values[-1])  # (E, N)
    for t in reversed(range(rewards.shape[0])):  # inherently sequential in time
        not_done = (1.0 - dones[t]).unsqueeze(-1)  # (E, 1)
        delta = rewards[t] + gamma * values[t + 1] * not_done - values[t]
        gae_t = delta + gamma * gae_lambda * not_done * gae_t
        advantages[t] = gae_t
    return advantages, advantages + values[:-1]
