"""Runs never lose or mix work: one writer per run folder, a checkpoint on SIGINT/SIGTERM, resume that leaves a
run intact when it fails, logs that agree, safe checkpoint loading and one-line errors for bad paths."""

from __future__ import annotations

import errno
import io
import itertools
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.summary.writer.record_writer import RecordWriter

from harl.cli import evaluate_cli, train
from harl.utils.checkpoint import load_checkpoint
from harl.utils.logger import CSV_ALIASES

from .conftest import ROOT, TINY_MAMUJOCO, read_progress, run_train

ALGO = ["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--eval_episodes", "4", "--n_eval_rollout_threads", "4"]
MATRIX = [*ALGO, "--n_rollout_threads", "10", "--episode_length", "10"]


def endless(save_interval: int = 100_000_000) -> list[str]:
    """A budget the test never reaches; no periodic checkpoint or evaluation unless asked."""
    return ["--num_env_steps", "100000000", "--save_interval", str(save_interval), "--eval_interval", "0"]


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert captured.out == "", captured.out  # nothing printed before the error
    return err


class Started:
    """A `train.py` subprocess with its console output in files."""

    def __init__(self, tmp_path: Path, args: list[str], **popen) -> None:
        self.out, self.err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "examples" / "train.py"), *args], stdout=out, stderr=err, env=env, **popen
            )

    def wait_for(self, condition, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not condition():
            assert self.proc.poll() is None, self.err.read_text()
            assert time.time() < deadline, "timed out"
            time.sleep(0.1)

    def run_dir(self) -> Path:
        self.wait_for(lambda: "run folder: " in self.out.read_text())
        line = next(x for x in self.out.read_text().splitlines() if x.startswith("run folder: "))
        return Path(line.removeprefix("run folder: "))

    def finish(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def csv_steps(run_dir: Path) -> list[int]:
    return [int(row["env_steps"]) for row in read_progress(run_dir)]


def assert_logs_agree(run_dir: Path) -> None:
    """CSV steps unique and increasing; every tensorboard scalar equals the CSV cell at the same step and back."""
    rows = read_progress(run_dir)
    steps = [int(row["env_steps"]) for row in rows]
    assert steps == sorted(set(steps)), steps
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    assert tags
    tb_steps = set()
    for tag in tags:
        column = CSV_ALIASES.get(tag, tag)
        from_tb = {e.step: e.value for e in events.Scalars(tag)}
        from_csv = {
            int(row["env_steps"]): float(row[column])
            for row in rows
            if row.get(column) not in ("", None) and math.isfinite(float(row[column]))
        }
        assert sorted(from_tb) == sorted(from_csv), tag
        for step, value in from_csv.items():
            assert from_tb[step] == pytest.approx(value, rel=1e-5, abs=1e-6), (tag, step)
        tb_steps |= set(from_tb)
    assert sorted(tb_steps) == steps


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_checkpoints_the_current_step(signum, status, tmp_path):
    log_dir = tmp_path / "results"
    run = Started(tmp_path, [*MATRIX, *endless(), "--log_dir", str(log_dir)])
    run_dir = run.run_dir()
    out = run.out.read_text()
    assert out.index("run folder: ") < out.index("trainable parameters")  # printed before training
    run.wait_for(lambda: (run_dir / "progress.csv").exists() and len(read_progress(run_dir)) >= 3)
    run.proc.send_signal(signum)
    assert run.finish() == status
    (line,) = run.err.read_text().strip().splitlines()
    stopped_at = load_checkpoint(run_dir)["runner"]["env_steps"]
    assert stopped_at > 0 and stopped_at == csv_steps(run_dir)[-1]  # the step reached, no periodic save
    assert line == (
        f"interrupted by {signal.Signals(signum).name} at {stopped_at} env steps: saved "
        f"{run_dir / 'checkpoints' / f'step_{stopped_at}.pt'}; continue with --resume {run_dir}"
    )
    assert train(["--resume", str(run_dir), "--num_env_steps", str(stopped_at + 300)]) == 0
    assert load_checkpoint(run_dir)["runner"]["env_steps"] == stopped_at + 300
    assert csv_steps(run_dir)[-1] == stopped_at + 300
    assert_logs_agree(run_dir)


def test_sigterm_to_the_process_group_with_env_workers(tmp_path):
    """A cluster signals every process of the job: env workers keep stepping until the trainer has checkpointed."""
    args = ["--algo", "mappo", "--arch", "nops", "--env", "mamujoco", *TINY_MAMUJOCO, "--episode_length", "20"]
    position = args.index("--n_workers") + 1
    args[position] = "1"
    run = Started(tmp_path, [*args, *endless(), "--log_dir", str(tmp_path / "results")], start_new_session=True)
    run_dir = run.run_dir()
    run.wait_for(lambda: (run_dir / "progress.csv").exists() and len(read_progress(run_dir)) >= 3)
    os.killpg(run.proc.pid, signal.SIGTERM)
    assert run.finish() == 143
    assert "interrupted by SIGTERM" in run.err.read_text() and "Traceback" not in run.err.read_text()
    stopped_at = load_checkpoint(run_dir)["runner"]["env_steps"]
    assert stopped_at == csv_steps(run_dir)[-1]
    assert train(["--resume", str(run_dir), "--num_env_steps", str(stopped_at + 40)]) == 0
    assert csv_steps(run_dir)[-1] == stopped_at + 40


def test_a_second_signal_exits_at_once(tmp_path):
    """The first signal waits for the end of the iteration (several seconds here); the second does not."""
    slow = ["--n_rollout_threads", "2000", "--episode_length", "100"]
    run = Started(tmp_path, [*ALGO, *slow, *endless(), "--log_dir", str(tmp_path / "results")])
    run_dir = run.run_dir()
    run.wait_for(lambda: "trainable parameters" in run.out.read_text())
    run.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert run.proc.poll() is None  # still finishing its iteration
    sent = time.time()
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert time.time() - sent < 5
    (line,) = run.err.read_text().strip().splitlines()
    # at 0 env steps, or at the end of the first iteration if the first signal came as it was ending
    assert re.match(r"stopped at once by a second SIGINT at \d+ env steps;", line) and str(run_dir) in line
    assert not list((run_dir / "checkpoints").glob("step_*.pt"))


def test_one_writer_per_run_folder(tmp_path, capsys):
    log_dir = tmp_path / "results"
    run = Started(tmp_path, [*MATRIX, *endless(save_interval=500), "--log_dir", str(log_dir)])
    run_dir = run.run_dir()
    run.wait_for(lambda: (run_dir / "checkpoints" / "step_500.pt").exists())
    assert train(["--resume", str(run_dir)]) == 2
    assert f"{run_dir} is in use by process {run.proc.pid}" in one_line_error(capsys)
    run.proc.send_signal(signal.SIGKILL)  # the kernel releases the lock of a killed run
    run.finish()
    killed_at = load_checkpoint(run_dir)["runner"]["env_steps"]
    assert train(["--resume", str(run_dir), "--num_env_steps", str(killed_at + 200)]) == 0
    assert csv_steps(run_dir)[-1] == killed_at + 200
    assert_logs_agree(run_dir)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "run.lock"
    }


def test_a_failed_resume_leaves_the_run_intact(tmp_path, capsys):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "300", "--hidden_sizes", "16,16")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert train(["--resume", str(run_dir), "--num_env_steps", "500", "--hidden_sizes", "32,32"]) == 2
    err = one_line_error(capsys)
    assert "was made with mappo/nops on matrix, 4 agents" in err and "hidden sizes [16, 16]" in err
    assert "this run asks for mappo/nops on matrix" in err and "hidden sizes [32, 32]" in err
    assert err.endswith("(differing: model.hidden_sizes [16, 16] vs [32, 32])")
    assert snapshot(run_dir) == before
    assert train(["--resume", str(run_dir), "--num_env_steps", "500"]) == 0
    assert csv_steps(run_dir)[-1] == 500


