"""VMAS adapter: spec, batched auto-reset, truncation and termination, seeding, errors, CLI smoke."""

from __future__ import annotations

import pytest
import torch

from harl.errors import ConfigError
from harl.experiment import build_config

from .conftest import read_progress, run_train

pytest.importorskip("vmas")
pytestmark = pytest.mark.optional

from harl.envs.vmas import VmasConfig, VmasVecEnv  # noqa: E402

STAY = 4  # discrete index of "no movement" in VMAS's 3 x 3 movement grid


def test_dispersion_spec_follows_the_paper_settings():
    env = VmasVecEnv(VmasConfig(), 3, "cpu")
    spec = env.spec
    assert spec.n_agents == 4 and spec.discrete and spec.act_dims == (9,) * 4
    assert spec.obs_dims == (16,) * 4  # pos, vel, and (relative position, eaten) of 4 food items
    assert spec.state_dim == 64 and not spec.has_avail_actions


def test_navigation_spec_is_continuous_with_per_agent_bounds():
    env = VmasVecEnv(VmasConfig(scenario="navigation", n_agents=2), 3, "cpu")
    spec = env.spec
    assert not spec.discrete and spec.act_dims == (2, 2)
    assert (spec.act_low == -1).all() and (spec.act_high == 1).all()
    assert spec.obs_dims == (8, 8)  # pos, vel, relative positions of both goals
    out = env.reset(0)
    assert out.obs.shape == (3, 2, 8) and out.state.shape == (3, 16)
    out = env.step(torch.rand(3, 2, 2) * 2 - 1)
    assert out.reward.shape == (3, 2) and out.reward.dtype == torch.float32


def test_truncation_at_max_steps_then_fresh_episodes():
    env = VmasVecEnv(VmasConfig(max_steps=5, food_radius=0.01), 4, "cpu")
    env.reset(0)
    stay = torch.full((4, 4, 1), STAY)
    for _ in range(4):
        out = env.step(stay)
        assert not out.done.any() and out.episode_return.isnan().all()
    out = env.step(stay)
    assert out.truncated.all() and not out.terminated.any()
    assert (out.episode_length == 5).all()
    assert torch.allclose(out.episode_return, out.reward.mean(1) * 5)  # the same time penalty every step
    assert torch.equal(out.state, out.obs.flatten(1)) and torch.equal(out.final_state, out.final_obs.flatten(1))
    assert not torch.equal(out.obs[..., 4:], out.final_obs[..., 4:])  # new food positions
    assert (out.obs[..., :4] == 0).all()  # agents restart at the origin, at rest


def test_eating_every_food_terminates_with_shared_out_rewards():
    env = VmasVecEnv(VmasConfig(n_agents=4, n_food=1, food_radius=3.0), 2, "cpu")
    env.reset(0)
    out = env.step(torch.full((2, 4, 1), STAY))
    assert out.terminated.all() and not out.truncated.any()
    assert torch.allclose(out.reward, torch.full((2, 4), 0.25))  # 4 agents on one food share it
    assert torch.allclose(out.episode_return, torch.full((2,), 0.25)) and (out.episode_length == 1).all()
    assert (out.final_obs[..., 6] == 1).all() and (out.obs[..., 6] == 0).all()  # eaten flag, then a new episode


@pytest.mark.parametrize("scenario", ["dispersion", "navigation"])
def test_batched_reset_only_touches_the_finished_envs(scenario):
    env = VmasVecEnv(VmasConfig(scenario=scenario), 6, "cpu")
    env.reset(1)
    for _ in range(3):
        actions = torch.randint(0, 9, (6, 4, 1)) if env.spec.discrete else torch.rand(6, 4, 2) * 2 - 1
        env.step(actions)
    before = env._observe()
    steps_before = env._env.steps.clone()
    mask = torch.tensor([False, True, False, False, True, False])
    env._reset_where(mask, everything=False)
    after = env._observe()
    assert torch.equal(after[~mask], before[~mask])
    assert not torch.equal(after[mask], before[mask])
    assert torch.equal(env._env.steps[~mask], steps_before[~mask]) and (env._env.steps[mask] == 0).all()
    if scenario == "dispersion":
        assert (after[mask][..., :4] == 0).all()  # agents at the origin, at rest
        assert not any(food.eaten[mask].any() for food in env._env.world.landmarks)
    else:
        for agent in env._env.world.agents:  # the reward shaping restarts from the new distance to the goal
            distance = torch.linalg.vector_norm(agent.state.pos - agent.goal.state.pos, dim=-1)
            assert torch.allclose(agent.pos_shaping[mask], distance[mask])


def test_agents_with_same_goal_is_at_most_n_agents():
    with pytest.raises(ConfigError, match="agents_with_same_goal"):
        VmasConfig(scenario="navigation", agents_with_same_goal=5).validate()


@pytest.mark.parametrize(
    ("scenario", "n_agents", "lr"),
    [("dispersion", 4, 5e-4), ("navigation", 2, 5e-5), ("navigation", 4, 5e-5), ("navigation", 8, 5e-5)],
)
def test_tuned_configs_resolve(scenario, n_agents, lr):
    cfg, sources = build_config("mappo", "fups_id", "vmas", {"scenario": scenario, "n_agents": str(n_agents)})
    assert sources[-1].endswith(f"tuned_configs/vmas/{scenario}-{n_agents}/mappo.yaml")
    assert cfg.algo.lr == lr and cfg.env.n_agents == n_agents


@pytest.mark.parametrize("arch", ["nops", "fups_id"])
def test_mappo_trains_on_dispersion(arch, tmp_path):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "mappo",
        "--arch",
        arch,
        "--env",
        "vmas",
        "--scenario",
        "dispersion",
        "--num_env_steps",
        "80",
        "--n_rollout_threads",
        "4",
        "--episode_length",
        "20",
        "--eval_episodes",
        "4",
        "--n_eval_rollout_threads",
        "4",
    )
    rows = read_progress(run_dir)
    assert rows[-1]["eval/episode_return"] != ""
    assert "vmas/dispersion-4" in str(run_dir)


def test_mappo_trains_on_navigation(tmp_path):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "mappo",
        "--arch",
        "nops",
        "--env",
        "vmas",
        "--scenario",
        "navigation",
        "--n_agents",
        "2",
        "--max_steps",
        "10",
        "--num_env_steps",
        "40",
        "--n_rollout_threads",
        "4",
        "--episode_length",
        "10",
        "--ppo_epoch",
        "1",
        "--critic_epoch",
        "1",
        "--actor_num_mini_batch",
        "1",
        "--critic_num_mini_batch",
        "1",
        "--eval_episodes",
        "4",
        "--n_eval_rollout_threads",
        "4",
    )
    assert read_progress(run_dir)[-1]["eval/episode_return"] != ""
