"""What a person watching a run sees: its progress while it trains, and a summary with a learning curve at the end.

Progress (`Progress`) shows env steps, steps per second (SPS), the time left (ETA), the latest evaluation and
what the run is doing (starting up, warm-up with random actions, training, evaluating):

- as a tqdm bar on stderr when `run.progress_bar` is on and stderr is a terminal;
- otherwise as one plain line on stdout every `run.progress_interval` seconds (0: none), the first as soon as
  the training loop starts; `progress_bar: false` thus swaps the bar for the plain lines.

Before the loop (making the envs and networks, which includes compiling JAX envs' reset) plain lines report
the time spent in both modes. A background thread prints the lines (and redraws the bar's clock), so they
keep coming while one long iteration, an evaluation or an env's compilation holds the training thread.

At the end, `summary` gives the run's one-screen summary and `write_learning_curve` draws
`learning_curve.png` (training and evaluation return against env steps, from `progress.csv`) into the run
folder when matplotlib (the `research` extra) is importable.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from harl.config import RunConfig
from harl.utils.checkpoint import list_checkpoints
from harl.utils.logger import read_complete_rows

CURVE_FILE = "learning_curve.png"
NO_MATPLOTLIB = "not drawn: matplotlib is not installed (pip install 'harl-hypermarl[research]')"
TICK_SECONDS = 0.5
"""How often the reporting thread wakes (to redraw the bar's clock or print a due line), at most."""


def duration(seconds: float) -> str:
    """Seconds as people read them: `42s`, `3m07s`, `1h02m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Reports one training process's progress (see the module docstring), from its creation (before the
    runner is built, so set-up time shows) to `close()`.

    Args:
        total_steps: the run's `num_env_steps`.
        bar: show the tqdm bar (if stderr is a terminal) instead of plain lines.
        interval: seconds between plain lines (0: none).
    """

    def __init__(self, total_steps: int, *, bar: bool, interval: float) -> None:
        self.total = total_steps
        self.show_bar = bar and sys.stderr.isatty()
        self.interval = interval
        self.created = time.perf_counter()
        self.phase, self.detail = "starting up", "making the envs and networks"
        self.env_steps = 0
        self.eval_text = ""
        self.deadline = math.inf
        self._rate_origin: tuple[float, int] | None = None  # (time, env steps) the SPS and ETA count from
        self._warmup_steps = 0
        self._bar: tqdm | None = None
        self._next_line = self.created + interval
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer of lines and of the bar at a time
        self._thread: threading.Thread | None = None
        if self.show_bar or interval > 0:
            self._thread = threading.Thread(target=self._tick, name="harl-progress", daemon=True)
            self._thread.start()

    @classmethod
    def for_run(cls, run: RunConfig) -> Progress:
        """The reporter `run.progress_bar` and `run.progress_interval` ask for."""
        return cls(run.num_env_steps, bar=run.progress_bar, interval=run.progress_interval)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ what the runner reports

    def begin(self, env_steps: int, warmup_steps: int, deadline: float) -> None:
        """The training loop starts at `env_steps` (a resumed run's step), with `warmup_steps` of random
        actions first (0: none) and a wall-clock `deadline` (`time.perf_counter()` seconds; inf: none)."""
        now = time.perf_counter()
        with self._lock:
            self.env_steps, self.deadline, self._warmup_steps = env_steps, deadline, warmup_steps
            self._rate_origin = (now, env_steps)
            self._set_training_phase()
            if self.show_bar:
                self._bar = tqdm(
                    total=self.total,
                    initial=min(env_steps, self.total),
                    unit="step",
                    dynamic_ncols=True,
                    desc=self.phase,
                )
            elif self.interval > 0:
                self._print_line(now)

    def update(self, env_steps: int) -> None:
        """The loop reached `env_steps`."""
        now = time.perf_counter()
        with self._lock:
            warming_up = self.env_steps < self._warmup_steps
            if self._bar is not None:
                self._bar.update(min(env_steps, self.total) - self._bar.n)
            self.env_steps = env_steps
            if warming_up and env_steps >= self._warmup_steps:
                self._rate_origin = (now, env_steps)  # SPS and ETA from here measure the training iterations
            self._set_training_phase()

    def evaluating(self, episodes: int) -> None:
        """An evaluation of `episodes` episodes starts."""
        with self._lock:
            self.phase, self.detail = "evaluating", f"{episodes} episodes at {self.env_steps:,} env steps"
            if self._bar is not None:
                self._bar.set_description_str(self.phase)

    def evaluated(self, metrics: dict[str, float]) -> None:
        """An evaluation ended with `metrics` (`eval/episode_return`, maybe `eval/win_rate`)."""
        text = f"eval return {metrics['eval/episode_return']:.4g}"
        if "eval/win_rate" in metrics:
            text += f", win rate {metrics['eval/win_rate']:.2f}"
        with self._lock:
            self.eval_text = text
            self._set_training_phase()
            self._show_postfix()

    def elapsed(self) -> float:
        """Seconds since this reporter was made."""
        return time.perf_counter() - self.created

    def close(self) -> None:
        """Stop the reporting thread and the bar (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    # ------------------------------------------------------------------ internals

    def _set_training_phase(self) -> None:
        if self.env_steps < self._warmup_steps:
            self.phase, self.detail = "warm-up", f"random actions until {self._warmup_steps:,} env steps"
        elif self.env_steps >= self.total:
            self.phase, self.detail = "finished", ""
        else:
            self.phase, self.detail = "training", ""
        if self._bar is not None:
            self._bar.set_description_str(self.phase, refresh=False)

    def _show_postfix(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.eval_text, refresh=False)  # the bar shows steps, step/s and ETA itself

    def _sps(self, now: float) -> float | None:
        """Env steps per second since the loop started (since warm-up ended, once it has), None before any."""
        if self._rate_origin is None:
            return None
        start, steps = self._rate_origin
        return (self.env_steps - steps) / (now - start) if self.env_steps > steps and now > start else None

    def line(self) -> str:
        """The plain progress line for now."""
        now = time.perf_counter()
        phase = f"{self.phase}: {self.detail}" if self.detail else self.phase
        if self._rate_origin is None:
            return f"progress: {phase}, {duration(now - self.created)} elapsed"
        done = min(self.env_steps, self.total)
        sps = self._sps(now)
        parts = [f"progress: {done:,}/{self.total:,} env steps ({100 * done / self.total:.0f}%)"]
        parts.append(f"{sps:,.0f} SPS" if sps else "SPS -")
        if self.phase == "warm-up" or sps is None:
            eta = "-"
        else:
            remaining = (self.total - done) / sps
            eta = duration(min(remaining, self.deadline - now)) + (
                " (time limit)" if self.deadline - now < remaining else ""
            )
        parts += [f"ETA {eta}", f"elapsed {duration(now - self.created)}"]
        if self.eval_text:
            parts.append(self.eval_text)
        parts.append(phase)
        return " | ".join(parts)

    def _print_line(self, now: float) -> None:
        sys.stdout.write(self.line() + "\n")  # one write: never split by another thread's output
        sys.stdout.flush()
        self._next_line = now + self.interval

    def _tick(self) -> None:
        """The reporting thread: redraw the bar's clock, or print a plain line when one is due."""
        while not self._stop.wait(min(TICK_SECONDS, self.interval or TICK_SECONDS)):
            now = time.perf_counter()
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()
                elif (
                    self.interval > 0
                    and now >= self._next_line
                    and not (self.show_bar and self._rate_origin is not None)
                ):
                    self._print_line(now)


# ---------------------------------------------------------------------------- the end of a run


def write_learning_curve(run_dir: Path) -> str:
    """Draw `learning_curve.png` (training and evaluation episode return against env steps) from the run
    folder's `progress.csv`; returns what the summary says about it: the file's name, or why there is none."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return NO_MATPLOTLIB
    csv_path = run_dir / "progress.csv"
    if not csv_path.is_file():
        return "not drawn: the run logged no progress.csv"
    _, rows = read_complete_rows(csv_path)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for column, label in (("train/episode_return", "training episodes"), ("eval/episode_return", "evaluation")):
        points = [(row["env_steps"], row[column]) for row in rows if math.isfinite(row.get(column, math.nan))]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker="o" if len(points) < 20 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(" / ".join(run_dir.parts[-5:]), fontsize=9)  # env / scenario / algo-arch / exp_name / seed-...
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / CURVE_FILE, dpi=100)
    return CURVE_FILE


def summary(run_dir: Path, env_steps: int, wall_seconds: float, curve: str, stopped: bool) -> list[str]:
    """The end-of-run summary: final (and first) evaluation, env steps, wall time, and where logs,
    checkpoints and the learning curve (`curve`, from `write_learning_curve`) went."""
    rows = read_complete_rows(run_dir / "progress.csv")[1] if (run_dir / "progress.csv").is_file() else []
    evals = [row for row in rows if math.isfinite(row.get("eval/episode_return", math.nan))]
    sps = f" ({env_steps / wall_seconds:,.0f} env steps per second)" if wall_seconds > 0 else ""
    ended = "stopped" if stopped else "finished"
    lines = [f"==== training {ended}: {env_steps:,} env steps in {duration(wall_seconds)}{sps} ===="]
    if evals:
        last = evals[-1]
        text = f"final eval return: {last['eval/episode_return']:.4g} at {int(last['env_steps']):,} env steps"
        if math.isfinite(last.get("eval/win_rate", math.nan)):
            text += f", win rate {last['eval/win_rate']:.2f}"
        if len(evals) > 1:
            first = evals[0]
            text += f" (first eval: {first['eval/episode_return']:.4g} at {int(first['env_steps']):,})"
        lines.append(text)
    else:
        lines.append("final eval return: none (no evaluation ran)")
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    lines += [
        f"run folder: {run_dir}",
        f"  logs: tb/ (tensorboard --logdir {run_dir / 'tb'}) and progress.csv",
        f"  checkpoints: checkpoints/{checkpoints[-1].name} (the latest)" if checkpoints else "  checkpoints: none",
        f"  learning curve: {curve}",
    ]
    return lines
