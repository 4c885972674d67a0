"""`NetSpec`: the one object an architecture's `build_net` receives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harl.config import ModelConfig
from harl.models.agent_mlp import AgentMLP, LayerParams, layer_dims, layer_gains


@dataclass(frozen=True)
class NetSpec:
    """A network to build for all agents at once (an actor, a per-agent critic, a recurrent head).

    Attributes:
        n_agents: the agents the network serves.
        in_dim: input size (the largest of the agents' input sizes when they differ).
        out_dim: output size (likewise the largest).
        hidden_sizes: hidden layer widths.
        out_gain: orthogonal-init gain of the output layer (e.g. 0.01 for actors, 1.0 for critics).
        in_mask: (n_agents, in_dim) bool, True on the real entries of each agent's input.
        role: "actor" or "critic" (architectures may treat them differently, e.g. generate only one).
        model: the model options (activation, normalisations, ...).
    """

    n_agents: int
    in_dim: int
    out_dim: int
    hidden_sizes: tuple[int, ...]
    out_gain: float
    in_mask: torch.Tensor
    role: str
    model: ModelConfig

    def layers(self, extra_inputs: int = 0) -> tuple[list[tuple[int, int]], list[float]]:
        """(in, out) of every layer and its orthogonal-init gain (the activation's, then `out_gain`), for an
        input widened by `extra_inputs` entries (e.g. an appended agent id)."""
        dims = layer_dims(self.in_dim + extra_inputs, list(self.hidden_sizes), self.out_dim)
        return dims, layer_gains(len(dims), self.model.activation, self.out_gain)

    def mlp(self, params: LayerParams, append_id: bool = False) -> AgentMLP:
        """The `AgentMLP` this spec describes, with its layers' weights from `params`."""
        model = self.model
        return AgentMLP(
            params, self.n_agents, self.in_mask, model.activation, model.layer_norm, model.feature_norm, append_id
        )

    @classmethod
    def full_input(
        cls,
        *,
        n_agents: int,
        in_dim: int,
        out_dim: int,
        hidden_sizes: list[int] | tuple[int, ...],
        out_gain: float,
        role: str,
        model: ModelConfig,
    ) -> NetSpec:
        """A spec whose agents all use every input entry (no padding)."""
        in_mask = torch.ones(n_agents, in_dim, dtype=torch.bool)
        return cls(n_agents, in_dim, out_dim, tuple(hidden_sizes), out_gain, in_mask, role, model)
