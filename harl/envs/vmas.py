"""VMAS (Vectorized Multi-Agent Simulator) Dispersion and Navigation, natively vectorised in torch.

VMAS simulates all `n_envs` worlds as batched torch tensors on one device, so this adapter keeps
every tensor on the training device: actions go in and observations, rewards and flags come out
without a numpy round trip. Agents become a tensor dimension by stacking VMAS's per-agent lists.

Scenario defaults are the HyperMARL paper's settings (appendix B, tables 7 and 12):

- `dispersion`: 4 agents, 4 food items of radius 0.08, per-agent rewards (no sharing), a time
  penalty, discrete actions (VMAS's 9 = 3 × 3 movement choices), 100 steps.
- `navigation`: 2/4/8 agents, `agents_with_same_goal` 1 (all different), n/2 or n, continuous
  actions, no collisions, every agent observes all goals, lidar range 0.35, 100 steps.

Global state (for centralised critics): the concatenation of all agents' observations,
(n_envs, n_agents * obs_dim). Episodes end with `terminated` when the scenario is solved (all food
eaten / every agent on its goal) and with `truncated` at `max_steps`.

Finished envs are reset together in one vectorised call: the whole batch of worlds is reset, then
every batched tensor of the scenario, its world and entities is put back to its pre-reset value
in the envs that were still running. VMAS's random streams (torch, numpy, python) are kept per
adapter instance, so training and evaluation envs never disturb each other or the learner's RNG.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from harl.config import bounded, check_bounds
from harl.errors import ConfigError, UserError, shown
from harl.registry import EnvEntry, register_environment
from harl.spec import EnvSpec, StepOutput

SCENARIOS = ("dispersion", "navigation")
_PAPER_CONTINUOUS = {"dispersion": False, "navigation": True}


@dataclass
class VmasConfig:
    """Options of the VMAS environment (defaults: the HyperMARL paper's settings)."""

    scenario: str = "dispersion"
    """VMAS scenario: dispersion or navigation."""
    n_agents: int = bounded(4, gt=0)
    """Number of agents."""
    max_steps: int = bounded(100, gt=0)
    """Episode length in steps; reaching it truncates the episode."""
    continuous_actions: bool | None = None
    """Continuous (force) or discrete actions; None: the paper's choice (dispersion discrete, navigation continuous)."""
    share_reward: bool = False
    """Give every agent the team reward instead of its own (dispersion share_reward, navigation shared_rew)."""
    n_food: int | None = bounded(None, gt=0)
    """Dispersion: number of food items (None: one per agent)."""
    food_radius: float = bounded(0.08, gt=0)
    """Dispersion: radius of the food items."""
    penalise_by_time: bool = True
    """Dispersion: -0.01 reward on every step an agent eats nothing."""
    agents_with_same_goal: int = bounded(1, gt=0)
    """Navigation: the first k agents share one goal (1: all goals different; n_agents: one common goal)."""
    split_goals: bool = False
    """Navigation: split the team into two halves with one goal each (needs agents_with_same_goal = n_agents / 2)."""
    collisions: bool = False
    """Navigation: agents collide (and observe each other through a lidar)."""
    observe_all_goals: bool = True
    """Navigation: every agent observes every agent's goal, not only its own."""
    lidar_range: float = bounded(0.35, gt=0)
    """Navigation: lidar range (used when collisions are on)."""
    agent_radius: float = bounded(0.1, gt=0)
    """Navigation: agent radius."""

    def validate(self) -> None:
        check_bounds(self, "env")
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"unknown vmas scenario {shown(self.scenario)}; valid: {', '.join(SCENARIOS)}")
        if not 1 <= self.agents_with_same_goal <= self.n_agents:
            raise ConfigError(
                f"env.agents_with_same_goal must be in [1, n_agents={self.n_agents}], got {self.agents_with_same_goal}"
            )
        if self.scenario == "navigation" and self.agents_with_same_goal > 1 and self.collisions:
            raise ConfigError("vmas navigation: agents that share goals cannot collide; set env.collisions false")
        if self.split_goals and not (self.n_agents % 2 == 0 and self.agents_with_same_goal == self.n_agents // 2):
            raise ConfigError(
                "vmas navigation: split_goals needs an even n_agents and agents_with_same_goal = n_agents / 2"
            )

    @property
    def continuous(self) -> bool:
        """Whether actions are continuous (the explicit choice, else the paper's for the scenario)."""
        return _PAPER_CONTINUOUS[self.scenario] if self.continuous_actions is None else self.continuous_actions

    def scenario_kwargs(self) -> dict[str, Any]:
        """The keyword arguments VMAS's scenario `make_world` takes."""
        if self.scenario == "dispersion":
            return {
                "n_agents": self.n_agents,
                "n_food": self.n_agents if self.n_food is None else self.n_food,
                "food_radius": self.food_radius,
                "share_reward": self.share_reward,
                "penalise_by_time": self.penalise_by_time,
            }
        return {
            "n_agents": self.n_agents,
            "agents_with_same_goal": self.agents_with_same_goal,
            "split_goals": self.split_goals,
            "collisions": self.collisions,
            "observe_all_goals": self.observe_all_goals,
            "shared_rew": self.share_reward,
            "lidar_range": self.lidar_range,
            "agent_radius": self.agent_radius,
        }

    def scenario_name(self) -> str:
        """The run folder's and tuned configs' scenario: "dispersion-4"; Navigation names its goal setup (the
        paper's three, table 12): "navigation-8" (all goals different), "navigation-8-same-goal" (one common
        goal), "navigation-8-mixed-goals" (the first n/2 agents share a goal); any other setup is named by its
        options ("navigation-8-3-share-a-goal", "navigation-8-split-goals")."""
        name = f"{self.scenario}-{self.n_agents}"
        if self.scenario != "navigation":
            return name
        if self.split_goals:
            return f"{name}-split-goals"
        sharing = self.agents_with_same_goal
        if sharing == 1:
            return name
        if sharing == self.n_agents:
            return f"{name}-same-goal"
        if 2 * sharing == self.n_agents:
            return f"{name}-mixed-goals"
        return f"{name}-{sharing}-share-a-goal"


@functools.cache
def _vmas() -> ModuleType:
    """Import vmas (an optional extra), or fail with the line that installs it."""
    try:
        import vmas
    except ImportError:
        message = (
            "the vmas environment needs the vmas package: pip install vmas (or pip install 'harl-hypermarl[vmas]')"
        )
        raise UserError(message) from None
    return vmas


def _rng_states(seed: int, device: torch.device) -> dict[str, Any]:
    """Fresh torch (CPU and, on CUDA, the device's), numpy and python RNG states seeded with `seed`."""
    states: dict[str, Any] = {
        "torch": torch.Generator().manual_seed(seed).get_state(),
        "numpy": np.random.RandomState(seed).get_state(),
        "python": random.Random(seed).getstate(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.Generator(device=device).manual_seed(seed).get_state()
    return states


class VmasVecEnv:
    """`n_envs` VMAS worlds of one scenario, stepped as a batch on `device`.

    Args:
        cfg: the env options.
        n_envs: number of parallel worlds.
        device: where VMAS simulates and where every returned tensor lives.
        seed: seed of the random streams until the first `reset(seed)`.
    """

    def __init__(self, cfg: VmasConfig, n_envs: int, device: torch.device | str, seed: int = 0):
        cfg.validate()
        self.n_envs, self.device = n_envs, torch.device(device)
        self.n_workers = 0  # stepped in this process, as tensors
        self._rng = _rng_states(seed, self.device)
        with self._own_rng():
            self._env = _vmas().make_env(
                cfg.scenario,
                num_envs=n_envs,
                device=self.device,
                continuous_actions=cfg.continuous,
                max_steps=cfg.max_steps,
                clamp_actions=True,
                terminated_truncated=True,
                **cfg.scenario_kwargs(),
            )
        agents = self._env.agents
        n = len(agents)
        obs = self._observe()  # (E, N, obs_dim_max)
        obs_dims = tuple(int(space.shape[0]) for space in self._env.observation_space)
        if cfg.continuous:
            spaces = list(self._env.action_space)
            act_dims = tuple(int(space.shape[0]) for space in spaces)
            act_low = np.full((n, max(act_dims)), -1.0, dtype=np.float32)  # (N, act_dim_max)
            act_high = np.full((n, max(act_dims)), 1.0, dtype=np.float32)  # (N, act_dim_max)
            for i, space in enumerate(spaces):
                act_low[i, : act_dims[i]] = space.low
                act_high[i, : act_dims[i]] = space.high
        else:
            act_dims = tuple(int(space.n) for space in self._env.action_space)
            act_low = np.zeros((n, max(act_dims)), dtype=np.float32)
            act_high = np.ones((n, max(act_dims)), dtype=np.float32)
        self.spec = EnvSpec(
            agent_ids=tuple(agent.name for agent in agents),
            obs_dims=obs_dims,
            state_dim=n * obs.shape[-1],
            action_type="continuous" if cfg.continuous else "discrete",
            act_dims=act_dims,
            act_low=act_low,
            act_high=act_high,
        )
        self._act_dims = act_dims
        self._returns = torch.zeros(n_envs, device=self.device)  # (E,) team return of the running episodes
        self._lengths = torch.zeros(n_envs, device=self.device)  # (E,) steps of the running episodes

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run VMAS code on this adapter's own random streams, leaving the global ones untouched."""
        cuda = "cuda" in self._rng
        saved = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
        saved_cuda = torch.cuda.get_rng_state(self.device) if cuda else None
        torch.random.set_rng_state(self._rng["torch"])
        np.random.set_state(self._rng["numpy"])
        random.setstate(self._rng["python"])
        if cuda:
            torch.cuda.set_rng_state(self._rng["cuda"], self.device)
        try:
            yield
        finally:
            self._rng["torch"], self._rng["numpy"] = torch.random.get_rng_state(), np.random.get_state()
            self._rng["python"] = random.getstate()
            torch.random.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])
            if cuda:
                self._rng["cuda"] = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_cuda, self.device)

    def _observe(self) -> torch.Tensor:
        """Current observations of every agent, (E, N, obs_dim_max), zero-padded."""
        (per_agent,) = self._env.get_from_scenario(
            get_observations=True, get_rewards=False, get_infos=False, get_dones=False
        )
        return _stack_padded(per_agent)

    def _batched_attributes(self) -> list[tuple[object, str, torch.Tensor]]:
        """Every tensor with a leading env dimension held by the scenario, its world and entities (copied)."""
        env = self._env
        holders: list[object] = [env.scenario, env.world]
        for entity in env.world.entities:
            holders += [entity, entity.state]
            for name in ("action", "dynamics"):
                if hasattr(entity, name):
                    holders.append(getattr(entity, name))
            holders += list(getattr(entity, "sensors", None) or [])
        return [
            (holder, name, value.clone())
            for holder in holders
            for name, value in vars(holder).items()
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == self.n_envs
        ]

    def _reset_where(self, mask: torch.Tensor, everything: bool) -> None:
        """Start new episodes in the envs where `mask` (E,) is True (`everything`: in all of them), leaving the
        others untouched."""
        with self._own_rng():
            before = [] if everything else self._batched_attributes()
            self._env.scenario.env_reset_world_at(None)
            for holder, name, old in before:
                new = getattr(holder, name)
                if isinstance(new, torch.Tensor) and new.shape == old.shape:
                    keep = mask.view(-1, *([1] * (old.dim() - 1)))
                    setattr(holder, name, torch.where(keep, new, old))
        self._env.steps = torch.where(mask, torch.zeros_like(self._env.steps), self._env.steps)
        self._returns = torch.where(mask, torch.zeros_like(self._returns), self._returns)
        self._lengths = torch.where(mask, torch.zeros_like(self._lengths), self._lengths)

    def reset(self, seed: int) -> StepOutput:
        """Seed this adapter's random streams with `seed` and start new episodes in every env."""
        self._rng = _rng_states(seed, self.device)
        self._reset_where(torch.ones(self.n_envs, dtype=torch.bool, device=self.device), everything=True)
        obs = self._observe()
        state = obs.flatten(1)  # (E, N * obs_dim_max)
        no = torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)
        return StepOutput(
            obs=obs,
            state=state,
            avail_actions=None,
            reward=torch.zeros(self.n_envs, self.spec.n_agents, device=self.device),
            terminated=no,
            truncated=no.clone(),
            final_obs=obs,
            final_state=state,
            episode_return=torch.full((self.n_envs,), float("nan"), device=self.device),
            episode_length=torch.zeros(self.n_envs, device=self.device),
        )

    def step(self, actions: torch.Tensor) -> StepOutput:
        """Step every world with actions (E, N, action_shape), resetting the worlds whose episode ended."""
        actions = actions.to(self.device)
        if self.spec.discrete:
            per_agent = list(actions.long().unbind(1))  # N × (E, 1)
        else:
            per_agent = [a[:, :dim] for a, dim in zip(actions.float().unbind(1), self._act_dims, strict=True)]
        # VMAS steps on its own CPU streams already; only a CUDA generator needs swapping here.
        with self._own_rng() if "cuda" in self._rng else contextlib.nullcontext():
            obs_list, rewards, terminated, truncated, _ = self._env.step(per_agent)
        final_obs = _stack_padded(obs_list)  # (E, N, obs_dim_max)
        reward = torch.stack(rewards, 1).float()  # (E, N)
        terminated = terminated.bool()
        truncated = truncated.bool() & ~terminated
        done = terminated | truncated  # (E,)
        self._returns += reward.mean(1)
        self._lengths += 1
        episode_return = torch.where(done, self._returns, torch.full_like(self._returns, float("nan")))
        episode_length = torch.where(done, self._lengths, torch.zeros_like(self._lengths))
        # the host must know where episodes ended (VMAS resets worlds by index): one read for every host flag
        n_done, n_truncated = torch.stack([done.sum(), truncated.sum()]).tolist()
        if n_done:
            self._reset_where(done, everything=n_done == self.n_envs)
            obs = self._observe()
        else:
            obs = final_obs
        return StepOutput(
            obs=obs,
            state=obs.flatten(1),
            avail_actions=None,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            final_state=final_obs.flatten(1),
            episode_return=episode_return,
            episode_length=episode_length,
            any_truncated=n_truncated > 0,
        )

    def render(self) -> None:
        """Show world 0 in a window (needs a display and pyglet)."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError("rendering VMAS needs a display (DISPLAY is not set)")
        self._env.render(mode="human", env_index=0)

    def close(self) -> None:
        viewer = getattr(self._env, "viewer", None)
        if viewer is not None:
            viewer.close()


def _stack_padded(per_agent: list[torch.Tensor]) -> torch.Tensor:
    """N tensors (E, obs_dim_i) -> (E, N, max obs_dim_i), zero-padded, float32."""
    width = max(t.shape[-1] for t in per_agent)
    return torch.stack([torch.nn.functional.pad(t.float(), (0, width - t.shape[-1])) for t in per_agent], dim=1)


def make(
    env_cfg: VmasConfig, *, n_envs: int, seed: int, device: torch.device | str, n_workers: int = 0, seeds: int = 1
) -> VmasVecEnv:
    """Build `n_envs` VMAS worlds on `device` (natively vectorised: `n_workers` is not used; one random stream
    for every world, so `seeds` side by side draw disjoint, reproducible episodes, not their solo runs' own)."""
    return VmasVecEnv(env_cfg, n_envs, device, seed)


register_environment(
    EnvEntry(
        name="vmas",
        config_cls=VmasConfig,
        make=make,
        scenarios=lambda: [f"{name} (n_agents >= 1)" for name in SCENARIOS],
        description="VMAS Dispersion (discrete, per-agent food rewards) and Navigation (continuous), batched in torch",
        action_type=lambda cfg: "continuous" if cfg.continuous else "discrete",
    )
)
