"""The StarCraft II adapter (`--env smacv2 --backend sc2`): its translation of smacv2's game API.

StarCraft II and `smacv2` cannot be installed here, so these tests drive `Sc2Game` with `ScriptedGame`,
a stand-in with smacv2's method signatures and return conventions (`step` → (reward, terminated, info)
with `battle_won` / `episode_limit`). They check our side of the contract only, not the game.
"""

from __future__ import annotations

import numpy as np
import torch

from harl.envs.sc2 import Sc2Game, sc2_map
from harl.envs.vector import SerialVecEnv

N_AGENTS, N_ACTIONS, LIMIT = 3, 5, 3


class ScriptedGame:
    """Episodes of `LIMIT` steps with reward 1 per step; odd episodes are won at step 2, the others time out."""

    def __init__(self, scenario: str, race: str, seed: int | None) -> None:
        self.seed, self.episode, self.t, self.closed, self.actions = seed, 0, 0, False, []

    def get_env_info(self) -> dict:
        return {"n_agents": N_AGENTS, "n_actions": N_ACTIONS, "obs_shape": 4, "state_shape": 6, "episode_limit": LIMIT}

    def reset(self):
        self.episode, self.t = self.episode + 1, 0
        return self.get_obs(), self.get_state()

    def get_obs(self) -> list[np.ndarray]:
        return [np.full(4, 10 * self.episode + self.t + i, dtype=np.float64) for i in range(N_AGENTS)]

    def get_state(self) -> np.ndarray:
        return np.full(6, float(self.t))

    def get_avail_actions(self) -> list[list[int]]:
        dead = [1] + [0] * (N_ACTIONS - 1)  # agent 2 dies at step 1: only no-op
        return [[1] * N_ACTIONS, [1, 1, 0, 1, 1], dead if self.t >= 1 else [1] * N_ACTIONS]

    def step(self, actions: list[int]) -> tuple[float, bool, dict]:
        self.actions.append(actions)
        self.t += 1
        if self.episode % 2 == 1 and self.t == 2:
            return 1.0, True, {"battle_won": True}
        if self.t == LIMIT:
            return 1.0, True, {"battle_won": False, "episode_limit": True}
        return 1.0, False, {}

    def render(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_spec_and_step_translation():
    game = Sc2Game("3s5z", "protoss", ScriptedGame)
    spec = game.spec
    assert spec.n_agents == N_AGENTS and spec.obs_dims == (4,) * N_AGENTS and spec.state_dim == 6
    assert spec.action_type == "discrete" and spec.act_dims == (N_ACTIONS,) * N_AGENTS
    assert spec.has_avail_actions
    obs, state, avail = game.reset(7)
    assert obs.shape == (N_AGENTS, 4) and obs.dtype == np.float32 and state.shape == (6,)
    assert avail.dtype == bool and avail[1].tolist() == [True, True, False, True, True]
    obs, state, avail, reward, terminated, truncated, info = game.step(np.array([[0], [4], [2]]))
    assert game._game.actions[-1] == [0, 4, 2]  # plain ints, one per agent
    assert reward.tolist() == [1.0] * N_AGENTS and not terminated and not truncated and info == {}
    assert avail[2].tolist() == [True, False, False, False, False]  # a dead agent may only no-op
    *_, terminated, truncated, info = game.step(np.zeros((N_AGENTS, 1), dtype=np.int64))
    assert terminated and not truncated and info == {"win": 1.0}  # episode 1: won
    game.reset(None)
    game.step(np.zeros((N_AGENTS, 1)))
    game.step(np.zeros((N_AGENTS, 1)))
    *_, terminated, truncated, info = game.step(np.zeros((N_AGENTS, 1)))
    assert not terminated and truncated and info == {"win": 0.0}  # episode 2: the map's limit


def test_a_new_seed_restarts_the_game_with_it():
    game = Sc2Game("smacv2_5_units", "zerg", ScriptedGame)
    first = game._game
    game.reset(3)
    assert first.closed and game._game.seed == 3
    same = game._game
    game.reset(None)
    game.reset(3)
    assert game._game is same  # same seed (or none): a new episode in the running game


def test_vector_env_batches_games_with_auto_reset_and_win_info():
    vec = SerialVecEnv([lambda: Sc2Game("3s5z", "protoss", ScriptedGame)] * 2, "cpu")
    out = vec.reset(0)
    assert out.obs.shape == (2, N_AGENTS, 4) and out.avail_actions.shape == (2, N_AGENTS, N_ACTIONS)
    vec.step(torch.zeros(2, N_AGENTS, 1, dtype=torch.long))
    out = vec.step(torch.zeros(2, N_AGENTS, 1, dtype=torch.long))
    assert out.terminated.tolist() == [True, True] and out.episode_return.tolist() == [2.0, 2.0]
    assert out.info["win"].tolist() == [1.0, 1.0]
    assert out.obs[0, 0, 0].item() == 20.0  # auto-reset: episode 2's first observation
    vec.close()


def test_scenarios_map_to_smacv2_maps():
    name, config = sc2_map("smacv2_10_units", "terran")
    assert name == "10gen_terran" and config["n_units"] == config["n_enemies"] == 10
    assert config["team_gen"]["unit_types"] == ["marine", "marauder", "medivac"]
    assert config["team_gen"]["exception_unit_types"] == ["medivac"]
    assert config["start_positions"]["dist_type"] == "surrounded_and_reflect"
    assert sc2_map("3s5z", "terran") == ("3s5z", None)
