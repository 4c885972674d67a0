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

        Only the actor runs at every step. The critic's weights do not change during a rollout, so it is
        evaluated once on all the rollout's states after it (a recurrent critic along them from its
        carried hidden states), time-limit cuts are bootstrapped then too, and its per-step cost stays
        off the path between env steps.
        """
        learner, buffer = self.learner, self.buffer
        buffer.reset()
        cuts: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, envs (k,), final states (k, S))
        obs, state, avail = self._to_device(self.out)
        for step in range(buffer.length):
            env_actions, actions, log_probs, actor_hidden = learner.act(
                obs, state, avail, hidden=self.actor_hidden
            )  # (E, N, A), (E, N, A), (E, N), (E, N, H) or None
            out = self.env.step(env_actions)
            truncated = (out.truncated & ~out.terminated).to(self.device)  # (E,)
            if bool(truncated.any()):  # time-limit cuts, bootstrapped from their final states after the rollout
                cuts.append((step, truncated.nonzero().squeeze(1), out.final_state.to(self.device)[truncated]))
            done = out.done.to(self.device).float()  # (E,)
            rewards = out.reward.to(self.device)  # (E, N)
            buffer.insert(obs, state, avail, actions, log_probs, rewards, done, self.actor_hidden)
            self.actor_hidden = reset_hidden(actor_hidden, done)
            self.track_episodes(out)
            self.out = out
            obs, state, avail = self._to_device(out)
        self.env_steps += buffer.length * buffer.n_envs
        if learner.recurrent:
            return self._recurrent_values_after_rollout(state, cuts)
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
        self._bootstrap(cuts, values[(t + 1) * e :])
        return values[t * e : (t + 1) * e]

    def _recurrent_values_after_rollout(self, last_state: torch.Tensor, cuts: list) -> torch.Tensor:
        """Recurrent critics: the critic runs along the rollout's states and `last_state` from the hidden states
        carried into the rollout, zeroed after every episode end, as it would have step by step. It stores the
        hidden states the training chunks start from and carries those before `last_state` on; a cut at step
        t is valued on its final state from the hidden state after step t."""
        learner, buffer = self.learner, self.buffer
        t, e, chunk = buffer.length, buffer.n_envs, buffer.chunk_length
        states = torch.cat([buffer.state, last_state.unsqueeze(0)])  # (T+1, E, S)
        resets = torch.cat([torch.zeros_like(buffer.dones[:1]), buffer.dones])  # (T+1, E): zero after an end
        envs_per_call = max(1, VALUE_CHUNK // (t + 1))
        values, hiddens = zip(
            *(
                learner.values_sequence(states[:, envs], self.critic_hidden[envs], resets[:, envs])
                for envs in torch.arange(e, device=self.device).split(envs_per_call)
            ),
            strict=True,
        )
        values, hiddens = torch.cat(values, dim=1), torch.cat(hiddens, dim=1)  # (T+1, E, N), (T+1, E, N, H)
        # hidden states before each step: the carried ones, then those after the previous step, zeroed at ends
        before = torch.cat([self.critic_hidden.unsqueeze(0), reset_hidden(hiddens[:t], buffer.dones)])
        buffer.critic_hidden.copy_(before[:t:chunk])  # (⌈T/L⌉, E, N, H): the start of every training chunk
        self.critic_hidden = before[t]
        buffer.values[:t] = values[:t]
        if cuts:
            final_states = torch.cat([final for _, _, final in cuts])  # (Σk, S)
            final_hidden = torch.cat([hiddens[step, envs] for step, envs, _ in cuts])  # (Σk, N, H)
            self._bootstrap(cuts, learner.values(final_states, final_hidden)[0])
        return values[t]

    def _bootstrap(self, cuts: list, final_values: torch.Tensor) -> None:
        """Add γ·V(final state) to the rewards of the time-limit cuts; `final_values` (Σk, N) in `cuts`' order."""
        offset = 0
        for step, envs, final in cuts:
            self.buffer.rewards[step, envs] += self.cfg.algo.gamma * final_values[offset : offset + len(final)]
            offset += len(final)
