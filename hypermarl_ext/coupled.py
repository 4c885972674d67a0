"""`hypermarl_coupled`: the paper's ablation without gradient decoupling (agent id fed with the observation).

In `hypermarl` the hypernetwork sees only the agent's context, θ_i = h_ψ(e_i), and the observation only
enters the generated network: ∇_ψ log π = ∇_θ log π(a|o; θ_i) · ∇_ψ h_ψ(e_i), an observation-dependent
factor times an agent-only factor (the paper's Section 4.4). This variant keeps the same hypernetwork —
agent embeddings, trunk widths, one weight head and one bias head per target layer, the same init —
but feeds the trunk the agent's context *together with* its (normalised, masked) observation x:

    z = trunk([e_i, x])              features per agent *and sample*          (k, B, H)
    θ_i(x) = heads(z)                generated layers per agent and sample
    y = MLP(x; θ_i(x))               the target network on the same input

so the generated parameters, and ∇_ψ θ, depend on the observation: agent- and observation-conditioned
paths are no longer separated. The only extra parameters are the trunk's first-layer columns for x
(in_dim × H_1). Those columns start at zero, so at initialisation the variant computes exactly what
`hypermarl` computes (same generated orthogonal layers per agent) and departs from it as they learn.

Per-sample layers are applied without a Python loop: where in ≤ H the (N, in, out) weights are
materialised and applied with one `bmm`, otherwise x·W(z) is contracted through the head's weight
as Σ_h z_h (x·A_h), whichever holds fewer numbers. Each layer then costs about H times the compute of
a plain layer and N·min(in, H)·out memory for N = batch × agents samples: an ablation, not a default.
There is nothing to cache: the weights depend on the input. Populations (`--seeds N`) vmap the members' forward
over the seed dimension (`harl.models.population.ModulePopulation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harl.models.agent_mlp import ACTIVATIONS, masked_layer_norm
from harl.models.population import ModulePopulation
from hypermarl_ext.hypernet import AgentEmbedding, GeneratorHeads, embedding_diagnostics, trunk_mlp


def per_sample_linear(x: torch.Tensor, z: torch.Tensor, head: nn.Linear, in_dim: int, out_dim: int) -> torch.Tensor:
    """x·W_n for every sample n, with W_n = head(z_n) read in (out_dim, in_dim) order (`GeneratorHeads`'s).

    x: (N, in_dim); z: (N, H) -> (N, out_dim).
    """
    hidden = z.shape[-1]
    if in_dim <= hidden:
        weight = head(z).view(-1, out_dim, in_dim)  # (N, out, in)
        return torch.bmm(weight, x.unsqueeze(-1)).squeeze(-1)
    # Σ_h z_h (x·A_h): head.weight rows are (out, in) pairs, its columns the H features
    per_unit = torch.einsum("ni,oih->noh", x, head.weight.view(out_dim, in_dim, hidden))  # (N, out, H)
    return torch.bmm(per_unit, z.unsqueeze(-1)).squeeze(-1) + x @ head.bias.view(out_dim, in_dim).T


class CoupledHyperMLP(nn.Module):
    """All agents' networks with parameters generated from [agent context, observation] (see the module doc).

    Args:
        n_agents: number of agents.
        dims: (in, out) of every target layer.
        gains: orthogonal gain of every target layer (paper init).
        in_mask: (n_agents, in_dim) bool, the real entries of each agent's input.
        activation: hidden activation of the target network.
        layer_norm: LayerNorm (no affine) after each hidden activation.
        feature_norm: masked LayerNorm of the input.
        embedding_dim: size of learned embeddings.
        hidden_dims: trunk widths (at least one).
        init: "official", "paper" or "hyperfan".
        embedding: "learned" or "onehot".
        role: "actor" or "critic".
        embedding_gain: orthogonal gain of learned embeddings.
    """

    def __init__(
        self,
        n_agents: int,
        dims: list[tuple[int, int]],
        gains: list[float],
        in_mask: torch.Tensor,
        activation: str,
        layer_norm: bool,
        feature_norm: bool,
        embedding_dim: int,
        hidden_dims: list[int],
        init: str,
        embedding: str,
        role: str,
        embedding_gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.dims = list(dims)
        self.register_buffer("in_mask", in_mask.float())  # (n_agents, in_dim)
        self.activation = ACTIVATIONS[activation]()
        self.layer_norm, self.feature_norm, self.role = layer_norm, feature_norm, role
        self.embedding = AgentEmbedding(n_agents, embedding_dim, embedding, embedding_gain)
        in_dim = dims[0][0]
        self.trunk = trunk_mlp(self.embedding.dim + in_dim, hidden_dims, init)
        self.heads = GeneratorHeads(hidden_dims[-1], dims)
        with torch.no_grad():
            self.trunk[0].weight[:, self.embedding.dim :] = 0.0  # observation columns: coupling is learned
            context = self.embedding()  # (n_agents, E)
            z = self.trunk(torch.cat([context, context.new_zeros(n_agents, in_dim)], dim=-1))  # (n_agents, H)
        self.heads.initialise(init, [z] * len(dims), [z] * len(dims), gains)

    @classmethod
    def population(cls, members: Sequence[CoupledHyperMLP]) -> ModulePopulation:
        """P members (one per seed) as one network of P·n virtual agents: each seed's per-sample weights are
        generated by its own hypernetwork, all seeds in one vmapped call (`ModulePopulation`)."""
        return ModulePopulation(members, members[0].in_mask.shape[0])

    def forward(self, x: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, k, in_dim) for the k selected agents (all when `agents` is None) -> (B, k, out_dim)."""
        h = x.transpose(0, 1)  # (k, B, in_dim)
        mask = (self.in_mask if agents is None else self.in_mask[agents]).unsqueeze(1)  # (k, 1, in_dim)
        h = masked_layer_norm(h, mask) if self.feature_norm else h * mask
        k, batch = h.shape[0], h.shape[1]
        context = self.embedding(agents).unsqueeze(1).expand(-1, batch, -1)  # (k, B, E)
        z = self.trunk(torch.cat([context, h], dim=-1)).reshape(k * batch, -1)  # (k·B, H)
        h = h.reshape(k * batch, -1)  # (k·B, in_dim)
        heads = zip(self.dims, self.heads.weight_heads, self.heads.bias_heads, strict=True)
        for index, ((i, o), w_head, b_head) in enumerate(heads):
            h = per_sample_linear(h, z, w_head, i, o) + b_head(z)  # (k·B, out)
            if index < len(self.dims) - 1:
                h = self.activation(h)
                if self.layer_norm:
                    h = F.layer_norm(h, h.shape[-1:])
        return h.view(k, batch, -1).transpose(0, 1)  # (B, k, out_dim)

    def diagnostics(self) -> dict[str, float]:
        return embedding_diagnostics(self, self.embedding, self.role)
