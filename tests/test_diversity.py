"""System Neural Diversity: bounds, invariances, brute-force and numeric-integration references, actors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from harl.config import ModelConfig
from harl.errors import UserError
from harl.metrics import (
    js_distance_categorical,
    js_divergence_gaussian_mc,
    snd_categorical,
    snd_gaussian,
    snd_metrics,
    snd_of_actor,
)
from harl.models.off_policy import DeterministicActor, SquashedGaussianActor
from harl.models.policies import CategoricalActor, GaussianActor
from harl.registry import get_architecture
from harl.spec import EnvSpec


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test draws its random inputs from seed 0, whichever tests ran before it; the global stream is
    restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def random_probs(b: int, n: int, a: int) -> torch.Tensor:
    return torch.softmax(2 * torch.randn(b, n, a, dtype=torch.float64), -1)


def brute_force_snd(probs: np.ndarray, distance) -> float:
    """Eq. 1 with explicit loops: 2 / (n (n - 1) |O|) Σ_{i<j} Σ_o D(π_i(o), π_j(o))."""
    b, n, _ = probs.shape
    total = sum(distance(probs[o, i], probs[o, j]) for o in range(b) for i in range(n) for j in range(i + 1, n))
    return 2.0 * total / (n * (n - 1) * b)


def gaussian_jsd_by_integration(m1: float, s1: float, m2: float, s2: float) -> float:
    """JS divergence (base 2) of two 1-D Gaussians by the trapezoid rule on a fine grid."""
    x = np.linspace(min(m1 - 12 * s1, m2 - 12 * s2), max(m1 + 12 * s1, m2 + 12 * s2), 400_001)
    p = np.exp(-0.5 * ((x - m1) / s1) ** 2) / (s1 * math.sqrt(2 * math.pi))
    q = np.exp(-0.5 * ((x - m2) / s2) ** 2) / (s2 * math.sqrt(2 * math.pi))
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = 0.5 * np.where(p > 0, p * np.log2(p / m), 0.0) + 0.5 * np.where(q > 0, q * np.log2(q / m), 0.0)
    return float(np.trapezoid(f, x))


def spec(n: int, obs_dim: int, act_dims: tuple[int, ...], discrete: bool) -> EnvSpec:
    a = max(act_dims)
    low = np.zeros((n, a), np.float32) if discrete else -np.ones((n, a), np.float32)
    return EnvSpec(
        agent_ids=tuple(f"agent_{i}" for i in range(n)),
        obs_dims=(obs_dim,) * n,
        state_dim=obs_dim,
        action_type="discrete" if discrete else "continuous",
        act_dims=act_dims,
        act_low=low,
        act_high=np.ones((n, a), np.float32),
    )


def actor(cls, arch: str, env_spec: EnvSpec, seed: int = 0):
    torch.manual_seed(seed)
    model = ModelConfig(hidden_sizes=[16], layer_norm=False, feature_norm=False, gain=1.0)
    entry = get_architecture(arch)
    return cls(env_spec, entry, model, entry.config_cls())


# ----------------------------------------------------------------------------------- categorical


def test_identical_categorical_policies_have_zero_diversity():
    probs = random_probs(6, 1, 5).expand(-1, 4, -1)
    result = snd_categorical(probs)
    assert result.value == 0.0 and result.stderr == 0.0 and result.estimator == "exact"


def test_disjoint_deterministic_categorical_policies_have_diversity_one():
    probs = torch.eye(4, dtype=torch.float64).expand(3, -1, -1)  # agent i always picks action i
    assert snd_categorical(probs).value == pytest.approx(1.0, abs=1e-12)
    assert snd_categorical(probs, "tvd").value == pytest.approx(1.0, abs=1e-12)


def test_categorical_snd_matches_brute_force():
    probs = random_probs(5, 4, 3)
    probs[0, 1] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # zero probabilities (0 log 0)
    reference = brute_force_snd(probs.numpy(), lambda p, q: jensenshannon(p, q, base=2))
    assert snd_categorical(probs).value == pytest.approx(reference, abs=1e-10)
    tvd = brute_force_snd(probs.numpy(), lambda p, q: 0.5 * np.abs(p - q).sum())
    assert snd_categorical(probs, "tvd").value == pytest.approx(tvd, abs=1e-10)


def test_categorical_snd_is_symmetric_and_permutation_invariant():
    probs = random_probs(7, 5, 4)
    result = snd_categorical(probs)
    assert torch.allclose(result.pairwise, result.pairwise.T)
    assert torch.all(result.pairwise.diagonal() == 0)
    for perm in (torch.randperm(5), torch.tensor([4, 3, 2, 1, 0])):
        assert snd_categorical(probs[:, perm]).value == pytest.approx(result.value, abs=1e-12)
    # D itself is symmetric
    p, q = probs[:, 0], probs[:, 1]
    assert torch.allclose(js_distance_categorical(p, q), js_distance_categorical(q, p))


def test_snd_bounds_on_random_policies():
    for n, a in itertools.product((2, 3, 6), (2, 5)):
        value = snd_categorical(random_probs(4, n, a)).value
        assert 0.0 <= value <= 1.0


# ----------------------------------------------------------------------------------- Gaussian


@pytest.mark.parametrize(("m1", "s1", "m2", "s2"), [(0.0, 1.0, 1.0, 1.0), (0.0, 1.0, 0.0, 2.0), (-1.0, 0.5, 2.0, 1.5)])
def test_gaussian_monte_carlo_matches_numeric_integration_1d(m1, s1, m2, s2):
    reference = gaussian_jsd_by_integration(m1, s1, m2, s2)
    args = [torch.tensor([v]) for v in (m1, math.log(s1), m2, math.log(s2))]
    estimate, stderr = js_divergence_gaussian_mc(*args, samples=20_000)
    assert abs(float(estimate) - reference) < 4 * float(stderr) + 1e-3
    # the SND of two agents is the JS distance, with a jackknife standard error
    mean = torch.tensor([[[m1], [m2]]])
    log_std = torch.tensor([[[math.log(s1)], [math.log(s2)]]])
    result = snd_gaussian(mean, log_std, samples=4096)
    assert abs(result.value - math.sqrt(reference)) < 4 * result.stderr + 2e-3
    assert 0 < result.stderr < 0.02


def test_identical_gaussians_have_exactly_zero_diversity():
    mean = torch.randn(5, 1, 3).expand(-1, 4, -1)
    log_std = 0.5 * torch.randn(5, 1, 3).expand(-1, 4, -1)
    result = snd_gaussian(mean, log_std, samples=64)
    assert result.value == 0.0 and result.stderr == 0.0


def test_far_apart_gaussians_have_diversity_near_one():
    mean = torch.tensor([[[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]]])
    result = snd_gaussian(mean, torch.zeros_like(mean), samples=64)
    assert result.value == pytest.approx(1.0, abs=1e-9)


def test_gaussian_snd_is_permutation_invariant_and_symmetric():
    mean, log_std = torch.randn(6, 4, 2), 0.3 * torch.randn(6, 4, 2)
    result = snd_gaussian(mean, log_std, samples=256)
    assert torch.allclose(result.pairwise, result.pairwise.T)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = snd_gaussian(mean[:, perm], log_std[:, perm], samples=256)
    assert permuted.value == pytest.approx(result.value, abs=1e-9)
    assert permuted.stderr == pytest.approx(result.stderr, abs=1e-9)


def test_gaussian_standard_error_is_calibrated():
    """The jackknife standard error matches the spread of estimates over independent draws."""
    mean, log_std = torch.randn(3, 3, 2), 0.3 * torch.randn(3, 3, 2)
    runs = [snd_gaussian(mean, log_std, samples=64, generator=torch.Generator().manual_seed(s)) for s in range(40)]
    spread = float(np.std([r.value for r in runs], ddof=1))
    reported = float(np.mean([r.stderr for r in runs]))
    assert 0.5 < reported / spread < 2.0


def test_heterogeneous_action_dims_compare_common_dims_only():
    # agent 0 has 2 action dims, agent 1 only the first one: the pair is compared on dim 0
    mean = torch.tensor([[[0.0, 5.0], [1.0, 0.0]]])
    log_std = torch.zeros_like(mean)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    hetero = snd_gaussian(mean, log_std, mask, samples=4096)
    reference = math.sqrt(gaussian_jsd_by_integration(0.0, 1.0, 1.0, 1.0))  # dim 0 only
    assert abs(hetero.value - reference) < 4 * hetero.stderr + 2e-3
    assert abs(snd_gaussian(mean, log_std, samples=4096).value - reference) > 0.3  # with dim 1 they differ a lot
    w2 = snd_gaussian(mean, log_std, mask, distance="wasserstein")
    assert w2.value == pytest.approx(1.0) and w2.estimator == "exact"


def test_unknown_or_unsuitable_distance_is_a_user_error():
    with pytest.raises(UserError, match="unknown diversity distance 'kl'"):
        snd_categorical(random_probs(2, 2, 2), "kl")
    with pytest.raises(UserError, match="categorical"):
        snd_gaussian(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), distance="tvd")
    with pytest.raises(UserError, match="at least two agents"):
        snd_categorical(random_probs(2, 1, 2))


# ----------------------------------------------------------------------------------- actors


def test_snd_of_categorical_actors_by_architecture():
    env_spec = spec(3, 4, (5, 5, 5), discrete=True)
    obs = torch.randn(10, 3, 4, generator=torch.Generator().manual_seed(0))
    nops = snd_of_actor(actor(CategoricalActor, "nops", env_spec), obs)
    fups = snd_of_actor(actor(CategoricalActor, "fups", env_spec), obs)
    assert nops.value > 0.05 and nops.n_obs == 30  # every agent's observation, seen by every agent
    assert fups.value == pytest.approx(0.0, abs=1e-7)  # one shared network, same observation: identical
    own = snd_of_actor(actor(CategoricalActor, "fups", env_spec), obs, obs_mode="own")
    assert own.value > 0 and own.n_obs == 10  # differences in what agents see count in "own" mode
    net = actor(CategoricalActor, "nops", env_spec)
    direct = snd_categorical(net.distribution(obs.reshape(-1, 1, 4).expand(-1, 3, -1)).probs.detach())
    # batches of 7 or all at once: the same float32 sums in another order
    assert snd_of_actor(net, obs, batch_size=7).value == pytest.approx(direct.value, rel=1e-6)


def test_snd_of_categorical_actor_respects_available_actions():
    env_spec = spec(2, 3, (4, 4), discrete=True)
    avail = torch.zeros(5, 2, 4)
    avail[..., 2] = 1  # a single available action: every policy is deterministic on it
    result = snd_of_actor(actor(CategoricalActor, "nops", env_spec), torch.randn(5, 2, 3), avail)
    assert result.value == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("cls", [GaussianActor, SquashedGaussianActor])
def test_snd_of_gaussian_actors(cls):
    env_spec = spec(3, 4, (2, 2, 1), discrete=False)  # heterogeneous action sizes
    obs = torch.randn(8, 3, 4)
    nops = snd_of_actor(actor(cls, "nops", env_spec), obs, samples=64)
    fups = snd_of_actor(actor(cls, "fups", env_spec), obs, samples=64)
    assert nops.value > 0 and nops.stderr > 0 and nops.estimator == "monte-carlo (64 samples)"
    assert fups.value == 0.0


def test_deterministic_actors_are_refused():
    env_spec = spec(2, 3, (2, 2), discrete=False)
    with pytest.raises(UserError, match="deterministic"):
        snd_of_actor(actor(DeterministicActor, "nops", env_spec), torch.randn(3, 2, 3))


def test_snd_metrics_for_the_run_log_subsample_deterministically():
    env_spec = spec(3, 4, (2, 2, 2), discrete=False)
    net = actor(GaussianActor, "nops", env_spec)
    obs = torch.randn(50, 3, 4)
    state = torch.get_rng_state()
    metrics = snd_metrics(net, obs, None, env_spec.obs_dims, max_obs=10, samples=32)
    assert torch.equal(state, torch.get_rng_state())  # training randomness untouched
    assert set(metrics) == {"diversity/snd", "diversity/snd_stderr"} and metrics["diversity/snd"] > 0
    assert snd_metrics(net, obs, None, env_spec.obs_dims, max_obs=10, samples=32) == metrics
    subset = obs[torch.linspace(0, 49, 10).long()]
    assert metrics["diversity/snd"] == snd_of_actor(net, subset, samples=32).value
