"""Step time of the fused `AgentAdam` and of agent-wise gradient clipping vs their first implementation (not a test).

The first implementation (the optimiser in `tests/reference_optim.py`, the clipping below) stepped one
parameter at a time, gathering and scattering the selected agents' rows; the clipping summed squared rows per
parameter. Both are timed side by
side on the same actors, in interleaved rounds (reference, fused, reference, ...), and the medians are printed:

- `nops` actors at hidden [256, 256]: 2 agents at HalfCheetah 2x3's sizes (global obs 17, act 3) and 17 agents
  (obs 20, act 1), whose weights are stacked per agent (N, in, out);
- a `hypermarl` actor at 17 agents (mostly shared hypernetwork tensors, per-agent embedding rows);

for a step of every agent (MAPPO, MASAC), a step of one agent (a sequential learner's turn, HAPPO, HASAC),
and `clip_grad_norm_agentwise`.

Usage: python bench/agent_adam.py [--torch_threads 1] [--device cpu|cuda] [--rounds 9] [--seconds 0.1]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from harl.config import ModelConfig
from harl.models.agent_mlp import is_per_agent
from harl.models.policies import GaussianActor
from harl.optim import AgentAdam, clip_grad_norm_agentwise
from harl.registry import get_architecture, load_extensions
from harl.spec import EnvSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for the tests' reference
from tests.reference_optim import ReferenceAgentAdam  # noqa: E402

HIDDEN = [256, 256]
BATCH = 1000


def reference_clip(params: list[torch.nn.Parameter], max_norm: float, n_agents: int) -> None:
    """`clip_grad_norm_agentwise` as first written: squared rows summed per parameter, then one scaling each."""
    per_agent_sq = None
    shared_sq = None
    device = None
    for p in params:
        device = p.device
        if p.grad is None:
            continue
        if is_per_agent(p):
            sq = p.grad.pow(2).reshape(p.shape[0], -1).sum(-1)  # (n_agents,)
            per_agent_sq = sq if per_agent_sq is None else per_agent_sq + sq
        else:
            sq = p.grad.pow(2).sum()
            shared_sq = sq if shared_sq is None else shared_sq + sq
    per_agent = per_agent_sq.sqrt() if per_agent_sq is not None else torch.zeros(n_agents, device=device)
    shared = shared_sq.sqrt() if shared_sq is not None else torch.zeros((), device=device)
    agent_scale = (max_norm / (per_agent + 1e-6)).clamp(max=1.0)
    shared_scale = (max_norm / (shared + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is None:
            continue
        if is_per_agent(p):
            p.grad.mul_(agent_scale.to(p.device).view(-1, *([1] * (p.dim() - 1))))
        else:
            p.grad.mul_(shared_scale.to(p.device))


def spec(n_agents: int, obs_dim: int, act_dim: int) -> EnvSpec:
    low = -np.ones((n_agents, act_dim), dtype=np.float32)
    return EnvSpec(
        agent_ids=tuple(f"agent_{i}" for i in range(n_agents)),
        obs_dims=(obs_dim,) * n_agents,
        state_dim=50,
        action_type="continuous",
        act_dims=(act_dim,) * n_agents,
        act_low=low,
        act_high=-low,
    )


def actor_with_grads(env: EnvSpec, arch: str, device: torch.device) -> GaussianActor:
    """An actor whose parameters hold gradients of a batch's loss (laid out as autograd lays them out)."""
    entry = get_architecture(arch)
    actor = GaussianActor(env, entry, ModelConfig(hidden_sizes=HIDDEN), entry.config_cls()).to(device)
    obs = torch.randn(BATCH, env.n_agents, env.obs_dim_max, device=device)
    (actor.net(obs).square().mean() + actor.log_std(None).sum()).backward()
    return actor


def timed(fn: Callable[[], object], seconds: float, device: torch.device) -> float:
    """Seconds per call of `fn` over a window of about `seconds` (CPU time of this process on CPU, so that other
    processes on a shared machine distort it little; wall time on CUDA)."""
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    calls, start = 0, clock()
    while calls < 3 or clock() - start < seconds:
        fn()
        calls += 1
    sync()
    return (clock() - start) / calls


def compare(
    reference: Callable[[], object], fused: Callable[[], object], rounds: int, seconds: float, device: torch.device
) -> tuple[float, float]:
    """Median seconds per call of `reference` and `fused`, timed in alternating windows after a warm-up."""
    reference(), fused()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, values in ((reference, times[0]), (fused, times[1])):
            values.append(timed(fn, seconds, device))
    return statistics.median(times[0]), statistics.median(times[1])


def bench_actor(arch: str, env: EnvSpec, device: torch.device, rounds: int, seconds: float) -> list[list[str]]:
    """Table rows (reference vs fused) of one actor's optimiser steps and clipping."""
    n = env.n_agents
    ours = actor_with_grads(env, arch, device)
    theirs = copy.deepcopy(ours)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        q.grad = None if p.grad is None else p.grad.clone()
    params, ref_params = list(ours.parameters()), list(theirs.parameters())
    total = sum(p.numel() for p in params)
    per_agent = sum(p.numel() for p in params if is_per_agent(p))
    fused, reference = AgentAdam(params, lr=1e-4), ReferenceAgentAdam(ref_params, lr=1e-4)
    turns = itertools.count()

    def one_agent(optimizer: torch.optim.Optimizer) -> None:  # the next agent's turn, as HAPPO and HASAC take them
        optimizer.step(agents=torch.tensor([next(turns) % n], device=device))

    cases = [  # all agents first: one-agent steps leave the agents' step counts apart, as in sequential learners
        ("step, all agents", reference.step, fused.step),
        ("step, one agent (HA turn)", partial(one_agent, reference), partial(one_agent, fused)),
        (
            "clip_grad_norm_agentwise",
            partial(reference_clip, ref_params, 0.5, n),
            partial(clip_grad_norm_agentwise, params, 0.5, n),
        ),
    ]
    rows = []
    for name, ref_fn, fused_fn in cases:
        before, after = compare(ref_fn, fused_fn, rounds, seconds, device)
        cells = [arch, str(n), f"{total:,} ({per_agent:,})", name]
        rows.append([*cells, f"{1e3 * before:.3f}", f"{1e3 * after:.3f}", f"{before / after:.2f}x"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch_threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--rounds", type=int, default=9, help="alternating timing windows per implementation")
    parser.add_argument("--seconds", type=float, default=0.1, help="length of one timing window")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    load_extensions()
    torch.manual_seed(0)
    device = torch.device(args.device)
    settings = [
        ("nops", spec(2, 17, 3)),
        ("nops", spec(17, 20, 1)),
        ("hypermarl", spec(17, 20, 1)),
    ]
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, hidden {HIDDEN}; median of {args.rounds} "
        f"interleaved windows of {args.seconds:g} s each\n"
    )
    head = ["actor", "agents", "parameters (per-agent)", "operation", "reference ms", "fused ms", "speed-up"]
    print("| " + " | ".join(head) + " |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for arch, env in settings:
        for row in bench_actor(arch, env, device, args.rounds, args.seconds):
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
