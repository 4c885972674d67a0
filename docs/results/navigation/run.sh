#!/usr/bin/env bash
# The Navigation study (issue #23; the seed paper's section 5.3, Figure 6): IPPO with NoPS, FuPS, HyperMARL and DiCo
# on VMAS Navigation, different goals, the paper's tuned settings (harl/tuned_configs/vmas/navigation-<n>/: 600 envs
# x 100 steps, 45 epochs of 30 minibatches, [256, 256] tanh, DiCo's SND_des from table 10), seeds 1-3 of each method
# trained as one batched process (--batch_seeds), WORKERS processes at a time with one torch thread each.
# AGENTS picks the team size (2, 4 or 8), STEPS the budget (the paper's: 1M), MINUTES a wall-clock cap per run,
# ARCHS the methods (to split them over sweeps started at different times), PLOT=0 skips the plot, GOALS the goal
# setup of the paper's table 12: different (every agent its own goal), same (one goal for all) or mixed (the first
# n/2 agents share one); each picks its tuned folder (navigation-<n>, -same-goal, -mixed-goals).
set -euo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-results/navigation}
AGENTS=${AGENTS:-4}
STEPS=${STEPS:-1000000}
MINUTES=${MINUTES:-0}
WORKERS=${WORKERS:-2}
ARCHS=${ARCHS:-nops fups hypermarl dico}
PLOT=${PLOT:-1}
GOALS=${GOALS:-different}
case "$GOALS" in
    different) SHARING=1 SUFFIX= ;;
    same) SHARING=$AGENTS SUFFIX=-same-goal ;;
    mixed) [ $((AGENTS % 2)) = 0 ] && [ "$AGENTS" -ge 4 ] \
        || { echo "run.sh: GOALS=mixed needs an even AGENTS of at least 4 (half the team shares a goal), got $AGENTS" >&2; exit 2; }
        SHARING=$((AGENTS / 2)) SUFFIX=-mixed-goals ;;
    *) echo "run.sh: GOALS must be different, same or mixed, got '$GOALS'" >&2; exit 2 ;;
esac
.venv/bin/python examples/sweep.py --algos ippo --archs $ARCHS --env vmas \
    --scenarios "scenario=navigation,n_agents=$AGENTS,agents_with_same_goal=$SHARING" --seeds 3 --batch_seeds --workers "$WORKERS" \
    --exp_name "navigation-$AGENTS$SUFFIX" --log_dir "$LOG" --num_env_steps "$STEPS" --time_limit_minutes "$MINUTES" \
    --torch_threads 1 --progress_bar false
[ "$PLOT" = 0 ] || .venv/bin/python examples/plot.py "$LOG" --out "docs/results/navigation/agents-$AGENTS$SUFFIX"
