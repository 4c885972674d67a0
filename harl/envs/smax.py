"""StarCraft-style micromanagement (`--env smacv2`) on JaxMARL's SMAX.

StarCraft II itself cannot run here, and the HyperMARL paper ran its SMACv2 experiments on
JaxMARL's SMAX, a JAX re-implementation with simplified dynamics. Maps: the SMACv2-style
`smacv2_5_units`, `smacv2_10_units`, `smacv2_20_units` (random unit types and start positions
every episode) and SMACv1-style maps such as `2s3z` and `3s5z`. Our agents are the allies; the
enemies follow SMAX's built-in heuristic (`HeuristicEnemySMAX`).

All `n_envs` games advance in one jitted, vmapped JAX call that also auto-resets finished games
and computes the next available-action masks; its outputs become torch tensors through DLPack
(zero-copy where JAX and torch share the device). JAX runs on the CPU, or on the GPU when the
training device is CUDA and the installed jax has CUDA support. Compiling the step takes seconds
to tens of seconds per map and batch size; the compiled code is kept in JAX's persistent cache
(`~/.cache/harl/jax`, or the folder `JAX_COMPILATION_CACHE_DIR` names), so later runs start fast.

- Observation: SMAX's unit list (own features, then allies' and enemies' features).
- State (centralised critics): SMAX's world state (features, team and type of every unit).
- Reward: SMAX's team reward (enemy health removed, normalised, +1 for a won battle), the same
  for every ally. Dead allies keep acting with only the stop action available.
- `terminated`: one side is eliminated; `truncated`: `max_steps` reached first.
- `info["win"]`: 1.0 for a won episode (every enemy dead, an ally alive), 0.0 otherwise.

`backend: sc2` drives real StarCraft II through the `smacv2` package instead (`harl.envs.sc2`, one
game per env, batched by `harl.envs.vector`); it is UNTESTED against StarCraft II, which cannot be installed
where this was written. Without smacv2 and StarCraft II, asking for it says what to install.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from harl.config import bounded, check_bounds
from harl.envs.sc2 import Sc2Game
from harl.envs.vector import make_vec_env
from harl.errors import ConfigError, UserError, shown
from harl.registry import EnvEntry, register_environment
from harl.spec import EnvSpec, StepOutput, VecEnv

# The maps of JaxMARL SMAX's scenario table (`jaxmarl.environments.smax.smax_env.MAP_NAME_TO_SCENARIO`),
# listed here so configs validate without importing JAX.
MAPS = (
    "smacv2_5_units",
    "smacv2_10_units",
    "smacv2_20_units",
    "2s3z",
    "3s5z",
    "3m",
    "8m",
    "25m",
    "5m_vs_6m",
    "10m_vs_11m",
    "27m_vs_30m",
    "3s5z_vs_3s6z",
    "3s_vs_5z",
    "6h_vs_8z",
)


@dataclass
class SmacConfig:
    """Options of the StarCraft-style micromanagement environment."""

    scenario: str = "smacv2_5_units"
    """Map: smacv2_5_units, smacv2_10_units, smacv2_20_units (SMACv2-style) or a SMACv1-style map (2s3z, 3s5z, ...)."""
    backend: Literal["smax", "sc2"] = "smax"
    """smax: JaxMARL's SMAX in JAX; sc2: real StarCraft II through the smacv2 package (untested, see harl.envs.sc2)."""
    race: Literal["protoss", "terran", "zerg"] = "protoss"
    """Race of both teams on the smacv2_N_units maps with backend sc2 (SMAX draws its own unit types)."""
    max_steps: int = bounded(100, gt=0)
    """Episode length in steps; reaching it truncates the episode."""
    see_enemy_actions: bool = True
    """Observations include the other units' last actions."""
    walls_cause_death: bool = True
    """Units that touch the map's edge die."""
    attack_mode: Literal["closest", "random"] = "closest"
    """Target choice of the heuristic enemy."""
    enemy_shoots: bool = True
    """Whether the heuristic enemy attacks at all."""

    def validate(self) -> None:
        check_bounds(self, "env")
        if self.scenario not in MAPS:
            raise ConfigError(f"unknown smacv2 scenario {shown(self.scenario)}; valid: {', '.join(MAPS)}")
        if self.backend == "sc2":
            _require_sc2()

    def scenario_name(self) -> str:
        """The map name, e.g. "smacv2_10_units" (the tuned-config folder)."""
        return self.scenario


