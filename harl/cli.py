"""Command-line entry points: `examples/train.py` and `examples/evaluate.py` call these.

Bad input of any kind (unknown algo/arch/env/scenario/config key, ill-typed value, corrupt
checkpoint, missing CUDA) ends the process with exit status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harl.config import read_yaml
from harl.errors import UserError
from harl.evaluation import evaluate
from harl.experiment import build_config, config_from_dict, run_folder
from harl.registry import ALGORITHMS, ARCHITECTURES, ENVIRONMENTS, get_algorithm, get_environment, load_extensions
from harl.runners import runner_for
from harl.runners.base import build_learner, resolve_device
from harl.utils.checkpoint import load_checkpoint

MAIN_FLAGS = ("algo", "arch", "env", "load_config", "resume")
SWITCHES = ("list", "list_keys", "no_tuned")

TRAIN_USAGE = (
    "usage: train.py --algo ALGO --arch ARCH --env ENV [--exp_name NAME] [--load_config FILE.yaml] [--seed N] "
    "[--device cpu|cuda] [--<section>.<key> VALUE | --<key> VALUE ...]\n"
    "       train.py --resume RUN_DIR [--<key> VALUE ...]\n"
    "       train.py --list | --algo ALGO --arch ARCH --env ENV --list_keys"
)


def guarded(main: Callable[[list[str]], int]) -> Callable[..., int]:
    """Turn UserErrors into one line on stderr and exit status 2."""

    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: continue from the last checkpoint with --resume RUN_DIR", file=sys.stderr)
            return 130

    return wrapper


def parse_train_args(argv: list[str]) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """Split argv into main flags, switches and config overrides (`--key value` or `--key=value`)."""
    main: dict[str, str] = {}
    switches: set[str] = set()
    overrides: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            print(TRAIN_USAGE)
            raise SystemExit(0)
        if not token.startswith("--") or len(token) == 2:
            raise UserError(f"unexpected argument {token!r}; options look like --key value")
        key, eq, value = token[2:].partition("=")
        if key in SWITCHES:
            switches.add(key)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2):
                raise UserError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        target = main if key in MAIN_FLAGS else overrides
        if key in target:
            raise UserError(f"--{key} given twice")
        target[key] = value
    return main, switches, overrides


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
    for name, entry in sorted(ENVIRONMENTS.items()):
        print(f"  {name:<10} {entry.description}")
        print(f"             scenarios: {', '.join(entry.scenarios())}")


def train_main(argv: list[str]) -> int:
    main, switches, overrides = parse_train_args(argv)
    load_extensions()
    if "list" in switches:
        print_registry()
        return 0
    checkpoint = None
    if "resume" in main:
        if set(main) - {"resume"} or "load_config" in main:
            raise UserError("--resume takes the run folder only (plus optional --<key> overrides)")
        run_dir = Path(main["resume"])
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir} is not a run folder (no config.yaml)")
        cfg = config_from_dict(read_yaml(run_dir / "config.yaml"), overrides)
        checkpoint = load_checkpoint(run_dir / "checkpoints", device=resolve_device(cfg.run.device))
        print(f"resuming {run_dir} from {checkpoint['path']} at {checkpoint['runner']['env_steps']} env steps")
    else:
        if "list_keys" in switches:
            cfg, _ = build_config(
                main.get("algo"),
                main.get("arch"),
                main.get("env"),
                overrides,
                main.get("load_config"),
                use_tuned="no_tuned" not in switches,
            )
            print(cfg.dump(), end="")
            return 0
        cfg, sources = build_config(
            main.get("algo"),
            main.get("arch"),
            main.get("env"),
            overrides,
            main.get("load_config"),
            use_tuned="no_tuned" not in switches,
        )
        for source in sources:
            print(f"config layer: {source}")
        run_dir = run_folder(cfg)
    text = cfg.dump()
    print(text, end="")
    (run_dir / "config.yaml").write_text(text)
    runner = runner_for(get_algorithm(cfg.algo_name))(cfg, run_dir, checkpoint)
    runner.logger.text("config", f"```\n{text}\n```")
    runner.run()
    print(f"run folder: {run_dir}")
    print(f"logs: {run_dir / 'tb'} (tensorboard --logdir {run_dir / 'tb'}), {run_dir / 'progress.csv'}")
    return 0


def evaluate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a harl checkpoint.", exit_on_error=False)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, a run folder or its checkpoints/")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: the run's eval_episodes)")
    parser.add_argument("--render", action="store_true", help="render the first environment")
    parser.add_argument("--device", default="cpu", help="device to load the policies on (cpu, cuda)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mode")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    try:
        args = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code == 0:
            raise
        raise UserError(str(err) if isinstance(err, argparse.ArgumentError) else "bad arguments (see --help)") from None
    if args.episodes is not None and args.episodes <= 0:
        raise UserError("--episodes must be positive")
    load_extensions()
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(Path(args.checkpoint), device=device)
    cfg = config_from_dict(checkpoint["config"], {"run.device": str(device)})
    n_envs = 1 if args.render else cfg.run.n_eval_rollout_threads
    env = get_environment(cfg.env_name).make(cfg.env, n_envs=n_envs, seed=args.seed, device=device)
    learner = build_learner(cfg, env.spec, device)
    try:
        learner.load_state_dict(checkpoint["learner"])
    except (KeyError, RuntimeError, ValueError):
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
