"""PettingZoo's Multi-Agent Particle Environments, from the `mpe2` package (MPE left PettingZoo for it).

Supported scenarios, discrete or continuous (`continuous_actions`), as HARL offers them:

- `simple_spread`: N agents cover N landmarks; each agent's reward mixes the global coverage
  reward with its own collision penalty (`local_ratio`).
- `simple_reference`: 2 agents, each must reach the landmark the other one names; move and speak.
- `simple_speaker_listener`: a speaker that only speaks (obs 3, 3 actions) and a listener that
  only moves (obs 11, 5 actions): heterogeneous sizes, padded to the largest; shared reward.

The global state is `env.state()` (MPE's concatenation of the agents' observations). Episodes are
truncated after `max_cycles` steps. Continuous actions lie in [0, 1] per dimension (MPE's bounds,
given per agent in the spec). Each env is a `MultiAgentEnv` batched by `harl.envs.vector`.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harl.config import bounded, check_bounds
from harl.envs.vector import make_vec_env
from harl.errors import ConfigError, UserError, shown
from harl.registry import EnvEntry, register_environment
from harl.spec import EnvSpec, VecEnv

# Scenario -> the mpe2 module that defines it.
MODULES = {
    "simple_spread": "simple_spread_v3",
    "simple_reference": "simple_reference_v3",
    "simple_speaker_listener": "simple_speaker_listener_v4",
}


@dataclass
class MpeConfig:
    """Options of the MPE environment."""

    scenario: str = "simple_spread"
    """MPE scenario: simple_spread, simple_reference or simple_speaker_listener."""
    continuous_actions: bool = False
    """Continuous actions in [0, 1] (movement and communication) instead of one discrete choice."""
    max_cycles: int = bounded(25, gt=0)
    """Episode length in steps; reaching it truncates the episode."""
    n_agents: int = bounded(3, gt=0)
    """simple_spread: number of agents (and landmarks)."""
    local_ratio: float = bounded(0.5, ge=0, le=1)
    """simple_spread, simple_reference: weight of an agent's own reward against the global one."""

    def validate(self) -> None:
        check_bounds(self, "env")
        if self.scenario not in MODULES:
            raise ConfigError(f"unknown mpe scenario {shown(self.scenario)}; valid: {', '.join(MODULES)}")

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the scenario's `parallel_env`."""
        kwargs: dict[str, Any] = {"max_cycles": self.max_cycles, "continuous_actions": self.continuous_actions}
        if self.scenario == "simple_spread":
            kwargs["N"] = self.n_agents
        if self.scenario in ("simple_spread", "simple_reference"):
            kwargs["local_ratio"] = self.local_ratio
        return kwargs

    def scenario_name(self) -> str:
        """e.g. "simple_spread-3", "simple_speaker_listener"."""
        return f"simple_spread-{self.n_agents}" if self.scenario == "simple_spread" else self.scenario


