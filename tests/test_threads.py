"""The thread policy: a run's share of the cores, less its env workers; workers single-threaded."""

from __future__ import annotations

import os

import pytest
import torch

from harl.errors import UserError
from harl.utils import threads
from harl.utils.threads import CONCURRENT_RUNS_ENV, WORKER_ENV, training_threads, worker_environment

from .conftest import TINY_MAMUJOCO, run_train


@pytest.mark.parametrize(
    ("cores", "runs", "workers", "expected"),
    [(64, 1, 0, 64), (64, 4, 0, 16), (64, 4, 3, 13), (2, 1, 1, 1), (2, 2, 0, 1), (8, 16, 0, 1)],
)
def test_training_threads(monkeypatch, cores, runs, workers, expected):
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    monkeypatch.setenv(CONCURRENT_RUNS_ENV, str(runs))
    assert training_threads(workers) == expected


@pytest.mark.parametrize(("cores", "runs", "expected"), [(64, 1, 63), (64, 4, 15), (2, 2, 0), (2, 1, 1), (1, 1, 0)])
def test_auto_env_workers_take_this_runs_share(monkeypatch, cores, runs, expected):
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    monkeypatch.setenv(CONCURRENT_RUNS_ENV, str(runs))
    assert threads.auto_env_workers() == expected


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_concurrent_runs_is_one_line(monkeypatch, value):
    monkeypatch.setenv(CONCURRENT_RUNS_ENV, value)
    with pytest.raises(UserError, match=CONCURRENT_RUNS_ENV):
        training_threads(0)


def test_worker_environment_is_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with worker_environment():
        assert all(os.environ[key] == value for key, value in WORKER_ENV.items())
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OMP_WAIT_POLICY" not in os.environ


def test_a_run_takes_its_share_less_its_env_workers(tmp_path, monkeypatch, capsys):
    """Through the CLI: 2 runs share the cores; one env worker steps beside the trainer."""
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setenv(CONCURRENT_RUNS_ENV, "2")
    before = torch.get_num_threads()
    try:
        args = list(TINY_MAMUJOCO)
        args[args.index("--n_workers") + 1] = "1"
        args[args.index("--n_rollout_threads") + 1] = "3"
        run_train(tmp_path, "--algo", "mappo", "--arch", "nops", "--env", "mamujoco", *args, "--num_env_steps", "60")
        assert "torch threads: 3 " in capsys.readouterr().out  # 8 cores / 2 runs - 1 worker
        run_train(
            tmp_path,
            "--algo",
            "mappo",
            "--arch",
            "nops",
            "--env",
            "matrix",
            "--torch_threads",
            "2",
            "--num_env_steps",
            "40",
        )
        assert "torch threads: 2 " in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def test_bad_concurrent_runs_through_the_cli_is_one_line_before_any_output(tmp_path, monkeypatch, capsys):
    from harl.cli import train

    monkeypatch.setenv(CONCURRENT_RUNS_ENV, "zero")
    assert train(["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--log_dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and CONCURRENT_RUNS_ENV in captured.err
