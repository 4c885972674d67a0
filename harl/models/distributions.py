"""Every agent's action distribution on a batch of observations, as actors report them for metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class CategoricalPolicies:
    """Every agent's categorical action distribution on a batch of observations: probs (B, N, A)."""

    probs: torch.Tensor


@dataclass(frozen=True)
class GaussianPolicies:
    """Every agent's diagonal Gaussian on a batch of observations.

    Attributes:
        mean: (B, N, A).
        log_std: (B, N, A).
        act_mask: (N, A), 1 on each agent's real action dimensions.
    """

    mean: torch.Tensor
    log_std: torch.Tensor
    act_mask: torch.Tensor


PolicyDistribution = CategoricalPolicies | GaussianPolicies


class Policy(Protocol):
    """What metrics read from a learner's actor: every agent's action distribution on observations."""

    act_mask: torch.Tensor
    """(N, A) 1 on each agent's real action dimensions (continuous) or actions (discrete)."""

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> PolicyDistribution | None:
        """Every agent's action distribution on obs (B, N, O) (None for deterministic policies)."""
