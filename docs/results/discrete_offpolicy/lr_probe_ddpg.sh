#!/bin/bash
# The same learning-rate question for the deterministic-policy learners: MADDPG and HATD3 + hypermarl at
# lr 2e-3 vs 1e-4 on the 4- and 8-agent specialisation games, 2 seeds, two sweeps side by side;
# figures and summary in lr_probe_ddpg/.
cd "$(dirname "$0")/../../.."
for lr in 0.002 0.0001; do
  nice -n 5 .venv/bin/python examples/sweep.py --algos maddpg,hatd3 --archs hypermarl --env matrix \
    --scenarios game=specialisation,n_agents=4 game=specialisation,n_agents=8 --seeds 2 --workers 1 \
    --exp_name lr$lr --lr $lr --log_dir results/matrix_ddpg_lr --torch_threads 1 --progress_bar false &
done
wait
.venv/bin/python examples/plot.py results/matrix_ddpg_lr --out docs/results/discrete_offpolicy/lr_probe_ddpg
echo DONE
