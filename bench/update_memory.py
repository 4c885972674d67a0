"""One MAPPO update with glibc's default malloc vs with `harl.utils.memory.keep_freed_memory` (harl's default).

A training update allocates and frees (agents, batch, hidden) activations of tens of MiB; with glibc's
defaults every such block is page-faulted in again at each allocation. For MaMuJoCo Humanoid 17x1
(17 agents, 20 envs x 200 steps, HARL's MAPPO networks) this prints, side by side, the seconds of one
`learner.train()` with the run's malloc tuning and with glibc's defaults (opted out through
`GLIBC_TUNABLES`), each in its own child process, the two alternating `--rounds` times (best of each).

Usage: python bench/update_memory.py [--archs nops hypermarl] [--rounds 3] [--ppo_epoch 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def child(arch: str, ppo_epoch: int, threads: int) -> None:
    """Build a runner, collect one rollout, then time three updates on it; print the last two as JSON."""
    from harl.experiment import build_config
    from harl.registry import load_extensions
    from harl.runners.on_policy import OnPolicyRunner

    load_extensions()
    overrides = {
        "scenario": "Humanoid",
        "agent_conf": "17x1",
        "n_workers": 0,
        "progress_bar": "false",
        "torch_threads": threads,
        "ppo_epoch": ppo_epoch,
        "critic_epoch": ppo_epoch,
    }
    cfg, _ = build_config("mappo", arch, "mamujoco", overrides)
    with tempfile.TemporaryDirectory() as folder:
        runner = OnPolicyRunner(cfg, folder)
        runner.collect()
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            runner.learner.train(runner.buffer)
            seconds.append(time.perf_counter() - start)
        runner.close()
    print(json.dumps(seconds[1:]))


def measure(arch: str, glibc_defaults: bool, args: argparse.Namespace) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    if glibc_defaults:
        env["GLIBC_TUNABLES"] = "glibc.malloc.perturb=0"  # a user setting: harl leaves malloc alone
    command = [sys.executable, __file__, "--child", arch, "--ppo_epoch", str(args.ppo_epoch)]
    out = subprocess.run([*command, "--threads", str(args.threads)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return min(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["nops", "hypermarl"])
    parser.add_argument("--rounds", type=int, default=3, help="alternating child runs per setting")
    parser.add_argument("--ppo_epoch", type=int, default=2, help="actor and critic epochs per update")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.ppo_epoch, args.threads)
        return
    print(
        f"MAPPO update on MaMuJoCo Humanoid 17x1, 20 envs x 200 steps, {args.ppo_epoch} actor + critic epochs, "
        f"{args.threads} torch thread(s), best of {args.rounds} alternating child runs"
    )
    print("| arch | glibc defaults (s/update) | keep_freed_memory (s/update) | speed-up |")
    print("|---|---|---|---|")
    for arch in args.archs:
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.rounds):
            for glibc_defaults in (True, False):
                best[glibc_defaults] = min(best[glibc_defaults], measure(arch, glibc_defaults, args))
        print(f"| {arch} | {best[True]:.2f} | {best[False]:.2f} | {best[True] / best[False]:.2f}x |")


if __name__ == "__main__":
    main()
