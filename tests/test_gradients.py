"""Policy-gradient statistics: hand-computed cases for the pure functions and the accumulator."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harl.metrics import GradientStats, flat_grad, gradient_noise, param_variance


def with_grads(*grads: list[float]) -> list[nn.Parameter]:
    """Parameters whose .grad are the given vectors (None for an empty list)."""
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g) if g else 2))
        p.grad = torch.tensor(g, dtype=torch.float32) if g else None
        params.append(p)
    return params


def set_grads(params: list[nn.Parameter], *grads: list[float]) -> list[nn.Parameter]:
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g, dtype=torch.float32)
    return params


def test_flat_grad_concatenates_and_zero_fills():
    params = with_grads([1.0, 2.0], [], [3.0])
    assert flat_grad(params).tolist() == [1.0, 2.0, 0.0, 0.0, 3.0]


def test_param_variance_by_hand():
    assert param_variance(torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1.25)  # mean 2.5, Σd² = 5, /4
    assert param_variance(torch.tensor([3.0, 3.0, 3.0])) == 0.0


def test_gradient_noise_by_hand():
    # mean [2, 0]; Σ‖g - ḡ‖² = 1 + 1 = 2, /(K-1) = 2; ‖ḡ‖² = 4 -> 0.5
    assert gradient_noise([torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])]) == pytest.approx(0.5)
    # mean [1, 0]; spread (1 + 1)/1 = 2; ‖ḡ‖² = 1 -> 2
    assert gradient_noise([torch.tensor([1.0, 1.0]), torch.tensor([1.0, -1.0])]) == pytest.approx(2.0)
    # three identical gradients: no noise
    assert gradient_noise([torch.tensor([1.0, 2.0])] * 3) == 0.0
    # opposite gradients: zero mean, undefined
    assert math.isnan(gradient_noise([torch.tensor([1.0]), torch.tensor([-1.0])]))
    with pytest.raises(ValueError):
        gradient_noise([torch.tensor([1.0])])


def test_accumulator_matches_pure_functions():
    params = with_grads([0.0, 0.0], [0.0])
    vectors = [[1.0, 2.0, 3.0], [3.0, 0.0, 1.0], [2.0, 2.0, 2.0], [0.0, 4.0, 1.0]]
    stats = GradientStats()
    for v in vectors:
        set_grads(params, v[:2], v[2:])
        stats.record(params)
    (summary,) = stats.summary()  # one seed: one dict
    tensors = [torch.tensor(v) for v in vectors]
    assert summary["grad/param_variance"] == pytest.approx(sum(param_variance(t) for t in tensors) / 4)
    assert summary["grad/noise"] == pytest.approx(gradient_noise(tensors))


def test_accumulator_groups_and_reset():
    params = with_grads([0.0, 0.0])
    stats = GradientStats()
    for v in ([1.0, 0.0], [3.0, 0.0]):  # group 1: noise 0.5
        stats.record(set_grads(params, v))
    stats.next_group()
    for v in ([1.0, 1.0], [1.0, -1.0]):  # group 2: noise 2
        stats.record(set_grads(params, v))
    stats.next_group()
    stats.record(set_grads(params, [5.0, 5.0]))  # a single gradient: no noise of its own
    (summary,) = stats.summary()  # one seed: one dict
    assert summary["grad/noise"] == pytest.approx((0.5 + 2.0) / 2)
    expected_variance = (0.25 + 2.25 + 0.0 + 1.0 + 0.0) / 5  # population variances of the five gradients
    assert summary["grad/param_variance"] == pytest.approx(expected_variance)
    assert stats.summary() == [{}]  # reset after a summary


def test_single_gradient_gives_variance_but_no_noise():
    stats = GradientStats()
    stats.record(with_grads([1.0, 3.0]))
    assert stats.summary() == [{"grad/param_variance": pytest.approx(1.0)}]


def test_accumulator_on_a_real_backward():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    stats, grads = GradientStats(), []
    for _ in range(3):
        net.zero_grad()
        net(torch.randn(5, 3)).pow(2).sum().backward()
        stats.record(net.parameters())
        grads.append(flat_grad(net.parameters()).clone())
    (summary,) = stats.summary()  # one seed: one dict
    assert summary["grad/param_variance"] == pytest.approx(sum(param_variance(g) for g in grads) / 3, rel=1e-6)
    assert summary["grad/noise"] == pytest.approx(gradient_noise(grads), rel=1e-6)
