"""HAA2C and MAA2C: the advantage actor-critic surrogate (probability ratio × advantage, no clip) in HAPPO's
sequential update with the correction factor (HAA2C, HARL's) and in MAPPO's simultaneous update (MAA2C).

As in HARL's HAA2C, the surrogate keeps the importance ratio to the rollout's policy, so `a2c_epoch` epochs of
`actor_num_mini_batch` minibatches stay off-policy-corrected; nothing bounds the step except the learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harl.algos.happo import SequentialUpdate
from harl.algos.mappo import SimultaneousUpdate
from harl.algos.ppo_base import PolicyGradientConfig, PolicyGradientLearner
from harl.buffers.rollout import ActorBatch
from harl.config import bounded
from harl.registry import AlgoEntry, register_algorithm


@dataclass
class A2CConfig(PolicyGradientConfig):
    """Hyper-parameters of HAA2C/MAA2C (HARL's names and defaults)."""

    a2c_epoch: int = bounded(5, gt=0)
    """Actor epochs per rollout."""


class A2CLearner(PolicyGradientLearner):
    """The A2C surrogate ratio × advantage (no clip), `a2c_epoch` epochs per rollout."""

    cfg: A2CConfig

    @property
    def actor_epochs(self) -> int:
        return self.cfg.a2c_epoch

    def surrogate(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        log_probs, entropy = (batch.flat(x) for x in self.batch_log_probs_entropy(batch))  # (M, k)
        ratio = torch.exp(log_probs - batch.log_probs)
        with torch.no_grad():
            diagnostics = {"ratio": ratio.detach(), "approx_kl": (ratio - 1) - (log_probs - batch.log_probs)}
        return ratio * batch.advantages, entropy, diagnostics


class HAA2C(A2CLearner, SequentialUpdate):
    """Heterogeneous-agent A2C: agents in a random order, each on factor × ratio × advantage."""

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, HAA2C_ALGO.actor_kind[spec.action_type])


class MAA2C(A2CLearner, SimultaneousUpdate):
    """Multi-agent A2C: every agent's ratio × advantage step at once, per-agent centralised critics."""

    def __init__(self, spec, cfg, arch, device):
        super().__init__(spec, cfg, arch, device, MAA2C_ALGO.actor_kind[spec.action_type])


HAA2C_ALGO = register_algorithm(
    AlgoEntry(
        name="haa2c",
        learner_cls=HAA2C,
        config_cls=A2CConfig,
        on_policy=True,
        sequential=True,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "gaussian", "discrete": "categorical"},
        recurrent=True,
        batched_seeds=True,
        description="heterogeneous-agent A2C, sequential update in a random order with the correction factor",
    )
)
MAA2C_ALGO = register_algorithm(
    AlgoEntry(
        name="maa2c",
        learner_cls=MAA2C,
        config_cls=A2CConfig,
        on_policy=True,
        sequential=False,
        discrete=True,
        continuous=True,
        actor_kind={"continuous": "gaussian", "discrete": "categorical"},
        recurrent=True,
        batched_seeds=True,
        description="multi-agent A2C, simultaneous update, per-agent centralised V critic",
    )
)
