"""What every off-policy learner shares: the replay-related config, the joint Q critic with its
target copy, the critic regression, polyak averaging, metric aggregation and checkpoint state.

The two families build on it: `sac_base.py` (HASAC, MASAC) and `ddpg_base.py` (MADDPG, MATD3,
HADDPG, HATD3). Each learner's own update (in particular its actor update: sequential or
simultaneous) lives in its own file.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harl.algos.base import ActOutput, CollectionSchedule, network_diagnostics
from harl.buffers.replay import ReplayBatch, ReplayBuffer
from harl.config import ExperimentConfig, bounded, check_bounds
from harl.errors import ConfigError
from harl.metrics.gradients import GradientStats
from harl.models.agent_mlp import AgentMLP, ForwardRecord
from harl.models.off_policy import JointQCritic
from harl.optim import AgentAdam
from harl.registry import ArchEntry, get_algorithm
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
    """Replay capacity in transitions (vector steps × n_rollout_threads)."""
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
        self.n_agents = spec.n_agents
        self.actor = self.build_actor(spec, cfg, arch).to(device)
        self.critic = JointQCritic(spec, self.n_q, cfg.model).to(device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = AgentAdam(self.actor.parameters(), lr=self.cfg.lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)
        self.updates = 0
        self.grad_stats = GradientStats() if cfg.run.grad_stats else None
        # The last actor update's agent groups in order: [[i], [j], ...] sequential, [[0, ..., N-1]] simultaneous.
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
        if get_algorithm(cfg.algo_name).sequential and arch.shares_parameters:
            print(
                f"note: --arch {arch.name} shares actor parameters between agents, so in this sequential update "
                "every agent's step updates the shared parameters (as HARL's share_param)"
            )

    @abstractmethod
    def build_actor(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry) -> nn.Module:
        """The module serving every agent's policy (built through `arch`)."""

    def make_buffer(self, n_envs: int) -> ReplayBuffer:
        """A replay buffer of `buffer_size` transitions from `n_envs` envs, with n-step targets."""
        return ReplayBuffer(self.spec, self.cfg.buffer_size, n_envs, self.cfg.n_step, self.cfg.gamma, self.device)

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
        actions = self.actor.random_actions(n_envs, avail)
        return ActOutput(self.actor.env_actions(actions), self.actor.stored_actions(actions))

    # ------------------------------------------------------------------ learning

    @abstractmethod
    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """One gradient update (sample, critic, actors, temperatures, targets); returns detached metrics."""

    def train(self, buffer: ReplayBuffer, n_updates: int) -> dict[str, float]:
        """Run `n_updates` gradient updates; returns each metric averaged over the updates that produced it.

        `update` returns scalars under full metric names and per-agent (N,) tensors under a leaf name,
        which becomes `losses/<agent_id>/<name>`.
        """
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = defaultdict(int)
        for _ in range(n_updates):
            for key, value in self.update(buffer).items():
                sums[key] = sums[key] + value if key in sums else value
                counts[key] += 1
        metrics: dict[str, float] = {"charts/updates": float(self.updates)}
        if sums:  # every mean read from the device in one copy
            means = [(total / counts[key]).reshape(-1).double() for key, total in sums.items()]
            values = torch.cat(means).tolist()
            for key, mean in zip(sums, means, strict=True):
                own, values = values[: mean.numel()], values[mean.numel() :]
                if sums[key].dim() == 1:
                    metrics.update(
                        {f"losses/{agent}/{key}": v for agent, v in zip(self.spec.agent_ids, own, strict=True)}
                    )
                else:
                    metrics[key] = own[0]
        if self.grad_stats is not None:
            metrics.update(self.grad_stats.summary())
        return metrics

    def record_actors(self, obs: torch.Tensor) -> ForwardRecord | None:
        """The actor network's forward on every agent's obs (B, N, O), recorded (no gradients) for the agents'
        turns of a sequential update to replay (the actors' `recorded`), or None where a turn must recompute
        its pass (shared parameters: earlier turns moved them; or a network `AgentMLP.replay` cannot serve)."""
        net = self.actor.net
        return net.record(obs) if self.replays_start_pass and isinstance(net, AgentMLP) else None

    def step_actor(self, loss: torch.Tensor, agents: torch.Tensor | None) -> None:
        """Backpropagate an actor loss and step the selected agents (all when None), recording gradient
        statistics when `run.grad_stats` is on."""
        self.actor_optimizer.zero_grad()
        loss.backward()
        if self.grad_stats is not None:
            self.grad_stats.record(self.actor.parameters())
        self.actor_optimizer.step(agents=agents)

    def fit_critic(self, batch: ReplayBatch, next_value: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic step towards target = team n-step reward + discount · next_value (B,)."""
        target = batch.reward.mean(-1) + batch.discount * next_value  # (B,): team reward (equal per agent if shared)
        q = self.critic(batch.state, self.actor.critic_actions(batch.actions))  # (B, n_q)
        error = q - target.unsqueeze(1)
        if self.cfg.use_huber_loss:
            loss = F.huber_loss(error, torch.zeros_like(error), delta=self.cfg.huber_delta, reduction="none")
        else:
            loss = 0.5 * error.pow(2)
        loss = loss.mean(0).sum()  # sum over the Q heads
        self.critic_optimizer.zero_grad()
        loss.backward()
        self.critic_optimizer.step()
        return {
            "losses/critic/loss": loss.detach(),
            "values/q_mean": q.detach().mean(),
            "values/target_mean": target.mean(),
            "values/n_step_mean": batch.steps.float().mean(),
        }

    def agent_groups(self, sequential: bool) -> list[torch.Tensor]:
        """The actor update's agent groups: one agent each in a fresh random order, or all agents at once."""
        if sequential:
            order = torch.randperm(self.n_agents, generator=self.generator).tolist()
            groups = [[agent] for agent in order]
        else:
            groups = [list(range(self.n_agents))]
        self.last_order = groups
        return [torch.tensor(group, device=self.device) for group in groups]

    # ------------------------------------------------------------------ state

    def seed_learners(self) -> list[ReplayLearner]:
        """Off-policy learners train one seed: themselves."""
        return [self]

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = state["updates"]
