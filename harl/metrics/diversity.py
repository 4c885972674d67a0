"""System Neural Diversity (SND) of a team's policies, with the Jensen–Shannon distance.

SND (Bettini et al., 2023; HyperMARL paper, Eq. 1) averages a distance D between the action
distributions of every pair of agents over a set of observations O:

    SND = 2 / (n (n - 1) |O|) · Σ_{i<j} Σ_{o∈O} D(π_i(o), π_j(o)).

D is the Jensen–Shannon *distance* (the square root of the JS divergence, base-2 logarithms), so
SND lies in [0, 1]: 0 when all agents act identically, 1 when every pair puts its probability mass on
disjoint actions (paper, section 2.2 and appendix A). The total-variation distance (categorical) and
the 2-Wasserstein distance (diagonal Gaussians; Bettini et al.'s original choice, unbounded) are
available for comparison.

Estimators:

- Categorical policies: exact.
- Diagonal-Gaussian policies (JSD): Monte Carlo. With m = (p + q) / 2,
  JSD(p, q) = ½ E_{x~p}[log₂(2p(x)/(p(x)+q(x)))] + ½ E_{x~q}[log₂(2q(x)/(p(x)+q(x)))], and each term is
  averaged over `samples` draws x = μ + σ·ε. The same standard-normal draws ε are used for every agent,
  pair and observation (common random numbers: identical policies give exactly 0, and the estimate is
  deterministic for a given generator). The divergence estimate is clamped to [0, 1] before the square
  root. Its standard error is the delete-one-group jackknife over `groups` equal groups of the draws,
  which accounts for the square root and for the draws being shared; it measures the Monte-Carlo error
  only, given the observation set.
- Squashed (tanh) Gaussians (SAC actors): the JS divergence is invariant under the same bijection
  applied to both distributions, so it is computed on the Gaussians before the squash.

Heterogeneous agents: each agent's padded action dimensions (continuous) or padded actions
(discrete) are masked out. A Gaussian pair is compared on the action dimensions *both* agents have
(the marginals of their diagonal Gaussians on those dimensions); pairs with no common dimension are
left out of the average. Categorical distributions over different action sets are compared as
distributions over the union (probability 0 on the actions an agent does not have).

Observations (`obs_mode`): "shared" (the paper's and Bettini et al.'s definition) takes every agent's
observation in the batch as one o ∈ O and evaluates *every* agent's policy on it, so only the policies
differ; this needs agents whose observations mean the same thing (homogeneous observation spaces).
"own" evaluates each agent on its own observation of the same joint step (the only choice for agents
with different observation spaces; differences in what agents see then count as diversity too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harl.errors import UserError
from harl.models.distributions import CategoricalPolicies, Policy, PolicyDistribution

DISTANCES = ("jsd", "tvd", "wasserstein")
"""Distances D inside SND: Jensen–Shannon distance (paper), total variation (categorical), 2-Wasserstein
(diagonal Gaussian)."""
OBS_MODES = ("shared", "own")
LN2 = math.log(2.0)
_CHUNK_ELEMENTS = 1 << 21
"""Largest intermediate tensor (elements) of the Gaussian Monte-Carlo estimator per observation chunk."""


@dataclass(frozen=True)
class SNDResult:
    """An SND estimate.

    Attributes:
        value: the SND.
        stderr: its Monte-Carlo standard error (0 for exact computations).
        pairwise: (N, N) mean distance of every agent pair over the observations (symmetric, zero
            diagonal, NaN for pairs left out: no common action dimension).
        n_obs: |O|, the number of observations averaged over.
        distance: the distance D used.
        estimator: "exact" or "monte-carlo (S samples)".
    """

    value: float
    stderr: float
    pairwise: torch.Tensor
    n_obs: int
    distance: str
    estimator: str


# ---------------------------------------------------------------------------------------- distances


def js_distance_categorical(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Exact Jensen–Shannon distance (base 2, in [0, 1]) between categorical distributions p, q (..., A) -> (...)."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl_pm = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - m.clamp_min(1e-300).log()), 0.0).sum(-1)
    kl_qm = torch.where(q > 0, q * (q.clamp_min(1e-300).log() - m.clamp_min(1e-300).log()), 0.0).sum(-1)
    divergence = (0.5 * (kl_pm + kl_qm) / LN2).clamp(0.0, 1.0)
    return divergence.sqrt()


def tv_distance_categorical(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total-variation distance ½ Σ |p - q| (in [0, 1]) between categorical distributions (..., A) -> (...)."""
    return 0.5 * (p.double() - q.double()).abs().sum(-1)


