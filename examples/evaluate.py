"""Evaluate a checkpoint: `python examples/evaluate.py --checkpoint RUN_DIR [--episodes N] [--render]`."""

import sys

from harl.cli import evaluate_cli

if __name__ == "__main__":
    sys.exit(evaluate_cli())
