"""The `arch` config sections of the HyperMARL architectures."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

from harl.config import bounded, check_bounds
from harl.errors import ConfigError, shown

HypernetInit = Literal["official", "paper", "hyperfan"]
LinearInit = Literal["paper", "hyperfan"]
Embedding = Literal["learned", "onehot"]
Generate = Literal["actor", "critic", "both"]
Trunk = Literal["per_head", "shared"]

LEGACY_HYPERMARL_OPTIONS = {"trunk": "shared", "hypernet_init": "paper", "embedding_gain": 1.0}
"""What `hypermarl` built before these options existed: a run config saved then lacks them (see `ArchEntry`)."""


def _check_choice(cfg: object, name: str, choices: type) -> None:
    value = getattr(cfg, name)
    valid = typing.get_args(choices)
    if value not in valid:
        raise ConfigError(f"arch.{name} must be one of {', '.join(valid)}; got {shown(value)}")


@dataclass
class HyperMARLConfig:
    """Options of `hypermarl` and `hypermarl_coupled`: MLP hypernetworks over agent embeddings.

    The defaults are the authors' public implementation: a generator MLP per weight and per bias head,
    their init, embeddings at gain √2, and separate actor and critic embeddings (see `share_embedding`).
    `--trunk shared --hypernet_init paper --embedding_gain 1` is this framework's earlier `hypermarl`.
    """

    embedding_dim: int = bounded(8, gt=0)
    """Size of each agent's learned embedding (the paper: 4 for IPPO, 8 for MAPPO); unused with embedding onehot."""
    hypernet_hidden_dims: list[int] = bounded(default_factory=lambda: [64], gt=0)
    """Hidden widths (ReLU) of every generator MLP (empty: the heads read the contexts directly)."""
    hypernet_init: HypernetInit = "official"
    """official: the authors' code (every weight-head row an orthogonal layer matrix at the layer's gain, zero
    bias heads, LeCun-normal generator MLPs); paper: every agent's generated layer starts as an independent
    orthogonal matrix (gain √2 hidden, the output gain last) with zero biases; hyperfan: Chang et al. 2020."""
    embedding: Embedding = "learned"
    """learned: orthogonally initialised trainable embeddings; onehot: fixed one-hot agent ids."""
    generate: Generate = "both"
    """Networks whose weights are generated; the others are shared networks with a one-hot id (FuPS+ID)."""
    trunk: Trunk = "per_head"
    """per_head: an independent generator MLP for every weight head and every bias head (the authors' code);
    shared: one MLP whose features feed every head."""
    embedding_gain: float = bounded(math.sqrt(2.0), gt=0)
    """Orthogonal-init gain of learned embeddings (the authors': √2)."""
    share_embedding: bool = False
    """The critic's hypernetwork reads the actor's embedding tensor (as in the authors' code) instead of its own.
    The actor's optimiser owns it and only the actor's loss moves it; needs generate both, learned embeddings
    and a learner whose critic is generated per agent (the on-policy learners)."""

    def validate(self) -> None:
        check_bounds(self, "arch")
        _check_choice(self, "hypernet_init", HypernetInit)
        _check_choice(self, "embedding", Embedding)
        _check_choice(self, "generate", Generate)
        _check_choice(self, "trunk", Trunk)
        if self.share_embedding and self.generate != "both":
            raise ConfigError(
                "arch.share_embedding needs generated actor and critic (arch.generate both), "
                f"got generate {self.generate}"
            )
        if self.share_embedding and self.embedding != "learned":
            raise ConfigError(
                "arch.share_embedding shares learned embeddings; one-hot ids are fixed (embedding learned)"
            )


@dataclass
class LinearHyperConfig:
    """Options of `hypermarl_linear`: θ_i = 1_i·W + b on one-hot agent ids."""

    shared_bias: bool = True
    """Keep the shared bias b of the linear hypernetwork; without it every agent's parameters are its own (NoPS)."""
    hypernet_init: LinearInit = "paper"
    """paper: each agent's row of W is an orthogonal layer (gain √2 hidden, the output gain last), b and generated
    biases zero; hyperfan: Chang et al. 2020 hyperfan-in."""
    generate: Generate = "both"
    """Networks whose weights are generated; the others are shared networks with a one-hot id (FuPS+ID)."""

    def validate(self) -> None:
        _check_choice(self, "hypernet_init", LinearInit)
        _check_choice(self, "generate", Generate)


@dataclass
class CoupledHyperConfig(HyperMARLConfig):
    """Options of `hypermarl_coupled`: those of `hypermarl`, with one shared trunk reading [embedding, observation].

    Its defaults are those it always had (shared trunk, paper init, embeddings at gain 1): per-head generators
    would each read the observation of every sample, multiplying the ablation's cost by twice the layer count.
    """

    trunk: Trunk = "shared"
    """shared only: the trunk reads the agent's context together with its observation."""
    hypernet_init: HypernetInit = "paper"
    """As for hypermarl (official, paper, hyperfan)."""
    embedding_gain: float = bounded(1.0, gt=0)
    """Orthogonal-init gain of learned embeddings."""

    def validate(self) -> None:
        super().validate()
        if not self.hypernet_hidden_dims:
            raise ConfigError("arch.hypernet_hidden_dims must hold at least one width for hypermarl_coupled")
        if self.trunk != "shared":
            raise ConfigError(
                "arch.trunk per_head is not available for hypermarl_coupled (its trunk reads every sample's "
                "observation); use --trunk shared"
            )
        if self.share_embedding:
            raise ConfigError("arch.share_embedding is not available for hypermarl_coupled; use --arch hypermarl")
