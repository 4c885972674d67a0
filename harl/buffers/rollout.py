"""Preallocated on-policy rollout storage, agents as a tensor dimension, and its training sequences."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from harl.models.population import SeedLayout
from harl.spec import EnvSpec


class RolloutBuffer:
    """T steps of n_envs environments, all agents at once, on the training device.

    The runner writes it (`reset`, `insert` at every vector step, `finish` with the states after the
    rollout) and hands it to the learner, which reads it and computes the rest in one step
    (`PPOLearner.prepare`: the critic's values, γ·V(final state) added to the reward of every step where a time
    limit cut an episode (`cuts`; `dones` end GAE at every episode end), GAE) and cuts it into training
    sequences with them (`sequences`).

    Recurrent learners train on chunks of `chunk_length` consecutive steps of one env (see `Sequences`);
    for them the buffer keeps the actor's hidden states at the first step of every chunk.

    Args:
        spec: the environment's spec.
        episode_length: T, vector steps per rollout.
        n_envs: E, parallel environments.
        device: storage device.
        hidden_size: size of the recurrent hidden states to keep (0: feed-forward learner, none kept).
        chunk_length: L, steps per training sequence (1 for feed-forward learners; at most T).
    """

    def __init__(
        self,
        spec: EnvSpec,
        episode_length: int,
        n_envs: int,
        device: torch.device,
        hidden_size: int = 0,
        chunk_length: int = 1,
    ) -> None:
        t, e, n = episode_length, n_envs, spec.n_agents
        self.length, self.n_envs, self.n_agents = t, e, n
        self.chunk_length = min(chunk_length, t)
        self.obs = torch.zeros(t, e, n, spec.obs_dim_max, device=device)  # (T, E, N, O)
        self.state = torch.zeros(t, e, spec.state_dim, device=device)  # (T, E, S)
        self.avail = (
            torch.ones(t, e, n, spec.act_dim_max, dtype=torch.bool, device=device) if spec.has_avail_actions else None
        )  # (T, E, N, A)
        action_dtype = torch.long if spec.discrete else torch.float32
        self.actions = torch.zeros(t, e, n, spec.action_shape, dtype=action_dtype, device=device)  # (T, E, N, A)
        self.log_probs = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.rewards = torch.zeros(t, e, n, device=device)  # (T, E, N)
        self.dones = torch.zeros(t, e, device=device)  # (T, E): episode ended after step t
        chunks = math.ceil(t / self.chunk_length)
        # (⌈T/L⌉, E, N, H): the actor's hidden states before the first step of every chunk (recurrent learners only)
        self.actor_hidden = torch.zeros(chunks, e, n, hidden_size, device=device) if hidden_size else None
        self.next_obs = torch.zeros(e, n, spec.obs_dim_max, device=device)  # (E, N, O) after the rollout
        self.next_state = torch.zeros(e, spec.state_dim, device=device)  # (E, S) after the rollout
        self.cuts: list[TimeLimitCut] = []
        self.step = 0

    def insert(
        self,
        obs,
        state,
        avail,
        actions,
        log_probs,
        rewards,
        dones,
        actor_hidden: torch.Tensor | None = None,
        truncated: torch.Tensor | None = None,
        final_obs: torch.Tensor | None = None,
        final_state: torch.Tensor | None = None,
        any_truncated: bool | None = None,
    ) -> None:
        """Store one vector step (all tensors already on the buffer's device); recurrent learners also pass
        the actor's hidden states (E, N, H) the step started from. `truncated` (E,) marks the envs whose
        episode a time limit cut at this step (not terminated), `final_obs` (E, N, O) and `final_state`
        (E, S) the observations and states they ended in, for the learner's bootstrap; `any_truncated`, when the
        env knows it on the host (`StepOutput.any_truncated`), spares reading `truncated`. The critic's side is
        the learner's, computed after the rollout on all of it."""
        t = self.step
        if any_truncated is None and truncated is not None:
            any_truncated = bool(truncated.any())
        if any_truncated:  # the cut envs' indices: read on the host at a cut only
            envs = truncated.nonzero().squeeze(1)
            self.cuts.append(TimeLimitCut(t, envs, final_obs[envs], final_state[envs]))
        self.obs[t], self.state[t], self.actions[t] = obs, state, actions
        if self.avail is not None:
            self.avail[t] = avail
        self.log_probs[t], self.rewards[t], self.dones[t] = log_probs, rewards, dones
        if self.actor_hidden is not None and t % self.chunk_length == 0:
            self.actor_hidden[t // self.chunk_length] = actor_hidden
        self.step += 1

    def finish(self, next_obs: torch.Tensor, next_state: torch.Tensor) -> None:
        """Close a full rollout with the observations (E, N, O) and states (E, S) after its last step."""
        assert self.step == self.length, "finish needs a full rollout"
        self.next_obs.copy_(next_obs)
        self.next_state.copy_(next_state)

    def flat(self, name: str) -> torch.Tensor | None:
        """A stored field with (T, E) merged into one batch dimension."""
        value = getattr(self, name)
        if value is None:
            return None
        return value.reshape(self.length * self.n_envs, *value.shape[2:])

    def sequences(
        self,
        advantages: torch.Tensor,
        values: torch.Tensor,
        returns: torch.Tensor,
        critic_hidden: torch.Tensor | None = None,
        centralised_critic: bool = True,
        layout: SeedLayout | None = None,
    ) -> Sequences:
        """The rollout as training sequences of `chunk_length` steps, with the learner's advantages, values at
        collection and returns (T, E, N each) and, for recurrent critics, its hidden states before every chunk
        (⌈T/L⌉, E, N, H); the critic reads the states (centralised) or every agent's own observation. With a
        population's `layout`, the sequences hold its virtual agents (see `Sequences`)."""
        return Sequences(self, advantages, values, returns, critic_hidden, centralised_critic, layout)

    def reset(self) -> None:
        """Start a new rollout."""
        self.step = 0
        self.cuts = []


@dataclass(frozen=True)
class TimeLimitCut:
    """Envs whose episode a time limit cut at one step of the rollout.

    Attributes:
        step: the step t.
        envs: (k,) the envs cut.
        final_obs: (k, N, O) the observations their episodes ended in.
        final_state: (k, S) the states their episodes ended in (the reward of step t gains γ·V of them).
    """

    step: int
    envs: torch.Tensor
    final_obs: torch.Tensor
    final_state: torch.Tensor


@dataclass
class Chunks:
    """A selection of B training sequences of L steps.

    Attributes:
        index: (B,) the selected chunks.
        valid: (L, B) bool, the real (not padding) steps; None when every step is real.
    """

    index: torch.Tensor
    valid: torch.Tensor | None

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """(L, B, ...) values along the selected sequences -> (M, ...) at their M real steps."""
        return x.reshape(-1, *x.shape[2:]) if self.valid is None else x[self.valid]

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """(L, C, ...) values laid out like all the sequences -> (M, ...) at the selection's real steps."""
        return self.flat(gather_chunks(x, self.index))


def gather_chunks(x: torch.Tensor, index: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
    """(L, C, K, ...) -> (L, B, k, ...): the chunks `index` of the columns `columns` (all K when None).

    `index` is (B,) for every column (a solo run), or (P, B), one selection per seed of a population whose K
    columns (its virtual agents, or its seeds) form P equal seed blocks, seed-major: each column takes its own
    seed's chunks. One gather either way."""
    if index.dim() == 1:
        return x[:, index] if columns is None else x[:, index.unsqueeze(1), columns]
    width = x.shape[2]
    columns = torch.arange(width, device=x.device) if columns is None else columns
    rows = index[columns // (width // index.shape[0])]  # (k, B): each column's seed's chunks
    return x[:, rows.T, columns]


def first_steps(x: torch.Tensor, index: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
    """(C, K, ...) values at the chunks' first steps -> (B, k, ...) for the chunks `index` ((B,), or (P, B) per seed)
    of the columns `columns` (all K when None), as `gather_chunks` selects them."""
    return gather_chunks(x.unsqueeze(0), index, columns)[0]


@dataclass
class ActorBatch(Chunks):
    """What the actor loss needs for the k selected agents of B sequences (inputs as sequences, targets flat)."""

    agents: torch.Tensor | None  # (k,) the selected agents; None: all
    obs: torch.Tensor  # (L, B, k, O)
    actions: torch.Tensor  # (L, B, k, action_shape)
    avail: torch.Tensor | None  # (L, B, k, A)
    hidden: torch.Tensor | None  # (B, k, H) actor hidden states before each sequence (recurrent only)
    resets: torch.Tensor | None  # (L, B) 1.0 where an episode starts, a population's (L, B, P) (recurrent only)
    log_probs: torch.Tensor  # (M, k) log-probs at collection
    advantages: torch.Tensor  # (M, k) normalised advantages


@dataclass
class CriticBatch(Chunks):
    """What the critic loss needs for B sequences (inputs as sequences, targets flat)."""

    inputs: torch.Tensor  # (L, B, S) states, or (L, B, N, O) observations for decentralised critics
    hidden: torch.Tensor | None  # (B, N, H) critic hidden states before each sequence (recurrent only)
    resets: torch.Tensor | None  # (L, B), a population's (L, B, P)
    values: torch.Tensor  # (M, N) values at collection (denormalised)
    returns: torch.Tensor  # (M, N)


class Sequences:
    """A rollout cut into C = E·⌈T/L⌉ training sequences: chunk j·E + e holds steps jL .. jL+L-1 of env e.

    Every field is laid out (L, C, ...). When L does not divide T, each env's last chunk is padded to L
    steps by repeating its last step; `valid` marks the real steps, and only those enter the losses
    (`Chunks.flat`). A chunk starts from the hidden states stored at its first step, and `resets` zero
    them inside the chunk where an episode starts. Feed-forward learners use L = 1 (every sample is a
    chunk, in the order of `RolloutBuffer.flat`).

    A population's rollout (a `SeedLayout`: P·E envs of n agents) becomes sequences of its P·n virtual agents over
    the E envs of one seed, C = E·⌈T/L⌉: column s·n + i of chunk c is agent i of seed s in that seed's chunk c, a
    centralised critic reads (L, C, P, S) states and episode starts are per seed, (L, C, P). Minibatches then
    select chunks per seed, (P, B), each seed's from its own generator (so its chunks are not padded: `valid` is
    every seed's alike only while L divides T, which `harl.experiment.check_seeds` requires).
    """

    def __init__(
        self,
        buffer: RolloutBuffer,
        advantages: torch.Tensor,
        values: torch.Tensor,
        returns: torch.Tensor,
        critic_hidden: torch.Tensor | None = None,
        centralised_critic: bool = True,
        layout: SeedLayout | None = None,
    ) -> None:
        layout = layout or SeedLayout(1, buffer.n_agents)
        t, e, steps = buffer.length, buffer.n_envs // layout.seeds, buffer.chunk_length
        self.seeds = layout.seeds
        self.length = steps
        self._per_env = math.ceil(t / steps)
        self._pad = self._per_env * steps - t
        self.n_chunks = self._per_env * e
        self.device = buffer.obs.device

        def agents_layout(x: torch.Tensor) -> torch.Tensor:  # (T, P·E, n, ...) -> (L, C, P·n, ...)
            return self._layout(layout.to_agents(x, env_dim=1))

        self.obs = agents_layout(buffer.obs)  # (L, C, N, O)
        # (L, C, S) states (a population's: (L, C, P, S)), or the observations for decentralised critics
        self.critic_inputs = self._layout(layout.states_to_seeds(buffer.state, 1)) if centralised_critic else self.obs
        self.avail = None if buffer.avail is None else agents_layout(buffer.avail)  # (L, C, N, A)
        self.actions = agents_layout(buffer.actions)  # (L, C, N, action_shape)
        self.log_probs = agents_layout(buffer.log_probs)  # (L, C, N)
        self.values = agents_layout(values)  # (L, C, N)
        self.returns = agents_layout(returns)  # (L, C, N)
        self.advantages = agents_layout(advantages)  # (L, C, N)
        self.actor_hidden = self.critic_hidden = self.resets = None
        if buffer.actor_hidden is not None:
            assert self.seeds == 1 or not self._pad, "a population's sequences cannot be padded (check_seeds)"
            # (C, N, H): the hidden states before every chunk (a population's: of its virtual agents)
            self.actor_hidden = layout.to_agents(buffer.actor_hidden, env_dim=1).flatten(0, 1)
            assert critic_hidden is not None, "recurrent sequences need the critic's hidden states before every chunk"
            self.critic_hidden = layout.to_agents(critic_hidden, env_dim=1).flatten(0, 1)
            starts = torch.zeros_like(buffer.dones)  # (T, E): an episode starts at step t
            starts[1:] = buffer.dones[:-1]
            self.resets = self._layout(layout.states_to_seeds(starts, 1))  # (L, C), a population's (L, C, P)
        self.valid = None
        if self._pad:
            real = torch.arange(self._per_env * steps, device=self.device) < t  # (⌈T/L⌉·L,)
            self.valid = real.view(self._per_env, steps).t().unsqueeze(-1).expand(-1, -1, e).reshape(steps, -1)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """(T, E, ...) -> (L, C, ...), padding each env's last chunk with copies of its last step."""
        if self._pad:
            x = torch.cat([x, x[-1:].expand(self._pad, *x.shape[1:])])
        chunked = x.view(self._per_env, self.length, *x.shape[1:]).transpose(0, 1)  # (L, ⌈T/L⌉, E, ...)
        return chunked.reshape(self.length, self.n_chunks, *x.shape[2:])

    def all_chunks(self) -> torch.Tensor:
        """(C,) the index of every chunk; (P, C) for a population (every seed's)."""
        every = torch.arange(self.n_chunks, device=self.device)
        return every if self.seeds == 1 else every.expand(self.seeds, -1)

    def minibatch_indices(
        self, num_mini_batch: int, generator: torch.Generator | Sequence[torch.Generator]
    ) -> Iterator[torch.Tensor]:
        """Random disjoint sets of C // num_mini_batch chunks: (B,), or (P, B) for a population, each seed's drawn
        from its own generator (one per seed)."""
        rngs = [generator] if isinstance(generator, torch.Generator) else list(generator)
        perms = [torch.randperm(self.n_chunks, generator=g) for g in rngs]  # each seed's own stream
        perm = (perms[0] if self.seeds == 1 else torch.stack(perms)).to(self.device)  # (C,) or (P, C)
        size = self.n_chunks // num_mini_batch
        for k in range(num_mini_batch):
            yield perm[..., k * size : (k + 1) * size]

    def _valid(self, index: torch.Tensor) -> torch.Tensor | None:
        return None if self.valid is None else self.valid[:, index]

    def actor_batch(self, index: torch.Tensor, agents: torch.Tensor | None = None) -> ActorBatch:
        """The chunks `index` ((B,), or (P, B) per seed) for the actor loss of the selected agents (all when None;
        a population's are k per seed, seed-major)."""

        def pick(x: torch.Tensor | None) -> torch.Tensor | None:  # (L, C, N, ...) -> (L, B, k, ...), one gather
            return None if x is None else gather_chunks(x, index, agents)

        hidden = None if self.actor_hidden is None else first_steps(self.actor_hidden, index, agents)  # (B, k, H)
        chunks = Chunks(index, self._valid(index))
        return ActorBatch(
            index=index,
            valid=chunks.valid,
            agents=agents,
            obs=pick(self.obs),
            actions=pick(self.actions),
            avail=pick(self.avail),
            hidden=hidden,
            resets=None if self.resets is None else gather_chunks(self.resets, index),
            log_probs=chunks.flat(pick(self.log_probs)),
            advantages=chunks.flat(pick(self.advantages)),
        )

    def critic_batch(self, index: torch.Tensor) -> CriticBatch:
        """The chunks `index` for the critic loss."""
        chunks = Chunks(index, self._valid(index))
        return CriticBatch(
            index=index,
            valid=chunks.valid,
            inputs=gather_chunks(self.critic_inputs, index),
            hidden=None if self.critic_hidden is None else first_steps(self.critic_hidden, index),
            resets=None if self.resets is None else gather_chunks(self.resets, index),
            values=chunks.take(self.values),
            returns=chunks.take(self.returns),
        )

    def actor_minibatches(
        self,
        num_mini_batch: int,
        generator: torch.Generator | Sequence[torch.Generator],
        agents: torch.Tensor | None = None,
    ) -> Iterator[ActorBatch]:
        for index in self.minibatch_indices(num_mini_batch, generator):
            yield self.actor_batch(index, agents)

    def critic_minibatches(
        self, num_mini_batch: int, generator: torch.Generator | Sequence[torch.Generator]
    ) -> Iterator[CriticBatch]:
        for index in self.minibatch_indices(num_mini_batch, generator):
            yield self.critic_batch(index)
