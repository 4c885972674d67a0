"""Shared helpers: drive the CLI in-process (fast) or as a subprocess (exit codes, signals)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harl.cli import train_main

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)

# The devices that tests taking the `device` fixture run on: the CPU always (CI), CUDA wherever a GPU exists.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

# A tiny budget for MaMuJoCo smoke runs (on-policy keys; off-policy tests add their own).
TINY_MAMUJOCO = [
    "--episode_limit",
    "25",
    "--n_rollout_threads",
    "2",
    "--n_workers",
    "0",
    "--eval_episodes",
    "1",
    "--n_eval_rollout_threads",
    "1",
    "--hidden_sizes",
    "16,16",
]


def run_train(tmp_path: Path, *args: str) -> Path:
    """Run `train.py` in-process with `--log_dir tmp_path/results`; return the (single new) run folder."""
    log_dir = tmp_path / "results"
    before = set(log_dir.glob("*/*/*/*/seed-*")) if log_dir.exists() else set()
    assert train_main([*args, "--log_dir", str(log_dir)]) == 0
    (run_dir,) = set(log_dir.glob("*/*/*/*/seed-*")) - before
    return run_dir


def run_script(script: str, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run an examples/ script in a subprocess (text output captured)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=kwargs.pop("cwd", ROOT),
        **kwargs,
    )


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with (Path(run_dir) / "progress.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def train_run(tmp_path):
    return lambda *args: run_train(tmp_path, *args)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each available device in turn (`DEVICES`), as the `--device` value a run gets."""
    return request.param
