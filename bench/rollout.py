"""Rollout throughput on MaMuJoCo HalfCheetah 2x3, and batched vs looped policy inference.

Prints, side by side in one run:
1. env-only stepping with random actions (the limit) vs the MAPPO training rollout (policy
   inference + buffer writes) with the same workers and env count. Target: ≥ 0.7× the limit.
2. policy inference for 17 agents (Humanoid 17x1 sizes): the batched `nops` actor vs a Python
   loop over 17 per-agent modules. Target: ≥ 5× faster.

For (1) each window also records the CPU time per vector step of the training process and of the env
workers; the ratio is printed both for the best windows and as the median over adjacent pairs of
windows. For (2) the time of the batched actor's three matmuls alone is printed beside it.

Usage: python bench/rollout.py [--envs 20] [--workers -1] [--steps 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harl.config import EmptyConfig, ModelConfig
from harl.experiment import build_config
from harl.models.policies import SAMPLE, GaussianActor
from harl.registry import get_architecture, get_environment, load_extensions
from harl.runners.on_policy import OnPolicyRunner


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes `pids` (Linux /proc; NaN elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Window:
    """One measurement window: env steps per second and CPU milliseconds per vector step."""

    steps_per_s: float
    main_cpu_ms: float  # the training process (policy inference, buffer writes, joining results)
    workers_cpu_ms: float  # all env worker processes together


def _window(fn, vector_steps: int, n_envs: int, pids: list[int]) -> Window:
    main_before, workers_before = time.process_time(), _cpu_seconds(pids)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    main_cpu, workers_cpu = time.process_time() - main_before, _cpu_seconds(pids) - workers_before
    return Window(vector_steps * n_envs / seconds, main_cpu / vector_steps * 1e3, workers_cpu / vector_steps * 1e3)


def throughput(cfg, vector_steps: int, rounds: int) -> tuple[list[Window], list[Window], int]:
    """`rounds` alternating windows of env-only stepping (uniform random actions within bounds) and of the
    MAPPO collection, on two vector envs with the same envs and workers, so both see the same machine;
    also returns the number of worker processes (beside the stepping main process)."""
    cfg.algo.episode_length = vector_steps
    env = get_environment("mamujoco").make(
        cfg.env, n_envs=cfg.run.n_rollout_threads, seed=0, device=torch.device("cpu"), n_workers=cfg.run.n_workers
    )
    low, high = torch.as_tensor(env.spec.act_low), torch.as_tensor(env.spec.act_high)
    actions = [low + (high - low) * torch.rand(env.n_envs, *low.shape) for _ in range(16)]
    env.reset(0)

    def env_only() -> None:
        for i in range(vector_steps):
            env.step(actions[i % 16])

    env_windows, rollout_windows = [], []
    with tempfile.TemporaryDirectory() as folder:
        runner = OnPolicyRunner(cfg, folder)

        def rollout() -> None:  # what an iteration does before training: collect, then the critic on the rollout
            runner.collect()
            runner.learner.value_rollout(runner.buffer)

        rollout()  # warm-up
        env_pids, runner_pids = getattr(env, "pids", []), getattr(runner.env, "pids", [])
        for _ in range(rounds):
            env_windows.append(_window(env_only, vector_steps, env.n_envs, env_pids))
            rollout_windows.append(_window(rollout, vector_steps, env.n_envs, runner_pids))
        runner.close()
    env.close()
    return env_windows, rollout_windows, len(env_pids)


class LoopedActors(nn.Module):
    """The per-agent module loop the batched actor replaces (HARL-style)."""

    def __init__(self, obs_dims: tuple[int, ...], act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.obs_dims = obs_dims

        def mlp(obs_dim: int) -> nn.Sequential:
            layers, width = [nn.LayerNorm(obs_dim)], obs_dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU(), nn.LayerNorm(h)]
                width = h
            return nn.Sequential(*layers, nn.Linear(width, act_dim))

        self.actors = nn.ModuleList(mlp(obs_dim) for obs_dim in obs_dims)
        self.log_std = nn.Parameter(torch.zeros(len(obs_dims), act_dim))

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions, log_probs = [], []
        for i, actor in enumerate(self.actors):
            dist = torch.distributions.Normal(actor(obs[:, i, : self.obs_dims[i]]), self.log_std[i].exp())
            action = dist.sample()
            actions.append(action)
            log_probs.append(dist.log_prob(action).sum(-1))
        return torch.stack(actions, 1), torch.stack(log_probs, 1)


def inference(obs_mode: str, batch: int = 20, reps: int = 200, rounds: int = 5) -> dict[str, float]:
    """Seconds per call (best of `rounds` alternating windows) of the batched `nops` actor, of a per-agent
    module loop, and of the batched actor's three matmuls alone (its floor on this BLAS), on MaMuJoCo
    Humanoid 17x1's real observation and action sizes."""
    cfg, _ = build_config(
        "mappo", "nops", "mamujoco", {"scenario": "Humanoid", "agent_conf": "17x1", "obs_mode": obs_mode}
    )
    env = get_environment("mamujoco").make(cfg.env, n_envs=1, seed=0, device=torch.device("cpu"))
    spec = env.spec
    env.close()
    n_agents, obs_dim, act_dim = spec.n_agents, spec.obs_dim_max, spec.act_dim_max
    model_cfg = ModelConfig(hidden_sizes=[128, 128])
    batched = GaussianActor(spec, get_architecture("nops"), model_cfg, EmptyConfig())
    looped = LoopedActors(spec.obs_dims, act_dim, model_cfg.hidden_sizes)
    obs = torch.randn(batch, n_agents, obs_dim) * torch.as_tensor(spec.obs_mask)
    layers = batched.net.params.layers(None)  # (weight (N, in, out), bias (N, out)) per layer
    layer_inputs = [torch.randn(n_agents, batch, weight.shape[1]) for weight, _ in layers]  # (N, B, in) each

    def matmuls_alone() -> None:
        for x, (weight, bias) in zip(layer_inputs, layers, strict=True):
            torch.baddbmm(bias.unsqueeze(1), x, weight)

    timings = {"batched nops": float("inf"), "per-agent loop": float("inf"), "matmuls alone": float("inf")}
    calls = (
        ("batched nops", lambda: batched.act(obs, None, SAMPLE)),
        ("per-agent loop", lambda: looped.act(obs)),
        ("matmuls alone", matmuls_alone),
    )
    with torch.no_grad():
        for _ in range(rounds):  # alternating windows, best of `rounds`
            for name, fn in calls:
                for _ in range(20):
                    fn()
                start = time.perf_counter()
                for _ in range(reps):
                    fn()
                timings[name] = min(timings[name], (time.perf_counter() - start) / reps)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=-1, help="the run key n_workers (-1: cores - 1)")
    parser.add_argument("--steps", type=int, default=500, help="vector steps per measurement window")
    parser.add_argument("--rounds", type=int, default=7, help="alternating windows per measurement")
    args = parser.parse_args()
    load_extensions()
    overrides = {"n_rollout_threads": args.envs, "n_workers": args.workers, "progress_bar": "false", "torch_threads": 1}
    cfg, _ = build_config("mappo", "nops", "mamujoco", overrides)
    env_windows, rollout_windows, n_workers = throughput(cfg, args.steps, args.rounds)
    limit = max(w.steps_per_s for w in env_windows)
    rollout = max(w.steps_per_s for w in rollout_windows)
    paired = [r.steps_per_s / e.steps_per_s for e, r in zip(env_windows, rollout_windows, strict=True)]
    print(
        f"MaMuJoCo HalfCheetah 2x3, {args.envs} envs, {n_workers} worker process(es) + the training process "
        f"(--n_workers {args.workers}), {args.rounds} alternating windows of {args.steps} vector steps each, "
        f"{os.cpu_count()} cores"
    )
    print("| measurement | env steps/s (best window) | ratio of bests | main CPU ms/step | workers CPU ms/step |")
    print("|---|---|---|---|---|")
    for name, windows, best, target in (
        ("env only, random actions (limit)", env_windows, limit, ""),
        ("MAPPO training rollout (nops)", rollout_windows, rollout, " (target >= 0.70)"),
    ):
        main_cpu = statistics.median(w.main_cpu_ms for w in windows)
        workers_cpu = statistics.median(w.workers_cpu_ms for w in windows)
        print(f"| {name} | {best:,.0f} | {best / limit:.2f}{target} | {main_cpu:.2f} | {workers_cpu:.2f} |")
    print(
        f"\nRollout / env-only in each pair of adjacent windows: median {statistics.median(paired):.2f}, "
        f"range {min(paired):.2f}-{max(paired):.2f} (target >= 0.70). CPU columns: medians over the windows."
    )
    print(
        f"\nPolicy inference, Humanoid 17x1 (17 agents, 1 action each, hidden [128, 128]), batch {args.envs}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    print("| observations | per-agent module loop (ms) | batched nops (ms) | speed-up | its matmuls alone (ms) |")
    print("|---|---|---|---|---|")
    for obs_mode in ("local", "global"):
        timings = inference(obs_mode, batch=args.envs)
        speedup = timings["per-agent loop"] / timings["batched nops"]
        print(
            f"| {obs_mode} | {timings['per-agent loop'] * 1e3:.3f} | {timings['batched nops'] * 1e3:.3f} | "
            f"{speedup:.1f}x (target >= 5x) | {timings['matmuls alone'] * 1e3:.3f} |"
        )


if __name__ == "__main__":
    main()
