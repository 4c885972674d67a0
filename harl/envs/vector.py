"""Batching single `MultiAgentEnv`s into a `VecEnv`, in-process or in worker processes.

`SerialVecEnv` steps every env in the calling process. `SubprocVecEnv` splits the envs into
contiguous chunks, one per worker process and, with `step_in_main`, a last one the calling process
steps itself while the workers step theirs (instead of waiting idle); each step sends every worker
its chunk of actions as one numpy array and gets back one message of stacked numpy arrays. Both
share `_EnvGroup`, which steps a group of envs sequentially, auto-resets finished episodes and keeps
the per-env episode return and length, so single envs stay simple.

Seeding: `reset(seed)` seeds env k with `seed + k`; auto-resets after that pass `seed=None`, so
each env's own RNG continues and a run is reproducible from the initial seed alone. A batch of several seeds'
envs side by side (`seeds`, seed-major: E envs each) seeds env k of seed s with `seed + s + k`, as a solo run of
seed `seed + s` seeds its env k.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import signal
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final, NoReturn

import numpy as np
import torch

from harl.errors import EnvWorkerError, UserError
from harl.spec import EnvSpec, MultiAgentEnv, StepOutput, VecEnv
from harl.utils.threads import auto_env_workers, worker_environment

EnvFn = Callable[[], MultiAgentEnv]

# "forkserver": workers fork from a clean server process (never from a parent that already runs
# torch threads or a MuJoCo renderer), and the modules preloaded there are imported only once.
_MP_CONTEXT: Final = "forkserver"


@dataclass
class _Batch:
    """The numpy twin of `StepOutput` for a contiguous group of `n` envs."""

    obs: np.ndarray  # (n, n_agents, obs_dim_max) float32
    state: np.ndarray  # (n, state_dim) float32
    avail_actions: np.ndarray | None  # (n, n_agents, act_dim_max) bool
    reward: np.ndarray  # (n, n_agents) float32
    terminated: np.ndarray  # (n,) bool
    truncated: np.ndarray  # (n,) bool
    final_obs: np.ndarray  # (n, n_agents, obs_dim_max) float32
    final_state: np.ndarray  # (n, state_dim) float32
    episode_return: np.ndarray  # (n,) float32, NaN where not done
    episode_length: np.ndarray  # (n,) float32, 0 where not done
    info: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (n,) float32, NaN where not done

    @staticmethod
    def concatenate(batches: Sequence[_Batch]) -> _Batch:
        """Join the batches of consecutive env groups along the env dimension."""
        if len(batches) == 1:
            return batches[0]
        info = {}
        for key in dict.fromkeys(k for b in batches for k in b.info):
            info[key] = np.concatenate(
                [b.info.get(key, np.full(len(b.terminated), np.nan, np.float32)) for b in batches]
            )

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(b, name) for b in batches])

        return _Batch(
            obs=cat("obs"),
            state=cat("state"),
            avail_actions=None if batches[0].avail_actions is None else cat("avail_actions"),
            reward=cat("reward"),
            terminated=cat("terminated"),
            truncated=cat("truncated"),
            final_obs=cat("final_obs"),
            final_state=cat("final_state"),
            episode_return=cat("episode_return"),
            episode_length=cat("episode_length"),
            info=info,
        )

    def to_step_output(self, staging: DeviceStaging) -> StepOutput:
        """Wrap the arrays as CPU tensors (no copy); for another device, what it needs is sent there in one copy
        (`staging`), while the episode statistics and info, read on the host, stay there."""
        host = StepOutput(
            obs=torch.from_numpy(self.obs),
            state=torch.from_numpy(self.state),
            avail_actions=None if self.avail_actions is None else torch.from_numpy(self.avail_actions),
            reward=torch.from_numpy(self.reward),
            terminated=torch.from_numpy(self.terminated),
            truncated=torch.from_numpy(self.truncated),
            final_obs=torch.from_numpy(self.final_obs),
            final_state=torch.from_numpy(self.final_state),
            episode_return=torch.from_numpy(self.episode_return),
            episode_length=torch.from_numpy(self.episode_length),
            info={k: torch.from_numpy(v) for k, v in self.info.items()},
            any_truncated=bool(self.truncated.any()),  # numpy, on the host already
        )
        if staging.device.type == "cpu":
            return host
        sent = staging.send({name: getattr(self, name) for name in DeviceStaging.FIELDS})
        return dataclasses.replace(
            host,
            obs=sent["obs"],
            state=sent["state"],
            avail_actions=sent.get("avail_actions"),
            reward=sent["reward"],
            terminated=sent["terminated"],
            truncated=sent["truncated"],
            final_obs=sent["final_obs"],
            final_state=sent["final_state"],
        )


class DeviceStaging:
    """Sends the part of a step the training device needs (`FIELDS`) in one host-to-device copy: the arrays are
    packed into one host buffer (pinned on CUDA, each field at an 8-byte aligned offset) that is copied with
    `non_blocking`, and the device gets views of the copy. The buffer is reused step after step: before refilling
    it, the host waits for the previous copy (recorded as a CUDA event; long finished by then, as the step's
    actions were computed from its result), so a copy in flight is never overwritten.

    Args:
        device: the training device.
        pin: page-lock the host buffer (needed for copies that do not block the host; CUDA only).
    """

    FIELDS: Final = ("obs", "state", "avail_actions", "reward", "terminated", "truncated", "final_obs", "final_state")

    def __init__(self, device: torch.device, pin: bool | None = None) -> None:
        self.device = device
        self.pin = device.type == "cuda" if pin is None else pin
        self._key: tuple | None = None
        self._layout: list[tuple[str, int, int, torch.dtype, tuple[int, ...]]] = []  # name, offset, bytes, ...
        self._host = torch.empty(0, dtype=torch.uint8)
        self._copied: Any = None  # the CUDA event of the last copy

    def send(self, arrays: dict[str, np.ndarray | None]) -> dict[str, torch.Tensor]:
        """The given arrays (but those that are None) on the device, from one copy."""
        present = {name: array for name, array in arrays.items() if array is not None}
        key = tuple((name, array.dtype.str, array.shape) for name, array in present.items())
        if key != self._key:
            self._plan(present, key)
        elif self._copied is not None:
            self._copied.synchronize()  # the previous copy out of the host buffer is done
        packed = self._host.numpy()  # a view of the (pinned) host buffer
        for name, offset, size, _, _ in self._layout:
            packed[offset : offset + size] = present[name].reshape(-1).view(np.uint8)
        sent = self._host.to(self.device, non_blocking=self.pin)  # (bytes,) on the device
        if self.device.type == "cuda":
            self._copied = torch.cuda.Event()
            self._copied.record()
        return {
            name: sent[offset : offset + size].view(dtype).view(shape)
            for name, offset, size, dtype, shape in self._layout
        }

    def _plan(self, arrays: dict[str, np.ndarray], key: tuple) -> None:
        """Lay the fields out in a new host buffer (after any copy out of the old one is done)."""
        if self._copied is not None:
            self._copied.synchronize()
        self._layout, offset = [], 0
        for name, array in arrays.items():
            dtype = torch.from_numpy(array[:0]).dtype
            self._layout.append((name, offset, array.nbytes, dtype, tuple(array.shape)))
            offset += -(-array.nbytes // 8) * 8  # the next field 8-byte aligned
        self._host = torch.empty(offset, dtype=torch.uint8, pin_memory=self.pin)
        self._key = key


def _scalar(value: Any) -> float | None:
    """`value` as a float if it is a number (bool, int, float, numpy scalar or 0-d array), else None."""
    if isinstance(value, (bool, int, float, np.number, np.bool_)) or (
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf"
    ):
        return float(value)
    return None


class _EnvGroup:
    """Envs stepped one after another, with auto-reset and per-env episode bookkeeping.

    Used in-process by `SerialVecEnv` and inside every `SubprocVecEnv` worker.
    """

    def __init__(self, env_fns: Sequence[EnvFn]):
        self.envs = [fn() for fn in env_fns]
        self.spec: EnvSpec = self.envs[0].spec
        n = len(self.envs)
        self._returns = np.zeros(n, dtype=np.float64)  # (n,) team return of the running episodes
        self._lengths = np.zeros(n, dtype=np.int64)  # (n,) steps of the running episodes

    def reset(self, seeds: Sequence[int]) -> _Batch:
        """Reset env k with `seeds[k]`; returns zero rewards and no finished episodes."""
        results = [env.reset(seed) for seed, env in zip(seeds, self.envs, strict=True)]
        self._returns[:] = 0.0
        self._lengths[:] = 0
        n, n_agents = len(self.envs), self.spec.n_agents
        obs = np.stack([r[0] for r in results]).astype(np.float32, copy=False)
        state = np.stack([r[1] for r in results]).astype(np.float32, copy=False)
        no = np.zeros(n, dtype=bool)
        return _Batch(
            obs=obs,
            state=state,
            avail_actions=None if results[0][2] is None else np.stack([r[2] for r in results]).astype(bool),
            reward=np.zeros((n, n_agents), dtype=np.float32),
            terminated=no,
            truncated=no.copy(),
            final_obs=obs.copy(),
            final_state=state.copy(),
            episode_return=np.full(n, np.nan, dtype=np.float32),
            episode_length=np.zeros(n, dtype=np.float32),
        )

    def step(self, actions: np.ndarray) -> _Batch:
        """Step every env with its actions (n, n_agents, action_shape); reset the finished ones (seed None)."""
        n = len(self.envs)
        obs, state, avail, reward, final_obs, final_state = [], [], [], [], [], []
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        episode_return = np.full(n, np.nan, dtype=np.float32)
        episode_length = np.zeros(n, dtype=np.float32)
        info: dict[str, np.ndarray] = {}
        for k, env in enumerate(self.envs):
            o, s, av, r, term, trunc, step_info = env.step(actions[k])
            self._returns[k] += float(np.mean(r))
            self._lengths[k] += 1
            final_obs.append(o)
            final_state.append(s)
            reward.append(r)
            if term or trunc:
                terminated[k], truncated[k] = bool(term), bool(trunc) and not term
                episode_return[k] = self._returns[k]
                episode_length[k] = self._lengths[k]
                for key, value in step_info.items():
                    number = _scalar(value)
                    if number is not None:
                        info.setdefault(key, np.full(n, np.nan, dtype=np.float32))[k] = number
                self._returns[k] = 0.0
                self._lengths[k] = 0
                o, s, av = env.reset(None)
            obs.append(o)
            state.append(s)
            avail.append(av)
        return _Batch(
            obs=np.stack(obs).astype(np.float32, copy=False),
            state=np.stack(state).astype(np.float32, copy=False),
            avail_actions=None if avail[0] is None else np.stack(avail).astype(bool),
            reward=np.stack(reward).astype(np.float32, copy=False),
            terminated=terminated,
            truncated=truncated,
            final_obs=np.stack(final_obs).astype(np.float32, copy=False),
            final_state=np.stack(final_state).astype(np.float32, copy=False),
            episode_return=episode_return,
            episode_length=episode_length,
            info=info,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _actions_to_numpy(actions: torch.Tensor, n_envs: int, n_agents: int) -> np.ndarray:
    """(n_envs, n_agents, action_shape) tensor on any device -> numpy array on the CPU."""
    if tuple(actions.shape[:2]) != (n_envs, n_agents):
        raise ValueError(f"actions must have shape ({n_envs}, {n_agents}, action_shape), got {tuple(actions.shape)}")
    return actions.detach().cpu().numpy()


class SerialVecEnv:
    """Steps `len(env_fns)` envs one after another in the calling process.

    Args:
        env_fns: callables building one `MultiAgentEnv` each.
        device: where the returned tensors live.
    """

    def __init__(self, env_fns: Sequence[EnvFn], device: torch.device | str = "cpu", seeds: int = 1):
        if not env_fns:
            raise ValueError("SerialVecEnv needs at least one env")
        self._group = _EnvGroup(env_fns)
        self.spec = self._group.spec
        self.n_envs = len(env_fns)
        self.n_workers = 0
        self.device = torch.device(device)
        self._staging = DeviceStaging(self.device)
        self._offsets = seed_offsets(self.n_envs, seeds)
        self._closed = False

    def reset(self, seed: int) -> StepOutput:
        """Reset env k with `seed + k` (of a batch of seeds: see the module's docstring)."""
        return self._group.reset([seed + offset for offset in self._offsets]).to_step_output(self._staging)

    def step(self, actions: torch.Tensor) -> StepOutput:
        """Step with actions (n_envs, n_agents, action_shape), auto-resetting finished episodes."""
        batch = self._group.step(_actions_to_numpy(actions, self.n_envs, self.spec.n_agents))
        return batch.to_step_output(self._staging)

    def render(self) -> None:
        """Render env 0."""
        self._group.envs[0].render()

    def close(self) -> None:
        """Close every env (idempotent)."""
        if not self._closed:
            self._closed = True
            self._group.close()


def _worker(conn: Connection, env_fns: Sequence[EnvFn]) -> None:
    """Worker process loop: build the envs, then answer ("reset", seed) / ("step", actions) / ("close", None).

    Every answer is ("ok", payload) or, once, ("error", traceback text) before the worker exits.
    """
    # Ctrl-C and a cluster's SIGTERM to the whole process group are handled by the parent, which checkpoints
    # and then closes the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    group = None
    try:
        group = _EnvGroup(env_fns)
        conn.send(("ok", group.spec))
        while True:
            try:
                command, data = conn.recv()
            except EOFError:  # the parent is gone
                return
            if command == "step":
                conn.send(("ok", group.step(data)))
            elif command == "reset":
                conn.send(("ok", group.reset(data)))
            elif command == "close":
                return
            else:
                raise ValueError(f"unknown worker command {command!r}")
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        if group is not None:
            group.close()
        conn.close()


def _shutdown(processes: list[BaseProcess], conns: list[Connection]) -> None:
    """Ask the workers to exit, then terminate (and finally kill) the ones still running."""
    for conn, proc in zip(conns, processes, strict=True):
        if proc.is_alive():
            try:
                conn.send(("close", None))
            except OSError:
                pass
    deadline = time.monotonic() + 2.0
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
    for conn in conns:
        conn.close()


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            return f"died with exit code {exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"died with exit code {exitcode}"
    return f"exited with exit code {exitcode}"


class SubprocVecEnv:
    """Steps `len(env_fns)` envs in `n_workers` worker processes, each owning a contiguous chunk of envs.

    Each call sends one message per worker (its chunk of actions as one numpy array) and receives
    one message per worker (stacked numpy arrays); the results are joined and turned into tensors
    in the parent. A worker that dies, raises or stops answering for `timeout` seconds makes the
    call raise `EnvWorkerError` (after closing every worker) instead of hanging.

    With `step_in_main`, the envs are split into `n_workers + 1` equal chunks and the calling process
    steps the last one itself, in `step_wait` (after `step_async` has sent the workers theirs, and after
    whatever the caller computes in between): one more core's worth of stepping, and no process
    switch for that chunk. Env k is seeded with `seed + k` wherever it runs, so results do not depend
    on the split.

    Args:
        env_fns: picklable callables building one `MultiAgentEnv` each (e.g. `functools.partial`
            of a module-level class), run inside the workers.
        n_workers: number of worker processes (at most `len(env_fns)`, or `len(env_fns) - 1` with
            `step_in_main`).
        device: where the returned tensors live.
        timeout: seconds to wait for a worker's answer before declaring it hung.
        step_in_main: the calling process steps a chunk of the envs too.
        seeds: the seeds whose envs lie side by side (see the module's docstring).
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFn],
        n_workers: int,
        device: torch.device | str = "cpu",
        timeout: float = 300.0,
        step_in_main: bool = False,
        seeds: int = 1,
    ):
        most = len(env_fns) - 1 if step_in_main else len(env_fns)
        if not 1 <= n_workers <= most:
            raise ValueError(f"n_workers must be in [1, {most}], got {n_workers}")
        self.n_envs = len(env_fns)
        self.n_workers = n_workers
        self.device = torch.device(device)
        self._staging = DeviceStaging(self.device)
        self._offsets = seed_offsets(self.n_envs, seeds)
        self._timeout = timeout
        n_chunks = n_workers + 1 if step_in_main else n_workers
        bounds = np.linspace(0, self.n_envs, n_chunks + 1).round().astype(int).tolist()
        chunks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._slices = chunks[:n_workers]  # each worker's envs
        self._main_slice = chunks[n_workers] if step_in_main else None  # the calling process's envs
        self._main_group: _EnvGroup | None = None
        self._main_actions: np.ndarray | None = None  # (n_main, n_agents, action_shape), sent by step_async
        ctx = mp.get_context(_MP_CONTEXT)
        ctx.set_forkserver_preload(["__main__", __name__])
        self._conns: list[Connection] = []
        self._processes: list[BaseProcess] = []
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._conns)
        for index, chunk in enumerate(self._slices):
            parent_conn, child_conn = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child_conn, list(env_fns[chunk])), name=f"harl-env-worker-{index}", daemon=True
            )
            with worker_environment():  # one thread per worker, set before it (or the forkserver) imports torch
                proc.start()
            child_conn.close()
            self._conns.append(parent_conn)
            self._processes.append(proc)
        if self._main_slice is not None:  # built while the workers build theirs
            try:
                self._main_group = _EnvGroup(env_fns[self._main_slice])
            except BaseException:
                self.close()  # no workers left behind
                raise
        specs = [self._receive(i) for i in range(n_workers)]
        self.spec: EnvSpec = specs[0]

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the workers."""
        return [proc.pid for proc in self._processes]

    def _fail(self, message: str) -> NoReturn:
        self.close()
        raise EnvWorkerError(message)

    def _send(self, index: int, message: tuple[str, Any]) -> None:
        try:
            self._conns[index].send(message)
        except OSError:
            proc = self._processes[index]
            proc.join(1.0)
            self._fail(f"env worker {index} (pid {proc.pid}) {_describe_exit(proc.exitcode)}")

    def _receive(self, index: int) -> Any:
        """Wait for worker `index`'s answer, checking that it is still alive; raise EnvWorkerError otherwise."""
        conn, proc = self._conns[index], self._processes[index]
        deadline = time.monotonic() + self._timeout
        while not conn.poll(1.0):
            if not proc.is_alive() and not conn.poll(0):
                proc.join(1.0)
                self._fail(f"env worker {index} (pid {proc.pid}) {_describe_exit(proc.exitcode)}")
            if time.monotonic() > deadline:
                self._fail(f"env worker {index} (pid {proc.pid}) did not answer within {self._timeout:g} s")
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            proc.join(1.0)
            self._fail(f"env worker {index} (pid {proc.pid}) {_describe_exit(proc.exitcode)}")
        if status == "error":
            self._fail(f"env worker {index} (pid {proc.pid}) raised an exception:\n{payload}")
        return payload

    def _check_open(self) -> None:
        if self._closed:
            raise EnvWorkerError("the vectorised environment is closed")

    def reset(self, seed: int) -> StepOutput:
        """Reset env k with `seed + k` (of a batch of seeds: see the module's docstring)."""
        self._check_open()
        seeds = [seed + offset for offset in self._offsets]
        for index, chunk in enumerate(self._slices):
            self._send(index, ("reset", seeds[chunk]))
        main = [] if self._main_group is None else [self._main_group.reset(seeds[self._main_slice])]
        return self._join(main)

    def step(self, actions: torch.Tensor) -> StepOutput:
        """Step with actions (n_envs, n_agents, action_shape), auto-resetting finished episodes."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: torch.Tensor) -> None:
        """Send the actions to the workers and return at once (the caller may compute meanwhile)."""
        self._check_open()
        acts = _actions_to_numpy(actions, self.n_envs, self.spec.n_agents)
        for index, chunk in enumerate(self._slices):
            self._send(index, ("step", acts[chunk]))
        if self._main_slice is not None:
            self._main_actions = acts[self._main_slice]

    def step_wait(self) -> StepOutput:
        """Step the calling process's own chunk (with `step_in_main`), then collect the workers' results of
        the last `step_async`."""
        main = []
        if self._main_group is not None:
            if self._main_actions is None:
                raise RuntimeError("step_wait() without a step_async() before it")
            actions, self._main_actions = self._main_actions, None
            main = [self._main_group.step(actions)]
        return self._join(main)

    def _join(self, main: list[_Batch]) -> StepOutput:
        """The workers' answers, in env order, followed by the calling process's batch, as one StepOutput."""
        batches = [self._receive(index) for index in range(len(self._processes))]
        return _Batch.concatenate(batches + main).to_step_output(self._staging)

    def render(self) -> None:
        raise UserError("rendering needs in-process environments: use --n_workers 0")

    def close(self) -> None:
        """Stop every worker and close the calling process's envs (idempotent; workers also stop at exit)."""
        if not self._closed:
            self._closed = True
            self._finalizer()
            if self._main_group is not None:
                self._main_group.close()


def seed_offsets(n_envs: int, seeds: int) -> list[int]:
    """What `reset(seed)` adds to `seed` for each of `n_envs` envs of `seeds` seeds side by side (seed-major): env k
    of seed s gets s + k, as a solo run of seed `seed + s` seeds its env k (one seed: env k gets k)."""
    per_seed = n_envs // seeds
    return [index // per_seed + index % per_seed for index in range(n_envs)]


def make_vec_env(
    env_fns: Sequence[EnvFn], n_workers: int, device: torch.device | str = "cpu", seeds: int = 1
) -> VecEnv:
    """Batch `env_fns` into a `SerialVecEnv` (n_workers 0) or a `SubprocVecEnv` whose calling process steps
    an equal share of the envs beside its workers.

    Args:
        env_fns: callables building one `MultiAgentEnv` each (picklable when n_workers != 0).
        n_workers: 0: in-process; k > 0: `min(k, n_envs - 1)` worker processes, the calling process
            stepping a chunk as large as each worker's; -1: one stepping process per core of this run's share
            (`harl.utils.threads`), the calling process being one of them (so share - 1 workers; in-process on
            one core or for one env).
        device: where the returned tensors live.
        seeds: the seeds whose envs lie side by side (`--seeds`), each seeding its envs as its solo run does.
    """
    n_envs = len(env_fns)
    if n_workers < -1:
        raise ValueError(f"n_workers must be -1, 0 or positive, got {n_workers}")
    if n_workers == -1:
        n_workers = auto_env_workers()
    n_workers = min(n_workers, n_envs - 1)
    if n_workers <= 0:
        return SerialVecEnv(env_fns, device, seeds)
    return SubprocVecEnv(env_fns, n_workers, device, step_in_main=True, seeds=seeds)
