"""How many threads a run's processes use, so that runs and their env workers never oversubscribe the cores.

The rule: a run's share of the machine is the cores this process may run on (`os.sched_getaffinity`, so
`taskset`, cgroups' cpusets and schedulers' CPU masks count) divided by the runs sharing them
(`HARL_CONCURRENT_RUNS`, which `harl-sweep --workers K` sets to K for its runs; 1 otherwise). Env worker
processes are single-threaded (`worker_environment`); the training process takes the rest of the share,
at least one thread:

    torch threads = max(1, cores // concurrent runs - env workers)

`--torch_threads N` overrides it. One run on a 64-core machine with in-process envs gets 64 threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from harl.errors import UserError, shown

CONCURRENT_RUNS_ENV = "HARL_CONCURRENT_RUNS"

WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",  # idle OpenMP threads sleep instead of spinning on a barrier
}
"""Environment of env worker processes, set before they import torch: one thread each, none spinning."""


def available_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def concurrent_runs() -> int:
    """How many runs share this machine's cores (`HARL_CONCURRENT_RUNS`, default 1)."""
    text = os.environ.get(CONCURRENT_RUNS_ENV, "1")
    try:
        runs = int(text)
    except ValueError:
        runs = 0
    if runs < 1:
        raise UserError(f"{CONCURRENT_RUNS_ENV}={shown(text)}: expected a positive number of runs sharing the machine")
    return runs


def auto_env_workers() -> int:
    """Env workers for `--n_workers -1`: one stepping process per core of this run's share, the training
    process being one of them."""
    return max(0, available_cores() // concurrent_runs() - 1)


def training_threads(env_workers: int) -> int:
    """Torch intra-op threads of a training process whose envs are stepped by `env_workers` worker processes."""
    return max(1, available_cores() // concurrent_runs() - env_workers)


@contextmanager
def worker_environment() -> Iterator[None]:
    """`WORKER_ENV` in `os.environ` while worker processes (or the forkserver they fork from) start."""
    saved = {key: os.environ.get(key) for key in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
