#!/usr/bin/env bash
# Phase 2 on MaMuJoCo Walker2d 2x3, after run.sh (150k env steps): HASAC to 200k env steps per seed, HAPPO and the
# MAPPO arms of issue #23's four-method comparison with a 250k budget, two lanes of processes at a time on the 2-core
# CPU machine (one torch thread each, envs in-process, evaluation every 25k steps, 5 episodes).
# - HASAC (hypermarl, nops; seeds 1-3, solo processes): resumed from run.sh's 150k checkpoints with --num_env_steps
#   200000 (replay buffers and random streams restored: a continuation of the same runs).
# - HAPPO (hypermarl, nops) and MAPPO (hypermarl with the tuned generate: actor, fups_id, nops): fresh --seeds 3
#   batches with a 250k budget (their linear learning-rate decay runs over the whole budget, so a 150k run cannot
#   be extended without changing its schedule). HAPPO NoPS serves both issues.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
LOG=${LOG:-results/hasac_walker2d}
STEPS=${STEPS:-250000}  # the on-policy runs' budget
HASAC_STEPS=${HASAC_STEPS:-200000}
MINUTES=${MINUTES:-40}
common=(--env mamujoco --scenario Walker2d --log_dir "$LOG" --n_workers 0 --torch_threads 1 --num_env_steps "$STEPS"
        --eval_interval 25000 --eval_episodes 5 --n_eval_rollout_threads 5 --save_interval 50000 --progress_bar false
        --time_limit_minutes "$MINUTES")
reached() {  # folder(s) budget: whether every folder's latest checkpoint is at the budget (a lane can be rerun)
    local folder latest
    for folder in "${@:1:$#-1}"; do
        latest=$(find "$folder/checkpoints" -name 'step_*.pt' 2>/dev/null | sed 's/.*step_\([0-9]*\)\.pt/\1/' | sort -n | tail -1)
        [[ -n $latest && $latest -ge ${!#} ]] || return 1
    done
}
on_policy() {  # algo arch
    reached "$LOG/mamujoco/Walker2d-2x3/$1-$2/$1-$2-250k"/seed-* "$STEPS" && return
    .venv/bin/python examples/train.py --algo "$1" --arch "$2" "${common[@]}" --seed 1 --seeds 3 \
        --exp_name "$1-$2-250k" > "$LOG/$1-$2-250k.log" 2>&1
}
resume() {  # arch seed
    local folder
    folder=$(ls -d "$LOG"/mamujoco/Walker2d-2x3/hasac-"$1"/hasac-"$1"/seed-"$2"-* | head -1)
    reached "$folder" "$HASAC_STEPS" && return
    .venv/bin/python examples/train.py --resume "$folder" --num_env_steps "$HASAC_STEPS" --time_limit_minutes "$MINUTES" \
        > "$LOG/hasac-$1-seed$2-resume.log" 2>&1
}
lane_a() { resume hypermarl 1; resume hypermarl 2; resume hypermarl 3; resume nops 1; resume nops 2; resume nops 3; }
lane_b() {
    on_policy happo hypermarl; on_policy happo nops; on_policy mappo hypermarl; on_policy mappo fups_id
    on_policy mappo nops
}
case "${1:-both}" in  # a lane alone (e.g. started when a core frees up), or both side by side
    a) lane_a ;;
    b) lane_b ;;
    *) lane_a & lane_b & wait ;;
esac
