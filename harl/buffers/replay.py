"""Preallocated replay storage for off-policy learners, with n-step targets computed at sampling time.

The buffer is a ring of `length` vector steps of `n_envs` environments (`length = ceil(buffer_size
/ n_envs)`), all agents at once, on the training device. One `insert` writes one vector step.
Each slot keeps the transition's state, per-agent observations and actions (normalised ones for
continuous agents, action indices for discrete ones), per-agent rewards, the terminated / truncated
flags and the *next* observation and state — for a step that ended an episode, the final observation
and state of that episode (`StepOutput.final_obs`), never the first one of the next episode. Envs with
available-action masks also keep the masks of the observation and of the next one (all actions of a
final observation count as available: a terminated episode is not bootstrapped, and the env does not
report the masks of a truncated episode's last observation).

`sample` draws `batch_size` transitions uniformly with `torch.randint` (O(batch), never a
permutation of the buffer) and builds n-step targets on the fly: from a sampled step t of env e
it walks at most `n_step` steps forward in the same env, stopping after the first step that ended
an episode and before steps not written yet (or already overwritten by wrap-around). With L the
number of steps taken and j = t + L - 1 the last one:

    reward   = sum_{k<L} gamma^k r_{t+k}             (per agent)
    discount = gamma^L if step j was not a termination, else 0
    next_obs, next_state = the next observation and state stored at step j

so a time-limit truncation bootstraps from the final observation of its episode, a termination
does not bootstrap, and no target ever crosses into another episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harl.errors import CheckpointError
from harl.spec import EnvSpec


@dataclass
class ReplayBatch:
    """A sampled batch of n-step transitions (all agents)."""

    obs: torch.Tensor
    """(B, N, obs_dim_max) observations at the sampled step."""
    state: torch.Tensor
    """(B, state_dim) states at the sampled step."""
    actions: torch.Tensor
    """(B, N, act_dim_max) stored normalised actions, or (B, N, 1) int64 action indices (discrete), taken at
    the sampled step (`actor.critic_actions` turns them into what the critic reads)."""
    reward: torch.Tensor
    """(B, N) discounted n-step reward sums."""
    discount: torch.Tensor
    """(B,) gamma^L for bootstrapped targets, 0 after a termination."""
    next_obs: torch.Tensor
    """(B, N, obs_dim_max) observations to bootstrap from."""
    next_state: torch.Tensor
    """(B, state_dim) states to bootstrap from."""
    steps: torch.Tensor
    """(B,) int64 number of steps L summed into `reward`."""
    avail: torch.Tensor | None = None
    """(B, N, A) bool available actions at the sampled step (None: the env has no masks)."""
    next_avail: torch.Tensor | None = None
    """(B, N, A) bool available actions of the observations to bootstrap from."""

    def avail_of(self, agents: torch.Tensor) -> torch.Tensor | None:
        """The selected agents' available actions (B, k, A) at the sampled step, or None."""
        return None if self.avail is None else self.avail[:, agents]


