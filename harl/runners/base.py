"""The run loop shared by on- and off-policy training: set-up, the loop, logging and checkpoints.

A runner orchestrates; it computes no losses and no returns. It drives its learner only through the
protocols of `harl.algos.base`; evaluation (`Evaluator`) and episode statistics (`EpisodeStats`) are
pieces of their own, checkpoint files are `harl.utils.checkpoint`'s. Subclasses implement `iterate()`
(collect experience and call the learner's `train`) and may extend `state_dict()` with their own buffers.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

import harl
from harl.algos.base import Learner
from harl.config import ExperimentConfig
from harl.errors import CheckpointError, TrainingDiverged, UserError
from harl.experiment import check_env_compatible
from harl.metrics.diversity import snd_metrics
from harl.registry import get_algorithm, get_architecture, get_environment
from harl.runners.episodes import EpisodeStats
from harl.runners.evaluator import Evaluator
from harl.runners.progress import Progress
from harl.utils.checkpoint import Checkpointer, describe_mismatch, rng_state, set_rng_state
from harl.utils.compile import compile_learner
from harl.utils.logger import RunLogger
from harl.utils.memory import keep_freed_memory
from harl.utils.signals import stop_requested
from harl.utils.threads import training_threads


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def first_non_finite(metrics: dict[str, float], networks: dict[str, torch.nn.Module]) -> str | None:
    """The first metric (a loss, a gradient norm, ...) or network whose value or parameters are not finite."""
    for key, value in metrics.items():
        if not math.isfinite(value):
            return f"{key} = {value}"
    for role, network in networks.items():
        params = [p.detach() for p in network.parameters()]
        if params and not bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all()):
            return f"the {role}'s parameters (not finite)"
    return None


def check_actions(actions: torch.Tensor, env_steps: int) -> None:
    """Stop on non-finite actions (E, N, A) before they reach an environment."""
    if not bool(torch.isfinite(actions).all()):
        raise TrainingDiverged(
            f"the policy's actions became non-finite at {env_steps} env steps; the run stopped before stepping "
            "the envs with them (its last checkpoint is kept; try a lower learning rate or gradient clipping)"
        )


def build_learner(cfg: ExperimentConfig, spec, device: torch.device) -> Learner:
    """The registered learner for `cfg.algo_name` over `cfg.arch_name`, for an env with `spec`."""
    check_env_compatible(cfg, spec.action_type)
    return get_algorithm(cfg.algo_name).learner_cls(spec, cfg, get_architecture(cfg.arch_name), device)


class Runner(ABC):
    """Trains one configuration in one run folder, resuming from `checkpoint` when given."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, checkpoint: dict | None = None) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        run = cfg.run
        keep_freed_memory()
        self.device = resolve_device(run.device)
        seed_everything(run.seed)
        env_entry = get_environment(cfg.env_name)
        self.env = env_entry.make(
            cfg.env, n_envs=run.n_rollout_threads, seed=run.seed, device=self.device, n_workers=run.n_workers
        )
        self.spec = self.env.spec
        self.threads = run.torch_threads or training_threads(self.env.n_workers)  # see harl.utils.threads
        torch.set_num_threads(self.threads)
        self.learner = build_learner(cfg, self.spec, self.device)
        compile_learner(self.learner, run.compile)  # run.compile: compiled network forwards
        self.schedule = self.learner.schedule
        self.evaluator = Evaluator(cfg, self.device)
        self.episodes = EpisodeStats()
        self.env_steps, self.iteration = 0, 0
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        self.logger = RunLogger(self.run_dir, resume_step=self.env_steps if checkpoint is not None else None)
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", run.keep_checkpoints)
        self.next_eval = self._next_multiple(run.eval_interval)
        self.next_save = self._next_multiple(run.save_interval)
        self.next_log = self._next_multiple(run.log_interval)
        self.next_snd = self._next_multiple(run.snd_interval)

    def _next_multiple(self, interval: int) -> float:
        return math.inf if interval <= 0 else (self.env_steps // interval + 1) * interval

    # ------------------------------------------------------------------ the loop

    @abstractmethod
    def iterate(self) -> dict[str, float]:
        """Collect experience (advancing `self.env_steps`) and train the learner; returns metrics."""

    def run(self, progress: Progress | None = None) -> Path:
        """Train until `num_env_steps`, evaluating, logging and checkpointing on the way; `progress` (made
        here from the run config when None) reports it and is closed at the end."""
        run = self.cfg.run
        progress = progress or Progress.for_run(run)
        counts = self.parameter_counts()
        print(f"torch threads: {self.threads} (see harl.utils.threads; --torch_threads overrides)")
        print("trainable parameters: " + ", ".join(f"{k.split('/')[1]} {v:,}" for k, v in counts.items()), flush=True)
        if self.env_steps == 0:
            self.logger.log(self.env_steps, counts)
        start_time, start_steps = time.perf_counter(), self.env_steps
        try:
            deadline = start_time + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else math.inf
            progress.begin(self.env_steps, self.schedule.warmup_steps, deadline)
            finished = self.env_steps >= run.num_env_steps
            while not finished and not stop_requested():
                metrics = self.iterate()
                self.iteration += 1
                diverged = first_non_finite(metrics, self.learner.networks())
                if diverged is not None:
                    latest = self.checkpointer.latest()
                    raise TrainingDiverged(
                        f"training diverged in update {self.iteration} (at {self.env_steps} env steps): {diverged}; "
                        f"the run stopped, keeping its last checkpoint ({latest or 'none yet'}); try a lower learning "
                        "rate or gradient clipping"
                    )
                progress.update(self.env_steps)
                sps = (self.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)
                finished = self.env_steps >= run.num_env_steps or time.perf_counter() >= deadline
                if finished or run.log_interval == 0 or self.env_steps >= self.next_log:
                    self.next_log = self._next_multiple(run.log_interval)
                    self.logger.log(
                        self.env_steps,
                        {
                            **metrics,
                            **self.episodes.metrics(),
                            **self.learner.diagnostics(),
                            **self.diversity(),
                            "charts/SPS": sps,
                        },
                    )
                if finished or self.env_steps >= self.next_eval:
                    self.next_eval = self._next_multiple(run.eval_interval)
                    progress.evaluating(run.eval_episodes)
                    evaluation = self.evaluator(self.learner, self.iteration)
                    progress.evaluated(evaluation)
                    self.logger.log(self.env_steps, evaluation)
                self.logger.write_row()
                if finished or self.env_steps >= self.next_save:
                    self.next_save = self._next_multiple(run.save_interval)
                    self.save()
            if stop_requested() and self.checkpointer.latest_step() != self.env_steps:
                self.save()  # SIGINT/SIGTERM: a checkpoint at the step reached (see harl.utils.signals)
        finally:
            progress.close()
            self.close()
        return self.run_dir

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per network of the learner (`model/<role>_parameters`)."""
        counts = {
            f"model/{role}_parameters": sum(p.numel() for p in network.parameters() if p.requires_grad)
            for role, network in self.learner.networks().items()
        }
        return {key: count for key, count in counts.items() if count > 0}

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
                "episodes": self.episodes.episodes,
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
        self.env_steps, self.iteration = runner["env_steps"], runner["iteration"]
        self.episodes.episodes = runner["episodes"]
        set_rng_state(runner["rng"])

    def save(self) -> Path:
        return self.checkpointer.save(self.env_steps, self.state_dict())

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        self.evaluator.close()