def wasserstein_gaussian(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Exact 2-Wasserstein distance between diagonal Gaussians on the dimensions where `mask` is 1.

    W₂² = Σ_d mask_d ((μ_p - μ_q)² + (σ_p - σ_q)²). All inputs broadcast to (..., A); returns (...).
    """
    sq = (mean_p - mean_q).double().pow(2) + (log_std_p.exp() - log_std_q.exp()).double().pow(2)
    return (sq * mask).sum(-1).sqrt()


def _log2_ratio_to_mixture(log_ratio: torch.Tensor) -> torch.Tensor:
    """log₂(2p/(p + q)) = -log₂((1 + e^Δ)/2) for Δ = log q - log p, exactly 0 at Δ = 0 and stable for large Δ."""
    small = -torch.log1p(0.5 * torch.expm1(log_ratio.clamp(max=1.0))) / LN2
    large = -(torch.nn.functional.softplus(log_ratio) - LN2) / LN2
    return torch.where(log_ratio <= 1.0, small, large)


def _js_terms_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, pair_mask: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Per-draw terms log₂(2p_i(x)/(p_i(x)+p_j(x))), x = μ_i + σ_i ε, of every ordered pair (i, j), in float64.

    mean, log_std: (B, N, A); pair_mask: (N, N, A); noise: (S, A). Returns (B, N, N, S). Identical
    distributions give exactly 0.
    """
    mean, log_std, noise = mean.double(), log_std.double(), noise.double()
    mu_i, ls_i = mean[:, :, None, None, :], log_std[:, :, None, None, :]  # (B, N, 1, 1, A)
    mu_j, ls_j = mean[:, None, :, None, :], log_std[:, None, :, None, :]  # (B, 1, N, 1, A)
    eps = noise[None, None, None]  # (1, 1, 1, S, A)
    z = (mu_i - mu_j) * torch.exp(-ls_j) + eps * torch.exp(ls_i - ls_j)  # x_i standardised under agent j
    per_dim = 0.5 * (eps - z) * (eps + z) + (ls_i - ls_j)  # log p_j(x_i) - log p_i(x_i) per dimension
    log_ratio = torch.where(pair_mask[None, :, :, None, :] > 0, per_dim, 0.0).sum(-1)  # common dims only
    return _log2_ratio_to_mixture(log_ratio)  # (B, N, N, S)


def js_divergence_gaussian_mc(
    mean_p: torch.Tensor,
    log_std_p: torch.Tensor,
    mean_q: torch.Tensor,
    log_std_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    samples: int = 1024,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo JS divergence (base 2) between two diagonal Gaussians, with its standard error.

    Args:
        mean_p, log_std_p, mean_q, log_std_q: (..., A) parameters.
        mask: (A,) 1 on the dimensions compared (default: all).
        samples: draws from each of p and q.
        generator: CPU generator for the draws (default: a fixed seed, so the estimate is deterministic).

    Returns:
        The divergence estimate (...) in (-∞, 1] (not clamped) and its standard error (...), from the
        per-draw variance of the two averaged terms.
    """
    mask = torch.ones(mean_p.shape[-1]) if mask is None else mask
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    noise = torch.randn(samples, mean_p.shape[-1], generator=gen).to(mean_p)  # (S, A)
    mean = torch.stack(torch.broadcast_tensors(mean_p, mean_q), dim=-2)  # (..., 2, A)
    log_std = torch.stack(torch.broadcast_tensors(log_std_p, log_std_q), dim=-2)
    batch_shape = mean.shape[:-2]
    mean, log_std = mean.reshape(-1, 2, mean.shape[-1]), log_std.reshape(-1, 2, mean.shape[-1])
    pair_mask = mask.to(mean).expand(2, 2, -1)
    terms = _js_terms_gaussian(mean, log_std, pair_mask, noise)  # (M, 2, 2, S)
    per_draw = 0.5 * (terms[:, 0, 1] + terms[:, 1, 0])  # (M, S)
    estimate = per_draw.mean(-1)
    stderr = per_draw.std(-1) / math.sqrt(samples)
    return estimate.view(batch_shape), stderr.view(batch_shape)


# ---------------------------------------------------------------------------------------- SND


def _check_distance(distance: str, kind: str) -> None:
    if distance not in DISTANCES:
        raise UserError(f"unknown diversity distance {distance!r}; valid: {', '.join(DISTANCES)}")
    if distance == "tvd" and kind != "categorical":
        raise UserError("the tvd distance is defined here for categorical (discrete-action) policies only")
    if distance == "wasserstein" and kind != "gaussian":
        raise UserError("the wasserstein distance is defined here for Gaussian (continuous-action) policies only")


def _upper_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 2:
        raise UserError("SND needs at least two agents")
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def _pairwise_matrix(n: int, pair_sums: torch.Tensor, n_obs: int, valid: torch.Tensor) -> torch.Tensor:
    """(N, N) symmetric matrix of per-pair means from the (P,) sums over the upper-triangle pairs."""
    i, j = _upper_pairs(n, pair_sums.device)
    matrix = torch.zeros(n, n, dtype=torch.float64, device=pair_sums.device)
    values = torch.where(valid, pair_sums / max(n_obs, 1), torch.nan)
    matrix[i, j] = values
    matrix[j, i] = values
    return matrix.cpu()


def snd_categorical(probs: torch.Tensor, distance: str = "jsd") -> SNDResult:
    """Exact SND of categorical policies.

    Args:
        probs: (B, N, A) every agent's action probabilities on each of the B observations.
        distance: "jsd" (Jensen–Shannon distance) or "tvd" (total variation).
    """
    _check_distance(distance, "categorical")
    n = probs.shape[1]
    i, j = _upper_pairs(n, probs.device)
    metric = js_distance_categorical if distance == "jsd" else tv_distance_categorical
    per_pair = metric(probs[:, i], probs[:, j])  # (B, P)
    valid = torch.ones(i.numel(), dtype=torch.bool, device=probs.device)
    return SNDResult(
        value=float(per_pair.mean()),
        stderr=0.0,
        pairwise=_pairwise_matrix(n, per_pair.sum(0), probs.shape[0], valid),
        n_obs=probs.shape[0],
        distance=distance,
        estimator="exact",
    )


class _GaussianSNDAccumulator:
    """Streams observation chunks of Gaussian policies into an SND estimate (JSD by Monte Carlo, W₂ exactly)."""

    def __init__(
        self,
        n: int,
        act_mask: torch.Tensor,
        distance: str,
        samples: int,
        groups: int,
        generator: torch.Generator | None,
    ) -> None:
        _check_distance(distance, "gaussian")
        if samples < 2:
            raise UserError("the Monte-Carlo SND estimator needs samples >= 2")
        self.n, self.distance, self.samples = n, distance, samples
        self.groups = max(2, min(groups, samples))
        device = act_mask.device
        self.i, self.j = _upper_pairs(n, device)
        mask = act_mask.float()
        self.pair_mask = mask[:, None, :] * mask[None, :, :]  # (N, N, A): dimensions both agents have
        self.valid = self.pair_mask[self.i, self.j].sum(-1) > 0  # (P,)
        if not bool(self.valid.any()):
            raise UserError("no pair of agents shares an action dimension; SND is undefined")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.noise = torch.randn(samples, act_mask.shape[-1], generator=gen).to(device)  # (S, A)
        self.bounds = torch.linspace(0, samples, self.groups + 1).round().long().tolist()
        self.pair_sums = torch.zeros(self.i.numel(), dtype=torch.float64, device=device)
        self.leave_out_sums = torch.zeros(self.groups, dtype=torch.float64, device=device)
        self.n_obs = 0

    def chunk_size(self, act_dim: int) -> int:
        per_obs = self.n * self.n * self.samples * act_dim
        return max(1, _CHUNK_ELEMENTS // max(per_obs, 1))

    def add(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        """mean, log_std: (B, N, A) for a chunk of observations."""
        i, j, valid = self.i, self.j, self.valid.double()
        self.n_obs += mean.shape[0]
        if self.distance == "wasserstein":
            dist = wasserstein_gaussian(mean[:, i], log_std[:, i], mean[:, j], log_std[:, j], self.pair_mask[i, j])
            self.pair_sums += (dist * valid).sum(0)
            return
        terms = _js_terms_gaussian(mean, log_std, self.pair_mask, self.noise)  # (B, N, N, S)
        terms = 0.5 * (terms[:, i, j] + terms[:, j, i])  # (B, P, S): JS divergence per draw
        spans = list(zip(self.bounds[:-1], self.bounds[1:], strict=True))
        group_sums = torch.stack([terms[..., a:b].sum(-1) for a, b in spans])  # (G, B, P)
        total = group_sums.sum(0)  # (B, P)
        self.pair_sums += ((total / self.samples).clamp(0.0, 1.0).sqrt() * valid).sum(0)
        sizes = torch.tensor([b - a for a, b in spans], dtype=torch.float64, device=terms.device)  # (G,)
        leave_out = (total - group_sums) / (self.samples - sizes)[:, None, None]  # (G, B, P)
        self.leave_out_sums += (leave_out.clamp(0.0, 1.0).sqrt() * valid).sum((1, 2))

    def result(self) -> SNDResult:
        count = self.n_obs * int(self.valid.sum())
        value = float(self.pair_sums.sum()) / count
        pairwise = _pairwise_matrix(self.n, self.pair_sums, self.n_obs, self.valid)
        if self.distance == "wasserstein":
            return SNDResult(value, 0.0, pairwise, self.n_obs, self.distance, "exact")
        replicates = self.leave_out_sums / count  # (G,) SND without each group of draws
        g = self.groups
        stderr = math.sqrt((g - 1) / g * float((replicates - replicates.mean()).pow(2).sum()))
        return SNDResult(value, stderr, pairwise, self.n_obs, self.distance, f"monte-carlo ({self.samples} samples)")


def snd_gaussian(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    act_mask: torch.Tensor | None = None,
    distance: str = "jsd",
    samples: int = 128,
    groups: int = 16,
    generator: torch.Generator | None = None,
) -> SNDResult:
    """SND of diagonal-Gaussian policies (JSD by Monte Carlo with a jackknife standard error; W₂ exactly).

    Args:
        mean: (B, N, A) every agent's action mean on each of the B observations.
        log_std: (B, N, A) log standard deviations.
        act_mask: (N, A) 1 on each agent's real action dimensions (default: all).
        distance: "jsd" or "wasserstein".
        samples: Monte-Carlo draws per distribution (JSD).
        groups: groups of draws for the jackknife standard error (JSD).
        generator: CPU generator of the draws (default: a fixed seed, so results are deterministic).
    """
    act_mask = torch.ones(mean.shape[1:], device=mean.device) if act_mask is None else act_mask.to(mean.device)
    acc = _GaussianSNDAccumulator(mean.shape[1], act_mask, distance, samples, groups, generator)
    step = acc.chunk_size(mean.shape[-1])
    for start in range(0, mean.shape[0], step):
        acc.add(mean[start : start + step], log_std[start : start + step])
    return acc.result()


# ---------------------------------------------------------------------------------------- actors


def policy_distributions(actor: Policy, obs: torch.Tensor, avail: torch.Tensor | None = None) -> PolicyDistribution:
    """Every agent's action distribution from any harl actor (any architecture) on observations (B, N, O),
    as the actor reports it (`actor.distribution`): categorical actors their masked probabilities, Gaussian
    actors their mean and log-std, squashed-Gaussian (SAC) actors the Gaussian before the tanh. Actors
    without one (deterministic DDPG/TD3 actors) are refused.
    """
    distribution = actor.distribution(obs, avail)
    if distribution is None:
        raise UserError("SND compares action distributions; deterministic (DDPG/TD3) actors have none")
    return distribution


def _observation_set(
    obs: torch.Tensor, avail: torch.Tensor | None, n_agents: int, obs_mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The actor inputs (M, N, O) (and avail (M, N, A)) for the chosen observation mode."""
    if obs_mode not in OBS_MODES:
        raise UserError(f"unknown obs_mode {obs_mode!r}; valid: {', '.join(OBS_MODES)}")
    if obs.dim() != 3 or obs.shape[1] != n_agents:
        raise UserError(f"observations must have shape (B, {n_agents}, obs_dim), got {tuple(obs.shape)}")
    if obs_mode == "own":
        return obs, avail
    flat = obs.reshape(-1, 1, obs.shape[-1]).expand(-1, n_agents, -1)  # (B·N, N, O): each o seen by all agents
    flat_avail = None if avail is None else avail.reshape(-1, 1, avail.shape[-1]).expand(-1, n_agents, -1)
    return flat, flat_avail


@torch.no_grad()
def snd_of_actor(
    actor: Policy,
    obs: torch.Tensor,
    avail: torch.Tensor | None = None,
    *,
    distance: str = "jsd",
    obs_mode: str = "shared",
    samples: int = 128,
    groups: int = 16,
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
) -> SNDResult:
    """SND of a harl actor (any architecture) on a batch of observations.

    Args:
        actor: an on-policy (categorical or Gaussian) or SAC (squashed-Gaussian) actor.
        obs: (B, N, obs_dim) joint observations, e.g. from a rollout buffer.
        avail: (B, N, A) available-action masks (discrete), or None.
        distance: "jsd" (paper), "tvd" (categorical) or "wasserstein" (Gaussian).
        obs_mode: "shared" (every agent's observation is one o ∈ O, evaluated by every agent; needs
            homogeneous observation spaces) or "own" (each agent on its own observation).
        samples: Monte-Carlo draws per distribution (Gaussian JSD).
        groups: groups of draws for the jackknife standard error (Gaussian JSD).
        batch_size: observations per actor forward.
        generator: CPU generator of the Monte-Carlo draws (default: fixed seed).
    """
    n = actor.act_mask.shape[0]
    device = actor.act_mask.device
    inputs, inputs_avail = _observation_set(obs.to(device), None if avail is None else avail.to(device), n, obs_mode)
    if inputs.shape[0] == 0:
        raise UserError("no observations to measure diversity on")
    gaussian: _GaussianSNDAccumulator | None = None
    categorical: list[torch.Tensor] = []
    for start in range(0, inputs.shape[0], batch_size):
        chunk_avail = None if inputs_avail is None else inputs_avail[start : start + batch_size]
        policies = policy_distributions(actor, inputs[start : start + batch_size], chunk_avail)
        if isinstance(policies, CategoricalPolicies):
            _check_distance(distance, "categorical")
            categorical.append(policies.probs)
            continue
        if gaussian is None:
            gaussian = _GaussianSNDAccumulator(n, policies.act_mask, distance, samples, groups, generator)
        step = gaussian.chunk_size(policies.mean.shape[-1])
        for s in range(0, policies.mean.shape[0], step):
            gaussian.add(policies.mean[s : s + step], policies.log_std[s : s + step])
    if gaussian is not None:
        return gaussian.result()
    return snd_categorical(torch.cat(categorical), distance)


def snd_metrics(
    actor: Policy,
    obs: torch.Tensor,
    avail: torch.Tensor | None,
    obs_dims: tuple[int, ...],
    max_obs: int = 1000,
    samples: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """`diversity/snd` and `diversity/snd_stderr` of `actor` on a rollout's joint observations, for a run's log.

    Args:
        actor: the learner's actor.
        obs: (B, N, obs_dim) joint observations (e.g. a rollout buffer's, flattened over time and envs).
        avail: (B, N, A) available-action masks or None.
        obs_dims: the agents' observation sizes: "shared" observations when they are all equal, else "own".
        max_obs: joint observations used at most (an evenly spaced subset, so the cost stays bounded).
        samples: Monte-Carlo draws per distribution (Gaussian policies).
        seed: seed of the Monte-Carlo draws (the global RNGs are not touched).
    """
    if obs.shape[0] > max_obs:
        keep = torch.linspace(0, obs.shape[0] - 1, max_obs, device=obs.device).long()
        obs, avail = obs[keep], None if avail is None else avail[keep]
    obs_mode = "shared" if len(set(obs_dims)) == 1 else "own"
    result = snd_of_actor(
        actor, obs, avail, obs_mode=obs_mode, samples=samples, generator=torch.Generator().manual_seed(seed)
    )
    return {"diversity/snd": result.value, "diversity/snd_stderr": result.stderr}
