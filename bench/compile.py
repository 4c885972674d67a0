"""`--compile true` against eager: update and acting times, and compile time (not a test).

For hasac (`nops`, `hypermarl`) and mappo (`nops`) at HalfCheetah 2x3 sizes, hidden [256, 256], batch 1000
(hasac: one whole update from a replay buffer of random transitions; mappo: the PPO actor loss's forward and
backward over 1000 samples, the part of its update the compiled forwards serve) and acting on 20 envs, it
builds an eager and a compiled learner from the same state, compiles the latter's forwards by running them
(the compile time: the first calls' time less the eager calls'), then times the two in interleaved rounds and
reports medians of this process's CPU time per call. Inductor keeps compiled kernels in an on-disk cache
(TORCHINDUCTOR_CACHE_DIR), so the first run on a machine pays the most compile time.

Usage: python bench/compile.py [--threads 1] [--rounds 5] [--calls 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from replay_common import mamujoco_spec

from harl.config import apply_overrides
from harl.experiment import default_config
from harl.registry import get_algorithm, get_architecture, load_extensions
from harl.utils.compile import compile_learner
from harl.utils.memory import keep_freed_memory

BATCH, HIDDEN, N_ENVS = 1000, [256, 256], 20
CASES = [("hasac", "nops"), ("hasac", "hypermarl"), ("mappo", "nops")]


def learner_pair(algo: str, arch: str, spec):
    """An eager and a compiled learner from the same state."""
    cfg = default_config(algo, arch, "mamujoco")
    overrides = {"model.hidden_sizes": HIDDEN}
    if algo == "hasac":
        overrides |= {"algo.batch_size": BATCH, "algo.n_step": 10, "algo.buffer_size": 100_000}
    apply_overrides(cfg, overrides)
    build = get_algorithm(algo).learner_cls
    eager = build(spec, cfg, get_architecture(arch), torch.device("cpu"))
    compiled = build(spec, cfg, get_architecture(arch), torch.device("cpu"))
    compiled.load_state_dict(eager.state_dict())
    compile_learner(compiled, True)
    return eager, compiled


def update_fn(algo: str, learner, spec):
    """One timed unit of training work for `learner` (see the module docstring)."""
    if algo == "hasac":
        buffer = learner.make_buffer(N_ENVS)
        e, n = N_ENVS, spec.n_agents
        for _ in range(BATCH // N_ENVS * 2):
            buffer.insert(
                torch.randn(e, n, spec.obs_dim_max),
                torch.randn(e, spec.state_dim),
                torch.rand(e, n, spec.act_dim_max) * 2 - 1,
                torch.randn(e, n),
                torch.randn(e, n, spec.obs_dim_max),
                torch.randn(e, spec.state_dim),
                torch.zeros(e, dtype=torch.bool),
                torch.zeros(e, dtype=torch.bool),
            )
        return lambda: learner.update(buffer)
    obs = torch.randn(BATCH, spec.n_agents, spec.obs_dim_max)
    actions = torch.randn(BATCH, spec.n_agents, spec.act_dim_max)

    def ppo_actor_step() -> None:
        learner.actor.zero_grad()
        log_probs, entropy = learner.actor.log_probs_entropy(obs, actions)
        (log_probs.mean() + 0.01 * entropy.mean()).backward()
        learner.critic.zero_grad()
        learner.critic(torch.randn(BATCH, spec.state_dim)).mean().backward()

    return ppo_actor_step


def seconds(fn, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved eager/compiled timing rounds")
    parser.add_argument("--calls", type=int, default=5, help="updates per round (acting: 40x as many)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_extensions()
    keep_freed_memory()
    spec = mamujoco_spec("HalfCheetah", "2x3")  # global observations, as HARL
    obs, state = torch.randn(N_ENVS, spec.n_agents, spec.obs_dim_max), torch.randn(N_ENVS, spec.state_dim)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), HalfCheetah 2x3, hidden {HIDDEN}, "
        f"batch {BATCH}, acting on {N_ENVS} envs; CPU ms per call, medians of {args.rounds} interleaved rounds"
    )
    print(
        f"{'learner':<16}{'update eager':>13}{'compiled':>10}{'ratio':>7}{'act eager':>11}{'compiled':>10}"
        f"{'ratio':>7}{'compile s':>11}"
    )
    for algo, arch in CASES:
        eager, compiled = learner_pair(algo, arch, spec)
        updates = {name: update_fn(algo, learner, spec) for name, learner in (("eager", eager), ("compiled", compiled))}
        acts = {
            name: (lambda learner=learner: learner.act(obs, state, None))
            for name, learner in (("eager", eager), ("compiled", compiled))
        }
        first = {}
        for name in ("eager", "compiled"):  # the first calls compile (and recompile for their second shapes)
            start = time.perf_counter()
            for _ in range(2):
                updates[name]()
                acts[name]()
            first[name] = time.perf_counter() - start
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name in ("eager", "compiled"):
                times.setdefault(("update", name), []).append(seconds(updates[name], args.calls))
                times.setdefault(("act", name), []).append(seconds(acts[name], 40 * args.calls))
        ms = {key: 1e3 * statistics.median(values) for key, values in times.items()}
        print(
            f"{algo + ' ' + arch:<16}{ms['update', 'eager']:>13.1f}{ms['update', 'compiled']:>10.1f}"
            f"{ms['update', 'eager'] / ms['update', 'compiled']:>6.2f}x"
            f"{ms['act', 'eager']:>11.2f}{ms['act', 'compiled']:>10.2f}"
            f"{ms['act', 'eager'] / ms['act', 'compiled']:>6.2f}x"
            f"{first['compiled'] - first['eager']:>11.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
