"""HAPPO: agents updated one after another in a random order, each against the advantage weighted by
the probability ratios of the agents updated before it (the heterogeneous-agent correction factor)."""

from __future__ import annotations

import torch

from harl.algos.ppo_base import OnPolicyLearner, PPOConfig, agent_metrics
from harl.buffers.rollout import RolloutBuffer
from harl.registry import AlgoEntry, register_algorithm


class HAPPO(OnPolicyLearner):
    """Heterogeneous-agent PPO (sequential update).

    With a parameter-sharing architecture, every agent's turn updates the shared parameters
    (as HARL's `share_param`); per-agent parameters of other agents never move in agent i's turn.
    """

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, ALGO.actor_kind[spec.action_type])
        self.last_order: list[int] = []

    def train(self, buffer: RolloutBuffer, next_values: torch.Tensor) -> dict[str, float]:
        # ALGO LOGIC: advantages, the critic, then agents in a random order with the running factor.
        advantages = self.prepare(buffer, next_values)  # (T·E, N)
        metrics = self.train_critic(buffer)
        obs, actions, avail = buffer.flat("obs"), buffer.flat("actions"), buffer.flat("avail")
        old_log_probs = buffer.flat("log_probs")  # (T·E, N)
        factor = torch.ones(obs.shape[0], 1, device=self.device)  # (T·E, 1): product of earlier agents' ratios
        order = torch.randperm(self.n_agents, generator=self.generator).tolist()
        self.last_order = order
        stats = {
            k: torch.zeros(self.n_agents, device=self.device)
            for k in ("policy_loss", "entropy", "ratio", "approx_kl", "clip_frac", "grad_norm", "factor")
        }
        grad_norms = []
        for agent in order:  # inherently sequential
            agents = torch.tensor([agent], device=self.device)
            agent_obs, agent_actions = obs[:, agents], actions[:, agents]  # (T·E, 1, ...)
            agent_avail = None if avail is None else avail[:, agents]
            updates = 0
            for _ in range(self.cfg.ppo_epoch):
                for k, idx in enumerate(buffer.minibatches(self.cfg.actor_num_mini_batch, self.generator)):
                    surrogate, entropy, ratio, approx_kl, clipped = self.ppo_surrogate(
                        agent_obs[idx],
                        agent_actions[idx],
                        None if agent_avail is None else agent_avail[idx],
                        old_log_probs[idx][:, agents],
                        advantages[idx][:, agents],
                        agents,
                    )
                    policy_loss = -(factor[idx] * surrogate).mean()
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
            stats["factor"][agent] = factor.mean()
            with torch.no_grad():
                new_log_probs, _ = self.actor.evaluate(agent_obs, agent_actions, agent_avail, agents)  # (T·E, 1)
                factor = factor * torch.exp(new_log_probs - old_log_probs[:, agents])
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
        description="heterogeneous-agent PPO, sequential update in a random order with the correction factor",
    )
)
