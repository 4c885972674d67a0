"""Batched per-agent MLPs: all agents in one forward, whatever the parameterisation.

An `AgentMLP` maps (B, k, in_dim) to (B, k, out_dim) for k agents at once. Where its weights
come from is a `LayerParams` source:

- `StackedParams` (NoPS): per-agent weights stacked as (n_agents, in, out), applied with `baddbmm`.
- `SharedParams` (FuPS / FuPS+ID): one (in, out) weight for everybody, applied with one matmul.
- hypernetworks (`hypermarl_ext`): weights generated per agent, applied with `baddbmm`.

A source returns, for a selection of agents, one `(weight, bias)` per layer where the weight is
either (k, in, out) (per agent) or (in, out) (shared) and the bias (k, out) or (out,).
Per-agent trainable tensors are tagged with `mark_per_agent` so that `harl.optim.AgentAdam` and
`clip_grad_norm_agentwise` treat their leading dimension as the agent dimension.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import SupportsIndex

import torch
import torch.nn.functional as F
from torch import nn

# Hidden activations, each applied to a freshly computed pre-activation: those whose gradient needs only
# their output run in place (no new activation buffer per layer, which matters for large agent batches).
ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "tanh": nn.Tanh,
    "elu": lambda: nn.ELU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(inplace=True),
    "silu": nn.SiLU,
}


ACTIVATION_SLOPES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relu": lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0.0),
    "leaky_relu": lambda grad, out: torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True),  # nn's slope
    "elu": lambda grad, out: torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, out),  # nn.ELU's α = 1
    "tanh": lambda grad, out: torch.ops.aten.tanh_backward(grad, out),
}
"""Backward of a hidden activation from its output (aten's own backward kernels): (upstream gradient,
activation output) -> gradient of the pre-activation. SiLU's derivative needs its input: it is not here."""


def activation_gain(name: str) -> float:
    """Orthogonal-init gain of hidden layers for an activation (√2 for ReLU, 5/3 for tanh...)."""
    return nn.init.calculate_gain({"elu": "relu", "silu": "relu"}.get(name, name))


class AgentParameter(nn.Parameter):
    """A parameter whose dim 0 indexes agents (used by AgentAdam and agent-wise clipping).

    The tag is the parameter's type, so copies keep it: `copy.deepcopy` rebuilds a parameter as
    `type(param)(data, requires_grad)`, and pickling rebuilds it through `__reduce_ex__`.
    """

    def __reduce_ex__(self, protocol: SupportsIndex):
        return AgentParameter, (self.data, self.requires_grad)


def mark_per_agent(param: nn.Parameter) -> AgentParameter:
    """`param` tagged as per-agent (dim 0 indexes agents): an `AgentParameter` on the same storage, to use in
    its place (e.g. `self.weight = mark_per_agent(nn.Parameter(weight))`)."""
    return AgentParameter(param.data, param.requires_grad)


def is_per_agent(param: torch.Tensor) -> bool:
    """Whether dim 0 of `param` indexes agents (see `AgentParameter`)."""
    return isinstance(param, AgentParameter)


def agent_rows(param: torch.Tensor, agents: torch.Tensor | None) -> torch.Tensor:
    """The rows (k, ...) of the selected agents (all when None) of a per-agent tensor (n_agents, ...).

    The rows are gathered in the tensor's memory order, so the gradient the gather sends back (zeros outside the
    selected rows) is laid out like the parameter and becomes its `.grad` as it is; a gather in the tensor's
    logical order (e.g. of a transposed weight) gives a gradient that autograd must re-lay out first, several
    times the cost of the gather when one agent of many is selected (sequential HA updates).
    """
    if agents is None:
        return param
    order = sorted(range(1, param.dim()), key=lambda d: -param.stride(d))  # dims from the outermost in memory
    restore = [0] + [1 + order.index(d) for d in range(1, param.dim())]
    return param.permute(0, *order)[agents].permute(restore)


def orthogonal_stack(n: int, fan_in: int, fan_out: int, gain: float) -> torch.Tensor:
    """(n, fan_in, fan_out): n independent orthogonal matrices scaled by `gain`.

    The result is a transposed view of (n, fan_out, fan_in) storage, `nn.Linear`'s memory order, which
    parameters made from it keep (and so do their gradients and optimiser states): the batched matmul
    x @ W runs faster on it, several times so for narrow outputs such as action means and values.
    """
    weight = torch.empty(n, fan_out, fan_in)
    for i in range(n):  # init only, once per agent
        nn.init.orthogonal_(weight[i], gain=gain)
    return weight.transpose(1, 2)


