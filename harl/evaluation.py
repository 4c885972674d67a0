"""Evaluation episodes of a learner's current policies, under their own seed."""

from __future__ import annotations

import math

import numpy as np
import torch


@torch.no_grad()
def evaluate(
    learner, env, episodes: int, deterministic: bool, seed: int, device: torch.device, render: bool = False
) -> dict[str, float]:
    """Run `episodes` complete episodes on the vectorised `env`; returns mean/std return (and win rate).

    Global RNGs are forked, so evaluation never changes the training run's random stream.
    """
    returns: list[float] = []
    wins: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = env.reset(seed)
        while len(returns) < episodes:
            obs, state = out.obs.to(device), out.state.to(device)
            avail = out.avail_actions.to(device) if out.avail_actions is not None else None
            env_actions, _, _ = learner.act(obs, state, avail, deterministic)
            out = env.step(env_actions)
            if render:
                env.render()
            for e in torch.nonzero(out.done.cpu()).flatten().tolist():
                returns.append(float(out.episode_return[e]))
                if "win" in out.info and not math.isnan(float(out.info["win"][e])):
                    wins.append(float(out.info["win"][e]))
    returns = returns[:episodes]
    metrics = {"eval/episode_return": float(np.mean(returns)), "eval/episode_return_std": float(np.std(returns))}
    if wins:
        metrics["eval/win_rate"] = float(np.mean(wins[:episodes]))
    return metrics
