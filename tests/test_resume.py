"""Checkpoints: same-seed determinism, save→load→continue, and resuming after SIGKILL with logs that agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from harl.cli import train_main
from harl.utils.checkpoint import load_checkpoint

from .conftest import ROOT, TINY_MAMUJOCO, read_progress, run_train
from .test_run_safety import assert_logs_agree

MATRIX = [
    "--algo",
    "happo",
    "--arch",
    "nops",
    "--env",
    "matrix",
    "--n_rollout_threads",
    "10",
    "--eval_episodes",
    "4",
    "--n_eval_rollout_threads",
    "4",
]
VOLATILE = ("charts/SPS",)


def comparable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def test_same_seed_same_results(tmp_path):
    args = [
        "--algo",
        "mappo",
        "--arch",
        "nops",
        "--env",
        "mamujoco",
        *TINY_MAMUJOCO,
        "--episode_length",
        "20",
        "--num_env_steps",
        "120",
        "--seed",
        "5",
    ]
    first, second = run_train(tmp_path / "a", *args), run_train(tmp_path / "b", *args)
    assert comparable(read_progress(first)) == comparable(read_progress(second))
    a, b = load_checkpoint(first), load_checkpoint(second)
    for key, value in a["learner"]["actor"].items():
        assert torch.equal(value, b["learner"]["actor"][key]), key
    other = run_train(tmp_path / "c", *args[:-1], "6")
    assert comparable(read_progress(other)) != comparable(read_progress(first))


def test_env_worker_processes_do_not_change_results(tmp_path):
    """3 envs all in-process vs 1 worker stepping 2 of them beside the training process, which steps the third:
    the same seed gives the same run (env k is seeded with seed + k wherever it runs)."""
    tiny = list(TINY_MAMUJOCO)
    tiny[tiny.index("--n_rollout_threads") + 1] = "3"
    args = ["--algo", "mappo", "--arch", "nops", "--env", "mamujoco", *tiny]
    args += ["--episode_length", "20", "--num_env_steps", "180", "--seed", "3"]
    in_process = run_train(tmp_path / "a", *args)
    position = args.index("--n_workers") + 1
    with_worker = run_train(tmp_path / "b", *args[:position], "1", *args[position + 1 :])
    assert read_progress(with_worker) and comparable(read_progress(with_worker)) == comparable(
        read_progress(in_process)
    )


def test_save_load_continue(tmp_path):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "400", "--episode_length", "10", "--save_interval", "200")
    saved = load_checkpoint(run_dir)
    assert saved["runner"]["env_steps"] == 400 and saved["runner"]["iteration"] == 4
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "600"]) == 0
    resumed = load_checkpoint(run_dir)
    assert resumed["runner"]["env_steps"] == 600 and resumed["runner"]["iteration"] == 6
    steps = [int(row["env_steps"]) for row in read_progress(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == 600
    # the resumed learner continued from the saved weights and optimiser state
    assert any(not torch.equal(saved["learner"]["actor"][k], v) for k, v in resumed["learner"]["actor"].items())
    assert resumed["learner"]["actor_optimizer"]["state"]


def test_resume_after_sigkill(tmp_path):
    log_dir = tmp_path / "results"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "train.py"),
        *MATRIX,
        "--num_env_steps",
        "10000000",
        "--episode_length",
        "10",
        "--save_interval",
        "1000",
        "--eval_interval",
        "1000",
        "--log_dir",
        str(log_dir),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(log_dir.glob("*/*/*/*/seed-*/checkpoints/step_*.pt"))) < 2:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (run_dir,) = log_dir.glob("*/*/*/*/seed-*")
    killed_at = load_checkpoint(run_dir)["runner"]["env_steps"]
    assert killed_at >= 1000 and killed_at % 1000 == 0
    assert train_main(["--resume", str(run_dir), "--num_env_steps", str(killed_at + 500)]) == 0
    assert load_checkpoint(run_dir)["runner"]["env_steps"] == killed_at + 500
    rows = {int(row["env_steps"]): row for row in read_progress(run_dir)}
    assert max(rows) == killed_at + 500 and rows[killed_at]["eval/episode_return"] != ""
    assert_logs_agree(run_dir)  # tensorboard kept the evaluation at the checkpoint step, like the CSV
