"""MASAC: multi-agent soft actor-critic — every agent's soft policy step at once (simultaneous update)
against the current joint policy; otherwise identical to HASAC (same critic, temperatures, targets)."""

from __future__ import annotations

import torch

from harl.algos.off_policy_base import frozen
from harl.algos.sac_base import SACConfig, SACLearner
from harl.buffers.replay import ReplayBuffer
from harl.registry import AlgoEntry, register_algorithm


class MASAC(SACLearner):
    """Multi-agent SAC. The joint loss mean(Σ_i α_i log π_i − Q(s, a_1..a_N)) gives each agent's own
    parameters exactly its own soft policy gradient, and shared parameters the sum."""

    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        batch = self.sample(buffer)
        metrics = self.train_critic(batch)
        # ALGO LOGIC: all agents sample together and take one joint soft policy step.
        ((_, agents),) = self.agent_groups(sequential=False)
        with frozen(self.critic):
            actions, log_probs = self.actor.sample(batch.obs, avail=batch.avail)  # (B, N, A), (B, N)
            if self.exact_discrete:  # every agent's expectation over its own actions, the others' sampled
                loss, actor_loss, log_probs = self.exact_actor_loss(batch, actions, agents)
            else:
                q = self.critic.min_q(batch.state, actions)  # (B,) or (B, P)
                loss, actor_loss = self.actor_loss(log_probs, q, agents)
            self.step_actor(loss, None)
        metrics.update(self.update_temperatures(log_probs))
        metrics["actor_loss"] = actor_loss
        self.finish_update()
        return metrics


ALGO = register_algorithm(
    AlgoEntry(
        name="masac",
        learner_cls=MASAC,
        config_cls=SACConfig,
        on_policy=False,
        sequential=False,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "squashed_gaussian", "discrete": "gumbel_categorical"},
        batched_seeds=True,
        description="multi-agent SAC: simultaneous soft policy step of all agents, joint soft twin-Q critic",
    )
)
