#!/usr/bin/env bash
# The collapse check over three seeds (issue #27, session 14): HASAC on SMAX smacv2_5_units, seeds 1-3 of each arm
# trained as one batched process (--seeds 3), 30k env steps = the 10k-step warm-up then 1,000 updates, one torch
# thread each, two processes at a time. Arms: HyperMARL at the tuned config (actor lr 3e-4, initial temperature
# 0.001), HyperMARL with a 10x larger initial temperature (0.01; stopped after 500 updates), HyperMARL at a 10x
# smaller actor lr (3e-5), and NoPS at the tuned config. Per-agent entropies are in each seed's progress.csv;
# `python docs/results/hasac_smax_entropy/entropy_table.py results/hasac_smax_alpha` prints the table.
set -euo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-results/hasac_smax_alpha}
mkdir -p "$LOG"
run() {  # arch name [options]
    local arch=$1 name=$2
    shift 2
    .venv/bin/python examples/train.py --algo hasac --arch "$arch" --env smacv2 --scenario smacv2_5_units --seed 1 \
        --seeds 3 --log_dir "$LOG" --num_env_steps 30000 --eval_interval 10000 --torch_threads 1 \
        --progress_bar false --time_limit_minutes 50 --exp_name "$name" "$@" > "$LOG/$name.log" 2>&1
}
run hypermarl hypermarl-tuned &
run hypermarl hypermarl-alpha0.01 --alpha 0.01 --num_env_steps 20000 &
wait
run hypermarl hypermarl-lr3e-5 --lr 0.00003 &
run nops nops-tuned &
wait
