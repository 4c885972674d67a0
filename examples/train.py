"""Train a multi-agent policy: `python examples/train.py --algo mappo --arch nops --env mamujoco`.

See `--list` for the registered algorithms, architectures and environments, `--help` for every option, and
docs/configuration.md and docs/runs.md for the config system, run folders and resuming.
"""

import sys

from harl.cli import train

if __name__ == "__main__":
    sys.exit(train())
