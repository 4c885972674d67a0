"""Evaluation counts complete episodes without favouring short ones."""

from __future__ import annotations

import torch

from harl.algos.base import ActOutput
from harl.evaluation import episode_quotas, evaluate
from harl.spec import StepOutput

LONG = 10  # steps of an episode that chose to continue


class ChoiceEnv:
    """One agent; at an episode's first step action 0 ends it with return 0, action 1 runs it to step `LONG`
    with return 1. A policy choosing 1 with probability p has expected return p, but its failures end first."""

    def __init__(self, n_envs: int) -> None:
        self.n_envs = n_envs
        self.t = torch.zeros(n_envs, dtype=torch.long)
        self.long = torch.zeros(n_envs, dtype=torch.bool)

    def _output(self, reward, terminated, returns, lengths) -> StepOutput:
        obs, state = torch.zeros(self.n_envs, 1, 1), torch.zeros(self.n_envs, 1)
        truncated = torch.zeros(self.n_envs, dtype=torch.bool)
        return StepOutput(obs, state, None, reward, terminated, truncated, obs, state, returns, lengths)

    def reset(self, seed: int) -> StepOutput:
        self.t.zero_()
        zeros = torch.zeros(self.n_envs)
        return self._output(zeros.view(-1, 1), zeros.bool(), zeros, zeros.long())

    def step(self, actions: torch.Tensor) -> StepOutput:
        first = self.t == 0
        self.long = torch.where(first, actions[:, 0, 0] == 1, self.long)
        self.t += 1
        ended = (first & ~self.long) | (self.t >= LONG)
        returns = torch.where(ended, self.long.float(), torch.nan)
        lengths = torch.where(ended, self.t, 0)
        self.t = torch.where(ended, 0, self.t)
        return self._output(torch.zeros(self.n_envs, 1), ended, returns, lengths)

    def close(self) -> None:
        pass


class CoinPolicy:
    """Chooses action 1 with probability `p` (the `Learner` protocol's acting side)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def initial_hidden(self, n_envs: int) -> None:
        return None

    def act(self, obs, state, avail, *, deterministic=False, hidden=None) -> ActOutput:
        actions = (torch.rand(obs.shape[0], 1, 1) < self.p).long()
        return ActOutput(actions.float(), actions)


def first_to_finish(env: ChoiceEnv, policy: CoinPolicy, episodes: int) -> float:
    """The biased estimate: the mean return of the first `episodes` episodes to finish across envs."""
    torch.manual_seed(0)
    out, returns = env.reset(0), []
    while len(returns) < episodes:
        out = env.step(policy.act(out.obs, out.state, None).env_actions)
        returns += out.episode_return[out.done].tolist()
    return sum(returns[:episodes]) / episodes


def test_quotas_split_the_episodes_evenly():
    assert episode_quotas(10, 4).tolist() == [3, 3, 2, 2]
    assert episode_quotas(3, 5).tolist() == [1, 1, 1, 0, 0]
    assert int(episode_quotas(1000, 7).sum()) == 1000


def test_policy_dependent_episode_lengths_do_not_bias_the_estimate():
    policy = CoinPolicy(0.5)
    n_envs, episodes = 64, 64
    biased = first_to_finish(ChoiceEnv(n_envs), policy, episodes)
    assert biased < 0.25  # failures finish first, so the first 64 to finish are mostly failures
    estimates = [
        evaluate(policy, ChoiceEnv(n_envs), episodes, False, seed, torch.device("cpu"))["eval/episode_return"]
        for seed in range(8)
    ]
    mean = sum(estimates) / len(estimates)  # 512 episodes: standard error ≈ 0.022
    assert abs(mean - 0.5) < 0.08, estimates