def test_corrupt_newest_checkpoint_falls_back_to_an_older_one(tmp_path, capsys):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "400", "--save_interval", "100")
    checkpoints = run_dir / "checkpoints"
    newest = checkpoints / "step_400.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    stale = checkpoints / ".step_500.pt.tmp"  # left by a kill during a save
    stale.write_bytes(b"half a checkpoint")
    capsys.readouterr()
    assert evaluate_cli(["--checkpoint", str(run_dir), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "note: step_400.pt unreadable" in out and "using step_300.pt instead, 100 env steps lost" in out
    assert train(["--resume", str(run_dir), "--num_env_steps", "500"]) == 0
    out = capsys.readouterr().out
    assert "at 300 env steps" in out and "using step_300.pt instead, 100 env steps lost" in out
    assert not stale.exists() and (checkpoints / "step_400.pt.corrupt").exists()
    assert load_checkpoint(run_dir)["runner"]["env_steps"] == 500
    assert csv_steps(run_dir)[-1] == 500
    assert_logs_agree(run_dir)


class RoomFor(io.RawIOBase):
    """A file that takes `room` more bytes, then refuses writes as a full disk does."""

    def __init__(self, file, room: int) -> None:
        super().__init__()
        self.file, self.room = file, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)


def full_after(calls: int, write, in_the_file: bool = False):
    """`write(target, data)` (a tensorboard record write; a `torch.save(obj, file)` with `in_the_file`) as on a disk
    that fills up after `calls` calls: the write refused, or torch's own failure after 1000 bytes of the file."""
    count = itertools.count()

    def on_a_full_disk(target, data, *args, **kwargs):
        if next(count) < calls:
            return write(target, data, *args, **kwargs)
        if in_the_file:
            return write(target, RoomFor(data, 1000), *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return on_a_full_disk


@pytest.mark.parametrize("where", ["checkpoint", "tensorboard"])
def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(where, tmp_path, capsys, monkeypatch):
    """ENOSPC while saving the third checkpoint (torch.save's RuntimeError) or in tensorboard's writer thread."""
    if where == "checkpoint":
        monkeypatch.setattr(torch, "save", full_after(2, torch.save, in_the_file=True))
    else:
        monkeypatch.setattr(RecordWriter, "write", full_after(40, RecordWriter.write))
    log_dir = tmp_path / "results"
    assert train([*MATRIX, "--num_env_steps", "600", "--save_interval", "100", "--log_dir", str(log_dir)]) == 2
    (run_dir,) = log_dir.glob("*/*/*/*/seed-*")
    (line,) = capsys.readouterr().err.splitlines()
    latest = load_checkpoint(run_dir)["runner"]["env_steps"]
    assert line.startswith(f"error: no space left on the device of {run_dir} (") and re.search(
        r"\(\d+\.\d \w+ free\)", line
    )
    assert line.endswith(f"; free some, then continue with --resume {run_dir} (from step_{latest}.pt)")
    assert not [path.name for path in run_dir.rglob("*") if path.name.endswith(".tmp")]
    monkeypatch.undo()  # space freed
    assert train(["--resume", str(run_dir), "--num_env_steps", "600"]) == 0
    assert csv_steps(run_dir)[-1] == 600
    assert_logs_agree(run_dir)


def test_a_full_disk_at_the_last_log_write_still_closes_every_seed_and_the_env_workers(tmp_path, capsys, monkeypatch):
    """The runner's close: a log whose last row cannot be written (the disk filled at the end) does not keep the
    other seed's log, the evaluators or the env worker processes open, and the run ends in one line."""
    import multiprocessing

    from harl.utils.logger import RunLogger

    write_row = RunLogger.write_row

    def full_at_close(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    closed = []
    original_close = RunLogger.close

    def close(self):
        try:
            monkeypatch.setattr(RunLogger, "write_row", full_at_close)
            original_close(self)
        finally:
            monkeypatch.setattr(RunLogger, "write_row", write_row)
            closed.append(self.csv_path.parent)

    monkeypatch.setattr(RunLogger, "close", close)
    log_dir = tmp_path / "results"
    tiny = TINY_MAMUJOCO[: TINY_MAMUJOCO.index("--n_workers")] + TINY_MAMUJOCO[TINY_MAMUJOCO.index("--n_workers") + 2 :]
    argv = [
        "--algo",
        "mappo",
        "--arch",
        "nops",
        "--env",
        "mamujoco",
        "--scenario",
        "Hopper",
        "--agent_conf",
        "3x1",
        *tiny,
    ]
    argv += ["--n_workers", "1", "--episode_length", "10", "--num_env_steps", "40", "--seeds", "2"]
    assert train([*argv, "--log_dir", str(log_dir)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no space left on the device of ")
    assert sorted(closed) == sorted(log_dir.glob("*/*/*/*/seed-*"))  # both logs: the second after the first failed
    assert not multiprocessing.active_children()  # the env's worker process was closed too


class Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_carrying_code_is_refused_and_never_run(tmp_path, capsys):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "200", "--save_interval", "100")
    marker = tmp_path / "payload-ran"
    evil = run_dir / "checkpoints" / "step_300.pt"
    torch.save({"format_version": 2, "runner": {"env_steps": 300}, "x": Payload(marker)}, evil)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"format_version": 2, "x": Payload(marker)}))
    capsys.readouterr()
    assert evaluate_cli(["--checkpoint", str(evil)]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: refusing checkpoint {evil}: loading it would import ") and "system" in err
    assert evaluate_cli(["--checkpoint", str(plain)]) == 2
    assert "not a harl checkpoint" in one_line_error(capsys)
    assert train(["--resume", str(run_dir)]) == 2  # never silently skipped for an older one
    assert "refusing checkpoint" in one_line_error(capsys)
    assert not marker.exists()


def test_format_1_checkpoints_still_load(tmp_path, capsys):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "200")
    path = run_dir / "checkpoints" / "step_200.pt"
    data = load_checkpoint(path)
    del data["path"]
    np.random.seed(3)
    data["runner"]["rng"]["numpy"] = np.random.get_state()  # format 1 held numpy's own state tuple
    torch.save({**data, "format_version": 1}, path)
    assert evaluate_cli(["--checkpoint", str(path), "--episodes", "2"]) == 0
    assert train(["--resume", str(run_dir), "--num_env_steps", "300"]) == 0
    assert load_checkpoint(run_dir)["format_version"] == 2
    assert csv_steps(run_dir)[-1] == 300


def test_a_torn_last_csv_line_is_dropped_at_resume(tmp_path):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "200")
    with (run_dir / "progress.csv").open("a") as f:
        f.write("3")  # a kill while appending the row of step 300 left its first character
    assert train(["--resume", str(run_dir), "--num_env_steps", "400"]) == 0
    assert csv_steps(run_dir) == sorted(set(csv_steps(run_dir))) and 3 not in csv_steps(run_dir)
    assert csv_steps(run_dir)[-1] == 400


