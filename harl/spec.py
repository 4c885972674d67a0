"""The multi-agent environment contract every adapter implements.

All environments are exposed as *vectorised* environments: `n_envs` copies stepped together,
with agents as a tensor dimension. Heterogeneous agents (different observation or action
sizes) are padded to the largest size; `EnvSpec.obs_mask` / `EnvSpec.act_mask` say which
entries are real. Padded observation entries are always zero and padded action entries are
ignored by the environment.

Episodes auto-reset: when an episode of env `e` ends at step t, `StepOutput.obs[e]` already
holds the first observation of the next episode, while `final_obs[e]` / `final_state[e]`
hold the last observation of the finished one (needed to bootstrap on truncation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a multi-agent environment.

    Attributes:
        agent_ids: names of the agents, in the order of the agent dimension.
        obs_dims: per-agent observation sizes.
        state_dim: size of the global state given to centralised critics.
        action_type: "continuous" (Box actions) or "discrete" (one categorical choice per agent).
        act_dims: continuous: per-agent action sizes; discrete: per-agent number of actions.
        act_low: (n_agents, act_dim_max) lower bounds (continuous; zeros for discrete).
        act_high: (n_agents, act_dim_max) upper bounds (continuous; ones for discrete).
        has_avail_actions: whether `avail_actions` masks are produced (discrete only).
    """

    agent_ids: tuple[str, ...]
    obs_dims: tuple[int, ...]
    state_dim: int
    action_type: Literal["continuous", "discrete"]
    act_dims: tuple[int, ...]
    act_low: np.ndarray
    act_high: np.ndarray
    has_avail_actions: bool = False

    def __post_init__(self) -> None:
        n = len(self.agent_ids)
        if not (len(self.obs_dims) == len(self.act_dims) == n):
            raise ValueError("agent_ids, obs_dims and act_dims must have one entry per agent")
        if self.act_low.shape != (n, self.act_dim_max) or self.act_high.shape != (n, self.act_dim_max):
            raise ValueError(f"act_low/act_high must have shape ({n}, {self.act_dim_max})")

    @property
    def n_agents(self) -> int:
        return len(self.agent_ids)

    @property
    def obs_dim_max(self) -> int:
        return max(self.obs_dims)

    @property
    def act_dim_max(self) -> int:
        return max(self.act_dims)

    @property
    def discrete(self) -> bool:
        return self.action_type == "discrete"

    @property
    def action_shape(self) -> int:
        """Width of the action tensor per agent: 1 (an index) for discrete, act_dim_max for continuous."""
        return 1 if self.discrete else self.act_dim_max

    @property
    def obs_mask(self) -> np.ndarray:
        """(n_agents, obs_dim_max) bool: True where an observation entry is real."""
        return np.arange(self.obs_dim_max)[None, :] < np.asarray(self.obs_dims)[:, None]

    @property
    def act_mask(self) -> np.ndarray:
        """(n_agents, act_dim_max) bool: True where an action dim (continuous) or action index (discrete) exists."""
        return np.arange(self.act_dim_max)[None, :] < np.asarray(self.act_dims)[:, None]


@dataclass
class StepOutput:
    """What a vectorised step (or reset) returns. All tensors are float32 unless stated.

    Attributes:
        obs: (n_envs, n_agents, obs_dim_max) observations (next episode's first obs where an episode ended).
        state: (n_envs, state_dim) global state.
        avail_actions: (n_envs, n_agents, act_dim_max) bool, or None when the env has no action masks.
        reward: (n_envs, n_agents) reward of the step (zeros after reset).
        terminated: (n_envs,) bool, episode ended in a terminal state (no bootstrap).
        truncated: (n_envs,) bool, episode cut by the time limit (bootstrap from final_obs/final_state).
        final_obs: (n_envs, n_agents, obs_dim_max): last obs of the finished episode where done, else == obs.
        final_state: (n_envs, state_dim): last state of the finished episode where done, else == state.
        episode_return: (n_envs,) team return of the finished episode where done (NaN elsewhere).
        episode_length: (n_envs,) length of the finished episode where done (0 elsewhere).
        info: extra per-env scalars of finished episodes (e.g. "win": (n_envs,) with NaN where not done).
        any_truncated: whether a time limit cut any env's episode in this step, as a host bool where the adapter
            knows it without a device sync (None: not known; `truncated.any()` then tells, at the cost of a sync).
    """

    obs: torch.Tensor
    state: torch.Tensor
    avail_actions: torch.Tensor | None
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor
    final_state: torch.Tensor
    episode_return: torch.Tensor
    episode_length: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    any_truncated: bool | None = None

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class VecEnv(Protocol):
    """A batch of `n_envs` multi-agent environments stepped together.

    Tensors are returned on `device` (CPU for numpy-backed simulators, the simulator's device
    for torch/JAX-native ones). Actions are (n_envs, n_agents, spec.action_shape): float for
    continuous (already within bounds), int64 indices for discrete.
    """

    spec: EnvSpec
    n_envs: int
    n_workers: int
    """Worker processes stepping some of the envs beside the calling process (0: all stepped in it)."""
    device: torch.device

    def reset(self, seed: int) -> StepOutput: ...

    def step(self, actions: torch.Tensor) -> StepOutput: ...

    def render(self) -> None: ...

    def close(self) -> None: ...


class MultiAgentEnv(Protocol):
    """A single (non-vectorised) environment; `harl.envs.vector` batches these in worker processes.

    Arrays are numpy, already padded to the spec's maxima.
    """

    spec: EnvSpec

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Returns obs (n_agents, obs_dim_max), state (state_dim,), avail (n_agents, act_dim_max) or None."""
        ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, bool, bool, dict]:
        """Takes actions (n_agents, action_shape); returns obs, state, avail, reward (n_agents,),
        terminated, truncated, info (scalars of the step, e.g. {"win": 1.0} at the end of an episode)."""
        ...

    def render(self) -> None: ...

    def close(self) -> None: ...
