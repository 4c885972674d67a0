"""HyperMARL vs sequential (heterogeneous-agent) updates, on- and off-policy, on MaMuJoCo.

    python examples/compare_sequential.py --seeds 3 --num_env_steps 1000000 --workers 2

See `harl.research.compare_sequential`.
"""

import sys

from harl.research.compare_sequential import cli

if __name__ == "__main__":
    sys.exit(cli())
