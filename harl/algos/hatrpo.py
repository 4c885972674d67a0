"""HATRPO: agents updated one after another in a random order, each by one trust-region step on its surrogate
weighted by the probability ratios of the agents updated before it (HAPPO's correction factor), HARL's defaults.

Agent i's turn (`HATRPO.trust_region_step`), on the whole rollout (HARL's one minibatch):

1. g = ∇θ L at θ_old, with L = mean(factor × ratio_i × advantage) (no clip, no entropy bonus) minus the
   architecture's auxiliary term of agent i (`Actor.aux_loss`, 0 for most architectures) and θ the parameters
   agent i's turn moves (`TurnParameters`). The auxiliary term is part of the objective the step improves: its
   gradient joins g, and the line search measures the improvement of L with it; the trust region bounds the
   policy's KL as ever.
2. x ≈ (F + cg_damping·I)⁻¹ g by `cg_iters` conjugate-gradient iterations on Fisher-vector products, F the
   Hessian at θ_old of the mean KL(π_old ‖ π_θ) of agent i's policy over the rollout.
3. The full step s = √(2·kl_threshold / xᵀ(F + cg_damping·I)x) · x: the step whose quadratic KL model equals
   kl_threshold along x.
4. Backtracking line search over θ_old + β^j·s (β = backtrack_coeff, j < ls_step): the first candidate whose
   measured mean KL is below kl_threshold and whose surrogate improvement is positive and more than accept_ratio
   times the linear prediction g·β^j·s is kept; when none is, θ stays θ_old.

No optimiser steps the actor (it has no `actor_optimizer`); the critic is trained as HAPPO's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harl.algos.ppo_base import ActorCriticLearner, OnPolicyConfig, seed_agent_metrics
from harl.buffers.rollout import ActorBatch, RolloutBuffer
from harl.config import bounded
from harl.models.agent_mlp import is_per_agent
from harl.registry import AlgoEntry, register_algorithm

CG_RESIDUAL_TOL = 1e-10
"""Conjugate gradient stops improving once the squared residual falls below this (HARL's `residual_tol`)."""


@dataclass
class TRPOConfig(OnPolicyConfig):
    """Hyper-parameters of HATRPO (HARL's names and defaults; HARL fixes the conjugate-gradient ones in code)."""

    kl_threshold: float = bounded(0.01, gt=0)
    """Trust region: the largest mean KL(old ‖ new) of an agent's policy over the rollout one step may take."""
    ls_step: int = bounded(10, gt=0)
    """Line search: candidate step sizes tried, each backtrack_coeff times the one before."""
    accept_ratio: float = bounded(0.5, ge=0)
    """Line search: a candidate needs a surrogate improvement above this fraction of the linear prediction."""
    backtrack_coeff: float = bounded(0.8, gt=0, lt=1)
    """Line search: the factor between consecutive candidate step sizes."""
    cg_iters: int = bounded(10, gt=0)
    """Conjugate-gradient iterations solving (F + cg_damping·I) x = g for the natural-gradient direction."""
    cg_damping: float = bounded(0.1, ge=0)
    """Damping added to every Fisher-vector product (keeps F + cg_damping·I well conditioned)."""


class TurnParameters:
    """The actor entries one agent's turn moves, as one flat vector: that agent's rows of per-agent tensors (NoPS
    layers, per-agent log-stds, learned embeddings) and the whole of every shared tensor (FuPS layers, hypernetwork
    generators, shared log-stds). Other agents' rows are outside it and never move in this turn.

    Args:
        params: the actor's trainable tensors.
        agent: the agent whose turn it is.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], agent: int) -> None:
        self.params = list(params)
        self.agent = agent

    def _part(self, param: torch.nn.Parameter, tensor: torch.Tensor) -> torch.Tensor:
        """The entries of `tensor` (shaped like `param`) this turn moves."""
        return tensor[self.agent] if is_per_agent(param) else tensor

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Tensors shaped like the parameters (gradients; None: zero) as one vector over the moved entries."""
        pieces = [
            torch.zeros(self._part(p, p).numel(), device=p.device, dtype=p.dtype) if t is None else self._part(p, t)
            for p, t in zip(self.params, tensors, strict=True)
        ]
        return torch.cat([piece.reshape(-1) for piece in pieces])

    @torch.no_grad()
    def values(self) -> torch.Tensor:
        """The moved entries' current values (a copy)."""
        return self.flatten(self.params)

    @torch.no_grad()
    def assign(self, vector: torch.Tensor) -> None:
        """Write `vector` into the moved entries, in place (which bumps the tensors' versions: cached generated
        weights are regenerated)."""
        offset = 0
        for p in self.params:
            part = self._part(p, p)
            part.copy_(vector[offset : offset + part.numel()].view_as(part))
            offset += part.numel()

    def grad(self, output: torch.Tensor, **kwargs) -> torch.Tensor:
        """∇ of a scalar `output` over the moved entries, as one vector (`torch.autograd.grad` keywords pass on)."""
        return self.flatten(torch.autograd.grad(output, self.params, allow_unused=True, **kwargs))


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, residual_tol: float = CG_RESIDUAL_TOL
) -> torch.Tensor:
    """x ≈ A⁻¹ b for a symmetric positive-definite A given by `matvec` (x ↦ A x), after `iters` iterations from
    x = 0 (exact after as many iterations as b has entries, in exact arithmetic). Once the squared residual is
    below `residual_tol` the iterate stops moving; the test runs on the device, so nothing waits on the host."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        done = rr < residual_tol
        ap = matvec(p)
        alpha = torch.where(done, 0.0, rr / (p @ ap))
        x = x + alpha * p
        r = r - alpha * ap
        new_rr = r @ r
        p = torch.where(done, p, r + (new_rr / rr) * p)
        rr = torch.where(done, rr, new_rr)
    return x


class HATRPO(ActorCriticLearner):
    """Heterogeneous-agent TRPO (sequential trust-region update). With a parameter-sharing architecture every
    agent's turn steps the shared parameters, within the trust region of that agent's policy (see
    docs/algorithms.md)."""

    cfg: TRPOConfig

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, ALGO.actor_kind[spec.action_type])
        self.last_order: list[int] = []

    def train(self, buffer: RolloutBuffer) -> list[dict[str, float]]:
        # ALGO LOGIC: advantages, the critic, then agents in a random order, each one trust-region step on the
        # whole rollout against the running correction factor.
        sequences = self.prepare(buffer)
        metrics = self.train_critic(buffer, sequences)
        factor = torch.ones(sequences.length, sequences.n_chunks, 1, device=self.device)  # (L, C, 1)
        self.last_order = torch.randperm(self.n_agents, generator=self.generator).tolist()
        stats: dict[str, torch.Tensor] = {}  # (N,) each
        for agent in self.last_order:  # inherently sequential
            agents = torch.tensor([agent], device=self.device)
            batch = sequences.actor_batch(sequences.all_chunks(), agents)
            step = self.trust_region_step(batch, batch.take(factor), agent)
            step["factor"] = batch.take(factor).mean()
            for key, value in step.items():
                stats.setdefault(key, torch.zeros(self.n_agents, device=self.device))[agent] = value
            with torch.no_grad():
                new_log_probs, _ = self.evaluate_actions(batch)  # (L, C, 1)
                factor = factor * torch.exp(new_log_probs - sequences.log_probs[:, :, agents])
        (agent_metrics,) = seed_agent_metrics(self.spec.agent_ids, stats)
        metrics[0].update(agent_metrics)
        return metrics

    def evaluate_policy(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (M, k) of the batch's actions and its agents' distribution parameters (M, k, D)
        at its real steps, under the current actor."""
        log_probs, entropy, params = self.actor.evaluate_policy(
            batch.obs, batch.actions, batch.avail, batch.agents, batch.hidden, batch.resets
        )
        return batch.flat(log_probs), batch.flat(entropy), batch.flat(params)

    def fisher_product(
        self, batch: ActorBatch, turn: TurnParameters, old_params: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """v ↦ (F + cg_damping·I) v over the turn's entries, F the Hessian of the batch's mean KL(old ‖ π_θ) at the
        current θ, where the distributions `old_params` (M, k, D) are the current ones. The KL's gradient graph is
        built once; each product is one more backward pass through it."""
        _, _, params = self.evaluate_policy(batch)
        kl = self.actor.kl(old_params, params, batch.agents).mean()
        kl_grad = turn.grad(kl, create_graph=True)

        def product(v: torch.Tensor) -> torch.Tensor:
            return turn.grad(kl_grad @ v, retain_graph=True) + self.cfg.cg_damping * v

        return product

    def trust_region_step(self, batch: ActorBatch, factor: torch.Tensor, agent: int) -> dict[str, torch.Tensor]:
        """One trust-region step of `agent`'s policy on the batch (its agent only) with correction factors
        (M, 1); returns what it measured (0-dim tensors): the KL of the kept step to the old policy, the surrogate
        improvement and its linear prediction, the step's fraction of the full step (0: none kept), the
        entropy and the probability ratio after it."""
        turn = TurnParameters([p for p in self.actor.parameters() if p.requires_grad], agent)
        log_probs, _, old_params = self.evaluate_policy(batch)
        old_params = old_params.detach()

        def surrogate(log_probs: torch.Tensor, record: bool = False) -> torch.Tensor:
            """L at the actor's current parameters (which give `log_probs`): the surrogate minus the auxiliary term."""
            gain = (factor * torch.exp(log_probs - batch.log_probs) * batch.advantages).mean()
            return gain - self.actor.aux_loss([agent], -gain, record)

        objective = surrogate(log_probs, record=True)
        g = turn.grad(objective)
        fisher = self.fisher_product(batch, turn, old_params)
        direction = conjugate_gradient(fisher, g, self.cfg.cg_iters)
        quadratic = direction @ fisher(direction)  # xᵀ(F + δI)x
        full_step = direction * torch.sqrt(2 * self.cfg.kl_threshold / quadratic.clamp_min(1e-12))
        expected = g @ full_step  # the linear model's improvement of the full step
        old = turn.values()
        objective = objective.detach()
        fraction = 1.0
        with torch.no_grad():
            for _ in range(self.cfg.ls_step):
                turn.assign(old + fraction * full_step)
                log_probs, entropy, params = self.evaluate_policy(batch)
                improvement = surrogate(log_probs) - objective
                kl = self.actor.kl(old_params, params, batch.agents).mean()
                accepted = (
                    (kl < self.cfg.kl_threshold)
                    & (improvement > 0)
                    & (improvement > self.cfg.accept_ratio * expected * fraction)
                )
                if bool(accepted):  # one host read per candidate tried
                    break
                fraction *= self.cfg.backtrack_coeff
            else:
                turn.assign(old)
                fraction = 0.0
                log_probs, entropy, _ = self.evaluate_policy(batch)
                kl, improvement = torch.zeros_like(kl), torch.zeros_like(improvement)
        return {
            "kl": kl,
            "surrogate_improvement": improvement,
            "expected_improvement": expected * fraction,
            "step_fraction": torch.tensor(fraction, device=self.device),
            "entropy": entropy.mean(),
            "ratio": torch.exp(log_probs - batch.log_probs).mean(),
        }


ALGO = register_algorithm(
    AlgoEntry(
        name="hatrpo",
        learner_cls=HATRPO,
        config_cls=TRPOConfig,
        on_policy=True,
        sequential=True,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "gaussian", "discrete": "categorical"},
        recurrent=True,
        batched_seeds=False,
        description="heterogeneous-agent TRPO, sequential trust-region steps (conjugate gradient, line search)",
    )
)
