"""Off-policy runner: step the vectorised env into the learner's replay buffer, and train the learner from it."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from harl.algos.base import OffPolicyLearner
from harl.config import ExperimentConfig
from harl.runners.base import ActionWatch, Runner


class OffPolicyRunner(Runner):
    """One iteration collects the schedule's `steps_per_iteration` (`train_interval`) vector steps (uniformly
    random actions within each agent's bounds for the first `warmup_steps` env steps, the exploring policies
    after), writing one replay slot per vector step, then runs the schedule's `updates_per_iteration` learner
    updates once warm-up is over and the buffer holds a batch.

    With `save_buffer: true` checkpoints hold the replay buffer, and a resumed run continues with it.
    """

    learner: OffPolicyLearner

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, checkpoint: dict | None = None) -> None:
        self._saved_buffer: dict | None = None
        super().__init__(cfg, run_dir, checkpoint)
        self.buffer = self.learner.make_buffer(cfg.run.n_rollout_threads)
        size = self.buffer.nbytes / 2**20
        print(f"replay buffer: {self.buffer.capacity:,} transitions, {size:,.0f} MiB on {self.device}")
        if self._saved_buffer is not None:
            self.buffer.load_state_dict(self._saved_buffer)
            self.buffer.cut_episodes()  # collection restarts from new episodes below
            self._saved_buffer = None
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
            if self.env_steps < schedule.warmup_steps:
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
            self.env_steps += self.env.n_envs
        self.actions.check(self.env_steps)
        metrics = {"buffer/size": float(len(buffer))}
        if self.env_steps >= schedule.warmup_steps and len(buffer) >= schedule.min_transitions:
            start = time.perf_counter()
            metrics.update(learner.train(buffer, schedule.updates_per_iteration))
            metrics["timers/updates_per_second"] = schedule.updates_per_iteration / (time.perf_counter() - start)
        return [metrics]

    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        obs = torch.cat(self.recent_obs)  # (train_interval · E, N, O)
        return obs, torch.cat(self.recent_avail) if self.recent_avail else None

    def state_dict(self) -> list[dict]:
        (state,) = super().state_dict()  # off-policy learners train one seed
        state["buffer"] = self.buffer.state_dict() if self.cfg.algo.save_buffer else None
        return [state]

    def load_state_dict(self, states: list[dict]) -> None:
        super().load_state_dict(states)
        self._saved_buffer = states[0].get("buffer")
