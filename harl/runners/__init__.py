"""Runners: the training loops (on-policy rollouts, off-policy replay)."""

from harl.runners.on_policy import OnPolicyRunner


def runner_for(algo_entry):
    """The runner class that drives a learner of this kind."""
    return OnPolicyRunner
