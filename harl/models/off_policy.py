"""Actors and the joint Q critic of the off-policy learners (HASAC, MASAC, MADDPG, MATD3, HADDPG, HATD3).

Continuous actions live in two spaces. Learners, the replay buffer and the critic use *normalised*
actions in [-1, 1] per real action dimension (padded dimensions are zero). The environment gets each
agent's action mapped affinely onto that agent's own bounds `act_low`/`act_high` (`env_actions`), so
agents with different bounds (or sizes) are handled without ever borrowing another agent's bounds.

Discrete actions (`GumbelCategoricalActor`): learners and the critic use one-hot vectors over each agent's own
actions (padded entries zero); the replay buffer stores action indices and the environment gets them
too. Available-action masks are respected wherever a policy samples, takes its mode or is evaluated.

Every actor offers `critic_actions(stored)`: the buffer's stored actions as the critic reads them. Their
sampling methods take an optional `recorded` forward (`AgentMLP.record`) whose passes they replay instead of
recomputing (sequential updates, see `ReplayLearner.record_actors`).

Both actors serve all agents at once and are built through `arch.build_net(..., role="actor")`, so
every registered architecture (NoPS, FuPS, FuPS+ID, hypernetworks...) works with every learner.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harl.config import ModelConfig
from harl.models.agent_mlp import (
    ACTIVATION_SLOPES,
    ACTIVATIONS,
    AgentParameter,
    ForwardRecord,
    layer_dims,
    layer_gains,
    orthogonal_stack,
)
from harl.models.distributions import CategoricalPolicies, GaussianPolicies
from harl.models.policies import LOG_2PI, Actor, Exploration, actor_net_spec
from harl.models.population import stack_members
from harl.registry import ArchEntry
from harl.spec import EnvSpec

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
LOG_2 = math.log(2.0)


def net_outputs(
    net: nn.Module, obs: torch.Tensor, agents: torch.Tensor | None, recorded: ForwardRecord | None
) -> torch.Tensor:
    """An actor network's outputs (B, k, out) for the selected agents (all when None) on obs (B, k, O): computed,
    or replayed from `recorded`, a record of the network's forward on every agent's observations."""
    return net(obs, agents) if recorded is None else net.replay(recorded, agents)


class OffPolicyActor(Actor):
    """Common part of the off-policy actors (the learners' training passes select agents and replay recorded
    forward passes; acting in the envs is `Actor.act`)."""


class BoundedActor(OffPolicyActor):
    """Common part of the continuous off-policy actors: the affine map from [-1, 1] to each agent's own bounds."""

    def __init__(self, spec: EnvSpec) -> None:
        super().__init__(spec)
        self.register_buffer("act_scale", (self.act_high - self.act_low) / 2)  # (N, A)
        self.register_buffer("act_center", (self.act_high + self.act_low) / 2)  # (N, A)

    def _tile(self, seeds: int) -> None:
        super()._tile(seeds)
        for name in ("act_scale", "act_center"):
            setattr(self, name, getattr(self, name).repeat(seeds, 1))

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions (B, N, A) in [-1, 1] -> actions within each agent's own bounds (padded dims zero)."""
        return (self.act_center + self.act_scale * actions) * self.act_mask

    def random_actions(self, batch: int, avail: torch.Tensor | None = None) -> torch.Tensor:
        """Uniform normalised actions (batch, N, A) over each agent's own action box (padded dims zero)."""
        uniform = self.noise.rand_like(self.act_mask.new_empty(batch, *self.act_mask.shape))  # (batch, N, A)
        return (2 * uniform - 1) * self.act_mask

    def stored_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions (B, N, A) are stored as they are."""
        return actions

    def critic_actions(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored normalised actions (B, N, A) are what the critic reads."""
        return stored


