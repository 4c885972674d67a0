"""The paper's matrix games: payoffs and the FuPS bound of Table 2."""

from __future__ import annotations

import itertools

import pytest
import torch

from harl.envs.matrix import MatrixGameVecEnv


def test_two_agent_payoffs_match_the_paper():
    spec_env = MatrixGameVecEnv("specialisation", 2, n_envs=4, device="cpu")
    joint = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert spec_env.payoffs(joint).tolist() == [[0.5, 0.5], [1, 1], [1, 1], [0.5, 0.5]]
    sync_env = MatrixGameVecEnv("synchronisation", 2, n_envs=4, device="cpu")
    assert sync_env.payoffs(joint).tolist() == [[1, 1], [0.5, 0.5], [0.5, 0.5], [1, 1]]


@pytest.mark.parametrize(("n", "expected"), [(2, 0.75), (4, 0.68359375)])
def test_uniform_shared_policy_scores_fups_row(n, expected):
    env = MatrixGameVecEnv("specialisation", n, n_envs=n**n, device="cpu")
    joint = torch.tensor(list(itertools.product(range(n), repeat=n)))  # every joint action, equally likely
    team = env.payoffs(joint).mean(1).mean().item()
    assert team == pytest.approx(1 - (1 - 1 / n) ** n) == pytest.approx(expected)


def test_step_is_one_terminal_step_with_team_reward():
    env = MatrixGameVecEnv("specialisation", 4, n_envs=3, device="cpu")
    env.reset(0)
    out = env.step(torch.tensor([[[0], [1], [2], [3]], [[0], [0], [0], [0]], [[0], [0], [1], [1]]]))
    assert out.terminated.all() and not out.truncated.any()
    assert out.reward[:, 0].tolist() == [1.0, 0.25, 0.5]
    assert out.episode_return.tolist() == [1.0, 0.25, 0.5]
    assert (out.obs == out.obs[0, 0]).all()  # a constant observation: only the architecture can break symmetry
