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

A population of P seeds (`--seeds P`, `harl.models.population`) takes P such turns at once, turn j moving the j-th
agent of each seed's own random order: every seed's moved entries are one row of (P, D) vectors, and every
quantity of the step is per row (the CG's dot products, α and β, the KL scaling, the line search's acceptance and
step size), so seed s's step is its solo run's.
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
    """The actor entries one turn moves, one row per seed: each selected (virtual) agent's rows of per-agent
    tensors (NoPS layers, per-agent log-stds, learned embeddings) and the whole of every other tensor (FuPS
    layers, hypernetwork rngs, shared log-stds; a population's are (P, ...), one row per seed). Other
    agents' rows are outside it and never move in this turn. Vectors over the moved entries are (P, D): row s holds
    seed s's (a solo run: P = 1).

    Args:
        params: the actor's trainable tensors.
        agents: the agent whose turn it is in each seed, as virtual agents (P,) (a solo run: one).
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], agents: Sequence[int]) -> None:
        self.params = list(params)
        self.agents = list(agents)
        self._index = torch.tensor(self.agents, device=self.params[0].device)

    def part(self, param: torch.nn.Parameter, tensor: torch.Tensor) -> torch.Tensor:
        """The entries of `tensor` (shaped like `param`) this turn moves: (P, ...) rows of a per-agent tensor, or
        the whole of any other."""
        return tensor.index_select(0, self._index) if is_per_agent(param) else tensor

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Tensors shaped like the parameters (gradients; None: zero) as (P, D) over the moved entries."""
        rows = len(self.agents)
        pieces = [
            torch.zeros(rows, self.part(p, p).numel() // rows, device=p.device, dtype=p.dtype)
            if t is None
            else self.part(p, t).reshape(rows, -1)
            for p, t in zip(self.params, tensors, strict=True)
        ]
        return torch.cat(pieces, dim=1)

    @torch.no_grad()
    def values(self) -> torch.Tensor:
        """The moved entries' current values (P, D) (a copy)."""
        return self.flatten(self.params)

    def parts(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """`vector` (P, D) cut into tensors shaped like each parameter's moved entries."""
        pieces, offset = [], 0
        for p in self.params:
            shape = self.part(p, p).shape
            width = shape.numel() // len(self.agents)
            pieces.append(vector[:, offset : offset + width].reshape(shape))
            offset += width
        return pieces

    @torch.no_grad()
    def assign(self, vector: torch.Tensor) -> None:
        """Write `vector` (P, D) into the moved entries, in place (which bumps the tensors' versions: cached
        generated weights are regenerated)."""
        for p, piece in zip(self.params, self.parts(vector), strict=True):
            if is_per_agent(p):
                p.index_copy_(0, self._index, piece)
            else:
                p.copy_(piece)

    def grad(self, output: torch.Tensor, **kwargs) -> torch.Tensor:
        """∇ of `output` over the moved entries, (P, D) (`torch.autograd.grad` keywords pass on)."""
        return self.flatten(torch.autograd.grad(output, self.params, allow_unused=True, **kwargs))


def rowwise_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 1) the dot products of the rows (..., D) of `a` and `b`."""
    return (a * b).sum(-1, keepdim=True)


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, residual_tol: float = CG_RESIDUAL_TOL
) -> torch.Tensor:
    """x ≈ A⁻¹ b for a symmetric positive-definite A given by `matvec` (x ↦ A x), after `iters` iterations from
    x = 0 (exact after as many iterations as b has entries, in exact arithmetic). Once the squared residual is
    below `residual_tol` the iterate stops moving; the test runs on the device, so nothing waits on the host.

    b may be (P, D): P independent systems (A block-diagonal over the rows, as a population's seeds), each row
    with its own dot products, α and β and stopping test. The vectors are updated in place (a hypernetwork's turn
    moves millions of entries)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = rowwise_dot(r, r)  # (..., 1)
    for _ in range(iters):
        done = rr < residual_tol
        ap = matvec(p)
        alpha = torch.where(done, 0.0, rr / rowwise_dot(p, ap))  # done: nothing moves
        x.addcmul_(p, alpha)
        r.addcmul_(ap, alpha, value=-1.0)
        new_rr = rowwise_dot(r, r)
        beta = torch.where(done, 1.0, new_rr / rr)
        p.mul_(beta).addcmul_(r, (~done).to(p.dtype))  # r + β·p (done: p as it was)
        rr = torch.where(done, rr, new_rr)
    return x


class HATRPO(ActorCriticLearner):
    """Heterogeneous-agent TRPO (sequential trust-region update). With a parameter-sharing architecture every
    agent's turn steps the shared parameters, within the trust region of that agent's policy (see
    docs/algorithms.md)."""

    cfg: TRPOConfig
    last_order: list[int]
    """The first seed's agent order in the last update."""

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, ALGO.actor_kind[spec.action_type])
        self.last_order = []

    def train(self, buffer: RolloutBuffer) -> list[dict[str, float]]:
        # ALGO LOGIC: advantages, the critic, then agents in a random order (each seed's own), each one
        # trust-region step on the whole rollout against the running correction factor.
        prepared = self.prepare(buffer)
        metrics = self.train_critic(prepared)
        sequences = prepared.sequences
        n = self.spec.n_agents
        factor = torch.ones(sequences.length, sequences.n_chunks, self.seeds, device=self.device)  # (L, C, P)
        orders = [torch.randperm(n, generator=rng).tolist() for rng in self.rngs]
        self.last_order = orders[0]
        stats: dict[str, torch.Tensor] = {}  # (N,) each: per virtual agent
        for turn in range(n):  # inherently sequential
            turn_agents = [s * n + order[turn] for s, order in enumerate(orders)]  # (P,) virtual agents
            agents = torch.tensor(turn_agents, device=self.device)
            batch = sequences.actor_batch(sequences.all_chunks(), agents)
            step = self.trust_region_step(batch, batch.take(factor), turn_agents)
            step["factor"] = batch.take(factor).mean(0)
            for key, value in step.items():
                stats.setdefault(key, torch.zeros(self.n_agents, device=self.device))[agents] = value
            with torch.no_grad():
                new_log_probs, _ = self.batch_log_probs_entropy(batch)  # (L, C, P)
                factor = factor * torch.exp(new_log_probs - sequences.log_probs[:, :, agents])
        for seed_metrics, agent_metrics in zip(metrics, seed_agent_metrics(self.spec.agent_ids, stats), strict=True):
            seed_metrics.update(agent_metrics)
        self.add_gradient_stats(metrics)
        return metrics

    def outputs(self, batch: ActorBatch) -> torch.Tensor:
        """The actor network's outputs (L, B, k, A) on the batch's sequences."""
        return self.actor.outputs(batch.obs, batch.agents, batch.hidden, batch.resets)

    def policy_of(self, batch: ActorBatch, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (M, k) of the batch's actions and its agents' distribution parameters (M, k, D)
        at its real steps, from the network's outputs (L, B, k, A)."""
        log_probs, entropy, params = self.actor.policy_of(out, batch.actions, batch.avail, batch.agents)
        return batch.flat(log_probs), batch.flat(entropy), batch.flat(params)

    def policy_terms(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (M, k) of the batch's actions and its agents' distribution parameters (M, k, D)
        at its real steps, under the current actor."""
        return self.policy_of(batch, self.outputs(batch))

    def fisher_product(
        self, batch: ActorBatch, turn: TurnParameters, old_params: torch.Tensor, out: torch.Tensor | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """v ↦ (F + cg_damping·I) v over the turn's entries (P, D), F the Hessian of the batch's mean KL(old ‖ π_θ)
        at the current θ (each seed's mean over its own samples, so F is block-diagonal over the seeds), where the
        distributions `old_params` (M, P, D) are the current ones; `out` the network's outputs (L, B, P, A) at θ
        with their graph, when already computed.

        The KL is a function of the network's outputs o(θ) and of parameters it reads directly (a Gaussian's
        log-std): KL(o(θ), θ). Its Hessian is Jᵀ H J (J = ∂(o, θ)/∂θ, H the KL's Hessian in (o, θ)) plus
        Σ ∂KL/∂o · ∂²o/∂θ², and the last term vanishes here because the KL is minimal (0) at the old policy:
        ∂KL/∂o = 0. So each product is J v (the transposed product of a once-built backward, differentiated),
        then H on it (elementwise: the KL's own small graph), then Jᵀ (one backward through the kept forward),
        about half the work of differentiating the KL's whole gradient graph again."""
        if out is None:
            out = self.outputs(batch)
        params = turn.params
        leaf = out.detach().requires_grad_()
        params_of_leaf = batch.flat(self.actor.policy_params(leaf, batch.avail, batch.agents))  # (M, P, D)
        kl = self.actor.kl(old_params, params_of_leaf, batch.agents).mean(0).sum()  # Σ over seeds of their means
        kl_grads = torch.autograd.grad(kl, [leaf, *params], create_graph=True, allow_unused=True)
        kl_out = kl_grads[0]  # (L, B, P, A), 0 in value: only its derivative is used
        direct = [(k, turn.part(params[k], g)) for k, g in enumerate(kl_grads[1:]) if g is not None]
        probe = torch.zeros_like(out, requires_grad=True)  # Jᵀ probe is linear in the probe: its derivative is J
        transposed = turn.grad(out, grad_outputs=probe, create_graph=True, retain_graph=True)

        def product(v: torch.Tensor) -> torch.Tensor:
            (jv,) = torch.autograd.grad(transposed, probe, v, retain_graph=True)  # J v: (L, B, P, A)
            pieces = turn.parts(v)
            tail = (kl_out * jv).sum() + sum((g * pieces[k]).sum() for k, g in direct)
            h_out, *h_direct = torch.autograd.grad(tail, [leaf, *params], retain_graph=True, allow_unused=True)
            back = torch.autograd.grad(out, params, h_out, retain_graph=True, allow_unused=True)  # Jᵀ H (J v)
            summed = [a if b is None else b if a is None else a + b for a, b in zip(back, h_direct, strict=True)]
            return turn.flatten(summed) + self.cfg.cg_damping * v

        return product

    def trust_region_step(
        self, batch: ActorBatch, factor: torch.Tensor, agents: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """One trust-region step of each seed's agent in turn, `agents` (P,) (virtual agents, the batch's), with
        correction factors (M, P); returns what it measured per seed, (P,) each: the KL of the kept step to the old
        policy, the surrogate improvement and its linear prediction, the step's fraction of the full step (0: none
        kept), the entropy and the probability ratio after it. Seeds are independent throughout: each has its own
        direction, step size and line search."""
        turn = TurnParameters([p for p in self.actor.parameters() if p.requires_grad], agents)
        cfg = self.cfg
        out = self.outputs(batch)  # one forward with its graph: the gradient and every Fisher-vector product
        log_probs, entropy, old_params = self.policy_of(batch, out)
        old_params = old_params.detach()

        def surrogate(log_probs: torch.Tensor, record: bool = False) -> torch.Tensor:
            """(P,) each seed's L at the actor's current parameters (which give `log_probs`): the surrogate minus the
            architecture's auxiliary term of the agents in turn."""
            gain = (factor * torch.exp(log_probs - batch.log_probs) * batch.advantages).mean(0)
            return gain - self.actor.aux_loss(list(agents), -gain, record)

        objective = surrogate(log_probs, record=True)
        grads = torch.autograd.grad(objective.sum(), turn.params, retain_graph=True, allow_unused=True)
        self.record_actor_gradients(grads, new_group=True)  # one full-batch gradient per turn: no noise
        g = turn.flatten(grads)  # (P, D)
        fisher = self.fisher_product(batch, turn, old_params, out)
        direction = conjugate_gradient(fisher, g, cfg.cg_iters)
        quadratic = rowwise_dot(direction, fisher(direction))  # (P, 1): xᵀ(F + δI)x
        del fisher, out  # the graphs
        full_step = direction * torch.sqrt(2 * cfg.kl_threshold / quadratic.clamp_min(1e-12))
        expected = rowwise_dot(g, full_step).squeeze(1)  # (P,) the linear model's improvement of the full step
        old, objective = turn.values(), objective.detach()
        log_probs, entropy = log_probs.detach(), entropy.detach()  # (M, P): replaced by each seed's kept candidate's
        rows = len(agents)
        fraction = torch.ones(rows, dtype=torch.float64, device=self.device)  # (P,) β^j, j the seed's candidate
        accepted = torch.zeros(rows, dtype=torch.bool, device=self.device)  # (P,)
        kept_kl, kept_improvement = torch.zeros_like(expected), torch.zeros_like(expected)  # (P,)
        with torch.no_grad():
            for _ in range(cfg.ls_step):
                step_size = fraction.to(full_step.dtype)  # (P,); an accepted seed's stays, its candidate too
                turn.assign(old + step_size.unsqueeze(1) * full_step)
                candidate_log_probs, candidate_entropy, params = self.policy_terms(batch)
                improvement = surrogate(candidate_log_probs) - objective  # (P,)
                kl = self.actor.kl(old_params, params, batch.agents).mean(0)  # (P,)
                ok = (
                    (kl < cfg.kl_threshold)
                    & (improvement > 0)
                    & (improvement > cfg.accept_ratio * expected * step_size)
                )
                new = ok & ~accepted
                kept_kl, kept_improvement = (
                    torch.where(new, kl, kept_kl),
                    torch.where(new, improvement, kept_improvement),
                )
                log_probs = torch.where(new, candidate_log_probs, log_probs)  # (M, P)
                entropy = torch.where(new, candidate_entropy, entropy)
                accepted = accepted | ok
                if bool(accepted.all()):  # one host read per candidate tried
                    break
                fraction = torch.where(accepted, fraction, fraction * cfg.backtrack_coeff)
            else:  # a seed without an accepted candidate keeps its old policy
                turn.assign(torch.where(accepted.unsqueeze(1), old + step_size.unsqueeze(1) * full_step, old))
                stayed_log_probs, stayed_entropy, _ = self.policy_terms(batch)
                log_probs = torch.where(accepted, log_probs, stayed_log_probs)
                entropy = torch.where(accepted, entropy, stayed_entropy)
        step_fraction = torch.where(accepted, fraction, 0.0).to(expected.dtype)  # (P,)
        return {
            "kl": kept_kl,
            "surrogate_improvement": kept_improvement,
            "expected_improvement": expected * step_fraction,
            "step_fraction": step_fraction,
            "entropy": entropy.mean(0),
            "ratio": torch.exp(log_probs - batch.log_probs).mean(0),
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
        batched_seeds=True,
        description="heterogeneous-agent TRPO, sequential trust-region steps (conjugate gradient, line search)",
    )
)
