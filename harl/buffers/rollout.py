"""Preallocated on-policy rollout storage with GAE, agents as a tensor dimension."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from harl.envs.spec import EnvSpec


class RolloutBuffer:
    """T steps of n_envs environments, all agents at once, on the training device.

    Truncated episodes are bootstrapped by the runner, which adds γ·V(final state) to the last
    reward before insertion; `dones` therefore cut GAE at every episode end.
    """

    def __init__(self, spec: EnvSpec, episode_length: int, n_envs: int, device: torch.device) -> None:
        t, e, n = episode_length, n_envs, spec.n_agents
        self.length, self.n_envs, self.n_agents = t, e, n
        self.obs = torch.zeros(t, e, n, spec.obs_dim_max, device=device)  # (T, E, N, O)
        self.state = torch.zeros(t, e, spec.state_dim, device=device)  # (T, E, S)
        self.avail = (
            torch.ones(t, e, n, spec.act_dim_max, dtype=torch.bool, device=device) if spec.has_avail_actions else None
        )  # (T, E, N, A)
        action_dtype = torch.long if spec.discrete else torch.float32
        self.actions = torch.zeros(t, e, n, spec.action_shape, dtype=action_dtype, device=device)  # (T, E, N, A)
        self.log_probs = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.values = torch.zeros(t + 1, e, n, device=device)  # (T+1, E, N), denormalised
        self.rewards = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.dones = torch.zeros(t, e, device=device)  # (T, E): episode ended after step t
        self.returns = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.advantages = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.step = 0

    def insert(self, obs, state, avail, actions, log_probs, values, rewards, dones) -> None:
        """Store one vector step (all tensors already on the buffer's device)."""
        t = self.step
        self.obs[t], self.state[t], self.actions[t] = obs, state, actions
        if self.avail is not None:
            self.avail[t] = avail
        self.log_probs[t], self.values[t], self.rewards[t], self.dones[t] = log_probs, values, rewards, dones
        self.step += 1

    def compute_gae(self, next_values: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Generalised advantage estimation; next_values (E, N) are V of the state after the last step."""
        assert self.step == self.length, "compute_gae needs a full rollout"
        self.values[-1] = next_values
        gae = torch.zeros_like(next_values)
        for t in reversed(range(self.length)):  # inherently sequential in time
            not_done = (1.0 - self.dones[t]).unsqueeze(-1)  # (E, 1)
            delta = self.rewards[t] + gamma * self.values[t + 1] * not_done - self.values[t]
            gae = delta + gamma * gae_lambda * not_done * gae
            self.advantages[t] = gae
        self.returns.copy_(self.advantages + self.values[:-1])

    def flat(self, name: str) -> torch.Tensor | None:
        """A stored field with (T, E) merged into one batch dimension."""
        value = getattr(self, name)
        if value is None:
            return None
        if name == "values":
            value = value[:-1]
        return value.reshape(self.length * self.n_envs, *value.shape[2:])

    def minibatches(self, num_mini_batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Random index sets over the T·E samples (each sample holds all agents)."""
        batch = self.length * self.n_envs
        perm = torch.randperm(batch, generator=generator).to(self.obs.device)
        size = batch // num_mini_batch
        for k in range(num_mini_batch):
            yield perm[k * size : (k + 1) * size]

    def reset(self) -> None:
        self.step = 0
