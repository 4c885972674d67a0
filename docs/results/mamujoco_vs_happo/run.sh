#!/usr/bin/env bash
# HyperMARL vs HAPPO on MaMuJoCo (issue #23; the HyperMARL paper's v4 Table 3 setting): MAPPO with a hypernetwork
# actor and an ordinary critic (tuned mappo-hypermarl.yaml: generate actor), HAPPO (NoPS), MAPPO FuPS+ID and MAPPO
# with independent actors (NoPS), HARL's tuned on-policy values for the task (harl/tuned_configs/mamujoco/<task>/),
# seeds 1-3 of each method as one batched process (--batch_seeds), WORKERS processes at a time with one torch thread
# each, envs in-process. TASK picks the task folder (Walker2d-2x3, HalfCheetah-2x3, Ant-4x2, Humanoid-17x1), STEPS
# each seed's budget (the paper's: 10M), LOG the results folder. On a larger machine raise WORKERS (and add
# --backend ray --ray_address auto for a cluster); the commands are otherwise the full-budget ones.
set -euo pipefail
cd "$(dirname "$0")/../../.."
TASK=${TASK:-Walker2d-2x3}
STEPS=${STEPS:-10000000}
WORKERS=${WORKERS:-2}
LOG=${LOG:-results/mamujoco_vs_happo}
scenario="scenario=${TASK%-*},agent_conf=${TASK#*-}"
common=(--env mamujoco --scenarios "$scenario" --seeds 3 --batch_seeds --workers "$WORKERS" --exp_name "$TASK"
    --log_dir "$LOG" --num_env_steps "$STEPS" --n_workers 0 --torch_threads 1 --progress_bar false)
.venv/bin/python examples/sweep.py --algos happo --archs nops "${common[@]}"
.venv/bin/python examples/sweep.py --algos mappo --archs hypermarl fups_id nops "${common[@]}"
.venv/bin/python examples/plot.py "$LOG" --out "docs/results/mamujoco_vs_happo/$TASK"
