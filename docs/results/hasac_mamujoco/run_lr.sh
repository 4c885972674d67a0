#!/usr/bin/env bash
# Second pass (issue #27): HASAC + HyperMARL on MaMuJoCo HalfCheetah 2x3 at the tuned actor lr (1e-3) and at 10x
# smaller (1e-4, critic lr unchanged), seeds 1-3 each, 150k env steps, each run a solo process (on this CPU separate
# processes outrun a --seeds batch for HASAC: docs/results/seeds), two at a time, one torch thread each, envs
# in-process. Seeds 1-3 at lr 1e-3 are the first pass's batched seeds (a batched seed is its solo run), so these
# extend them past the 64k steps they reached. A run stops at its budget or after MINUTES of wall-clock.
set -euo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-results/hasac_lr}
STEPS=${STEPS:-150000}
MINUTES=${MINUTES:-16}
common=(--algo hasac --arch hypermarl --env mamujoco --log_dir "$LOG" --n_workers 0 --torch_threads 1
        --num_env_steps "$STEPS" --time_limit_minutes "$MINUTES" --eval_interval 25000 --eval_episodes 5
        --n_eval_rollout_threads 5 --save_interval 50000 --progress_bar false)
mkdir -p "$LOG"
run() {  # lr seed
    .venv/bin/python examples/train.py "${common[@]}" --lr "$1" --seed "$2" --exp_name "lr$1" > "$LOG/lr$1-seed$2.log" 2>&1
}
(run 0.001 1; run 0.0001 2; run 0.001 3) &
(run 0.0001 1; run 0.001 2; run 0.0001 3) &
wait
