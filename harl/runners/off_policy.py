"""Off-policy runner: step the vectorised env into the learner's replay buffer, and train the learner from it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from harl.algos.base import OffPolicyLearner
from harl.config import ExperimentConfig
from harl.runners.base import ActionWatch, Runner


class OffPolicyRunner(Runner):
    """One iteration collects the schedule's `steps_per_iteration` (`train_interval`) vector steps (uniformly
    random actions within each agent's bounds for the first `warmup_steps` env steps after any pre-training of
    the architecture, the exploring policies after), writing one replay slot per vector step, then runs the
    schedule's `updates_per_iteration` learner updates once warm-up is over and the buffer holds a batch.

    With `save_buffer: true` checkpoints hold the replay buffer (each seed's its own envs' part), and a resumed
    run continues with it.
    """

    learner: OffPolicyLearner

    def __init__(self, cfg: ExperimentConfig, run_dir: Path | Sequence[Path], checkpoint=None) -> None:
        self._saved_buffers: list[dict | None] = []
        super().__init__(cfg, run_dir, checkpoint)
        self.buffer = self.learner.make_buffer(self.env.n_envs)  # every seed's envs, seed-major
        size, capacity = self.buffer.nbytes / 2**20, self.buffer.capacity
        capped = (
            f" (buffer_size {cfg.algo.buffer_size:,} is more than this run can fill)"
            if capacity < cfg.algo.buffer_size
            else ""
        )
        each = " per seed" if cfg.run.seeds > 1 else ""
        print(f"replay buffer: {capacity:,} transitions{each}{capped}, {size:,.0f} MiB on {self.device}")
        if self._saved_buffers and all(saved is not None for saved in self._saved_buffers):
            for seed, saved in enumerate(self._saved_buffers):
                self.buffer.load_state_dict(saved, seed)
            self.buffer.cut_episodes()  # collection restarts from new episodes below
        self._saved_buffers = []
        self.out = self.env.reset(cfg.run.seed + 7919 * self.iteration)
        self.actions = ActionWatch()
        self.recent_obs: list[torch.Tensor] = []
        self.recent_avail: list[torch.Tensor] = []

    def iterate(self) -> list[dict[str, float]]:
        schedule, learner, buffer, device = self.schedule, self.learner, self.buffer, self.device
        self.recent_obs, self.recent_avail = [], []
        for _ in range(schedule.steps_per_iteration):
            obs, state = self.out.obs.to(device), self.out.state.to(device)  # (E, N, O), (E, S)
            avail = self.out.avail_actions.to(device) if self.out.avail_actions is not None else None
            self.recent_obs.append(obs)
            if avail is not None:
                self.recent_avail.append(avail)
            if self.env_steps < self.warmup_end:
                action = learner.random_act(self.env.n_envs, avail)
            else:
                action = learner.act(obs, state, avail)
                self.actions.watch(action.env_actions)
            out = self.env.step(action.env_actions)
            next_avail = None
            if out.avail_actions is not None:  # of the next observations; a finished episode's are not reported
                next_avail = out.avail_actions.to(device).masked_fill(out.done.to(device)[:, None, None], True)
            buffer.insert(
                obs,
                state,
                action.actions,
                out.reward.to(device),
                out.final_obs.to(device),
                out.final_state.to(device),
                out.terminated.to(device),
                out.truncated.to(device),
                avail=avail,
                next_avail=next_avail,
            )
            self.track_episodes(out)
            self.out = out
            self.env_steps += self.cfg.run.n_rollout_threads  # each seed's own
        self.actions.check(self.env_steps)
        shared = {"buffer/size": float(len(buffer))}  # each seed's transitions
        if self.env_steps < self.warmup_end or len(buffer) < schedule.min_transitions:
            return [dict(shared) for _ in range(self.cfg.run.seeds)]
        start = time.perf_counter()
        metrics = learner.train(buffer, schedule.updates_per_iteration)
        shared["timers/updates_per_second"] = schedule.updates_per_iteration / (time.perf_counter() - start)
        return [{**shared, **seed_metrics} for seed_metrics in metrics]

    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        obs = torch.cat(self.recent_obs)  # (train_interval · E, N, O)
        return obs, torch.cat(self.recent_avail) if self.recent_avail else None

    def state_dict(self) -> list[dict]:
        states = super().state_dict()
        for seed, state in enumerate(states):
            state["buffer"] = self.buffer.state_dict(seed) if self.cfg.algo.save_buffer else None
        return states

    def load_state_dict(self, states: list[dict]) -> None:
        super().load_state_dict(states)
        self._saved_buffers = [state.get("buffer") for state in states]
