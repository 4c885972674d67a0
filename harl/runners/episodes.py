"""Training episodes' returns and lengths, as the run's log reports them."""

from __future__ import annotations

import torch


class EpisodeStats:
    """Collects the returns and lengths of the training episodes that end, between two log rows.

    Tracking runs on the device the env reports episodes on and never waits for it: per env, the sums of the
    returns and lengths of the episodes that ended and their count accumulate there (float64), and the log reads
    them once per row (`metrics`).
    """

    def __init__(self) -> None:
        self.episodes = 0
        self._sums: torch.Tensor | None = None  # (3, E'): returns, lengths and count of ended episodes, per env

    def track(self, out, envs: slice = slice(None)) -> None:
        """Record the episodes that ended in a vector step (`StepOutput`), in its envs `envs` (all by default)."""
        lengths = out.episode_length[envs]  # (E',): 0 where no episode ended
        ended = lengths > 0
        returns = torch.where(ended, out.episode_return[envs], torch.zeros_like(out.episode_return[envs]))
        step = torch.stack([returns.double(), lengths.double(), ended.double()])  # (3, E')
        self._sums = step if self._sums is None else self._sums.add_(step)

    def total(self) -> int:
        """Every episode ended so far, those not yet in a log row included (one read; for checkpoints)."""
        pending = 0 if self._sums is None else int(self._sums[2].sum())
        return self.episodes + pending

    def metrics(self) -> dict[str, float]:
        """`charts/episodes` (all so far) and the mean return and length of those since the last call."""
        metrics: dict[str, float] = {}
        if self._sums is not None:
            returns, lengths, count = self._sums.sum(1).tolist()  # one read per log row
            self._sums = None
            self.episodes += int(count)
            if count:
                metrics["charts/episode_return"] = returns / count
                metrics["charts/episode_length"] = lengths / count
        return {"charts/episodes": self.episodes, **metrics}
