"""The matrix-game study (HyperMARL paper section 3.3 / Table 2, with HyperMARL rows).

    python examples/matrix_games.py                       # the full study
    python examples/matrix_games.py --agents 2 --seeds 1 --trials 500 --out -   # a quick look

See `harl.research.matrix_study`.
"""

import sys

from harl.research.matrix_study import cli

if __name__ == "__main__":
    sys.exit(cli())
