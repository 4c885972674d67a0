"""The run's evaluator: evaluation episodes on their own envs, every `eval_interval` env steps."""

from __future__ import annotations

import math

import torch

from harl.algos.base import Learner
from harl.config import ExperimentConfig
from harl.evaluation import evaluate
from harl.registry import get_environment


class Evaluator:
    """Evaluates a learner's current policies on envs of its own (made on first use, seeded apart from
    training), keeping the latest return for the progress bar."""

    def __init__(self, cfg: ExperimentConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.env = None
        self.last_return = math.nan

    def __call__(self, learner: Learner, iteration: int) -> dict[str, float]:
        """`run.eval_episodes` episodes (seeded by the iteration); returns the `eval/...` metrics."""
        run = self.cfg.run
        if self.env is None:
            self.env = get_environment(self.cfg.env_name).make(
                self.cfg.env, n_envs=run.n_eval_rollout_threads, seed=run.seed + 100_000, device=self.device
            )
        metrics = evaluate(
            learner,
            self.env,
            run.eval_episodes,
            run.eval_deterministic,
            seed=run.seed + 100_000 + iteration,
            device=self.device,
        )
        self.last_return = metrics["eval/episode_return"]
        return metrics

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
