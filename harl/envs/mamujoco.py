"""Multi-agent MuJoCo (gymnasium-robotics MaMuJoCo v1): one robot, its joints split among agents.

Every agent controls a group of actuators and all agents share the robot's reward. Two
observation modes:

- `local` (standard MaMuJoCo): each agent sees its own joints and those up to `agent_obsk` hops
  away in the robot's joint graph, plus the robot's global (torso) entries. Splits such as
  HalfCheetah 6x1 give agents different observation sizes; Humanoid 9|8 different action sizes.
- `global` (HARL's setting): every agent sees the full robot state plus a one-hot agent id.

Besides the splits gymnasium-robotics predefines, every robot whose joint graph it defines can be
split one actuator per agent (`<n_actuators>x1`, e.g. Humanoid 17x1, Walker2d 6x1, Ant 8x1); that
factorization is built from the library's own node and edge definitions of the robot.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

from harl.config import bounded, check_bounds
from harl.envs.vector import make_vec_env
from harl.errors import ConfigError, UserError, shown
from harl.registry import EnvEntry, register_environment
from harl.spec import EnvSpec, VecEnv

# Agent splits gymnasium-robotics defines itself ('|' separates groups of unequal size).
_LIBRARY_CONFS: dict[str, tuple[str, ...]] = {
    "Ant": ("2x4", "2x4d", "4x2"),
    "HalfCheetah": ("2x3", "6x1"),
    "Hopper": ("3x1",),
    "Humanoid": ("9|8",),
    "HumanoidStandup": ("9|8",),
    "Pusher": ("3p",),
    "Reacher": ("2x1",),
    "Swimmer": ("2x1",),
    "Walker2d": ("2x3",),
}
# Actuators of the robots whose full joint graph the library defines: each can be split one actuator per agent.
_N_ACTUATORS: dict[str, int] = {
    "Ant": 8,
    "HalfCheetah": 6,
    "Hopper": 3,
    "Humanoid": 17,
    "HumanoidStandup": 17,
    "Reacher": 2,
    "Swimmer": 2,
    "Walker2d": 6,
}


def _valid_confs(scenario: str) -> tuple[str, ...]:
    """The library's splits of `scenario`, plus one actuator per agent where the robot graph allows it."""
    confs = _LIBRARY_CONFS[scenario]
    one_each = f"{_N_ACTUATORS[scenario]}x1" if scenario in _N_ACTUATORS else None
    return confs if one_each is None or one_each in confs else (*confs, one_each)


AGENT_CONFS: dict[str, tuple[str, ...]] = {scenario: _valid_confs(scenario) for scenario in _LIBRARY_CONFS}
"""Valid agent_conf values of every scenario."""


def _normalise_conf(agent_conf: str) -> str:
    """Accept '9_8' (the folder-name spelling) for '9|8'."""
    return agent_conf.replace("_", "|")


@dataclass
class MaMuJoCoConfig:
    """Options of the MaMuJoCo environment."""

    scenario: str = "HalfCheetah"
    """Robot: Ant, HalfCheetah, Hopper, Humanoid, HumanoidStandup, Pusher, Reacher, Swimmer or Walker2d."""
    agent_conf: str = "2x3"
    """Split of the robot's actuators among agents, e.g. 2x3, 6x1, 4x2, 9|8 (or 9_8), 17x1 (one actuator each)."""
    agent_obsk: int = bounded(1, ge=0)
    """Local obs mode: agents also observe the joints up to this many hops away in the joint graph (0: own only)."""
    episode_limit: int = bounded(1000, gt=0)
    """Episode length in steps; reaching it truncates the episode."""
    obs_mode: Literal["local", "global"] = "local"
    """local: MaMuJoCo's partial observations; global: every agent sees the full state plus a one-hot id (HARL)."""

    def validate(self) -> None:
        check_bounds(self, "env")
        if self.scenario not in AGENT_CONFS:
            raise ConfigError(f"unknown mamujoco scenario {shown(self.scenario)}; valid: {', '.join(AGENT_CONFS)}")
        confs = AGENT_CONFS[self.scenario]
        if _normalise_conf(self.agent_conf) not in confs:
            raise ConfigError(
                f"unknown agent_conf {shown(self.agent_conf)} for mamujoco scenario {self.scenario}; "
                f"valid: {', '.join(confs)}"
            )
        _mamujoco()  # the `mamujoco` extra: a missing one is refused with the config, before a run starts

    def scenario_name(self) -> str:
        """e.g. "HalfCheetah-2x3", "Humanoid-9_8" (usable as a folder name)."""
        return f"{self.scenario}-{_normalise_conf(self.agent_conf)}".replace("|", "_")


