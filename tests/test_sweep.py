"""Sweeps: a grid of tiny matrix runs, restarted (finished runs skipped, unfinished ones resumed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harl import sweep_cli as sweep
from harl.cli import guarded
from harl.sweep import latest_step
from harl.utils.threads import available_cores

from .conftest import ROOT

TINY = [
    "--env",
    "matrix",
    "--scenarios",
    "game=specialisation,n_agents=2",
    "--seeds",
    "1",
    "--n_rollout_threads",
    "10",
    "--eval_episodes",
    "4",
    "--n_eval_rollout_threads",
    "4",
    "--progress_bar",
    "false",
]


def run_folders(log_dir):
    return sorted(log_dir.glob("matrix/specialisation-2/*/sweep/seed-*"))


def test_local_sweep_skips_finished_runs_and_resumes_unfinished_ones(tmp_path, capsys):
    grid = ["--algos", "mappo", "--archs", "nops,fups", *TINY, "--log_dir", str(tmp_path), "--num_env_steps"]
    assert guarded(sweep.main)([*grid, "200", "--workers", "2"]) == 0
    folders = run_folders(tmp_path)
    assert [f.parent.parent.name for f in folders] == ["mappo-fups", "mappo-nops"]
    assert all(latest_step(f) == 200 for f in folders)
    logs = list((tmp_path / "sweep_logs" / "sweep").glob("*.log"))
    assert len(logs) == 2
    share = max(1, available_cores() // 2)  # 2 runs share the cores; matrix envs need no worker
    assert all(f"torch threads: {share} " in log.read_text() for log in logs)
    capsys.readouterr()

    assert guarded(sweep.main)(grid + ["200"]) == 0  # restart: everything finished
    out = capsys.readouterr().out
    assert out.count("skip ") == 2 and "nothing to run" in out

    assert guarded(sweep.main)(grid + ["400"]) == 0  # a larger budget: both resume in their folders
    out = capsys.readouterr().out
    assert out.count("resume ") == 2
    assert run_folders(tmp_path) == folders and all(latest_step(f) == 400 for f in folders)

    assert guarded(sweep.main)([*grid, "400", "--lr", "0.1"]) == 2  # changed settings, same experiment name
    assert "use another --exp_name" in capsys.readouterr().err


def test_dead_run_without_checkpoint_is_replaced(tmp_path, capsys):
    dead = tmp_path / "matrix/specialisation-2/mappo-nops/sweep/seed-1-20000101-000000"
    dead.mkdir(parents=True)
    (dead / "progress.csv").write_text("env_steps\n")
    argv = ["--algos", "mappo", "--archs", "nops", *TINY, "--log_dir", str(tmp_path), "--num_env_steps", "100"]
    assert guarded(sweep.main)(argv) == 0
    assert "removed" in capsys.readouterr().out
    (folder,) = run_folders(tmp_path)
    assert folder != dead and latest_step(folder) == 100


def test_a_sweep_leaves_runs_of_other_processes_alone(tmp_path, capsys):
    """A run another process is training (here: started by hand, no checkpoint yet) is neither deleted nor
    resumed nor duplicated; once it has stopped with a checkpoint, the sweep resumes it."""
    point = ["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--game", "specialisation", "--n_agents", "2"]
    point += ["--seed", "1", "--exp_name", "sweep", "--n_rollout_threads", "10", "--log_dir", str(tmp_path)]
    endless = ["--num_env_steps", "100000000", "--save_interval", "100000000", "--eval_interval", "0"]
    out = tmp_path / "train.out"
    with out.open("w") as console:
        live = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "train.py"), *point, *endless],
            stdout=console,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.time() + 120
        while "trainable parameters" not in out.read_text():
            assert live.poll() is None and time.time() < deadline, out.read_text()
            time.sleep(0.1)
        (folder,) = run_folders(tmp_path)
        assert latest_step(folder) is None
        argv = ["--algos", "mappo", "--archs", "nops", *TINY, "--log_dir", str(tmp_path), "--num_env_steps", "100"]
        assert guarded(sweep.main)(argv) == 0
        printed = capsys.readouterr().out
        assert f"busy   matrix-specialisation-2-mappo-nops-seed1: {folder} is being trained by process {live.pid}" in (
            printed
        )
        assert (
            "removed" not in printed and "nothing to run: 1 run(s) of the sweep are held by other processes" in printed
        )
        assert live.poll() is None and run_folders(tmp_path) == [folder]
    finally:
        live.send_signal(signal.SIGINT)
        assert live.wait(120) == 130
    stopped_at = latest_step(folder)
    assert stopped_at is not None
    assert guarded(sweep.main)([*argv[:-1], str(stopped_at + 100)]) == 0
    assert "resume " in capsys.readouterr().out
    assert run_folders(tmp_path) == [folder] and latest_step(folder) == stopped_at + 100


GRID = ["--algos", "mappo", "--archs", "nops", "--env", "matrix", "--seeds", "1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*GRID, "--backend", "slurm"], "unknown backend 'slurm'"),
        ([*GRID, "--seed", "3"], "--seed is set by the sweep itself"),
        (["--algos", "mapo", "--archs", "nops", "--env", "matrix", "--seeds", "1"], "unknown algorithm 'mapo'"),
        ([*GRID, "--lr_typo", "1"], "unknown config key 'lr_typo'"),
        ([*GRID, "--scenarios", "game="], "bad scenario"),
        ([*GRID, "--scenarios", "n_agents=2", "--n_agents", "3"], "--n_agents is given both"),
        (["--algos", "mappo", "--archs", "nops", "--env", "matrix", "--seeds", "x"], "--seeds expects"),
        (["--algos", "mappo", "--env", "matrix", "--seeds", "1"], "required: --archs"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    assert guarded(sweep.main)([*argv, "--log_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.optional
def test_ray_backend_on_a_local_instance(tmp_path, capsys):
    pytest.importorskip("ray")
    argv = [
        "--algos",
        "mappo",
        "--archs",
        "nops",
        *TINY,
        "--log_dir",
        str(tmp_path),
        "--num_env_steps",
        "100",
        "--backend",
        "ray",
        "--workers",
        "1",
    ]
    assert guarded(sweep.main)(argv) == 0
    (folder,) = run_folders(tmp_path)
    assert latest_step(folder) == 100
    assert guarded(sweep.main)(argv) == 0
    assert "nothing to run" in capsys.readouterr().out
