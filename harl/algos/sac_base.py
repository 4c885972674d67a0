"""The soft actor-critic machinery HASAC and MASAC share: config, squashed-Gaussian actors, the soft
twin-Q critic update and the entropy temperatures.

Temperatures (as HASAC): every agent i has its own α_i, weighting its entropy in its actor loss
and tuned towards the target entropy −(agent i's own action size); the critic target uses one
joint α, tuned towards the joint target entropy −(Σ action sizes) from the joint log-probability
Σ_i log π_i. With `auto_alpha: false` all temperatures stay at `alpha`. A population of P seeds has P·n agent
temperatures and P joint ones, each seed's tuned on its own batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from harl.algos.base import ActOutput
from harl.algos.off_policy_base import OffPolicyConfig, ReplayLearner, polyak_update
from harl.buffers.replay import ReplayBatch
from harl.config import ExperimentConfig, bounded
from harl.models.agent_mlp import AgentParameter, ForwardRecord
from harl.models.off_policy import GumbelCategoricalActor, OffPolicyActor, SquashedGaussianActor
from harl.models.policies import GREEDY, SAMPLE
from harl.registry import ArchEntry
from harl.spec import EnvSpec


@dataclass
class SACConfig(OffPolicyConfig):
    """Hyper-parameters of HASAC/MASAC (HARL's names and defaults)."""

    auto_alpha: bool = True
    """Tune the entropy temperatures towards their target entropies."""
    alpha: float = bounded(0.2, gt=0)
    """The temperature (its initial value when auto_alpha is on)."""
    alpha_lr: float = bounded(3e-4, gt=0)
    """Learning rate of the temperatures."""
    discrete_target_entropy: float = bounded(0.98, ge=0, le=1)
    """Discrete agents' target entropy as a fraction of their largest, log |A_i| (SAC-discrete's 0.98)."""
    discrete_policy_loss: Literal["gumbel", "exact"] = "gumbel"
    """Discrete actions: the soft policy loss on a straight-through Gumbel-softmax sample of each agent's
    action (HARL's), or its exact expectation over the agent's own actions with the other agents' actions
    fixed, Σ_a π_i(a|o_i)[α_i log π_i(a|o_i) − Q(s, a, a_−i)] (one batched critic call over every action)."""


class SACLearner(ReplayLearner):
    """Squashed-Gaussian actors (any architecture), a soft twin Q critic, per-agent and joint temperatures.

    Subclasses implement `update` with their actor update (sequential or simultaneous), using
    `train_critic`, `actor_loss`, `update_temperatures` and `finish_update`.
    """

    n_q = 2

    def __init__(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry, device: torch.device) -> None:
        super().__init__(spec, cfg, arch, device)
        act_dims = torch.tensor(spec.act_dims, dtype=torch.float32, device=device).repeat(self.seeds)  # (N,)
        if spec.discrete:  # a fraction of each agent's largest entropy, log |A_i| (SAC-discrete, HARL)
            self.target_entropy = self.cfg.discrete_target_entropy * act_dims.log()
        else:  # −(agent i's action size), as SAC and HARL
            self.target_entropy = -act_dims
        self.joint_target_entropy = self.seed_sum(self.target_entropy)  # () or (P,)
        start = math.log(self.cfg.alpha)
        self.log_alpha = AgentParameter(torch.full((self.n_agents,), start, device=device))  # (N,) actors
        joint_shape = () if self.seeds == 1 else (self.seeds,)
        self.log_alpha_joint = torch.full(joint_shape, start, device=device, requires_grad=True)  # critic target
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha, self.log_alpha_joint], lr=self.cfg.alpha_lr)
        self.exact_discrete = spec.discrete and self.cfg.discrete_policy_loss == "exact"

    def build_actor(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry) -> OffPolicyActor:
        if spec.discrete:
            return GumbelCategoricalActor(spec, arch, cfg.model, cfg.arch)
        return SquashedGaussianActor(spec, arch, cfg.model, cfg.arch)

    @property
    def alpha(self) -> torch.Tensor:
        """(N,) the agents' temperatures."""
        return self.log_alpha.detach().exp()

    @property
    def alpha_joint(self) -> torch.Tensor:
        """The critic target's joint temperature (() or (P,))."""
        return self.log_alpha_joint.detach().exp()

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
        """Env-ready actions (E, N, A), stored normalised actions (E, N, A) and their log-probs (E, N)."""
        layout = self.layout  # a population's envs (P·E, n, ...) as its networks' virtual agents (E, P·n, ...)
        avail = None if avail is None else layout.to_agents(avail)
        actions, log_probs = self.actor.act(layout.to_agents(obs), avail, GREEDY if deterministic else SAMPLE)
        env_actions, stored = self.actor.env_actions(actions), self.actor.stored_actions(actions)
        return ActOutput(layout.to_envs(env_actions), layout.to_envs(stored), layout.to_envs(log_probs))

    def train_critic(self, batch: ReplayBatch) -> dict[str, torch.Tensor]:
        """Soft twin-Q regression: next value = min_k Q'_k(s', a') − α_joint · Σ_i log π_i(a'_i | o'_i)."""
        with torch.no_grad():
            next_actions, next_log_probs = self.actor.sample(batch.next_obs, avail=batch.next_avail)  # (B, N, ·), (B,N)
            next_q = self.target_critic(batch.next_state, next_actions).min(-1).values  # (B,) or (B, P)
            next_value = next_q - self.alpha_joint * self.seed_sum(next_log_probs)
        return self.fit_critic(batch, next_value)

    def actor_loss(
        self, log_probs: torch.Tensor, q: torch.Tensor, agents: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft policy loss of the selected agents given their fresh log-probs (B, k) and the joint
        action's Q (B,) (a population's (B, P)): each seed's mean(Σ_i α_i log π_i − Q) (P,), and each agent's own
        term mean(α_i log π_i − Q) (k,)."""
        weighted = self.alpha[agents] * log_probs  # (B, k)
        q_mean = q.mean(0).reshape(-1)  # (P,): each seed's
        loss = self.seed_totals(weighted.mean(0), agents) - q_mean
        return loss, (weighted.mean(0) - q_mean[self.agents_seeds(agents)]).detach()

    def exact_actor_loss(
        self,
        batch: ReplayBatch,
        actions: torch.Tensor,
        agents: torch.Tensor,
        state_embedding: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Discrete actions: the soft policy loss of the k selected agents as an exact expectation over each
        one's own actions, the other agents' actions fixed at `actions` (B, N, A) (one-hot, no gradient):
        mean_B Σ_i Σ_a π_i(a)[α_i log π_i(a) − Q(s, a, a_−i)], with Q the twin minimum, evaluated for every
        (agent, action) alternative in one critic call. Returns each seed's loss (P,), each agent's own term (k,) and
        the expected log-probs E_π_i[log π_i] (B, k) (for the temperatures). `recorded`: the actors' passes to
        replay."""
        log_p = self.actor.log_probs_all(batch.obs[:, agents], agents, batch.avail_of(agents), recorded)  # (B, k, A)
        b, k, a = log_p.shape
        alternatives = actions.detach()[:, None, None].repeat(1, k, a, 1, 1)  # (B, k, A, N, A)
        slot = torch.arange(k, device=self.device)[:, None].expand(k, a)  # (k, A)
        choice = torch.arange(a, device=self.device)[None, :].expand(k, a)  # (k, A)
        one_hots = torch.eye(a, device=self.device)[choice]  # (k, A, A)
        alternatives[:, slot, choice, agents[slot]] = one_hots  # alternative (j, c): agent agents[j] takes action c
        if state_embedding is None:
            state_embedding = self.critic.embed_state(batch.state)  # (P·2, B, H1)
        q = (
            self.critic(
                batch.state.repeat_interleave(k * a, 0),
                alternatives.view(b * k * a, *actions.shape[1:]),
                state_embedding=state_embedding.repeat_interleave(k * a, 1),
            )
            .min(-1)
            .values.view(b, k, a, -1)
        )  # (B, k, A, P): every seed's Q of each alternative
        own_seed = self.agents_seeds(agents)[None, :, None, None].expand(b, k, a, 1)
        q = q.gather(-1, own_seed).squeeze(-1)  # (B, k, A): the alternative's agent's own seed's
        probs = log_p.exp()  # unavailable actions: exactly 0
        per_agent = (probs * (self.alpha[agents, None] * log_p - q)).sum(-1)  # (B, k)
        expected_log_probs = (probs * log_p).sum(-1)  # (B, k)
        own = per_agent.mean(0)  # (k,)
        return self.seed_totals(own, agents), own.detach(), expected_log_probs

    def update_temperatures(self, log_probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tune α_i on agent i's log-probs (B, N) and each seed's joint α on its agents' sum (when auto_alpha)."""
        log_probs = log_probs.detach()
        if self.cfg.auto_alpha:
            agent_loss = -(self.log_alpha * (log_probs + self.target_entropy)).mean(0).sum()
            joint_log_probs = self.seed_sum(log_probs)  # (B,) or (B, P)
            joint_loss = -(self.log_alpha_joint * (joint_log_probs + self.joint_target_entropy)).mean(0).sum()
            self.alpha_optimizer.zero_grad()
            (agent_loss + joint_loss).backward()
            self.alpha_optimizer.step()
        return {"entropy": -log_probs.mean(0), "alpha": self.alpha, "losses/critic/alpha": self.alpha_joint}

    def finish_update(self) -> None:
        """Polyak-average the target critic and count the update."""
        polyak_update(self.critic, self.target_critic, self.cfg.polyak)
        self.updates += 1

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "alpha_optimizer": self.alpha_optimizer}

    @torch.no_grad()
    def write_members(self) -> list[ReplayLearner]:
        members = super().write_members()
        for member, agent_rows, joint in zip(
            members, self.log_alpha.view(self.seeds, -1), self.log_alpha_joint, strict=True
        ):
            member.log_alpha.copy_(agent_rows)
            member.log_alpha_joint.copy_(joint)
        return members

    @torch.no_grad()
    def read_members(self) -> None:
        super().read_members()
        self.log_alpha.copy_(torch.cat([m.log_alpha for m in self.members]))
        self.log_alpha_joint.copy_(torch.stack([m.log_alpha_joint for m in self.members]))

    def solo_state_dict(self) -> dict:
        return {
            **super().solo_state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "log_alpha_joint": self.log_alpha_joint.detach().clone(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_solo_state_dict(self, state: dict) -> None:
        super().load_solo_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
            self.log_alpha_joint.copy_(state["log_alpha_joint"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
