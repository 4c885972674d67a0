"""The run loop shared by on- and off-policy training: set-up, evaluation, logging, checkpoints.

A runner orchestrates; it computes no losses. Subclasses implement `iterate()` (collect experience
and call the learner's update) and may extend `state_dict()` with their own buffers.
"""

from __future__ import annotations

import math
import random
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import harl
from harl.config import ExperimentConfig
from harl.errors import CheckpointError, UserError
from harl.evaluation import evaluate
from harl.experiment import check_env_compatible
from harl.metrics.diversity import snd_metrics
from harl.models.off_policy import DeterministicActor
from harl.registry import get_algorithm, get_architecture, get_environment
from harl.utils.checkpoint import Checkpointer, describe_mismatch, rng_state, set_rng_state
from harl.utils.logger import RunLogger
from harl.utils.memory import keep_freed_memory
from harl.utils.signals import stop_requested


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_learner(cfg: ExperimentConfig, spec, device: torch.device):
    """The registered learner for `cfg.algo_name` over `cfg.arch_name`, for an env with `spec`."""
    check_env_compatible(cfg, spec.action_type)
    return get_algorithm(cfg.algo_name).learner_cls(spec, cfg, get_architecture(cfg.arch_name), device)


class Runner(ABC):
    """Trains one configuration in one run folder, resuming from `checkpoint` when given."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, checkpoint: dict | None = None) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        run = cfg.run
        keep_freed_memory()
        if run.torch_threads > 0:
            torch.set_num_threads(run.torch_threads)
        self.device = resolve_device(run.device)
        seed_everything(run.seed)
        env_entry = get_environment(cfg.env_name)
        self.env = env_entry.make(
            cfg.env, n_envs=run.n_rollout_threads, seed=run.seed, device=self.device, n_workers=run.n_workers
        )
        self.spec = self.env.spec
        self.eval_env = None
        self.learner = build_learner(cfg, self.spec, self.device)
        self.env_steps, self.iteration, self.episodes = 0, 0, 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[float] = []
        self.last_eval: float = math.nan
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        self.logger = RunLogger(self.run_dir, resume_step=self.env_steps if checkpoint is not None else None)
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", run.keep_checkpoints)
        self.next_eval = self._next_multiple(run.eval_interval)
        self.next_save = self._next_multiple(run.save_interval)
        self.next_log = self._next_multiple(run.log_interval)
        self.next_snd = self._next_multiple(run.snd_interval)
        if run.snd_interval > 0 and isinstance(self.learner.actor, DeterministicActor):
            raise UserError(
                f"--snd_interval: {cfg.algo_name}'s actors are deterministic; SND compares action "
                "distributions (use a stochastic learner, e.g. hasac/masac/mappo)"
            )

    def _next_multiple(self, interval: int) -> float:
        return math.inf if interval <= 0 else (self.env_steps // interval + 1) * interval

    # ------------------------------------------------------------------ the loop

    @abstractmethod
    def iterate(self) -> dict[str, float]:
        """Collect experience (advancing `self.env_steps`) and update the learner; returns metrics."""

    def run(self) -> Path:
        """Train until `num_env_steps`, evaluating, logging and checkpointing on the way."""
        run = self.cfg.run
        bar = tqdm(
            total=run.num_env_steps,
            initial=min(self.env_steps, run.num_env_steps),
            unit="step",
            disable=not (run.progress_bar and sys.stderr.isatty()),
            dynamic_ncols=True,
        )
        counts = self.parameter_counts()
        print("trainable parameters: " + ", ".join(f"{k.split('/')[1]} {v:,}" for k, v in counts.items()))
        if self.env_steps == 0:
            self.logger.log(self.env_steps, counts)
        start_time, start_steps = time.perf_counter(), self.env_steps
        try:
            deadline = start_time + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else math.inf
            finished = self.env_steps >= run.num_env_steps
            while not finished and not stop_requested():
                before = self.env_steps
                metrics = self.iterate()
                self.iteration += 1
                sps = (self.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)
                finished = self.env_steps >= run.num_env_steps or time.perf_counter() >= deadline
                if finished or run.log_interval == 0 or self.env_steps >= self.next_log:
                    self.next_log = self._next_multiple(run.log_interval)
                    self.logger.log(
                        self.env_steps,
                        {
                            **metrics,
                            **self._episode_metrics(),
                            **self.diagnostics(),
                            **self.diversity(),
                            "charts/SPS": sps,
                        },
                    )
                if finished or self.env_steps >= self.next_eval:
                    self.next_eval = self._next_multiple(run.eval_interval)
                    self.logger.log(self.env_steps, self.run_evaluation())
                self.logger.write_row()
                if finished or self.env_steps >= self.next_save:
                    self.next_save = self._next_multiple(run.save_interval)
                    self.save()
                bar.update(self.env_steps - before)
                bar.set_postfix(SPS=f"{sps:.0f}", eval=f"{self.last_eval:.3g}", refresh=False)
            if stop_requested() and self.checkpointer.latest_step() != self.env_steps:
                self.save()  # SIGINT/SIGTERM: a checkpoint at the step reached (see harl.utils.signals)
        finally:
            bar.close()
            self.close()
        return self.run_dir

    def track_episodes(self, out) -> None:
        """Record the returns and lengths of episodes that ended in a vector step."""
        done = out.done.cpu()
        if bool(done.any()):
            ended = torch.nonzero(done).flatten()
            returns = out.episode_return.cpu()[ended].tolist()
            self.finished_returns += returns
            self.recent_returns.extend(returns)
            self.finished_lengths += out.episode_length.cpu()[ended].float().tolist()
            self.episodes += len(returns)

    def _episode_metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {"charts/episodes": self.episodes}
        if self.finished_returns:
            metrics["charts/episode_return"] = float(np.mean(self.finished_returns))
            metrics["charts/episode_length"] = float(np.mean(self.finished_lengths))
        self.finished_returns, self.finished_lengths = [], []
        return metrics

    def learner_modules(self) -> dict[str, torch.nn.Module]:
        """The learner's networks by attribute name (actor, critic, ...)."""
        return {k: v for k, v in vars(self.learner).items() if isinstance(v, torch.nn.Module)}

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per network of the learner (target copies excluded)."""
        counts = {
            f"model/{name}_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad)
            for name, module in self.learner_modules().items()
            if not name.startswith("target")
        }
        return {key: count for key, count in counts.items() if count > 0}

    def diagnostics(self) -> dict[str, float]:
        """Scalars exposed by any sub-module with a `diagnostics()` method (e.g. hypernetwork embeddings)."""
        metrics: dict[str, float] = {}
        for name, module in self.learner_modules().items():
            for sub in module.modules():
                report = getattr(sub, "diagnostics", None)
                if callable(report):
                    metrics.update({key.format(role=name): value for key, value in report().items()})
        return metrics

    @abstractmethod
    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latest collected joint observations (B, N, O) and available-action masks (B, N, A) or None."""

    def diversity(self) -> dict[str, float]:
        """`diversity/snd` (System Neural Diversity) every `snd_interval` env steps."""
        run = self.cfg.run
        if run.snd_interval <= 0 or self.env_steps < self.next_snd:
            return {}
        self.next_snd = self._next_multiple(run.snd_interval)
        obs, avail = self.recent_observations()
        return snd_metrics(
            self.learner.actor, obs, avail, self.spec.obs_dims, run.snd_max_obs, run.snd_samples, run.seed
        )

    def run_evaluation(self) -> dict[str, float]:
        run = self.cfg.run
        if self.eval_env is None:
            env_entry = get_environment(self.cfg.env_name)
            self.eval_env = env_entry.make(
                self.cfg.env, n_envs=run.n_eval_rollout_threads, seed=run.seed + 100_000, device=self.device
            )
        metrics = evaluate(
            self.learner,
            self.eval_env,
            run.eval_episodes,
            run.eval_deterministic,
            seed=run.seed + 100_000 + self.iteration,
            device=self.device,
        )
        self.last_eval = metrics["eval/episode_return"]
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {
            "harl_version": harl.__version__,
            "config": self.cfg.to_dict(),
            "spec": {
                "agent_ids": list(self.spec.agent_ids),
                "obs_dims": list(self.spec.obs_dims),
                "act_dims": list(self.spec.act_dims),
                "state_dim": self.spec.state_dim,
            },
            "learner": self.learner.state_dict(),
            "runner": {
                "env_steps": self.env_steps,
                "iteration": self.iteration,
                "episodes": self.episodes,
                "rng": rng_state(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        expected = {
            "agent_ids": list(self.spec.agent_ids),
            "obs_dims": list(self.spec.obs_dims),
            "act_dims": list(self.spec.act_dims),
            "state_dim": self.spec.state_dim,
        }
        if state.get("spec") != expected:
            raise CheckpointError(describe_mismatch(state, self.cfg.to_dict(), expected))
        try:
            self.learner.load_state_dict(state["learner"])
        except (KeyError, RuntimeError, ValueError):
            raise CheckpointError(describe_mismatch(state, self.cfg.to_dict(), expected)) from None
        runner = state["runner"]
        self.env_steps, self.iteration, self.episodes = runner["env_steps"], runner["iteration"], runner["episodes"]
        set_rng_state(runner["rng"])

    def save(self) -> Path:
        return self.checkpointer.save(self.env_steps, self.state_dict())

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()
