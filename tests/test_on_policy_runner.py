"""The on-policy rollout: the critic evaluated after it (feed-forward or recurrent), time-limit bootstraps."""

from __future__ import annotations

import pytest
import torch

from harl.experiment import build_config
from harl.models.recurrent import reset_hidden
from harl.registry import load_extensions
from harl.runners.on_policy import OnPolicyRunner


@pytest.mark.parametrize(
    "algo, n_workers, recurrent, chunk",
    [
        ("mappo", 0, False, 4),
        ("mappo", 1, False, 4),
        ("mappo", 1, True, 4),
        ("mappo", 0, True, 5),
        ("ippo", 0, False, 4),
        ("ippo", 0, True, 4),
    ],
    ids=["in-process", "worker", "worker-recurrent", "recurrent-chunks-divide-rollout", "ippo", "ippo-recurrent"],
)
def test_rollout_values_and_time_limit_bootstraps(tmp_path, algo, n_workers, recurrent, chunk):
    """Against critic calls made step by step, as the rollout unfolds: buffer.values[t] = V(s_t | h_t); at a
    time-limit cut the reward gains γ·V(final state | hidden after the step); the returned next values are
    V of the states after the rollout; a recurrent critic's chunk-start and carried hidden states match."""
    load_extensions()
    overrides = {
        "n_rollout_threads": 3,
        "n_workers": n_workers,
        "episode_limit": 4,  # episodes end at steps 3, 7, 11, 15, 19 of the two rollouts of 10 steps
        "episode_length": 10,
        "hidden_sizes": [16, 16],
        "progress_bar": "false",
        "recurrent": str(recurrent).lower(),
        "data_chunk_length": chunk,  # 10 steps: chunks of 4 (the last padded) or 5
    }
    cfg, _ = build_config(algo, "nops", "mamujoco", overrides)
    runner = OnPolicyRunner(cfg, tmp_path)
    try:
        buffer, learner, gamma = runner.buffer, runner.learner, cfg.algo.gamma
        runner.collect()  # the second rollout starts mid-episode, from carried hidden states, and ends an episode
        learner.value_rollout(buffer)
        hidden = None if buffer.critic_carry is None else buffer.critic_carry.clone()  # (E, N, H) or None
        assert not recurrent or hidden.abs().sum() > 0
        outs = []
        original = runner.env.step

        def recording(actions):
            outs.append(original(actions))
            return outs[-1]

        runner.env.step = recording
        runner.collect()
        learner.value_rollout(buffer)
        rewards = buffer.rewards.clone()
        learner.value_rollout(buffer)  # once per rollout: no second bootstrap
        torch.testing.assert_close(buffer.rewards, rewards)
        for t in range(buffer.length):
            if recurrent and t % chunk == 0:
                torch.testing.assert_close(buffer.critic_hidden[t // chunk], hidden)
            values, after = learner.values(learner.critic.inputs(buffer.obs[t], buffer.state[t]), hidden)
            torch.testing.assert_close(buffer.values[t], values)
            expected = outs[t].reward.clone()  # (E, N)
            cut = outs[t].truncated & ~outs[t].terminated
            if cut.any():
                final_hidden = None if after is None else after[cut]
                final = learner.critic.inputs(outs[t].final_obs[cut], outs[t].final_state[cut])
                expected[cut] += gamma * learner.values(final, final_hidden)[0]
            torch.testing.assert_close(buffer.rewards[t], expected)
            assert torch.equal(buffer.dones[t], outs[t].done.float())
            hidden = reset_hidden(after, outs[t].done.float())
        assert [t for t, out in enumerate(outs) if out.truncated.all()] == [1, 5, 9]  # all 3 envs cut
        assert not torch.equal(buffer.rewards[1], outs[1].reward)  # the bootstrap was added
        after_rollout = learner.critic.inputs(outs[-1].obs, outs[-1].state)
        torch.testing.assert_close(buffer.values[-1], learner.values(after_rollout, hidden)[0])
        if recurrent:
            torch.testing.assert_close(buffer.critic_carry, hidden)
    finally:
        runner.close()
