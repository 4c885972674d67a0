"""IQM learning curves and final scores of a results directory (`harl-plot` once installed).

    python examples/plot.py RESULTS_DIR [--out DIR] [--metric eval/episode_return] [--reps 2000] [--max_steps N]

See `harl.research.plotting`.
"""

import sys

from harl.research.plotting import cli

if __name__ == "__main__":
    sys.exit(cli())
