"""What every off-policy learner shares: the replay-related config, the joint Q critic with its
target copy, the critic regression, polyak averaging, metric aggregation and checkpoint state.

The two families build on it: `sac_base.py` (HASAC, MASAC) and `ddpg_base.py` (MADDPG, MATD3,
HADDPG, HATD3). Each learner's own update (in particular its actor update: sequential or
simultaneous) lives in its own file.

A learner of P seeds (`--seeds P`, see `harl.algos.seed_population`) is one learner over P·n virtual agents:
actors and the critic stacked from P solo members, one replay buffer of every seed's envs (each seed samples its
own with its own generator), per-seed temperatures, targets and noise streams. Its sampled batches are laid out
as its networks read them (`ReplayBatch.for_networks`): states (B, P, S), Q values and targets (B, P); each
seed's loss is its own batch mean, and the losses are summed over seeds, so no seed's gradient reaches another.
Metrics come out one dict per seed.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from harl.algos.base import ActOutput, CollectionSchedule, network_diagnostics
from harl.algos.seed_population import build_members, read_networks, read_optimizer, write_networks, write_optimizer
from harl.buffers.replay import ReplayBatch, ReplayBuffer
from harl.config import ExperimentConfig, bounded, check_bounds
from harl.errors import ConfigError
from harl.metrics.gradients import GradientStats
from harl.models.agent_mlp import AgentMLP, ForwardRecord
from harl.models.auxiliary import advance_networks
from harl.models.off_policy import JointQCritic, OffPolicyActor
from harl.models.population import SeedLayout
from harl.optim import AgentAdam
from harl.registry import ArchEntry
from harl.spec import EnvSpec


@dataclass
class OffPolicyConfig:
    """Hyper-parameters shared by the off-policy learners (HARL's names and defaults)."""

    warmup_steps: int = bounded(10_000, ge=0)
    """Env steps of uniformly random actions (within each agent's bounds) before learning starts."""
    train_interval: int = bounded(50, gt=0)
    """Vector steps collected between two training phases."""
    update_per_train: int = bounded(1, gt=0)
    """Gradient updates per collected vector step: each training phase runs train_interval × update_per_train
    updates (HARL's semantics)."""
    batch_size: int = bounded(1000, gt=0)
    """Transitions per gradient update."""
    buffer_size: int = bounded(1_000_000, gt=0)
    """Replay capacity in transitions (vector steps × n_rollout_threads), of each seed; a run of fewer env steps
    allocates only what it can fill (its num_env_steps, in whole vector steps)."""
    n_step: int = bounded(20, gt=0)
    """Rewards summed into a target before bootstrapping (stops at episode ends)."""
    gamma: float = bounded(0.99, ge=0, le=1)
    """Discount factor."""
    polyak: float = bounded(0.005, gt=0, le=1)
    """Target-network averaging rate: target ← (1 - polyak)·target + polyak·online."""
    lr: float = bounded(5e-4, gt=0)
    """Actor learning rate."""
    critic_lr: float = bounded(5e-4, gt=0)
    """Critic learning rate."""
    use_huber_loss: bool = False
    """Huber instead of squared TD error."""
    huber_delta: float = bounded(10.0, gt=0)
    """Huber loss threshold."""
    save_buffer: bool = False
    """Store the replay buffer in checkpoints, so a resumed run continues without refilling (large files)."""

    def validate(self) -> None:
        check_bounds(self, "algo")
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size ({self.batch_size}) cannot exceed buffer_size ({self.buffer_size})")

    def rollout_length(self) -> int:
        """No rollout buffer: transitions go to the replay buffer, which sizes itself to the run (see
        `ReplayLearner.make_buffer`)."""
        return 0

    def check_run(self, cfg: ExperimentConfig, pretrained_steps: int | None) -> None:
        """Refuse (one line) a new run that would end before its first update: updates start once `warmup_steps`
        env steps (after the `pretrained_steps` of any pre-training of the architecture) are collected and the
        replay buffer holds `batch_size` transitions, and happen at the end of each phase of `train_interval`
        vector steps. A saved run's config (`pretrained_steps` None) is past that."""
        if pretrained_steps is None:
            return
        run = cfg.run
        phase = self.train_interval * run.n_rollout_threads  # env steps between training phases
        last = math.ceil((run.num_env_steps - pretrained_steps) / phase) * phase  # env steps at the last phase
        waits = {"warmup_steps": (self.warmup_steps, "env steps"), "batch_size": (self.batch_size, "transitions")}
        late = {name: (value, unit) for name, (value, unit) in waits.items() if value > last}
        if late:
            after = (
                f" after the architecture's {pretrained_steps} env steps of pre-training" if pretrained_steps else ""
            )
            raise ConfigError(
                f"--num_env_steps {run.num_env_steps} would train nothing: {cfg.algo_name}'s first update waits for "
                + " and ".join(f"{name} {value} {unit}" for name, (value, unit) in late.items())
                + f", past this run's last training phase (at {last} env steps{after}); raise --num_env_steps to "
                f"{pretrained_steps + max(value for value, _ in late.values())} or lower "
                + " and ".join(f"--{name}" for name in late)
                + f" to {last} or less"
            )


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Gradients flow through `module` to its inputs, but no parameter gradients are computed."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


@torch.no_grad()
def polyak_update(online: nn.Module, target: nn.Module, rate: float) -> None:
    """target ← (1 - rate)·target + rate·online, for every parameter."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), rate)


class ReplayLearner(ABC):
    """Actors for all agents (built by the subclass), the joint Q critic and its target, optimisers: an
    `harl.algos.base.OffPolicyLearner`.

    Subclasses define `actor` (in `build_actor`), `n_q` (Q heads) and `update(buffer)`: one gradient
    update returning detached metric tensors.

    Args:
        spec: the environment's spec.
        cfg: the experiment config (`cfg.algo` is an `OffPolicyConfig`).
        arch: the architecture that builds the actors.
        device: the training device.
    """

    n_q: int = 2

    def __init__(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry, device: torch.device) -> None:
        self.spec, self.device, self.cfg = spec, device, cfg.algo
        self.seeds = cfg.run.seeds
        self.layout = SeedLayout(self.seeds, spec.n_agents)
        self.n_agents = spec.n_agents * self.seeds  # every seed's agents, seed-major (virtual agents)
        self.run_steps = cfg.run.num_env_steps  # each seed's: the most transitions its replay buffer can receive
        self.members: list[ReplayLearner] = []  # a population's solo learners, one per seed (`seed_population`)
        self.action_rngs: list[torch.Generator] = []  # a population's noise streams, one per seed
        self.actor: OffPolicyActor
        if self.seeds == 1:
            self.actor = self.build_actor(spec, cfg, arch).to(device)
            self.critic = JointQCritic(spec, self.n_q, cfg.model).to(device)
            self.rngs = [torch.Generator().manual_seed(cfg.run.seed)]
        else:
            solo = cast(Callable[..., ReplayLearner], type(self))  # a registered subclass: (spec, cfg, arch, device)
            self.members, self.action_rngs = build_members(
                lambda member_cfg: solo(spec, member_cfg, arch, device), cfg, device
            )
            self.actor = type(self.members[0].actor).population([m.actor for m in self.members], self.action_rngs)
            self.critic = JointQCritic.population([m.critic for m in self.members])
            self.rngs = [m.rng for m in self.members]  # each seed's sampling and agent-order stream
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = AgentAdam(self.actor.parameters(), lr=self.cfg.lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.updates = 0
        self.grad_stats = GradientStats(self.seeds) if cfg.run.grad_stats else None
        # The last actor update's agent groups in order: [[i], [j], ...] sequential, [[0, ..., N-1]] simultaneous
        # (a population's: one agent of every seed per group).
        self.last_order: list[list[int]] = []
        self.schedule = CollectionSchedule(
            steps_per_iteration=self.cfg.train_interval,
            warmup_steps=self.cfg.warmup_steps,
            updates_per_iteration=self.cfg.train_interval * self.cfg.update_per_train,
            min_transitions=self.cfg.batch_size,
        )
        net = self.actor.net
        # No agent's step moves another agent's weights: a sequential update may replay each agent's pass of the
        # update's starting forward in its turn rather than recompute it (`record_actors`).
        self.replays_start_pass = not arch.shares_parameters and isinstance(net, AgentMLP) and net.replayable

    @property
    def rng(self) -> torch.Generator:
        """The first seed's sampling and agent-order stream (a solo run's only one)."""
        return self.rngs[0]

    @abstractmethod
    def build_actor(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry) -> OffPolicyActor:
        """The module serving every agent's policy (built through `arch`)."""

    def make_buffer(self, n_envs: int) -> ReplayBuffer:
        """A replay buffer for `n_envs` envs (every seed's), with n-step targets, of `buffer_size` transitions per
        seed, or of as many as the run can fill when that is fewer (`num_env_steps`, in whole vector steps)."""
        seed_envs = n_envs // self.seeds
        size = min(self.cfg.buffer_size, math.ceil(self.run_steps / seed_envs) * seed_envs)
        return ReplayBuffer(self.spec, size, n_envs, self.cfg.n_step, self.cfg.gamma, self.device, self.seeds)

    def networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

    def diagnostics(self) -> dict[str, float]:
        return network_diagnostics(self.networks())

    # ------------------------------------------------------------------ acting

    def initial_hidden(self, n_envs: int) -> None:
        """Feed-forward actors carry no hidden state."""
        return None

    @torch.no_grad()
    def random_act(self, n_envs: int, avail: torch.Tensor | None = None) -> ActOutput:
        """Warm-up actions, uniform over each agent's own (available) actions: env actions and stored ones."""
        layout = self.layout  # a population's envs (P·E, n, ...) as its networks' virtual agents (E, P·n, ...)
        actions = self.actor.random_actions(n_envs // self.seeds, None if avail is None else layout.to_agents(avail))
        return ActOutput(
            layout.to_envs(self.actor.env_actions(actions)), layout.to_envs(self.actor.stored_actions(actions))
        )

    # ------------------------------------------------------------------ learning

    @abstractmethod
    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """One gradient update (sample, critic, actors, temperatures, targets); returns detached metrics."""

    def sample(self, buffer: ReplayBuffer) -> ReplayBatch:
        """A batch of `batch_size` transitions of every seed, each drawn from its own envs with its own generator,
        laid out as the networks read it."""
        return buffer.sample(self.cfg.batch_size, self.rngs).for_networks(self.layout)

    def train(self, buffer: ReplayBuffer, n_updates: int) -> list[dict[str, float]]:
        """Run `n_updates` gradient updates; returns each metric averaged over the updates that produced it, one
        dict per seed.

        `update` returns each seed's scalars (`seed_mean`: () or (P,)) under full metric names, and per-agent
        (N,) tensors (P·n: seed-major) under a leaf name, which becomes `losses/<agent_id>/<name>`.
        """
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = defaultdict(int)
        trained = self.schedule.steps_per_iteration * (buffer.n_envs // self.seeds)  # env steps since the last call
        advance_networks(self.networks(), trained, self.run_steps)
        for _ in range(n_updates):
            for key, value in self.update(buffer).items():
                sums[key] = sums[key] + value if key in sums else value
                counts[key] += 1
        rows: list[dict[str, float]] = [{"charts/updates": float(self.updates)} for _ in range(self.seeds)]
        if sums:  # every mean read from the device in one copy, (P, values) by seed
            means = [(total / counts[key]).reshape(self.seeds, -1).double() for key, total in sums.items()]
            values = torch.cat(means, dim=1).tolist()
            for row, own in zip(rows, values, strict=True):
                for key, mean in zip(sums, means, strict=True):
                    part, own = own[: mean.shape[1]], own[mean.shape[1] :]
                    if "/" in key:
                        row[key] = part[0]
                    else:
                        row.update(
                            {f"losses/{agent}/{key}": v for agent, v in zip(self.spec.agent_ids, part, strict=True)}
                        )
        if self.grad_stats is not None:
            for row, stats in zip(rows, self.grad_stats.summary(), strict=True):
                row.update(stats)
        return rows

    def seed_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Each seed's mean of x (B, ...) (a population's: (B, P, ...)): () for one seed, (P,) for a population."""
        return x.mean() if self.seeds == 1 else x.transpose(0, 1).flatten(1).mean(1)

    def seed_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Each seed's sum of per-agent values x (..., P·n): (...) for one seed, (..., P) for a population."""
        per_seed = x.unflatten(-1, (self.seeds, -1)).sum(-1)
        return per_seed.squeeze(-1) if self.seeds == 1 else per_seed

    def agents_seeds(self, agents: torch.Tensor) -> torch.Tensor:
        """The seed (index) of each virtual agent in `agents` (k,)."""
        return torch.div(agents, self.spec.n_agents, rounding_mode="floor")

    def seed_totals(self, values: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
        """(P,) each seed's sum of the selected virtual agents' values (k,)."""
        return values.new_zeros(self.seeds).index_add(0, self.agents_seeds(agents), values)

    def record_actors(self, obs: torch.Tensor) -> ForwardRecord | None:
        """The actor network's forward on every agent's obs (B, N, O), recorded (no gradients) for the agents'
        turns of a sequential update to replay (the actors' `recorded`), or None where a turn must recompute
        its pass (shared parameters: earlier turns moved them; or a network `AgentMLP.replay` cannot serve)."""
        net = self.actor.net
        return net.record(obs) if self.replays_start_pass and isinstance(net, AgentMLP) else None

    def step_actor(self, seed_loss: torch.Tensor, agents: list[int] | None) -> None:
        """Backpropagate each seed's actor loss (P,) (plus the architecture's term of its selected agents) and step
        the selected agents (host indices; all when None), recording gradient statistics when `run.grad_stats` is
        on."""
        self.actor_optimizer.zero_grad()
        (seed_loss + self.actor.aux_loss(agents, seed_loss)).sum().backward()
        if self.grad_stats is not None:
            self.grad_stats.record(self.actor.parameters())
        self.actor_optimizer.step(agents=agents)

    def fit_critic(self, batch: ReplayBatch, next_value: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic step towards target = team n-step reward + discount · next_value (B,) (a population's
        (B, P): each seed's team)."""
        team_reward = batch.reward.unflatten(-1, (self.seeds, -1)).mean(-1)  # (B, P): equal per agent if shared
        target = (team_reward.squeeze(-1) if self.seeds == 1 else team_reward) + batch.discount * next_value
        q = self.critic(batch.state, self.actor.critic_actions(batch.actions))  # (B, n_q) or (B, P, n_q)
        error = q - target.unsqueeze(-1)
        if self.cfg.use_huber_loss:
            loss = F.huber_loss(error, torch.zeros_like(error), delta=self.cfg.huber_delta, reduction="none")
        else:
            loss = 0.5 * error.pow(2)
        per_seed = loss.mean(0).sum(-1)  # () or (P,): each seed's batch mean, summed over its Q heads
        self.critic_optimizer.zero_grad()
        per_seed.sum().backward()
        self.critic_optimizer.step()
        return {
            "losses/critic/loss": per_seed.detach(),
            "values/q_mean": self.seed_mean(q.detach()),
            "values/target_mean": self.seed_mean(target),
            "values/n_step_mean": self.seed_mean(batch.steps.float()),
        }

    def agent_groups(self, sequential: bool) -> list[tuple[list[int], torch.Tensor]]:
        """The actor update's agent groups, as host indices and a device tensor: one agent each in a fresh random
        order (a population's: one agent of every seed, each seed's order its own), or all agents at once."""
        n = self.spec.n_agents
        if sequential:
            orders = [torch.randperm(n, generator=g).tolist() for g in self.rngs]
            groups = [[s * n + order[turn] for s, order in enumerate(orders)] for turn in range(n)]
        else:
            groups = [list(range(self.n_agents))]
        self.last_order = groups
        return [(group, torch.tensor(group, device=self.device)) for group in groups]

    # ------------------------------------------------------------------ a population's members

    def paired_networks(self) -> dict[str, nn.Module]:
        """Every network a population stacks from its members', by attribute name (targets included)."""
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser, by attribute name."""
        return {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}

    def write_networks(self) -> list[ReplayLearner]:
        """The population's current networks written into its members (each seed's solo learner), which it
        returns: what evaluation, diagnostics and diversity read."""
        for name, network in self.paired_networks().items():
            write_networks(network, [getattr(m, name) for m in self.members])
        return self.members

    def write_members(self) -> list[ReplayLearner]:
        """The population's whole state written into its members, which it returns: what a seed's checkpoint holds."""
        members = self.write_networks()
        for name, optimizer in self.optimizers().items():
            write_optimizer(optimizer, [getattr(m, name) for m in members])
        for member in members:
            member.updates = self.updates
        return members

    def read_members(self) -> None:
        """The population's state stacked from its members' (after they load checkpoints)."""
        for name, network in self.paired_networks().items():
            read_networks(network, [getattr(m, name) for m in self.members])
        for name, optimizer in self.optimizers().items():
            read_optimizer(optimizer, [getattr(m, name) for m in self.members])
        self.updates = self.members[0].updates

    # ------------------------------------------------------------------ state

    def seed_learners(self) -> list[ReplayLearner]:
        """One solo learner per seed holding that seed's current networks (a solo run: itself)."""
        return self.write_networks() if self.members else [self]

    def state_dict(self) -> dict:
        if self.members:
            states = [m.state_dict() for m in self.write_members()]
            for state, generator in zip(states, self.action_rngs, strict=True):
                state["action_generator"] = generator.get_state()
            return {"seeds": states}
        return self.solo_state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.members:
            for member, own, generator in zip(self.members, state["seeds"], self.action_rngs, strict=True):
                member.load_state_dict(own)
                generator.set_state(own["action_generator"])
            self.read_members()
        else:
            self.load_solo_state_dict(state)

    def solo_state_dict(self) -> dict:
        """A learner of one seed's state (subclasses add theirs)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.rng.get_state(),
            "updates": self.updates,
        }

    def load_solo_state_dict(self, state: dict) -> None:
        """Restore `solo_state_dict()`'s output."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.rng.set_state(state["generator"])
        self.updates = state["updates"]
