"""MPE (mpe2) adapter: spec and padding, truncation at max_cycles, seeding, CLI smoke (what every env does alike:
test_env_registry.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .conftest import read_progress, run_train

pytest.importorskip("mpe2")
pytestmark = pytest.mark.optional

from harl.envs.mpe import MpeConfig, MpeEnv, make  # noqa: E402


@pytest.mark.parametrize(
    ("scenario", "continuous", "obs_dims", "act_dims", "state_dim"),
    [
        ("simple_spread", False, (18, 18, 18), (5, 5, 5), 54),
        ("simple_spread", True, (18, 18, 18), (5, 5, 5), 54),
        ("simple_reference", False, (21, 21), (50, 50), 42),
        ("simple_reference", True, (21, 21), (15, 15), 42),
        ("simple_speaker_listener", False, (3, 11), (3, 5), 14),
        ("simple_speaker_listener", True, (3, 11), (3, 5), 14),
    ],
)
def test_spec(scenario, continuous, obs_dims, act_dims, state_dim):
    spec = MpeEnv(MpeConfig(scenario=scenario, continuous_actions=continuous)).spec
    assert spec.obs_dims == obs_dims and spec.act_dims == act_dims and spec.state_dim == state_dim
    assert spec.discrete is not continuous
    if continuous:
        assert (spec.act_low == 0).all() and (spec.act_high == 1).all()


def test_speaker_listener_is_padded_and_truncated_at_max_cycles():
    env = make(MpeConfig(scenario="simple_speaker_listener", max_cycles=3), n_envs=2, seed=0, device="cpu")
    out = env.reset(0)
    assert out.obs.shape == (2, 2, 11) and out.state.shape == (2, 14)
    assert (out.obs[:, 0, 3:] == 0).all()  # the speaker's 3 entries, zero-padded to the listener's 11
    actions = torch.tensor([[[1], [4]], [[2], [0]]])  # (E, N, 1)
    for _ in range(2):
        out = env.step(actions)
        assert not out.done.any()
    out = env.step(actions)
    assert out.truncated.all() and not out.terminated.any() and (out.episode_length == 3).all()
    assert torch.allclose(out.reward[:, 0], out.reward[:, 1])  # speaker and listener share the reward
    assert (out.obs[:, 0, 3:] == 0).all() and (out.final_obs[:, 0, 3:] == 0).all()
    env.close()


def test_continuous_actions_are_clipped_to_bounds_and_reach_the_env():
    env = MpeEnv(MpeConfig(scenario="simple_spread", continuous_actions=True))
    env.reset(3)
    obs, state, avail, reward, terminated, truncated, _ = env.step(np.full((3, 5), 7.0, dtype=np.float32))
    assert avail is None and reward.shape == (3,) and not (terminated or truncated)
    assert np.allclose(obs[:, :2], 0.0)  # (right - left) and (up - down) cancel: velocities stay zero


@pytest.mark.parametrize("arch", ["nops", "fups_id"])
@pytest.mark.parametrize(("scenario", "continuous"), [("simple_speaker_listener", "false"), ("simple_spread", "true")])
def test_mappo_trains_on_mpe(scenario, continuous, arch, tmp_path):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "mappo",
        "--arch",
        arch,
        "--env",
        "mpe",
        "--scenario",
        scenario,
        "--continuous_actions",
        continuous,
        "--max_cycles",
        "10",
        "--num_env_steps",
        "40",
        "--n_rollout_threads",
        "2",
        "--n_workers",
        "0",
        "--episode_length",
        "20",
        "--eval_episodes",
        "2",
        "--n_eval_rollout_threads",
        "2",
        "--hidden_sizes",
        "16,16",
    )
    assert read_progress(run_dir)[-1]["eval/episode_return"] != ""
