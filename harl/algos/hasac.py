"""HASAC: heterogeneous-agent soft actor-critic — agents' soft policy steps one after another, in a fresh
random order every update, each against the joint action its predecessors' updated policies produce."""

from __future__ import annotations

import torch

from harl.algos.off_policy_base import frozen
from harl.algos.sac_base import SACConfig, SACLearner
from harl.buffers.replay import ReplayBuffer
from harl.registry import AlgoEntry, register_algorithm


class HASAC(SACLearner):
    """Heterogeneous-agent SAC (sequential update).

    With a parameter-sharing architecture (FuPS, hypernetworks), every agent's turn updates the
    shared parameters (as HARL's `share_param`); per-agent parameters of other agents never move
    in agent i's turn (`AgentAdam.step(agents=...)`).

    Work per turn, the minimum these semantics leave: the critic's state term and the critic target are
    computed once per update; without shared parameters, an agent's turn replays its pass of the starting
    forward (its weights have not moved since: `record_actors`) and draws fresh noise, as recomputing would;
    the frozen critic sends each sample's gradient back through its minimum Q head only
    (`JointQCritic.min_q`); a hypernetwork generates only the agent in turn's layers (for its loss, and again
    to re-sample its action after its step); per-agent tensors send back gradients laid out as the parameters
    (`agent_rows`), and only the agent's rows move; the last agent's new action, which nobody reads, is not
    sampled (the first agent's starting action, never read either, is: sampling the others alone gathers
    their weights, which costs about what it saves). What remains is the Adam step of every shared parameter
    in every turn, which a parameter-sharing sequential update needs (momentum moves them all).
    """

    def update(self, buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        batch = self.sample(buffer)
        metrics = self.train_critic(batch)
        # ALGO LOGIC: start from the current joint policy's actions; agent by agent in a random order,
        # take a soft policy step against the joint action, then re-sample that agent's action from
        # its updated policy, so later agents are trained against their predecessors' new policies.
        with torch.no_grad():
            recorded = self.record_actors(batch.obs)  # None with shared parameters
            actions, _ = self.actor.sample(batch.obs, avail=batch.avail, recorded=recorded)  # (B, N, A)
            state_embedding = self.critic.embed_state(batch.state)  # (P·2, B, H1), shared by every agent's step
        log_probs = torch.zeros(batch.obs.shape[0], self.n_agents, device=self.device)  # (B, N)
        actor_loss = torch.zeros(self.n_agents, device=self.device)  # (N,)
        groups = self.agent_groups(sequential=True)
        with frozen(self.critic):
            for position, (group, agents) in enumerate(groups):  # inherently sequential: one agent (per seed) each
                obs, avail = batch.obs[:, agents], batch.avail_of(agents)  # (B, P, O), (B, P, A) or None
                if self.exact_discrete:  # the expectation over the agent's own actions, others fixed
                    loss, actor_loss[agents], own_log_probs = self.exact_actor_loss(
                        batch, actions, agents, state_embedding, recorded
                    )
                else:
                    own, own_log_probs = self.actor.sample(obs, agents, avail=avail, recorded=recorded)  # (B, P, ·)
                    joint = actions.index_copy(1, agents, own)  # (B, N, A)
                    q = self.critic.min_q(batch.state, joint, state_embedding=state_embedding)  # (B,) or (B, P)
                    loss, actor_loss[agents] = self.actor_loss(own_log_probs, q, agents)
                self.step_actor(loss, group)
                log_probs[:, agents] = own_log_probs.detach()
                if position < len(groups) - 1:  # the last agent's new action is never used
                    with torch.no_grad():
                        actions[:, agents] = self.actor.sample(obs, agents, avail=avail)[0]
        metrics.update(self.update_temperatures(log_probs))
        metrics["actor_loss"] = actor_loss
        self.finish_update()
        return metrics


ALGO = register_algorithm(
    AlgoEntry(
        name="hasac",
        learner_cls=HASAC,
        config_cls=SACConfig,
        on_policy=False,
        sequential=True,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "squashed_gaussian", "discrete": "gumbel_categorical"},
        batched_seeds=True,
        description="heterogeneous-agent SAC: sequential soft policy steps in a random order, joint soft twin-Q critic",
    )
)