def _require_sc2() -> None:
    """Raise the one-line UserError that says what `backend: sc2` needs."""
    missing = []
    if importlib.util.find_spec("smacv2") is None:
        missing.append("the smacv2 package (pip install git+https://github.com/oxwhirl/smacv2)")
    if not os.environ.get("SC2PATH"):
        missing.append("StarCraft II (installed, with SC2PATH pointing at it)")
    if missing:
        need = " and ".join(missing)
        raise UserError(
            f"--backend sc2 needs {need}; use --backend smax (JaxMARL SMAX, pip install 'harl-hypermarl[smax]')"
        )


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Silence what JaxMARL prints on import (notes about its optional envs, written to the process's
    stdout because one of its modules resets `sys.stdout`) and restore the Python streams it resets."""
    streams = sys.stdout, sys.stderr
    sys.stdout.flush()
    saved_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.__stdout__.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        os.close(devnull)
        sys.stdout, sys.stderr = streams


@functools.cache
def _jax() -> tuple[Any, Any]:
    """Import jax and JaxMARL's SMAX (the `[smax]` extra), or fail with the line that installs them."""
    # JAX must not reserve most of the GPU's memory up front: torch trains on the same device.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        with _quiet_import():
            import jax
            from jaxmarl.environments import smax
    except ImportError:
        raise UserError(
            "the smacv2 environment (JaxMARL SMAX) needs jaxmarl: pip install jaxmarl "
            "(or pip install 'harl-hypermarl[smax]')"
        ) from None
    # None: the user chose no folder (JAX_COMPILATION_CACHE_DIR); jax's type stubs omit its configuration flags
    if jax.config.jax_compilation_cache_dir is None:  # type: ignore[attr-defined]
        cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        jax.config.update("jax_compilation_cache_dir", os.path.join(cache_home, "harl", "jax"))
    return jax, smax


def _jax_device(device: torch.device) -> Any:
    """The JAX device matching torch's `device`: its GPU when jax has CUDA support, else the CPU."""
    jax, _ = _jax()
    if device.type == "cuda":
        try:
            gpus = jax.devices("cuda")
        except RuntimeError:
            gpus = []
        if gpus:
            return gpus[device.index or 0]
    return jax.devices("cpu")[0]


class _Batch(NamedTuple):
    """What the jitted step returns for all envs (JAX arrays)."""

    obs: Any  # (E, N, obs_dim) float32, first obs of the next episode where done
    state: Any  # (E, state_dim) float32
    avail: Any  # (E, N, n_actions) bool
    reward: Any  # (E, N) float32
    terminated: Any  # (E,) bool
    truncated: Any  # (E,) bool
    final_obs: Any  # (E, N, obs_dim) float32
    final_state: Any  # (E, state_dim) float32
    episode_return: Any  # (E,) float32, NaN where not done
    episode_length: Any  # (E,) float32, 0 where not done
    win: Any  # (E,) float32, NaN where not done