@functools.cache
def _scenario_module(scenario: str) -> Any:
    """Import `mpe2.<scenario>_vN` (an optional extra), or fail with the line that installs it."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # mpe2 imports pygame, which greets on import
    try:
        return importlib.import_module(f"mpe2.{MODULES[scenario]}")
    except ImportError:
        message = "the mpe environment needs the mpe2 package: pip install mpe2 (or pip install 'harl-hypermarl[mpe]')"
        raise UserError(message) from None


class MpeEnv:
    """One MPE scenario as a `MultiAgentEnv` (numpy arrays padded to the spec's maxima).

    Args:
        cfg: the env options.
    """

    def __init__(self, cfg: MpeConfig):
        cfg.validate()
        self._env = _scenario_module(cfg.scenario).parallel_env(**cfg.env_kwargs())
        self._agents = tuple(self._env.possible_agents)
        n = len(self._agents)
        obs_dims = tuple(int(self._env.observation_space(agent).shape[0]) for agent in self._agents)
        spaces = [self._env.action_space(agent) for agent in self._agents]
        self._continuous = cfg.continuous_actions
        if self._continuous:
            act_dims = tuple(int(space.shape[0]) for space in spaces)
            # Padded action entries get MPE's bounds [0, 1]; the env ignores them.
            self._act_low = np.zeros((n, max(act_dims)), dtype=np.float32)  # (n_agents, act_dim_max)
            self._act_high = np.ones((n, max(act_dims)), dtype=np.float32)  # (n_agents, act_dim_max)
            for i, space in enumerate(spaces):
                self._act_low[i, : act_dims[i]] = space.low
                self._act_high[i, : act_dims[i]] = space.high
        else:
            act_dims = tuple(int(space.n) for space in spaces)
            self._act_low = np.zeros((n, max(act_dims)), dtype=np.float32)
            self._act_high = np.ones((n, max(act_dims)), dtype=np.float32)
        self.spec = EnvSpec(
            agent_ids=self._agents,
            obs_dims=obs_dims,
            state_dim=int(self._env.state_space.shape[0]),
            action_type="continuous" if self._continuous else "discrete",
            act_dims=act_dims,
            act_low=self._act_low.copy(),
            act_high=self._act_high.copy(),
        )

    def _pad(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Observations (n_agents, obs_dim_max), zero-padded, float32."""
        padded = np.zeros((len(self._agents), self.spec.obs_dim_max), dtype=np.float32)
        for i, agent in enumerate(self._agents):
            padded[i, : self.spec.obs_dims[i]] = obs[agent]
        return padded

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, None]:
        """Start an episode (seed None: continue the env's own RNG); returns obs, state, no action masks."""
        obs, _ = self._env.reset(seed=seed)
        return self._pad(obs), self._env.state().astype(np.float32), None

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, None, np.ndarray, bool, bool, dict]:
        """Apply actions (n_agents, action_shape); returns obs, state, None, rewards (n_agents,),
        terminated, truncated (max_cycles reached), {}."""
        if self._continuous:
            clipped = np.clip(actions, self._act_low, self._act_high).astype(np.float32)  # (n_agents, act_dim_max)
            joint = {agent: clipped[i, : self.spec.act_dims[i]] for i, agent in enumerate(self._agents)}
        else:
            joint = {agent: int(actions[i, 0]) for i, agent in enumerate(self._agents)}
        obs, rewards, terminations, truncations, _ = self._env.step(joint)
        reward = np.array([rewards[agent] for agent in self._agents], dtype=np.float32)  # (n_agents,)
        terminated = any(terminations.values())
        truncated = any(truncations.values()) and not terminated
        return self._pad(obs), self._env.state().astype(np.float32), None, reward, terminated, truncated, {}

    def render(self) -> None:
        """Draw the scene in a pygame window (needs a display)."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError("rendering MPE needs a display (DISPLAY is not set)")
        raw = self._env.unwrapped
        raw.render_mode = "human"
        raw.render()

    def close(self) -> None:
        self._env.close()


def make(
    env_cfg: MpeConfig, *, n_envs: int, seed: int, device: torch.device | str, n_workers: int = 0, seeds: int = 1
) -> VecEnv:
    """Build `n_envs` MPE envs batched by `make_vec_env` with `n_workers` worker processes (beside the calling one).

    Episodes are seeded by the `reset(seed)` of the result (env k gets `seed + k`).
    """
    env_cfg.validate()
    _scenario_module(env_cfg.scenario)  # fail here, in the parent, when mpe2 is missing
    env_fns = [functools.partial(MpeEnv, env_cfg) for _ in range(n_envs)]
    return make_vec_env(env_fns, n_workers, device, seeds)


register_environment(
    EnvEntry(
        name="mpe",
        config_cls=MpeConfig,
        make=make,
        scenarios=lambda: list(MODULES),
        description="PettingZoo MPE (mpe2): simple_spread, simple_reference, simple_speaker_listener; "
        "discrete or continuous",
        action_type=lambda cfg: "continuous" if cfg.continuous_actions else "discrete",
    )
)
