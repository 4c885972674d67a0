"""HAPPO: agents updated one after another in a random order, each against the advantage weighted by
the probability ratios of the agents updated before it (the heterogeneous-agent correction factor)."""

from __future__ import annotations

import torch

from harl.algos.ppo_base import PPOConfig, PPOLearner, agent_metrics
from harl.buffers.rollout import RolloutBuffer
from harl.registry import AlgoEntry, register_algorithm


class HAPPO(PPOLearner):
    """Heterogeneous-agent PPO (sequential update).

    With a parameter-sharing architecture, every agent's turn updates the shared parameters
    (as HARL's `share_param`); per-agent parameters of other agents never move in agent i's turn.
    """

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, ALGO.actor_kind[spec.action_type])
        self.last_order: list[int] = []

    def train(self, buffer: RolloutBuffer) -> dict[str, float]:
        # ALGO LOGIC: advantages, the critic, then agents in a random order with the running factor.
        sequences = self.prepare(buffer)
        metrics = self.train_critic(buffer, sequences)
        # (L, C, 1): product of earlier agents' ratios at every step of every sequence
        factor = torch.ones(sequences.length, sequences.n_chunks, 1, device=self.device)
        order = torch.randperm(self.n_agents, generator=self.generator).tolist()
        self.last_order = order
        stats = {
            k: torch.zeros(self.n_agents, device=self.device)
            for k in ("policy_loss", "entropy", "ratio", "approx_kl", "clip_frac", "grad_norm", "factor")
        }
        grad_norms = []
        for agent in order:  # inherently sequential
            agents = torch.tensor([agent], device=self.device)
            updates = 0
            for _ in range(self.cfg.ppo_epoch):
                minibatches = sequences.actor_minibatches(self.cfg.actor_num_mini_batch, self.generator, agents)
                for k, batch in enumerate(minibatches):
                    surrogate, entropy, ratio, approx_kl, clipped = self.ppo_surrogate(batch)  # (M, 1) each
                    policy_loss = -(batch.take(factor) * surrogate).mean()
                    loss = policy_loss - self.cfg.entropy_coef * entropy.mean()
                    self.actor_optimizer.zero_grad()
                    loss.backward()
                    self.record_actor_gradients(new_group=k == 0)  # one group per epoch of each agent's turn
                    total_norm, _ = self._clip(self.actor_optimizer)
                    grad_norms.append(total_norm)
                    self.actor_optimizer.step(agents=agents)
                    for key, value in (
                        ("policy_loss", policy_loss),
                        ("entropy", entropy.mean()),
                        ("ratio", ratio.mean()),
                        ("approx_kl", approx_kl.mean()),
                        ("clip_frac", clipped.mean()),
                        ("grad_norm", total_norm),
                    ):
                        stats[key][agent] += value.detach()
                    updates += 1
            for key in ("policy_loss", "entropy", "ratio", "approx_kl", "clip_frac", "grad_norm"):
                stats[key][agent] /= updates
            everything = sequences.actor_batch(sequences.all_chunks(), agents)
            stats["factor"][agent] = everything.take(factor).mean()
            with torch.no_grad():
                new_log_probs, _ = self.evaluate_actions(everything)  # (L, C, 1)
                factor = factor * torch.exp(new_log_probs - sequences.log_probs[:, :, agents])
        for key, values in stats.items():
            metrics.update(agent_metrics(self.spec.agent_ids, key, values))
        metrics["losses/actor/grad_norm"] = torch.stack(grad_norms).mean().item()
        if self.grad_stats is not None:
            metrics.update(self.grad_stats.summary())
        return metrics


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
        description="heterogeneous-agent PPO, sequential update in a random order with the correction factor",
    )
)
