"""Score saved policies' diversity (System Neural Diversity) on one shared observation set, as the paper does.

    python examples/diversity.py --checkpoints RUN_A RUN_B ... --obs obs.pt [--samples 128] [--metric jsd]
    python examples/diversity.py --checkpoints RUN_A RUN_B --collect 2000 [--obs obs.pt]   # gather, then score

A checkpoint is a checkpoint file, a run folder or its `checkpoints/` (the latest is used). The
observation set is a `.pt` (a tensor, or a dict with "obs" and optionally "avail") or `.npy` file of
joint observations (B, N, obs_dim). `--collect N` gathers N joint observations by rolling out the
first checkpoint's (stochastic) policy in its environment and, when `--obs` is given too, saves them
there for reuse. All checkpoints must come from the same environment layout. See
`harl.metrics.diversity` for the estimators and the observation modes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harl.cli import guarded
from harl.errors import UserError
from harl.experiment import config_from_dict
from harl.metrics import DISTANCES, SNDResult, snd_of_actor
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner, resolve_device
from harl.utils.checkpoint import load_checkpoint
from harl.utils.cli_args import ArgParser
from harl.utils.rng import isolated_rng


@dataclass
class LoadedPolicy:
    """A checkpoint's learner and what identifies its environment."""

    path: str
    method: str
    env_steps: int
    environment: str
    layout: dict
    learner: Any  # the checkpoint's learner (any registered algorithm)
    env_cfg: object
    env_name: str


def load_policy(path: str, device: torch.device) -> LoadedPolicy:
    """Rebuild a checkpoint's learner (any algorithm and architecture) on `device`."""
    checkpoint = load_checkpoint(Path(path))  # on the CPU: load_state_dict places the tensors
    cfg = config_from_dict(checkpoint["config"], {"run.device": str(device)})
    if cfg.model.recurrent:
        raise UserError(f"{path}: SND scores single observations; recurrent policies depend on their history")
    env = get_environment(cfg.env_name).make(cfg.env, n_envs=1, seed=0, device=device)
    try:
        learner = build_learner(cfg, env.spec, device)
    finally:
        env.close()
    try:
        learner.load_state_dict(checkpoint["learner"])
    except (KeyError, RuntimeError, TypeError, ValueError):  # TypeError: a generator state of another type
        raise UserError(f"checkpoint {checkpoint['path']} does not fit its own config (corrupt?)") from None
    return LoadedPolicy(
        path=path,
        method=f"{cfg.algo_name}-{cfg.arch_name}",
        env_steps=checkpoint["runner"]["env_steps"],
        environment=f"{cfg.env_name}/{cfg.env.scenario_name()}",
        layout=checkpoint.get("spec", {}),
        learner=learner,
        env_cfg=cfg.env,
        env_name=cfg.env_name,
    )


def check_same_environment(policies: list[LoadedPolicy]) -> None:
    """Refuse checkpoints of different environments or layouts (they cannot share an observation set)."""
    first = policies[0]
    for other in policies[1:]:
        if other.environment != first.environment or other.layout != first.layout:
            raise UserError(
                f"checkpoints come from different environments: {first.path} ({first.environment}) and "
                f"{other.path} ({other.environment}); diversity is compared on one shared observation set"
            )