def scenarios() -> list[str]:
    """Every valid scenario / agent_conf combination, spelled as `MaMuJoCoConfig.scenario_name()`."""
    return [f"{scenario}-{conf}".replace("|", "_") for scenario, confs in AGENT_CONFS.items() for conf in confs]


@functools.cache
def _mamujoco() -> ModuleType:
    """Import gymnasium-robotics' MaMuJoCo (the `mamujoco` extra), dropping the Adroit notice it prints to
    stderr on import, or fail with the line that installs it."""
    captured = io.StringIO()
    try:
        import mujoco  # noqa: F401  (gymnasium-robotics needs it; checked first for a clear message)

        with contextlib.redirect_stderr(captured):
            from gymnasium_robotics import mamujoco_v1
    except ImportError:
        raise UserError(
            "the mamujoco environment needs gymnasium-robotics and mujoco: pip install 'harl-hypermarl[mamujoco]' "
            "(in a clone of the repository: pip install -e '.[mamujoco]')"
        ) from None
    rest = "".join(line for line in captured.getvalue().splitlines(keepends=True) if "Adroit" not in line)
    if rest:
        sys.stderr.write(rest)
    return mamujoco_v1


@contextlib.contextmanager
def _quiet_mujoco_model_warnings() -> Iterator[None]:
    """Drop MuJoCo's 'settotalmass is deprecated' warning (printed while compiling some robot models);
    other MuJoCo warnings raised meanwhile become Python warnings."""
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def forward(message: str) -> None:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(forward)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _agent_factorization(scenario: str, agent_conf: str) -> dict[str, Any] | None:
    """None for the library's own splits; for `<n_actuators>x1`, one agent per actuator (in actuator
    order), with the library's joint graph (edges) and global nodes of the robot."""
    if agent_conf in _LIBRARY_CONFS[scenario]:
        return None
    (nodes,), edges, global_nodes = _mamujoco().get_parts_and_edges(scenario, None)
    return {
        "partition": [(node,) for node in sorted(nodes, key=lambda node: node.act_ids)],
        "edges": edges,
        "globals": global_nodes,
    }


