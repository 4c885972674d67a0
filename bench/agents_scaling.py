"""Scaling with the number of agents: trainable parameters and actor update time per architecture.

For 2, 4, 8, 17, 32, 64 and 128 agents at HalfCheetah 2x3 sizes (per-agent observation 12, action 3,
state 17; HARL's [128, 128] ReLU + LayerNorm networks), prints side by side in one run:

- trainable parameters of the MAPPO actor + per-agent critic (`hypermarl_ext.count_parameters`) for
  `nops`, `fups_id`, `hypermarl` and `hypermarl_linear`;
- the time of one actor forward + backward (log-probabilities of a batch of 1000 samples per agent,
  all agents at once), and that time per agent.

Targets: `hypermarl`'s parameter count grows by ≤ 10% from 4 to 128 agents (only the embeddings and
log-stds grow), and its forward + backward time per agent at 128 agents is ≤ 1.5× that of batched `nops`.

Times are the best of `--repeats` turns (the architectures alternate), robust to a shared machine.

Usage: python bench/agents_scaling.py [--agents 2,4,8,17,32,64,128] [--batch 1000] [--repeats 7]
       [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from harl.config import ModelConfig
from harl.models.policies import GaussianActor
from harl.registry import get_architecture, load_extensions
from harl.utils.memory import keep_freed_memory
from hypermarl_ext import count_parameters, uniform_spec

ARCHS = ("nops", "fups_id", "hypermarl", "hypermarl_linear")
OBS_DIM, ACT_DIM, STATE_DIM = 12, 3, 17


def update_times(n_agents: int, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Best-of-`repeats` seconds of one actor forward + backward over (batch, n_agents) samples, per architecture.

    The architectures take turns within every repeat, so load from other processes hits them alike;
    the minimum is the least disturbed measurement.
    """
    spec = uniform_spec(n_agents, OBS_DIM, ACT_DIM, STATE_DIM)
    actors = {}
    for arch in ARCHS:
        entry = get_architecture(arch)
        actors[arch] = GaussianActor(spec, entry, ModelConfig(), entry.config_cls()).to(device)
    obs = torch.randn(batch, n_agents, OBS_DIM, device=device)
    actions = torch.randn(batch, n_agents, ACT_DIM, device=device)

    def step(actor: GaussianActor) -> float:
        start = time.perf_counter()
        actor.zero_grad(set_to_none=True)
        log_probs, entropy = actor.log_probs_entropy(obs, actions)  # (B, N) each
        (log_probs.mean() + 0.01 * entropy.mean()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for actor in actors.values():
        step(actor)  # warm-up (allocations, kernels)
    times: dict[str, list[float]] = {arch: [] for arch in ARCHS}
    for _ in range(repeats):
        for arch, actor in actors.items():
            times[arch].append(step(actor))
    return {arch: min(values) for arch, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="2,4,8,17,32,64,128", help="comma-separated agent counts")
    parser.add_argument("--batch", type=int, default=1000, help="samples per agent")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (the best is reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_extensions()
    keep_freed_memory()  # as a training run's process does (see harl.utils.memory)
    torch.manual_seed(0)
    device = torch.device(args.device)
    counts = [int(n) for n in args.agents.split(",")]

    params = {
        (a, n): count_parameters(a, n_agents=n, obs_dim=OBS_DIM, act_dim=ACT_DIM, state_dim=STATE_DIM)["total"]
        for a in ARCHS
        for n in counts
    }
    times = {}
    for n in counts:
        times.update({(a, n): seconds for a, seconds in update_times(n, args.batch, args.repeats, device).items()})

    print(
        f"device {device}, threads {torch.get_num_threads()}, batch {args.batch} per agent, "
        f"obs {OBS_DIM}, act {ACT_DIM}, state {STATE_DIM}, hidden [128, 128]\n"
    )
    head = [
        "agents",
        *(f"params {a}" for a in ARCHS),
        *(f"fwd+bwd ms {a}" for a in ARCHS),
        *(f"ms/agent {a}" for a in ARCHS),
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for n in counts:
        cells = [
            str(n),
            *(f"{params[a, n]:,}" for a in ARCHS),
            *(f"{1e3 * times[a, n]:.1f}" for a in ARCHS),
            *(f"{1e3 * times[a, n] / n:.3f}" for a in ARCHS),
        ]
        print("| " + " | ".join(cells) + " |")

    print()
    if 4 in counts and 128 in counts:
        growth = params["hypermarl", 128] / params["hypermarl", 4] - 1
        print(f"hypermarl parameter growth 4 -> 128 agents: {100 * growth:.2f}% (target <= 10%)")
    largest = max(counts)
    ratio = times["hypermarl", largest] / times["nops", largest]
    print(f"hypermarl / nops forward+backward time per agent at {largest} agents: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