def layer_dims(in_dim: int, hidden_sizes: list[int], out_dim: int) -> list[tuple[int, int]]:
    sizes = [in_dim, *hidden_sizes, out_dim]
    return list(zip(sizes[:-1], sizes[1:]))


def layer_gains(n_layers: int, activation: str, out_gain: float) -> list[float]:
    return [activation_gain(activation)] * (n_layers - 1) + [out_gain]


class LayerParams(nn.Module, ABC):
    """Source of the weights of an `AgentMLP`'s linear layers."""

    @abstractmethod
    def layers(self, agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One (weight, bias) per layer for the selected agents (all when None)."""

    def forward(self, agents: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The layers computed afresh, never from a cache (what a population vmaps over its members)."""
        return self.layers(agents)


class StackedParams(LayerParams):
    """Independent parameters per agent (NoPS), stored stacked along the agent dimension."""

    def __init__(self, n_agents: int, dims: list[tuple[int, int]], gains: list[float]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(
            [mark_per_agent(nn.Parameter(orthogonal_stack(n_agents, i, o, g))) for (i, o), g in zip(dims, gains)]
        )
        self.biases = nn.ParameterList([mark_per_agent(nn.Parameter(torch.zeros(n_agents, o))) for _, o in dims])

    def layers(self, agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(agent_rows(w, agents), agent_rows(b, agents)) for w, b in zip(self.weights, self.biases)]


class SharedParams(LayerParams):
    """One set of parameters shared by every agent (FuPS)."""

    def __init__(self, dims: list[tuple[int, int]], gains: list[float]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(
            [nn.Parameter(orthogonal_stack(1, i, o, g)[0]) for (i, o), g in zip(dims, gains)]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(o)) for _, o in dims])

    def layers(self, agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.weights, self.biases))


def agent_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Apply a per-agent, shared or per-group linear layer in agent-major layout. x: (k, B, in) -> (k, B, out).

    weight: (k, in, out) one per agent, (in, out) shared by all, or (G, in, out) shared within each of G
    consecutive groups of agents (the seeds of a population, `harl.models.population`); bias likewise."""
    if weight.dim() == 2:
        return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], -1)
    if weight.shape[0] != x.shape[0]:  # per group: (G, k/G·B, in) @ (G, in, out) + (G, 1, out)
        grouped = x.reshape(weight.shape[0], -1, x.shape[-1])
        return torch.baddbmm(bias.unsqueeze(1), grouped, weight).view(*x.shape[:-1], -1)
    # (k, B, in) @ (k, in, out) + (k, 1, out) -> (k, B, out)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


def masked_layer_norm(
    x: torch.Tensor, mask: torch.Tensor, inv_count: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over each agent's real entries only; padded entries stay zero.

    x: (k, B, d); mask: (k, 1, d) float with 1 where the entry is real; inv_count: (k, 1, 1), the
    reciprocal of each agent's count of real entries (computed from `mask` when not given).
    """
    if inv_count is None:
        inv_count = mask.sum(-1, keepdim=True).clamp(min=1.0).reciprocal()
    mean = (x * mask).sum(-1, keepdim=True) * inv_count  # (k, B, 1)
    centered = (x - mean) * mask
    var = centered.square().sum(-1, keepdim=True) * inv_count
    return centered * torch.rsqrt(var + eps)


