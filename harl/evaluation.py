"""Evaluation episodes of a learner's current policies, under their own seed."""

from __future__ import annotations

import math

import numpy as np
import torch

from harl.algos.base import Learner
from harl.errors import TrainingDiverged
from harl.models.recurrent import reset_hidden
from harl.utils.finite import invalid_probabilities
from harl.utils.rng import isolated_rng


def episode_quotas(episodes: int, n_envs: int) -> torch.Tensor:
    """How many episodes each of `n_envs` envs runs so that they run `episodes` in all: (E,), as equal as can be."""
    quotas = torch.full((n_envs,), episodes // n_envs, dtype=torch.long)
    quotas[: episodes % n_envs] += 1
    return quotas


@torch.no_grad()
def evaluate(
    learner: Learner,
    env,
    episodes: int,
    deterministic: bool,
    seed: int,
    device: torch.device,
    render: bool = False,
) -> dict[str, float]:
    """Run `episodes` complete episodes on the vectorised `env`; returns mean/std return (and win rate).

    Every env runs a fixed quota of episodes (`episode_quotas`), the first ones it finishes; episodes an env
    finishes beyond its quota are not counted. Counting the first `episodes` episodes to finish across envs
    instead would over-represent short episodes (often failures: a fall ends a Walker2d episode early),
    since those finish first; with a quota fixed in advance every counted episode is a complete draw from
    the policy's episode distribution, whatever its length.

    The global RNGs (the CPU's and, on CUDA, `device`'s) are forked and seeded with `seed`, so evaluation
    never changes the training run's random stream. Recurrent learners' hidden states start fresh and are
    zeroed wherever an episode ends.

    Raises:
        TrainingDiverged: a stochastic policy's action probabilities were invalid (`harl.utils.finite`).
    """
    quotas = episode_quotas(episodes, env.n_envs)  # (E,)
    finished = torch.zeros_like(quotas)  # (E,) counted episodes per env
    returns: list[float] = []
    wins: list[float] = []
    hidden = learner.initial_hidden(env.n_envs)  # (E, N, H) or None
    with isolated_rng(seed, device):
        out = env.reset(seed)
        while bool((finished < quotas).any()):
            obs, state = out.obs.to(device), out.state.to(device)
            avail = out.avail_actions.to(device) if out.avail_actions is not None else None
            action = learner.act(obs, state, avail, deterministic=deterministic, hidden=hidden)
            out = env.step(action.env_actions)
            hidden = reset_hidden(action.hidden, out.done.to(device))
            if render:
                env.render()
            for e in torch.nonzero(out.done.cpu()).flatten().tolist():
                if finished[e] >= quotas[e]:
                    continue
                finished[e] += 1
                returns.append(float(out.episode_return[e]))
                if "win" in out.info and not math.isnan(float(out.info["win"][e])):
                    wins.append(float(out.info["win"][e]))
    problem = invalid_probabilities()  # one read per evaluation, not per step
    if problem is not None:
        raise TrainingDiverged(f"evaluation stopped: {problem} when sampling its actions")
    metrics = {"eval/episode_return": float(np.mean(returns)), "eval/episode_return_std": float(np.std(returns))}
    if wins:
        metrics["eval/win_rate"] = float(np.mean(wins))
    return metrics
