"""Evaluation episodes of a learner's current policies, under their own seed."""

from __future__ import annotations

import math

import numpy as np
import torch

from harl.models.recurrent import reset_hidden


@torch.no_grad()
def evaluate(
    learner, env, episodes: int, deterministic: bool, seed: int, device: torch.device, render: bool = False
) -> dict[str, float]:
    """Run `episodes` complete episodes on the vectorised `env`; returns mean/std return (and win rate).

    Global RNGs are forked, so evaluation never changes the training run's random stream. Recurrent
    learners' hidden states start fresh and are zeroed wherever an episode ends.
    """
    returns: list[float] = []
    wins: list[float] = []
    hidden = learner.initial_hidden(env.n_envs) if learner.recurrent else None  # (E, N, H)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = env.reset(seed)
        while len(returns) < episodes:
            obs, state = out.obs.to(device), out.state.to(device)
            avail = out.avail_actions.to(device) if out.avail_actions is not None else None
            if learner.recurrent:
                env_actions, _, _, hidden = learner.act(obs, state, avail, deterministic, hidden)
            else:
                env_actions = learner.act(obs, state, avail, deterministic)[0]
            out = env.step(env_actions)
            hidden = reset_hidden(hidden, out.done.to(device))
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
