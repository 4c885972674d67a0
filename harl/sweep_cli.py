"""The `harl-sweep` command (`python examples/sweep.py` in the repository): run a grid of training runs
(algorithms × architectures × scenarios × seeds), restartable.

    harl-sweep --algos mappo happo --archs nops hypermarl --env mamujoco \\
        --scenarios scenario=HalfCheetah,agent_conf=2x3 scenario=Ant,agent_conf=4x2 --seeds 5 --workers 4 \\
        --exp_name paper --num_env_steps 1e7
    harl-sweep ... --backend ray [--ray_address auto]     # the same grid on a Ray cluster

`--seeds N` runs seeds 1..N (or give a list: `--seeds 3,7`); with `--batch_seeds` the consecutive seeds of each
algorithm × architecture × scenario train in one process as one batched run (`harl-train --seed K --seeds N`,
for the learners that can batch seeds; the others run one process per seed). A scenario is `key=value[,key=value]`
env options (a bare name means `scenario=<name>`); without `--scenarios` the env's defaults are used.
Any other `--<key> VALUE` (and `--load_config FILE`, `--no_tuned`) is passed to every run, as for
`harl-train`. Stopping and re-running the same command skips finished runs and resumes unfinished ones
from their latest checkpoints (see `harl.sweep`). Exit status: 0 when every run finished, 1 when a
run failed (the others still run), 2 on bad input.
"""

from __future__ import annotations

import sys

from harl.cli import guarded
from harl.errors import UserError, shown
from harl.registry import load_extensions
from harl.sweep import BACKENDS, build_grid, failures, run_sweep
from harl.utils.cli_args import ArgParser

PASSED_THROUGH = (
    "Every other option is passed through to each training run, as harl-train takes it: --<key> VALUE and "
    "--<section>.<key> VALUE config overrides (any option harl-train --help lists, e.g. --num_env_steps 1e7 --lr "
    "3e-4), --load_config FILE and --no_tuned. The sweep sets --algo, --arch, --env, --seed, --seeds and --exp_name "
    "of each run itself; --resume, --list and --list_keys are refused."
)
"""`--help`'s epilog: which options go to the training runs."""


def names(values: list[str]) -> list[str]:
    """Space- and/or comma-separated names."""
    return [name for value in values for name in value.split(",") if name]


def seed_list(text: str) -> list[int]:
    """`N` as seeds 1..N, or a comma-separated list of seeds."""
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise UserError(f"--seeds expects N or a comma-separated list of seeds, got {shown(text)}") from None
    if not values or (len(values) == 1 and values[0] < 1):
        raise UserError("--seeds must be at least 1")
    return list(range(1, values[0] + 1)) if len(values) == 1 and "," not in text else values


def main(argv: list[str]) -> int:
    """Run the grid given in `argv`; 0 when every run finished, 1 when one failed."""
    parser = ArgParser(description="Run a restartable grid of training runs.", epilog=PASSED_THROUGH)
    parser.add_argument("--algos", nargs="+", required=True, help="algorithms (space or comma separated)")
    parser.add_argument("--archs", nargs="+", required=True, help="architectures")
    parser.add_argument("--env", required=True, help="environment")
    parser.add_argument("--scenarios", nargs="+", default=[], help="scenarios: key=value[,key=value] each")
    parser.add_argument("--seeds", required=True, help="number of seeds (1..N) or a comma-separated list of seeds")
    parser.add_argument("--workers", type=int, default=1, help="concurrent runs (local pool / local Ray instance)")
    parser.add_argument("--backend", default="local", help=f"{' or '.join(BACKENDS)}")
    parser.add_argument("--ray_address", default=None, help="address of an existing Ray cluster (e.g. auto)")
    parser.add_argument("--cpus_per_run", type=float, default=1.0, help="CPUs Ray reserves per run")
    parser.add_argument("--exp_name", default="sweep", help="experiment name (a folder level of every run)")
    parser.add_argument(
        "--batch_seeds",
        action="store_true",
        help="train the consecutive seeds of each algo × arch × scenario in one process (--seeds N of harl-train)",
    )
    args, extra = parser.parse_known_args(argv)
    if args.backend not in BACKENDS:
        raise UserError(f"unknown backend {shown(args.backend)}; valid: {', '.join(BACKENDS)}")
    load_extensions()
    points = build_grid(
        names(args.algos), names(args.archs), args.env, args.scenarios, seed_list(args.seeds), args.exp_name, extra
    )
    print(f"sweep {args.exp_name}: {len(points)} runs ({args.env})")
    results = run_sweep(points, args.workers, args.backend, args.ray_address, args.cpus_per_run, args.batch_seeds)
    return 1 if failures(results) else 0


cli = guarded(main)

if __name__ == "__main__":
    sys.exit(cli())
