#!/bin/bash
# The matrix config's off-policy lr 2e-3 against 1e-4 for hypermarl with HASAC and MASAC on the 4-agent
# specialisation and synchronisation games (the env's default budget, 120k env steps), 2 seeds each, two
# sweeps side by side (one thread each); figures and summary in lr_probe_4agents/.
cd "$(dirname "$0")/../../.."
for lr in 0.002 0.0001; do
  nice -n 5 .venv/bin/python examples/sweep.py --algos hasac,masac --archs hypermarl --env matrix \
    --scenarios game=specialisation,n_agents=4 game=synchronisation,n_agents=4 --seeds 2 --workers 1 \
    --exp_name lr$lr --lr $lr --log_dir results/matrix4_lr --torch_threads 1 --progress_bar false &
done
wait
.venv/bin/python examples/plot.py results/matrix4_lr --out docs/results/discrete_offpolicy/lr_probe_4agents
echo DONE