class _Smax:
    """One SMAX configuration and its jitted, vmapped reset and step (shared by every env batch of it)."""

    def __init__(self, cfg: SmacConfig):
        jax, smax = _jax()
        self.env = smax.HeuristicEnemySMAX(
            scenario=smax.map_name_to_scenario(cfg.scenario),
            max_steps=cfg.max_steps,
            see_enemy_actions=cfg.see_enemy_actions,
            walls_cause_death=cfg.walls_cause_death,
            attack_mode=cfg.attack_mode,
            enemy_shoots=cfg.enemy_shoots,
        )
        self.reset = jax.jit(self._reset, static_argnums=1)
        self.step = jax.jit(self._step)

    def _avail(self, states: Any) -> Any:
        """(E, N, n_actions) bool masks of the batched `states`."""
        jax, _ = _jax()
        masks = jax.vmap(self.env.get_avail_actions)(states)  # {agent: (E, n_actions)}
        return jax.numpy.stack([masks[agent] for agent in self.env.agents], axis=1).astype(bool)

    def _reset(self, key: Any, n_envs: int) -> tuple[Any, Any, Any, Any, Any]:
        """New games in `n_envs` envs: (next key, states, obs (E, N, obs_dim), world state (E, S), avail)."""
        jax, _ = _jax()
        key, sub = jax.random.split(key)
        obs, states = jax.vmap(self.env.reset)(jax.random.split(sub, n_envs))
        # Drop weak types (the heuristic enemy's initial state has one) so stepping never recompiles.
        states = jax.tree.map(lambda x: x.astype(x.dtype), states)
        stacked = jax.numpy.stack([obs[agent] for agent in self.env.agents], axis=1)
        return key, states, stacked, obs["world_state"], self._avail(states)

    def _step_one(self, key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
        """One env: step with actions (N,), auto-reset when the game ends."""
        jax, _ = _jax()
        jnp, env = jax.numpy, self.env
        step_key, reset_key = jax.random.split(key)
        obs, after, rewards, _, _ = env.step_env(step_key, state, {a: actions[i] for i, a in enumerate(env.agents)})
        alive = after.state.unit_alive
        allies_dead = ~jnp.any(alive[: env.num_allies])
        enemies_dead = ~jnp.any(alive[env.num_allies :])
        terminated = allies_dead | enemies_dead
        # SMAX itself ends a timed-out game one step late (it tests the step count before counting the step).
        truncated = (after.state.step >= env.max_steps) & ~terminated
        done = terminated | truncated
        final_obs = jnp.stack([obs[a] for a in env.agents])  # (N, obs_dim)
        reset_obs, reset_state = env.reset(reset_key)
        next_state = jax.tree.map(lambda new, old: jnp.where(done, new, old), reset_state, after)
        next_obs = jnp.where(done, jnp.stack([reset_obs[a] for a in env.agents]), final_obs)
        next_world = jnp.where(done, reset_obs["world_state"], obs["world_state"])
        reward = jnp.stack([rewards[a] for a in env.agents]).astype(jnp.float32)  # (N,)
        return (
            next_state,
            next_obs,
            next_world,
            reward,
            terminated,
            truncated,
            final_obs,
            obs["world_state"],
            enemies_dead & ~allies_dead,
        )

    def _step(self, key: Any, states: Any, returns: Any, lengths: Any, actions: Any) -> tuple[Any, ...]:
        """All envs: actions (E, N) int32 -> (next key, states, returns (E,), lengths (E,), `_Batch`)."""
        jax, _ = _jax()
        jnp = jax.numpy
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, actions.shape[0])
        states, obs, world, reward, terminated, truncated, final_obs, final_world, win = jax.vmap(self._step_one)(
            keys, states, actions
        )
        done = terminated | truncated  # (E,)
        returns = returns + reward.mean(-1)
        lengths = lengths + 1.0
        nan = jnp.full_like(returns, jnp.nan)
        batch = _Batch(
            obs=obs,
            state=world,
            avail=self._avail(states),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            final_state=final_world,
            episode_return=jnp.where(done, returns, nan),
            episode_length=jnp.where(done, lengths, 0.0),
            win=jnp.where(done, win.astype(jnp.float32), nan),
        )
        return key, states, jnp.where(done, 0.0, returns), jnp.where(done, 0.0, lengths), batch


@functools.cache
def _compiled(cfg_values: tuple) -> _Smax:
    """The `_Smax` of a configuration (cached so train and eval batches share compiled functions)."""
    return _Smax(SmacConfig(*cfg_values))


def _to_torch(array: Any, device: torch.device) -> torch.Tensor:
    """A JAX array as a torch tensor on `device`, through DLPack."""
    return torch.from_dlpack(array).to(device)


