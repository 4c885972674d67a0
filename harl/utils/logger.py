"""Run logging: tensorboard scalars and one wide `progress.csv`, both against env steps."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

FIXED_COLUMNS = ["env_steps", "train/episode_return", "eval/episode_return"]
CSV_ALIASES = {"charts/episode_return": "train/episode_return"}


def read_complete_rows(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """A `progress.csv`'s columns and rows, without a last line that was cut off mid-write.

    Every complete row ends with a line break; a row without one (or one whose `env_steps` does not
    parse) is a torn write, and dropped.
    """
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or FIXED_COLUMNS)
    rows = []
    for row in reader:
        try:
            rows.append({k: float(v) for k, v in row.items() if k is not None and v not in ("", None)})
        except (TypeError, ValueError):
            continue
        if "env_steps" not in rows[-1]:
            rows.pop()
    return columns, rows


def _after_earlier_event_files(folder: Path) -> None:
    """Wait (at most a second) until a new event file's name sorts after every one in `folder`.

    Event files are named `events.out.tfevents.<unix seconds>.<host>.<pid>...` and tensorboard reads them
    in name order; a resumed run's purge marker only drops the events of files read before it. A resume
    within the second its predecessor started (fast tests) could otherwise sort first by a smaller pid.
    """
    stamps = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*") if p.name.split(".")[3].isdigit()]
    while stamps and time.time() < max(stamps) + 1:
        time.sleep(0.05)


class RunLogger:
    """Writes scalars to `tb/` and rows to `progress.csv` in the run folder.

    A row gathers every scalar logged for one env-step count; `write_row` appends it. When a new
    metric appears, the CSV is rewritten with the extended header (files stay small). On resume,
    rows and tensorboard events past the checkpoint's step are dropped (those at the step are
    kept, in both), so the logs continue exactly where the checkpoint left off; a torn last CSV
    line (a kill during an append) is dropped too.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.csv_path = Path(run_dir) / "progress.csv"
        # tensorboard drops earlier sessions' events at steps >= purge_step
        purge_step = None if resume_step is None else resume_step + 1
        if resume_step is not None:
            _after_earlier_event_files(Path(run_dir) / "tb")
        self.writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge_step)
        self.columns = list(FIXED_COLUMNS)
        self.rows: list[dict[str, float]] = []
        if resume_step is not None and self.csv_path.exists():
            self.columns, rows = read_complete_rows(self.csv_path)
            self.rows = [row for row in rows if row["env_steps"] <= resume_step]
            self._rewrite()
        self.pending: dict[str, float] = {}
        self.pending_step: int | None = None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record scalars at `step` (tensorboard now, CSV at the next `write_row`)."""
        if self.pending_step is not None and step != self.pending_step:
            self.write_row()
        self.pending_step = step
        for key, value in metrics.items():
            value = float(value)
            if math.isfinite(value):
                self.writer.add_scalar(key, value, step)
            self.pending[CSV_ALIASES.get(key, key)] = value

    def write_row(self) -> None:
        if self.pending_step is None:
            return
        row = {"env_steps": float(self.pending_step), **self.pending}
        self.pending, self.pending_step = {}, None
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.csv_path.exists():
            self.columns += new
            self._rewrite()
        else:
            with self.csv_path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(self._format(row))
        self.writer.flush()

    def _format(self, row: dict[str, float]) -> dict[str, str]:
        return {k: (str(int(v)) if k == "env_steps" else repr(v)) for k, v in row.items()}

    def _rewrite(self) -> None:
        tmp = self.csv_path.with_suffix(".tmp")
        try:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, self.columns)
                writer.writeheader()
                writer.writerows(self._format(r) for r in self.rows)
            tmp.replace(self.csv_path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. a full disk: progress.csv stays as it was
            raise

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text)

    def close(self) -> None:
        """Write the pending row and close the TensorBoard writer (closed even when the row cannot be written)."""
        try:
            self.write_row()
        finally:
            self.writer.close()