class AgentMLP(nn.Module):
    """MLP evaluated for many agents at once; the `LayerParams` decides how agents share weights.

    Args:
        params: where each linear layer's weights come from.
        n_agents: total number of agents.
        in_mask: (n_agents, in_dim) bool, the real entries of each agent's input.
        activation: hidden activation name.
        layer_norm: LayerNorm (no affine) after each hidden activation.
        feature_norm: masked LayerNorm of the input.
        append_id: concatenate a one-hot agent id to the (normalised) input (FuPS+ID).
        seeds: the seeds of a population (`harl.models.population`): the network then serves n_agents = seeds × the
            agents of one seed as virtual agents, seed-major, and an appended id is the agent's id within its seed.
    """

    def __init__(
        self,
        params: LayerParams,
        n_agents: int,
        in_mask: torch.Tensor,
        activation: str,
        layer_norm: bool,
        feature_norm: bool,
        append_id: bool = False,
        seeds: int = 1,
    ) -> None:
        super().__init__()
        self.params = params
        self.n_agents = n_agents
        self.seeds = seeds
        self.register_buffer("in_mask", in_mask.float())  # (n_agents, in_dim)
        # (n_agents, 1): 1 / real input entries per agent, for the masked feature norm
        inv_count = in_mask.float().sum(-1, keepdim=True).clamp(min=1.0).reciprocal()
        self.register_buffer("in_inv_count", inv_count, persistent=False)
        self.full_input = bool(in_mask.all())  # no padding: plain LayerNorm, no masking
        self.activation = ACTIVATIONS[activation]()
        self.activation_name = activation
        self.layer_norm = layer_norm
        self.feature_norm = feature_norm
        self.append_id = append_id

    @property
    def replayable(self) -> bool:
        """Whether `replay` gives this network's gradients: no layer norm, and an activation whose derivative
        its output gives (`ACTIVATION_SLOPES`); not for populations (`seeds` > 1)."""
        return not self.layer_norm and self.activation_name in ACTIVATION_SLOPES and self.seeds == 1

    def forward(self, x: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, k, in_dim) for the k selected agents (all when `agents` is None) -> (B, k, out_dim)."""
        h = self._first_input(x, agents)  # (k, B, in)
        layers = self.params.layers(agents)
        for weight, bias in layers[:-1]:
            h = self.activation(agent_linear(h, weight, bias))
            if self.layer_norm:
                h = F.layer_norm(h, h.shape[-1:])
        weight, bias = layers[-1]
        return agent_linear(h, weight, bias).transpose(0, 1)  # (B, k, out_dim)

    @torch.no_grad()
    def record(self, x: torch.Tensor) -> ForwardRecord:
        """Every agent's forward on x (B, N, in_dim) without gradients, keeping what `replay` needs."""
        if not self.replayable:
            raise ValueError("replay needs no layer norm and an activation in ACTIVATION_SLOPES")
        h = self._first_input(x, None)  # (N, B, in)
        inputs = []
        layers = self.params.layers(None)
        for weight, bias in layers[:-1]:
            inputs.append(h)
            h = self.activation(agent_linear(h, weight, bias))  # a fresh tensor: `inputs` keep theirs
        inputs.append(h)
        weight, bias = layers[-1]
        return ForwardRecord(tuple(inputs), agent_linear(h, weight, bias))

    def replay(self, record: ForwardRecord, agents: torch.Tensor | None = None) -> torch.Tensor:
        """The recorded outputs (B, k, out_dim) of the selected agents (all when None), with the gradient w.r.t.
        their layers' current weights that recomputing them would give: exact while those weights are those of
        the record (in a sequential update, each agent's own weights until its turn when no parameter is
        shared). Its backward is the layers' own (per-agent weight gradients laid out as the weights)."""
        weights, biases = zip(*self.params.layers(agents), strict=True)
        output = record.output if agents is None else record.output.index_select(0, agents)  # (k, B, out)
        replayed = _ReplayedPass.apply(output, agents, self.activation_name, *record.inputs, *weights, *biases)
        return replayed.transpose(0, 1)  # (B, k, out_dim)

    def _first_input(self, x: torch.Tensor, agents: torch.Tensor | None) -> torch.Tensor:
        """The first layer's input (k, B, in): x (B, k, in_dim) agent-major, masked or normalised, with ids."""
        h = x.transpose(0, 1).contiguous()  # (k, B, in_dim): agent-major (a strided batch makes bmm ~2.5x slower)
        if self.full_input:
            h = F.layer_norm(h, h.shape[-1:]) if self.feature_norm else h
        else:
            mask = (self.in_mask if agents is None else self.in_mask[agents]).unsqueeze(1)  # (k, 1, in_dim)
            if self.feature_norm:
                inv_count = (self.in_inv_count if agents is None else self.in_inv_count[agents]).unsqueeze(1)
                h = masked_layer_norm(h, mask, inv_count)  # inv_count: (k, 1, 1)
            else:
                h = h * mask
        if self.append_id:
            ids = torch.arange(self.n_agents, device=x.device) if agents is None else agents
            per_seed = self.n_agents // self.seeds  # a one-hot id over the agents of one seed
            one_hot = F.one_hot(ids % per_seed if self.seeds > 1 else ids, per_seed).to(h.dtype)  # (k, per_seed)
            h = torch.cat([h, one_hot.unsqueeze(1).expand(-1, h.shape[1], -1)], dim=-1)
        return h


