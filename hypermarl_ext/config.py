"""The `arch` config sections of the HyperMARL architectures."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from harl.errors import ConfigError

HypernetInit = Literal["paper", "hyperfan"]
Embedding = Literal["learned", "onehot"]
Generate = Literal["actor", "critic", "both"]


def _check_choice(cfg: object, name: str, choices: type) -> None:
    value = getattr(cfg, name)
    valid = typing.get_args(choices)
    if value not in valid:
        raise ConfigError(f"arch.{name} must be one of {', '.join(valid)}; got {value!r}")


@dataclass
class HyperMARLConfig:
    """Options of `hypermarl` and `hypermarl_coupled`: MLP hypernetworks over agent embeddings."""

    embedding_dim: int = 8
    """Size of each agent's learned embedding (the paper: 4 for IPPO, 8 for MAPPO); unused with embedding onehot."""
    hypernet_hidden_dims: list[int] = field(default_factory=lambda: [64])
    """Hidden widths (ReLU) of the hypernetwork trunk shared by the weight and bias heads (empty: linear heads)."""
    hypernet_init: HypernetInit = "paper"
    """paper: every agent's generated layer starts as an independent orthogonal matrix (gain √2 hidden, the
    output gain last) with zero biases; hyperfan: Chang et al. 2020 hyperfan-in."""
    embedding: Embedding = "learned"
    """learned: orthogonally initialised trainable embeddings; onehot: fixed one-hot agent ids."""
    generate: Generate = "both"
    """Networks whose weights are generated; the others are shared networks with a one-hot id (FuPS+ID)."""

    def validate(self) -> None:
        if self.embedding_dim <= 0:
            raise ConfigError(f"arch.embedding_dim must be > 0, got {self.embedding_dim}")
        if any(h <= 0 for h in self.hypernet_hidden_dims):
            raise ConfigError(f"arch.hypernet_hidden_dims must hold positive widths, got {self.hypernet_hidden_dims}")
        _check_choice(self, "hypernet_init", HypernetInit)
        _check_choice(self, "embedding", Embedding)
        _check_choice(self, "generate", Generate)


@dataclass
class LinearHyperConfig:
    """Options of `hypermarl_linear`: θ_i = 1_i·W + b on one-hot agent ids."""

    shared_bias: bool = True
    """Keep the shared bias b of the linear hypernetwork; without it every agent's parameters are its own (NoPS)."""
    hypernet_init: HypernetInit = "paper"
    """paper: each agent's row of W is an orthogonal layer (gain √2 hidden, the output gain last), b and generated
    biases zero; hyperfan: Chang et al. 2020 hyperfan-in."""
    generate: Generate = "both"
    """Networks whose weights are generated; the others are shared networks with a one-hot id (FuPS+ID)."""

    def validate(self) -> None:
        _check_choice(self, "hypernet_init", HypernetInit)
        _check_choice(self, "generate", Generate)


@dataclass
class CoupledHyperConfig(HyperMARLConfig):
    """Options of `hypermarl_coupled` (those of `hypermarl`; the trunk needs a hidden layer to mix its inputs)."""

    def validate(self) -> None:
        super().validate()
        if not self.hypernet_hidden_dims:
            raise ConfigError("arch.hypernet_hidden_dims must hold at least one width for hypermarl_coupled")
