"""Replay buffer: n-step targets against hand computations (episode ends, truncation vs termination),
wrap-around, O(batch) uniform sampling and checkpoint state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harl.buffers.replay import ReplayBuffer
from harl.spec import EnvSpec

N_AGENTS = 2


def tiny_spec() -> EnvSpec:
    return EnvSpec(
        agent_ids=("a", "b"),
        obs_dims=(1, 1),
        state_dim=1,
        action_type="continuous",
        act_dims=(1, 1),
        act_low=-np.ones((2, 1), np.float32),
        act_high=np.ones((2, 1), np.float32),
    )


def fill(buffer: ReplayBuffer, rewards: list[list[float]], terminated: list[list[bool]], truncated: list[list[bool]]):
    """Insert steps s = 0, 1, ...: obs = s, next obs = 1000 + s (agent b: its reward is 10x agent a's)."""
    for s, (r, term, trunc) in enumerate(zip(rewards, terminated, truncated, strict=True)):
        e = len(r)
        obs = torch.full((e, N_AGENTS, 1), float(s))
        reward = torch.tensor(r).unsqueeze(1) * torch.tensor([1.0, 10.0])  # (E, N)
        buffer.insert(
            obs,
            obs[:, 0],
            obs,
            reward,
            obs + 1000,
            obs[:, 0] + 1000,
            torch.tensor(term),
            torch.tensor(trunc),
        )


def gather(buffer: ReplayBuffer, t: int, e: int):
    return buffer.gather(torch.tensor([t]), torch.tensor([e]))


def test_n_step_targets_match_hand_computation():
    # env 0: reward s + 1 at step s, truncated after step 1, terminated after step 3; env 1: 100 + s, no ends.
    buffer = ReplayBuffer(tiny_spec(), buffer_size=100, n_envs=2, n_step=3, gamma=0.5, device=torch.device("cpu"))
    steps = range(6)
    fill(
        buffer,
        rewards=[[s + 1.0, 100.0 + s] for s in steps],
        terminated=[[s == 3, False] for s in steps],
        truncated=[[s == 1, False] for s in steps],
    )
    # (t, e): (team reward of agent a, discount, steps taken, step whose next obs bootstraps)
    expected = {
        (0, 0): (1 + 0.5 * 2, 0.25, 2, 1),  # stops after the truncation and bootstraps from its final obs
        (1, 0): (2, 0.5, 1, 1),
        (2, 0): (3 + 0.5 * 4, 0.0, 2, 3),  # stops after the termination: no bootstrap
        (3, 0): (4, 0.0, 1, 3),
        (4, 0): (5 + 0.5 * 6, 0.25, 2, 5),  # step 6 is not written yet: a shorter window
        (5, 0): (6, 0.5, 1, 5),
        (0, 1): (100 + 0.5 * 101 + 0.25 * 102, 0.125, 3, 2),
        (3, 1): (103 + 0.5 * 104 + 0.25 * 105, 0.125, 3, 5),
        (4, 1): (104 + 0.5 * 105, 0.25, 2, 5),
    }
    for (t, e), (reward, discount, n, last) in expected.items():
        batch = gather(buffer, t, e)
        assert batch.reward[0].tolist() == pytest.approx([reward, 10 * reward]), (t, e)
        assert batch.discount.item() == pytest.approx(discount), (t, e)
        assert batch.steps.item() == n, (t, e)
        assert batch.obs[0, :, 0].tolist() == [t, t] and batch.state.item() == t
        assert batch.next_obs[0, :, 0].tolist() == [1000 + last] * 2 and batch.next_state.item() == 1000 + last


def test_wrap_around_keeps_the_newest_steps_and_never_reads_across_the_head():
    buffer = ReplayBuffer(tiny_spec(), buffer_size=4, n_envs=1, n_step=3, gamma=0.5, device=torch.device("cpu"))
    assert buffer.length == 4
    fill(buffer, rewards=[[s + 1.0] for s in range(6)], terminated=[[False]] * 6, truncated=[[False]] * 6)
    assert len(buffer) == 4 and buffer.head == 2
    assert buffer.obs[:, 0, 0, 0].tolist() == [4, 5, 2, 3]  # slot = step % 4
    oldest, newest, middle = gather(buffer, 2, 0), gather(buffer, 1, 0), gather(buffer, 3, 0)
    assert oldest.reward[0, 0].item() == pytest.approx(3 + 0.5 * 4 + 0.25 * 5) and oldest.steps.item() == 3
    assert newest.reward[0, 0].item() == pytest.approx(6) and newest.steps.item() == 1  # not step 2 after it
    assert newest.next_obs[0, 0, 0].item() == 1005
    assert middle.reward[0, 0].item() == pytest.approx(4 + 0.5 * 5 + 0.25 * 6)  # wraps from slot 3 to 0, 1
    assert middle.next_obs[0, 0, 0].item() == 1005


def test_sampling_is_uniform_over_written_slots_and_o_batch(monkeypatch):
    buffer = ReplayBuffer(tiny_spec(), buffer_size=200_000, n_envs=4, n_step=5, gamma=0.99, device=torch.device("cpu"))
    fill(buffer, rewards=[[1.0] * 4] * 50, terminated=[[False] * 4] * 50, truncated=[[False] * 4] * 50)
    sizes = []
    randint = torch.randint

    def recording_randint(high, size, **kwargs):
        sizes.append(tuple(size))
        return randint(high, size, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("sampling must not permute the buffer")

    monkeypatch.setattr(torch, "randint", recording_randint)
    monkeypatch.setattr(torch, "randperm", forbidden)
    generator = torch.Generator().manual_seed(0)
    batch = buffer.sample(20_000, generator)
    assert sizes == [(20_000,)]
    steps = batch.obs[:, 0, 0].long()
    assert steps.min() == 0 and steps.max() == 49  # only the 50 written steps (of 50 000 slots)
    counts = torch.bincount(steps, minlength=50).float()
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_state_dict_round_trip():
    spec, device = tiny_spec(), torch.device("cpu")
    buffer = ReplayBuffer(spec, buffer_size=8, n_envs=2, n_step=3, gamma=0.5, device=device)
    fill(
        buffer,
        rewards=[[float(s), -float(s)] for s in range(6)],
        terminated=[[False, s == 2] for s in range(6)],
        truncated=[[s == 4, False] for s in range(6)],
    )
    restored = ReplayBuffer(spec, buffer_size=8, n_envs=2, n_step=3, gamma=0.5, device=device)
    restored.load_state_dict(buffer.state_dict())
    assert (restored.head, restored.filled) == (buffer.head, buffer.filled)
    t, e = torch.arange(4).repeat(2), torch.arange(2).repeat_interleave(4)
    a, b = buffer.gather(t, e), restored.gather(t, e)
    for name in ("obs", "reward", "discount", "next_obs", "steps"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_cut_episodes_stops_targets_at_the_newest_step_with_a_bootstrap():
    # a resumed run restarts every env from a new episode: no target may run from old steps into new ones
    buffer = ReplayBuffer(tiny_spec(), buffer_size=20, n_envs=1, n_step=3, gamma=0.5, device=torch.device("cpu"))
    fill(buffer, rewards=[[1.0], [2.0]], terminated=[[False], [False]], truncated=[[False], [False]])
    buffer.cut_episodes()
    fill(buffer, rewards=[[50.0]] * 3, terminated=[[False]] * 3, truncated=[[False]] * 3)  # steps "0, 1, 2" again
    batch = gather(buffer, 0, 0)
    assert batch.reward[0, 0].item() == pytest.approx(1 + 0.5 * 2) and batch.steps.item() == 2
    assert batch.discount.item() == pytest.approx(0.25) and batch.next_obs[0, 0, 0].item() == 1001
