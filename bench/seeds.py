"""N seeds as one batched process (`--seeds N`) vs the same N seeds as separate processes, on the paper's protocol.

The protocol is VMAS Dispersion with the tuned MAPPO config (the paper's appendix B: 16 envs x 128 steps, 4
epochs, 2 minibatches, [64, 64] networks), for each architecture asked for. Three ways to train N seeds:

- batched: one process, `--seeds N`, all the machine's cores (`--torch_threads` = cores);
- sequential: N solo runs one after another, each with all the cores (measured on one solo run: their throughput
  is its throughput);
- parallel: solo runs `cores` at a time, one torch thread each (measured on `cores` runs started together).

Throughput is env steps of all seeds per second of the training loops, read from each run's own `charts/SPS`
(each seed's env steps per second, start-up excluded, which favours the separate processes: the batched run
starts once). Rounds interleave the three settings so that a machine whose speed drifts affects them alike; the
medians over rounds are reported with every round's figures. Targets (issue #22): batched >= 3.5x sequential
and >= 2x parallel.

Usage: python bench/seeds.py [--seeds 5] [--archs nops hypermarl] [--rounds 3] [--iterations 3]
    [--device cpu] [-- TRAIN_OPTIONS ...]   (options after `--` go to every run)
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = Path(__file__).resolve().parent.parent / "examples" / "train.py"
STEPS_PER_ITERATION = 16 * 128  # the tuned config's envs x episode_length


def command(arch: str, log_dir: Path, seed: int, seeds: int, threads: int, args) -> list[str]:
    """A Dispersion MAPPO run of `args.iterations` iterations per seed, one final evaluation of 2 episodes."""
    return [
        sys.executable,
        str(TRAIN),
        "--algo",
        "mappo",
        "--arch",
        arch,
        "--env",
        "vmas",
        "--scenario",
        "dispersion",
        "--num_env_steps",
        str(args.iterations * STEPS_PER_ITERATION),
        "--eval_interval",
        "0",
        "--eval_episodes",
        "2",
        "--n_eval_rollout_threads",
        "2",
        "--seed",
        str(seed),
        "--seeds",
        str(seeds),
        "--torch_threads",
        str(threads),
        "--device",
        args.device,
        "--progress_bar",
        "false",
        "--log_dir",
        str(log_dir),
        *args.extra,
    ]


def seed_sps(log_dir: Path) -> list[float]:
    """Every run folder's last logged `charts/SPS` (one seed's env steps per second)."""
    values = []
    for progress in sorted(log_dir.glob("*/*/*/*/seed-*/progress.csv")):
        with progress.open() as f:
            rows = [row for row in csv.DictReader(f) if row.get("charts/SPS")]
        values.append(float(rows[-1]["charts/SPS"]))
    return values


def launch(commands: list[list[str]]) -> None:
    """Run the commands at the same time and wait for all; a failure stops the benchmark with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for cmd in commands
    ]
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a run failed (exit {proc.returncode}):\n{out[-3000:]}")


def measure(setting: str, arch: str, args, tmp: Path) -> float:
    """Env steps per second of all the seeds together, for one setting."""
    log_dir = Path(tempfile.mkdtemp(dir=tmp))
    cores = args.cores
    if setting == "batched":
        launch([command(arch, log_dir, 1, args.seeds, cores, args)])
        return sum(seed_sps(log_dir))  # the seeds advance together: each seed's SPS, summed
    if setting == "sequential":
        launch([command(arch, log_dir, 1, 1, cores, args)])
        return seed_sps(log_dir)[0]
    launch([command(arch, log_dir, 1 + k, 1, 1, args) for k in range(cores)])
    return sum(seed_sps(log_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--archs", nargs="+", default=["nops", "hypermarl"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="training iterations per seed and run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("extra", nargs="*", help="options after -- for every run")
    args = parser.parse_args()
    settings = ("batched", "sequential", "parallel")
    print(
        f"VMAS Dispersion MAPPO (tuned config), {args.seeds} seeds, {args.iterations} iterations "
        f"({args.iterations * STEPS_PER_ITERATION} env steps) per seed and run, {args.cores} cores, {args.device}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            figures: dict[str, list[float]] = {s: [] for s in settings}
            for _ in range(args.rounds):
                for setting in settings:
                    figures[setting].append(measure(setting, arch, args, Path(tmp)))
            medians = {s: statistics.median(v) for s, v in figures.items()}
            print(f"\n{arch}: env steps per second of all seeds (median of {args.rounds} rounds; rounds in brackets)")
            for setting in settings:
                rounds = ", ".join(f"{v:,.0f}" for v in figures[setting])
                print(f"  {setting:<10} {medians[setting]:>9,.0f}  [{rounds}]")
            print(
                f"  batched / sequential: {medians['batched'] / medians['sequential']:.2f}x (target >= 3.5x); "
                f"batched / parallel: {medians['batched'] / medians['parallel']:.2f}x (target >= 2x)"
            )


if __name__ == "__main__":
    main()
