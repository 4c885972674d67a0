#!/bin/bash
# hypermarl's policies are deterministic from the first logged update at the matrix config's lr 2e-3 (entropy
# 0.0): probe HASAC and MASAC + hypermarl at a 20x smaller actor learning rate (1e-4), 3 seeds, else as
# simultaneous.sh; figures and summary in lr_probe/.
cd "$(dirname "$0")/../../.."
nice -n 10 .venv/bin/python examples/sweep.py --algos hasac,masac --archs hypermarl --env matrix \
  --scenarios game=specialisation,n_agents=8 --seeds 3 --workers 1 --exp_name gumbel-lr1e-4 --lr 0.0001 \
  --log_dir results/discrete_offpolicy_lr --torch_threads 1 --progress_bar false \
  --num_env_steps 80000 --eval_interval 20000
.venv/bin/python examples/plot.py results/discrete_offpolicy_lr --out docs/results/discrete_offpolicy/lr_probe
echo DONE
