"""On-policy runner: fill a rollout buffer with all agents and envs, then hand it to the learner."""

from __future__ import annotations

import torch

from harl.buffers.rollout import RolloutBuffer
from harl.models.recurrent import reset_hidden
from harl.runners.base import Runner

VALUE_CHUNK = 16384  # states per critic call when evaluating a whole rollout (bounds the activations' memory)


class OnPolicyRunner(Runner):
    """Collects `episode_length` vector steps per iteration (one host↔device transfer each way per step).

    Recurrent learners carry the actor's and the critic's hidden states (E, N, H) from step to step and
    across iterations, zeroed where an episode ends; the buffer keeps those the training sequences start
    from. Checkpoints do not hold them: a resumed run restarts its envs and hidden states from fresh episodes.
    """

    def __init__(self, cfg, run_dir, checkpoint=None) -> None:
        super().__init__(cfg, run_dir, checkpoint)
        learner = self.learner
        self.buffer = RolloutBuffer(
            self.spec,
            cfg.algo.episode_length,
            cfg.run.n_rollout_threads,
            self.device,
            hidden_size=learner.hidden_size,
            chunk_length=learner.chunk_length,
        )
        self.out = self.env.reset(cfg.run.seed + 7919 * self.iteration)
        self.actor_hidden = learner.initial_hidden(cfg.run.n_rollout_threads)  # (E, N, H) or None
        self.critic_hidden = learner.initial_hidden(cfg.run.n_rollout_threads)

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
        """Fill the buffer with one rollout; returns the values (E, N) of the states after it.

        A feed-forward critic is evaluated once on all the rollout's states after it (its weights do not
        change during the rollout), which keeps it off the per-step path; time-limit cuts are bootstrapped
        then too. A recurrent critic runs step by step with its hidden states, overlapping the env step.
        """
        learner, buffer, gamma = self.learner, self.buffer, self.cfg.algo.gamma
        buffer.reset()
        values_per_step = learner.recurrent
        cuts: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, envs (k,), final states (k, S))
        obs, state, avail = self._to_device(self.out)
        values = critic_hidden = None
        for step in range(buffer.length):
            env_actions, actions, log_probs, actor_hidden = learner.act(
                obs, state, avail, hidden=self.actor_hidden
            )  # (E, N, A), (E, N, A), (E, N), (E, N, H) or None
            step_async = getattr(self.env, "step_async", None)
            if step_async is not None:  # worker processes step while a recurrent critic evaluates
                step_async(env_actions)
            if values_per_step:
                values, critic_hidden = learner.values(state, self.critic_hidden)  # (E, N), (E, N, H)
            out = self.env.step_wait() if step_async is not None else self.env.step(env_actions)
            rewards = out.reward.to(self.device)  # (E, N)
            truncated = (out.truncated & ~out.terminated).to(self.device)  # (E,)
            if bool(truncated.any()):  # bootstrap time-limit cuts from the final state
                final_state = out.final_state.to(self.device)[truncated]  # (k, S)
                if values_per_step:
                    final_values, _ = learner.values(final_state, critic_hidden[truncated])
                    rewards[truncated] += gamma * final_values
                else:
                    cuts.append((step, truncated.nonzero().squeeze(1), final_state))
            done = out.done.to(self.device).float()  # (E,)
            buffer.insert(
                obs, state, avail, actions, log_probs, values, rewards, done, self.actor_hidden, self.critic_hidden
            )
            self.actor_hidden = reset_hidden(actor_hidden, done)
            self.critic_hidden = reset_hidden(critic_hidden, done)
            self.track_episodes(out)
            self.out = out
            obs, state, avail = self._to_device(out)
        self.env_steps += buffer.length * buffer.n_envs
        if values_per_step:
            return learner.values(state, self.critic_hidden)[0]
        return self._values_after_rollout(state, cuts)

    def _values_after_rollout(self, last_state: torch.Tensor, cuts: list) -> torch.Tensor:
        """Feed-forward critics: the rollout's values, its time-limit bootstraps and the values (E, N) of
        `last_state` (E, S), the states after it, from critic calls on `VALUE_CHUNK` states at a time."""
        learner, buffer = self.learner, self.buffer
        t, e = buffer.length, buffer.n_envs
        final_states = [final for _, _, final in cuts]  # (k_i, S) each
        states = torch.cat([buffer.state.flatten(0, 1), last_state, *final_states])  # (T·E + E + Σk, S)
        values = torch.cat([learner.values(chunk)[0] for chunk in states.split(VALUE_CHUNK)])  # (T·E + E + Σk, N)
        buffer.values[:t] = values[: t * e].view(t, e, -1)
        offset = (t + 1) * e
        for step, envs, final in cuts:
            buffer.rewards[step, envs] += self.cfg.algo.gamma * values[offset : offset + len(final)]
            offset += len(final)
        return values[t * e : (t + 1) * e]
