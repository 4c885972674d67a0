"""IPPO: MAPPO's simultaneous PPO update with decentralised critics, each agent's V_i(o_i) on its own observation.

The HyperMARL paper's main learner. Under `nops` every agent has its own actor and critic; under `fups`,
`fups_id` and the hypernetworks both are built by the architecture as for MAPPO, so `--arch hypermarl`
generates per-agent actors and per-agent local critics.
"""

from __future__ import annotations

from dataclasses import dataclass

from harl.algos.mappo import MAPPO
from harl.algos.ppo_base import PPOConfig
from harl.config import ExperimentConfig
from harl.errors import ConfigError
from harl.registry import AlgoEntry, register_algorithm


@dataclass
class IPPOConfig(PPOConfig):
    """MAPPO's hyper-parameters; every agent's critic is its own (`critic` per_agent only)."""

    def check_run(self, cfg: ExperimentConfig, pretrained_steps: int | None) -> None:
        if self.critic == "shared":
            raise ConfigError(
                "--critic shared: ippo's critics each read their own agent's observation; one V(s) on the global "
                "state is MAPPO's (--algo mappo --critic shared)"
            )
        super().check_run(cfg, pretrained_steps)


class IPPO(MAPPO):
    """Independent PPO: the MAPPO update; every agent's critic reads only that agent's observation."""

    centralised_critic = False


ALGO = register_algorithm(
    AlgoEntry(
        name="ippo",
        learner_cls=IPPO,
        config_cls=IPPOConfig,
        on_policy=True,
        sequential=False,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "gaussian", "discrete": "categorical"},
        recurrent=True,
        batched_seeds=True,
        description="independent PPO, simultaneous update, per-agent decentralised V critic on its own observation",
    )
)
