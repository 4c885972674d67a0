#!/usr/bin/env bash
# The heterogeneous task of issue #27: HASAC x {HyperMARL, NoPS} and HAPPO x {HyperMARL, NoPS} on MaMuJoCo
# Walker2d 2x3, seeds 1-3 each, the tuned configs unchanged
# (harl/tuned_configs/mamujoco/Walker2d-2x3/{hasac-hypermarl,hasac-nops,happo}.yaml), as run on the 2-core CPU
# machine: one torch thread per process, envs in-process, two processes at a time. HAPPO trains each method's
# three seeds as one batch (--seeds 3; batching pays for on-policy learners), HASAC one solo process per seed (on
# this CPU separate processes outrun a --seeds batch for HASAC: docs/results/seeds). The same env-step budget for
# every run, each capped by a wall-clock limit (the README says what each reached).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
LOG=${LOG:-results/hasac_walker2d}
STEPS=${STEPS:-150000}
MINUTES=${MINUTES:-27}
common=(--env mamujoco --scenario Walker2d --log_dir "$LOG" --n_workers 0 --torch_threads 1
        --num_env_steps "$STEPS" --eval_interval 25000 --eval_episodes 5 --n_eval_rollout_threads 5
        --save_interval 50000 --progress_bar false)
mkdir -p "$LOG"
happo() {  # arch
    .venv/bin/python examples/train.py --algo happo --arch "$1" "${common[@]}" --seed 1 --seeds 3 \
        --time_limit_minutes "$MINUTES" --exp_name "happo-$1" > "$LOG/happo-$1.log" 2>&1
}
hasac() {  # arch seed
    .venv/bin/python examples/train.py --algo hasac --arch "$1" "${common[@]}" --seed "$2" \
        --time_limit_minutes "$MINUTES" --exp_name "hasac-$1" > "$LOG/hasac-$1-seed$2.log" 2>&1
}
(happo nops; hasac hypermarl 1; hasac nops 2; hasac hypermarl 3) &
(happo hypermarl; hasac nops 1; hasac hypermarl 2; hasac nops 3) &
wait
