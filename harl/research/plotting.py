"""Plot and tabulate a results directory: IQM learning curves and final scores with 95% bootstrap CIs.

    harl-plot results [--out results/plots] [--metric eval/episode_return] [--reps 2000]
        [--max_steps N]   # only rows at env steps <= N: runs compared at one budget

(`python examples/plot.py ...` in the repository is the same command.)

Runs are found as `progress.csv` files in run folders laid out as
`<env>/<scenario>/<algo>-<arch>/<exp_name>/seed-<k>-<timestamp>/`; a task is an (env, scenario) and a
method an `algo-arch` (suffixed `/exp_name` when a task holds several experiment names of one method).
For every task it writes, into `--out`:

- `curves_<task>.png`: the interquartile mean (IQM) over seeds of `--metric` against env steps, with 95%
  stratified-bootstrap confidence intervals (rliable; Agarwal et al., 2021), up to the env steps that all
  of a method's runs reached (each run linearly interpolated onto a common grid);
- `final_<task>.png`: IQM and 95% CI of each method's final score (the last logged value of every run);
- `diversity_<task>.png` / `gradients_<task>.png` when the runs log `diversity/snd` / `grad/param_variance`
  and `grad/noise`: bars of the mean over runs (± standard error) of the final SND and of the gradient
  statistics averaged over training (the paper's Figs. 3 and 4);

and `summary.md` with a table of IQM [95% CI] per method and task, and those statistics.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harl.cli import guarded
from harl.errors import UserError
from harl.utils.cli_args import ArgParser

EXTRA_STATS = {
    "diversity/snd": ("final", "SND (final)"),
    "grad/param_variance": ("mean", "grad variance (mean over training)"),
    "grad/noise": ("mean", "grad noise (mean over training)"),
}
"""Optional columns: how each run's value is taken (final value or mean over training) and its label."""
_SEED = re.compile(r"^seed-(\d+)-")


@dataclass
class Run:
    """One run's `--metric` curve and optional statistics."""

    path: Path
    env: str
    scenario: str
    method: str
    exp_name: str
    seed: int
    steps: np.ndarray
    values: np.ndarray
    extras: dict[str, float] = field(default_factory=dict)


def read_run(csv_path: Path, metric: str, max_steps: float = math.inf) -> Run | None:
    """Parse a run folder (None when it is not laid out as a harl run or lacks the metric); only its rows
    at env steps ≤ `max_steps` count."""
    import pandas as pd

    run_dir = csv_path.parent
    match = _SEED.match(run_dir.name)
    parents = run_dir.parents
    if match is None or len(parents) < 4:
        return None
    try:
        frame = pd.read_csv(csv_path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if metric not in frame or "env_steps" not in frame:
        return None
    frame = frame[frame["env_steps"] <= max_steps]
    rows = frame[["env_steps", metric]].dropna()
    if rows.empty:
        return None
    extras = {}
    for column, (how, _) in EXTRA_STATS.items():
        if column in frame and frame[column].notna().any():
            series = frame[column].dropna()
            extras[column] = float(series.iloc[-1] if how == "final" else series.mean())
    return Run(
        path=run_dir,
        env=parents[3].name,
        scenario=parents[2].name,
        method=parents[1].name,
        exp_name=parents[0].name,
        seed=int(match.group(1)),
        steps=rows["env_steps"].to_numpy(float),
        values=rows[metric].to_numpy(float),
        extras=extras,
    )


def find_runs(
    results_dir: Path, metric: str, max_steps: float = math.inf
) -> dict[tuple[str, str], dict[str, list[Run]]]:
    """{(env, scenario): {method: [runs]}} of every run under `results_dir` that logged `metric` (rows at env
    steps ≤ `max_steps` only)."""
    if not results_dir.is_dir():
        raise UserError(f"results directory not found: {results_dir}")
    paths = sorted(results_dir.rglob("progress.csv"))
    runs = [run for path in paths if (run := read_run(path, metric, max_steps))]
    if not runs:
        raise UserError(
            f"no runs with a {metric!r} column under {results_dir} "
            "(expected <env>/<scenario>/<algo>-<arch>/<exp_name>/seed-<k>-*/progress.csv)"
        )
    tasks: dict[tuple[str, str], dict[str, list[Run]]] = {}
    for run in runs:
        task = (run.env, run.scenario)
        experiments = {r.exp_name for r in runs if (r.env, r.scenario, r.method) == (run.env, run.scenario, run.method)}
        label = run.method if len(experiments) == 1 else f"{run.method}/{run.exp_name}"
        tasks.setdefault(task, {}).setdefault(label, []).append(run)
    return tasks


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean over runs (axis 0) of (runs, tasks, ...) scores, per remaining index."""
    from scipy.stats import trim_mean

    return trim_mean(scores.reshape(scores.shape[0] * scores.shape[1], *scores.shape[2:]), 0.25, axis=0)


def interval_estimates(scores: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """IQM point estimates and 95% stratified-bootstrap CIs of {method: (runs, 1, ...)} scores (rliable)."""
    from rliable import library as rly

    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
    return rly.get_interval_estimates(scores, iqm, reps=reps, confidence_interval_size=0.95)


def curves(runs: list[Run], points: int) -> tuple[np.ndarray, np.ndarray]:
    """A common env-step grid up to the shortest run and every run interpolated on it: (T,), (runs, 1, T)."""
    start = max(r.steps[0] for r in runs)
    stop = min(r.steps[-1] for r in runs)
    grid = np.linspace(start, stop, points) if stop > start else np.array([stop])
    return grid, np.stack([np.interp(grid, r.steps, r.values) for r in runs])[:, None, :]


def task_slug(task: tuple[str, str]) -> str:
    """(env, scenario) as a file-name fragment."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task[0]}_{task[1]}")


