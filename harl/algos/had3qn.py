"""HAD3QN: heterogeneous-agent dueling double DQN (HARL's value-based learner, discrete actions only).

A joint critic Q(s, a_1, ..., a_N) is trained on replayed transitions towards the n-step target
r + γ^L · Q'(s', a'), where the next joint action a' is every agent's greedy action under its *target* dueling
Q network (masked by the next observation's available actions) and Q' is the target critic: selection and
evaluation by different networks, the double-Q decoupling of HARL's `DiscreteQCritic`.

The agents' dueling Q networks (`harl.models.dueling_q`) are HARL's "actors". An update starts from the joint
greedy action of the online networks; agent by agent, in a fresh random order, it computes the critic's values of
the agent's own actions with the others fixed (its predecessors at their best responses, its successors at their
greedy actions), regresses the agent's Q values onto them, then sets the agent's action to its best response (the
masked argmax of those values) for the agents after it. HARL regresses the agent's Q value at its greedy action
only (`fit_all_actions: false`); by default every available action's value is fitted, so that an agent's greedy
action follows the critic's best response.

Targets follow their online networks by polyak averaging after every update (HARL's), or by a hard copy every
`target_update_interval` updates. Exploration is epsilon-greedy over each agent's available actions, one draw per
agent and env, with epsilon annealed linearly over the env steps the learner has acted on (HARL: a constant
0.05).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from harl.algos.base import ActOutput
from harl.algos.off_policy_base import OffPolicyConfig, ReplayLearner, polyak_update
from harl.buffers.replay import ReplayBatch, ReplayBuffer
from harl.config import ExperimentConfig, bounded
from harl.models.dueling_q import DuelingQActor
from harl.models.policies import GREEDY, Exploration
from harl.registry import AlgoEntry, ArchEntry, register_algorithm
from harl.spec import EnvSpec


@dataclass
class HAD3QNConfig(OffPolicyConfig):
    """Hyper-parameters of HAD3QN (HARL's names and defaults: had3qn.yaml)."""

    gamma: float = bounded(0.95, ge=0, le=1)
    """Discount factor."""
    n_step: int = bounded(1, gt=0)
    """Rewards summed into a target before bootstrapping (stops at episode ends)."""
    critic_lr: float = bounded(1e-3, gt=0)
    """Critic learning rate."""
    epsilon: float = bounded(0.05, ge=0, le=1)
    """Exploration rate once annealed: the probability that an agent acts uniformly over its available actions."""
    epsilon_start: float = bounded(0.05, ge=0, le=1)
    """Exploration rate at the first env step, annealed linearly to `epsilon` over `epsilon_anneal_steps`."""
    epsilon_anneal_steps: int = bounded(0, ge=0)
    """Env steps (each seed's, warm-up included) over which epsilon goes from `epsilon_start` to `epsilon`; 0: a
    constant `epsilon` (HARL's)."""
    target_update_interval: int = bounded(0, ge=0)
    """0: targets follow by polyak averaging after every update (HARL's); k > 0: the online networks are copied
    into the targets every k updates (`polyak` unused)."""
    fit_all_actions: bool = True
    """Regress every available action's Q value onto the critic's (the agent's greedy action follows the critic's
    best response); false: only the greedy action's value, as HARL."""


def hard_update(online: nn.Module, target: nn.Module) -> None:
    """target ← online, for every parameter."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), online.parameters(), strict=True):
            target_param.copy_(param)


class HAD3QN(ReplayLearner):
    """Heterogeneous-agent dueling double DQN (sequential update).

    With a parameter-sharing architecture, every agent's turn steps the shared parameters (as HARL's
    `share_param`); per-agent parameters of other agents never move in agent i's turn. A population (`--seeds`)
    takes one agent of every seed per turn, each seed in its own order, and its critic sees only its own seed's
    agents.
    """

    n_q = 1

    def __init__(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry, device: torch.device) -> None:
        super().__init__(spec, cfg, arch, device)
        self.actor: DuelingQActor
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.env_steps = 0  # each seed's env steps acted on (warm-up and exploring acts): the epsilon schedule's clock

    def build_actor(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry) -> DuelingQActor:
        return DuelingQActor(spec, arch, cfg.model, cfg.arch)

    # ------------------------------------------------------------------ acting

    def epsilon(self) -> float:
        """The exploration rate at the current env step (linear from `epsilon_start` to `epsilon`)."""
        cfg = self.cfg
        if cfg.epsilon_anneal_steps == 0:
            return cfg.epsilon
        progress = min(1.0, self.env_steps / cfg.epsilon_anneal_steps)
        return cfg.epsilon_start + progress * (cfg.epsilon - cfg.epsilon_start)

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor | None,
        *,
        deterministic: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> ActOutput:
        """Env-ready action indices (E, N, 1) and stored ones (E, N, 1): greedy, epsilon-greedy unless
        `deterministic` (an exploring act advances the epsilon schedule by its envs)."""
        layout = self.layout  # a population's envs (P·E, n, ...) as its networks' virtual agents (E, P·n, ...)
        obs, avail = layout.to_agents(obs), None if avail is None else layout.to_agents(avail)
        exploration = GREEDY if deterministic else Exploration(epsilon=self.epsilon())
        actions, _ = self.actor.act(obs, avail, exploration)  # (E, N, A) one-hot
        if not deterministic:
            self.env_steps += obs.shape[0]
        return ActOutput(
            layout.to_envs(self.actor.env_actions(actions)), layout.to_envs(self.actor.stored_actions(actions))
        )

    @torch.no_grad()
    def random_act(self, n_envs: int, avail: torch.Tensor | None = None) -> ActOutput:
        """Warm-up actions (uniform over each agent's available actions); they advance the epsilon schedule."""
        self.env_steps += n_envs // self.seeds
        return super().random_act(n_envs, avail)

    # ------------------------------------------------------------------ learning

    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        batch = self.sample(buffer)
        metrics = self.fit_critic(batch, self.next_value(batch))
        metrics["actor_loss"] = self.train_actors(batch)
        metrics["charts/epsilon"] = torch.full((self.seeds,), self.epsilon(), device=self.device)
        self.update_targets()
        self.updates += 1
        return metrics

    @torch.no_grad()
    def next_value(self, batch: ReplayBatch) -> torch.Tensor:
        """Q'(s', a') (B,) (a population's (B, P)): the target critic at the target actors' greedy next actions,
        each the best of its agent's available actions at the next observation."""
        next_actions = self.target_actor.greedy(batch.next_obs, avail=batch.next_avail)  # (B, N, A)
        return self.target_critic(batch.next_state, next_actions)[..., 0]

    def train_actors(self, batch: ReplayBatch) -> torch.Tensor:
        """One sequential pass over the agents (see the module docstring); returns each agent's loss (N,)."""
        with torch.no_grad():
            recorded = self.record_actors(batch.obs)  # None with shared parameters
            greedy = self.actor.greedy(batch.obs, avail=batch.avail, recorded=recorded)  # (B, N, A)
            state_embedding = self.critic.embed_state(batch.state)  # (P, B, H1), shared by every turn
        joint = greedy.clone()  # predecessors at their best responses, the others at their greedy actions
        actor_loss = torch.zeros(self.n_agents, device=self.device)  # (N,)
        groups = self.agent_groups(sequential=True)
        for position, (group, agents) in enumerate(groups):  # inherently sequential: one agent (per seed) each
            valid = self.actor.valid(agents, batch.avail_of(agents), batch.obs.shape[0])  # (B, k, A)
            values = self.own_action_values(batch.state, joint, agents, state_embedding)  # (B, k, A)
            q = self.actor.q_values(batch.obs[:, agents], agents, recorded)  # (B, k, A)
            loss = self.actor_loss(q, values, greedy[:, agents], valid)  # (k,): each seed's
            self.step_actor(loss, group)  # one agent per seed, in seed order
            actor_loss[agents] = loss.detach()
            if position < len(groups) - 1:  # the last agent's best response is never used
                best = values.masked_fill(~valid, float("-inf")).argmax(-1)  # (B, k)
                joint[:, agents] = F.one_hot(best, self.actor.n_actions).to(joint.dtype)
        return actor_loss

    def actor_loss(
        self, q: torch.Tensor, values: torch.Tensor, greedy: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Each selected agent's (one per seed) squared error (k,) between its Q values q (B, k, A) and the critic's
        values of its own actions (B, k, A): averaged over its available actions (`fit_all_actions`) or at its greedy
        action (one-hot (B, k, A)) only, then over the batch."""
        error = (q - values).pow(2)
        if self.cfg.fit_all_actions:
            weights = valid.to(error.dtype)
            per_sample = (error * weights).sum(-1) / weights.sum(-1).clamp(min=1)  # (B, k)
        else:
            per_sample = (error * greedy).sum(-1)
        return per_sample.mean(0)

    @torch.no_grad()
    def own_action_values(
        self, state: torch.Tensor, joint: torch.Tensor, agents: torch.Tensor, state_embedding: torch.Tensor
    ) -> torch.Tensor:
        """The critic's Q(s, a) (B, k, A) for every own action of the selected agents (one per seed), the other
        agents acting as in `joint` (B, N, A). One critic pass on A·B joint actions: candidate c sets every selected
        agent's action to c (each seed's critic sees only its own agent)."""
        n_actions, batch = self.actor.n_actions, joint.shape[0]
        candidates = joint.unsqueeze(0).repeat(n_actions, 1, 1, 1)  # (A, B, N, A)
        one_hot = torch.eye(n_actions, dtype=joint.dtype, device=joint.device)  # (A, A): candidate c -> action c
        candidates[:, :, agents] = one_hot[:, None, None, :]
        states = state.repeat(n_actions, *([1] * (state.dim() - 1)))  # (A·B, S) or (A·B, P, S)
        q = self.critic(states, candidates.flatten(0, 1), state_embedding=state_embedding.repeat(1, n_actions, 1))
        return q[..., 0].reshape(n_actions, batch, -1).permute(1, 2, 0)  # (B, k, A)

    def update_targets(self) -> None:
        """Polyak-average the target actors and critic (or copy them every `target_update_interval` updates)."""
        interval = self.cfg.target_update_interval
        pairs = ((self.actor, self.target_actor), (self.critic, self.target_critic))
        for online, target in pairs:
            if interval == 0:
                polyak_update(online, target, self.cfg.polyak)
            elif (self.updates + 1) % interval == 0:
                hard_update(online, target)

    # ------------------------------------------------------------------ a population's members and state

    def paired_networks(self) -> dict[str, nn.Module]:
        return {**super().paired_networks(), "target_actor": self.target_actor}

    def write_members(self) -> list[ReplayLearner]:
        members = super().write_members()
        for member in members:
            cast(HAD3QN, member).env_steps = self.env_steps
        return members

    def read_members(self) -> None:
        super().read_members()
        self.env_steps = cast(HAD3QN, self.members[0]).env_steps

    def solo_state_dict(self) -> dict:
        return {
            **super().solo_state_dict(),
            "target_actor": self.target_actor.state_dict(),
            "env_steps": self.env_steps,
        }

    def load_solo_state_dict(self, state: dict) -> None:
        super().load_solo_state_dict(state)
        self.target_actor.load_state_dict(state["target_actor"])
        self.env_steps = state["env_steps"]


ALGO = register_algorithm(
    AlgoEntry(
        name="had3qn",
        learner_cls=HAD3QN,
        config_cls=HAD3QNConfig,
        on_policy=False,
        sequential=True,
        discrete=True,
        continuous=False,
        actor_kind={"discrete": "dueling_q"},
        batched_seeds=True,
        description="heterogeneous-agent dueling double DQN: per-agent dueling Q networks fitted to a joint critic "
        "agent by agent in a random order, epsilon-greedy",
    )
)
