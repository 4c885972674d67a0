"""The on-policy rollout: values of a feed-forward critic evaluated after the rollout, time-limit bootstraps."""

from __future__ import annotations

import pytest
import torch

from harl.experiment import build_config
from harl.registry import load_extensions
from harl.runners.on_policy import OnPolicyRunner


@pytest.mark.parametrize("n_workers", [0, 1])
def test_rollout_values_and_time_limit_bootstraps(tmp_path, n_workers):
    """buffer.values[t] = V(s_t); at a time-limit cut the reward gains γ·V(final state); the returned
    next values are V of the states after the rollout. Checked against per-step critic calls."""
    load_extensions()
    overrides = {
        "n_rollout_threads": 3,
        "n_workers": n_workers,
        "episode_limit": 5,
        "episode_length": 12,
        "hidden_sizes": [16, 16],
        "progress_bar": "false",
    }
    cfg, _ = build_config("mappo", "nops", "mamujoco", overrides)
    runner = OnPolicyRunner(cfg, tmp_path)
    try:
        outs = []
        stepper = "step_wait" if hasattr(runner.env, "step_async") else "step"
        original = getattr(runner.env, stepper)

        def recording(*args):
            outs.append(original(*args))
            return outs[-1]

        setattr(runner.env, stepper, recording)
        next_values = runner.collect()
        buffer, learner, gamma = runner.buffer, runner.learner, cfg.algo.gamma
        for t in range(buffer.length):
            torch.testing.assert_close(buffer.values[t], learner.values(buffer.state[t])[0])
            expected = outs[t].reward.clone()  # (E, N)
            cut = outs[t].truncated & ~outs[t].terminated
            expected[cut] += gamma * learner.values(outs[t].final_state[cut])[0]
            torch.testing.assert_close(buffer.rewards[t], expected)
            assert torch.equal(buffer.dones[t], outs[t].done.float())
        assert [int(out.truncated.sum()) for out in outs].count(3) == 2  # all 3 envs cut at steps 5 and 10
        torch.testing.assert_close(next_values, learner.values(outs[-1].state)[0])
        assert not torch.equal(buffer.rewards[4], outs[4].reward)  # the bootstrap was added
    finally:
        runner.close()