class SmaxVecEnv:
    """`n_envs` SMAX games against the heuristic enemy, stepped in one jitted call.

    Args:
        cfg: the env options (backend smax).
        n_envs: number of parallel games.
        device: where the returned tensors live (and JAX's device: the GPU when CUDA-capable jax is installed).
        seed: seed of the games until the first `reset(seed)`.
    """

    def __init__(self, cfg: SmacConfig, n_envs: int, device: torch.device | str, seed: int = 0):
        cfg.validate()
        self.n_envs, self.device = n_envs, torch.device(device)
        self.n_workers = 0  # stepped in this process by JAX
        self._jax_device = _jax_device(self.device)
        self._smax = _compiled(astuple(cfg))
        env = self._smax.env
        n, n_actions = env.num_allies, env.num_ally_actions
        self.spec = EnvSpec(
            agent_ids=tuple(env.agents),
            obs_dims=(int(env.observation_spaces[env.agents[0]].shape[0]),) * n,
            state_dim=int(env.state_size),
            action_type="discrete",
            act_dims=(n_actions,) * n,
            act_low=np.zeros((n, n_actions), dtype=np.float32),
            act_high=np.ones((n, n_actions), dtype=np.float32),
            has_avail_actions=True,
        )
        self._seed_games(seed)

    def _seed_games(self, seed: int) -> StepOutput:
        """Start new games in every env from `seed`; returns the first observations."""
        jax, _ = _jax()
        key = jax.device_put(jax.random.PRNGKey(seed), self._jax_device)
        self._key, self._states, obs, world, avail = self._smax.reset(key, self.n_envs)
        zeros = jax.device_put(np.zeros(self.n_envs, dtype=np.float32), self._jax_device)
        self._returns, self._lengths = zeros, zeros
        obs_t, state_t = _to_torch(obs, self.device), _to_torch(world, self.device)
        no = torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)
        return StepOutput(
            obs=obs_t,
            state=state_t,
            avail_actions=_to_torch(avail, self.device),
            reward=torch.zeros(self.n_envs, self.spec.n_agents, device=self.device),
            terminated=no,
            truncated=no.clone(),
            final_obs=obs_t,
            final_state=state_t,
            episode_return=torch.full((self.n_envs,), float("nan"), device=self.device),
            episode_length=torch.zeros(self.n_envs, device=self.device),
        )

    def reset(self, seed: int) -> StepOutput:
        """New games in every env, seeded with `seed`."""
        return self._seed_games(seed)

    def step(self, actions: torch.Tensor) -> StepOutput:
        """Step every game with actions (E, N, 1) (indices of available actions), auto-resetting finished games."""
        jax, _ = _jax()
        joint = actions[..., 0].to(torch.int32)  # (E, N)
        if self._jax_device.platform == "cpu":
            joint = joint.cpu()
        self._key, self._states, self._returns, self._lengths, batch = self._smax.step(
            self._key, self._states, self._returns, self._lengths, jax.dlpack.from_dlpack(joint.contiguous())
        )
        out = _Batch(*(_to_torch(array, self.device) for array in batch))
        return StepOutput(
            obs=out.obs,
            state=out.state,
            avail_actions=out.avail,
            reward=out.reward,
            terminated=out.terminated,
            truncated=out.truncated,
            final_obs=out.final_obs,
            final_state=out.final_state,
            episode_return=out.episode_return,
            episode_length=out.episode_length,
            info={"win": out.win},
        )

    def render(self) -> None:
        """Print env 0's units: alive flags and health of allies and enemies."""
        inner = self._states.state
        n_allies = self._smax.env.num_allies
        alive, health = np.asarray(inner.unit_alive[0]), np.asarray(inner.unit_health[0])
        print(
            f"step {int(inner.step[0])}: allies alive {alive[:n_allies].astype(int).tolist()} "
            f"health {np.round(health[:n_allies]).tolist()} | enemies alive {alive[n_allies:].astype(int).tolist()} "
            f"health {np.round(health[n_allies:]).tolist()}"
        )

    def close(self) -> None:
        return None


def make(
    env_cfg: SmacConfig, *, n_envs: int, seed: int, device: torch.device | str, n_workers: int = 0, seeds: int = 1
) -> VecEnv:
    """Build `n_envs` games: SMAX natively vectorised (`n_workers` is not used; one JAX key stream for every env,
    so `seeds` side by side draw disjoint, reproducible games, not their solo runs' own), or StarCraft II games
    (backend sc2) batched by `make_vec_env` with `n_workers` worker processes (each seed's games seeded as its solo
    run's)."""
    env_cfg.validate()
    if env_cfg.backend == "sc2":
        game = functools.partial(Sc2Game, env_cfg.scenario, env_cfg.race)
        return make_vec_env([game] * n_envs, n_workers, device, seeds)  # episodes seeded by its reset(seed)
    return SmaxVecEnv(env_cfg, n_envs, device, seed)


register_environment(
    EnvEntry(
        name="smacv2",
        config_cls=SmacConfig,
        make=make,
        scenarios=lambda: list(MAPS),
        description="StarCraft-style micromanagement on JaxMARL SMAX (SMACv2- and SMACv1-style maps) "
        "vs the heuristic enemy; discrete, action masks, win rate",
        action_type=lambda cfg: "discrete",
    )
)
