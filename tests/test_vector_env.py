"""The vector layer: episode bookkeeping, seeding, Serial == Subproc, dead or failing workers, worker counts."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import torch

from harl.envs.mamujoco import MaMuJoCoConfig, MaMuJoCoEnv
from harl.envs.vector import DeviceStaging, SerialVecEnv, SubprocVecEnv, make_vec_env
from harl.errors import EnvWorkerError, UserError
from harl.spec import EnvSpec, StepOutput
from harl.utils.threads import auto_env_workers


class CountdownEnv:
    """A toy discrete env: episodes of `length` steps, reward = action index, "win" at the end when the last actions
    were all 1; agent 1 has only 2 of the 3 actions."""

    def __init__(self, length: int):
        self.length = length
        self.spec = EnvSpec(
            agent_ids=("a", "b"),
            obs_dims=(2, 1),
            state_dim=1,
            action_type="discrete",
            act_dims=(3, 2),
            act_low=np.zeros((2, 3), dtype=np.float32),
            act_high=np.ones((2, 3), dtype=np.float32),
            has_avail_actions=True,
        )
        self.t = 0
        self.resets: list[int | None] = []
        self.closed = False

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs = np.array([[self.t, 1.0], [self.t, 0.0]], dtype=np.float32)
        return obs, np.array([self.t], dtype=np.float32), np.array([[1, 1, 1], [1, 1, 0]], dtype=bool)

    def reset(self, seed):
        self.resets.append(seed)
        self.t = 0
        return self._observe()

    def step(self, actions):
        self.t += 1
        reward = actions[:, 0].astype(np.float32)
        done = self.t == self.length
        info = {"win": float(np.all(actions == 1)), "label": "text is skipped"} if done else {}
        return (*self._observe(), reward, False, done, info)

    def render(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class PidEnv(CountdownEnv):
    """A CountdownEnv whose state is the id of the process that steps it."""

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, _, avail = super()._observe()
        return obs, np.array([os.getpid()], dtype=np.float32), avail


def _same(env: CountdownEnv) -> CountdownEnv:
    """An env fn that returns `env` itself in this process (and a pickled copy of it in a worker)."""
    return env


def _mamujoco_fns(n: int, **kwargs) -> list:
    return [functools.partial(MaMuJoCoEnv, MaMuJoCoConfig(**kwargs)) for _ in range(n)]


def _assert_same(a: StepOutput, b: StepOutput) -> None:
    for name in ("obs", "state", "reward", "terminated", "truncated", "final_obs", "final_state", "episode_length"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    torch.testing.assert_close(a.episode_return, b.episode_return, equal_nan=True)


def test_serial_episode_bookkeeping_and_info():
    envs = [CountdownEnv(2), CountdownEnv(3)]
    venv = SerialVecEnv([functools.partial(_same, env) for env in envs])
    out = venv.reset(10)
    assert [env.resets for env in envs] == [[10], [11]]
    assert out.avail_actions.shape == (2, 2, 3) and out.avail_actions.dtype == torch.bool
    assert out.reward.shape == (2, 2) and not out.done.any() and torch.isnan(out.episode_return).all()
    actions = torch.tensor([[[1], [1]], [[2], [0]]])  # (n_envs, n_agents, 1)
    out = venv.step(actions)
    assert not out.done.any() and out.info == {}
    out = venv.step(actions)  # env 0 ends after 2 steps
    assert out.truncated.tolist() == [True, False] and not out.terminated.any()
    assert out.episode_return[0].item() == 2.0 and torch.isnan(out.episode_return[1])
    assert out.episode_length.tolist() == [2.0, 0.0]
    assert set(out.info) == {"win"} and out.info["win"][0].item() == 1.0 and torch.isnan(out.info["win"][1])
    assert out.final_obs[0, 0, 0].item() == 2.0 and out.obs[0, 0, 0].item() == 0.0  # auto-reset
    assert torch.equal(out.final_obs[1], out.obs[1])
    out = venv.step(actions)  # env 1 ends after 3 steps: team return 3 * mean(2, 0)
    assert out.done.tolist() == [False, True] and out.episode_return[1].item() == 3.0
    assert out.info["win"][1].item() == 0.0
    assert [env.resets for env in envs] == [[10, None], [11, None]]
    venv.close()
    venv.close()
    assert all(env.closed for env in envs)


@pytest.mark.parametrize(
    "n_workers, step_in_main", [(2, False), (1, True), (2, True)], ids=["2-workers", "1-worker+main", "2-workers+main"]
)
def test_serial_and_subproc_agree_across_auto_resets(n_workers, step_in_main):
    """Wherever an env is stepped (a worker or, with step_in_main, the calling process), env k is the same."""
    fns = _mamujoco_fns(3, episode_limit=4)
    serial, subproc = SerialVecEnv(fns), SubprocVecEnv(fns, n_workers, step_in_main=step_in_main)
    assert len(subproc.pids) == n_workers
    try:
        _assert_same(serial.reset(5), subproc.reset(5))
        generator = torch.Generator().manual_seed(0)
        ends = []
        for t in range(9):
            actions = torch.rand(3, 2, 3, generator=generator) * 2 - 1
            out = serial.step(actions)
            _assert_same(out, subproc.step(actions))
            if out.truncated.all():
                ends.append(t)
        assert ends == [3, 7]
    finally:
        serial.close()
        subproc.close()


def test_same_seed_same_rollout():
    def rollout(seed: int) -> torch.Tensor:
        venv = SerialVecEnv(_mamujoco_fns(2))
        frames = [venv.reset(seed).obs]
        generator = torch.Generator().manual_seed(0)
        frames += [venv.step(torch.rand(2, 2, 3, generator=generator) * 2 - 1).obs for _ in range(3)]
        venv.close()
        return torch.stack(frames)

    first = rollout(1)
    assert torch.equal(first, rollout(1)) and not torch.equal(first, rollout(2))
    assert not torch.equal(first[:, 0], first[:, 1])  # env k is seeded with seed + k


def test_killed_worker_raises_instead_of_hanging():
    venv = SubprocVecEnv(_mamujoco_fns(4), 2)
    venv.reset(0)
    pids = venv.pids
    os.kill(pids[1], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvWorkerError, match=r"worker 1 .*SIGKILL"):
        venv.step(torch.zeros(4, 2, 3))
    assert time.monotonic() - start < 5.0
    workers = [p for p in mp.active_children() if p.name.startswith("harl-env-worker")]
    assert not [p for p in workers if p.is_alive()]  # the other worker was stopped too
    with pytest.raises(EnvWorkerError, match="closed"):
        venv.step(torch.zeros(4, 2, 3))
    venv.close()


def test_worker_exception_is_reported():
    venv = SubprocVecEnv(_mamujoco_fns(2), 2)
    venv.reset(0)
    actions = torch.zeros(2, 2, 3)
    actions[1, 0, 0] = float("nan")  # the library refuses undefined actions with an AssertionError
    with pytest.raises(EnvWorkerError, match=r"(?s)worker 1 .*raised.*AssertionError"):
        venv.step(actions)
    venv.close()


def test_subproc_render_and_bad_actions_are_refused():
    venv = SubprocVecEnv(_mamujoco_fns(2), 1)
    try:
        with pytest.raises(UserError, match="n_workers 0"):
            venv.render()
        with pytest.raises(ValueError, match="shape"):
            venv.step(torch.zeros(3, 2, 3))
    finally:
        venv.close()


def test_make_vec_env_worker_counts():
    fns = [functools.partial(CountdownEnv, 2)] * 3
    assert isinstance(make_vec_env(fns, 0), SerialVecEnv)
    assert isinstance(make_vec_env(fns[:1], -1), SerialVecEnv)
    assert isinstance(make_vec_env(fns[:1], 3), SerialVecEnv)  # one env: nobody to share it with
    with pytest.raises(ValueError):
        make_vec_env(fns, -2)
    with pytest.raises(ValueError, match=r"\[1, 1\]"):
        SubprocVecEnv(fns[:2], 2, step_in_main=True)
    venv = make_vec_env([functools.partial(PidEnv, 2)] * 3, 5)  # capped: the calling process keeps a share
    try:
        assert isinstance(venv, SubprocVecEnv) and len(venv.pids) == 2
        # env 0 and env 1 are stepped by one worker each, env 2 by the calling process
        assert venv.reset(0).state[:, 0].tolist() == [*venv.pids, os.getpid()]
    finally:
        venv.close()
    venv = make_vec_env([functools.partial(PidEnv, 2)] * 4, -1)  # one stepping process per core of this run's share
    try:
        assert len(getattr(venv, "pids", [])) == min(auto_env_workers(), 3)
    finally:
        venv.close()


def test_step_in_main_steps_its_chunk_between_step_async_and_step_wait():
    envs = [CountdownEnv(5) for _ in range(4)]
    venv = SubprocVecEnv([functools.partial(_same, env) for env in envs], 1, step_in_main=True)
    try:
        with pytest.raises(RuntimeError, match="step_async"):
            venv.step_wait()
        venv.reset(0)
        # envs 0-1 are copies in the worker; envs 2-3 are these objects, reset and stepped in this process
        assert [env.resets for env in envs] == [[], [], [2], [3]]
        venv.step_async(torch.zeros(4, 2, 1, dtype=torch.long))
        assert [env.t for env in envs] == [0, 0, 0, 0]  # nothing stepped in here yet
        out = venv.step_wait()
        assert [env.t for env in envs] == [0, 0, 1, 1]
        assert out.obs[:, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0]  # the worker's envs stepped too
    finally:
        venv.close()
    assert [env.closed for env in envs] == [False, False, True, True]
    with pytest.raises(EnvWorkerError, match="closed"):
        venv.step(torch.zeros(4, 2, 1, dtype=torch.long))


class _BrokenEnv:
    def __init__(self):
        raise RuntimeError("cannot build this env")


def test_an_env_the_calling_process_cannot_build_stops_the_workers():
    fns = [functools.partial(CountdownEnv, 2)] * 2 + [_BrokenEnv]  # envs 0-1 in the worker, env 2 in here
    try:
        SubprocVecEnv(fns, 1, step_in_main=True)
    except RuntimeError as error:  # while the error (and its traceback) is being handled
        assert "cannot build" in str(error)
        workers = [p for p in mp.active_children() if p.name.startswith("harl-env-worker")]
        assert not [p for p in workers if p.is_alive()]  # the worker was stopped, not left to the GC
    else:
        pytest.fail("building the env in the calling process should have failed")


@pytest.mark.parametrize(
    ("env", "overrides"),
    [
        ("mamujoco", {}),
        ("matrix", {}),
        ("mpe", {}),
        ("mpe", {"env.continuous_actions": True}),
        ("vmas", {}),
        ("vmas", {"env.scenario": "navigation"}),
    ],
)
def test_an_env_entrys_declared_action_type_is_the_built_envs(env, overrides):
    """`EnvEntry.action_type` (read before a run starts, to refuse options the actions rule out) tells the truth."""
    from harl.config import apply_overrides
    from harl.experiment import default_config
    from harl.registry import get_environment

    cfg = default_config("mappo", "nops", env)
    apply_overrides(cfg, overrides)
    entry = get_environment(env)
    built = entry.make(cfg.env, n_envs=1, seed=0, device=torch.device("cpu"))
    try:
        assert entry.action_type(cfg.env) == built.spec.action_type
    finally:
        built.close()


def test_device_staging_sends_what_the_device_needs_in_one_buffer():
    """The packing behind the one host-to-device copy per step (`DeviceStaging`; pinned and non-blocking on CUDA):
    every field comes back with its values, dtype and shape from one 8-byte aligned buffer, None is left out, and a
    new layout (here avail actions appearing) is planned afresh."""
    rng = np.random.default_rng(0)
    arrays = {
        "obs": rng.standard_normal((4, 3, 5)).astype(np.float32),
        "state": rng.standard_normal((4, 7)).astype(np.float32),
        "avail_actions": None,
        "reward": rng.standard_normal((4, 3)).astype(np.float32),
        "terminated": np.array([True, False, False, True]),
        "truncated": np.array([False, True, False, False]),
        "final_obs": rng.standard_normal((4, 3, 5)).astype(np.float32),
        "final_state": rng.standard_normal((4, 7)).astype(np.float32),
    }
    staging = DeviceStaging(torch.device("cpu"), pin=False)
    for avail in (None, rng.random((4, 3, 2)) > 0.5):
        arrays["avail_actions"] = avail
        out = staging.send(arrays)
        for name, array in arrays.items():
            if array is None:
                assert name not in out
            else:
                assert out[name].dtype == torch.from_numpy(array).dtype and torch.equal(
                    out[name], torch.from_numpy(array)
                )
        sizes = [-(-a.nbytes // 8) * 8 for a in arrays.values() if a is not None]
        assert staging._host.numel() == sum(sizes)  # one buffer for every field
