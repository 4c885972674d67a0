"""The run loop shared by on- and off-policy training: set-up, the loop, logging and checkpoints.

A runner orchestrates; it computes no losses and no returns. It drives its learner only through the
protocols of `harl.algos.base`; evaluation (`Evaluator`) and episode statistics (`EpisodeStats`) are
pieces of their own, checkpoint files are `harl.utils.checkpoint`'s. Subclasses implement `iterate()`
(collect experience and call the learner's `train`) and may extend `state_dict()` with their own buffers.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import harl
from harl.algos.base import Learner
from harl.algos.seed_population import member_config
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
from harl.utils.finite import invalid_probabilities
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


class ActionWatch:
    """Watches the actions an iteration sends to the envs for non-finite values without a device sync per step:
    each step folds its check into one flag on the device (`watch`), read once per iteration (`check`) before the
    learner trains on what the actions collected. Environments take non-finite actions without failing (their
    states turn non-finite), so stopping at the end of the iteration keeps every checkpoint clean."""

    def __init__(self) -> None:
        self._finite: torch.Tensor | None = None

    def watch(self, actions: torch.Tensor) -> None:
        """Fold the check of actions (E, N, A) into the flag (action indices are always finite)."""
        if actions.is_floating_point():
            finite = torch.isfinite(actions).all()
            self._finite = finite if self._finite is None else self._finite & finite

    def check(self, env_steps: int) -> None:
        """Stop the run if an action watched since the last check was not finite (one read of the flag)."""
        finite, self._finite = self._finite, None
        if finite is not None and not bool(finite):
            raise TrainingDiverged(
                f"the policy's actions became non-finite in the iteration ending at {env_steps} env steps; the run "
                "stopped before training on them (its last checkpoint is kept; try a lower learning rate or "
                "gradient clipping)"
            )


def build_learner(cfg: ExperimentConfig, spec, device: torch.device) -> Learner:
    """The registered learner for `cfg.algo_name` over `cfg.arch_name`, for an env with `spec`."""
    check_env_compatible(cfg, spec.action_type)
    return get_algorithm(cfg.algo_name).learner_cls(spec, cfg, get_architecture(cfg.arch_name), device)


@dataclass
class SeedRun:
    """What a run keeps per seed: its solo config, folder, log, checkpoints, training episodes and evaluator.

    A solo run has one; a batched run (`run.seeds` > 1) one per seed, each laid out as a solo run of that seed.
    """

    cfg: ExperimentConfig
    run_dir: Path
    episodes: EpisodeStats
    evaluator: Evaluator
    logger: RunLogger | None = None
    checkpointer: Checkpointer | None = None


class Runner(ABC):
    """Trains one configuration in one run folder, resuming from `checkpoint` when given; with `run.seeds` = P > 1,
    P seeds of it in P run folders (`run_dir` and `checkpoint` then hold one per seed), as one batched learner
    over the seeds' envs side by side (P·E envs, seed-major). `env_steps` counts each seed's own env steps."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: Path | Sequence[Path],
        checkpoint: dict | Sequence[dict] | None = None,
    ) -> None:
        self.cfg = cfg
        run = cfg.run
        run_dirs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(d) for d in run_dir]
        checkpoints = [checkpoint] if isinstance(checkpoint, dict) else None if checkpoint is None else list(checkpoint)
        if len(run_dirs) != run.seeds or (checkpoints is not None and len(checkpoints) != run.seeds):
            raise ValueError(f"a run of {run.seeds} seeds needs one run folder (and checkpoint) per seed")
        keep_freed_memory()
        self.device = resolve_device(run.device)
        seed_everything(run.seed)
        env_entry = get_environment(cfg.env_name)
        self.env = env_entry.make(
            cfg.env,
            n_envs=run.seeds * run.n_rollout_threads,
            seed=run.seed,
            device=self.device,
            n_workers=run.n_workers,
            seeds=run.seeds,
        )
        self.spec = self.env.spec
        self.threads = run.torch_threads or training_threads(self.env.n_workers)  # see harl.utils.threads
        torch.set_num_threads(self.threads)
        self.pretrain_steps = 0  # env steps of the architecture's pre-training (see `pretrain`)
        self.pretrain_metrics: list[dict[str, float]] = [{} for _ in range(run.seeds)]  # each seed's first row
        if checkpoints is None:
            cfg = self.cfg = self.pretrain(cfg)
        self.learner = build_learner(cfg, self.spec, self.device)
        algo, arch = get_algorithm(cfg.algo_name), get_architecture(cfg.arch_name)
        if algo.sequential and not algo.on_policy and arch.shares_parameters:
            print(
                f"note: --arch {arch.name} shares actor parameters between agents, so in this sequential update "
                "every agent's step updates the shared parameters (as HARL's share_param)"
            )
        compile_learner(self.learner, run.compile)  # run.compile: compiled network forwards
        self.schedule = self.learner.schedule
        self.seed_runs = [
            SeedRun(seed_cfg, folder, EpisodeStats(), Evaluator(seed_cfg, self.device))
            for seed_cfg, folder in zip(seed_configs(cfg), run_dirs, strict=True)
        ]
        self.env_steps, self.iteration = self.pretrain_steps, 0
        if checkpoints is not None:
            self.load_state_dict(checkpoints)
        for seed_run in self.seed_runs:
            seed_run.logger = RunLogger(seed_run.run_dir, resume_step=self.env_steps if checkpoints else None)
            seed_run.checkpointer = Checkpointer(seed_run.run_dir / "checkpoints", run.keep_checkpoints)
        self.next_eval = self._next_multiple(run.eval_interval)
        self.next_save = self._next_multiple(run.save_interval)
        self.next_log = self._next_multiple(run.log_interval)
        self.next_snd = self._next_multiple(run.snd_interval)

    def pretrain(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """Run the architecture's pre-training (`ArchEntry.pretrain`) on the training envs, if it has one and its
        options leave something to learn; returns the config with what it learned (the run's from now on)."""
        pretraining = get_architecture(cfg.arch_name).pretrain
        if pretraining is None:
            return cfg
        seeds = [cfg.run.seed + index for index in range(cfg.run.seeds)]
        results = pretraining.run(env=self.env, arch_cfg=cfg.arch, seeds=seeds, device=self.device)
        if results is None:
            return cfg
        self.pretrain_steps = results[0].env_steps  # every seed's: the same options on as many envs
        self.pretrain_metrics = [result.metrics for result in results]
        for seed, result in zip(seeds, results, strict=True):
            print(result.summary if len(seeds) == 1 else f"seed {seed}: {result.summary}", flush=True)
        if len(seeds) == 1:
            return dataclasses.replace(cfg, arch=results[0].arch_cfg)
        return dataclasses.replace(cfg, seed_archs=[result.arch_cfg for result in results])

    @property
    def warmup_end(self) -> int:
        """The env step at which the learner's random-action warm-up ends: it starts after any pre-training."""
        return self.pretrain_steps + self.schedule.warmup_steps

    @property
    def run_dir(self) -> Path:
        """The (first seed's) run folder."""
        return self.seed_runs[0].run_dir

    @property
    def logger(self) -> RunLogger:
        """The (first seed's) log."""
        return self.seed_runs[0].logger

    @property
    def checkpointer(self) -> Checkpointer:
        """The (first seed's) checkpoints."""
        return self.seed_runs[0].checkpointer

    @property
    def episodes(self) -> EpisodeStats:
        """The (first seed's) training episodes."""
        return self.seed_runs[0].episodes

    def track_episodes(self, out) -> None:
        """Record the episodes that ended in a vector step (`StepOutput`) under their seeds."""
        n_envs = self.cfg.run.n_rollout_threads
        for index, seed_run in enumerate(self.seed_runs):
            seed_run.episodes.track(out, slice(index * n_envs, (index + 1) * n_envs))

    def _next_multiple(self, interval: int) -> float:
        return math.inf if interval <= 0 else (self.env_steps // interval + 1) * interval

    # ------------------------------------------------------------------ the loop

    @abstractmethod
    def iterate(self) -> list[dict[str, float]]:
        """Collect experience (advancing `self.env_steps`) and train the learner; returns metrics, one dict per seed."""

    def run(self, progress: Progress | None = None) -> Path:
        """Train until `num_env_steps`, evaluating, logging and checkpointing on the way; `progress` (made
        here from the run config when None) reports it and is closed at the end."""
        run = self.cfg.run
        progress = progress or Progress.for_run(run)
        counts = self.parameter_counts()
        print(f"torch threads: {self.threads} (see harl.utils.threads; --torch_threads overrides)")
        print("trainable parameters: " + ", ".join(f"{k.split('/')[1]} {v:,}" for k, v in counts.items()), flush=True)
        if self.iteration == 0:  # a new run (checkpoints are saved after iterations)
            for seed_run, pretrained in zip(self.seed_runs, self.pretrain_metrics, strict=True):
                seed_run.logger.log(self.env_steps, {**counts, **pretrained})
        start_time, start_steps = time.perf_counter(), self.env_steps
        try:
            deadline = start_time + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else math.inf
            progress.begin(self.env_steps, self.warmup_end, deadline)
            finished = self.env_steps >= run.num_env_steps
            while not finished and not stop_requested():
                metrics = self.iterate()
                self.iteration += 1
                sampling = invalid_probabilities()  # one read per iteration (harl.utils.finite)
                for seed_run, seed_metrics in zip(self.seed_runs, metrics, strict=True):
                    self._check_finite(seed_run, seed_metrics, sampling)
                progress.update(self.env_steps)
                sps = (self.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)  # per seed
                finished = self.env_steps >= run.num_env_steps or time.perf_counter() >= deadline
                if finished or run.log_interval == 0 or self.env_steps >= self.next_log:
                    self.next_log = self._next_multiple(run.log_interval)
                    diversities = self.diversity()
                    for seed_run, learner, seed_metrics, diversity in zip(
                        self.seed_runs, self.learner.seed_learners(), metrics, diversities, strict=True
                    ):
                        row = {**seed_metrics, **seed_run.episodes.metrics(), **learner.diagnostics(), **diversity}
                        seed_run.logger.log(self.env_steps, {**row, "charts/SPS": sps})
                if finished or self.env_steps >= self.next_eval:
                    self.next_eval = self._next_multiple(run.eval_interval)
                    progress.evaluating(run.eval_episodes * len(self.seed_runs))
                    evaluations = [
                        seed_run.evaluator(learner, self.iteration)
                        for seed_run, learner in zip(self.seed_runs, self.learner.seed_learners(), strict=True)
                    ]
                    progress.evaluated(mean_metrics(evaluations))
                    for seed_run, evaluation in zip(self.seed_runs, evaluations, strict=True):
                        seed_run.logger.log(self.env_steps, evaluation)
                for seed_run in self.seed_runs:
                    seed_run.logger.write_row()
                if finished or self.env_steps >= self.next_save:
                    self.next_save = self._next_multiple(run.save_interval)
                    self.save()
            if stop_requested() and self.checkpointer.latest_step() != self.env_steps:
                self.save()  # SIGINT/SIGTERM: a checkpoint at the step reached (see harl.utils.signals)
        finally:
            progress.close()
            self.close()
        return self.run_dir

    def _check_finite(self, seed_run: SeedRun, metrics: dict[str, float], sampling: str | None) -> None:
        """Stop the run when a seed's metrics or the learner's networks are no longer finite, or when the policies'
        action probabilities were invalid when sampled (`sampling`: what `invalid_probabilities` reported)."""
        diverged = first_non_finite(metrics, self.learner.networks()) or sampling
        if diverged is not None:
            latest = seed_run.checkpointer.latest()
            which = f" (seed {seed_run.cfg.run.seed})" if len(self.seed_runs) > 1 else ""
            raise TrainingDiverged(
                f"training diverged{which} in update {self.iteration} (at {self.env_steps} env steps): {diverged}; "
                f"the run stopped, keeping its last checkpoint ({latest or 'none yet'}); try a lower learning "
                "rate or gradient clipping"
            )

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per network of (one seed's) learner (`model/<role>_parameters`)."""
        counts = {
            f"model/{role}_parameters": sum(p.numel() for p in network.parameters() if p.requires_grad)
            for role, network in self.learner.seed_learners()[0].networks().items()
        }
        return {key: count for key, count in counts.items() if count > 0}

    @abstractmethod
    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latest collected joint observations (B, N, O) and available-action masks (B, N, A) or None."""

    def diversity(self) -> list[dict[str, float]]:
        """`diversity/snd` (System Neural Diversity) every `snd_interval` env steps, one dict per seed: each seed's
        policies scored on the observations of its own envs, as its solo run scores them."""
        run = self.cfg.run
        if run.snd_interval <= 0 or self.env_steps < self.next_snd:
            return [{} for _ in self.seed_runs]
        self.next_snd = self._next_multiple(run.snd_interval)
        obs, avail = self.recent_observations()  # (B, N, O): rows step-major over every seed's envs
        seeds, n_envs = len(self.seed_runs), run.n_rollout_threads

        def own_rows(x: torch.Tensor | None, index: int) -> torch.Tensor | None:  # seed `index`'s envs' rows
            return x if x is None or seeds == 1 else x.unflatten(0, (-1, seeds, n_envs))[:, index].flatten(0, 1)

        return [
            snd_metrics(
                learner.actor,
                own_rows(obs, index),
                own_rows(avail, index),
                self.spec.obs_dims,
                run.snd_max_obs,
                run.snd_samples,
                seed_run.cfg.run.seed,
            )
            for index, (seed_run, learner) in enumerate(zip(self.seed_runs, self.learner.seed_learners(), strict=True))
        ]

    # ------------------------------------------------------------------ checkpoints

    def _spec_summary(self) -> dict:
        return {
            "agent_ids": list(self.spec.agent_ids),
            "obs_dims": list(self.spec.obs_dims),
            "act_dims": list(self.spec.act_dims),
            "state_dim": self.spec.state_dim,
        }

    def state_dict(self) -> list[dict]:
        """One checkpoint per seed, each a solo run's checkpoint of that seed."""
        learner = self.learner.state_dict()
        learners = learner["seeds"] if len(self.seed_runs) > 1 else [learner]
        return [
            {
                "harl_version": harl.__version__,
                "config": seed_run.cfg.to_dict(),
                "spec": self._spec_summary(),
                "learner": seed_learner,
                "runner": {
                    "env_steps": self.env_steps,
                    "iteration": self.iteration,
                    "episodes": seed_run.episodes.total(),
                    "pretrain_steps": self.pretrain_steps,
                    "rng": rng_state(self.device),
                },
            }
            for seed_run, seed_learner in zip(self.seed_runs, learners, strict=True)
        ]

    def load_state_dict(self, states: list[dict]) -> None:
        """Restore every seed's checkpoint (one per seed, all at the same env step)."""
        expected = self._spec_summary()
        for seed_run, state in zip(self.seed_runs, states, strict=True):
            if state.get("spec") != expected:
                raise CheckpointError(describe_mismatch(state, seed_run.cfg.to_dict(), expected))
        steps = {state["runner"]["env_steps"] for state in states}
        if len(steps) > 1:
            raise CheckpointError(
                f"the seeds' checkpoints are at different env steps ({', '.join(map(str, sorted(steps)))}); a batched "
                "run resumes its seeds together from the same step"
            )
        learner = states[0]["learner"] if len(states) == 1 else {"seeds": [state["learner"] for state in states]}
        try:
            self.learner.load_state_dict(learner)
        except (KeyError, RuntimeError, ValueError, TypeError):
            raise CheckpointError(describe_mismatch(states[0], self.cfg.to_dict(), expected)) from None
        runner = states[0]["runner"]
        self.env_steps, self.iteration = runner["env_steps"], runner["iteration"]
        self.pretrain_steps = runner.get("pretrain_steps", 0)  # checkpoints older than pre-training: none
        for seed_run, state in zip(self.seed_runs, states, strict=True):
            seed_run.episodes.episodes = state["runner"]["episodes"]
        set_rng_state(runner["rng"], self.device)

    def save(self) -> list[Path]:
        return [
            seed_run.checkpointer.save(self.env_steps, state)
            for seed_run, state in zip(self.seed_runs, self.state_dict(), strict=True)
        ]

    def close(self) -> None:
        """Close every seed's log and evaluator, then the envs (their worker processes), each even when one before
        it fails (e.g. a log's last write on a full disk); the first failure is raised once all are closed."""
        closers = [close for run in self.seed_runs for close in (run.logger.close, run.evaluator.close)]
        first: Exception | None = None
        for close in [*closers, self.env.close]:
            try:
                close()
            except Exception as err:  # kept, and raised once the rest are closed
                first = first or err
        if first is not None:
            raise first


def seed_configs(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """Each seed's solo config: the run's own for a solo run, `member_config` per seed for a batched one."""
    return [cfg] if cfg.run.seeds == 1 else [member_config(cfg, index) for index in range(cfg.run.seeds)]


def mean_metrics(metrics: list[dict[str, float]]) -> dict[str, float]:
    """The seeds' mean of every metric they all report (a solo run's own metrics)."""
    if len(metrics) == 1:
        return metrics[0]
    return {key: float(np.mean([m[key] for m in metrics])) for key in metrics[0] if all(key in m for m in metrics)}
