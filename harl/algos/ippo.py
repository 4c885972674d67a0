"""IPPO: MAPPO's simultaneous PPO update with decentralised critics, each agent's V_i(o_i) on its own observation.

The HyperMARL paper's main learner. Under `nops` every agent has its own actor and critic; under `fups`,
`fups_id` and the hypernetworks both are built by the architecture as for MAPPO, so `--arch hypermarl`
generates per-agent actors and per-agent local critics.
"""

from __future__ import annotations

from harl.algos.mappo import MAPPO
from harl.algos.ppo_base import PPOConfig
from harl.registry import AlgoEntry, register_algorithm


class IPPO(MAPPO):
    """Independent PPO: the MAPPO update; every agent's critic reads only that agent's observation."""

    centralised_critic = False


ALGO = register_algorithm(
    AlgoEntry(
        name="ippo",
        learner_cls=IPPO,
        config_cls=PPOConfig,
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
