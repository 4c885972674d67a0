"""Sweeps: a grid of tiny matrix runs, restarted (finished runs skipped, unfinished ones resumed)."""

from __future__ import annotations

import pytest

from harl import sweep_cli as sweep
from harl.cli import guarded
from harl.sweep import latest_step

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
    assert len(list((tmp_path / "sweep_logs" / "sweep").glob("*.log"))) == 2
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
