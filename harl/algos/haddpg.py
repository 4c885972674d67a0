"""HADDPG and HATD3: deterministic actors updated one after another in a fresh random order (sequential
update), each against the joint action in which its predecessors already act with their updated policies."""

from __future__ import annotations

import torch

from harl.algos.ddpg_base import DDPGConfig, DeterministicLearner, TD3Config
from harl.algos.off_policy_base import frozen
from harl.buffers.replay import ReplayBuffer
from harl.registry import AlgoEntry, register_algorithm


class HADDPG(DeterministicLearner):
    """Heterogeneous-agent DDPG (sequential update).

    With a parameter-sharing architecture, every agent's turn updates the shared parameters (as
    HARL's `share_param`); per-agent parameters of other agents never move in agent i's turn. Without shared
    parameters, an agent's turn replays its pass of the starting forward (`record_actors`) rather than
    recomputing it.
    """

    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        batch = self.sample(buffer)
        metrics = self.train_critic(batch)
        actors_updated = self.actor_due()
        if actors_updated:
            # ALGO LOGIC: start from the current joint policy; agent by agent in a random order, take a
            # deterministic policy step against the joint action, then replace that agent's action by
            # its updated policy's, so later agents are trained against their predecessors' new policies.
            with torch.no_grad():
                recorded = self.record_actors(batch.obs)  # None with shared parameters
                actions = self.actor(batch.obs, avail=batch.avail, recorded=recorded)  # (B, N, A)
                state_embedding = self.critic.embed_state(batch.state, self.first_head)  # shared by every step
            actor_loss = torch.zeros(self.n_agents, device=self.device)  # (N,)
            groups = self.agent_groups(sequential=True)
            with frozen(self.critic):
                for position, (group, agents) in enumerate(groups):  # inherently sequential: one agent (per seed)
                    obs, avail = batch.obs[:, agents], batch.avail_of(agents)  # (B, P, O), (B, P, A) or None
                    joint = actions.index_copy(1, agents, self.actor(obs, agents, avail, recorded))  # (B, N, A)
                    q_mean = self.actor_q(batch.state, joint, state_embedding).mean(0).reshape(-1)  # (P,): each seed's
                    self.step_actor(-q_mean, group)
                    actor_loss[agents] = -q_mean.detach()
                    if position < len(groups) - 1:  # the last agent's new action is never used
                        with torch.no_grad():
                            actions[:, agents] = self.actor(obs, agents, avail)
            metrics["actor_loss"] = actor_loss
        self.finish_update(actors_updated)
        return metrics


class HATD3(HADDPG):
    """Heterogeneous-agent TD3: HADDPG with a twin critic, target policy smoothing and delayed actor updates."""

    n_q = 2
    td3 = True


register_algorithm(
    AlgoEntry(
        name="haddpg",
        learner_cls=HADDPG,
        config_cls=DDPGConfig,
        on_policy=False,
        sequential=True,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "deterministic", "discrete": "gumbel_categorical"},
        batched_seeds=True,
        description="heterogeneous-agent DDPG: sequential deterministic policy steps in a random order",
    )
)
register_algorithm(
    AlgoEntry(
        name="hatd3",
        learner_cls=HATD3,
        config_cls=TD3Config,
        on_policy=False,
        sequential=True,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "deterministic", "discrete": "gumbel_categorical"},
        batched_seeds=True,
        description="heterogeneous-agent TD3: sequential update, twin critic, target smoothing, delayed actor updates",
    )
)
