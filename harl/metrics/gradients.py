"""Policy-gradient statistics: the paper's gradient variance and a minibatch gradient-noise measure.

- `grad/param_variance` (HyperMARL paper, section 5.2.3): the variance across all entries of the actor's
  gradient at one update, Var_k(g_k) over the P entries of the flattened gradient g (population
  variance). The logger reports its mean over the updates of a training iteration; averaging the
  logged column over training gives the paper's figure.
- `grad/noise`: how much the gradients of different minibatches disagree, relative to their common
  direction: for K gradients g_1..g_K of one group (e.g. the minibatches of one epoch),

      noise = (1 / (K - 1)) Σ_k ‖g_k - ḡ‖² / ‖ḡ‖²,   ḡ = (1 / K) Σ_k g_k,

  i.e. the trace of the sample covariance of the minibatch gradients over the squared norm of their
  mean (an inverse signal-to-noise ratio; 0 when every minibatch agrees). It needs K ≥ 2 gradients
  in a group, so with one minibatch per epoch it is only defined across epochs (then it mixes in the
  parameter drift between epochs).

For hypernetworks the actor's parameters are the hypernetwork's, so both measures are taken over the
hypernetwork's gradient entries, exactly as for any other architecture. A population of seeds (`--seeds`)
takes both per seed, over that seed's own entries (`seed_gradients`), as its solo run would.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from harl.models.agent_mlp import is_per_agent


def flat_grad(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The gradients of `params` concatenated into one (P,) vector (zeros for parameters without a gradient)."""
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params if p.requires_grad]
    if not parts:
        raise ValueError("no trainable parameters")
    return torch.cat(parts)


def seed_gradients(
    params: Iterable[torch.Tensor], seeds: int, grads: Sequence[torch.Tensor | None] | None = None
) -> torch.Tensor:
    """(P, entries) each seed's gradient entries of `params`, float64: per-agent tensors (P·n, ...) split by seed,
    any other tensor (P, ...) by its leading seed dimension (one seed: every tensor whole). The gradients are
    `grads`, one per trainable parameter in order (None: zero), or else the parameters' `.grad`."""
    trainable = [param for param in params if param.requires_grad]
    given = [param.grad for param in trainable] if grads is None else grads
    parts = []
    for param, grad in zip(trainable, given, strict=True):
        grad = grad if grad is not None else torch.zeros_like(param)
        rows = grad.unflatten(0, (seeds, -1)) if is_per_agent(param) and seeds > 1 else grad
        parts.append(rows.reshape(seeds, -1))
    if not parts:
        raise ValueError("no trainable parameters")
    return torch.cat(parts, dim=1).double()


def param_variance(grad: torch.Tensor) -> float:
    """Variance across the entries of one flattened gradient (P,) (population variance, the paper's measure)."""
    return float(grad.double().var(unbiased=False))


def gradient_noise(grads: Sequence[torch.Tensor]) -> float:
    """Trace of the sample covariance of K ≥ 2 gradients (P,) divided by the squared norm of their mean.

    Returns NaN when the mean gradient is exactly zero.
    """
    if len(grads) < 2:
        raise ValueError("gradient noise needs at least two gradients")
    stacked = torch.stack([g.double() for g in grads])  # (K, P)
    mean = stacked.mean(0)
    spread = (stacked - mean).pow(2).sum(1).sum() / (len(grads) - 1)
    norm_sq = mean.pow(2).sum()
    return float(spread / norm_sq) if norm_sq > 0 else math.nan


class GradientStats:
    """Accumulates actor-gradient statistics over a training iteration, without storing the gradients, for each
    of `seeds` seeds of a population (one: a solo run).

    Call `record(actor.parameters())` after every actor backward (before gradient clipping), and
    `next_group()` where a new group of minibatches starts (e.g. at every PPO epoch; without it all
    recorded gradients form one group). `summary()` returns the iteration's metrics, one dict per seed, and
    starts afresh. Everything stays on the gradients' device until `summary()`.
    """

    def __init__(self, seeds: int = 1) -> None:
        self.seeds = seeds
        self._reset()

    def _reset(self) -> None:
        self._variance_sum: torch.Tensor | None = None
        self._updates = 0
        self._groups: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._count = 0
        self._sum: torch.Tensor | None = None  # (seeds, entries) float64: Σ g_k of the open group
        self._sq_norm_sum: torch.Tensor | None = None  # (seeds,) Σ ‖g_k‖² of the open group

    def record(self, params: Iterable[torch.Tensor], grads: Sequence[torch.Tensor | None] | None = None) -> None:
        """Add a gradient of `params` (one update): `grads`, one per trainable parameter (None: zero), or else
        their current `.grad`."""
        grad = seed_gradients(params, self.seeds, grads)  # (seeds, entries)
        variance = grad.var(dim=1, unbiased=False)  # (seeds,)
        self._variance_sum = variance if self._variance_sum is None else self._variance_sum + variance
        self._updates += 1
        if self._sum is None or self._sum.shape != grad.shape:
            self._close_group()
            self._sum, self._sq_norm_sum = torch.zeros_like(grad), grad.new_zeros(self.seeds)
        self._sum += grad
        self._sq_norm_sum += grad.pow(2).sum(1)
        self._count += 1

    def next_group(self) -> None:
        """Start a new group of gradients (the noise is computed within groups, then averaged)."""
        self._close_group()

    def _close_group(self) -> None:
        if self._sum is not None and self._count > 0:
            self._groups.append((self._count, self._sum, self._sq_norm_sum))
        self._count, self._sum, self._sq_norm_sum = 0, None, None

    def summary(self) -> list[dict[str, float]]:
        """Per seed: `grad/param_variance` (mean over the recorded updates) and `grad/noise` (mean over the groups
        of at least two gradients with a non-zero mean; left out when there is none). Resets the stats."""
        self._close_group()
        metrics: list[dict[str, float]] = [{} for _ in range(self.seeds)]
        variances = [] if self._variance_sum is None else (self._variance_sum / self._updates).tolist()
        groups = [
            (count, (total.pow(2).sum(1) / count**2).tolist(), sq_norm_sum.tolist())  # ‖ḡ‖² and Σ‖g_k‖² per seed
            for count, total, sq_norm_sum in self._groups
            if count >= 2
        ]
        for seed, row in enumerate(metrics):
            if variances:
                row["grad/param_variance"] = variances[seed]
            noises = []
            for count, mean_sq, sq_norm_sum in groups:
                spread = (sq_norm_sum[seed] - count * mean_sq[seed]) / (count - 1)  # Σ‖g_k - ḡ‖² / (K - 1)
                if mean_sq[seed] > 0:
                    noises.append(max(spread, 0.0) / mean_sq[seed])
            if noises:
                row["grad/noise"] = sum(noises) / len(noises)
        self._reset()
        return metrics