def test_resume_says_the_replay_buffer_was_not_saved(tmp_path, capsys):
    args = ["--algo", "masac", "--arch", "nops", "--env", "mamujoco", *TINY_MAMUJOCO, "--num_env_steps", "40"]
    run_dir = run_train(tmp_path, *args, "--warmup_steps", "20", "--batch_size", "8", "--train_interval", "10")
    saved = load_checkpoint(run_dir)
    assert saved["buffer"] is None
    capsys.readouterr()
    assert train(["--resume", str(run_dir), "--num_env_steps", str(saved["runner"]["env_steps"] + 20)]) == 0
    out = capsys.readouterr().out
    name = Path(saved["path"]).name
    assert f"note: {name} holds no replay buffer (saved with save_buffer: false)" in out


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../escaped", "must be a plain folder name"),
        ("", "must be a plain folder name"),
        ("..", "must be a plain folder name"),
        ("a/b", "must be a plain folder name"),
        ("x" * 256, "is 256 bytes long; a folder name takes at most 255"),
        ("é" * 128, "is 256 bytes long; a folder name takes at most 255"),
    ],
    ids=["escape", "empty", "parent", "nested", "long", "long-utf8"],
)
def test_exp_name_must_be_one_folder_inside_log_dir(name, message, tmp_path, capsys):
    """Refused before any folder is made (a name too long for the file system left its parents behind)."""
    log_dir = tmp_path / "logs" / "results"
    assert train([*MATRIX, "--exp_name", name, "--log_dir", str(log_dir)]) == 2
    err = one_line_error(capsys)
    assert err.startswith("error: --exp_name ") and message in err and len(err) < 300
    assert not list(tmp_path.iterdir())


