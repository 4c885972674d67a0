"""A restartable grid of training runs (`harl-sweep` once installed).

    python examples/sweep.py --algos mappo happo --archs nops hypermarl --env mamujoco --seeds 5 --workers 4 \\
        [--batch_seeds] [--scenarios scenario=Ant,agent_conf=4x2 ...] [--backend ray [--ray_address auto]] \\
        [--<key> VALUE ...]

See `harl.sweep_cli`.
"""

import sys

from harl.sweep_cli import cli

if __name__ == "__main__":
    sys.exit(cli())