@dataclass(frozen=True)
class ForwardRecord:
    """Every agent's forward of an `AgentMLP` without gradients (`AgentMLP.record`), kept to replay agents' passes
    with gradients (`AgentMLP.replay`) instead of recomputing them.

    Attributes:
        inputs: each linear layer's input, agent-major (N, B, in_l): the prepared input, then each hidden
            activation's output.
        output: the last layer's output, agent-major (N, B, out).
    """

    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor


def _weight_grad(layer_input: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of `agent_linear`'s weight (k, in, out) or (in, out) from its input (k, B, in) and its
    output's gradient (k, B, out), laid out in the weight's memory order."""
    if weight.dim() == 2:  # shared by the k agents
        layer_input, grad = layer_input.flatten(0, 1), grad.flatten(0, 1)  # (k B, in), (k B, out)
    if weight.stride(-2) == 1:  # stored (out, in), as nn.Linear's
        return torch.matmul(grad.transpose(-1, -2), layer_input).transpose(-1, -2)
    return torch.matmul(layer_input.transpose(-1, -2), grad)


class _ReplayedPass(torch.autograd.Function):
    """A recorded `AgentMLP` pass of k agents, differentiable w.r.t. their layers' weights (see `AgentMLP.replay`).

    Forward: the recorded output. Backward: each layer's weight and bias gradients from the recorded layer
    inputs and the layer's weights (as autograd's backward of `agent_linear` and the activation would).
    """

    @staticmethod
    def forward(ctx, output, agents, activation, *tensors):  # type: ignore[override]
        # output (k, B, out); tensors: the record's layer inputs (N, B, in_l), then the k agents' weights
        # (k, in_l, out_l) or (in_l, out_l), then their biases (k, out_l) or (out_l,)
        n_layers = len(tensors) // 3
        ctx.activation, ctx.n_layers, ctx.bias_dims = activation, n_layers, [b.dim() for b in tensors[2 * n_layers :]]
        ctx.save_for_backward(agents, *tensors[: 2 * n_layers])
        return output.clone()

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        agents, *saved = ctx.saved_tensors
        inputs, weights = saved[: ctx.n_layers], saved[ctx.n_layers :]
        slope = ACTIVATION_SLOPES[ctx.activation]
        grad = grad_output  # (k, B, out_l): the gradient of the output of the layer at hand
        grad_weights, grad_biases = [], []
        for layer in reversed(range(ctx.n_layers)):
            layer_input = inputs[layer] if agents is None else inputs[layer].index_select(0, agents)  # (k, B, in_l)
            weight = weights[layer]
            grad_weights.append(_weight_grad(layer_input, grad, weight))
            grad_biases.append(grad.sum(1) if ctx.bias_dims[layer] == 2 else grad.sum((0, 1)))
            if layer:  # the input is the activation's output of the layer below
                grad = slope(torch.matmul(grad, weight.transpose(-1, -2)), layer_input)  # (k, B, in_l)
        nones = (None,) * (3 + ctx.n_layers)  # output, agents, activation, the record's inputs
        return (*nones, *reversed(grad_weights), *reversed(grad_biases))


class AgentParam(nn.Module):
    """A state-independent (n_agents, width) parameter, per agent or shared (e.g. Gaussian log-std).

    In a population (`harl.models.population.population_agent_param`) n_agents counts the virtual agents of all
    seeds and a shared value is one row per seed, (seeds, width)."""

    def __init__(self, n_agents: int, width: int, init_value: float, per_agent: bool) -> None:
        super().__init__()
        self.n_agents = n_agents
        shape = (n_agents, width) if per_agent else (width,)
        value = nn.Parameter(torch.full(shape, float(init_value)))
        self.value = mark_per_agent(value) if per_agent else value

    def forward(self, agents: torch.Tensor | None = None) -> torch.Tensor:
        """Returns (k, width) for the selected agents."""
        if self.value.dim() == 1:
            k = self.n_agents if agents is None else agents.numel()
            return self.value.expand(k, -1)
        if not is_per_agent(self.value):  # (seeds, width): one shared row per seed
            rows = self.value.repeat_interleave(self.n_agents // self.value.shape[0], 0)  # (n_agents, width)
            return rows if agents is None else rows[agents]
        return agent_rows(self.value, agents)