def plot_task(
    task: tuple[str, str], methods: dict[str, list[Run]], metric: str, out: Path, reps: int, points: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """Write the task's figures; returns {method: (IQM, CI low, CI high)} of the final scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = f"{task[0]} / {task[1]}"
    grids, curve_scores = {}, {}
    for method, runs in methods.items():
        grids[method], curve_scores[method] = curves(runs, points)
    point, interval = interval_estimates(curve_scores, reps, seed)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {method: f"C{k}" for k, method in enumerate(methods)}
    for method in methods:
        marker = "o" if len(grids[method]) <= 3 else None
        ax.plot(
            grids[method],
            point[method],
            marker=marker,
            color=colors[method],
            label=f"{method} ({len(methods[method])} runs)",
        )
        ax.fill_between(grids[method], interval[method][0], interval[method][1], color=colors[method], alpha=0.25)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"{metric} (IQM, 95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"curves_{task_slug(task)}.png", dpi=110)
    plt.close(fig)

    finals = {m: np.array([r.values[-1] for r in runs])[:, None] for m, runs in methods.items()}
    point, interval = interval_estimates(finals, reps, seed)
    summary = {}
    for m in methods:
        low, high = np.ravel(interval[m])
        summary[m] = (float(np.ravel(point[m])[0]), float(low), float(high))
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.45 * len(methods)))
    for y, (method, (mid, low, high)) in enumerate(summary.items()):
        ax.plot([low, high], [y, y], linewidth=6, alpha=0.5, color=colors[method], solid_capstyle="butt")
        ax.plot([mid], [y], marker="|", color="black", markersize=14)
    ax.set_yticks(range(len(summary)), list(summary))
    ax.set_xlabel(f"final {metric} (IQM, 95% CI)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"final_{task_slug(task)}.png", dpi=110)
    plt.close(fig)

    for name, columns in (("diversity", ["diversity/snd"]), ("gradients", ["grad/param_variance", "grad/noise"])):
        present = [c for c in columns if any(c in r.extras for runs in methods.values() for r in runs)]
        if not present:
            continue
        fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False)
        for ax, column in zip(axes[0], present, strict=True):
            labels, means, errors = bar_stats(methods, column)
            ax.bar(range(len(labels)), means, yerr=errors, capsize=4, alpha=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(EXTRA_STATS[column][1], fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / f"{name}_{task_slug(task)}.png", dpi=110)
        plt.close(fig)
    return summary


def bar_stats(methods: dict[str, list[Run]], column: str) -> tuple[list[str], list[float], list[float]]:
    """Per method with the column: mean over runs and its standard error (0 for a single run)."""
    labels, means, errors = [], [], []
    for method, runs in methods.items():
        values = np.array([r.extras[column] for r in runs if column in r.extras])
        if values.size:
            labels.append(method)
            means.append(float(values.mean()))
            errors.append(float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0)
    return labels, means, errors


def summary_table(task: tuple[str, str], methods: dict[str, list[Run]], finals: dict, metric: str) -> str:
    """The markdown section of one task: IQM [95% CI] of the final score and the extra statistics per method."""
    extras = [c for c in EXTRA_STATS if any(c in r.extras for runs in methods.values() for r in runs)]
    header = ["method", "runs", "env steps", f"final {metric}: IQM [95% CI]", *[EXTRA_STATS[c][1] for c in extras]]
    lines = [f"## {task[0]} / {task[1]}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for method, runs in methods.items():
        mid, low, high = finals[method]
        steps = sorted({int(r.steps[-1]) for r in runs})
        cells = [method, str(len(runs)), "/".join(str(s) for s in steps), f"{mid:.4g} [{low:.4g}, {high:.4g}]"]
        for column in extras:
            values = np.array([r.extras[column] for r in runs if column in r.extras])
            cells.append(
                f"{values.mean():.4g} ± {values.std(ddof=1) / np.sqrt(values.size):.2g}"
                if values.size > 1
                else (f"{values.mean():.4g}" if values.size else "–")
            )
        lines.append("| " + " | ".join(cells) + " |")
    slug = task_slug(task)
    figures = [f"![curves](curves_{slug}.png)", f"![final](final_{slug}.png)"]
    if "diversity/snd" in extras:
        figures.append(f"![diversity](diversity_{slug}.png)")
    if {"grad/param_variance", "grad/noise"} & set(extras):
        figures.append(f"![gradients](gradients_{slug}.png)")
    return "\n".join([*lines, "", *figures, ""])


RESEARCH_PACKAGES = ("pandas", "scipy", "rliable", "matplotlib")
"""What harl-plot imports beyond harl's own dependencies: the `research` extra."""


def check_research_extra() -> None:
    """Refuse in one line, naming the extra to install, when a package of the `research` extra is missing."""
    missing = []
    for name in RESEARCH_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(
            f"harl-plot needs {', '.join(missing)} (the research extra): pip install 'harl-hypermarl[research]' "
            "(in a clone of the repository: pip install -e '.[research]')"
        )


def main(argv: list[str]) -> int:
    """Plot and tabulate the results directory given in `argv` (see the module docstring)."""
    parser = ArgParser(description="IQM learning curves and final scores with 95% bootstrap CIs over seeds.")
    parser.add_argument("results_dir", help="directory holding run folders (searched recursively)")
    parser.add_argument("--out", default=None, help="output directory (default: RESULTS_DIR/plots)")
    parser.add_argument("--metric", default="eval/episode_return", help="progress.csv column to plot")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--points", type=int, default=50, help="points of the learning-curve grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="only rows at env steps ≤ this: compare runs at one budget (e.g. runs stopped at different steps)",
    )
    args = parser.parse_args(argv)
    check_research_extra()
    if args.reps < 1 or args.points < 1 or (args.max_steps is not None and args.max_steps < 1):
        raise UserError("--reps, --points and --max_steps must be positive")
    results_dir = Path(args.results_dir)
    tasks = find_runs(results_dir, args.metric, math.inf if args.max_steps is None else args.max_steps)
    out = Path(args.out) if args.out else results_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    sections = [
        f"# Results: {results_dir}",
        "",
        f"IQM over seeds with 95% stratified-bootstrap confidence intervals ({args.reps} resamples, rliable). "
        "The final score of a run is its last logged value"
        + ("" if args.max_steps is None else f" at or before {args.max_steps} env steps")
        + "; extra statistics are means over runs ± standard error.",
        "",
    ]
    for task, methods in sorted(tasks.items()):
        finals = plot_task(task, methods, args.metric, out, args.reps, args.points, args.seed)
        sections.append(summary_table(task, methods, finals, args.metric))
        print(sections[-1])
    (out / "summary.md").write_text("\n".join(sections))
    print(f"figures and summary.md in {out}")
    return 0


cli = guarded(main)

if __name__ == "__main__":
    sys.exit(cli())
