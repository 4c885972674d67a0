"""Runners: the training loops (on-policy rollouts, off-policy replay)."""

from harl.registry import AlgoEntry
from harl.runners.off_policy import OffPolicyRunner
from harl.runners.on_policy import OnPolicyRunner


def runner_for(algo_entry: AlgoEntry) -> type:
    """The runner class that drives a learner of this kind."""
    return OnPolicyRunner if algo_entry.on_policy else OffPolicyRunner
