"""N seeds as one batched process (`--seeds N`) vs the same N seeds as separate processes, on the paper's protocol.

Protocols (`--protocol`), each with its tuned config, for each architecture asked for:

- `dispersion` (default): VMAS Dispersion, MAPPO (the paper's appendix B: 16 envs x 128 steps, 4 epochs, 2
  minibatches, [64, 64] networks);
- `matrix-hasac`: the 4-agent Specialisation matrix game, HASAC (100 envs, 10 vector steps and 10 updates of 256
  transitions per iteration);
- `mamujoco-hasac`: MaMuJoCo HalfCheetah 2x3, HASAC (HARL's tuned values: 20 envs, 50 vector steps and 50 updates of
  1000 transitions per iteration, [256, 256] networks), envs in-process;
- `smax-mappo-gru`: JaxMARL's SMAX 2s3z, MAPPO with GRU policies (the paper's appendix B values: 128 steps, 4
  epochs, 4 minibatches of 16-step sequences, [128, 128] networks with a GRU of 128), 32 envs per seed instead of
  the paper's 128 so that a round fits a few minutes on a CPU.

The off-policy protocols shorten the warm-up to a few iterations and measure the loop after it (see `seed_sps`).
Three ways to train N seeds:

- batched: one process, `--seeds N`, all the machine's cores (`--torch_threads` = cores);
- sequential: N solo runs one after another, each with all the cores (measured on one solo run: their throughput
  is its throughput);
- parallel: solo runs `cores` at a time, one torch thread each (measured on `cores` runs started together).

Throughput is env steps of all seeds per second of the training loops, read from each run's own `charts/SPS`
(each seed's env steps per second, start-up excluded, which favours the separate processes: the batched run
starts once). Rounds interleave the three settings so that a machine whose speed drifts affects them alike; the
medians over rounds are reported with every round's figures. Targets (issue #22): batched >= 3.5x sequential
and >= 2x parallel on Dispersion; >= 1.3x on MaMuJoCo HASAC.

Usage: python bench/seeds.py [--protocol dispersion] [--seeds 5] [--archs nops hypermarl] [--rounds 3]
    [--iterations 3] [--device cpu] [-- TRAIN_OPTIONS ...]   (options after `--` go to every run)
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TRAIN = Path(__file__).resolve().parent.parent / "examples" / "train.py"


@dataclass(frozen=True)
class Protocol:
    """A training setting to batch seeds on: its options (the tuned config does the rest)."""

    title: str
    options: tuple[str, ...]
    steps_per_iteration: int  # each seed's env steps per training iteration
    warmup_steps: int = 0  # env steps of random actions before the measured loop (off-policy learners)


PROTOCOLS = {
    "dispersion": Protocol(
        "VMAS Dispersion MAPPO (tuned config)",
        ("--algo", "mappo", "--env", "vmas", "--scenario", "dispersion"),
        16 * 128,
    ),
    "matrix-hasac": Protocol(
        "4-agent Specialisation matrix game HASAC (tuned config)",
        ("--algo", "hasac", "--env", "matrix", "--n_agents", "4", "--warmup_steps", "2000"),
        100 * 10,
        warmup_steps=2000,
    ),
    "mamujoco-hasac": Protocol(
        "MaMuJoCo HalfCheetah 2x3 HASAC (tuned config, envs in-process)",
        ("--algo", "hasac", "--env", "mamujoco", "--scenario", "HalfCheetah", "--agent_conf", "2x3")
        + ("--warmup_steps", "2000", "--n_workers", "0"),
        20 * 50,
        warmup_steps=2000,
    ),
    "smax-mappo-gru": Protocol(
        "SMAX 2s3z MAPPO with GRU policies (the paper's tuned config, 32 envs instead of 128)",
        ("--algo", "mappo", "--env", "smacv2", "--scenario", "2s3z", "--n_rollout_threads", "32"),
        32 * 128,
    ),
}


def command(arch: str, log_dir: Path, seed: int, seeds: int, threads: int, args) -> list[str]:
    """A run of the protocol's warm-up and `args.iterations` training iterations per seed, one final evaluation of 2
    episodes."""
    protocol = PROTOCOLS[args.protocol]
    return [
        sys.executable,
        str(TRAIN),
        *protocol.options,
        "--arch",
        arch,
        "--num_env_steps",
        str(protocol.warmup_steps + args.iterations * protocol.steps_per_iteration),
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


def seed_sps(log_dir: Path, after_steps: int = 0) -> list[float]:
    """Every run folder's env steps per second of one seed: its last logged `charts/SPS` (the rate since the loop
    started), or with `after_steps` the rate after the first row past them (a row's loop time is its env steps over
    its `charts/SPS`), which leaves an off-policy warm-up out."""
    values = []
    for progress in sorted(log_dir.glob("*/*/*/*/seed-*/progress.csv")):
        with progress.open() as f:
            rows = [row for row in csv.DictReader(f) if row.get("charts/SPS")]
        last = rows[-1]
        if not after_steps:
            values.append(float(last["charts/SPS"]))
            continue
        first = next(row for row in rows if float(row["env_steps"]) > after_steps)
        steps = [float(row["env_steps"]) for row in (first, last)]
        seconds = [step / float(row["charts/SPS"]) for step, row in zip(steps, (first, last), strict=True)]
        values.append((steps[1] - steps[0]) / (seconds[1] - seconds[0]))
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
    cores, after = args.cores, PROTOCOLS[args.protocol].warmup_steps
    if setting == "batched":
        launch([command(arch, log_dir, 1, args.seeds, cores, args)])
        return sum(seed_sps(log_dir, after))  # the seeds advance together: each seed's SPS, summed
    if setting == "sequential":
        launch([command(arch, log_dir, 1, 1, cores, args)])
        return seed_sps(log_dir, after)[0]
    launch([command(arch, log_dir, 1 + k, 1, 1, args) for k in range(cores)])
    return sum(seed_sps(log_dir, after))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="dispersion")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--archs", nargs="+", default=["nops", "hypermarl"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="training iterations per seed and run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("extra", nargs="*", help="options after -- for every run")
    args = parser.parse_args()
    settings = ("batched", "sequential", "parallel")
    protocol = PROTOCOLS[args.protocol]
    print(
        f"{protocol.title}, {args.seeds} seeds, {args.iterations} iterations "
        f"({args.iterations * protocol.steps_per_iteration} env steps) per seed and run after "
        f"{protocol.warmup_steps} warm-up steps, {args.cores} cores, {args.device}"
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
