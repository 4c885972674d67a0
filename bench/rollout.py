"""Rollout throughput on MaMuJoCo HalfCheetah 2x3, and batched vs looped policy inference.

Prints, side by side in one run:
1. env-only stepping with random actions (the limit) vs the MAPPO training rollout (policy
   inference + buffer writes) with the same workers and env count. Target: ≥ 0.7× the limit.
2. policy inference for 17 agents (Humanoid 17x1 sizes): the batched `nops` actor vs a Python
   loop over 17 per-agent modules. Target: ≥ 5× faster.

Usage: python bench/rollout.py [--envs 20] [--workers 2] [--steps 2000]
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


def env_only(cfg, vector_steps: int) -> float:
    env = get_environment("mamujoco").make(
        cfg.env, cfg.run.n_rollout_threads, 0, torch.device("cpu"), False, cfg.run.n_workers
    )
    low, high = torch.as_tensor(env.spec.act_low), torch.as_tensor(env.spec.act_high)
    env.reset(0)
    actions = [low + (high - low) * torch.rand(env.n_envs, *low.shape) for _ in range(16)]
    start = time.perf_counter()
    for i in range(vector_steps):
        env.step(actions[i % 16])
    elapsed = time.perf_counter() - start
    env.close()
    return vector_steps * env.n_envs / elapsed


def training_rollout(cfg, vector_steps: int) -> float:
    cfg.algo.episode_length = vector_steps
    with tempfile.TemporaryDirectory() as folder:
        runner = OnPolicyRunner(cfg, folder)
        start = time.perf_counter()
        runner.collect()
        elapsed = time.perf_counter() - start
        runner.close()
    return vector_steps * cfg.run.n_rollout_threads / elapsed


class LoopedActors(nn.Module):
    """The per-agent module loop the batched actor replaces (HARL-style)."""

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()

        def mlp() -> nn.Sequential:
            layers, width = [nn.LayerNorm(obs_dim)], obs_dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU(), nn.LayerNorm(h)]
                width = h
            return nn.Sequential(*layers, nn.Linear(width, act_dim))

        self.actors = nn.ModuleList(mlp() for _ in range(n_agents))
        self.log_std = nn.Parameter(torch.zeros(n_agents, act_dim))

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions, log_probs = [], []
        for i, actor in enumerate(self.actors):
            dist = torch.distributions.Normal(actor(obs[:, i]), self.log_std[i].exp())
            action = dist.sample()
            actions.append(action)
            log_probs.append(dist.log_prob(action).sum(-1))
        return torch.stack(actions, 1), torch.stack(log_probs, 1)


def inference(n_agents: int = 17, obs_dim: int = 376, act_dim: int = 1, batch: int = 20, reps: int = 300):
    import numpy as np

    from harl.envs.spec import EnvSpec

    spec = EnvSpec(
        tuple(f"agent_{i}" for i in range(n_agents)),
        (obs_dim,) * n_agents,
        obs_dim,
        "continuous",
        (act_dim,) * n_agents,
        -np.ones((n_agents, act_dim), np.float32),
        np.ones((n_agents, act_dim), np.float32),
        1000,
    )
    model_cfg = ModelConfig(hidden_sizes=[128, 128])
    batched = GaussianActor(spec, get_architecture("nops"), model_cfg, EmptyConfig())
    looped = LoopedActors(n_agents, obs_dim, act_dim, model_cfg.hidden_sizes)
    obs = torch.randn(batch, n_agents, obs_dim)
    timings = {}
    with torch.no_grad():
        for name, fn in (("batched nops", lambda: batched.act(obs)), ("per-agent loop", lambda: looped.act(obs))):
            for _ in range(20):
                fn()
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            timings[name] = (time.perf_counter() - start) / reps
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000, help="vector steps per measurement")
    args = parser.parse_args()
    load_extensions()
    overrides = {"n_rollout_threads": args.envs, "n_workers": args.workers, "progress_bar": "false", "torch_threads": 1}
    cfg, _ = build_config("mappo", "nops", "mamujoco", overrides)
    limit = env_only(cfg, args.steps)
    rollout = training_rollout(cfg, args.steps)
    print(f"MaMuJoCo HalfCheetah 2x3, {args.envs} envs, {args.workers} workers, {args.steps} vector steps")
    print("| measurement | env steps/s | ratio |")
    print("|---|---|---|")
    print(f"| env only, random actions (limit) | {limit:,.0f} | 1.00 |")
    print(f"| MAPPO training rollout (nops) | {rollout:,.0f} | {rollout / limit:.2f} (target >= 0.70) |")
    timings = inference()
    speedup = timings["per-agent loop"] / timings["batched nops"]
    print("\nPolicy inference, 17 agents (Humanoid 17x1 sizes: obs 376, 1 action, hidden [128, 128]), batch 20")
    print("| actor | ms per call | speed-up |")
    print("|---|---|---|")
    print(f"| per-agent module loop | {timings['per-agent loop'] * 1e3:.3f} | 1.00 |")
    print(f"| batched nops | {timings['batched nops'] * 1e3:.3f} | {speedup:.1f}x (target >= 5x) |")


if __name__ == "__main__":
    main()
