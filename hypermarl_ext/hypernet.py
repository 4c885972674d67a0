"""Agent-conditioned hypernetworks as weight sources of harl's batched `AgentMLP`.

A hypernetwork h maps agent i's context e_i to the parameters θ_i = h(e_i) of agent i's network
(the *target* network: an MLP with layers `dims`). Here the target network is harl's `AgentMLP`,
which asks its `LayerParams` for one (weight, bias) per layer for a selection of k agents; the
sources below generate them for all k agents in one hypernetwork pass, and `AgentMLP` applies them
with one `baddbmm` per layer:

- `MLPHyperParams` (`hypermarl`): e_i (learned embedding or one-hot id, (k, E)) -> generator MLPs
  (ReLU, `hypernet_hidden_dims`) -> linear heads. With `trunk: per_head` (the default, as the
  paper's authors built it) every target layer l has two independent generators: one MLP ending in
  the weight head (H -> in_l·out_l, reshaped to (in_l, out_l)) and another ending in the bias head
  (H -> out_l); only the context e_i is shared between heads. With `trunk: shared` one MLP's
  features z_i (k, H) feed every head. Either way θ = f_ψ1(g_ψ2(e)) (the paper's Eq. 10).
- `LinearHyperParams` (`hypermarl_linear`): θ_i = 1_i·W + b on one-hot ids. 1_i·W is row i of W, so
  W is stored as per-agent rows, one (n_agents, in_l, out_l) and one (n_agents, out_l) block per
  layer (its columns grouped by target layer), and b as shared (in_l, out_l) and (out_l,) blocks.
  Without the shared bias the generated parameters *are* the per-agent rows: exactly NoPS.

Initialisation (`hypernet_init`), with each layer's gain (the activation's for hidden layers, the
output gain for the last: 0.01 for actors, 1.0 for critics):

- `official` (the authors' public code): the hidden layers of the generator MLPs are plain dense
  layers with LeCun-normal weights (truncated normal, variance 1/fan_in) and zero biases. Every
  weight head's kernel has one row per hidden unit h of its MLP, and each row, reshaped to
  (in_l, out_l), is an independent orthogonal matrix Q_h at the layer's gain; the weight head's bias
  is zero. Bias heads (kernel and bias) are zero, so every generated bias starts at zero. Agent i's
  generated matrix is therefore Σ_h z_ih·Q_h: neither orthogonal nor at the plain orthogonal scale
  (larger by about √(H/E) with unit-variance features), exactly as the authors initialise it.
- `paper`: every agent's generated weight matrix starts as an independent orthogonal
  (fan_in × fan_out) matrix with the layer's gain, and every generated bias at zero; generator MLPs
  are orthogonally initialised (gain √2, zero biases). For the linear hypernetwork the rows of W are
  these matrices and b = 0. For the MLP hypernetwork the heads are linear in the features,
  θ_i = z_i·A + c, so with Q_i the target orthogonal matrices (flattened, rows of Q) we set c = 0, the
  bias heads to zero, and A = Z⁺Q, the minimum-norm least-squares solution of Z·A = Q over the
  agents' initial features Z (n_agents, H) of the head's generator. This is exact when Z has full row
  rank, which needs n_agents ≤ H and distinct embeddings; singular directions of Z weaker than
  `PINV_RTOL` times the largest are dropped so that A stays bounded, so exactness needs a condition
  number of Z below 1/`PINV_RTOL`. Orthogonal embeddings with n_agents ≤ embedding_dim give condition
  numbers of a few; with embedding 8 and hidden 64 it holds up to about 32 agents. Beyond that (more
  agents than the features can separate) A is rescaled so the generated matrices keep the targets'
  mean squared norm (the right gain), though they are then only approximately orthogonal.
- `hyperfan`: Chang et al. (2020) hyperfan-in, for a target layer with biases: head weights drawn
  with variances such that the generated weights have variance gain²/(2·fan_in) and the generated
  biases gain²/2, i.e. Var(A) = gain²/(2·fan_in·H·E[z²]) and Var(bias head) = gain²/(2·H·E[z²]), with
  E[z²] the mean squared initial feature of the agents (of each head's own generator); head biases
  zero. Generator MLPs as for `paper`. For the linear hypernetwork (features: the one-hot ids,
  H·E[z²] = 1) the rows of W are drawn with these variances directly and b = 0.

Learned embeddings are orthogonally initialised with gain `embedding_gain` (√2 by default, the
authors' value). With `share_embedding` the critic's hypernetwork reads the actor's embedding tensor
(see `MLPHyperParams.read_embedding_of`): the actor's optimiser owns it and only the actor's loss moves
it; the critic reads it as a constant.

Caching: under `torch.no_grad()` (acting, evaluation, targets) the generated layers of all agents are
cached and reused while every hypernetwork tensor keeps its storage and version counter, which every
in-place update bumps (optimiser steps, including `AgentAdam`'s per-agent rows, `load_state_dict`,
`copy_`, `lerp_`), and a selection of agents indexes the cached set; a selection asked for while the cache
is stale is generated alone and not cached (a sequential update re-sampling the agent whose step just
changed the shared weights pays for that agent, not for all). In-place writes through `.data`
bypass version counters: code doing that must call `invalidate_cache()`. With gradients enabled,
every forward generates afresh, so each backward sees its own graph and never a freed or stale one.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from harl.models.agent_mlp import LayerParams, activation_gain, agent_rows, mark_per_agent, orthogonal_stack
from harl.models.population import PopulationParams, member_view

PINV_RTOL = 1e-2
"""Singular values of the initial features below this fraction of the largest are ignored by the paper init."""

LECUN_TRUNCATION_STD = 0.87962566103423978
"""Std of a standard normal truncated to [-2, 2]; LeCun-normal divides by it to keep variance 1/fan_in."""

Layers = list[tuple[torch.Tensor, torch.Tensor]]


class AgentEmbedding(nn.Module):
    """The agents' contexts e_i: learned embeddings or fixed one-hot ids.

    Args:
        n_agents: number of agents.
        dim: embedding size (learned only; one-hot ids have size n_agents).
        kind: "learned" (trainable (n_agents, dim), orthogonally initialised, rows owned by their agent)
            or "onehot" (a fixed identity buffer).
        gain: the orthogonal gain of learned embeddings (each row has this norm when n_agents ≤ dim).
    """

    def __init__(self, n_agents: int, dim: int, kind: str, gain: float = 1.0) -> None:
        super().__init__()
        if kind == "learned":
            weight = torch.empty(n_agents, dim)
            nn.init.orthogonal_(weight, gain=gain)
            self.weight = mark_per_agent(nn.Parameter(weight))
        else:
            self.register_buffer("weight", torch.eye(n_agents))

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def forward(self, agents: torch.Tensor | None = None) -> torch.Tensor:
        """(k, dim) contexts of the selected agents (all when None)."""
        return agent_rows(self.weight, agents)

    @torch.no_grad()
    def cosine_distance(self) -> float:
        """Mean pairwise cosine distance 1 - cos(e_i, e_j) over agent pairs i < j (0: identical directions)."""
        n = self.weight.shape[0]
        unit = F.normalize(self.weight.float(), dim=1)  # (n, dim)
        cos = unit @ unit.T  # (n, n)
        upper = torch.triu_indices(n, n, offset=1, device=cos.device)
        return float((1.0 - cos[upper[0], upper[1]]).mean())


@torch.no_grad()
def lecun_normal_(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """LeCun-normal init as JAX/Flax dense layers use it: a normal truncated at ±2 std, variance 1/fan_in."""
    nn.init.trunc_normal_(weight, std=1.0, a=-2.0, b=2.0)
    return weight.mul_(math.sqrt(1.0 / fan_in) / LECUN_TRUNCATION_STD)


def trunk_mlp(in_dim: int, hidden_dims: list[int], init: str = "paper") -> nn.Sequential:
    """ReLU MLP from contexts to hypernetwork features, zero biases.

    Weights: LeCun normal for `init` "official" (plain dense layers, as the authors' code), orthogonal
    with gain √2 otherwise. Empty `hidden_dims` gives the identity: the heads then read the contexts.
    """
    layers: list[nn.Module] = []
    for width in hidden_dims:
        linear = nn.Linear(in_dim, width)
        if init == "official":
            lecun_normal_(linear.weight, in_dim)
        else:
            nn.init.orthogonal_(linear.weight, gain=activation_gain("relu"))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class GeneratorMLPs(nn.Module):
    """G independent ReLU MLPs with the same widths over the same contexts, evaluated as one batch.

    The per-head generators of `trunk: per_head`: 2 per target layer (weight, bias). Layer j holds
    (G, in_j, out_j) weights and (G, out_j) biases, initialised like `trunk_mlp` MLP by MLP.

    Args:
        count: G, the number of MLPs.
        in_dim: context size E.
        hidden_dims: widths (empty: every MLP is the identity).
        init: "official" (LeCun normal) or other (orthogonal, gain √2); zero biases.
    """

    def __init__(self, count: int, in_dim: int, hidden_dims: list[int], init: str) -> None:
        super().__init__()
        self.count = count
        weights, biases = [], []
        for width in hidden_dims:
            weight = torch.empty(count, in_dim, width)
            for g in range(count):  # init only
                if init == "official":
                    lecun_normal_(weight[g], in_dim)
                else:
                    nn.init.orthogonal_(weight[g], gain=activation_gain("relu"))
            weights.append(nn.Parameter(weight))
            biases.append(nn.Parameter(torch.zeros(count, width)))
            in_dim = width
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)

    def forward(self, context: torch.Tensor) -> list[torch.Tensor]:
        """Contexts (k, E) -> every MLP's features, a list of G tensors (k, H)."""
        h = context.unsqueeze(0).expand(self.count, -1, -1)  # (G, k, E)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            h = torch.relu(torch.baddbmm(bias.unsqueeze(1), h, weight))  # (G, k, width)
        return list(h.unbind(0))


def embedding_diagnostics(module: nn.Module, embedding: AgentEmbedding, role: str) -> dict[str, float]:
    """The agents' mean pairwise embedding cosine distance, for the runner's log.

    Keyed `diversity/embedding_cosine` for actors and `diversity/<role>_embedding_cosine` otherwise (e.g.
    `diversity/critic_embedding_cosine`). Nothing for a single agent or for a frozen copy (a target network:
    no trainable parameter).
    """
    if embedding.weight.shape[0] < 2 or not any(p.requires_grad for p in module.parameters()):
        return {}
    key = "diversity/embedding_cosine" if role == "actor" else f"diversity/{role}_embedding_cosine"
    return {key: embedding.cosine_distance()}


class GeneratorHeads(nn.Module):
    """One linear weight head (H -> out·in) and one linear bias head (H -> out) per target layer.

    A weight head's outputs are the layer's matrix in `nn.Linear`'s (out, in) memory order, which the
    batched matmul runs fastest on (see `orthogonal_stack`); it is handed on as a transposed view (in, out).

    Args:
        feature_dim: H, the size of the hypernetwork features.
        dims: (in, out) of every target layer.
    """

    def __init__(self, feature_dim: int, dims: list[tuple[int, int]]) -> None:
        super().__init__()
        self.dims = list(dims)
        self.weight_heads = nn.ModuleList([nn.Linear(feature_dim, i * o) for i, o in dims])
        self.bias_heads = nn.ModuleList([nn.Linear(feature_dim, o) for _, o in dims])

    def forward(self, weight_features: Sequence[torch.Tensor], bias_features: Sequence[torch.Tensor]) -> Layers:
        """Per layer l, features (k, H) of its weight and bias heads -> a weight (k, in, out) and a bias (k, out)."""
        heads = zip(self.dims, self.weight_heads, self.bias_heads, weight_features, bias_features, strict=True)
        return [(w_head(zw).view(-1, o, i).transpose(1, 2), b_head(zb)) for (i, o), w_head, b_head, zw, zb in heads]

    @torch.no_grad()
    def init_official(self, gains: list[float]) -> None:
        """The authors' init: every weight-head row (one per feature h), as a layer matrix, an independent
        orthogonal matrix at the layer's gain; weight-head biases and both parts of the bias heads zero."""
        for (i, o), gain, w_head, b_head in zip(self.dims, gains, self.weight_heads, self.bias_heads, strict=True):
            feature_dim = w_head.in_features
            rows = orthogonal_stack(feature_dim, i, o, gain).transpose(1, 2)  # (H, out, in): Q_hᵀ, (out, in) order
            w_head.weight.copy_(rows.reshape(feature_dim, o * i).T)  # column h = Q_h
            nn.init.zeros_(w_head.bias)
            nn.init.zeros_(b_head.weight)
            nn.init.zeros_(b_head.bias)

    @torch.no_grad()
    def init_paper(self, features: Sequence[torch.Tensor], gains: list[float]) -> None:
        """Heads such that agent i's generated layers are independent orthogonal matrices (zero biases).

        features: per layer, (n_agents, H) the agents' initial features of its weight head. See the
        module docstring for the fit.
        """
        layers = zip(self.dims, gains, self.weight_heads, self.bias_heads, features, strict=True)
        for (i, o), gain, w_head, b_head, z in layers:
            n = z.shape[0]
            z_pinv = torch.linalg.pinv(z, rtol=PINV_RTOL)  # (H, n)
            target = orthogonal_stack(n, i, o, gain).transpose(1, 2).reshape(n, o * i).to(z)  # (n, out·in)
            head = z_pinv @ target  # (H, out·in)
            fitted = (z @ head).norm()
            scale = target.norm() / fitted if fitted > 0 else 1.0
            w_head.weight.copy_((head * scale).T)
            nn.init.zeros_(w_head.bias)
            nn.init.zeros_(b_head.weight)
            nn.init.zeros_(b_head.bias)

    @torch.no_grad()
    def init_hyperfan(
        self, weight_features: Sequence[torch.Tensor], bias_features: Sequence[torch.Tensor], gains: list[float]
    ) -> None:
        """Hyperfan-in (Chang et al. 2020) for target layers with biases.

        weight_features, bias_features: per layer, (n_agents, H) the agents' initial features of its
        weight and bias heads, giving H·E[z²].
        """
        layers = zip(self.dims, gains, self.weight_heads, self.bias_heads, weight_features, bias_features, strict=True)
        for (i, _), gain, w_head, b_head, zw, zb in layers:
            nn.init.normal_(w_head.weight, std=math.sqrt(gain**2 / (2 * i * _fan(zw))))
            nn.init.zeros_(w_head.bias)
            nn.init.normal_(b_head.weight, std=math.sqrt(gain**2 / (2 * _fan(zb))))
            nn.init.zeros_(b_head.bias)

    def initialise(
        self,
        init: str,
        weight_features: Sequence[torch.Tensor],
        bias_features: Sequence[torch.Tensor],
        gains: list[float],
    ) -> None:
        """Apply `hypernet_init` ("official", "paper" or "hyperfan") given the agents' initial features."""
        if init == "official":
            self.init_official(gains)
        elif init == "paper":
            self.init_paper(weight_features, gains)
        else:
            self.init_hyperfan(weight_features, bias_features, gains)


def _fan(z: torch.Tensor) -> torch.Tensor:
    """H·E[z²] of features z (n_agents, H)."""
    return z.shape[1] * z.pow(2).mean().clamp_min(1e-12)


class _GenerationCache:
    """The generated layers of all agents and the (storage, version) of every tensor they came from.

    Holding the tensors keeps their storages alive, so a storage address is never reused by a
    different tensor while the entry stands. Copies of a module start with an empty cache.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.sources: list[torch.Tensor] = []
        self.layers: Layers = []

    def __deepcopy__(self, memo: dict) -> _GenerationCache:
        return _GenerationCache()

    def clear(self) -> None:
        self.key, self.sources, self.layers = None, [], []


class HyperParams(LayerParams):
    """A `LayerParams` whose layers are generated from agent contexts, cached while its tensors are unchanged.

    Args:
        role: "actor" or "critic", used to name the logged diagnostics.
    """

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role
        self._cache = _GenerationCache()

    @abstractmethod
    def generate(self, agents: torch.Tensor | None) -> Layers:
        """Generate one (weight (k, in, out), bias (k, out)) per layer for the selected agents."""

    def sources(self) -> list[torch.Tensor]:
        """Every tensor the generated layers depend on (the cache is valid while none of them changes)."""
        return [*self.parameters(), *self.buffers()]

    def forward(self, agents: torch.Tensor | None = None) -> Layers:
        return self.generate(agents)

    def layers(self, agents: torch.Tensor | None) -> Layers:
        if torch.is_grad_enabled():
            return self.generate(agents)
        sources = self.sources()
        key = tuple((t.data_ptr(), t._version) for t in sources)
        if key != self._cache.key:
            if agents is not None:  # e.g. an HA update re-sampling the agent in turn after its step: its layers only
                return self.generate(agents)
            self._cache.key, self._cache.sources = key, [t.detach() for t in sources]
            self._cache.layers = self.generate(None)
        if agents is None:
            return self._cache.layers
        return [(w[agents], b[agents]) for w, b in self._cache.layers]

    def invalidate_cache(self) -> None:
        """Forget the cached generated layers (only needed after writes through `.data`)."""
        self._cache.clear()


class MLPHyperParams(HyperParams):
    """`hypermarl`: MLP hypernetworks over agent embeddings generating every layer of every agent.

    Args:
        n_agents: number of agents.
        dims: (in, out) of every target layer.
        gains: orthogonal gain of every target layer.
        embedding_dim: size of learned embeddings.
        hidden_dims: generator MLP widths.
        init: "official", "paper" or "hyperfan".
        embedding: "learned" or "onehot".
        role: "actor" or "critic".
        trunk: "per_head" (an independent generator MLP for every weight and every bias head) or "shared"
            (one MLP feeding every head).
        embedding_gain: orthogonal gain of learned embeddings.
    """

    def __init__(
        self,
        n_agents: int,
        dims: list[tuple[int, int]],
        gains: list[float],
        embedding_dim: int,
        hidden_dims: list[int],
        init: str,
        embedding: str,
        role: str,
        trunk: str = "per_head",
        embedding_gain: float = 1.0,
    ) -> None:
        super().__init__(role)
        self.embedding = AgentEmbedding(n_agents, embedding_dim, embedding, embedding_gain)
        self._read_embedding: list[AgentEmbedding] = []  # the actor's embedding, when read (share_embedding)
        self._population_embedding: torch.Tensor | None = None  # (n, E) a population's seed rows, while it calls
        self.n_layers, self.trunk_kind = len(dims), trunk
        if trunk == "per_head":
            self.generators = GeneratorMLPs(2 * len(dims), self.embedding.dim, hidden_dims, init)
        else:
            self.trunk = trunk_mlp(self.embedding.dim, hidden_dims, init)
        self.heads = GeneratorHeads(hidden_dims[-1] if hidden_dims else self.embedding.dim, dims)
        with torch.no_grad():
            weight_features, bias_features = self._features(self.embedding())
        self.heads.initialise(init, weight_features, bias_features, gains)

    def _features(self, context: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Contexts (k, E) -> per layer the features (k, H) of its weight head and of its bias head."""
        if self.trunk_kind == "per_head":
            features = self.generators(context)  # 2L × (k, H): weight heads first, then bias heads
            return features[: self.n_layers], features[self.n_layers :]
        z = self.trunk(context)  # (k, H)
        return [z] * self.n_layers, [z] * self.n_layers

    def context(self, agents: torch.Tensor | None) -> torch.Tensor:
        """(k, E) the selected agents' contexts: this network's embedding, or the one it reads."""
        if self._population_embedding is not None:
            return agent_rows(self._population_embedding, agents)
        if self._read_embedding:
            return self._read_embedding[0](agents).detach()
        return self.embedding(agents)

    @contextmanager
    def reading(self, embedding: torch.Tensor) -> Iterator[None]:
        """Within the block, read `embedding` (n, E) (one seed's rows of a population's read embedding, see
        `MLPHyperPopulation`) in place of the embedding this member reads on its own."""
        self._population_embedding = embedding
        try:
            yield
        finally:
            self._population_embedding = None

    @classmethod
    def population_params(cls, members: Sequence[MLPHyperParams], n_agents: int) -> MLPHyperPopulation:
        """The population of P seeds' hypernetworks (`harl.models.population.StacksItsMembers`)."""
        return MLPHyperPopulation(members, n_agents)

    def read_embedding_of(self, owner: MLPHyperParams) -> None:
        """Read `owner`'s embedding tensor from now on instead of an own one (`share_embedding`).

        The tensor stays a parameter of `owner` only, so `owner`'s optimiser alone steps it; this network
        reads it detached (its loss does not move it) and keeps no embedding parameter of its own.
        """
        if owner.embedding.weight.shape != self.embedding.weight.shape:
            raise ValueError("shared embeddings need the same number of agents and embedding size")
        self.embedding = None  # no parameter, no state: the owner saves and loads it
        self._read_embedding = [owner.embedding]
        self.invalidate_cache()

    def sources(self) -> list[torch.Tensor]:
        return [*super().sources(), *(e.weight for e in self._read_embedding)]

    def generate(self, agents: torch.Tensor | None) -> Layers:
        return self.heads(*self._features(self.context(agents)))

    def diagnostics(self) -> dict[str, float]:
        if self._read_embedding:  # the owner (the actor) reports the shared embedding
            return {}
        return embedding_diagnostics(self, self.embedding, self.role)


class MLPHyperPopulation(PopulationParams):
    """P seeds' `MLPHyperParams` generating every seed's layers in one vmapped call (`PopulationParams`); with
    `share_embedding`, each seed's critic generators read that seed's rows of the actor population's embedding
    (detached, as a solo critic reads its actor's), never another seed's.

    Args:
        members: one hypernetwork per seed, each built alone under its seed.
        n_agents: the agents each member serves.
    """

    def __init__(self, members: Sequence[MLPHyperParams], n_agents: int) -> None:
        super().__init__(members, n_agents)
        self._read_embedding: list[MLPHyperPopulation] = []  # the actor population, when read (share_embedding)

    def seed_embeddings(self) -> torch.Tensor:
        """(P, n, E) every seed's learned agent embeddings (a view of the population's parameter)."""
        return member_view(self.stacked[self.names.index("embedding.weight")], self.n_seeds)

    def read_embedding_of(self, owner: MLPHyperPopulation) -> None:
        """Read each seed's embedding from `owner` (the actor's population) from now on; its members already read
        their own actor members' (`MLPHyperParams.read_embedding_of`), which stay their solo views."""
        if owner.seed_embeddings().shape[1:] != self._template[0]._read_embedding[0].weight.shape:
            raise ValueError("shared embeddings need the same number of agents and embedding size")
        self._read_embedding = [owner]
        self._cache_key = None

    def sources(self) -> list[torch.Tensor]:
        return [*super().sources(), *(owner.seed_embeddings() for owner in self._read_embedding)]

    def _member_layers(self, local_agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not self._read_embedding:
            return super()._member_layers(local_agents)
        params, buffers = self.member_tensors()
        template = self._template[0]
        embeddings = self._read_embedding[0].seed_embeddings().detach()  # (P, n, E)

        def member(p: dict, b: dict, embedding: torch.Tensor, agents: torch.Tensor | None):
            with template.reading(embedding):
                return functional_call(template, (p, b), (agents,))

        agent_dim = None if local_agents is None else 0
        return vmap(member, in_dims=(0, 0, 0, agent_dim))(params, buffers, embeddings, local_agents)


class LinearHyperParams(HyperParams):
    """`hypermarl_linear`: θ_i = 1_i·W + b, with W stored as per-agent rows and b as shared blocks.

    Args:
        n_agents: number of agents.
        dims: (in, out) of every target layer.
        gains: orthogonal gain of every target layer (paper init).
        shared_bias: keep the shared bias b (False: exactly NoPS).
        init: "paper" (rows of W orthogonal, b and generated biases zero) or "hyperfan" (one-hot inputs:
            weight rows with variance gain²/(2·fan_in), bias rows gain²/2, b zero).
        role: "actor" or "critic".
    """

    def __init__(
        self,
        n_agents: int,
        dims: list[tuple[int, int]],
        gains: list[float],
        shared_bias: bool,
        init: str,
        role: str,
    ) -> None:
        super().__init__(role)
        layers = list(zip(dims, gains, strict=True))
        if init == "paper":
            weights = [orthogonal_stack(n_agents, i, o, g) for (i, o), g in layers]
            biases = [torch.zeros(n_agents, o) for _, o in dims]
        else:
            weights = [torch.randn(n_agents, i, o) * (g / math.sqrt(2 * i)) for (i, o), g in layers]
            biases = [torch.randn(n_agents, o) * (g / math.sqrt(2)) for (_, o), g in layers]
        self.weights = nn.ParameterList([mark_per_agent(nn.Parameter(w)) for w in weights])  # (n, in, out) each
        self.biases = nn.ParameterList([mark_per_agent(nn.Parameter(b)) for b in biases])  # (n, out) each
        self.shared_bias = shared_bias
        if shared_bias:
            self.shared_weights = nn.ParameterList([nn.Parameter(torch.zeros(i, o)) for i, o in dims])
            self.shared_biases = nn.ParameterList([nn.Parameter(torch.zeros(o)) for _, o in dims])

    def generate(self, agents: torch.Tensor | None) -> Layers:
        pairs = zip(self.weights, self.biases, strict=True)
        rows = [(agent_rows(w, agents), agent_rows(b, agents)) for w, b in pairs]
        if not self.shared_bias:
            return rows
        return [(w + sw, b + sb) for (w, b), sw, sb in zip(rows, self.shared_weights, self.shared_biases, strict=True)]