def test_unusable_log_dir_and_device_are_one_line_errors(tmp_path, capsys):
    regular = tmp_path / "file"
    regular.write_text("")
    assert train([*MATRIX, "--log_dir", str(regular / "results")]) == 2
    assert "cannot create the run folder: Not a directory" in one_line_error(capsys)
    assert train([*MATRIX, "--device", "cuda:7", "--log_dir", str(tmp_path / "results")]) == 2
    err = one_line_error(capsys)
    assert "--device cuda:7" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_log_dir_is_a_one_line_error(tmp_path, capsys):
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o555)
    assert train([*MATRIX, "--log_dir", str(read_only / "results")]) == 2
    assert "cannot create the run folder: Permission denied" in one_line_error(capsys)


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe binary", b"just a string", b"main: {algo: mappo}\n", b"[1, 2"])
def test_resume_of_a_garbled_config_is_a_one_line_error(garbage, tmp_path, capsys):
    run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "100")
    (run_dir / "config.yaml").write_bytes(garbage)
    capsys.readouterr()
    assert train(["--resume", str(run_dir)]) == 2
    assert "config.yaml is not a usable harl run config" in one_line_error(capsys)


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, capsys):
    """The exact discrete loss on continuous actions: found when the env is built, after the run folder was made."""
    log_dir = tmp_path / "results"
    args = ["--algo", "hasac", "--arch", "nops", "--env", "mamujoco", "--discrete_policy_loss", "exact"]
    assert train([*args, "--log_dir", str(log_dir)]) == 2
    assert "the exact expectation is over discrete actions" in one_line_error(capsys)
    assert not log_dir.exists()


def test_resume_purges_events_of_a_predecessor_started_in_the_same_second(tmp_path):
    """A killed run's event file sorts after the resumed run's when both start within one second and the
    resumed process has the smaller pid; the resumed run's purge marker must still drop its later events."""
    from harl.utils.logger import RunLogger

    script = (
        "import sys; from torch.utils.tensorboard import SummaryWriter\n"
        "w = SummaryWriter(sys.argv[1])\n"
        "[w.add_scalar('x', float(s), s) for s in range(100, 900, 100)]\n"
        "w.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "tb")], check=True)
    (written,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    _, _, _, _, host, *_ = written.name.split(".")
    written.rename(written.with_name(f"events.out.tfevents.{int(time.time())}.{host}.99999999.0"))  # now, a larger pid
    logger = RunLogger(tmp_path, resume_step=500)
    for step in (600, 700):
        logger.log(step, {"x": -float(step)})
        logger.write_row()
    logger.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("x")} == {
        100: 100,
        200: 200,
        300: 300,
        400: 400,
        500: 500,
        600: -600,
        700: -700,
    }
