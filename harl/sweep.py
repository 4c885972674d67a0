"""Multi-seed sweeps: a grid of independent training runs that can be stopped and restarted.

A sweep is algorithms × architectures × scenarios × seeds of one environment. Every grid point
is one ordinary training run (`harl.cli.train_main`) in its ordinary run folder
`<log_dir>/<env>/<scenario>/<algo>-<arch>/<exp_name>/seed-<k>-<timestamp>/`, so a grid point's runs
are found again by globbing `seed-<k>-*` there. Before launching, every grid point is classified:

- done: a run holds a checkpoint at ≥ `num_env_steps` (the final checkpoint) -> skipped;
- resume: a run holds an earlier checkpoint -> continued with `--resume` up to `num_env_steps`
  (the most advanced one when there are several);
- new: no run with a checkpoint -> started afresh (folders of runs that died before their first
  checkpoint cannot be resumed and are removed first, so each seed has one run folder);
- busy: a run folder of the point is held by a live process (another sweep or `train.py`, see
  `harl.utils.run_lock`) -> left alone: a sweep never resumes, deletes or duplicates a run another
  process is training.

A run found on disk must have been made with the same configuration (every `algo`, `env`, `model`
and `arch` key; the `run` section may differ, e.g. a larger `num_env_steps`): a sweep whose settings
changed needs a new `--exp_name`, and saying so is better than silently mixing two experiments.

Runs execute in a local process pool (`backend="local"`) or as Ray tasks (`backend="ray"`, on a local
Ray instance or an existing cluster via `ray_address`; the log directory must then be on a file system
every node shares). Each run's console output goes to `<log_dir>/sweep_logs/<exp_name>/<point>.log`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from harl.config import read_yaml
from harl.errors import UserError
from harl.experiment import build_config, run_folder_base
from harl.utils.checkpoint import checkpoint_step, list_checkpoints
from harl.utils.cli_args import parse_train_args
from harl.utils.run_lock import RunLock, holder_pid, is_held
from harl.utils.signals import exit_status
from harl.utils.threads import CONCURRENT_RUNS_ENV

BACKENDS = ("local", "ray")


@dataclass
class GridPoint:
    """One run of the sweep.

    Attributes:
        algo, arch, env: registry names.
        scenario: the scenario's folder name (`scenario_name()`).
        seed: the run's seed.
        argv: `train.py` arguments starting the run afresh.
        base: the folder holding this point's run folders (`.../<exp_name>/`).
        log_dir: the sweep's log directory (`run.log_dir`).
        target_steps: the run's `num_env_steps`.
        config: the resolved configuration (`ExperimentConfig.to_dict()`).
        status: "new", "resume", "done" or "busy" (set by `plan`).
        run_dir: the existing run folder to resume, that is done, or that another process holds.
    """

    algo: str
    arch: str
    env: str
    scenario: str
    seed: int
    argv: list[str]
    base: Path
    log_dir: Path
    target_steps: int
    config: dict[str, Any]
    status: str = "new"
    run_dir: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.env}-{self.scenario}-{self.algo}-{self.arch}-seed{self.seed}"


@dataclass
class Task:
    """What a worker executes: `train_main(argv)` with its console output in `log_file`."""

    name: str
    argv: list[str]
    log_file: str
    extra: dict[str, Any] = field(default_factory=dict)


def parse_scenario(text: str) -> list[str]:
    """`key=value[,key=value...]` (or a bare name, meaning `scenario=<name>`) -> `--key value` arguments."""
    args: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "scenario", part
        if not key or not value:
            raise UserError(f"bad scenario {text!r}: write key=value[,key=value], e.g. scenario=Ant,agent_conf=4x2")
        args += [f"--{key.strip()}", value.strip()]
    return args


def build_grid(
    algos: list[str],
    archs: list[str],
    env: str,
    scenarios: list[str],
    seeds: list[int],
    exp_name: str,
    extra: list[str],
) -> list[GridPoint]:
    """Resolve every grid point's configuration (bad names or keys raise `UserError` before anything runs)."""
    main, switches, overrides = parse_train_args(extra)
    if set(main) - {"load_config"}:
        raise UserError(f"--{sorted(set(main) - {'load_config'})[0]} is set by the sweep itself")
    if set(switches) - {"no_tuned"}:
        raise UserError(f"--{sorted(set(switches) - {'no_tuned'})[0]} cannot be used in a sweep")
    for key in ("seed", "exp_name", "run.seed", "run.exp_name"):
        if key in overrides:
            raise UserError(f"--{key} is set by the sweep itself (use --seeds / --exp_name)")
    points = []
    for scenario in scenarios or [""]:
        scenario_args = parse_scenario(scenario)
        scenario_overrides = {k[2:]: v for k, v in zip(scenario_args[::2], scenario_args[1::2], strict=True)}
        clash = sorted(set(scenario_overrides) & set(overrides))
        if clash:
            raise UserError(f"--{clash[0]} is given both in --scenarios and as an option")
        for algo in algos:
            for arch in archs:
                for seed in seeds:
                    run_overrides = {**scenario_overrides, **overrides, "seed": str(seed), "exp_name": exp_name}
                    cfg, _ = build_config(
                        algo, arch, env, run_overrides, main.get("load_config"), use_tuned="no_tuned" not in switches
                    )
                    argv = [
                        "--algo",
                        algo,
                        "--arch",
                        arch,
                        "--env",
                        env,
                        *scenario_args,
                        *extra,
                        "--seed",
                        str(seed),
                        "--exp_name",
                        exp_name,
                    ]
                    base = run_folder_base(cfg)
                    points.append(
                        GridPoint(
                            algo,
                            arch,
                            env,
                            cfg.env.scenario_name(),
                            seed,
                            argv,
                            base,
                            Path(cfg.run.log_dir),
                            cfg.run.num_env_steps,
                            cfg.to_dict(),
                        )
                    )
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise UserError("the grid repeats a point (duplicate algorithm, architecture, scenario or seed)")
    return points


