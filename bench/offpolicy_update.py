"""Gradient updates per second of HASAC at batch 1000 and hidden [256, 256] (not a test).

Times the whole update (sample + critic + every actor + temperatures + polyak) on a replay buffer
filled with random transitions, for every setting × architecture (`nops`, and `hypermarl` when
registered), and the share of it spent sampling the buffer:

- HalfCheetah 2x3 and Humanoid 17x1 at their real sizes with HARL's global observations;
- 17 agents at HalfCheetah 2x3's per-agent sizes, for the 17- vs 2-agent cost ratio at equal
  per-agent sizes (target: ≤ 6×; sampling target: ≤ 5% of the update).

Beside the measured ratios it prints the ratio of a `nops` HASAC update's matrix-multiply work
(`matmul_work`, counted from the layer sizes), which a compute-bound implementation approaches: the
sequential update needs, per agent, one critic pass (forward, and backward to the actions) and three
actor passes (forward, backward, re-sampling) on top of the all-agent ones, so this work grows
faster with the number of agents than the rest of the update.

Usage: python bench/offpolicy_update.py [--device cpu|cuda] [--threads 1] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from replay_common import filled_buffer, mamujoco_spec, matmul_work, replicated_spec

from harl.config import apply_overrides
from harl.experiment import default_config
from harl.registry import ARCHITECTURES, get_algorithm, get_architecture, load_extensions
from harl.spec import EnvSpec
from harl.utils.memory import keep_freed_memory

BATCH, HIDDEN = 1000, [256, 256]


def timed(fn, seconds: float, device: torch.device, windows: int = 5) -> float:
    """Seconds per call of `fn`: the fastest of `windows` timing windows sharing `seconds` (after 2 warm-up
    calls). On CPU the clock is this process's CPU time, and the minimum is taken, so that other processes
    on a shared machine distort the figure as little as possible; on CUDA it is wall time."""
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(windows):
        sync()
        calls, start = 0, clock()
        while calls < 1 or clock() - start < seconds / windows:
            fn()
            calls += 1
        sync()
        best = min(best, (clock() - start) / calls)
    return best


def bench(spec: EnvSpec, arch: str, device: torch.device, seconds: float) -> tuple[float, float]:
    """(seconds per update, seconds per buffer sample)."""
    cfg = default_config("hasac", arch, "mamujoco")
    apply_overrides(
        cfg,
        {
            "algo.batch_size": BATCH,
            "algo.n_step": 10,
            "model.hidden_sizes": HIDDEN,
            "model.layer_norm": False,
            "model.feature_norm": False,
        },
    )
    learner = get_algorithm("hasac").learner_cls(spec, cfg, get_architecture(arch), device)
    buffer = filled_buffer(spec, device, cfg.algo.n_step)
    per_update = timed(lambda: learner.update(buffer), seconds, device)
    per_sample = timed(lambda: buffer.sample(BATCH, learner.rng), seconds / 4, device)
    return per_update, per_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_extensions()
    keep_freed_memory()  # as a training run's process does (see harl.utils.memory)
    device = torch.device(args.device)
    cheetah = mamujoco_spec("HalfCheetah", "2x3")
    settings = {
        "HalfCheetah 2x3": cheetah,
        "17 agents x HalfCheetah-2x3 sizes": replicated_spec(cheetah, 17),
        "Humanoid 17x1 (global obs)": mamujoco_spec("Humanoid", "17x1"),
    }
    archs = [a for a in ("nops", "hypermarl") if a in ARCHITECTURES]
    clock = "wall time" if device.type == "cuda" else "CPU time of this process"
    print(
        f"hasac update, batch {BATCH}, hidden {HIDDEN}, device {device}, torch threads {torch.get_num_threads()}, "
        f"timed by {clock} (best of 5 windows)"
    )
    print(f"{'setting':<36}{'arch':<11}{'N':>3}{'obs':>5}{'act':>4}{'updates/s':>11}{'ms/update':>11}{'sample %':>10}")
    ms: dict[tuple[str, str], float] = {}
    for name, spec in settings.items():
        for arch in archs:
            per_update, per_sample = bench(spec, arch, device, args.seconds)
            ms[name, arch] = per_update * 1e3
            print(
                f"{name:<36}{arch:<11}{spec.n_agents:>3}{spec.obs_dim_max:>5}{spec.act_dim_max:>4}"
                f"{1 / per_update:>11.1f}{per_update * 1e3:>11.1f}{100 * per_sample / per_update:>9.1f}%",
                flush=True,
            )
    work = matmul_work(settings["17 agents x HalfCheetah-2x3 sizes"], HIDDEN) / matmul_work(cheetah, HIDDEN)
    for arch in archs:
        ratio = ms["17 agents x HalfCheetah-2x3 sizes", arch] / ms["HalfCheetah 2x3", arch]
        print(f"{arch}: 17- vs 2-agent update cost at equal per-agent sizes: {ratio:.2f}x (target <= 6x)")
    print(f"nops: 17- vs 2-agent matmul work of the sequential update (compute-bound cost ratio): {work:.2f}x")


if __name__ == "__main__":
    main()
