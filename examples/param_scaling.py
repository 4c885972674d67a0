"""Trainable parameters of each architecture as the number of agents grows (HyperMARL paper, Fig. 9).

    python examples/param_scaling.py [--archs nops,fups_id,hypermarl] [--agents 4,16,64] [--out scaling.png]

See `harl.research.param_scaling`.
"""

import sys

from harl.research.param_scaling import cli

if __name__ == "__main__":
    sys.exit(cli())
