"""Real StarCraft II through the `smacv2` package (`--env smacv2 --backend sc2`). UNTESTED against
StarCraft II: neither the game nor `smacv2` can be installed where this was written, so only the
translation below is tested (with a scripted stand-in for the `smacv2` game object).

One `Sc2Game` drives one StarCraft II process through smacv2's `StarCraft2Env` (SMACv1-style maps,
e.g. `3s5z`) or `StarCraftCapabilityEnvWrapper` (the SMACv2 maps): `smacv2_N_units` becomes
`10gen_<race>` with N allies vs N enemies, unit types drawn per episode with SMACv2's weights and
"surrounded and reflect" start positions, as smacv2's own `sc2_gen_<race>.yaml` configs define them.
`harl.envs.vector` batches games like any other single env (in worker processes and the training process).

Differences from the SMAX backend a user should know:

- rewards are smacv2's own shaped rewards (damage and kills, +200 win bonus, scaled to ≈ 20 per
  won episode), the same for every ally;
- the map's own episode limit applies (`max_steps` and SMAX's options are not used); reaching it
  is a truncation, as smacv2 marks it with `info["episode_limit"]`;
- `info["win"]` is smacv2's `battle_won`.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

import numpy as np

from harl.spec import EnvSpec

# Per race: SMACv2's unit types and their sampling weights, and the unit types that may not fill a
# team on their own (smacv2's `exception_unit_types`).
_TEAMS = {
    "protoss": (("stalker", "zealot", "colossus"), (0.45, 0.45, 0.1), ()),
    "terran": (("marine", "marauder", "medivac"), (0.45, 0.45, 0.1), ("medivac",)),
    "zerg": (("zergling", "hydralisk", "baneling"), (0.45, 0.45, 0.1), ("baneling",)),
}


def sc2_map(scenario: str, race: Literal["protoss", "terran", "zerg"]) -> tuple[str, dict | None]:
    """The smacv2 map name and capability config of one of our scenarios.

    `smacv2_N_units` → ("10gen_<race>", config of N vs N); a SMACv1-style map → (its name, None).
    """
    if not scenario.startswith("smacv2_"):
        return scenario, None
    n_units = int(scenario.split("_")[1])
    unit_types, weights, exceptions = _TEAMS[race]
    team_gen: dict[str, Any] = {"dist_type": "weighted_teams", "unit_types": list(unit_types), "weights": list(weights)}
    team_gen |= {"observe": True, **({"exception_unit_types": list(exceptions)} if exceptions else {})}
    start = {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}
    config = {"n_units": n_units, "n_enemies": n_units, "team_gen": team_gen, "start_positions": start}
    return f"10gen_{race}", config


def _smacv2_game(scenario: str, race: Literal["protoss", "terran", "zerg"], seed: int | None) -> Any:
    """A smacv2 game object (starts a StarCraft II process on its first reset)."""
    map_name, capability_config = sc2_map(scenario, race)
    common = {"map_name": map_name, "seed": seed}
    if capability_config is None:
        return importlib.import_module("smacv2.env").StarCraft2Env(**common)
    wrapper = importlib.import_module("smacv2.env.starcraft2.wrapper").StarCraftCapabilityEnvWrapper
    v2 = {"obs_own_pos": True, "use_unit_ranges": True, "min_attack_range": 2, "conic_fov": False}
    return wrapper(capability_config=capability_config, **common, **v2)


class Sc2Game:
    """One StarCraft II game through smacv2, as a `MultiAgentEnv` (numpy in and out).

    Args:
        scenario: one of our smacv2 scenario names (see `harl.envs.smax.MAPS`).
        race: the race of `smacv2_N_units` maps (ignored by SMACv1-style maps).
        make_game: builds the smacv2 game object from (scenario, race, seed); smacv2 by default.
    """

    def __init__(self, scenario: str, race: str, make_game=_smacv2_game) -> None:
        self._scenario, self._race, self._make_game = scenario, race, make_game
        self._seed: int | None = None
        self._game = make_game(scenario, race, None)
        info = self._game.get_env_info()
        n, n_actions = int(info["n_agents"]), int(info["n_actions"])
        self.spec = EnvSpec(
            agent_ids=tuple(f"agent_{i}" for i in range(n)),
            obs_dims=(int(info["obs_shape"]),) * n,
            state_dim=int(info["state_shape"]),
            action_type="discrete",
            act_dims=(n_actions,) * n,
            act_low=np.zeros((n, n_actions), dtype=np.float32),
            act_high=np.ones((n, n_actions), dtype=np.float32),
            has_avail_actions=True,
        )

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs = np.asarray(self._game.get_obs(), dtype=np.float32)  # (N, obs)
        state = np.asarray(self._game.get_state(), dtype=np.float32)  # (state,)
        avail = np.asarray(self._game.get_avail_actions(), dtype=bool)  # (N, n_actions)
        return obs, state, avail

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A new episode; a new `seed` restarts the game with it (StarCraft II seeds a game at launch)."""
        if seed is not None and seed != self._seed:
            self._game.close()
            self._game, self._seed = self._make_game(self._scenario, self._race, seed), seed
        self._game.reset()
        return self._observe()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, bool, dict]:
        """actions (N, 1) action indices → obs, state, avail, reward (N,), terminated, truncated, info."""
        reward, ended, info = self._game.step([int(a) for a in np.asarray(actions).reshape(-1)])
        obs, state, avail = self._observe()
        truncated = bool(ended) and bool(info.get("episode_limit", False))
        rewards = np.full(self.spec.n_agents, float(reward), dtype=np.float32)
        step_info = {"win": float(bool(info.get("battle_won", False)))} if ended else {}
        return obs, state, avail, rewards, bool(ended) and not truncated, truncated, step_info

    def render(self) -> None:
        self._game.render()

    def close(self) -> None:
        self._game.close()
