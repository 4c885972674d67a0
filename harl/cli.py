"""Command-line entry points: `examples/train.py` and `examples/evaluate.py` call these.

Bad input of any kind (unknown algo/arch/env/scenario/config key, ill-typed value, corrupt
checkpoint, missing CUDA) ends the process with exit status 2 and one line on stderr.

A training run holds its run folder (`harl.utils.run_lock`) from before its first write to its exit. A full
disk ends it with one line naming the folder, the space left and how to continue (`harl.utils.disk`).
SIGINT / SIGTERM end it after the current iteration with a checkpoint at the step reached, exit status
130 / 143 and one line naming the folder to `--resume` (`harl.utils.signals`).
"""

from __future__ import annotations

import copy
import dataclasses
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch

from harl.algos.seed_population import member_config
from harl.config import ExperimentConfig, read_yaml
from harl.errors import UserError
from harl.evaluation import evaluate
from harl.experiment import build_config, check_env_compatible, config_from_dict, run_folder, run_folder_base
from harl.registry import (
    ALGORITHMS,
    ARCHITECTURES,
    all_environments,
    get_algorithm,
    get_architecture,
    get_environment,
    load_extensions,
)
from harl.runners import runner_for
from harl.runners.base import Runner, build_learner, resolve_device, seed_configs
from harl.runners.progress import Progress, summary, write_learning_curve
from harl.utils.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint, set_aside_newer
from harl.utils.cli_args import ArgParser, parse_train_args, seed, train_help
from harl.utils.disk import full_disk_reported
from harl.utils.run_lock import RunLock
from harl.utils.signals import StopNow, exit_status, stop_signal, stop_signals
from harl.utils.threads import concurrent_runs


def guarded(main: Callable[[list[str]], int]) -> Callable[..., int]:
    """Turn UserErrors into one line on stderr and exit status 2."""

    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            print(f"interrupted ({signal.Signals(signum).name})", file=sys.stderr)
            return exit_status(signum)

    return wrapper


def print_registry() -> None:
    print("algorithms:")
    for name, entry in sorted(ALGORITHMS.items()):
        kinds = "/".join(k for k, ok in (("discrete", entry.discrete), ("continuous", entry.continuous)) if ok)
        policy = "on-policy" if entry.on_policy else "off-policy"
        update = "sequential (HA)" if entry.sequential else "simultaneous (MA)"
        print(f"  {name:<10} {policy}, {update}, {kinds}: {entry.description}")
    print("architectures:")
    for name, entry in sorted(ARCHITECTURES.items()):
        print(f"  {name:<18} {entry.description}")
    print("environments:")
    for name, entry in all_environments().items():
        print(f"  {name:<10} {entry.description}")
        print(f"             scenarios: {', '.join(entry.scenarios())}")


def check_device(name: str) -> torch.device:
    """The torch device for `--device`, refusing CUDA (or a CUDA index) this machine does not have."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UserError(
            f"--device {name}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
            f"(cuda:0 to cuda:{count - 1}); pick one of them or cpu"
        )
    return device


def saved_config(run_dir: Path, overrides: dict[str, str]) -> ExperimentConfig:
    """A run folder's `config.yaml` with `overrides` applied; a garbled file is one `UserError` line."""
    path = run_dir / "config.yaml"
    try:
        config_from_dict(read_yaml(path))
    except (UserError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise UserError(f"{path} is not a usable harl run config ({err}); --resume needs the one a run wrote") from None
    return config_from_dict(read_yaml(path), overrides)


def train_main(argv: list[str]) -> int:
    main, switches, overrides = parse_train_args(argv)
    concurrent_runs()  # a bad HARL_CONCURRENT_RUNS is one line before anything is printed
    load_extensions()
    if "help" in switches:
        print(train_help(main))
        return 0
    if "list" in switches:
        print_registry()
        return 0
    if "resume" in main:
        if set(main) - {"resume"}:
            raise UserError("--resume takes the run folder only (plus optional --<key> overrides)")
        with stop_signals():
            return resume_run(Path(main["resume"]), overrides)
    cfg, sources = build_config(
        main.get("algo"),
        main.get("arch"),
        main.get("env"),
        overrides,
        main.get("load_config"),
        use_tuned="no_tuned" not in switches,
    )
    if "list_keys" in switches:
        print(cfg.dump(), end="")
        return 0
    check_device(cfg.run.device)
    env_actions = get_environment(cfg.env_name).action_type
    if env_actions is not None:  # options the env's actions rule out are refused before anything is printed
        check_env_compatible(cfg, env_actions(cfg.env))
    base = run_folder_base(cfg)  # names that would leave --log_dir are refused before anything is made
    with stop_signals(), ExitStack() as held, Progress.for_run(cfg.run) as progress:
        locks: list[RunLock] = []
        try:
            with full_disk_reported(base):
                for seed_cfg in seed_configs(cfg):  # one run folder per seed, each held from before its first write
                    locks.append(held.enter_context(run_folder(seed_cfg)))
                folders = [lock.folder for lock in locks]
                runner = runner_for(get_algorithm(cfg.algo_name))(
                    cfg, folders if len(folders) > 1 else folders[0], None
                )
        except BaseException:
            for lock in locks:
                lock.discard()  # a run that could not start leaves no folder behind
            raise
        for source in sources:
            print(f"config layer: {source}")
        with full_disk_reported(folders[0]):
            if len(folders) > 1:
                write_batch_files(folders)
            return train_runner(runner, folders, runner.cfg.dump(), progress)  # with what pre-training learned


BATCH_FILE = "batch.yaml"
"""In each run folder of a batched run (`--seeds N`): the folders of all its seeds, so `--resume` of any resumes all."""


def write_batch_files(folders: list[Path]) -> None:
    """Name every seed's folder (siblings under one experiment folder) in each of them."""
    text = "seeds:\n" + "".join(f"  - {folder.name}\n" for folder in folders)
    for folder in folders:
        (folder / BATCH_FILE).write_text(text)


def batch_folders(run_dir: Path) -> list[Path]:
    """The run folders of the batched run `run_dir` belongs to (just `run_dir` for a solo run), each checked."""
    path = run_dir / BATCH_FILE
    if not path.is_file():
        return [run_dir]
    data = read_yaml(path)
    names = data.get("seeds") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and "/" not in n for n in names):
        raise UserError(f"{path} is not a batch file a harl run wrote (a list of its seeds' run folders)")
    folders = [run_dir.parent / name for name in names]
    for folder in folders:
        if not (folder / "config.yaml").is_file():
            raise UserError(f"{folder}, a seed of the batched run {run_dir} belongs to, is missing or not a run folder")
    return folders


