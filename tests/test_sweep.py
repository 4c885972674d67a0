"""Sweeps: a grid of tiny matrix runs, restarted (finished runs skipped, unfinished ones resumed)."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from harl import sweep_cli as sweep
from harl.cli import guarded
from harl.registry import ALGORITHMS
from harl.sweep import latest_step
from harl.utils.threads import available_cores

from .conftest import ROOT, read_progress, run_script

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
        ([*GRID, "--run.seeds", "2"], "--run.seeds is set by the sweep itself"),
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


SMALL = ["--n_rollout_threads", "2", "--episode_length", "10", "--eval_episodes", "1", "--n_eval_rollout_threads", "1"]
SMALL += ["--hidden_sizes", "8,8", "--progress_bar", "false"]


def small_grid(log_dir, algo: str, archs: str, seeds: int, steps: int, *extra: str) -> list[str]:
    """A tiny matrix sweep of `seeds` seeds per architecture, run to `steps` env steps."""
    argv = ["--algos", algo, "--archs", archs, "--env", "matrix", "--scenarios", "game=specialisation,n_agents=2"]
    return [*argv, "--seeds", str(seeds), *SMALL, "--log_dir", str(log_dir), "--num_env_steps", str(steps), *extra]


def sweep_logs(log_dir) -> dict[str, str]:
    """The sweep's console logs by file name."""
    return {log.name: log.read_text() for log in sorted((log_dir / "sweep_logs" / "sweep").glob("*.log"))}


def test_batch_seeds_trains_each_point_in_one_process_as_the_unbatched_sweep_does(tmp_path, capsys):
    """`--batch_seeds`: one process per architecture, the same run folders and final metrics as one process per
    seed; a finished batched sweep reruns nothing; a batch stopped early is resumed once, by one process."""
    assert guarded(sweep.main)(small_grid(tmp_path / "solo", "mappo", "nops,fups", 3, 40)) == 0
    capsys.readouterr()
    batched = tmp_path / "batched"
    assert guarded(sweep.main)(small_grid(batched, "mappo", "nops,fups", 3, 40, "--batch_seeds")) == 0
    out = capsys.readouterr().out
    point = "matrix-specialisation-2-mappo"
    assert f"batch  {point}-nops-seeds1-3: seeds 1, 2, 3 in one process (new)" in out
    assert "running 2 process(es) for 6 run(s)" in out
    assert list(sweep_logs(batched)) == [f"{point}-fups-seeds1-3.log", f"{point}-nops-seeds1-3.log"]
    assert all(text.count("$ train.py") == 1 and "--seeds 3" in text for text in sweep_logs(batched).values())
    folders = run_folders(batched)
    assert [(f.parent.parent.name, f.name.split("-")[1]) for f in folders] == [
        (f"mappo-{arch}", str(seed)) for arch in ("fups", "nops") for seed in (1, 2, 3)
    ]
    for folder, solo in zip(folders, run_folders(tmp_path / "solo"), strict=True):
        assert (folder / "batch.yaml").is_file() and latest_step(folder) == 40
        last, solo_last = read_progress(folder)[-1], read_progress(solo)[-1]
        assert last["env_steps"] == solo_last["env_steps"] == "40"
        for key, value in last.items():
            if key != "charts/SPS" and value != solo_last[key]:
                assert math.isclose(float(value), float(solo_last[key]), abs_tol=1e-5), (folder, key)

    assert guarded(sweep.main)(small_grid(batched, "mappo", "nops,fups", 3, 40, "--batch_seeds")) == 0
    out = capsys.readouterr().out
    assert out.count("skip ") == 6 and "nothing to run: every run" in out
    assert all(text.count("$ train.py") == 1 for text in sweep_logs(batched).values())

    assert guarded(sweep.main)(small_grid(batched, "mappo", "nops", 3, 80, "--batch_seeds")) == 0
    out = capsys.readouterr().out
    assert out.count("resume ") == 3 and "running 1 process(es) for 3 run(s)" in out
    assert f"batch  {point}-nops-seeds1-3: seeds 1, 2, 3 in one process (resume)" in out
    text = sweep_logs(batched)[f"{point}-nops-seeds1-3.log"]
    assert text.count("$ train.py") == 2 and text.count("$ train.py --resume") == 1
    assert run_folders(batched) == folders
    assert [latest_step(f) for f in folders] == [40, 40, 40, 80, 80, 80]


def test_batch_seeds_falls_back_to_one_process_per_seed_for_a_learner_that_cannot_batch(tmp_path, capsys, monkeypatch):
    """Read from the learner's registry declaration (every shipped learner batches seeds: one is declared not to)."""
    monkeypatch.setitem(ALGORITHMS, "hatrpo", dataclasses.replace(ALGORITHMS["hatrpo"], batched_seeds=False))
    argv = small_grid(tmp_path, "hatrpo", "nops", 2, 40, "--batch_seeds")
    assert guarded(sweep.main)(argv) == 0
    out = capsys.readouterr().out
    assert out.count("note: --batch_seeds: hatrpo trains one seed per process") == 1
    assert "running 2 process(es) for 2 run(s)" in out
    assert list(sweep_logs(tmp_path)) == [f"matrix-specialisation-2-hatrpo-nops-seed{seed}.log" for seed in (1, 2)]
    assert [latest_step(folder) for folder in run_folders(tmp_path)] == [40, 40]


def test_two_sweeps_at_once_train_each_seed_once(tmp_path):
    """Two sweeps started together on one folder split the seeds between them: each seed has exactly one run
    folder, and each launched process its own log."""
    argv = [sys.executable, str(ROOT / "examples" / "sweep.py"), *small_grid(tmp_path, "mappo", "nops", 2, 200)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sweeps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)]
    sweeps.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outs = [proc.communicate(timeout=300)[0] for proc in sweeps]
    assert [proc.returncode for proc in sweeps] == [0, 0], outs
    assert sum(out.count("start  ") for out in outs) == 2, outs
    folders = run_folders(tmp_path)
    assert sorted(f.name.split("-")[1] for f in folders) == ["1", "2"], outs
    assert all(latest_step(f) == 200 for f in folders)
    logs = sweep_logs(tmp_path)
    assert len(logs) == 2 and all(text.count("$ train.py") == 1 for text in logs.values()), logs


def test_help_says_which_options_pass_through_to_training():
    result = run_script("sweep.py", "--help")
    assert result.returncode == 0 and result.stderr == ""
    text = " ".join(result.stdout.split())
    assert text.startswith("usage: sweep.py") and sweep.PASSED_THROUGH in text
