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
- busy: another sweep has claimed the point, or a run folder of the point is held by a live process
  (`train.py` started by hand, see `harl.utils.run_lock`) -> left alone: a sweep never resumes, deletes
  or duplicates a run another process is training.

A sweep claims each grid point before it looks at the point's folders and holds the claim until the
point's run ends: the claim is a run lock (`harl.utils.run_lock`) on `<exp_name>/.sweep-claims/seed-<k>/`,
so two sweeps started on one folder at once split the points between them instead of training one twice,
and a claim dies with the sweep that held it.

The seeds of a batched run (`train.py --seeds N`, folders with `batch.yaml`) are resumed together by one
`--resume`. With `batch_seeds`, the new seeds of each algorithm × architecture × scenario are started as
batched runs too, one process per run of consecutive seeds (seeds 1, 2, 3, 5 -> `--seed 1 --seeds 3` and
`--seed 5`); a learner or option that cannot batch seeds falls back to one process per seed, with a note.

A run found on disk must have been made with the same configuration (every `algo`, `env`, `model`
and `arch` key; the `run` section may differ, e.g. a larger `num_env_steps`): a sweep whose settings
changed needs a new `--exp_name`, and saying so is better than silently mixing two experiments.

Runs execute in a local process pool (`backend="local"`) or as Ray tasks (`backend="ray"`, on a local
Ray instance or an existing cluster via `ray_address`; the log directory must then be on a file system
every node shares). Each launched process's console output goes to its own
`<log_dir>/sweep_logs/<exp_name>/<point>.log` (`...-seeds<first>-<last>.log` for a batch of seeds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from harl.cli import batch_folders
from harl.config import read_yaml
from harl.errors import UserError, shown
from harl.experiment import build_config, config_from_dict, run_folder_base
from harl.registry import ALGORITHMS, get_algorithm
from harl.utils.checkpoint import checkpoint_step, list_checkpoints
from harl.utils.cli_args import parse_train_args
from harl.utils.run_lock import RunLock, holder_pid, is_held
from harl.utils.signals import exit_status
from harl.utils.threads import CONCURRENT_RUNS_ENV

BACKENDS = ("local", "ray")
CLAIMS = ".sweep-claims"
"""The folder, inside an experiment folder, of the sweeps' claims on its grid points (one lock folder per seed)."""


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
        run_dir: the existing run folder to resume, that is done, or that another process holds (for a point
            another sweep has claimed: that claim's folder).
        batch: for a point to resume, the run folders resumed with it (all seeds of its batched run, or just
            `run_dir`).
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
    batch: list[Path] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The point without its seed: `<env>-<scenario>-<algo>-<arch>`."""
        return f"{self.env}-{self.scenario}-{self.algo}-{self.arch}"

    @property
    def name(self) -> str:
        return f"{self.label}-seed{self.seed}"


@dataclass
class Task:
    """What a worker executes: `train_main(argv)` with its console output in `log_file`.

    Attributes:
        claimed: the (experiment folder, seed) claims the sweep holds for this process until it ends.
    """

    name: str
    argv: list[str]
    log_file: str
    extra: dict[str, Any] = field(default_factory=dict)
    claimed: list[tuple[Path, int]] = field(default_factory=list)


class Claims:
    """The grid points this sweep holds, by experiment folder and seed: a run lock on
    `<experiment folder>/.sweep-claims/seed-<k>/` each (see the module doc)."""

    def __init__(self) -> None:
        self.held: dict[tuple[Path, int], RunLock] = {}

    @staticmethod
    def folder(base: Path, seed: int) -> Path:
        """The lock folder of seed `seed` of the experiment folder `base`."""
        return base / CLAIMS / f"seed-{seed}"

    def take(self, base: Path, seed: int) -> bool:
        """Claim seed `seed` of `base` unless another process holds it; True when this sweep holds it now."""
        if (base, seed) in self.held:
            return True
        folder = self.folder(base, seed)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot claim {folder} for the sweep: {err.strerror or err}") from None
        lock = RunLock.try_acquire(folder)
        if lock is not None:
            self.held[(base, seed)] = lock
        return lock is not None

    def release(self, keys: list[tuple[Path, int]]) -> None:
        """Give up these claims (those not held are ignored)."""
        for key in keys:
            lock = self.held.pop(key, None)
            if lock is not None:
                lock.release()

    def release_all(self) -> None:
        """Give up every claim this sweep holds."""
        self.release(list(self.held))


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
            raise UserError(
                f"bad scenario {shown(text)}: write key=value[,key=value], e.g. scenario=Ant,agent_conf=4x2"
            )
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
    if "run.seeds" in overrides:
        raise UserError("--run.seeds is set by the sweep itself (use --batch_seeds to train a point's seeds together)")
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
                    if cfg.run.seeds != 1:
                        raise UserError(
                            f"{main['load_config']} sets run.seeds, which the sweep sets itself (use --batch_seeds)"
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
                    f"{run_dir} was made with {section}.{key} = {shown(theirs.get(key))}, this sweep sets "
                    f"{shown(ours.get(key))}; use another --exp_name for a changed configuration"
                )


def run_seed(run_dir: Path) -> int:
    """The seed of a run folder, from its name `seed-<k>-<timestamp>[-<n>]`."""
    return int(run_dir.name.split("-")[1])


def plan(points: list[GridPoint], claims: Claims) -> None:
    """Claim every point, then classify it as new, resume or done from the run folders already on disk, or as busy
    (see module doc). A point to resume that belongs to a batched run needs the claims of all its batch's seeds."""
    for point in points:
        point.status, point.run_dir, point.batch = "new", None, []
        if not claims.take(point.base, point.seed):
            point.status, point.run_dir = "busy", Claims.folder(point.base, point.seed)
            continue
        runs = sorted(p for p in point.base.glob(f"seed-{point.seed}-*") if p.is_dir())
        held = [r for r in runs if is_held(r)]
        if held:
            point.status, point.run_dir = "busy", held[0]
            continue
        with_ckpt = [(latest_step(r), r) for r in runs]
        usable = [(step, r) for step, r in with_ckpt if step is not None]
        if not usable:
            continue
        step, run_dir = max(usable, key=lambda item: item[0])
        check_same_config(point, run_dir)
        point.run_dir = run_dir
        point.status = "done" if step >= point.target_steps else "resume"
        if point.status == "resume":
            point.batch = batch_folders(run_dir)
            for folder in point.batch:
                if not claims.take(point.base, run_seed(folder)):
                    point.status, point.run_dir = "busy", Claims.folder(point.base, run_seed(folder))
                    break
                if is_held(folder):
                    point.status, point.run_dir = "busy", folder
                    break


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


def consecutive_runs(seeds: list[int]) -> list[list[int]]:
    """Seeds, sorted, split into maximal runs of consecutive ones: [5, 1, 2, 3] -> [[1, 2, 3], [5]]."""
    runs: list[list[int]] = []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return runs


def batch_refusal(point: GridPoint, seeds: int) -> str | None:
    """Why `seeds` seeds of `point`'s configuration cannot train as one batched run (None when they can)."""
    if not get_algorithm(point.algo).batched_seeds:
        able = ", ".join(sorted(name for name, entry in ALGORITHMS.items() if entry.batched_seeds))
        return f"{point.algo} trains one seed per process so far (learners that batch seeds: {able})"
    try:
        config_from_dict(point.config, {"run.seeds": str(seeds)})
    except UserError as err:
        return f"{point.label}: {err}"
    return None


def task_name(point: GridPoint, seeds: list[int]) -> str:
    """A process's name (and its log file's): the point's for one seed, `<label>-seeds<first>-<last>` for a batch."""
    return point.name if len(seeds) == 1 else f"{point.label}-seeds{seeds[0]}-{seeds[-1]}"


def make_tasks(points: list[GridPoint], log_root: Path, batch_seeds: bool = False) -> list[Task]:
    """The processes that start or resume the points that are not done: one `--resume` per run (a batched run's
    seeds resume together), and one process per new seed, or with `batch_seeds` one per run of consecutive new
    seeds of an algorithm × architecture × scenario (`--seed K --seeds N`) where its learner can batch them."""
    tasks: list[Task] = []
    resumed: set[tuple[Path, ...]] = set()
    notes: dict[str, None] = {}
    groups: dict[Path, list[GridPoint]] = {}
    for point in points:
        groups.setdefault(point.base, []).append(point)
    for base, group in groups.items():
        for point in group:
            if point.status != "resume" or tuple(point.batch) in resumed:
                continue
            resumed.add(tuple(point.batch))
            seeds = sorted(run_seed(folder) for folder in point.batch)
            argv = ["--resume", str(point.run_dir), "--num_env_steps", str(point.target_steps)]
            name = task_name(point, seeds)
            claimed = [(base, seed) for seed in seeds]
            tasks.append(Task(name, argv, str(log_root / f"{name}.log"), {"status": "resume"}, claimed))
        new = {point.seed: point for point in group if point.status == "new"}
        for run in consecutive_runs(list(new)):
            refusal = batch_refusal(new[run[0]], len(run)) if batch_seeds and len(run) > 1 else None
            if refusal is not None:
                notes[f"note: --batch_seeds: {refusal}; one process per seed instead"] = None
            together = batch_seeds and refusal is None
            for seeds in [run] if together else [[seed] for seed in run]:
                point = new[seeds[0]]
                argv = [*point.argv, "--seeds", str(len(seeds))] if len(seeds) > 1 else list(point.argv)
                name = task_name(point, seeds)
                claimed = [(base, seed) for seed in seeds]
                tasks.append(Task(name, argv, str(log_root / f"{name}.log"), {"status": "new"}, claimed))
    for note in notes:
        print(note)
    return tasks


def _report(result: dict[str, Any], done: int, total: int) -> None:
    outcome = "failed: " + result["error"] if result["error"] else "finished"
    print(f"[{done}/{total}] {result['name']} ({result['status']}) {outcome} in {result['seconds']:.0f} s", flush=True)


def execute_local(
    tasks: list[Task], workers: int, ended: Callable[[dict[str, Any]], None] = lambda result: None
) -> list[dict[str, Any]]:
    """Run tasks in this process (one worker) or a pool of `workers` spawned processes; `ended` is called with
    each outcome as it arrives."""
    results = []
    if workers == 1:
        for task in tasks:
            results.append(run_task(task))
            ended(results[-1])
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
                ended(results[-1])
                _report(results[-1], len(results), len(tasks))
        except KeyboardInterrupt:  # start no further run; the running ones checkpoint and end on the same Ctrl-C
            for future in futures:
                future.cancel()
            raise
    return results


def execute_ray(
    tasks: list[Task],
    workers: int,
    address: str | None,
    cpus_per_run: float,
    ended: Callable[[dict[str, Any]], None] = lambda result: None,
) -> list[dict[str, Any]]:
    """Run tasks as Ray tasks: on a new local Ray instance with `workers` CPUs, or on the cluster at `address`;
    `ended` is called with each outcome as it arrives."""
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
            ended(results[-1])
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
    batch_seeds: bool = False,
) -> list[dict[str, Any]]:
    """Claim, plan and execute a sweep; returns one outcome per launched process (done and busy points are skipped).

    With `batch_seeds`, consecutive new seeds of a point train as one batched run (see `make_tasks`).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {shown(backend)}; valid: {', '.join(BACKENDS)}")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    claims = Claims()
    try:
        return claim_and_run(points, claims, workers, backend, ray_address, cpus_per_run, batch_seeds)
    finally:
        claims.release_all()


def claim_and_run(
    points: list[GridPoint],
    claims: Claims,
    workers: int,
    backend: str,
    ray_address: str | None,
    cpus_per_run: float,
    batch_seeds: bool,
) -> list[dict[str, Any]]:
    """`run_sweep` with `claims` to take: each process's claims are given up as soon as it ends."""
    plan(points, claims)
    for point in points:
        if point.status == "done":
            print(f"skip   {point.name}: finished in {point.run_dir}")
        elif point.status == "busy":
            pid = holder_pid(point.run_dir)
            who = f"process {pid}" if pid is not None else "another process"
            if point.run_dir.parent.name == CLAIMS:
                print(f"busy   {point.name}: claimed by the sweep in {who}; left alone")
            else:
                print(f"busy   {point.name}: {point.run_dir} is being trained by {who}; left alone")
        elif point.status == "resume":
            print(f"resume {point.name}: {point.run_dir} ({latest_step(point.run_dir)} of {point.target_steps} steps)")
        else:
            for dead in remove_dead_runs(point):
                print(f"note: removed {dead} (no checkpoint, cannot be resumed)")
            print(f"start  {point.name}")
    log_root = points[0].log_dir / "sweep_logs" / points[0].base.name
    tasks = make_tasks(points, log_root, batch_seeds)
    launched = {key for task in tasks for key in task.claimed}
    claims.release([key for key in claims.held if key not in launched])  # done points: nothing left to guard
    if not tasks:
        busy = sum(point.status == "busy" for point in points)
        print(
            f"nothing to run: {busy} run(s) of the sweep are held by other processes, the others are finished"
            if busy
            else "nothing to run: every run of the sweep is finished"
        )
        return []
    for task in tasks:
        if len(task.claimed) > 1:
            seeds = ", ".join(str(seed) for _, seed in task.claimed)
            print(f"batch  {task.name}: seeds {seeds} in one process ({task.extra['status']})")
    claimed = {task.name: task.claimed for task in tasks}
    print(
        f"running {len(tasks)} process(es) for {len(launched)} run(s) on the {backend} backend; "
        f"console output in {log_root}",
        flush=True,
    )

    def ended(result: dict[str, Any]) -> None:
        claims.release(claimed[result["name"]])

    if backend == "ray":
        return execute_ray(tasks, workers, ray_address, cpus_per_run, ended)
    return execute_local(tasks, workers, ended)


def share_cores(workers: int) -> None:
    """In a sweep's pool process: `workers` runs share this machine's cores, so each run started here takes
    its share of them (`harl.utils.threads`)."""
    os.environ[CONCURRENT_RUNS_ENV] = str(workers)


def failures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bad = [r for r in results if r["error"]]
    for r in bad:
        print(f"FAILED {r['name']}: {r['error']}", file=sys.stderr)
    return bad
