"""The paper's n-agent Specialisation and Synchronisation games (one-step, stateless).

Each of n agents picks one of n food items. With k_i the number of agents that picked agent i's
item, agent i's payoff is 1/k_i in the Specialisation game (spread out) and k_i/n in the
Synchronisation game (all pick the same). The team reward, given to every agent, is the mean
payoff. Observations and the state are a constant vector, so only the architecture can break
the agents' symmetry. Natively vectorised in torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harl.config import bounded, check_bounds
from harl.errors import ConfigError, shown
from harl.registry import EnvEntry, RunSizes, register_environment
from harl.spec import EnvSpec, StepOutput

GAMES = ("specialisation", "synchronisation")


@dataclass
class MatrixConfig:
    """Options of the matrix games."""

    game: str = "specialisation"
    """specialisation (optimum: all agents on different items) or synchronisation (all on one item)."""
    n_agents: int = bounded(4, ge=2)
    """Number of agents (and of food items / actions)."""

    def validate(self) -> None:
        check_bounds(self, "env")
        if self.game not in GAMES:
            raise ConfigError(f"unknown matrix game {shown(self.game)}; valid: {', '.join(GAMES)}")

    def scenario_name(self) -> str:
        return f"{self.game}-{self.n_agents}"


class MatrixGameVecEnv:
    """`n_envs` simultaneous one-step matrix games on `device`."""

    def __init__(self, game: str, n_agents: int, n_envs: int, device):
        self.game, self.n_envs, self.device = game, n_envs, torch.device(device)
        self.n_workers = 0  # stepped in this process, as tensors
        n = n_agents
        self.spec = EnvSpec(
            agent_ids=tuple(f"agent_{i}" for i in range(n)),
            obs_dims=(1,) * n,
            state_dim=1,
            action_type="discrete",
            act_dims=(n,) * n,
            act_low=np.zeros((n, n), dtype=np.float32),
            act_high=np.ones((n, n), dtype=np.float32),
        )
        self._obs = torch.ones(n_envs, n, 1, device=self.device)  # (E, N, 1)
        self._last_actions: torch.Tensor | None = None
        self._state = torch.ones(n_envs, 1, device=self.device)  # (E, 1)

    def payoffs(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-agent payoffs (E, N) of joint actions (E, N) of item indices."""
        n = self.spec.n_agents
        counts = torch.nn.functional.one_hot(actions, n).sum(1)  # (E, n_items)
        k = counts.gather(1, actions).float()  # (E, N): agents sharing each agent's item
        return 1.0 / k if self.game == "specialisation" else k / n

    def _output(self, reward: torch.Tensor, done: bool) -> StepOutput:
        e = self.n_envs
        flag = torch.full((e,), done, dtype=torch.bool, device=self.device)
        team = reward.mean(1)
        return StepOutput(
            obs=self._obs,
            state=self._state,
            avail_actions=None,
            reward=reward,
            terminated=flag,
            truncated=torch.zeros_like(flag),
            final_obs=self._obs,
            final_state=self._state,
            episode_return=team if done else torch.full((e,), float("nan"), device=self.device),
            episode_length=torch.full((e,), int(done), device=self.device),
            any_truncated=False,  # one-step games end by termination only
        )

    def reset(self, seed: int) -> StepOutput:
        return self._output(torch.zeros(self.n_envs, self.spec.n_agents, device=self.device), done=False)

    def step(self, actions: torch.Tensor) -> StepOutput:
        self._last_actions = actions[..., 0].long().to(self.device)  # (E, N)
        team = self.payoffs(self._last_actions).mean(1, keepdim=True)  # (E, 1)
        return self._output(team.expand(-1, self.spec.n_agents), done=True)

    def render(self) -> None:
        """Print env 0's last joint action and its payoffs."""
        if self._last_actions is not None:
            joint = self._last_actions[:1]
            print(f"items chosen: {joint[0].tolist()}  payoffs: {self.payoffs(joint)[0].tolist()}")

    def close(self) -> None:
        return None


def make(
    env_cfg: MatrixConfig, *, n_envs: int, seed: int, device, n_workers: int = 0, seeds: int = 1
) -> MatrixGameVecEnv:
    """`n_envs` batched games on `device` (stateless: `seed`, `n_workers` and `seeds` are not used)."""
    return MatrixGameVecEnv(env_cfg.game, env_cfg.n_agents, n_envs, device)


def memory_estimate(env_cfg: MatrixConfig, sizes: RunSizes) -> dict[str, int]:
    """Bytes a run of these games allocates at least, by part: the tensors that grow with n_agents², since each of
    the N agents chooses among N items. Only what every learner and architecture allocates is counted (e.g.
    not the training minibatch's logits, nor the per-agent weights a hypernetwork generates), so a run refused
    for it could not have fitted.

    - payoff counts: `payoffs` one-hot encodes the joint actions of the largest env batch: (E, N, N) int64;
    - action logits: the policy's output for that batch: (E, N, N) float32;
    - actor output layers: the last layer maps `actor_width` features to N logits, per agent (N copies) for
      architectures that keep per-agent layers; with its gradient and Adam's two moments, 4 floats each;
    - rollout buffer (learners that keep one): observations, actions, log-probs and rewards of (rollout_length,
      n_envs, N) float32 each (the values, returns and advantages the learner computes from it come on top).

    A run of several seeds holds every seed's training envs, output layers and rollout buffer (`sizes` counts
    them: its `n_envs` are every seed's).
    """
    n = env_cfg.n_agents
    envs = max(sizes.n_envs, sizes.n_eval_envs)
    layers = sizes.seeds * sizes.actor_width * n * (n if sizes.agent_copies else 1)
    parts = {
        "payoff counts": envs * n * n * 8,
        "action logits": envs * n * n * 4,
        "actor output layers": layers * 4 * 4,
    }
    if sizes.rollout_length:
        parts["rollout buffer"] = 4 * sizes.rollout_length * sizes.n_envs * n * 4
    return parts


register_environment(
    EnvEntry(
        name="matrix",
        config_cls=MatrixConfig,
        make=make,
        scenarios=lambda: [f"{g} (n_agents >= 2)" for g in GAMES],
        description="the paper's n-agent Specialisation / Synchronisation matrix games",
        memory_estimate=memory_estimate,
        action_type=lambda cfg: "discrete",
    )
)
