"""Research instruments: policy diversity (SND) and policy-gradient statistics."""

from harl.metrics.diversity import (
    DISTANCES,
    OBS_MODES,
    SNDResult,
    js_distance_categorical,
    js_divergence_gaussian_mc,
    policy_distributions,
    snd_categorical,
    snd_gaussian,
    snd_metrics,
    snd_of_actor,
    tv_distance_categorical,
    wasserstein_gaussian,
)
from harl.metrics.gradients import GradientStats, flat_grad, gradient_noise, param_variance
from harl.models.distributions import CategoricalPolicies, GaussianPolicies

__all__ = [
    "DISTANCES",
    "OBS_MODES",
    "CategoricalPolicies",
    "GaussianPolicies",
    "GradientStats",
    "SNDResult",
    "flat_grad",
    "gradient_noise",
    "js_distance_categorical",
    "js_divergence_gaussian_mc",
    "param_variance",
    "policy_distributions",
    "snd_categorical",
    "snd_gaussian",
    "snd_metrics",
    "snd_of_actor",
    "tv_distance_categorical",
    "wasserstein_gaussian",
]
