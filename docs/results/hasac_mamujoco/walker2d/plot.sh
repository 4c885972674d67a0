#!/usr/bin/env bash
# The Walker2d 2x3 figures and tables from the runs of run.sh and run_phase2.sh (under LOG): each comparison's runs
# (their progress.csv and config.yaml) are copied into a folder of their own, then plotted with examples/plot.py
# (IQM and 95% bootstrap CIs over seeds) at its budget.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
LOG=${LOG:-results/hasac_walker2d}
OUT=docs/results/hasac_mamujoco/walker2d
TASK=$LOG/mamujoco/Walker2d-2x3
PLOTS=${PLOTS:-results/hasac_walker2d_plots}
link() {  # comparison method_folder/experiment...
    local target=$PLOTS/$1/mamujoco/Walker2d-2x3 seed
    shift
    for run in "$@"; do
        for seed in "$TASK/$run"/seed-*; do
            mkdir -p "$target/$run/$(basename "$seed")"
            cp "$seed/progress.csv" "$seed/config.yaml" "$target/$run/$(basename "$seed")/"
        done
    done
}
rm -rf "$PLOTS"
# Issue #27 at 150k (run.sh): HASAC's runs (continued later, cut here) against the 150k HAPPO runs
link at150k hasac-hypermarl/hasac-hypermarl hasac-nops/hasac-nops happo-hypermarl/happo-hypermarl happo-nops/happo-nops
# Issue #27 at 200k: HASAC continued to 200k; HAPPO from its 250k-budget runs, cut at 200k
link at200k hasac-hypermarl/hasac-hypermarl hasac-nops/hasac-nops happo-hypermarl/happo-hypermarl-250k \
    happo-nops/happo-nops-250k
# Issue #23 at 250k: the HyperMARL paper's MaMuJoCo comparison (v4 Table 3), HAPPO and three MAPPO arms
link mappo250k happo-nops/happo-nops-250k mappo-hypermarl/mappo-hypermarl-250k mappo-fups_id/mappo-fups_id-250k \
    mappo-nops/mappo-nops-250k happo-hypermarl/happo-hypermarl-250k
.venv/bin/python examples/plot.py "$PLOTS/at150k" --out "$OUT/at150k" --max_steps 152000
.venv/bin/python examples/plot.py "$PLOTS/at200k" --out "$OUT/at200k" --max_steps 201000
.venv/bin/python examples/plot.py "$PLOTS/mappo250k" --out "docs/results/mamujoco_vs_happo/Walker2d-2x3" --max_steps 252000