class ReplayBuffer:
    """Ring buffer of vector steps with O(batch) uniform sampling and n-step targets.

    Args:
        spec: the environment's spec (sizes).
        buffer_size: capacity in transitions (vector steps × envs), rounded up to whole vector steps.
        n_envs: environments written per vector step.
        n_step: maximum number of rewards summed into a target.
        gamma: discount factor.
        device: where the storage lives (the training device).
    """

    FIELDS = ("obs", "state", "actions", "rewards", "terminated", "truncated", "next_obs", "next_state")

    def __init__(
        self, spec: EnvSpec, buffer_size: int, n_envs: int, n_step: int, gamma: float, device: torch.device
    ) -> None:
        t, e, n = max(1, math.ceil(buffer_size / n_envs)), n_envs, spec.n_agents
        self.length, self.n_envs, self.n_step, self.gamma = t, e, n_step, gamma
        self.device = torch.device(device)
        self.obs = torch.zeros(t, e, n, spec.obs_dim_max, device=device)  # (T, E, N, O)
        self.state = torch.zeros(t, e, spec.state_dim, device=device)  # (T, E, S)
        action_dtype = torch.long if spec.discrete else torch.float32
        self.actions = torch.zeros(t, e, n, spec.action_shape, dtype=action_dtype, device=device)  # (T, E, N, A|1)
        self.rewards = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.terminated = torch.zeros(t, e, dtype=torch.bool, device=device)  # (T, E)
        self.truncated = torch.zeros(t, e, dtype=torch.bool, device=device)  # (T, E)
        self.next_obs = torch.zeros(t, e, n, spec.obs_dim_max, device=device)  # (T, E, N, O)
        self.next_state = torch.zeros(t, e, spec.state_dim, device=device)  # (T, E, S)
        self.fields = list(self.FIELDS)
        if spec.has_avail_actions:
            self.avail = torch.ones(t, e, n, spec.act_dim_max, dtype=torch.bool, device=device)  # (T, E, N, A)
            self.next_avail = torch.ones(t, e, n, spec.act_dim_max, dtype=torch.bool, device=device)  # (T, E, N, A)
            self.fields += ["avail", "next_avail"]
        self.head = 0  # next slot to write
        self.filled = 0  # vector steps held (≤ length)
        self.offsets = torch.arange(n_step, device=device)  # (n,)
        self.discounts = gamma ** torch.arange(n_step + 1, dtype=torch.float32, device=device)  # (n+1,)

    def __len__(self) -> int:
        """Transitions held."""
        return self.filled * self.n_envs

    @property
    def capacity(self) -> int:
        """Transitions it can hold."""
        return self.length * self.n_envs

    @property
    def nbytes(self) -> int:
        """Bytes of preallocated storage."""
        return sum(getattr(self, name).nbytes for name in self.fields)

    def insert(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        next_state: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        avail: torch.Tensor | None = None,
        next_avail: torch.Tensor | None = None,
    ) -> None:
        """Write one vector step: obs (E, N, O), state (E, S), actions (E, N, A|1), rewards (E, N),
        next_obs (E, N, O) and next_state (E, S) (final ones where the episode ended), terminated
        and truncated (E,) bool; for envs with masks the available actions (E, N, A) of obs and next_obs."""
        t = self.head
        if "avail" in self.fields:
            self.avail[t], self.next_avail[t] = avail, next_avail
        self.obs[t], self.state[t], self.actions[t], self.rewards[t] = obs, state, actions, rewards
        self.next_obs[t], self.next_state[t] = next_obs, next_state
        self.terminated[t], self.truncated[t] = terminated, truncated
        self.head = (t + 1) % self.length
        self.filled = min(self.filled + 1, self.length)

    def sample(self, batch_size: int, generator: torch.Generator) -> ReplayBatch:
        """`batch_size` transitions drawn uniformly (with replacement) with their n-step targets."""
        flat = torch.randint(len(self), (batch_size,), generator=generator).to(self.device)  # (B,)
        return self.gather(flat // self.n_envs, flat % self.n_envs)

    def gather(self, t: torch.Tensor, e: torch.Tensor) -> ReplayBatch:
        """The n-step transitions starting at slots t (B,) of envs e (B,) (slots must hold data)."""
        # Steps from t to the newest written step, inclusive: later slots hold other (older) data.
        available = (self.head - 1 - t) % self.length + 1  # (B,)
        pos = (t.unsqueeze(1) + self.offsets) % self.length  # (B, n)
        env = e.unsqueeze(1).expand_as(pos)  # (B, n)
        written = self.offsets < available.unsqueeze(1)  # (B, n)
        ended = (self.terminated[pos, env] | self.truncated[pos, env]) & written  # (B, n)
        ended_before = (ended.long().cumsum(1) - ended.long()) > 0  # (B, n): an earlier step ended the episode
        taken = written & ~ended_before  # (B, n)
        steps = taken.sum(1)  # (B,) ≥ 1
        weights = taken * self.discounts[:-1]  # (B, n)
        reward = (self.rewards[pos, env] * weights.unsqueeze(-1)).sum(1)  # (B, N)
        last = pos.gather(1, (steps - 1).unsqueeze(1)).squeeze(1)  # (B,)
        discount = self.discounts[steps] * (~self.terminated[last, e]).float()  # (B,)
        return ReplayBatch(
            obs=self.obs[t, e],
            state=self.state[t, e],
            actions=self.actions[t, e],
            reward=reward,
            discount=discount,
            next_obs=self.next_obs[last, e],
            next_state=self.next_state[last, e],
            steps=steps,
            avail=self.avail[t, e] if "avail" in self.fields else None,
            next_avail=self.next_avail[last, e] if "avail" in self.fields else None,
        )

    def cut_episodes(self) -> None:
        """Mark the newest step of every env as truncated, so no n-step target runs past it: for when
        collection restarts from fresh episodes (a resumed run). Targets there bootstrap from its stored
        next observation, which is where the interrupted episode really went."""
        if self.filled:
            last = (self.head - 1) % self.length
            self.truncated[last] |= ~self.terminated[last]

    def state_dict(self) -> dict:
        """The filled part of the storage and the write position (for checkpoints)."""
        return {
            "length": self.length,
            "n_envs": self.n_envs,
            "head": self.head,
            "filled": self.filled,
            **{name: getattr(self, name)[: self.filled].clone() for name in self.fields},
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["length"], state["n_envs"]) != (self.length, self.n_envs):
            raise CheckpointError(
                f"the checkpoint's replay buffer holds {state['length']} steps x {state['n_envs']} envs, this run's "
                f"{self.length} x {self.n_envs}: resume with the same buffer_size and n_rollout_threads"
            )
        for name in self.fields:
            if name not in state:
                raise CheckpointError(f"the checkpoint's replay buffer has no field {name!r}")
            stored = state[name]
            if stored.shape[1:] != getattr(self, name).shape[1:]:
                raise CheckpointError(f"the checkpoint's replay buffer field {name!r} has another shape")
            getattr(self, name)[: stored.shape[0]] = stored.to(self.device)
        self.head, self.filled = state["head"], state["filled"]
