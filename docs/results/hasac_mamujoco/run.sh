#!/usr/bin/env bash
# The HASAC/HAPPO x HyperMARL/NoPS study on MaMuJoCo HalfCheetah 2x3 (issue #27), as run on the 2-core CPU machine:
# each method's 3 seeds trained as one batch (--seeds 3), two processes at a time, one torch thread each, envs
# in-process; the same env-step budget for every method, capped by a wall-clock limit (the table says what
# each reached). Tuned configs: harl/tuned_configs/mamujoco/HalfCheetah-2x3/{hasac-hypermarl,hasac-nops,happo}.yaml.
set -euo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-results/hasac_mamujoco}
STEPS=${STEPS:-200000}
MINUTES=${MINUTES:-70}
common=(--env mamujoco --seed 1 --seeds 3 --exp_name study --log_dir "$LOG" --n_workers 0 --torch_threads 1
        --num_env_steps "$STEPS" --time_limit_minutes "$MINUTES" --eval_interval 25000 --eval_episodes 5
        --n_eval_rollout_threads 5 --save_interval 50000)
mkdir -p "$LOG"
# The two off-policy runs first (the long ones), then the two on-policy runs.
(.venv/bin/python examples/train.py --algo hasac --arch hypermarl "${common[@]}" > "$LOG/hasac-hypermarl.log" 2>&1) &
(.venv/bin/python examples/train.py --algo hasac --arch nops "${common[@]}" > "$LOG/hasac-nops.log" 2>&1) &
wait
(.venv/bin/python examples/train.py --algo happo --arch hypermarl "${common[@]}" > "$LOG/happo-hypermarl.log" 2>&1) &
(.venv/bin/python examples/train.py --algo happo --arch nops "${common[@]}" > "$LOG/happo-nops.log" 2>&1) &
wait
