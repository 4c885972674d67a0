"""The MaMuJoCo adapter: specs of (heterogeneous) splits, observation modes, episode ends, config errors, and
runs without the `mamujoco` extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harl.envs.mamujoco import AGENT_CONFS, MaMuJoCoConfig, MaMuJoCoEnv, _mamujoco, make, scenarios
from harl.envs.vector import SerialVecEnv
from harl.errors import ConfigError, UserError
from harl.registry import get_environment


def _env(**kwargs) -> MaMuJoCoEnv:
    return MaMuJoCoEnv(MaMuJoCoConfig(**kwargs))


def _random_actions(env: MaMuJoCoEnv, rng: np.random.Generator) -> np.ndarray:
    spec = env.spec
    return rng.uniform(spec.act_low, spec.act_high).astype(np.float32)  # (n_agents, act_dim_max)


def test_halfcheetah_2x3_spec_and_shapes():
    env = _env(scenario="HalfCheetah", agent_conf="2x3")
    spec = env.spec
    assert spec.agent_ids == ("agent_0", "agent_1")
    assert spec.obs_dims == (12, 12) and spec.act_dims == (3, 3) and spec.state_dim == 17
    assert spec.action_type == "continuous"
    np.testing.assert_array_equal(spec.act_low, -np.ones((2, 3)))
    np.testing.assert_array_equal(spec.act_high, np.ones((2, 3)))
    obs, state, avail = env.reset(0)
    assert obs.shape == (2, 12) and obs.dtype == np.float32
    assert state.shape == (17,) and state.dtype == np.float32 and avail is None
    obs, state, avail, reward, terminated, truncated, info = env.step(_random_actions(env, np.random.default_rng(0)))
    assert obs.shape == (2, 12) and reward.shape == (2,) and reward[0] == reward[1]
    assert not terminated and not truncated and info == {}


def test_heterogeneous_observations_are_zero_padded():
    env = _env(scenario="HalfCheetah", agent_conf="6x1")
    spec = env.spec
    assert spec.obs_dims == (9, 9, 8, 9, 9, 8) and spec.act_dims == (1,) * 6
    rng = np.random.default_rng(0)
    obs, _, _ = env.reset(0)
    for _ in range(5):
        assert np.all(obs[~spec.obs_mask] == 0.0)
        assert np.all(obs[spec.obs_mask] != 0.0)
        obs = env.step(_random_actions(env, rng))[0]


def test_humanoid_9_8_has_heterogeneous_actions_and_own_bounds():
    env = _env(scenario="Humanoid", agent_conf="9|8")
    spec = env.spec
    assert spec.act_dims == (9, 8) and spec.act_dim_max == 9
    np.testing.assert_allclose(spec.act_low[spec.act_mask], -0.4)
    np.testing.assert_allclose(spec.act_high[spec.act_mask], 0.4)
    env.reset(0)
    actions = np.zeros((2, 9), dtype=np.float32)
    actions[1, 8] = np.nan  # a padded entry: ignored by the env
    obs = env.step(actions)[0]
    assert np.isfinite(obs).all()


def test_humanoid_17x1_gives_one_actuator_per_agent():
    env = _env(scenario="Humanoid", agent_conf="17x1")
    spec = env.spec
    assert spec.n_agents == 17 and spec.act_dims == (1,) * 17
    np.testing.assert_allclose(spec.act_high, 0.4)
    env.reset(0)
    obs, state, _, reward, *_ = env.step(_random_actions(env, np.random.default_rng(0)))
    assert obs.shape == (17, spec.obs_dim_max) and state.shape == (spec.state_dim,) and reward.shape == (17,)


@pytest.mark.parametrize(("scenario", "agent_conf", "n_agents"), [("Walker2d", "6x1", 6), ("Ant", "8x1", 8)])
def test_one_actuator_per_agent_splits(scenario, agent_conf, n_agents):
    env = _env(scenario=scenario, agent_conf=agent_conf)
    assert env.spec.n_agents == n_agents and env.spec.act_dims == (1,) * n_agents


def test_one_actuator_splits_match_the_library_robot_graphs():
    for scenario, confs in AGENT_CONFS.items():
        for conf in confs:
            if conf.endswith("x1"):
                (nodes,), _, _ = _mamujoco().get_parts_and_edges(scenario, None)
                assert int(conf[:-2]) == len(nodes), (scenario, conf)


def test_global_obs_mode_is_state_plus_agent_id():
    env = _env(scenario="HalfCheetah", agent_conf="6x1", obs_mode="global")
    spec = env.spec
    assert spec.obs_dims == (17 + 6,) * 6
    obs, state, _ = env.reset(0)
    obs, state, *_ = env.step(_random_actions(env, np.random.default_rng(0)))
    np.testing.assert_array_equal(obs[:, :17], np.broadcast_to(state, (6, 17)))
    np.testing.assert_array_equal(obs[:, 17:], np.eye(6))


def test_local_and_global_modes_share_dynamics():
    local, glob = _env(obs_mode="local"), _env(obs_mode="global")
    local.reset(3)
    glob.reset(3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = _random_actions(local, rng)
        out_local, out_global = local.step(actions), glob.step(actions)
        np.testing.assert_array_equal(out_local[1], out_global[1])  # state
        np.testing.assert_array_equal(out_local[3], out_global[3])  # reward


def test_truncation_at_episode_limit_auto_resets():
    venv = SerialVecEnv([lambda: _env(episode_limit=5)] * 2)
    venv.reset(0)
    actions = torch.zeros(2, 2, 3)
    rewards = []
    for t in range(5):
        out = venv.step(actions)
        rewards.append(out.reward.mean(1))
        if t < 4:
            assert not out.done.any() and torch.isnan(out.episode_return).all()
            assert torch.equal(out.final_obs, out.obs)
    assert out.truncated.all() and not out.terminated.any()
    assert not torch.equal(out.final_obs, out.obs) and not torch.equal(out.final_state, out.state)
    torch.testing.assert_close(out.episode_return, torch.stack(rewards).sum(0))
    assert torch.equal(out.episode_length, torch.full((2,), 5.0))


def test_fallen_walker_is_terminated_not_truncated():
    env = _env(scenario="Walker2d", agent_conf="2x3", episode_limit=1000)
    env.reset(0)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        *_, terminated, truncated, _ = env.step(_random_actions(env, rng))
        if terminated or truncated:
            break
    assert terminated and not truncated


def test_config_errors_list_valid_options():
    with pytest.raises(ConfigError, match=r"9\|8, 17x1"):
        MaMuJoCoConfig(scenario="Humanoid", agent_conf="3x3").validate()
    with pytest.raises(ConfigError, match="episode_limit"):
        MaMuJoCoConfig(episode_limit=0).validate()
    with pytest.raises(ConfigError, match="agent_obsk"):
        MaMuJoCoConfig(agent_obsk=-1).validate()


def test_scenario_names():
    assert MaMuJoCoConfig().scenario_name() == "HalfCheetah-2x3"
    humanoid = MaMuJoCoConfig(scenario="Humanoid", agent_conf="9|8")
    assert humanoid.scenario_name() == "Humanoid-9_8"
    MaMuJoCoConfig(scenario="Humanoid", agent_conf="9_8").validate()  # the folder spelling is accepted
    expected = {"HalfCheetah-2x3", "HalfCheetah-6x1", "Humanoid-9_8", "Humanoid-17x1", "Walker2d-6x1", "Ant-8x1"}
    assert expected <= set(scenarios())


def test_render_without_display_is_a_user_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(UserError, match="display"):
        _env().render()


def test_registered_make_builds_a_vec_env():
    entry = get_environment("mamujoco")
    assert entry.config_cls is MaMuJoCoConfig and entry.make is make
    venv = entry.make(MaMuJoCoConfig(), n_envs=2, seed=0, device="cpu", n_workers=0)
    try:
        out = venv.reset(0)
        assert out.obs.shape == (2, 2, 12) and out.state.shape == (2, 17)
    finally:
        venv.close()


# The packages of the mamujoco extra: blocked, they cannot be imported in the process below.
MAMUJOCO_EXTRA = ("mujoco", "gymnasium_robotics")


def _train_without(blocked: tuple[str, ...], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`harl-train --algo mappo --arch nops ARGS` in a process where the `blocked` packages cannot be imported."""
    code = f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); from harl.cli import train; sys.exit(train())"
    return subprocess.run(
        [sys.executable, "-c", code, "--algo", "mappo", "--arch", "nops", *args, "--log_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


TINY_ARGS = ["--num_env_steps", "40", "--n_rollout_threads", "4", "--episode_length", "10", "--hidden_sizes", "16,16"]


def test_vmas_trains_without_the_mamujoco_extra(tmp_path):
    pytest.importorskip("vmas")
    result = _train_without(MAMUJOCO_EXTRA, tmp_path, "--env", "vmas", "--max_steps", "10", *TINY_ARGS)
    assert result.returncode == 0, result.stderr
    assert "run folder:" in result.stdout
