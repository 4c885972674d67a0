"""One small MaMuJoCo MAPPO run alone vs two identical runs started together, with default thread settings.

Researchers run several seeds at once; a run's thread policy (`harl.utils.threads`: torch threads =
max(1, cores // HARL_CONCURRENT_RUNS - env workers), env workers = cores - 1 by default) must keep two
runs started side by side from oversubscribing the cores. Each run is `examples/train.py` in a subprocess
with its own `--log_dir` in a temporary folder and the default thread settings (no `--torch_threads`, no
`--n_workers`); its wall time counts from process start to exit, as a user feels it.

Rounds interleave the settings (solo, pair, [pair declared,] solo, pair, ...) so that a machine whose load
drifts affects them alike; the medians over rounds are reported, with every round's times. Target: each
concurrent run at most 2.6x the solo wall time on 2 cores.

`--declared` adds a third setting: the pair with `HARL_CONCURRENT_RUNS=2` in its environment, as
`harl-sweep --workers 2` sets it. Without it a run cannot know about another independent process.

Usage: python bench/concurrency.py [--rounds 3] [--num_env_steps 8000] [--declared] [-- TRAIN_OPTIONS ...]
(options after `--` go to every run, e.g. `-- --n_workers 0`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harl.utils.threads import CONCURRENT_RUNS_ENV, available_cores

TRAIN = Path(__file__).resolve().parent.parent / "examples" / "train.py"


def train_command(log_dir: Path, num_env_steps: int, extra: list[str]) -> list[str]:
    """A small MAPPO HalfCheetah 2x3 run (tuned config: 20 envs x 200 steps per iteration) with a short
    final evaluation and no progress output."""
    return [
        sys.executable,
        str(TRAIN),
        *("--algo", "mappo", "--arch", "nops", "--env", "mamujoco"),
        *("--num_env_steps", str(num_env_steps), "--eval_interval", "0", "--eval_episodes", "2"),
        *("--n_eval_rollout_threads", "2", "--progress_bar", "false", "--progress_interval", "0"),
        *("--log_dir", str(log_dir), *extra),
    ]


def run_together(count: int, folder: Path, args: argparse.Namespace, env: dict[str, str]) -> list[float]:
    """Start `count` identical runs at once; the wall seconds of each, from its start to its exit."""
    started = []
    for k in range(count):
        command = train_command(folder / f"run-{k}", args.num_env_steps, args.train_options)
        started.append((time.perf_counter(), subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)))
    seconds = [0.0] * count
    for k, (start, process) in enumerate(started):
        if process.wait() != 0:
            raise SystemExit(f"run {k} failed with exit status {process.returncode}")
        seconds[k] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every setting")
    parser.add_argument("--num_env_steps", type=int, default=8000, help="env steps of each run (4000 per iteration)")
    parser.add_argument("--declared", action="store_true", help=f"also time the pair with {CONCURRENT_RUNS_ENV}=2")
    parser.add_argument("train_options", nargs="*", help="options for every run (after --)")
    args = parser.parse_args()
    base_env = {k: v for k, v in os.environ.items() if k not in (CONCURRENT_RUNS_ENV, "OMP_NUM_THREADS")}
    settings = {"solo": (1, base_env), "pair": (2, base_env)}
    if args.declared:
        settings[f"pair, {CONCURRENT_RUNS_ENV}=2"] = (2, {**base_env, CONCURRENT_RUNS_ENV: "2"})
    print(
        f"MAPPO nops on MaMuJoCo HalfCheetah 2x3, {args.num_env_steps} env steps per run, {available_cores()} cores, "
        f"default threads{' ' + ' '.join(args.train_options) if args.train_options else ''}; "
        f"{args.rounds} interleaved rounds"
    )
    times: dict[str, list[list[float]]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name, (count, env) in settings.items():
                seconds = run_together(count, Path(tmp) / f"{round_index}-{len(times[name])}-{count}", args, env)
                times[name].append(seconds)
                print(f"round {round_index + 1} {name}: " + ", ".join(f"{s:.1f} s" for s in seconds), flush=True)
    solo = statistics.median(s[0] for s in times["solo"])
    print(f"solo: median {solo:.1f} s")
    for name in settings:
        if name == "solo":
            continue
        medians = [statistics.median(r[k] for r in times[name]) for k in range(2)]
        ratios = ", ".join(f"run {k + 1} {m:.1f} s ({m / solo:.2f}x solo)" for k, m in enumerate(medians))
        verdict = "meets" if max(medians) / solo <= 2.6 else "misses"
        print(f"{name}: median {ratios}; {verdict} the target <= 2.6x")


if __name__ == "__main__":
    main()
