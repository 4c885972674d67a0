"""Seeds as a tensor dimension: P independent copies (one per seed) of an agent network, as one network.

A population of P seeds of an n-agent network is served as one network of P·n *virtual agents*, seed-major
(virtual agent s·n + i is agent i of seed s). Each member (seed) is first built alone, under its own seed,
exactly as a solo run builds it; the population then stacks the members' tensors:

- a per-agent tensor (n, ...) of every member becomes rows s·n .. s·n+n-1 of one (P·n, ...) tensor, still
  tagged per agent (`AgentParameter`), so per-agent optimiser steps, step counts and clipping see P·n agents;
- any other trainable tensor (a shared network's weights, a hypernetwork's generators) becomes a
  (P, ...) `SeedParameter`: row s is seed s's and serves only seed s's virtual agents. Clipping takes its
  norm per seed (`harl.optim.clip_grad_norm_agentwise`); Adam is elementwise, so it needs nothing more.

`PopulationParams` generates every member's layers in one `torch.func.vmap` over the seed dimension; the
`AgentMLP` that owns it (`population_network`) applies them to all virtual agents at once (per-agent weights
with one `baddbmm`, per-seed shared weights grouped by seed). `AgentParam` stacks alike (`population_agent_param`).
`harl.algos.seed_population` writes a population's values back into its members, so that a seed's checkpoint
is exactly a solo run's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, SupportsIndex, runtime_checkable

import torch
from torch import nn
from torch.func import functional_call, vmap

from harl.models.agent_mlp import AgentMLP, AgentParam, AgentParameter, LayerParams, is_per_agent


class SeedParameter(nn.Parameter):
    """A parameter whose dim 0 indexes seeds of a population (a member's shared tensor, stacked)."""

    def __reduce_ex__(self, protocol: SupportsIndex):
        return SeedParameter, (self.data, self.requires_grad)


def is_per_seed(param: torch.Tensor) -> bool:
    """Whether dim 0 of `param` indexes seeds (see `SeedParameter`)."""
    return isinstance(param, SeedParameter)


def stack_members(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """(P, ...) the members' tensors stacked, each row laid out in memory as the members are (e.g. the transposed
    weights of `orthogonal_stack`), so batched matmuls keep their fast layout."""
    first = tensors[0]
    order = sorted(range(first.dim()), key=lambda d: -first.stride(d))  # dims from the outermost in memory
    stacked = torch.stack([t.detach().permute(order) for t in tensors])
    return stacked.permute(0, *[1 + order.index(d) for d in range(first.dim())])


def stacked_parameter(members: Sequence[torch.Tensor]) -> nn.Parameter:
    """The population parameter of the members' same-named tensors: per agent (P·n, ...) or per seed (P, ...)."""
    stacked = stack_members(members)
    if is_per_agent(members[0]):
        return AgentParameter(stacked.flatten(0, 1), members[0].requires_grad)
    return SeedParameter(stacked, members[0].requires_grad)


def member_view(param: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """(P, ...) the population parameter seen with a leading seed dimension (a view: gradients flow)."""
    return param.unflatten(0, (n_seeds, -1)) if is_per_agent(param) else param


class StackedMembers(nn.Module):
    """The tensors of P members (one per seed) of one module, stacked: parameters (`stacked`, by the members'
    names `names`) and buffers (`member_buffer_k`, by `buffer_names`); the members are kept, not as submodules,
    as templates (for `torch.func.functional_call`) and as each seed's solo view, into which `write_members`
    writes the buffers (parameters: `harl.algos.seed_population.write_networks`) and from which `read_members`
    stacks them."""

    def stack(self, members: Sequence[nn.Module]) -> None:
        """Stack `members`' tensors into this module (called once, from its constructor)."""
        template = members[0]
        self.n_seeds = len(members)
        self._template = [template]  # not a submodule: its own tensors are replaced in every call
        self._members = list(members)
        self.names = [name for name, _ in template.named_parameters()]
        self.stacked = nn.ParameterList(
            [stacked_parameter([m.get_parameter(name) for m in members]) for name in self.names]
        )
        self.buffer_names = [name for name, _ in template.named_buffers()]
        for k, name in enumerate(self.buffer_names):
            self.register_buffer(f"member_buffer_{k}", stack_members([m.get_buffer(name) for m in members]))

    def member_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Parameters and buffers by the members' names, each (P, ...) (views of the population's)."""
        params = {name: member_view(p, self.n_seeds) for name, p in zip(self.names, self.stacked, strict=True)}
        buffers = {name: self.member_buffer(name) for name in self.buffer_names}
        return params, buffers

    def member_buffer(self, name: str) -> torch.Tensor:
        """(P, ...) the members' buffer `name`, stacked (the population's own copy, updated in place)."""
        return self.get_buffer(f"member_buffer_{self.buffer_names.index(name)}")

    @torch.no_grad()
    def write_members(self) -> None:
        """Each member's buffers: its seed's rows of the population's."""
        for name in self.buffer_names:
            for member, row in zip(self._members, self.member_buffer(name), strict=True):
                member.get_buffer(name).copy_(row)

    @torch.no_grad()
    def read_members(self) -> None:
        """The population's buffers stacked from its members' (after they were loaded)."""
        for name in self.buffer_names:
            self.member_buffer(name).copy_(stack_members([m.get_buffer(name) for m in self._members]))


class PopulationParams(LayerParams, StackedMembers):
    """The layers of P members' `LayerParams` (one per seed), generated in one vmapped call.

    `layers(agents)` returns, per layer, weights (P·k, in, out) for per-agent layers or (P, in, out) for layers a
    member shares among its agents, and biases (P·k, out) or (P, out); `agents` are virtual agents, k per seed in
    seed order (all when None). Under `torch.no_grad()` the layers of all agents are cached while no parameter
    changes (each keeps its storage and version counter, which optimiser steps and loads bump).

    Args:
        members: one weight source per seed, built alone under that seed; they are kept as templates (their
            values are copied in, and written back for checkpoints by `harl.algos.seed_population`).
        n_agents: the agents each member serves.
    """

    def __init__(self, members: Sequence[LayerParams], n_agents: int) -> None:
        super().__init__()
        self.stack(members)
        self.n_agents = n_agents
        self._cache_key: tuple | None = None
        self._cached: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _member_layers(self, local_agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every member's layers in one vmapped call: per layer (P, k, in, out) or (P, in, out), and biases."""
        params, buffers = self.member_tensors()
        template = self._template[0]

        def member(p: dict, b: dict, agents: torch.Tensor | None):
            return functional_call(template, (p, b), (agents,))

        if local_agents is None:
            return vmap(member, in_dims=(0, 0, None))(params, buffers, None)
        return vmap(member, in_dims=(0, 0, 0))(params, buffers, local_agents)

    def _flatten(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-agent layers (P, k, ...) -> (P·k, ...); per-seed shared layers stay (P, in, out) and (P, out)."""
        flat = []
        for weight, bias in layers:
            per_agent = weight.dim() == 4
            flat.append((weight.flatten(0, 1), bias.flatten(0, 1)) if per_agent else (weight, bias))
        return flat

    def forward(self, agents: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        local = None if agents is None else self.local_agents(agents)
        return self._flatten(self._member_layers(local))

    def local_agents(self, agents: torch.Tensor) -> torch.Tensor:
        """(P, k) each seed's own agent indices of virtual agents (P·k,) given k per seed in seed order."""
        return local_agents(agents, self.n_seeds, self.n_agents)

    def sources(self) -> list[torch.Tensor]:
        """Every tensor the generated layers depend on (the cache is valid while none of them changes)."""
        return [*self.stacked, *self.buffers()]

    def layers(self, agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if torch.is_grad_enabled():
            return self.forward(agents)
        key = tuple((t.data_ptr(), t._version) for t in self.sources())
        if key != self._cache_key:
            self._cache_key, self._cached = key, self.forward(None)
        if agents is None:
            return self._cached
        return [(self._select(w, agents), self._select(b, agents)) for w, b in self._cached]

    def _select(self, tensor: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
        """A cached layer tensor's rows for virtual `agents` (per-seed shared tensors are kept whole)."""
        return tensor[agents] if tensor.shape[0] == self.n_seeds * self.n_agents else tensor


@runtime_checkable
class StacksItsMembers(Protocol):
    """A `LayerParams` with state or duties beyond its layers (e.g. an auxiliary loss, a reset schedule) whose
    population is a `PopulationParams` subclass of its own."""

    @classmethod
    def population_params(cls, members: Sequence[Any], n_agents: int) -> PopulationParams:
        """The population of its members (one per seed, each built alone under its seed)."""


def local_agents(agents: torch.Tensor, n_seeds: int, n_agents: int) -> torch.Tensor:
    """(P, k) each seed's own agent indices of virtual agents (P·k,) given k per seed in seed order."""
    offsets = torch.arange(n_seeds, device=agents.device).unsqueeze(1) * n_agents  # (P, 1)
    return agents.view(n_seeds, -1) - offsets


class ModulePopulation(StackedMembers):
    """P members (one per seed, each built alone under its seed) of a network whose `forward(x, agents)` maps
    inputs (B, k, in) of the k selected agents (all when None) to (B, k, out), as one network of P·n virtual
    agents, seed-major: its forward runs every member's on its own seed's agents in one `torch.func.vmap` over the
    seed dimension (for networks whose weights are not an `AgentMLP`'s layers, e.g. ones generated per sample).

    Args:
        members: the seeds' networks (kept as templates and solo views).
        n_agents: the agents each member serves.
    """

    def __init__(self, members: Sequence[nn.Module], n_agents: int) -> None:
        super().__init__()
        self.stack(members)
        self.n_agents = n_agents

    def forward(self, x: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, P·k, in) for virtual agents `agents` (P·k,) (k per seed, in seed order; all when None) ->
        (B, P·k, out)."""
        params, buffers = self.member_tensors()
        template = self._template[0]
        per_seed = x.unflatten(1, (self.n_seeds, -1)).transpose(0, 1)  # (P, B, k, in)

        def member(p: dict, b: dict, inputs: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor:
            return functional_call(template, (p, b), (inputs, own))

        if agents is None:
            out = vmap(member, in_dims=(0, 0, 0, None))(params, buffers, per_seed, None)
        else:
            own = local_agents(agents, self.n_seeds, self.n_agents)  # (P, k)
            out = vmap(member, in_dims=(0, 0, 0, 0))(params, buffers, per_seed, own)
        return out.transpose(0, 1).flatten(1, 2)  # (B, P·k, out)


def population_network(members: Sequence[nn.Module]) -> AgentMLP:
    """One network serving P members' agents (one member per seed, each built alone under its seed) as P·n
    virtual agents, seed-major; every member's layers are generated in one batched call.

    Raises:
        TypeError: a member is not an `AgentMLP` (whose layers come from a `LayerParams`).
    """
    if not all(isinstance(m, AgentMLP) for m in members):
        raise TypeError("a population needs AgentMLP networks (layers from a LayerParams)")
    first, n_seeds = members[0], len(members)
    sources = [m.params for m in members]
    if isinstance(first.params, StacksItsMembers):
        params = type(first.params).population_params(sources, first.n_agents)
    else:
        params = PopulationParams(sources, first.n_agents)
    return AgentMLP(
        params,
        n_seeds * first.n_agents,
        first.in_mask.bool().repeat(n_seeds, 1),
        first.activation_name,
        first.layer_norm,
        first.feature_norm,
        first.append_id,
        seeds=n_seeds,
    )


@runtime_checkable
class ComposedNet(Protocol):
    """A network made of several `AgentMLP`s (and state of its own) that stacks its members itself."""

    @classmethod
    def population(cls, members: Sequence[Any]) -> nn.Module:
        """One network serving P members' agents (one member per seed, each built alone under its seed)."""


def population_net(members: Sequence[nn.Module]) -> nn.Module:
    """The one network of P members (one per seed): an `AgentMLP`'s (`population_network`) or a composed network's
    own (`ComposedNet.population`, e.g. a recurrent or DiCo network).

    Raises:
        TypeError: the members are neither.
    """
    first = members[0]
    if isinstance(first, ComposedNet):
        return type(first).population(members)
    return population_network(members)


def population_agent_param(members: Sequence[nn.Module]) -> nn.Module:
    """The members' state-independent values (one member per seed) for their P·n virtual agents, seed-major:
    an `AgentParam`'s per-agent rows stacked (P·n, width), shared rows one per seed (P, width); a module that
    stacks its members itself (`ComposedNet`, e.g. SePS's per-group rows) by its own `population`."""
    first = members[0]
    if isinstance(first, ComposedNet):
        return type(first).population(members)
    assert isinstance(first, AgentParam)
    param = AgentParam(len(members) * first.n_agents, first.value.shape[-1], 0.0, per_agent=True)
    param.value = stacked_parameter([m.value for m in members])
    return param


def per_seed_fill(
    like: torch.Tensor,
    rngs: Sequence[torch.Generator],
    fill: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    contiguous: bool = False,
) -> torch.Tensor:
    """Random values shaped like `like` (..., P·n, A): each seed's block of n agents a fresh tensor laid out as that
    block of `like` (or contiguous), filled in place by `fill(tensor, generator)` from the seed's own generator.
    Random fills follow memory order, so a block laid out as a solo run's tensor gets the values a solo run of that
    seed draws (`torch.randn_like` keeps its input's dimension order)."""
    n = like.shape[-2] // len(rngs)
    blocks = []
    for s, generator in enumerate(rngs):
        block = like[..., s * n : (s + 1) * n, :]
        empty = (
            torch.empty(block.shape, dtype=like.dtype, device=like.device) if contiguous else torch.empty_like(block)
        )
        blocks.append(fill(empty, generator))
    return torch.cat(blocks, dim=-2)  # one draw per seed: each seed has its own stream


def per_seed_randn(like: torch.Tensor, rngs: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like `like` (..., P·n, A), each seed's block of n agents drawn from its own
    generator, as a solo run of that seed draws `torch.randn_like` of its (..., n, A)."""
    return per_seed_fill(like, rngs, lambda t, g: t.normal_(generator=g))


def per_seed_multinomial(probs: torch.Tensor, rngs: Sequence[torch.Generator]) -> torch.Tensor:
    """(..., P·n, 1) one action per agent from probabilities (..., P·n, A), each seed's block of n agents drawn
    from its own generator, as a solo run of that seed draws them."""
    blocks = probs.unflatten(-2, (len(rngs), -1))  # (..., P, n, A)
    draws = [
        torch.multinomial(blocks[..., s, :, :].reshape(-1, probs.shape[-1]), 1, generator=g) for s, g in enumerate(rngs)
    ]  # one draw per seed: each seed has its own stream
    per_seed = torch.stack([d.view(*blocks.shape[:-3], blocks.shape[-2], 1) for d in draws], dim=-3)
    return per_seed.flatten(-3, -2)


class NoiseSource:
    """Where a policy's random draws come from: torch's global RNG (a solo run), or one generator per seed of a
    population (`rngs`), each seed's block of virtual agents (dim -2: P equal blocks) drawn from its own
    stream in the shape a solo run of that seed draws, so a seed's draws are its solo run's.

    Copies share the source (`copy.deepcopy` returns it): a target network draws from its online network's
    stream, as both draw from the global RNG in a solo run.
    """

    def __init__(self, rngs: Sequence[torch.Generator] | None = None) -> None:
        self.rngs = None if rngs is None else list(rngs)

    def __deepcopy__(self, memo: dict) -> NoiseSource:
        return self

    def randn_like(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped (and laid out) like `like` (..., P·n, A)."""
        if self.rngs is None:
            return torch.randn_like(like)
        return per_seed_randn(like, self.rngs)

    def rand_like(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform [0, 1) noise shaped (and laid out) like `like` (..., P·n, A)."""
        if self.rngs is None:
            return torch.rand_like(like)
        return per_seed_fill(like, self.rngs, lambda t, g: t.uniform_(generator=g))

    def exponential_like(self, like: torch.Tensor) -> torch.Tensor:
        """Exponential(1) noise shaped like `like` (..., P·n, A), contiguous (as `F.gumbel_softmax` draws it; Gumbel
        noise is its negative log)."""
        if self.rngs is None:
            return torch.empty(like.shape, dtype=like.dtype, device=like.device).exponential_()
        return per_seed_fill(like, self.rngs, lambda t, g: t.exponential_(generator=g), contiguous=True)

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:
        """(..., P·n, 1) one draw per agent from (unnormalised) probabilities (..., P·n, A)."""
        if self.rngs is None:
            return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(*probs.shape[:-1], 1)
        return per_seed_multinomial(probs, self.rngs)


@dataclass(frozen=True)
class SeedLayout:
    """How a population's data is laid out on either side of its networks.

    Environments, buffers and episode statistics see the seeds' envs side by side, seed-major: P·E envs of n
    agents, env s·E + e being env e of seed s. Networks see P·n virtual agents, seed-major, over E envs. A
    centralised critic reads one state per seed and env, (E, P, S).

    Attributes:
        seeds: P.
        n_agents: n, the agents of one seed.
    """

    seeds: int
    n_agents: int

    def to_agents(self, x: torch.Tensor, env_dim: int = 0) -> torch.Tensor:
        """(..., P·E, n, ...) with envs at `env_dim` -> (..., E, P·n, ...)."""
        if self.seeds == 1:
            return x
        x = x.unflatten(env_dim, (self.seeds, -1)).transpose(env_dim, env_dim + 1)  # (..., E, P, n, ...)
        return x.flatten(env_dim + 1, env_dim + 2)

    def to_envs(self, x: torch.Tensor, env_dim: int = 0) -> torch.Tensor:
        """(..., E, P·n, ...) with envs at `env_dim` -> (..., P·E, n, ...)."""
        if self.seeds == 1:
            return x
        x = x.unflatten(env_dim + 1, (self.seeds, -1)).transpose(env_dim, env_dim + 1)  # (..., P, E, n, ...)
        return x.flatten(env_dim, env_dim + 1)

    def states_to_seeds(self, x: torch.Tensor, env_dim: int = 0) -> torch.Tensor:
        """States (..., P·E, S) -> (..., E, P, S): each env's state beside those of the other seeds' envs."""
        if self.seeds == 1:
            return x
        return x.unflatten(env_dim, (self.seeds, -1)).transpose(env_dim, env_dim + 1)
