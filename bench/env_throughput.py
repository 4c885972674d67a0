"""Env-only vs training rollout throughput of the natively vectorised envs: SMAX and VMAS Dispersion.

For each env, prints side by side in one run:
1. env-only stepping with random actions (random *available* actions for SMAX), the limit;
2. the MAPPO training rollout (`OnPolicyRunner.collect()` and the learner's `value_rollout`: policy
   inference, value estimates and buffer writes) with the same env count, on the same device; for SMAX
   with feed-forward and with GRU policies and critics (the tuned SMAX configs are recurrent, as the paper's).
Target on CPU: training ≥ 0.5× env-only, with one torch thread (`--torch_threads 1`, the default here; 0 takes
the run's own thread policy, `harl.utils.threads`). JAX compiles SMAX's step before timing starts (and keeps it
in its persistent cache), so neither row includes compilation.

Usage: python bench/env_throughput.py [--steps 200] [--smax_envs 64] [--smax_map smacv2_10_units]
                                      [--vmas_envs 600] [--arch nops] [--device cpu] [--torch_threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from harl.experiment import build_config
from harl.registry import get_environment, load_extensions
from harl.runners.on_policy import OnPolicyRunner


def random_actions(out, spec, generator: torch.Generator) -> torch.Tensor:
    """Uniform random (available) actions (E, N, action_shape) for the step that follows `out`."""
    n_envs = out.obs.shape[0]
    if not spec.discrete:
        low, high = torch.as_tensor(spec.act_low), torch.as_tensor(spec.act_high)
        return low + (high - low) * torch.rand(n_envs, *low.shape, generator=generator)
    valid = torch.as_tensor(spec.act_mask).expand(n_envs, -1, -1)  # (E, N, A)
    if out.avail_actions is not None:
        valid = valid & out.avail_actions.cpu()
    scores = torch.rand(valid.shape, generator=generator).masked_fill(~valid, -1.0)
    return scores.argmax(-1, keepdim=True)  # (E, N, 1)


def env_only(cfg, vector_steps: int) -> float:
    """Env steps/s of random play (after a warm-up that compiles SMAX's step)."""
    device = torch.device(cfg.run.device)
    env = get_environment(cfg.env_name).make(
        cfg.env, n_envs=cfg.run.n_rollout_threads, seed=0, device=device, n_workers=cfg.run.n_workers
    )
    generator = torch.Generator().manual_seed(0)
    out = env.reset(0)
    for _ in range(3):
        out = env.step(random_actions(out, env.spec, generator).to(device))
    start = time.perf_counter()
    for _ in range(vector_steps):
        out = env.step(random_actions(out, env.spec, generator).to(device))
    elapsed = time.perf_counter() - start
    env.close()
    return vector_steps * env.n_envs / elapsed


def training_rollout(cfg, vector_steps: int) -> float:
    """Env steps/s of one MAPPO training rollout of `vector_steps` vector steps (SMAX's step for this
    batch size is already compiled by `env_only`)."""
    cfg.algo.episode_length = vector_steps
    with tempfile.TemporaryDirectory() as folder:
        runner = OnPolicyRunner(cfg, folder)
        start = time.perf_counter()
        runner.collect()
        runner.learner.value_rollout(runner.buffer)
        elapsed = time.perf_counter() - start
        runner.close()
    return vector_steps * cfg.run.n_rollout_threads / elapsed


def measure(name: str, env: str, overrides: dict, arch: str, steps: int) -> tuple[str, float, float]:
    """Env-only and training-rollout env steps/s of one env configuration."""
    cfg, _ = build_config("mappo", arch, env, {**overrides, "progress_bar": "false"})
    limit = env_only(cfg, steps)
    training = training_rollout(cfg, steps)
    return name, limit, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="vector steps per measurement")
    parser.add_argument("--smax_envs", type=int, default=64)
    parser.add_argument("--smax_map", default="smacv2_10_units")
    parser.add_argument("--vmas_envs", type=int, default=600)
    parser.add_argument("--arch", default="nops")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--torch_threads", type=int, default=1, help="torch threads of both rows (0: the run's own thread policy)"
    )
    args = parser.parse_args()
    load_extensions()
    if args.torch_threads > 0:  # before env-only play too; the runner sets the same number
        torch.set_num_threads(args.torch_threads)
    run = {"device": args.device, "torch_threads": args.torch_threads}
    smax = {"scenario": args.smax_map, "n_rollout_threads": args.smax_envs, **run}
    rows = [
        measure(
            f"SMAX {args.smax_map}, {args.smax_envs} envs, {kind}",
            "smacv2",
            {**smax, "model.recurrent": recurrent},
            args.arch,
            args.steps,
        )
        for kind, recurrent in (("feed-forward policy", "false"), ("GRU policy (as tuned)", "true"))
    ] + [
        measure(
            f"VMAS Dispersion (4 agents), {args.vmas_envs} envs",
            "vmas",
            {"scenario": "dispersion", "n_rollout_threads": args.vmas_envs, **run},
            args.arch,
            args.steps,
        ),
    ]
    print(
        f"MAPPO ({args.arch}) training rollout vs env-only random play, {args.steps} vector steps, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print("| env | env only (steps/s) | training rollout (steps/s) | ratio |")
    print("|---|---|---|---|")
    for name, limit, training in rows:
        print(f"| {name} | {limit:,.0f} | {training:,.0f} | {training / limit:.2f} (target >= 0.50) |")


if __name__ == "__main__":
    main()
