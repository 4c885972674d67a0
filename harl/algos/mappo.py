"""MAPPO: every agent's PPO step at once (simultaneous update) against a per-agent centralised critic."""

from __future__ import annotations

import torch

from harl.algos.ppo_base import PolicyGradientLearner, PPOConfig, PPOLearner, seed_agent_metrics
from harl.buffers.rollout import RolloutBuffer
from harl.registry import AlgoEntry, register_algorithm


class SimultaneousUpdate(PolicyGradientLearner):
    """Every agent's policy-gradient step at once (MAPPO, IPPO, MAA2C). The joint objective is the sum of the
    agents' surrogates, so each agent's own parameters get exactly its own gradient, and shared parameters the
    sum."""

    def train(self, buffer: RolloutBuffer) -> list[dict[str, float]]:
        # ALGO LOGIC: advantages, then the critic, then all actors together (every seed's, in a population).
        prepared = self.prepare(buffer)
        metrics = self.train_critic(prepared)
        sequences = prepared.sequences
        sums: dict[str, torch.Tensor] = {}  # (N,) each, summed over the updates
        grad_norms, own_norms, updates = [], [], 0
        for _ in range(self.actor_epochs):
            for k, batch in enumerate(sequences.actor_minibatches(self.cfg.actor_num_mini_batch, self.rngs)):
                surrogate, entropy, diagnostics = self.surrogate(batch)  # (M, N) each
                per_agent_loss = -surrogate.mean(0)  # (N,)
                per_agent_entropy = entropy.mean(0)  # (N,)
                seed_loss = (per_agent_loss - self.cfg.entropy_coef * per_agent_entropy).view(self.seeds, -1).sum(1)
                loss = (seed_loss + self.actor.aux_loss(None, seed_loss)).sum()  # + the architecture's term per seed
                self.actor_optimizer.zero_grad()
                loss.backward()
                self.record_actor_gradients(new_group=k == 0)  # minibatches of one epoch form a group
                total_norm, per_agent_norm = self._clip(self.actor_optimizer)  # (P,), (N,)
                grad_norms.append(total_norm)
                own_norms.append(per_agent_norm)
                self.actor_optimizer.step()
                values = {
                    "policy_loss": per_agent_loss,
                    "entropy": per_agent_entropy,
                    **{key: value.mean(0) for key, value in diagnostics.items()},
                }
                for key, value in values.items():
                    sums.setdefault(key, torch.zeros_like(value)).add_(value.detach())
                updates += 1
        per_agent = {key: total / updates for key, total in sums.items()}
        own = torch.stack(own_norms).mean(0)  # (N,): norms of each agent's own parameters
        if bool(own.any()):
            per_agent["grad_norm"] = own
        actor_norms = self.seed_metrics({"losses/actor/grad_norm": torch.stack(grad_norms).mean(0)})
        for seed_metrics, agents, actor in zip(
            metrics, seed_agent_metrics(self.spec.agent_ids, per_agent), actor_norms, strict=True
        ):
            seed_metrics.update(agents)
            seed_metrics.update(actor)
        self.add_gradient_stats(metrics)
        return metrics


class MAPPO(PPOLearner, SimultaneousUpdate):
    """Multi-agent PPO: PPO's clipped surrogate in the simultaneous update, per-agent centralised critics."""

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, ALGO.actor_kind[spec.action_type])


ALGO = register_algorithm(
    AlgoEntry(
        name="mappo",
        learner_cls=MAPPO,
        config_cls=PPOConfig,
        on_policy=True,
        sequential=False,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "gaussian", "discrete": "categorical"},
        recurrent=True,
        batched_seeds=True,
        description="multi-agent PPO, simultaneous update, per-agent centralised V critic",
    )
)
