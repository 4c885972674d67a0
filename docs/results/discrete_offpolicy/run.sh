#!/bin/bash
# Gumbel-softmax vs exact soft policy loss for HASAC on the 8-agent specialisation matrix game: nops and
# hypermarl, 3 seeds each, 80k env steps (the matrix env config's off-policy settings), one run at a time.
cd "$(dirname "$0")/../../.."
for loss in gumbel exact; do
  nice -n 10 .venv/bin/python examples/sweep.py --algos hasac --archs nops,hypermarl --env matrix \
    --scenarios game=specialisation,n_agents=8 --seeds 3 --workers 1 --exp_name loss-$loss \
    --discrete_policy_loss $loss --log_dir results/discrete_offpolicy --torch_threads 1 --progress_bar false \
    --num_env_steps 80000 --eval_interval 20000
done
.venv/bin/python examples/plot.py results/discrete_offpolicy --out docs/results/discrete_offpolicy
echo DONE
