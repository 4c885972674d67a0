"""HyperMARL vs sequential (heterogeneous-agent) updates, on- and off-policy, on MaMuJoCo.

    python examples/compare_sequential.py --seeds 3 --num_env_steps 1000000 --workers 2
    python examples/compare_sequential.py --seeds 5 --num_env_steps 10000000 --workers 16 --backend ray \\
        --ray_address auto                                   # the paper's budget on a cluster, unchanged

Runs, with the same env-step budget and seeds for every method:

- on-policy: `mappo`+`hypermarl` vs `happo`+`nops` (HAPPO's sequential updates) vs `mappo`+`fups_id`;
- off-policy: `masac`+`hypermarl` vs `hasac`+`nops` (HASAC's sequential updates);

as one restartable sweep (stop it and run the same command again: finished runs are skipped, the
others resume from their checkpoints), then writes IQM learning curves and final-score intervals with
95% stratified-bootstrap CIs and a markdown table (`harl.research.plotting`, i.e. `harl-plot`) to `--out`,
plus `command.md` with the exact command. `--groups on` / `--groups off` runs one half. Other `--<key> VALUE` options
(e.g. `--scenarios scenario=Ant,agent_conf=4x2`, `--obs_mode global`, `--snd_interval 50000`) are passed
to every run.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from harl.cli import guarded
from harl.errors import UserError
from harl.registry import load_extensions
from harl.research import plotting
from harl.sweep import BACKENDS, build_grid, failures, run_sweep
from harl.utils.cli_args import ArgParser

GROUPS = {
    "on": [("mappo", "hypermarl"), ("happo", "nops"), ("mappo", "fups_id")],
    "off": [("masac", "hypermarl"), ("hasac", "nops")],
}


def main(argv: list[str]) -> int:
    """Run the comparison sweep, then plot it into `--out`; 0 when every run finished, 1 when one failed."""
    parser = ArgParser(description="HyperMARL vs sequential updates on MaMuJoCo (on- and off-policy).")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N for every method")
    parser.add_argument("--num_env_steps", required=True, help="the env-step budget of every run")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["scenario=HalfCheetah,agent_conf=2x3"],
        help="MaMuJoCo scenarios: key=value[,key=value] each",
    )
    parser.add_argument("--groups", default="on,off", help="on, off or on,off")
    parser.add_argument("--workers", type=int, default=1, help="concurrent runs")
    parser.add_argument("--backend", default="local", help=f"{' or '.join(BACKENDS)}")
    parser.add_argument("--ray_address", default=None, help="address of an existing Ray cluster (e.g. auto)")
    parser.add_argument("--exp_name", default="compare_sequential", help="experiment name of every run")
    parser.add_argument("--log_dir", default="results/compare_sequential", help="root of this experiment's runs")
    parser.add_argument("--out", default="docs/results/compare_sequential", help="where plots and tables go")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the confidence intervals")
    args, extra = parser.parse_known_args(argv)
    groups = [g for g in args.groups.split(",") if g]
    if not groups or set(groups) - set(GROUPS):
        raise UserError(f"--groups must be a comma-separated subset of {', '.join(GROUPS)}")
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    load_extensions()
    seeds = list(range(1, args.seeds + 1))
    common = ["--num_env_steps", args.num_env_steps, "--log_dir", args.log_dir, *extra]
    points = [
        point
        for group in groups
        for algo, arch in GROUPS[group]
        for point in build_grid([algo], [arch], "mamujoco", args.scenarios, seeds, args.exp_name, common)
    ]
    print(f"{len(points)} runs: {', '.join(f'{a}+{b}' for g in groups for a, b in GROUPS[g])} × {len(seeds)} seeds")
    bad = failures(run_sweep(points, args.workers, args.backend, args.ray_address, 1.0))
    if bad:
        return 1
    out = Path(args.out)
    code = plotting.main([args.log_dir, "--out", str(out), "--reps", str(args.reps)])
    command = "python examples/compare_sequential.py " + " ".join(shlex.quote(a) for a in argv)
    (out / "command.md").write_text(f"Made with:\n\n```bash\n{command}\n```\n")
    return code


cli = guarded(main)

if __name__ == "__main__":
    sys.exit(cli())
