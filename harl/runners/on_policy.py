"""On-policy runner: fill the learner's rollout buffer with all agents and envs, then hand it over."""

from __future__ import annotations

import torch

from harl.algos.base import OnPolicyLearner
from harl.models.recurrent import reset_hidden
from harl.runners.base import ActionWatch, Runner


class OnPolicyRunner(Runner):
    """Collects the schedule's `steps_per_iteration` (`episode_length`) vector steps per iteration (one
    host↔device transfer each way per step), then calls the learner's `train` on the finished rollout.

    Recurrent learners' actors carry hidden states (E, N, H) from step to step and across iterations,
    zeroed where an episode ends; the buffer keeps those the training sequences start from. Checkpoints do
    not hold them: a resumed run restarts its envs and hidden states from fresh episodes.
    """

    learner: OnPolicyLearner

    def __init__(self, cfg, run_dir, checkpoint=None) -> None:
        super().__init__(cfg, run_dir, checkpoint)
        self.buffer = self.learner.make_buffer(self.env.n_envs)  # every seed's envs, seed-major
        self.out = self.env.reset(cfg.run.seed + 7919 * self.iteration)
        self.actor_hidden = self.learner.initial_hidden(self.env.n_envs)  # (E, N, H) or None
        self.actions = ActionWatch()

    def _to_device(self, out):
        obs, state = out.obs.to(self.device), out.state.to(self.device)
        avail = out.avail_actions.to(self.device) if out.avail_actions is not None else None
        return obs, state, avail

    def recent_observations(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.buffer.flat("obs"), self.buffer.flat("avail")

    def iterate(self) -> list[dict[str, float]]:
        self.collect()
        return self.learner.train(self.buffer)

    def collect(self) -> None:
        """Fill the buffer with one rollout and finish it with the observations and states after it."""
        buffer = self.buffer
        buffer.reset()
        obs, state, avail = self._to_device(self.out)
        for _ in range(self.schedule.steps_per_iteration):
            action = self.learner.act(obs, state, avail, hidden=self.actor_hidden)
            self.actions.watch(action.env_actions)
            out = self.env.step(action.env_actions)
            done = out.done.to(self.device).float()  # (E,)
            buffer.insert(
                obs,
                state,
                avail,
                action.actions,
                action.log_probs,
                out.reward.to(self.device),  # (E, N)
                done,
                self.actor_hidden,
                truncated=(out.truncated & ~out.terminated).to(self.device),  # (E,): time-limit cuts
                final_obs=out.final_obs.to(self.device),  # (E, N, O)
                final_state=out.final_state.to(self.device),  # (E, S)
                any_truncated=out.any_truncated,
            )
            self.actor_hidden = reset_hidden(action.hidden, done)
            self.track_episodes(out)
            self.out = out
            obs, state, avail = self._to_device(out)
        buffer.finish(obs, state)
        self.env_steps += buffer.length * self.cfg.run.n_rollout_threads  # each seed's own
        self.actions.check(self.env_steps)