def resume_run(run_dir: Path, overrides: dict[str, str]) -> int:
    """Continue the run in `run_dir` from its newest readable checkpoint, holding the folder throughout; a seed of
    a batched run (`--seeds`) resumes with all its seeds, from the newest step every seed has a checkpoint of.

    Nothing in the folders changes unless the checkpoints load into the configured learner.
    """
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.yaml)")
    folders = batch_folders(run_dir)
    with ExitStack() as held:
        for folder in folders:
            held.enter_context(RunLock.acquire(folder))
        seed_cfgs = [saved_config(folder, overrides) for folder in folders]
        cfg = batch_config(seed_cfgs, folders)
        check_device(cfg.run.device)
        checkpoints = [load_checkpoint(folder / "checkpoints") for folder in folders]
        steps = min(checkpoint["runner"]["env_steps"] for checkpoint in checkpoints)
        checkpoints = [common_step(folder, checkpoint, steps) for folder, checkpoint in zip(folders, checkpoints)]
        with full_disk_reported(run_dir), Progress.for_run(cfg.run) as progress:
            runner = runner_for(get_algorithm(cfg.algo_name))(
                cfg, folders if len(folders) > 1 else run_dir, checkpoints
            )
            for folder, checkpoint in zip(folders, checkpoints, strict=True):
                print(f"resuming {folder} from {checkpoint['path']} at {steps} env steps")
                if "fallback" in checkpoint:
                    print(f"note: {checkpoint['fallback']}")
                for moved in set_aside_newer(folder / "checkpoints", steps):
                    print(f"note: set aside the unreadable {moved.name}")
            if not get_algorithm(cfg.algo_name).on_policy and checkpoints[0].get("buffer") is None:
                print(
                    f"note: {Path(checkpoints[0]['path']).name} holds no replay buffer (saved with save_buffer: "
                    "false); the resumed run refills an empty one"
                )
            return train_runner(runner, folders, cfg.dump(), progress)


def batch_config(seed_cfgs: list[ExperimentConfig], folders: list[Path]) -> ExperimentConfig:
    """The config of a batched run from its seeds' saved configs: the first seed's, over consecutive seeds, with each
    seed's own architecture options where its pre-training learned them (`Pretraining.learned`)."""
    first = seed_cfgs[0]
    pretraining = get_architecture(first.arch_name).pretrain
    learned = () if pretraining is None else pretraining.learned
    for index, (seed_cfg, folder) in enumerate(zip(seed_cfgs, folders, strict=True)):
        if seed_cfg.run.seed != first.run.seed + index:
            raise UserError(f"{folder} holds seed {seed_cfg.run.seed}, not {first.run.seed + index}: not this batch's")
        expected = member_config(first, index)
        expected.arch = dataclasses.replace(expected.arch, **{name: getattr(seed_cfg.arch, name) for name in learned})
        if expected.to_dict() != seed_cfg.to_dict():
            raise UserError(f"{folder}'s config differs from its batch's other seeds beyond the seed")
    cfg = copy.deepcopy(first)
    cfg.run.seeds = len(seed_cfgs)
    if any(seed_cfg.arch != first.arch for seed_cfg in seed_cfgs):
        cfg.seed_archs = [copy.deepcopy(seed_cfg.arch) for seed_cfg in seed_cfgs]
    return cfg


