"""Trainable parameter counts of any registered architecture for a given environment layout."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from harl.config import ModelConfig
from harl.errors import ConfigError
from harl.models.policies import AgentValueCritic, CategoricalActor, GaussianActor
from harl.registry import get_architecture
from harl.spec import EnvSpec


def uniform_spec(n_agents: int, obs_dim: int, act_dim: int, state_dim: int, discrete: bool = False) -> EnvSpec:
    """An `EnvSpec` of `n_agents` identical agents (continuous actions in [-1, 1], or `act_dim` discrete actions)."""
    return EnvSpec(
        agent_ids=tuple(f"agent_{i}" for i in range(n_agents)),
        obs_dims=(obs_dim,) * n_agents,
        state_dim=state_dim,
        action_type="discrete" if discrete else "continuous",
        act_dims=(act_dim,) * n_agents,
        act_low=np.zeros((n_agents, act_dim), np.float32) if discrete else -np.ones((n_agents, act_dim), np.float32),
        act_high=np.ones((n_agents, act_dim), np.float32),
    )


def trainable(module: nn.Module) -> int:
    """Number of trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_parameters(
    arch: str,
    spec: EnvSpec | None = None,
    *,
    n_agents: int | None = None,
    obs_dim: int | None = None,
    act_dim: int | None = None,
    state_dim: int | None = None,
    discrete: bool = False,
    model: ModelConfig | Mapping[str, Any] | None = None,
    arch_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Trainable parameters of the on-policy actor and per-agent critic (MAPPO/HAPPO's networks) of `arch`.

    Give either an environment's `spec` or its sizes (`n_agents`, `obs_dim`, `act_dim`, `state_dim`,
    `discrete`). Off-policy learners build their actors through the same architecture (counts differ only
    in the output layer, which holds a mean and a log-std per action for squashed-Gaussian actors, and
    in the absent state-independent log-std) and use an architecture-independent joint Q critic.

    Args:
        arch: a registered architecture name (nops, fups, fups_id, hypermarl, ...).
        spec: the environment layout; sizes are ignored when given.
        n_agents: number of agents (without `spec`).
        obs_dim: per-agent observation size (without `spec`).
        act_dim: per-agent action size, or number of discrete actions (without `spec`).
        state_dim: global state size of the critic (without `spec`).
        discrete: categorical instead of Gaussian actor (without `spec`).
        model: network sizes (a `ModelConfig` or its fields; defaults: `ModelConfig()`).
        arch_options: fields of the architecture's config (e.g. {"embedding_dim": 4}).

    Returns:
        {"actor": ..., "critic": ..., "total": ...}.

    Raises:
        ConfigError: an unknown or invalid model or architecture option.
    """
    entry = get_architecture(arch)
    if spec is None:
        if None in (n_agents, obs_dim, act_dim, state_dim):
            raise ValueError("give a spec or all of n_agents, obs_dim, act_dim and state_dim")
        spec = uniform_spec(n_agents, obs_dim, act_dim, state_dim, discrete)
    model_cfg = model if isinstance(model, ModelConfig) else _config(ModelConfig, model or {}, "model")
    arch_cfg = _config(entry.config_cls, arch_options or {}, "arch")
    actor_cls = CategoricalActor if spec.discrete else GaussianActor
    actor_net, critic_net = (
        actor_cls(spec, entry, model_cfg, arch_cfg),
        AgentValueCritic(spec, entry, model_cfg, arch_cfg),
    )
    entry.link_networks(actor_net, critic_net, arch_cfg)
    actor, critic = trainable(actor_net), trainable(critic_net)
    return {"actor": actor, "critic": critic, "total": actor + critic}


def _config(cls: type, options: Mapping[str, Any], section: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown {section} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    cfg = cls(**options)
    cfg.validate()
    return cfg