class SquashedGaussianActor(BoundedActor):
    """tanh-squashed diagonal Gaussian (SAC). The net outputs a mean and a log-std per action dimension.

    The log-std is clamped to [-20, 2]; log-probabilities are those of the normalised action
    a = tanh(u), u ~ N(mean, std), including the tanh change-of-variables correction, summed over
    each agent's own action dimensions only.
    """

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        self.act_dim = spec.act_dim_max
        self.net = arch.build_net(spec=actor_net_spec(spec, 2 * spec.act_dim_max, model_cfg), arch_cfg=arch_cfg)

    def sample(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        deterministic: bool = False,
        avail: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (B, k, O) for the k selected agents (all when None) -> normalised actions (B, k, A)
        (reparameterised, so differentiable) and their log-probs (B, k). `deterministic` takes tanh(mean);
        `avail` (discrete actors' masks) is ignored; `recorded`: the network's passes to replay (`net_outputs`)."""
        mean, log_std = net_outputs(self.net, obs, agents, recorded).split(self.act_dim, dim=-1)  # (B, k, A) each
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.zeros_like(mean) if deterministic else self.noise.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI
        tanh_correction = 2 * (LOG_2 - pre_tanh - F.softplus(-2 * pre_tanh))  # log(1 - tanh(u)^2), stable
        mask = self._rows(self.act_mask, agents)  # (k, A)
        log_prob = ((gaussian - tanh_correction) * mask).sum(-1)
        return torch.tanh(pre_tanh) * mask, log_prob

    def act(
        self, obs: torch.Tensor, avail: torch.Tensor | None, exploration: Exploration
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent's normalised action (B, N, A) (sampled, or tanh of the mean) and its log-prob (B, N)."""
        return self.sample(obs, None, not exploration.sample)

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> GaussianPolicies:
        """Every agent's Gaussian before the squash (the JS divergence is invariant under the tanh)."""
        mean, log_std = self.net(obs, None).split(self.act_dim, dim=-1)  # (B, N, A) each
        return GaussianPolicies(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX), self.act_mask)


class DeterministicActor(BoundedActor):
    """Deterministic policy a = tanh(net(obs)) (DDPG/TD3), explored with Gaussian noise.

    Noise is added in normalised space, so its standard deviation is `noise_std` times half the
    width of each agent's own action range once mapped to the environment.
    """

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        self.net = arch.build_net(spec=actor_net_spec(spec, spec.act_dim_max, model_cfg), arch_cfg=arch_cfg)

    def forward(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        avail: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> torch.Tensor:
        """obs (B, k, O) -> normalised actions (B, k, A) of the k selected agents (all when None); `recorded`: the
        network's passes to replay (`net_outputs`)."""
        return torch.tanh(net_outputs(self.net, obs, agents, recorded)) * self._rows(self.act_mask, agents)

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> None:
        """A deterministic policy has no action distribution."""
        return None

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, exploration: Exploration) -> tuple[torch.Tensor, None]:
        """Every agent's normalised action (B, N, A), with clipped Gaussian noise of `exploration.noise_std`; no
        log-probs."""
        actions = self(obs)
        if exploration.noise_std > 0:
            noise = exploration.noise_std * self.noise.randn_like(actions)
            actions = (actions + noise).clamp(-1.0, 1.0) * self.act_mask
        return actions, None


class GumbelCategoricalActor(OffPolicyActor):
    """Categorical policies over each agent's own actions for the off-policy learners (discrete envs).

    The net outputs logits; padded and unavailable actions get no probability. Actions are one-hot vectors
    (B, k, A), as the joint Q critic reads them. Sampling is Gumbel-softmax with a straight-through
    estimator (the one-hot sample in the forward pass, the gradient of the softmax relaxation, temperature
    1): HARL's treatment of discrete HASAC and the original MADDPG's; its log-probabilities are those of the
    sampled actions. `deterministic` takes each policy's mode.

    It serves both families: SAC learners use `sample`/`act` (actions and log-probs), DDPG learners call it
    as their policy (`forward`: a differentiable one-hot sample) and explore by sampling.
    """

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        self.net = arch.build_net(spec=actor_net_spec(spec, spec.act_dim_max, model_cfg), arch_cfg=arch_cfg)

    def log_probs_all(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        avail: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> torch.Tensor:
        """Log-probabilities (B, k, A) of every action of the k selected agents (all when None) on obs (B, k, O),
        with padded and unavailable (`avail` (B, k, A) False) actions masked out; `recorded`: the network's
        passes to replay (`net_outputs`)."""
        logits = net_outputs(self.net, obs, agents, recorded)  # (B, k, A)
        valid = self._rows(self.act_mask, agents).bool().expand_as(logits)
        if avail is not None:
            valid = valid & avail.bool()
        return F.log_softmax(logits.masked_fill(~valid, torch.finfo(logits.dtype).min), dim=-1)

    def sample(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        deterministic: bool = False,
        avail: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot actions (B, k, A) (straight-through Gumbel-softmax samples, or the modes) of the selected
        agents and their log-probs (B, k); `recorded`: the network's passes to replay (`net_outputs`)."""
        log_p = self.log_probs_all(obs, agents, avail, recorded)  # (B, k, A)
        if deterministic:
            one_hot = F.one_hot(log_p.argmax(-1), log_p.shape[-1]).to(log_p.dtype)
        else:  # straight-through Gumbel-softmax at temperature 1, as F.gumbel_softmax(hard=True) with our noise
            relaxed = (log_p - self.noise.exponential_like(log_p).log()).softmax(-1)  # (B, k, A)
            hard = torch.zeros_like(log_p).scatter_(-1, relaxed.argmax(-1, keepdim=True), 1.0)
            one_hot = hard - relaxed.detach() + relaxed
        index = one_hot.detach().argmax(-1, keepdim=True)  # (B, k, 1)
        return one_hot, log_p.gather(-1, index).squeeze(-1)

    def act(
        self, obs: torch.Tensor, avail: torch.Tensor | None, exploration: Exploration
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent's one-hot action (B, N, A) (a Gumbel-softmax sample, or the mode) and its log-prob (B, N)."""
        return self.sample(obs, None, not exploration.sample, avail)

    def forward(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        avail: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> torch.Tensor:
        """A differentiable one-hot sample (B, k, A) of the selected agents' policies (DDPG learners)."""
        return self.sample(obs, agents, False, avail, recorded)[0]

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> CategoricalPolicies:
        """Every agent's action probabilities (B, N, A)."""
        return CategoricalPolicies(self.log_probs_all(obs, None, avail).exp())

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """One-hot actions (B, N, A) -> action indices (B, N, 1), as the environment and the buffer take them."""
        return actions.argmax(-1, keepdim=True)

    def stored_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """One-hot actions (B, N, A) are stored as indices (B, N, 1)."""
        return actions.argmax(-1, keepdim=True)

    def critic_actions(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored action indices (B, N, 1) -> one-hot actions (B, N, A)."""
        return F.one_hot(stored.squeeze(-1).long(), self.act_mask.shape[-1]).to(self.act_mask.dtype)

    def random_actions(self, batch: int, avail: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot actions (batch, N, A) drawn uniformly over each agent's own available actions."""
        valid = self.act_mask.bool().expand(batch, *self.act_mask.shape)
        if avail is not None:
            valid = valid & avail.bool()
        choice = self.noise.multinomial(valid.float()).squeeze(-1)  # (batch, N)
        return F.one_hot(choice, self.act_mask.shape[-1]).to(self.act_mask.dtype)


class JointQCritic(nn.Module):
    """Centralised Q(s, a_1, ..., a_N) heads on the global state and the joint normalised action.

    For the off-policy learners the architecture (`--arch`) applies to the actors only: this single
    joint critic is shared by all agents and is a plain MLP whatever the architecture. Its `n_heads`
    independent Q networks (2 for the twin critics of SAC/TD3, 1 for DDPG) are evaluated together,
    their weights stacked along a head dimension (one batched matmul per layer). Padded action
    dimensions of heterogeneous agents are dropped from the input; `feature_norm` normalises the
    state part of the input (actions already lie in [-1, 1]).

    The first layer is split into a state term and an action term, so a sequential (HA) actor
    update computes the state term once (`embed_state`) and reuses it for every agent's step.

    A population of P seeds (`population`) stacks its members' heads seed-major, P·h heads (tagged per row like
    per-agent tensors, so `harl.algos.seed_population` splits them per seed): it reads one state per seed
    (B, P, S) and the P·n virtual agents' joint actions (B, P·n, A), and seed s's heads see only seed s's.

    Args:
        spec: the environment's spec.
        n_heads: number of Q networks.
        model_cfg: sizes (`critic_sizes`), activation and normalisation layers.
    """

    def __init__(self, spec: EnvSpec, n_heads: int, model_cfg: ModelConfig) -> None:
        super().__init__()
        real = torch.as_tensor(spec.act_mask).flatten().nonzero().squeeze(1)  # (Σ act_dims,)
        self.register_buffer("action_index", real)
        self.seeds, self.n_agents = 1, spec.n_agents
        state_dim = spec.state_dim
        dims = layer_dims(state_dim + real.numel(), model_cfg.critic_sizes, 1)
        gains = layer_gains(len(dims), model_cfg.activation, 1.0)
        first = orthogonal_stack(n_heads, *dims[0], gains[0])  # (h, S + ΣA, H1): one orthogonal matrix per head
        self.state_weight = nn.Parameter(first[:, :state_dim].clone())  # (h, S, H1)
        self.action_weight = nn.Parameter(first[:, state_dim:].clone())  # (h, ΣA, H1)
        self.first_bias = nn.Parameter(torch.zeros(n_heads, 1, dims[0][1]))  # (h, 1, H1)
        self.weights = nn.ParameterList(
            [nn.Parameter(orthogonal_stack(n_heads, i, o, g)) for (i, o), g in zip(dims[1:], gains[1:], strict=True)]
        )  # (h, in, out) each
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n_heads, 1, o)) for _, o in dims[1:]])
        self.activation = ACTIVATIONS[model_cfg.activation]()
        self.activation_name = model_cfg.activation
        self.layer_norm, self.feature_norm = model_cfg.layer_norm, model_cfg.feature_norm

    @classmethod
    def population(cls, members: Sequence[JointQCritic]) -> JointQCritic:
        """One critic of P members' heads (one member per seed, each built alone under its seed), seed-major."""
        critic = copy.deepcopy(members[0])
        critic.seeds = len(members)

        def stacked(name: str) -> AgentParameter:  # (P·h, ...): member s's heads are rows s·h .. s·h+h-1
            return AgentParameter(stack_members([m.get_parameter(name) for m in members]).flatten(0, 1))

        critic.state_weight, critic.action_weight = stacked("state_weight"), stacked("action_weight")
        critic.first_bias = stacked("first_bias")
        critic.weights = nn.ParameterList([stacked(f"weights.{k}") for k in range(len(critic.weights))])
        critic.biases = nn.ParameterList([stacked(f"biases.{k}") for k in range(len(critic.biases))])
        return critic

    def _heads(self, param: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
        """The selected heads (all when None) of every seed, (P·k, ...)."""
        if heads is None:
            return param
        if self.seeds == 1:
            return param[heads]
        return param.unflatten(0, (self.seeds, -1))[:, heads].flatten(0, 1)

    def embed_state(self, state: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """The first layer's state term plus bias, (P·k, B, H1), for the selected heads (all when None) of states
        (B, S) (a population's: (B, P, S))."""
        if self.feature_norm:
            state = F.layer_norm(state, state.shape[-1:])
        weight, bias = self._heads(self.state_weight, heads), self._heads(self.first_bias, heads)
        if self.seeds == 1:
            return torch.matmul(state, weight) + bias  # (h, B, H1)
        per_seed = torch.matmul(state.transpose(0, 1).unsqueeze(1), weight.unflatten(0, (self.seeds, -1)))
        return per_seed.flatten(0, 1) + bias  # (P·k, B, H1)

    def joint_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Joint normalised actions (B, P·n, A) -> each seed's real action dimensions (P, B, ΣA)."""
        per_seed = actions.unflatten(1, (self.seeds, self.n_agents)).flatten(2)  # (B, P, n·A)
        return per_seed[:, :, self.action_index].transpose(0, 1)

    def forward(
        self,
        state: torch.Tensor,
        actions: torch.Tensor,
        heads: torch.Tensor | None = None,
        state_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """state (B, S), joint normalised actions (B, N, A) -> Q values (B, h) of the selected heads (all
        when None); a population's: states (B, P, S), actions (B, P·n, A) -> (B, P, h). `state_embedding`: a
        precomputed `embed_state(state, heads)` to reuse."""
        if state_embedding is None:
            state_embedding = self.embed_state(state, heads)
        action_weight = self._heads(self.action_weight, heads)  # (P·k, ΣA, H1)
        joint = self.joint_actions(actions)  # (P, B, ΣA)
        per_head = joint.unsqueeze(1).expand(self.seeds, action_weight.shape[0] // self.seeds, *joint.shape[1:])
        x = torch.baddbmm(state_embedding, per_head.flatten(0, 1), action_weight)  # (P·k, B, H1)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            x = self.activation(x)
            if self.layer_norm:
                x = F.layer_norm(x, x.shape[-1:])
            x = torch.baddbmm(self._heads(bias, heads), x, self._heads(weight, heads))  # (P·k, B, out)
        q = x.squeeze(-1).unflatten(0, (self.seeds, -1)).permute(2, 0, 1)  # (B, P, k)
        return q[:, 0] if self.seeds == 1 else q

    def min_q(
        self,
        state: torch.Tensor,
        actions: torch.Tensor,
        heads: torch.Tensor | None = None,
        state_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """min over the selected heads (all when None) of Q(s, a) (B,) (a population's: (B, P), each seed's own
        heads), as `forward(...).min(-1).values`.

        While the critic is frozen (an actor update: no parameter needs a gradient), gradients flow to the
        actions only, and each row's only from the head that is its minimum; the forward then runs without an
        autograd graph and the backward sends each row through its minimum head alone (`_FrozenMinQ`): half
        the hidden-layer work of a twin critic's backward. A forward replaced on the instance (`--compile true`),
        layer norm or an activation whose derivative its output does not give take the autograd path.
        """
        fast = (
            "forward" not in self.__dict__
            and not self.layer_norm
            and self.activation_name in ACTIVATION_SLOPES
            and not any(param.requires_grad for param in self.parameters())
        )
        if not fast:
            return self(state, actions, heads, state_embedding).min(-1).values
        if state_embedding is None:
            state_embedding = self.embed_state(state, heads)
        layers = [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]
        value = _FrozenMinQ.apply(
            self.joint_actions(actions),
            state_embedding,
            self._heads(self.action_weight, heads),
            self.activation_name,
            *[self._heads(t, heads) for t in layers],
        )  # (B,) or (B, P)
        return value


def gathers_rows(device: torch.device) -> bool:
    """Whether `_FrozenMinQ`'s backward gathers each head's rows (on the CPU, where it halves the work; a
    population's seeds each padded to the largest count, so they stay one batched product) rather than masking them
    (elsewhere: the number of rows would be read back from the device in every actor step)."""
    return device.type == "cpu"


class _FrozenMinQ(torch.autograd.Function):
    """min over each seed's heads of a frozen `JointQCritic` ((B,), a population's (B, P)), differentiable w.r.t. the
    joint action only.

    Forward: the critic's layers for every head, without an autograd graph. Backward: a row's gradient
    reaches only its minimum head (as `min(-1)`'s), so on the CPU each head back-propagates only its own rows
    (`gathers_rows`).
    """

    @staticmethod
    def forward(ctx, joint, state_embedding, action_weight, activation, *layers):  # type: ignore[override]
        # joint (P, B, ΣA), state_embedding (P·h, B, H1), action_weight (P·h, ΣA, H1), layers: weight (P·h, in,
        # out), bias (P·h, 1, out) alternately
        act = ACTIVATIONS[activation]()
        seeds = joint.shape[0]
        per_head = joint.unsqueeze(1).expand(seeds, action_weight.shape[0] // seeds, *joint.shape[1:])
        x = torch.baddbmm(state_embedding, per_head.flatten(0, 1), action_weight)  # (P·h, B, H1)
        outputs = []  # the hidden activations' outputs, (P·h, B, H_l) each
        for weight, bias in zip(layers[0::2], layers[1::2], strict=True):
            x = act(x)
            outputs.append(x)
            x = torch.baddbmm(bias, x, weight)  # (P·h, B, out)
        value, head = x.squeeze(-1).unflatten(0, (seeds, -1)).min(1)  # (P, B), (P, B)
        ctx.activation = activation
        ctx.save_for_backward(head, action_weight, *outputs, *layers[0::2])
        return value[0] if seeds == 1 else value.t()  # (B,) or (B, P)

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        # grad_value (B,) or (B, P); every saved tensor seen per seed and head, (P, h, ...)
        head, action_weight, *saved = ctx.saved_tensors
        seeds = head.shape[0]
        grad_value = grad_value.unsqueeze(0) if seeds == 1 else grad_value.t()  # (P, B)
        per_seed = [t.unflatten(0, (seeds, -1)) for t in (action_weight, *saved)]
        action_weight, saved = per_seed[0], per_seed[1:]
        outputs, weights = saved[: len(saved) // 2], saved[len(saved) // 2 :]
        slope = ACTIVATION_SLOPES[ctx.activation]
        grad_joint = grad_value.new_zeros(seeds, grad_value.shape[1], action_weight.shape[2])  # (P, B, ΣA)
        gather = gathers_rows(head.device)
        for k in range(action_weight.shape[1]):
            if gather:  # only the rows whose minimum is head k: each seed's first, in order, padded to the most
                mine = head == k  # (P, B)
                counts = mine.sum(1)  # (P,)
                most = int(counts.max())
                if most == 0:
                    continue
                rows = torch.argsort((~mine).to(torch.uint8), dim=1, stable=True)[:, :most]  # (P, r)
                valid = torch.arange(most, device=rows.device) < counts.unsqueeze(1)  # (P, r): padding False
                grad = torch.where(valid, grad_value.gather(1, rows), 0.0).unsqueeze(-1)  # (P, r, 1)
                index = rows.unsqueeze(-1)  # (P, r, 1); the head's outputs gathered below: (P, r, H_l) each
                head_outputs = [out[:, k].gather(1, index.expand(-1, -1, out.shape[-1])) for out in outputs]
            else:  # every row, the other heads' rows with gradient zero (no data-dependent size: no device sync)
                grad = torch.where(head == k, grad_value, 0.0).unsqueeze(-1)  # (P, B, 1)
                head_outputs = [out[:, k] for out in outputs]  # (P, B, H_l) each
            for weight, out in zip(reversed(weights), reversed(head_outputs), strict=True):
                grad = slope(torch.bmm(grad, weight[:, k].transpose(1, 2)), out)  # (P, r or B, H_l)
            grad_actions = torch.bmm(grad, action_weight[:, k].transpose(1, 2))  # (P, r or B, ΣA)
            if gather:  # a row belongs to one head: adding to its zeros writes it (padding adds zeros)
                grad_joint.scatter_add_(1, index.expand(-1, -1, grad_actions.shape[-1]), grad_actions)
            else:
                grad_joint += grad_actions
        return (grad_joint, None, None, None) + (None,) * (2 * len(weights))
