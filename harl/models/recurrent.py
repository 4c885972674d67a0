"""Recurrent agent networks: observation encoder → GRU → the architecture's feed-forward head.

With `model.recurrent` every on-policy actor and per-agent critic is a `RecurrentAgentNet`:

    x (L, B, k, in) → encoder (one feed-forward layer, width hidden_sizes[0]) → GRU (rnn_hidden_size)
      → head (`arch.build_net` with hidden_sizes[1:]) → (L, B, k, out)

The encoder and GRU are the *recurrent core*. Its parameters are per agent (stacked along the agent
dimension and applied with one `baddbmm` per layer, like NoPS layers) or shared, as the architecture's
`ArchEntry.recurrent_core` says; the head is always built by the architecture, so a hypernetwork
architecture generates the feed-forward layers after the GRU and not the GRU (as in HyperMARL's
recurrent variant), and FuPS+ID appends its agent id to the head's input. Agents stay a tensor
dimension throughout; only time is a Python loop.

Hidden states are (B, k, rnn_hidden_size) outside the module (batch-major, like observations) and an
episode start is marked by a reset (the hidden state is zeroed before that step).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harl.models.agent_mlp import (
    ACTIVATIONS,
    AgentMLP,
    LayerParams,
    SharedParams,
    StackedParams,
    activation_gain,
    agent_linear,
)
from harl.models.net_spec import NetSpec
from harl.models.population import PopulationParams, population_network
from harl.registry import ArchEntry

GATE_ROWS = 512
"""Rows (steps × batch) of GRU input gates computed by one batched matmul without gradients (acting, a rollout's
values): the gates of a whole rollout at once are a tensor too large for the CPU's caches, and the matmul writing
it runs about twice slower per row. Blocks give the same values; a training graph keeps one matmul, so that its
weight gradient is summed as before."""


class AgentGRU(nn.Module):
    """A GRU (PyTorch's gate equations, gates ordered r, z, n) run for many agents at once.

    Args:
        n_agents: total number of agents.
        in_dim: input size.
        hidden_size: hidden state size H.
        per_agent: independent weights per agent (stacked (n_agents, ·, 3H)) instead of one shared set.
    """

    def __init__(self, n_agents: int, in_dim: int, hidden_size: int, per_agent: bool) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        dims = [(in_dim, 3 * hidden_size), (hidden_size, 3 * hidden_size)]  # input → gates, hidden → gates
        gains = [1.0, 1.0]  # orthogonal weights, zero biases (MAPPO's GRU init)
        self.params: LayerParams = StackedParams(n_agents, dims, gains) if per_agent else SharedParams(dims, gains)

    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor, resets: torch.Tensor | None, agents: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the selected agents' GRUs over a sequence, agent-major.

        Args:
            x: (k, L, B, in) inputs.
            hidden: (k, B, H) hidden states before the first step.
            resets: (L, B) 1.0 where the hidden state is zeroed before the step (an episode starts), the same for
                every agent, or (L, B, G) one column per group of k/G consecutive agents (a population's seeds,
                whose sequences differ), or None.
            agents: the k selected agents (all when None).

        Returns:
            Outputs (k, L, B, H) (the hidden state after every step) and the last hidden state (k, B, H).
        """
        (w_in, b_in), (w_hid, b_hid) = self.params.layers(agents)
        k, steps, batch, _ = x.shape
        two_h = 2 * self.hidden_size
        keep = None if resets is None else reset_keep(resets, k)  # (L, 1 or k, B, 1)
        # steps whose input gates one batched matmul computes; with gradients, all of them (one weight gradient)
        block = max(1, GATE_ROWS // batch) if not torch.is_grad_enabled() else steps
        outputs = []
        for start in range(0, steps, block):
            x_block = x[:, start : start + block]  # (k, l, B, in)
            gates_in = agent_linear(x_block.reshape(k, -1, x.shape[-1]), w_in, b_in).view(
                k, -1, batch, 3 * self.hidden_size
            )
            for t in range(x_block.shape[1]):  # inherently sequential in time
                if keep is not None:
                    hidden = hidden * keep[start + t]
                step_in = gates_in[:, t]  # (k, B, 3H)
                step_hid = agent_linear(hidden, w_hid, b_hid)  # (k, B, 3H)
                # reset and update gates in one sigmoid (elementwise: the same values as one call per gate)
                gates = torch.sigmoid(step_in[..., :two_h] + step_hid[..., :two_h])  # (k, B, 2H): r, z
                candidate = torch.tanh(step_in[..., two_h:] + gates[..., : self.hidden_size] * step_hid[..., two_h:])
                hidden = candidate + gates[..., self.hidden_size :] * (hidden - candidate)  # (1 - z)·n + z·h
                outputs.append(hidden)
        if steps == 1:  # one step (acting): no copy
            return hidden.unsqueeze(1), hidden
        return torch.stack(outputs, dim=1), hidden


def reset_keep(resets: torch.Tensor, k: int) -> torch.Tensor:
    """(L, 1, B, 1) or (L, k, B, 1): 0.0 where `resets` (L, B), or (L, B, G) per group of k/G consecutive agents,
    zeroes a hidden state."""
    keep = 1.0 - resets
    if keep.dim() == 2:
        return keep.view(*keep.shape, 1).unsqueeze(1)
    per_agent = keep.repeat_interleave(k // keep.shape[-1], dim=-1)  # (L, B, k)
    return per_agent.permute(0, 2, 1).unsqueeze(-1)


class RecurrentAgentNet(nn.Module):
    """Encoder → GRU → head for all agents at once (see the module docstring).

    Args:
        encoder: one-layer `AgentMLP` (in → encoder width), followed here by the activation.
        gru: the `AgentGRU` on the encoder's features.
        head: the architecture's network (H → out).
        activation: the encoder's activation name.
        layer_norm: LayerNorm (no affine) after the encoder's activation.
        shared_input: every agent receives the same input (a critic on the global state): a shared core then
            runs once and its features are broadcast to the agents.
    """

    def __init__(
        self,
        encoder: AgentMLP,
        gru: AgentGRU,
        head: nn.Module,
        activation: str,
        layer_norm: bool,
        shared_input: bool = False,
    ) -> None:
        super().__init__()
        self.encoder, self.gru, self.head = encoder, gru, head
        self.activation = ACTIVATIONS[activation]()
        self.layer_norm = layer_norm
        self.per_agent_core = isinstance(gru.params, StackedParams)
        self.run_core_once = shared_input and not self.per_agent_core
        self.seeds = 1  # the seeds of a population (see `population`)

    @property
    def hidden_size(self) -> int:
        return self.gru.hidden_size

    def forward(
        self,
        x: torch.Tensor,
        hidden: torch.Tensor,
        resets: torch.Tensor | None = None,
        agents: torch.Tensor | None = None,
        every_hidden: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs of the selected agents over a sequence.

        Args:
            x: (L, B, k, in) inputs of the k selected agents (all when `agents` is None).
            hidden: (B, k, H) hidden states before the first step.
            resets: (L, B) 1.0 where an episode starts (the hidden state is zeroed before the step), or (L, B, P)
                one column per seed of a population (each seed's sequences are its own), or None.
            agents: the selected agents (a population's: k/P per seed, seed-major).
            every_hidden: return the hidden states after every step (L, B, k, H), not only the last.

        Returns:
            Outputs (L, B, k, out) and the hidden states after the last step (B, k, H) (or after every step).
        """
        steps, batch, k, _ = x.shape
        core_agents = agents
        if self.run_core_once:  # one pass of the shared core per seed, on the input that seed's agents share
            stride = k // self.seeds  # the first selected agent of every seed
            firsts = torch.arange(0, k, stride, device=x.device)
            core_agents = firsts if agents is None else agents[firsts]
            x, hidden = x[:, :, firsts], hidden[:, firsts]
        features = self.activation(self.encoder(x.reshape(steps * batch, x.shape[2], -1), core_agents))
        if self.layer_norm:
            features = F.layer_norm(features, features.shape[-1:])
        features = features.view(steps, batch, x.shape[2], -1).permute(2, 0, 1, 3)  # (c, L, B, enc), c cores
        outputs, last = self.gru(features, hidden.transpose(0, 1), resets, core_agents)  # (c, L, B, H), (c, B, H)
        outputs = _to_agents(outputs.permute(1, 2, 0, 3), k)  # (L, B, k, H)
        out = self.head(outputs.reshape(steps * batch, k, -1), agents)  # (L·B, k, out)
        if every_hidden:
            return out.view(steps, batch, k, -1), outputs
        return out.view(steps, batch, k, -1), _to_agents(last.transpose(0, 1), k)

    @classmethod
    def population(cls, members: Sequence[RecurrentAgentNet]) -> RecurrentAgentNet:
        """One network of P members (one per seed, each built alone under its seed) for their P·n virtual agents,
        seed-major (see `harl.models.population`): encoder, GRU and head stacked; a shared core then runs once per
        seed where its agents share their input."""
        net = copy.deepcopy(members[0])
        net.seeds = len(members)
        net.encoder = population_network([m.encoder for m in members])
        net.gru.params = PopulationParams([m.gru.params for m in members], members[0].encoder.n_agents)
        net.head = population_network([m.head for m in members])
        return net


def _to_agents(x: torch.Tensor, k: int) -> torch.Tensor:
    """(..., c, H) the core's outputs for c groups of agents -> (..., k, H), each group's repeated for its k/c
    agents (a view when c is 1)."""
    return x.unsqueeze(-2).expand(*x.shape[:-1], k // x.shape[-2], x.shape[-1]).flatten(-3, -2)


def build_agent_net(arch: ArchEntry, spec: NetSpec, arch_cfg: object, *, shared_input: bool = False) -> nn.Module:
    """The network `spec` describes: `arch.build_net`'s, or with `spec.model.recurrent` a `RecurrentAgentNet`
    whose encoder takes `hidden_sizes[0]`, GRU `model.rnn_hidden_size` and whose head (built by
    `arch.build_net`) the remaining `hidden_sizes[1:]`."""
    model = spec.model
    if not model.recurrent:
        return arch.build_net(spec=spec, arch_cfg=arch_cfg)
    n_agents, per_agent = spec.n_agents, arch.recurrent_core == "per_agent"
    width, hidden_size = spec.hidden_sizes[0], model.rnn_hidden_size
    dims, gains = [(spec.in_dim, width)], [activation_gain(model.activation)]
    params = StackedParams(n_agents, dims, gains) if per_agent else SharedParams(dims, gains)
    encoder = AgentMLP(
        params, n_agents, spec.in_mask, model.activation, layer_norm=False, feature_norm=model.feature_norm
    )
    head_spec = dataclasses.replace(
        spec,
        in_dim=hidden_size,
        hidden_sizes=spec.hidden_sizes[1:],
        in_mask=torch.ones(n_agents, hidden_size, dtype=torch.bool),
    )
    head = arch.build_net(spec=head_spec, arch_cfg=arch_cfg)
    gru = AgentGRU(n_agents, width, hidden_size, per_agent)
    return RecurrentAgentNet(encoder, gru, head, model.activation, model.layer_norm, shared_input)


def reset_hidden(hidden: torch.Tensor | None, done: torch.Tensor) -> torch.Tensor | None:
    """Zero the hidden states (..., E, N, H) of envs whose episode ended (`done` (..., E), e.g. (E,) for one
    step or (L, E) along a rollout); None stays None."""
    if hidden is None:
        return None
    return hidden * (1.0 - done.to(hidden.dtype))[..., None, None]