def latest_step(run_dir: Path) -> int | None:
    """The env steps of a run folder's latest checkpoint (None without one)."""
    found = list_checkpoints(run_dir / "checkpoints")
    return checkpoint_step(found[-1]) if found else None


def check_same_config(point: GridPoint, run_dir: Path) -> None:
    """Refuse an existing run whose saved configuration differs from the sweep's (outside the `run` section)."""
    saved = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    for section in ("main", "algo", "env", "model", "arch"):
        ours, theirs = point.config.get(section, {}), saved.get(section, {})
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                raise UserError(
                    f"{run_dir} was made with {section}.{key} = {theirs.get(key)!r}, this sweep sets "
                    f"{ours.get(key)!r}; use another --exp_name for a changed configuration"
                )


def plan(points: list[GridPoint]) -> None:
    """Classify every point as new, resume or done from the run folders already on disk (see module doc)."""
    for point in points:
        runs = sorted(p for p in point.base.glob(f"seed-{point.seed}-*") if p.is_dir())
        held = [r for r in runs if is_held(r)]
        if held:
            point.status, point.run_dir = "busy", held[0]
            continue
        with_ckpt = [(latest_step(r), r) for r in runs]
        usable = [(step, r) for step, r in with_ckpt if step is not None]
        if usable:
            step, run_dir = max(usable, key=lambda item: item[0])
            check_same_config(point, run_dir)
            point.run_dir = run_dir
            point.status = "done" if step >= point.target_steps else "resume"
        else:
            point.status, point.run_dir = "new", None


def remove_dead_runs(point: GridPoint) -> list[Path]:
    """Delete this point's run folders without any checkpoint (runs that died before their first save).

    A folder is only deleted while this process holds its lock, so a run that another process is
    training (or has just started) is never touched.
    """
    removed = []
    for run_dir in sorted(point.base.glob(f"seed-{point.seed}-*")):
        if not run_dir.is_dir() or latest_step(run_dir) is not None:
            continue
        lock = RunLock.try_acquire(run_dir)
        if lock is None:
            continue
        with lock:
            if latest_step(run_dir) is None:
                shutil.rmtree(run_dir)
                removed.append(run_dir)
    return removed


def run_task(task: Task) -> dict[str, Any]:
    """Execute one run (in a worker process or Ray task); never raises, reports the outcome."""
    from harl.cli import train_main

    start = time.perf_counter()
    Path(task.log_file).parent.mkdir(parents=True, exist_ok=True)
    with open(task.log_file, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"$ train.py {' '.join(task.argv)}", flush=True)
        code = 1
        try:
            code = train_main(task.argv)
            error = None if code == 0 else f"exit status {code}"
        except UserError as err:
            print(f"error: {err}")
            error = str(err)
        except Exception as err:  # a crashed run must not take the sweep down
            traceback.print_exc()
            error = f"{type(err).__name__}: {err}"
    stopped = code in (exit_status(signal.SIGINT), exit_status(signal.SIGTERM))
    return {"name": task.name, "error": error, "stopped": stopped, "seconds": time.perf_counter() - start, **task.extra}


