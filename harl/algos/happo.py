"""HAPPO: agents updated one after another in a random order, each against the advantage weighted by
the probability ratios of the agents updated before it (the heterogeneous-agent correction factor)."""

from __future__ import annotations

import torch

from harl.algos.ppo_base import PolicyGradientLearner, PPOConfig, PPOLearner, seed_agent_metrics
from harl.buffers.rollout import RolloutBuffer
from harl.registry import AlgoEntry, register_algorithm


class SequentialUpdate(PolicyGradientLearner):
    """The heterogeneous-agent update of a policy-gradient learner (HAPPO, HAA2C): agents one after another in a
    random order, each on its surrogate weighted by the correction factor.

    With a parameter-sharing architecture, every agent's turn updates the shared parameters
    (as HARL's `share_param`); per-agent parameters of other agents never move in agent i's turn.
    """

    last_order: list[int]
    """The first seed's agent order in the last update."""

    def train(self, buffer: RolloutBuffer) -> list[dict[str, float]]:
        # ALGO LOGIC: advantages, the critic, then agents in a random order with the running factor. A population
        # draws each seed's order from its own stream; turn j updates the j-th agent of every seed's order.
        prepared = self.prepare(buffer)
        metrics = self.train_critic(prepared)
        sequences = prepared.sequences
        n = self.spec.n_agents
        # (L, C, P): product of the earlier agents' ratios at every step of every sequence, per seed
        factor = torch.ones(sequences.length, sequences.n_chunks, self.seeds, device=self.device)
        orders = [torch.randperm(n, generator=rng).tolist() for rng in self.rngs]
        self.last_order = orders[0]
        stats: dict[str, torch.Tensor] = {}  # (N,) each: per virtual agent, averaged over its updates
        factors = torch.zeros(self.n_agents, device=self.device)  # (N,) each agent's mean correction factor
        grad_norms = []
        for turn in range(n):  # inherently sequential
            # (P,) the virtual agent each seed updates in this turn (also as host ints: no sync in the optimiser)
            turn_agents = [s * n + order[turn] for s, order in enumerate(orders)]
            agents = torch.tensor(turn_agents, device=self.device)
            updates = 0
            for _ in range(self.actor_epochs):
                minibatches = sequences.actor_minibatches(self.cfg.actor_num_mini_batch, self.rngs, agents)
                for k, batch in enumerate(minibatches):
                    surrogate, entropy, diagnostics = self.surrogate(batch)  # (M, P) each
                    policy_loss = -(batch.take(factor) * surrogate).mean(0)  # (P,): each seed's own
                    seed_loss = policy_loss - self.cfg.entropy_coef * entropy.mean(0)  # (P,)
                    loss = (seed_loss + self.actor.aux_loss(agents, seed_loss)).sum()  # + the turn agents' arch term
                    self.actor_optimizer.zero_grad()
                    loss.backward()
                    self.record_actor_gradients(new_group=k == 0)  # one group per epoch of each agent's turn
                    total_norm, _ = self._clip(self.actor_optimizer)  # (P,)
                    grad_norms.append(total_norm)
                    self.actor_optimizer.step(agents=turn_agents)
                    values = {
                        "policy_loss": policy_loss,
                        "entropy": entropy.mean(0),
                        **{key: value.mean(0) for key, value in diagnostics.items()},
                        "grad_norm": total_norm,
                    }
                    for key, value in values.items():
                        stats.setdefault(key, torch.zeros(self.n_agents, device=self.device))[agents] += value.detach()
                    updates += 1
            for value in stats.values():
                value[agents] /= updates
            everything = sequences.actor_batch(sequences.all_chunks(), agents)
            factors[agents] = everything.take(factor).mean(0)
            with torch.no_grad():
                new_log_probs, _ = self.batch_log_probs_entropy(everything)  # (L, C, P)
                factor = factor * torch.exp(new_log_probs - sequences.log_probs[:, :, agents])
        actor_norms = self.seed_metrics({"losses/actor/grad_norm": torch.stack(grad_norms).mean(0)})
        for seed_metrics, agents_metrics, actor in zip(
            metrics, seed_agent_metrics(self.spec.agent_ids, {**stats, "factor": factors}), actor_norms, strict=True
        ):
            seed_metrics.update(agents_metrics)
            seed_metrics.update(actor)
        self.add_gradient_stats(metrics)
        return metrics


class HAPPO(PPOLearner, SequentialUpdate):
    """Heterogeneous-agent PPO: PPO's clipped surrogate in the sequential update."""

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, ALGO.actor_kind[spec.action_type])


ALGO = register_algorithm(
    AlgoEntry(
        name="happo",
        learner_cls=HAPPO,
        config_cls=PPOConfig,
        on_policy=True,
        sequential=True,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "gaussian", "discrete": "categorical"},
        recurrent=True,
        batched_seeds=True,
        description="heterogeneous-agent PPO, sequential update in a random order with the correction factor",
    )
)