class MaMuJoCoEnv:
    """One MaMuJoCo robot as a `MultiAgentEnv` (numpy arrays padded to the spec's maxima).

    Args:
        cfg: the env options.
    """

    def __init__(self, cfg: MaMuJoCoConfig):
        cfg.validate()
        conf = _normalise_conf(cfg.agent_conf)
        mamujoco_v1 = _mamujoco()
        with _quiet_mujoco_model_warnings():
            self._env = mamujoco_v1.parallel_env(
                cfg.scenario,
                conf,
                agent_obsk=cfg.agent_obsk,
                agent_factorization=_agent_factorization(cfg.scenario, conf),
                max_episode_steps=cfg.episode_limit,
            )
        self._global_obs = cfg.obs_mode == "global"
        self._episode_limit = cfg.episode_limit
        self._t = 0
        self._agents = tuple(self._env.possible_agents)
        n = len(self._agents)
        spaces = [self._env.action_space(agent) for agent in self._agents]
        act_dims = tuple(int(space.shape[0]) for space in spaces)
        state_dim = int(self._env.state().shape[0])
        if self._global_obs:
            obs_dims = (state_dim + n,) * n
        else:
            obs_dims = tuple(int(self._env.observation_space(agent).shape[0]) for agent in self._agents)
        # Padded action entries get the neutral bounds [-1, 1]; the env ignores them.
        self._act_low = np.full((n, max(act_dims)), -1.0, dtype=np.float32)  # (n_agents, act_dim_max)
        self._act_high = np.full((n, max(act_dims)), 1.0, dtype=np.float32)  # (n_agents, act_dim_max)
        for i, space in enumerate(spaces):
            self._act_low[i, : act_dims[i]] = space.low
            self._act_high[i, : act_dims[i]] = space.high
        self.spec = EnvSpec(
            agent_ids=self._agents,
            obs_dims=obs_dims,
            state_dim=state_dim,
            action_type="continuous",
            act_dims=act_dims,
            act_low=self._act_low.copy(),
            act_high=self._act_high.copy(),
        )
        self._agent_ids_one_hot = np.eye(n, dtype=np.float32)  # (n_agents, n_agents)

    def _observe(self, local_obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Padded observations (n_agents, obs_dim_max) and the state (state_dim,), float32."""
        state = self._env.state().astype(np.float32)  # (state_dim,)
        n = len(self._agents)
        if self._global_obs:
            obs = np.concatenate([np.broadcast_to(state, (n, state.shape[0])), self._agent_ids_one_hot], axis=1)
            return obs, state
        obs = np.zeros((n, self.spec.obs_dim_max), dtype=np.float32)  # (n_agents, obs_dim_max)
        for i, agent in enumerate(self._agents):
            obs[i, : self.spec.obs_dims[i]] = local_obs[agent]
        return obs, state

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, None]:
        """Start an episode (seed None: continue the env's own RNG); returns obs, state, no action masks."""
        local_obs, _ = self._env.reset(seed=seed)
        self._t = 0
        obs, state = self._observe(local_obs)
        return obs, state, None

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, None, np.ndarray, bool, bool, dict]:
        """Apply actions (n_agents, act_dim_max); returns obs, state, None, team reward per agent,
        terminated (the robot fell), truncated (episode_limit reached), {}."""
        clipped = np.clip(actions, self._act_low, self._act_high)  # (n_agents, act_dim_max)
        per_agent = {agent: clipped[i, : self.spec.act_dims[i]] for i, agent in enumerate(self._agents)}
        if self._global_obs:  # skip building the local observations nobody reads
            joint_action = self._env.map_local_actions_to_global_action(per_agent)
            _, reward, terminated, truncated, _ = self._env.single_agent_env.step(joint_action)
            local_obs: dict[str, np.ndarray] = {}
        else:
            local_obs, rewards, terminations, truncations, _ = self._env.step(per_agent)
            first = self._agents[0]
            reward, terminated, truncated = rewards[first], terminations[first], truncations[first]
        self._t += 1
        terminated = bool(terminated)
        truncated = (bool(truncated) or self._t >= self._episode_limit) and not terminated
        obs, state = self._observe(local_obs)
        team_reward = np.full(len(self._agents), reward, dtype=np.float32)  # (n_agents,)
        return obs, state, None, team_reward, terminated, truncated, {}

    def render(self) -> None:
        """Show the robot in a window (needs a display)."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError(
                "rendering MaMuJoCo needs a display (DISPLAY is not set); "
                "offscreen rendering needs MUJOCO_GL=egl and an rgb_array renderer"
            )
        self._env.single_agent_env.unwrapped.mujoco_renderer.render("human")

    def close(self) -> None:
        self._env.close()


def make(
    env_cfg: MaMuJoCoConfig, *, n_envs: int, seed: int, device: torch.device | str, n_workers: int = 0, seeds: int = 1
) -> VecEnv:
    """Build `n_envs` MaMuJoCo envs batched by `make_vec_env` with `n_workers` worker processes (beside the
    calling one).

    `seed` is not needed here: episodes are seeded by the `reset(seed)` of the result.
    """
    env_cfg.validate()
    env_fns = [functools.partial(MaMuJoCoEnv, env_cfg) for _ in range(n_envs)]
    return make_vec_env(env_fns, n_workers, device, seeds)


register_environment(
    EnvEntry(
        name="mamujoco",
        config_cls=MaMuJoCoConfig,
        make=make,
        scenarios=scenarios,
        description="Multi-agent MuJoCo robots (gymnasium-robotics MaMuJoCo v1): continuous actions, team reward",
        action_type=lambda cfg: "continuous",
    )
)
