"""MADDPG and MATD3: deterministic actors of all agents updated at once (simultaneous update) against a
centralised Q critic on (state, joint action)."""

from __future__ import annotations

import torch

from harl.algos.ddpg_base import DDPGConfig, DeterministicLearner, TD3Config
from harl.algos.off_policy_base import frozen
from harl.buffers.replay import ReplayBuffer
from harl.registry import AlgoEntry, register_algorithm


class MADDPG(DeterministicLearner):
    """Multi-agent DDPG: one Q network, actors maximise Q(s, μ_1(o_1), ..., μ_N(o_N)) together."""

    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        batch = self.sample(buffer)
        metrics = self.train_critic(batch)
        actors_updated = self.actor_due()
        if actors_updated:
            # ALGO LOGIC: every agent's deterministic policy gradient in one joint step.
            self.agent_groups(sequential=False)
            with frozen(self.critic):
                actions = self.actor(batch.obs, avail=batch.avail)  # (B, N, A)
                q_mean = self.actor_q(batch.state, actions).mean(0).reshape(-1)  # (P,): each seed's
                self.step_actor(-q_mean, None)
            metrics["actor_loss"] = -q_mean.detach().repeat_interleave(self.spec.n_agents)
        self.finish_update(actors_updated)
        return metrics


class MATD3(MADDPG):
    """Multi-agent TD3: MADDPG with a twin critic, target policy smoothing and delayed actor updates."""

    n_q = 2
    td3 = True


register_algorithm(
    AlgoEntry(
        name="maddpg",
        learner_cls=MADDPG,
        config_cls=DDPGConfig,
        on_policy=False,
        sequential=False,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "deterministic", "discrete": "gumbel_categorical"},
        batched_seeds=True,
        description="multi-agent DDPG: simultaneous deterministic policy step, centralised Q critic",
    )
)
register_algorithm(
    AlgoEntry(
        name="matd3",
        learner_cls=MATD3,
        config_cls=TD3Config,
        on_policy=False,
        sequential=False,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "deterministic", "discrete": "gumbel_categorical"},
        batched_seeds=True,
        description="multi-agent TD3: simultaneous update, twin critic, target smoothing, delayed actor updates",
    )
)
