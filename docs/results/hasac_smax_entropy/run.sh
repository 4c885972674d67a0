#!/usr/bin/env bash
# The off-policy collapse check on SMAX (issue #27): HASAC + HyperMARL on smacv2_5_units with the tuned config
# (harl/tuned_configs/smacv2/smacv2_5_units/hasac-hypermarl.yaml: actor lr 3e-4) and with a 10x smaller actor lr
# (3e-5), seed 1, 50k env steps = the 10k-step warm-up then 2,000 updates; each run a solo process with one torch
# thread, the two side by side. Per-agent policy entropies are in each run's progress.csv.
set -euo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-results/hasac_smax_entropy}
common=(--algo hasac --arch hypermarl --env smacv2 --scenario smacv2_5_units --seed 1 --log_dir "$LOG"
        --num_env_steps 50000 --eval_interval 0 --torch_threads 1 --progress_bar false --time_limit_minutes 30)
mkdir -p "$LOG"
(.venv/bin/python examples/train.py "${common[@]}" --exp_name lr3e-4 > "$LOG/lr3e-4.log" 2>&1) &
(.venv/bin/python examples/train.py "${common[@]}" --lr 0.00003 --exp_name lr3e-5 > "$LOG/lr3e-5.log" 2>&1) &
wait