def make_tasks(points: list[GridPoint], log_root: Path) -> list[Task]:
    """Tasks for the points that are not done (starting or resuming them)."""
    tasks = []
    for point in points:
        log_file = str(log_root / f"{point.name}.log")
        if point.status == "resume":
            argv = ["--resume", str(point.run_dir), "--num_env_steps", str(point.target_steps)]
        elif point.status == "new":
            argv = list(point.argv)
        else:
            continue
        tasks.append(Task(point.name, argv, log_file, {"status": point.status}))
    return tasks


def _report(result: dict[str, Any], done: int, total: int) -> None:
    outcome = "failed: " + result["error"] if result["error"] else "finished"
    print(f"[{done}/{total}] {result['name']} ({result['status']}) {outcome} in {result['seconds']:.0f} s", flush=True)


def execute_local(tasks: list[Task], workers: int) -> list[dict[str, Any]]:
    """Run tasks in this process (one worker) or a pool of `workers` spawned processes."""
    results = []
    if workers == 1:
        for task in tasks:
            results.append(run_task(task))
            _report(results[-1], len(results), len(tasks))
            if results[-1]["stopped"]:  # Ctrl-C / SIGTERM: the run saved a checkpoint; start no other
                raise KeyboardInterrupt
        return results
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=share_cores, initargs=(workers,)
    )
    with executor as pool:
        futures = [pool.submit(run_task, task) for task in tasks]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                _report(results[-1], len(results), len(tasks))
        except KeyboardInterrupt:  # start no further run; the running ones checkpoint and end on the same Ctrl-C
            for future in futures:
                future.cancel()
            raise
    return results


def execute_ray(tasks: list[Task], workers: int, address: str | None, cpus_per_run: float) -> list[dict[str, Any]]:
    """Run tasks as Ray tasks: on a new local Ray instance with `workers` CPUs, or on the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install -e '.[cluster]'") from None
    if address:
        ray.init(address=address, ignore_reinit_error=True)
    else:
        ray.init(num_cpus=int(workers * cpus_per_run), ignore_reinit_error=True, include_dashboard=False)
    try:
        remote = ray.remote(num_cpus=cpus_per_run)(run_task)
        pending = [remote.remote(task) for task in tasks]
        results = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(ready[0]))
            _report(results[-1], len(results), len(tasks))
        return results
    finally:
        ray.shutdown()


def run_sweep(
    points: list[GridPoint],
    workers: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    cpus_per_run: float = 1.0,
) -> list[dict[str, Any]]:
    """Plan and execute a sweep; returns one outcome per launched run (done points are skipped)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    plan(points)
    for point in points:
        if point.status == "done":
            print(f"skip   {point.name}: finished in {point.run_dir}")
        elif point.status == "busy":
            pid = holder_pid(point.run_dir)
            who = f"process {pid}" if pid is not None else "another process"
            print(f"busy   {point.name}: {point.run_dir} is being trained by {who}; left alone")
        elif point.status == "resume":
            print(f"resume {point.name}: {point.run_dir} ({latest_step(point.run_dir)} of {point.target_steps} steps)")
        else:
            for dead in remove_dead_runs(point):
                print(f"note: removed {dead} (no checkpoint, cannot be resumed)")
            print(f"start  {point.name}")
    log_root = points[0].log_dir / "sweep_logs" / points[0].base.name
    tasks = make_tasks(points, log_root)
    if not tasks:
        busy = sum(point.status == "busy" for point in points)
        print(
            f"nothing to run: {busy} run(s) of the sweep are held by other processes, the others are finished"
            if busy
            else "nothing to run: every run of the sweep is finished"
        )
        return []
    print(f"running {len(tasks)} run(s) on the {backend} backend; console output in {log_root}", flush=True)
    if backend == "ray":
        return execute_ray(tasks, workers, ray_address, cpus_per_run)
    return execute_local(tasks, workers)


def share_cores(workers: int) -> None:
    """In a sweep's pool process: `workers` runs share this machine's cores, so each run started here takes
    its share of them (`harl.utils.threads`)."""
    os.environ[CONCURRENT_RUNS_ENV] = str(workers)


def failures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bad = [r for r in results if r["error"]]
    for r in bad:
        print(f"FAILED {r['name']}: {r['error']}", file=sys.stderr)
    return bad
