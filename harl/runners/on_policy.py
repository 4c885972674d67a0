"""On-policy runner: fill a rollout buffer with all agents and envs, then hand it to the learner."""

from __future__ import annotations

import torch

from harl.buffers.rollout import RolloutBuffer
from harl.runners.base import Runner


class OnPolicyRunner(Runner):
    """Collects `episode_length` vector steps per iteration (one host↔device transfer each way per step)."""

    def __init__(self, cfg, run_dir, checkpoint=None) -> None:
        super().__init__(cfg, run_dir, checkpoint)
        self.buffer = RolloutBuffer(self.spec, cfg.algo.episode_length, cfg.run.n_rollout_threads, self.device)
        self.out = self.env.reset(cfg.run.seed + 7919 * self.iteration)

    def _to_device(self, out):
        obs, state = out.obs.to(self.device), out.state.to(self.device)
        avail = out.avail_actions.to(self.device) if out.avail_actions is not None else None
        return obs, state, avail

    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.buffer.flat("obs"), self.buffer.flat("avail")

    def iterate(self) -> dict[str, float]:
        next_values = self.collect()
        return self.learner.train(self.buffer, next_values)

    def collect(self) -> torch.Tensor:
        """Fill the buffer with one rollout; returns the values (E, N) of the states after it."""
        learner, buffer, gamma = self.learner, self.buffer, self.cfg.algo.gamma
        buffer.reset()
        obs, state, avail = self._to_device(self.out)
        for _ in range(buffer.length):
            env_actions, actions, log_probs = learner.act(obs, state, avail)  # (E, N, A), (E, N, A), (E, N)
            values = learner.values(state)  # (E, N)
            out = self.env.step(env_actions)
            rewards = out.reward.to(self.device)  # (E, N)
            truncated = (out.truncated & ~out.terminated).to(self.device)  # (E,)
            if bool(truncated.any()):  # bootstrap time-limit cuts from the final state
                final_values = learner.values(out.final_state.to(self.device)[truncated])
                rewards[truncated] += gamma * final_values
            buffer.insert(obs, state, avail, actions, log_probs, values, rewards, out.done.to(self.device).float())
            self.track_episodes(out)
            self.out = out
            obs, state, avail = self._to_device(out)
        self.env_steps += buffer.length * buffer.n_envs
        return learner.values(state)
