"""System Neural Diversity of saved policies on one shared observation set.

    python examples/diversity.py --checkpoints RUN_A RUN_B ... --obs obs.pt [--samples 128] [--metric jsd]
    python examples/diversity.py --checkpoints RUN_A RUN_B --collect 2000 [--obs obs.pt]

See `harl.research.diversity`.
"""

import sys

from harl.research.diversity import cli

if __name__ == "__main__":
    sys.exit(cli())
