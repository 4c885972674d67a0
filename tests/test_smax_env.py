"""SMAX adapter (`--env smacv2`): spec, action masks, win/loss/truncation, auto-reset, seeding, errors, CLI smoke.

Every test uses the small map 3m with 4 envs, so JAX compiles the batched step once per process.
"""

from __future__ import annotations

import math

import pytest
import torch

from harl.errors import UserError
from harl.experiment import build_config
from harl.registry import ARCHITECTURES, load_extensions

from .conftest import read_progress, run_train

pytest.importorskip("jaxmarl")
pytestmark = pytest.mark.optional

from harl.envs.smax import MAPS, SmacConfig, SmaxVecEnv, make  # noqa: E402

N_ENVS = 4
STOP = 4  # the "stop" movement action, always available
FIRST_ATTACK = 5  # actions 5 + j attack enemy j


@pytest.fixture(scope="module")
def env() -> SmaxVecEnv:
    return SmaxVecEnv(SmacConfig(scenario="3m"), N_ENVS, "cpu")


def _edit_games(env: SmaxVecEnv, **fields) -> None:
    """Overwrite fields of the batched SMAX state of every game, e.g. unit_health=f(old)."""
    inner = env._states.state
    env._states = env._states.replace(state=inner.replace(**{k: f(getattr(inner, k)) for k, f in fields.items()}))


def _stop(n_agents: int = 3) -> torch.Tensor:
    return torch.full((N_ENVS, n_agents, 1), STOP)


def test_map_list_matches_jaxmarl():
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    assert set(MAPS) == set(MAP_NAME_TO_SCENARIO)


def test_spec_and_first_observations(env):
    spec = env.spec
    assert spec.n_agents == 3 and spec.discrete and spec.has_avail_actions
    assert spec.act_dims == (8,) * 3  # 5 movement actions + attack one of 3 enemies
    assert spec.obs_dims == (75,) * 3 and spec.state_dim == 72
    out = env.reset(0)
    assert out.obs.shape == (N_ENVS, 3, 75) and out.obs.dtype == torch.float32
    assert out.state.shape == (N_ENVS, 72) and out.avail_actions.dtype == torch.bool
    assert out.avail_actions[..., :FIRST_ATTACK].all()  # every move and stop
    assert not out.avail_actions[..., FIRST_ATTACK:].any()  # the enemy starts out of range


def test_win_ends_the_episode_with_win_info(env):
    env.reset(1)
    _edit_games(
        env, unit_health=lambda h: h.at[:, 3:].set(0.1), unit_positions=lambda p: p.at[:, 3:].set(p[:, :3] + 1.0)
    )
    attack = torch.tensor([FIRST_ATTACK, FIRST_ATTACK + 1, FIRST_ATTACK + 2]).view(1, 3, 1).expand(N_ENVS, 3, 1)
    out = env.step(attack)
    assert out.terminated.all() and not out.truncated.any()
    assert torch.equal(out.info["win"], torch.ones(N_ENVS))
    assert (out.reward > 1.0).all()  # the win bonus plus the enemy health removed
    assert torch.allclose(out.episode_return, out.reward.mean(1)) and (out.episode_length == 1).all()
    assert out.avail_actions[..., :FIRST_ATTACK].all()  # a new game has started


def test_loss_and_truncation(env):
    env.reset(2)
    _edit_games(env, unit_health=lambda h: h.at[:, :3].set(0.0))  # every ally dies in the next step
    out = env.step(_stop())
    assert out.terminated.all() and torch.equal(out.info["win"], torch.zeros(N_ENVS))
    _edit_games(env, step=lambda t: t.at[:].set(99))
    out = env.step(_stop())
    assert out.truncated.all() and not out.terminated.any()
    assert torch.equal(out.info["win"], torch.zeros(N_ENVS))
    out = env.step(_stop())
    assert not out.done.any() and out.info["win"].isnan().all() and out.episode_return.isnan().all()


def test_dead_allies_may_only_stop(env):
    env.reset(3)
    _edit_games(env, unit_health=lambda h: h.at[:, 0].set(0.0))
    out = env.step(_stop())
    only_stop = torch.nn.functional.one_hot(torch.tensor(STOP), 8).bool()
    assert (out.avail_actions[:, 0] == only_stop).all()
    assert out.avail_actions[:, 1:, :FIRST_ATTACK].all()


def test_random_play_auto_resets_and_never_recompiles(env):
    out = env.reset(4)
    compiled = env._smax.step._cache_size()
    generator = torch.Generator().manual_seed(0)
    finished = 0
    for _ in range(150):
        logits = torch.rand(out.avail_actions.shape, generator=generator).masked_fill(~out.avail_actions, -1.0)
        out = env.step(logits.argmax(-1, keepdim=True))
        done = out.done
        finished += int(done.sum())
        assert out.info["win"][~done].isnan().all() and not out.info["win"][done].isnan().any()
        assert (out.episode_length[done] <= 100).all() and (out.episode_length[~done] == 0).all()
    assert finished >= N_ENVS  # every game ends within 100 steps
    assert env._smax.step._cache_size() == compiled


def test_sc2_backend_says_what_to_install(monkeypatch):
    monkeypatch.delenv("SC2PATH", raising=False)
    with pytest.raises(UserError, match="StarCraft II") as error:
        make(SmacConfig(backend="sc2"), n_envs=1, seed=0, device="cpu")
    assert "smacv2" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("scenario", "lr"), [("2s3z", 0.002), ("3s5z", 0.002), ("smacv2_10_units", 0.0003), ("smacv2_20_units", 0.0003)]
)
def test_tuned_configs_resolve(scenario, lr):
    cfg, sources = build_config("mappo", "fups_id", "smacv2", {"scenario": scenario})
    assert sources[-1].endswith(f"tuned_configs/smacv2/{scenario}/mappo.yaml")
    assert math.isclose(cfg.algo.lr, lr) and cfg.run.n_rollout_threads == 128 and cfg.algo.ppo_epoch == 4


@pytest.mark.parametrize(
    ("scenario", "lr", "embedding", "hidden"),
    [
        ("2s3z", 0.002, 64, 16),
        ("3s5z", 0.0003, 64, 16),
        ("smacv2_10_units", 0.0003, 64, 16),
        ("smacv2_20_units", 0.0003, 4, 64),
    ],
)
def test_hypermarl_tuned_configs_resolve(scenario, lr, embedding, hidden):
    load_extensions()
    if "hypermarl" not in ARCHITECTURES:
        pytest.skip("the hypermarl architecture is not registered")
    cfg, sources = build_config("mappo", "hypermarl", "smacv2", {"scenario": scenario})
    assert sources[-1].endswith(f"tuned_configs/smacv2/{scenario}/mappo-hypermarl.yaml")
    assert math.isclose(cfg.algo.lr, lr)
    assert cfg.arch.embedding_dim == embedding and cfg.arch.hypernet_hidden_dims == [hidden]


@pytest.mark.parametrize("arch", ["nops", "fups_id"])
def test_mappo_trains_and_logs_win_rate(arch, tmp_path):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "mappo",
        "--arch",
        arch,
        "--env",
        "smacv2",
        "--scenario",
        "3m",
        "--num_env_steps",
        "40",
        "--n_rollout_threads",
        str(N_ENVS),
        "--episode_length",
        "10",
        "--eval_episodes",
        str(N_ENVS),
        "--n_eval_rollout_threads",
        str(N_ENVS),
        "--hidden_sizes",
        "32,32",
    )
    row = read_progress(run_dir)[-1]
    assert row["eval/episode_return"] != "" and 0.0 <= float(row["eval/win_rate"]) <= 1.0