def load_observations(path: Path, n_agents: int, obs_dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read (B, N, obs_dim) observations (and optional (B, N, A) available-action masks) from .pt or .npy."""
    if not path.is_file():
        raise UserError(f"observation file not found: {path}")
    avail = None
    try:
        if path.suffix == ".npy":
            obs = torch.as_tensor(np.load(path, allow_pickle=False))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(data, dict):
                if "obs" not in data:
                    raise UserError(f"{path} holds a dict without an 'obs' entry")
                obs, avail = data["obs"], data.get("avail")
            else:
                obs = data
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise UserError(f"cannot read observations from {path} ({type(err).__name__})") from None
    if not isinstance(obs, torch.Tensor) or obs.dim() != 3 or tuple(obs.shape[1:]) != (n_agents, obs_dim):
        shape = tuple(obs.shape) if isinstance(obs, torch.Tensor) else type(obs).__name__
        raise UserError(f"observations in {path} must have shape (B, {n_agents}, {obs_dim}), got {shape}")
    return obs.float(), None if avail is None else avail.float()


@torch.no_grad()
def collect_observations(policy: LoadedPolicy, count: int, seed: int, device: torch.device):
    """`count` joint observations (and avail masks) from rollouts of `policy`'s stochastic policy."""
    n_envs = min(count, 16)
    env = get_environment(policy.env_name).make(policy.env_cfg, n_envs=n_envs, seed=seed, device=device)
    obs_list: list[torch.Tensor] = []
    avail_list: list[torch.Tensor] = []
    try:
        with isolated_rng(seed, device):
            out = env.reset(seed)
            while sum(o.shape[0] for o in obs_list) < count:
                obs, state = out.obs.to(device), out.state.to(device)
                avail = out.avail_actions.to(device) if out.avail_actions is not None else None
                obs_list.append(obs.cpu())
                if avail is not None:
                    avail_list.append(avail.cpu())
                env_actions = policy.learner.act(obs, state, avail).env_actions
                out = env.step(env_actions)
    finally:
        env.close()
    obs = torch.cat(obs_list)[:count]
    return obs, torch.cat(avail_list)[:count] if avail_list else None


def table(policies: list[LoadedPolicy], results: list[SNDResult]) -> str:
    """A markdown table: one row per checkpoint with its SND and standard error."""
    lines = ["| checkpoint | method | env steps | SND | ± s.e. |", "|---|---|---:|---:|---:|"]
    for policy, result in zip(policies, results, strict=True):
        lines.append(
            f"| {policy.path} | {policy.method} | {policy.env_steps} | {result.value:.4f} | {result.stderr:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Score the checkpoints given in `argv` (see the module docstring) and print the table."""
    parser = ArgParser(description="System Neural Diversity of saved policies on a shared observation set.")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint files or run folders")
    parser.add_argument("--obs", help="observations (.pt or .npy, (B, N, obs_dim)); with --collect: where to save")
    parser.add_argument("--collect", type=int, help="gather this many joint observations with the first checkpoint")
    parser.add_argument("--metric", default="jsd", help=f"distance inside SND: {', '.join(DISTANCES)} (default jsd)")
    parser.add_argument(
        "--obs_mode",
        default="auto",
        help="shared, own, or auto (shared when all agents' observations have the same size)",
    )
    parser.add_argument("--samples", type=int, default=128, help="Monte-Carlo draws per distribution (Gaussian JSD)")
    parser.add_argument("--pairwise", action="store_true", help="also print every agent pair's mean distance")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo draws and of --collect")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    if args.metric not in DISTANCES:
        raise UserError(f"unknown metric {args.metric!r}; valid: {', '.join(DISTANCES)}")
    if args.obs_mode not in ("auto", "shared", "own"):
        raise UserError(f"unknown obs_mode {args.obs_mode!r}; valid: auto, shared, own")
    if args.obs is None and args.collect is None:
        raise UserError("give --obs FILE (an observation set) or --collect N (gather one)")
    if args.collect is not None and args.collect <= 0:
        raise UserError("--collect must be positive")
    if args.samples < 2:
        raise UserError("--samples must be at least 2")
    load_extensions()
    device = resolve_device(args.device)
    policies = [load_policy(path, device) for path in args.checkpoints]
    check_same_environment(policies)
    layout = policies[0].layout
    n_agents, obs_dims = len(layout["agent_ids"]), layout["obs_dims"]
    if args.collect is not None:
        obs, avail = collect_observations(policies[0], args.collect, args.seed, device)
        if args.obs is not None:
            Path(args.obs).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"obs": obs, "avail": avail}, args.obs)
            print(f"saved {obs.shape[0]} observations to {args.obs}")
    else:
        obs, avail = load_observations(Path(args.obs), n_agents, max(obs_dims))
    obs_mode = args.obs_mode if args.obs_mode != "auto" else ("shared" if len(set(obs_dims)) == 1 else "own")
    results = [
        snd_of_actor(
            p.learner.actor,
            obs,
            avail,
            distance=args.metric,
            obs_mode=obs_mode,
            samples=args.samples,
            generator=torch.Generator().manual_seed(args.seed),
        )
        for p in policies
    ]
    print(
        f"SND ({args.metric}, {results[0].estimator}, {obs_mode} observations) on {policies[0].environment}: "
        f"{obs.shape[0]} joint observations, |O| = {results[0].n_obs}"
    )
    print(table(policies, results))
    if args.pairwise:
        for policy, result in zip(policies, results, strict=True):
            print(f"\n{policy.path}: mean distance of every agent pair")
            print(np.array2string(result.pairwise.numpy(), precision=4, suppress_small=True))
    return 0


cli = guarded(main)

if __name__ == "__main__":
    sys.exit(cli())
