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

A population of P seeds (`--seeds P`) keeps every seed's envs side by side, seed-major (P·E envs): seed s
samples only from its own E envs, with its own generator, exactly as its solo run's buffer of E envs samples;
`ReplayBatch.for_networks` lays a sampled population batch out as the population's networks read it, and
each seed's checkpoint holds its own envs' part (`state_dict(seed)`), laid out as a solo run's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from harl.errors import CheckpointError
from harl.models.population import SeedLayout
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

    def for_networks(self, layout: SeedLayout) -> ReplayBatch:
        """A population's batch of P·B rows (seed-major: B per seed) as its networks read it: per-agent fields
        (B, P·n, ...), states (B, P, S), per-transition fields (B, P). A batch of one seed is returned as it is."""
        if layout.seeds == 1:
            return self
        per_agent = {"obs", "actions", "reward", "next_obs", "avail", "next_avail"}
        per_seed = {"state", "next_state"}
        laid_out = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name in per_agent:
                laid_out[field.name] = layout.to_agents(value)
            elif field.name in per_seed:
                laid_out[field.name] = layout.states_to_seeds(value)
            else:  # (P·B,) -> (B, P)
                laid_out[field.name] = value.unflatten(0, (layout.seeds, -1)).t()
        return replace(self, **laid_out)


class ReplayBuffer:
    """Ring buffer of vector steps with O(batch) uniform sampling and n-step targets.

    Args:
        spec: the environment's spec (sizes).
        buffer_size: capacity in transitions (vector steps × envs) of each seed, rounded up to whole vector steps.
        n_envs: environments written per vector step (every seed's).
        n_step: maximum number of rewards summed into a target.
        gamma: discount factor.
        device: where the storage lives (the training device).
        seeds: the seeds whose envs lie side by side, seed-major (n_envs / seeds each).
    """

    FIELDS = ("obs", "state", "actions", "rewards", "terminated", "truncated", "next_obs", "next_state")

    def __init__(
        self,
        spec: EnvSpec,
        buffer_size: int,
        n_envs: int,
        n_step: int,
        gamma: float,
        device: torch.device,
        seeds: int = 1,
    ) -> None:
        self.seeds, self.seed_envs = seeds, n_envs // seeds  # each seed's envs
        t, e, n = max(1, math.ceil(buffer_size / self.seed_envs)), n_envs, spec.n_agents
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
        """Transitions held (of each seed)."""
        return self.filled * self.seed_envs

    @property
    def capacity(self) -> int:
        """Transitions it can hold (of each seed)."""
        return self.length * self.seed_envs

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

    def sample(self, batch_size: int, rngs: torch.Generator | Sequence[torch.Generator]) -> ReplayBatch:
        """`batch_size` transitions of each seed drawn uniformly (with replacement) from its own envs with its own
        generator (one per seed), with their n-step targets: P·B rows, seed-major."""
        if isinstance(rngs, torch.Generator):
            rngs = [rngs]
        draws = [torch.randint(len(self), (batch_size,), generator=g) for g in rngs]  # (B,) each
        flat = (draws[0] if self.seeds == 1 else torch.cat(draws)).to(self.device)  # (P·B,)
        env = flat % self.seed_envs
        if self.seeds > 1:  # each seed's own envs
            env = env + torch.arange(self.seeds, device=self.device).repeat_interleave(batch_size) * self.seed_envs
        return self.gather(flat // self.seed_envs, env)

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

    def _envs(self, seed: int) -> slice:
        return slice(seed * self.seed_envs, (seed + 1) * self.seed_envs)

    def state_dict(self, seed: int = 0) -> dict:
        """Seed `seed`'s envs' part of the storage, filled steps only, and the write position (for checkpoints):
        a solo run's buffer state."""
        envs = self._envs(seed)
        return {
            "length": self.length,
            "n_envs": self.seed_envs,
            "head": self.head,
            "filled": self.filled,
            **{name: getattr(self, name)[: self.filled, envs].clone() for name in self.fields},
        }

    def load_state_dict(self, state: dict, seed: int = 0) -> None:
        """Restore `state_dict(seed)`'s output into seed `seed`'s envs. A buffer of another length (another
        `buffer_size`, or a run of another length: see `harl.algos.off_policy_base`) keeps the newest steps that fit.
        Every seed of a population is restored from the same step, so they share the write position."""
        if state["n_envs"] != self.seed_envs:
            raise CheckpointError(
                f"the checkpoint's replay buffer holds {state['n_envs']} envs, this run's {self.seed_envs}: resume "
                "with the same n_rollout_threads"
            )
        for name in self.fields:
            if name not in state:
                raise CheckpointError(f"the checkpoint's replay buffer has no field {name!r}")
            if state[name].shape[2:] != getattr(self, name).shape[2:]:
                raise CheckpointError(f"the checkpoint's replay buffer field {name!r} has another shape")
        envs, old_length, filled, head = self._envs(seed), state["length"], state["filled"], state["head"]
        if old_length == self.length:  # slot for slot, so sampling continues as it would have
            for name in self.fields:
                getattr(self, name)[:filled, envs] = state[name].to(self.device)
            self.head, self.filled = head, filled
            return
        kept = min(filled, self.length)  # the newest steps that fit, in the order they were written
        order = torch.arange(head - kept, head) % old_length if filled == old_length else torch.arange(filled)[-kept:]
        for name in self.fields:
            getattr(self, name)[:kept, envs] = state[name][order].to(self.device)
        self.head, self.filled = kept % self.length, kept
