"""Rollout throughput on MaMuJoCo HalfCheetah 2x3, and batched vs looped policy inference.

Prints, side by side in one run:
1. env-only stepping with random actions (the limit) vs the MAPPO training rollout (policy
   inference + buffer writes) with the same workers and env count. Target: ≥ 0.7× the limit.
2. policy inference for 17 agents (Humanoid 17x1 sizes): the batched `nops` actor vs a Python
   loop over 17 per-agent modules. Target: ≥ 5× faster.

Usage: python bench/rollout.py [--envs 20] [--workers 2] [--steps 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import nn

from harl.config import EmptyConfig, ModelConfig
from harl.experiment import build_config
from harl.models.policies import GaussianActor
from harl.registry import get_architecture, get_environment, load_extensions
from harl.runners.on_policy import OnPolicyRunner


def throughput(cfg, vector_steps: int, rounds: int) -> tuple[float, float]:
    """Best-of-`rounds` env steps/s of env-only stepping (uniform random actions within bounds) and of
    the MAPPO collection, measured in alternating windows so both see the same machine conditions."""
    cfg.algo.episode_length = vector_steps
    env = get_environment("mamujoco").make(
        cfg.env, cfg.run.n_rollout_threads, 0, torch.device("cpu"), False, cfg.run.n_workers
    )
    low, high = torch.as_tensor(env.spec.act_low), torch.as_tensor(env.spec.act_high)
    actions = [low + (high - low) * torch.rand(env.n_envs, *low.shape) for _ in range(16)]
    env.reset(0)
    best_env = best_rollout = 0.0
    with tempfile.TemporaryDirectory() as folder:
        runner = OnPolicyRunner(cfg, folder)
        runner.collect()  # warm-up
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(vector_steps):
                env.step(actions[i % 16])
            best_env = max(best_env, vector_steps * env.n_envs / (time.perf_counter() - start))
            start = time.perf_counter()
            runner.collect()
            best_rollout = max(best_rollout, vector_steps * env.n_envs / (time.perf_counter() - start))
        runner.close()
    env.close()
    return best_env, best_rollout


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
    """Seconds per call (best of `rounds` alternating windows) of the batched `nops` actor and of a
    per-agent module loop, on MaMuJoCo Humanoid 17x1's real observation and action sizes."""
    cfg, _ = build_config(
        "mappo", "nops", "mamujoco", {"scenario": "Humanoid", "agent_conf": "17x1", "obs_mode": obs_mode}
    )
    env = get_environment("mamujoco").make(cfg.env, 1, 0, torch.device("cpu"), False, 0)
    spec = env.spec
    env.close()
    n_agents, obs_dim, act_dim = spec.n_agents, spec.obs_dim_max, spec.act_dim_max
    model_cfg = ModelConfig(hidden_sizes=[128, 128])
    batched = GaussianActor(spec, get_architecture("nops"), model_cfg, EmptyConfig())
    looped = LoopedActors(spec.obs_dims, act_dim, model_cfg.hidden_sizes)
    obs = torch.randn(batch, n_agents, obs_dim) * torch.as_tensor(spec.obs_mask)
    timings = {"batched nops": float("inf"), "per-agent loop": float("inf")}
    calls = (("batched nops", lambda: batched.act(obs)), ("per-agent loop", lambda: looped.act(obs)))
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
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=500, help="vector steps per measurement window")
    parser.add_argument("--rounds", type=int, default=5, help="alternating windows per measurement")
    args = parser.parse_args()
    load_extensions()
    overrides = {"n_rollout_threads": args.envs, "n_workers": args.workers, "progress_bar": "false", "torch_threads": 1}
    cfg, _ = build_config("mappo", "nops", "mamujoco", overrides)
    limit, rollout = throughput(cfg, args.steps, args.rounds)
    print(
        f"MaMuJoCo HalfCheetah 2x3, {args.envs} envs, {args.workers} workers, best of {args.rounds} alternating "
        f"windows of {args.steps} vector steps"
    )
    print("| measurement | env steps/s | ratio |")
    print("|---|---|---|")
    print(f"| env only, random actions (limit) | {limit:,.0f} | 1.00 |")
    print(f"| MAPPO training rollout (nops) | {rollout:,.0f} | {rollout / limit:.2f} (target >= 0.70) |")
    print(
        f"\nPolicy inference, Humanoid 17x1 (17 agents, 1 action each, hidden [128, 128]), batch {args.envs}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    print("| observations | per-agent module loop (ms) | batched nops (ms) | speed-up |")
    print("|---|---|---|---|")
    for obs_mode in ("local", "global"):
        timings = inference(obs_mode, batch=args.envs)
        speedup = timings["per-agent loop"] / timings["batched nops"]
        print(
            f"| {obs_mode} | {timings['per-agent loop'] * 1e3:.3f} | {timings['batched nops'] * 1e3:.3f} | "
            f"{speedup:.1f}x (target >= 5x) |"
        )


if __name__ == "__main__":
    main()
