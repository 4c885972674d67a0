"""Training episodes' returns and lengths, as the run's log reports them."""

from __future__ import annotations

import numpy as np
import torch


class EpisodeStats:
    """Collects the returns and lengths of the training episodes that end, between two log rows."""

    def __init__(self) -> None:
        self.episodes = 0
        self.returns: list[float] = []
        self.lengths: list[float] = []

    def track(self, out, envs: slice = slice(None)) -> None:
        """Record the episodes that ended in a vector step (`StepOutput`), in its envs `envs` (all by default)."""
        done = out.done.cpu()[envs]
        if bool(done.any()):
            ended = torch.nonzero(done).flatten()
            returns = out.episode_return.cpu()[envs][ended].tolist()
            self.returns += returns
            self.lengths += out.episode_length.cpu()[envs][ended].float().tolist()
            self.episodes += len(returns)

    def metrics(self) -> dict[str, float]:
        """`charts/episodes` (all so far) and the mean return and length of those since the last call."""
        metrics: dict[str, float] = {"charts/episodes": self.episodes}
        if self.returns:
            metrics["charts/episode_return"] = float(np.mean(self.returns))
            metrics["charts/episode_length"] = float(np.mean(self.lengths))
        self.returns, self.lengths = [], []
        return metrics
