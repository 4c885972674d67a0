"""HATRPO's update against a reference doing HARL's work, in one process (not a test).

The reference is HATRPO's previous implementation (its conjugate gradient and Fisher-vector product kept below and
patched in for the "reference" updates; the rest is shared): HARL's computation, agent by agent: the surrogate's
gradient from one forward, then a second forward whose mean
KL(π_old ‖ π_θ) is differentiated once with its graph kept (`create_graph`), every conjugate-gradient iteration's
Fisher-vector product one more backward through that gradient graph (HARL's `fisher_vector_product`), out-of-place
CG vector updates. Ours: one forward per turn for the gradient and every product; each product J v (from a kept
backward of the outputs, differentiated), the KL's Hessian in the outputs on it (elementwise), and Jᵀ through the
kept forward (the Gauss-Newton form, equal to the Hessian at the old policy, where ∂KL/∂outputs = 0); in-place CG.

Both sides train the same learner from the same state on the same rollout (random observations and rewards,
actions sampled from the policy), the state restored before every update (untimed); updates alternate (reference,
ours, ...), each timed alone by this process's CPU time (1 thread), medians over rounds. The last column is the
largest difference between the two sides' actors after one update from the same state (float rounding: the
products are equal in exact arithmetic).

Settings: MaMuJoCo HalfCheetah 2x3 at HATRPO's tuned config (hidden [128, 128, 128], layer norm, 20 envs x 200
steps, global observations) and the 4-agent Specialisation matrix game (its defaults: 100 envs x 10 steps,
hidden [64]), architectures nops and hypermarl.

Usage: python bench/hatrpo_update.py [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from replay_common import mamujoco_spec

import harl.algos.hatrpo as hatrpo
from harl.algos.hatrpo import HATRPO, TurnParameters, rowwise_dot
from harl.buffers.rollout import ActorBatch, RolloutBuffer
from harl.experiment import build_config
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner
from harl.spec import EnvSpec


def reference_conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, residual_tol: float = 1e-10
) -> torch.Tensor:
    """CG with out-of-place vector updates (the reference's)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = rowwise_dot(r, r)
    for _ in range(iters):
        done = rr < residual_tol
        ap = matvec(p)
        alpha = torch.where(done, 0.0, rr / rowwise_dot(p, ap))
        x = x + alpha * p
        r = r - alpha * ap
        new_rr = rowwise_dot(r, r)
        p = torch.where(done, p, r + (new_rr / rr) * p)
        rr = torch.where(done, rr, new_rr)
    return x


def reference_fisher_product(
    self: HATRPO, batch: ActorBatch, turn: TurnParameters, old_params: torch.Tensor, out: torch.Tensor | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """HARL's Fisher-vector product: the KL's gradient graph built once, each product one backward through it
    (`out` unused: a forward of its own, as HARL's)."""
    _, _, params = self.policy_terms(batch)
    kl = self.actor.kl(old_params, params, batch.agents).mean(0).sum()
    kl_grad = turn.grad(kl, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        return turn.grad((kl_grad * v).sum(), retain_graph=True) + self.cfg.cg_damping * v

    return product


_OURS = (hatrpo.conjugate_gradient, HATRPO.fisher_product)


def use(reference: bool) -> None:
    """Patch the reference's conjugate gradient and Fisher-vector product in (or ours back)."""
    cg, product = (reference_conjugate_gradient, reference_fisher_product) if reference else _OURS
    hatrpo.conjugate_gradient = cg
    HATRPO.fisher_product = product  # type: ignore[method-assign]


def learner_and_rollout(setting: str, arch: str) -> tuple[HATRPO, RolloutBuffer]:
    """A HATRPO learner of the setting and one rollout of random observations and rewards (CPU)."""
    device = torch.device("cpu")
    if setting == "mamujoco":
        overrides = {"env.scenario": "HalfCheetah", "env.agent_conf": "2x3", "env.obs_mode": "global"}
        cfg, _ = build_config("hatrpo", arch, "mamujoco", overrides, use_tuned=True)
        spec: EnvSpec = mamujoco_spec("HalfCheetah", "2x3")
    else:
        cfg, _ = build_config("hatrpo", arch, "matrix", {}, use_tuned=True)
        spec = get_environment("matrix").make(cfg.env, n_envs=1, seed=0, device=device).spec
    torch.manual_seed(0)
    learner = build_learner(cfg, spec, device)
    envs, n = cfg.run.n_rollout_threads, spec.n_agents
    buffer = learner.make_buffer(envs)
    for _ in range(buffer.length):
        obs, state = torch.randn(envs, n, spec.obs_dim_max), torch.randn(envs, spec.state_dim)
        act = learner.act(obs, state, None)
        done = (torch.rand(envs) < 0.01).float()
        buffer.insert(obs, state, None, act.actions, act.log_probs, torch.randn(envs, n), done)
    buffer.finish(torch.randn(envs, n, spec.obs_dim_max), torch.randn(envs, spec.state_dim))
    return learner, buffer


def paired_seconds(learner: HATRPO, buffer: RolloutBuffer, seconds: float) -> tuple[float, float, float]:
    """CPU seconds per update of the reference and of ours (alternating, each from the same restored state and
    generator, until both have had `seconds`), and the largest actor difference after one update of each."""
    start_state = copy.deepcopy(learner.state_dict())
    spent, actors = {True: 0.0, False: 0.0}, {}
    calls = 0
    while calls < 2 or min(spent.values()) < seconds:
        for reference in (True, False):
            use(reference)
            learner.load_state_dict(copy.deepcopy(start_state))
            start = time.process_time()
            learner.train(buffer)
            spent[reference] += time.process_time() - start
            actors[reference] = [p.detach().clone() for p in learner.actor.parameters()]
        calls += 1
    use(False)
    learner.load_state_dict(start_state)
    gap = max(float((a - b).abs().max()) for a, b in zip(actors[True], actors[False], strict=True))
    return spent[True] / calls, spent[False] / calls, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_extensions()
    cases = [(setting, arch) for setting in ("mamujoco", "matrix") for arch in ("nops", "hypermarl")]
    learners = {case: learner_and_rollout(*case) for case in cases}
    rounds: dict[tuple[str, str], list[tuple[float, float, float]]] = {case: [] for case in cases}
    for _ in range(args.rounds):  # interleaved: every case once per round
        for case in cases:
            rounds[case].append(paired_seconds(*learners[case], args.seconds))
    print("hatrpo update (critic included), 1 thread, CPU s per update, medians over rounds")
    print(f"{'setting':<34}{'arch':<11}{'reference':>10}{'ours':>8}{'ratio':>8}{'max |Δθ|':>11}")
    titles = {"mamujoco": "HalfCheetah 2x3 (20 x 200, [128]*3)", "matrix": "Specialisation-4 (100 x 10, [64])"}
    for (setting, arch), results in rounds.items():
        reference, ours = (statistics.median(r[k] for r in results) for k in (0, 1))
        gap = max(r[2] for r in results)
        print(f"{titles[setting]:<34}{arch:<11}{reference:>10.3f}{ours:>8.3f}{reference / ours:>7.2f}x{gap:>11.1e}")


if __name__ == "__main__":
    main()
