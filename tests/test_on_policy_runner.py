"""The on-policy rollout: the critic evaluated after it (feed-forward or recurrent), time-limit bootstraps."""

from __future__ import annotations

import pytest
import torch

from harl.algos.advantages import bootstrapped_rewards, gae
from harl.buffers.rollout import TimeLimitCut
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
    """Against critic calls made step by step, as the rollout unfolds: values[t] = V(s_t | h_t); at a time-limit
    cut the reward gains γ·V(final state | hidden after the step) (the buffer keeps what the env gave); values[T]
    is V of the states after the rollout; a recurrent critic's chunk-start and carried hidden states match."""
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
        hidden = None if learner.critic_carry is None else learner.critic_carry.clone()  # (E, N, H) or None
        assert not recurrent or hidden.abs().sum() > 0
        outs = []
        original = runner.env.step

        def recording(actions):
            outs.append(original(actions))
            return outs[-1]

        runner.env.step = recording
        runner.collect()
        rollout = learner.value_rollout(buffer)
        rewards = bootstrapped_rewards(buffer.rewards, buffer.cuts, rollout.cut_values, gamma)
        for t in range(buffer.length):
            if recurrent and t % chunk == 0:
                torch.testing.assert_close(rollout.chunk_hidden[t // chunk], hidden)
            values, after = learner.values(learner.critic.inputs(buffer.obs[t], buffer.state[t]), hidden)
            torch.testing.assert_close(rollout.values[t], values)
            assert torch.equal(buffer.rewards[t], outs[t].reward)
            expected = outs[t].reward.clone()  # (E, N)
            cut = outs[t].truncated & ~outs[t].terminated
            if cut.any():
                final_hidden = None if after is None else after[cut]
                final = learner.critic.inputs(outs[t].final_obs[cut], outs[t].final_state[cut])
                expected[cut] += gamma * learner.values(final, final_hidden)[0]
            torch.testing.assert_close(rewards[t], expected)
            assert torch.equal(buffer.dones[t], outs[t].done.float())
            hidden = reset_hidden(after, outs[t].done.float())
        assert [t for t, out in enumerate(outs) if out.truncated.all()] == [1, 5, 9]  # all 3 envs cut
        assert not torch.equal(rewards[1], outs[1].reward)  # the bootstrap was added
        after_rollout = learner.critic.inputs(outs[-1].obs, outs[-1].state)
        torch.testing.assert_close(rollout.values[-1], learner.values(after_rollout, hidden)[0])
        if recurrent:
            torch.testing.assert_close(learner.critic_carry, hidden)
    finally:
        runner.close()


def test_gae_at_lambda_one_and_zero():
    """λ = 1: returns are the discounted reward sums to each episode's end (bootstrapped with V after the rollout
    where the episode goes on); λ = 0: advantages are the one-step TD errors. Episode ends cut both."""
    torch.manual_seed(0)
    t, e, n, gamma = 6, 3, 2, 0.9
    rewards, values = torch.randn(t, e, n), torch.randn(t + 1, e, n)
    dones = torch.zeros(t, e)
    dones[2, 0] = dones[5, 1] = 1.0
    advantages, returns = gae(rewards, values, dones, gamma, 1.0)
    expected = torch.zeros(t, e, n)
    running = values[t].clone()  # (E, N)
    for step in reversed(range(t)):
        running = rewards[step] + gamma * running * (1 - dones[step]).unsqueeze(-1)
        expected[step] = running
    torch.testing.assert_close(returns, expected)
    torch.testing.assert_close(advantages, expected - values[:-1])
    td, _ = gae(rewards, values, dones, gamma, 0.0)
    torch.testing.assert_close(td, rewards + gamma * values[1:] * (1 - dones).unsqueeze(-1) - values[:-1])


def test_time_limit_bootstraps_add_the_discounted_final_values_at_the_cuts():
    rewards = torch.zeros(4, 3, 2)
    cuts = [TimeLimitCut(1, torch.tensor([0, 2]), None, None), TimeLimitCut(3, torch.tensor([1]), None, None)]
    cut_values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # (Σk, N) in the cuts' order
    out = bootstrapped_rewards(rewards, cuts, cut_values, 0.5)
    assert rewards.abs().sum() == 0  # the buffer's rewards are left as collected
    torch.testing.assert_close(out[1, 0], torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(out[1, 2], torch.tensor([1.5, 2.0]))
    torch.testing.assert_close(out[3, 1], torch.tensor([2.5, 3.0]))
    assert out.abs().sum() == 0.5 * cut_values.sum()
    assert bootstrapped_rewards(rewards, [], None, 0.5) is rewards
