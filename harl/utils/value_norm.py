"""Running normalisation of value targets (per agent), as in MAPPO's ValueNorm."""

from __future__ import annotations

import torch
from torch import nn


class ValueNorm(nn.Module):
    """Debiased exponential running mean/variance over a trailing `shape` (e.g. per agent).

    Args:
        shape: shape of the normalised quantity's trailing dims, e.g. (n_agents,).
        beta: EMA decay of the running moments.
        epsilon: floor of the debiasing term and the variance.
    """

    def __init__(self, shape: tuple[int, ...], beta: float = 0.99999, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.beta, self.epsilon = beta, epsilon
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_mean_sq", torch.zeros(shape))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean.pow(2)).clamp(min=1e-2)
        return mean, var

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x: (..., *shape); reduces over the leading dims."""
        dims = tuple(range(x.dim() - self.running_mean.dim()))
        self.running_mean.mul_(self.beta).add_(x.mean(dims) * (1 - self.beta))
        self.running_mean_sq.mul_(self.beta).add_(x.pow(2).mean(dims) * (1 - self.beta))
        self.debiasing_term.mul_(self.beta).add_(1 - self.beta)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._moments()
        return (x - mean) / var.sqrt()

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._moments()
        return x * var.sqrt() + mean
