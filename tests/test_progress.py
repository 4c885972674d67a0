"""What a person watching `train.py` sees: plain progress lines (env steps, SPS, ETA, phase) when no bar is shown,
the tqdm bar on a terminal, and the end-of-run summary naming the run folder and its learning curve."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from .conftest import ROOT, TINY_MAMUJOCO, run_script

MATRIX = ["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--n_rollout_threads", "10", "--eval_episodes", "5"]
LINE = re.compile(r"^progress: ([\d,]+)/([\d,]+) env steps \(\d+%\) \| (SPS -|[\d,]+ SPS) \| ETA \S+ \| elapsed \S+")


def progress_steps(stdout: str) -> list[int]:
    """The env steps of every plain progress line of the training loop."""
    return [int(m[1].replace(",", "")) for line in stdout.splitlines() if (m := LINE.match(line))]


def summary_folder(stdout: str) -> Path:
    """The run folder the summary names (after its `==== training finished` header)."""
    after = stdout[stdout.index("==== training finished: ") :]
    line = next(x for x in after.splitlines() if x.startswith("run folder: "))
    return Path(line.removeprefix("run folder: "))


def test_plain_progress_lines_and_summary_when_stdout_is_not_a_terminal(tmp_path):
    result = run_script(
        "train.py",
        *MATRIX,
        "--num_env_steps",
        "2000",
        "--eval_interval",
        "1000",
        "--progress_interval",
        "0.05",
        "--log_dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    steps = progress_steps(result.stdout)
    assert steps[0] == 0 and len(steps) >= 2 and steps == sorted(steps), result.stdout  # first line at once
    lines = result.stdout.splitlines()
    loop_start = next(k for k, line in enumerate(lines) if LINE.match(line))
    assert not any(line.startswith("progress: starting up") for line in lines[loop_start:])
    assert "step/s" not in result.stderr  # no bar: stderr is not a terminal
    summary = result.stdout[result.stdout.index("==== training finished: 2,000 env steps in ") :].splitlines()
    assert re.fullmatch(r"final eval return: \S+ at 2,000 env steps \(first eval: \S+ at 1,000\)", summary[1])
    run_dir = summary_folder(result.stdout)
    assert run_dir.parent.parent.parent.parent.parent == tmp_path and (run_dir / "progress.csv").is_file()
    assert "  checkpoints: checkpoints/step_2000.pt (the latest)" in summary
    assert f"  logs: tb/ (tensorboard --logdir {run_dir / 'tb'}) and progress.csv" in summary
    if importlib.util.find_spec("matplotlib") is not None:
        assert "  learning curve: learning_curve.png" in summary
        assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not (run_dir / "learning_curve.png").exists()


def test_summary_without_matplotlib_says_so_and_the_run_succeeds(tmp_path):
    code = "import sys; sys.modules['matplotlib'] = None; from harl.cli import train; sys.exit(train())"
    result = subprocess.run(
        [sys.executable, "-c", code, *MATRIX, "--num_env_steps", "200", "--log_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    curve = "  learning curve: not drawn: matplotlib is not installed (pip install 'harl-hypermarl[research]')"
    assert curve in result.stdout.splitlines()
    assert not (summary_folder(result.stdout) / "learning_curve.png").exists()


def test_off_policy_warmup_shows_as_its_own_phase(tmp_path):
    result = run_script(
        "train.py",
        *("--algo", "hasac", "--arch", "nops", "--env", "mamujoco", *TINY_MAMUJOCO),
        *("--num_env_steps", "120", "--warmup_steps", "80", "--train_interval", "10", "--batch_size", "16"),
        *("--eval_interval", "0", "--progress_interval", "0.05", "--log_dir", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    first = next(line for line in result.stdout.splitlines() if LINE.match(line))
    assert first.startswith("progress: 0/120 env steps (0%) | SPS - | ETA - | elapsed ")
    assert first.endswith(" | warm-up: random actions until 80 env steps")
    assert "==== training finished: 120 env steps" in result.stdout


def test_progress_interval_zero_prints_no_lines_and_negative_is_refused(tmp_path):
    quiet = run_script(
        "train.py", *MATRIX, "--num_env_steps", "200", "--progress_interval", "0", "--log_dir", str(tmp_path)
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "progress: " not in quiet.stdout and "==== training finished: 200 env steps" in quiet.stdout
    bad = run_script("train.py", *MATRIX, "--progress_interval", "-1", "--log_dir", str(tmp_path / "bad"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: run.progress_interval must be >= 0 (0: no plain progress lines), got -1.0"
    ]


def run_on_terminal(tmp_path: Path, *args: str) -> tuple[str, str]:
    """`train.py` with stderr on a pseudo-terminal; returns (stdout, what the terminal showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows, 120 columns
    stdout_path = tmp_path / "stdout.txt"
    with stdout_path.open("w") as stdout:  # a file, not a pipe: nothing blocks while the terminal is read
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "train.py"), *args, "--log_dir", str(tmp_path / "results")],
            stdout=stdout,
            stderr=follower,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=300) == 0, shown.decode(errors="replace")
    os.close(leader)
    return stdout_path.read_text(), shown.decode(errors="replace")


@pytest.mark.parametrize("bar", [True, False])
def test_terminal_shows_the_bar_unless_progress_bar_is_false(tmp_path, bar):
    stdout, terminal = run_on_terminal(
        tmp_path, *MATRIX, "--num_env_steps", "2000", "--progress_bar", str(bar).lower(), "--progress_interval", "0.05"
    )
    assert ("2000/2000" in terminal) is bar
    assert (progress_steps(stdout) == []) is bar
    assert "==== training finished: 2,000 env steps" in stdout
