#!/bin/bash
# Is hypermarl's collapse under HASAC on the 8-agent specialisation game the sequential update's? HASAC and
# MASAC (which steps all agents at once) with the settings of run.sh (gumbel loss, 80k env steps, 3 seeds,
# one run at a time); figures and summary in simultaneous/.
cd "$(dirname "$0")/../../.."
nice -n 10 .venv/bin/python examples/sweep.py --algos hasac,masac --archs nops,hypermarl --env matrix \
  --scenarios game=specialisation,n_agents=8 --seeds 3 --workers 1 --exp_name gumbel \
  --log_dir results/discrete_offpolicy_simultaneous --torch_threads 1 --progress_bar false \
  --num_env_steps 80000 --eval_interval 20000
.venv/bin/python examples/plot.py results/discrete_offpolicy_simultaneous \
  --out docs/results/discrete_offpolicy/simultaneous
echo DONE
