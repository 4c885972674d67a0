"""Off-policy runner: step the vectorised env into a replay buffer, and train the learner from it."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from harl.buffers.replay import ReplayBuffer
from harl.config import ExperimentConfig
from harl.runners.base import Runner


class OffPolicyRunner(Runner):
    """One iteration collects `train_interval` vector steps (uniformly random actions within each
    agent's bounds for the first `warmup_steps` env steps, the exploring policies after), writing one
    replay slot per vector step, then runs `train_interval × update_per_train` learner updates (HARL's
    semantics: `update_per_train` updates per vector step) once warm-up is over.

    With `save_buffer: true` checkpoints hold the replay buffer, and a resumed run continues with it.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, checkpoint: dict | None = None) -> None:
        self._saved_buffer: dict | None = None
        super().__init__(cfg, run_dir, checkpoint)
        algo = cfg.algo
        self.buffer = ReplayBuffer(
            self.spec, algo.buffer_size, cfg.run.n_rollout_threads, algo.n_step, algo.gamma, self.device
        )
        size = self.buffer.nbytes / 2**20
        print(f"replay buffer: {self.buffer.capacity:,} transitions, {size:,.0f} MiB on {self.device}")
        if self._saved_buffer is not None:
            self.buffer.load_state_dict(self._saved_buffer)
            self.buffer.cut_episodes()  # collection restarts from new episodes below
            self._saved_buffer = None
        self.out = self.env.reset(cfg.run.seed + 7919 * self.iteration)

    def iterate(self) -> dict[str, float]:
        algo, learner, buffer, device = self.cfg.algo, self.learner, self.buffer, self.device
        self.recent_obs, self.recent_avail = [], []
        for _ in range(algo.train_interval):
            obs, state = self.out.obs.to(device), self.out.state.to(device)  # (E, N, O), (E, S)
            self.recent_obs.append(obs)
            if self.out.avail_actions is not None:
                self.recent_avail.append(self.out.avail_actions.to(device))
            if self.env_steps < algo.warmup_steps:
                env_actions, actions = learner.random_act(self.env.n_envs)  # (E, N, A) each
            else:
                avail = self.out.avail_actions.to(device) if self.out.avail_actions is not None else None
                env_actions, actions, _ = learner.act(obs, state, avail)
            out = self.env.step(env_actions)
            buffer.insert(
                obs,
                state,
                actions,
                out.reward.to(device),
                out.final_obs.to(device),
                out.final_state.to(device),
                out.terminated.to(device),
                out.truncated.to(device),
            )
            self.track_episodes(out)
            self.out = out
            self.env_steps += self.env.n_envs
        metrics = {"buffer/size": float(len(buffer))}
        if self.env_steps >= algo.warmup_steps and len(buffer) >= algo.batch_size:
            start = time.perf_counter()
            n_updates = algo.train_interval * algo.update_per_train
            metrics.update(learner.train(buffer, n_updates))
            metrics["timers/updates_per_second"] = n_updates / (time.perf_counter() - start)
        return metrics

    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        obs = torch.cat(self.recent_obs)  # (train_interval · E, N, O)
        return obs, torch.cat(self.recent_avail) if self.recent_avail else None

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["buffer"] = self.buffer.state_dict() if self.cfg.algo.save_buffer else None
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._saved_buffer = state.get("buffer")