def common_step(folder: Path, checkpoint: dict, steps: int) -> dict:
    """`checkpoint`, or when it is newer than `steps` (a batched run stopped while saving), its folder's checkpoint
    at `steps`, so that every seed resumes from the same step."""
    if checkpoint["runner"]["env_steps"] == steps:
        return checkpoint
    older = [path for path in list_checkpoints(folder / "checkpoints") if checkpoint_step(path) == steps]
    if not older:
        raise UserError(f"{folder} has no checkpoint at {steps} env steps, where its batch's other seeds stopped")
    return load_checkpoint(older[0])


def train_runner(runner: Runner, run_dirs: list[Path], config_text: str, progress: Progress) -> int:
    """Print and save the config (each seed's in its folder), train (reporting to `progress`), and report how the
    run ended: a summary with a learning curve per seed, and exit status 128 + signal when stopped."""
    print(config_text, end="")
    for seed_run in runner.seed_runs:
        seed_text = seed_run.cfg.dump()
        (seed_run.run_dir / "config.yaml").write_text(seed_text)
        seed_run.logger.text("config", f"```\n{seed_text}\n```")
    for run_dir in run_dirs:
        print(f"run folder: {run_dir}", flush=True)
    resume_dir = run_dirs[0]
    try:
        runner.run(progress)
    except StopNow as stop:
        latest = list_checkpoints(resume_dir / "checkpoints")
        then = (
            f"the latest checkpoint is {latest[-1]}; continue with --resume {resume_dir}"
            if latest
            else f"{resume_dir} holds no checkpoint, so the run must start afresh"
        )
        print(
            f"stopped at once by a second {signal.Signals(stop.signum).name} at {runner.env_steps} env steps; {then}",
            file=sys.stderr,
        )
        return exit_status(stop.signum)
    signum = stop_signal()
    for run_dir in run_dirs:
        curve = write_learning_curve(run_dir)
        print("\n".join(summary(run_dir, runner.env_steps, progress.elapsed(), curve, stopped=signum is not None)))
    if signum is not None:
        latest = list_checkpoints(resume_dir / "checkpoints")[-1]
        print(
            f"interrupted by {signal.Signals(signum).name} at {runner.env_steps} env steps: saved {latest}; "
            f"continue with --resume {resume_dir}",
            file=sys.stderr,
        )
        return exit_status(signum)
    return 0


def evaluate_main(argv: list[str]) -> int:
    parser = ArgParser(description="Evaluate a harl checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, a run folder or its checkpoints/")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: the run's eval_episodes)")
    parser.add_argument("--render", action="store_true", help="render the first environment")
    parser.add_argument("--device", default="cpu", help="device to load the policies on (cpu, cuda)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mode")
    parser.add_argument("--seed", type=seed, default=12345, help="seed of the evaluation episodes, in [0, 2**31)")
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes <= 0:
        raise UserError("--episodes must be positive")
    load_extensions()
    device = check_device(args.device)
    checkpoint = load_checkpoint(Path(args.checkpoint))
    if "fallback" in checkpoint:
        print(f"note: {checkpoint['fallback']}")
    cfg = config_from_dict(checkpoint["config"], {"run.device": str(device)})
    n_envs = 1 if args.render else cfg.run.n_eval_rollout_threads
    env = get_environment(cfg.env_name).make(cfg.env, n_envs=n_envs, seed=args.seed, device=device)
    learner = build_learner(cfg, env.spec, device)
    try:
        learner.load_state_dict(checkpoint["learner"])
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise UserError(f"checkpoint {checkpoint['path']} does not fit its own config (corrupt?)") from None
    episodes = args.episodes or cfg.run.eval_episodes
    try:
        metrics = evaluate(learner, env, episodes, not args.stochastic, args.seed, device, render=args.render)
    finally:
        env.close()
    print(f"checkpoint: {checkpoint['path']} ({checkpoint['runner']['env_steps']} env steps)")
    print(
        f"episode return over {episodes} episodes: mean {metrics['eval/episode_return']:.4f} "
        f"std {metrics['eval/episode_return_std']:.4f}"
    )
    if "eval/win_rate" in metrics:
        print(f"win rate: {metrics['eval/win_rate']:.4f}")
    return 0


train = guarded(train_main)
evaluate_cli = guarded(evaluate_main)
