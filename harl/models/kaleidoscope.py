"""Kaleidoscope (Li, Pan and Zhang, NeurIPS 2024), learnable masks over shared weights, as `--arch kaleidoscope`.

Every agent's network is one set of shared weights θ₀ seen through the agent's own learnable mask. As in the
authors' public Kaleidoscope repository (its HARL-based MaMuJoCo part), each weight entry of each linear layer has
one learnable threshold s per agent (thresholds (n_agents, in, out) per layer; biases are shared and unmasked),
and agent i's weight is the soft-thresholded shared weight

    θ_i = sign(θ₀) · ReLU(|θ₀| − σ(s_i)),

so an entry is pruned for agent i where |θ₀| ≤ σ(s_i): it then sends no gradient back through agent i's path, to
the weight or to the threshold. Thresholds start at s = −(U(0, 1)·threshold_init_scale + threshold_init_bias),
drawn per agent and entry (authors' actor defaults 5 and 5: σ(s) ∈ [5e-5, 7e-3], so every agent starts with
nearly every weight and the agents' masks nearly equal). The shared weights start from U(±1/√fan_in), PyTorch's
`nn.Linear` default, as the authors' (their HARL MATD3 actors): the spec's orthogonal init would put an actor's
output layer (gain 0.01, entries ~1e-3) under the initial thresholds whole, where it would get no gradient.

Diversity regulariser (added to the loss through the architecture hook `aux_loss`, `harl.models.auxiliary`):
with the binary masks M_i = 1[|θ₀| > σ(s_i)], differentiated by a straight-through estimator whose backward
passes tanh(upstream gradient) to |θ₀| − σ(s_i) (the authors'), weighted by |θ₀| (no gradient to θ₀), the team's
term is

    L_div = −Σ_l c_l Σ_{i≠j} ‖|θ₀,l| ⊙ (M_i,l − M_j,l)‖₁ / (n(n−1) · Σ_l |θ₀,l|₀),   c_l = layer_weight_base^l

(the authors' layer weights 1, 2, 4 for three layers); agent i's own term is its mean distance to the others
(their mean is L_div), and a learner adds the terms of the agents it updates. The coefficient adapts as the
authors': div_coef · |mean(task loss) / mean(L_div)| over the last `deque_len` × n_agents updates (the running
means kept on the device, in the checkpoint). |x|'s gradient at 0 is 0, so the regulariser alone never splits
entries where the masks agree: it pushes apart thresholds where masks already differ (from the random init or the
task's gradients), which keeps them different.

Reset (the authors' `_reset`): every `reset_interval` env steps trained on (not within the last `reset_interval`
of the run), each entry pruned by every agent is, with probability `reset_ratio`, revived: its shared weight is
redrawn from U(±1/√fan_in) (PyTorch's Linear default) and all agents' thresholds there from
−(U(0, 1)·threshold_reset_scale + threshold_reset_bias). The clock and the random stream are the layers' state
(checkpointed).

Critics: on-policy learners' per-agent critics are built by the architecture, so each agent's critic is the
shared critic weights under its own mask, with the same regulariser (added to the critic loss) and resets
(`critic_masks`; false: NoPS critics). Not reproduced: the authors' critic ensembles for their off-policy learners
(MATD3's joint Q critic replaced by 5 masked members sharing weights, target = their minimum, actors trained on
their mean, critic_div_coef 0.1, thresholds from −U(0, 20), one member's thresholds redrawn every 800k steps in
turn): here the off-policy learners' joint Q critic is the learner's, not built by the architecture, and stays
the learner's single/twin network.

Populations (`--seeds N`, `harl.models.population`): the masked layers of P seeds are one `PopulationMaskedParams`
(shared weights (P, in, out), thresholds (P·n, in, out)); each seed's regulariser term, adaptive coefficient and
running means are its own (a learner passes each seed's task loss), and a reset draws each seed's revived entries
from that seed's own stream, so seed s of a population is its solo run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from harl.config import EmptyConfig, bounded, check_bounds
from harl.models.agent_mlp import AgentParam, LayerParams, agent_rows, mark_per_agent
from harl.models.auxiliary import Agents, RegularisedPart
from harl.models.net_spec import NetSpec
from harl.models.population import PopulationParams, member_view
from harl.registry import ArchEntry, get_architecture, register_architecture


@dataclass
class KaleidoscopeConfig:
    """Options of `kaleidoscope` (defaults: the authors' MaMuJoCo actor settings)."""

    threshold_init_scale: float = bounded(5.0, ge=0)
    """Thresholds start at s = −(U(0, 1)·threshold_init_scale + threshold_init_bias); σ(s) is the pruning level."""
    threshold_init_bias: float = bounded(5.0, ge=0)
    """See threshold_init_scale (larger: masks start closer to all ones)."""
    threshold_reset_scale: float = bounded(5.0, ge=0)
    """A reset redraws the revived entries' thresholds as −(U(0, 1)·threshold_reset_scale + threshold_reset_bias)."""
    threshold_reset_bias: float = bounded(5.0, ge=0)
    """See threshold_reset_scale."""
    div_coef: float = bounded(0.1, ge=0)
    """Weight of the mask-diversity regulariser relative to the task loss (the coefficient applied is
    div_coef · |mean task loss / mean regulariser| over recent updates); 0: no regulariser."""
    deque_len: int = bounded(100, gt=0)
    """Updates (× n_agents entries) over which those running means are taken."""
    weighted_masks: bool = True
    """Weight each mask entry by |shared weight| in the regulariser (the authors' default)."""
    layer_weight_base: float = bounded(2.0, gt=0)
    """Layer l's regulariser weight is layer_weight_base^l (the authors' 1, 2, 4 for three layers)."""
    reset_interval: int = bounded(1_000_000, ge=0)
    """Env steps trained on between resets (none within the last reset_interval of the run); 0: never reset."""
    reset_ratio: float = bounded(0.5, ge=0, le=1)
    """Probability that an entry pruned by every agent is revived at a reset."""
    critic_masks: bool = True
    """Per-agent critics built by the architecture (on-policy learners) are masked shared critics too; false: NoPS
    critics."""

    def validate(self) -> None:
        check_bounds(self, "arch")


def linear_default(fan_in: int, fan_out: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(fan_in, fan_out) weights from U(±1/√fan_in), PyTorch's `nn.Linear` default (the authors' init and reset),
    in `nn.Linear`'s memory order."""
    bound = 1 / math.sqrt(fan_in)
    return ((torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound).t()


class _BinaryMask(torch.autograd.Function):
    """1[x > 0] forward; tanh(upstream gradient) backward (the authors' straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return torch.tanh(grad)


class ResetSchedule(ABC):
    """The authors' reset clock: `advance` counts trained env steps and calls `reset` when `reset_interval` have
    passed since the last reset and more than `reset_interval` remain in the run (a population's seeds train on the
    same env steps, so one clock serves them all)."""

    cfg: KaleidoscopeConfig
    env_steps: int
    last_reset: int

    def advance(self, env_steps: int, run_env_steps: int) -> None:
        self.env_steps += env_steps
        interval = self.cfg.reset_interval
        if interval > 0 and self.env_steps - self.last_reset > interval and run_env_steps - self.env_steps > interval:
            self.reset()
            self.last_reset = self.env_steps

    @abstractmethod
    def reset(self) -> None:
        """Revive entries every agent prunes."""


class MaskedParams(LayerParams, ResetSchedule, RegularisedPart):
    """Shared layer weights seen through per-agent learnable masks (Kaleidoscope), with the diversity regulariser
    (`aux_loss`) and the periodic reset (`advance`), a `harl.models.auxiliary.RegularisedPart`.

    Attributes:
        history: (2, deque_len · n_agents) the recent task losses and regulariser terms (a ring, on the device).
        history_count: the entries ever written to it.

    Args:
        n_agents: the agents (one mask each).
        dims: (in, out) of every layer.
        cfg: the options.
        role: "actor" or "critic" (names its logged diagnostics).
    """

    history: torch.Tensor
    history_count: torch.Tensor
    last_aux: torch.Tensor
    last_coef: torch.Tensor

    def __init__(self, n_agents: int, dims: list[tuple[int, int]], cfg: KaleidoscopeConfig, role: str) -> None:
        super().__init__()
        self.n_agents, self.cfg, self.role = n_agents, cfg, role
        self.weights = nn.ParameterList([nn.Parameter(linear_default(i, o)) for i, o in dims])  # (in, out) each
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(o)) for _, o in dims])  # (out,) each
        scale, bias = cfg.threshold_init_scale, cfg.threshold_init_bias
        self.thresholds = nn.ParameterList(
            [mark_per_agent(nn.Parameter(self._draw(n_agents, i, o, scale, bias))) for i, o in dims]
        )  # (N, in, out) each, laid out as the weights
        self.layer_weights = [cfg.layer_weight_base**layer for layer in range(len(dims))]
        self.param_count = sum(i * o for i, o in dims)
        length = cfg.deque_len * n_agents
        self.register_buffer("history", torch.zeros(2, length))  # (2, L): recent task losses and regulariser values
        self.register_buffer("history_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_aux", torch.zeros(()), persistent=False)  # the last term returned (weighted)
        self.register_buffer("last_coef", torch.zeros(()), persistent=False)
        self.rng = torch.Generator().manual_seed(int(torch.randint(2**62, ())))  # the resets' draws
        self.env_steps, self.last_reset, self.resets = 0, 0, 0

    @staticmethod
    def _draw(n: int, fan_in: int, fan_out: int, scale: float, bias: float, generator=None) -> torch.Tensor:
        """(n, fan_in, fan_out) thresholds −(U(0, 1)·scale + bias), in the weights' memory order."""
        return -(torch.rand(n, fan_out, fan_in, generator=generator) * scale + bias).transpose(1, 2)

    def layers(self, agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for weight, bias, threshold in zip(self.weights, self.biases, self.thresholds):
            level = torch.sigmoid(agent_rows(threshold, agents))  # (k, in, out)
            masked = torch.sign(weight) * torch.relu(weight.abs() - level)  # (k, in, out): soft threshold
            out.append((masked, bias.expand(masked.shape[0], -1)))
        return out

    def masks(self) -> list[torch.Tensor]:
        """Every agent's binary mask (N, in, out) per layer (1: the agent uses the entry), straight-through."""
        return [_BinaryMask.apply(w.detach().abs() - torch.sigmoid(s)) for w, s in zip(self.weights, self.thresholds)]

    # ------------------------------------------------------------------ the regulariser

    @classmethod
    def population_params(cls, members: Sequence[MaskedParams], n_agents: int) -> PopulationMaskedParams:
        """The masked layers of P seeds as one (see `PopulationMaskedParams`)."""
        return PopulationMaskedParams(members, n_agents)

    def aux_loss(self, agents: Agents, task_loss: torch.Tensor, record: bool = True) -> torch.Tensor:
        """The selected agents' diversity terms, summed and scaled by the adaptive coefficient (0-dim; `task_loss`:
        the run's (1,) or 0-dim task loss)."""
        n = self.n_agents
        if n < 2 or self.cfg.div_coef == 0:
            return task_loss.new_zeros(())
        device = self.weights[0].device
        rows = None if agents is None else torch.as_tensor(agents, device=device)
        distances = []  # (k, N) per layer: weighted L1 distance of each selected agent's mask to every agent's
        for layer_weight, mask, weight in zip(self.layer_weights, self.masks(), self.weights):
            if self.cfg.weighted_masks:
                mask = mask * weight.detach().abs()  # (N, in, out)
            own = mask if rows is None else mask[rows]  # (k, in, out)
            distances.append(layer_weight * (own[:, None] - mask[None]).abs().flatten(2).sum(-1))
        distance = torch.stack(distances).sum(0)  # (k, N)
        term = -(distance.sum(1) / ((n - 1) * self.param_count)).sum()  # Σ over the selected agents
        coef = self._coefficient(task_loss.detach().sum(), term.detach(), record)
        weighted = coef * term
        self.last_aux.copy_(weighted.detach())
        self.last_coef.copy_(coef)
        return weighted

    def _coefficient(self, task: torch.Tensor, term: torch.Tensor, record: bool) -> torch.Tensor:
        """div_coef · |mean task loss / mean term| over the recent updates (div_coef while the mean term is 0)."""
        length = self.history.shape[1]
        if record:
            slot = (self.history_count % length).view(1)
            self.history.index_copy_(1, slot, torch.stack([task, term]).view(2, 1).to(self.history.dtype))
            self.history_count.add_(1)
        mean_task, mean_term = self.history.sum(1) / self.history_count.clamp(min=1, max=length)
        coef = self.cfg.div_coef
        return torch.where(mean_term != 0, (coef * mean_task / mean_term).abs(), torch.full_like(mean_term, coef))

    # ------------------------------------------------------------------ the reset schedule

    @torch.no_grad()
    def reset(self) -> None:
        """Revive, with probability `reset_ratio`, each entry every agent prunes: a fresh shared weight and fresh
        thresholds for every agent there."""
        cfg, gen = self.cfg, self.rng
        for weight, threshold in zip(self.weights, self.thresholds):
            fan_in, fan_out = weight.shape
            pruned = (weight.abs() <= torch.sigmoid(threshold)).all(0)  # (in, out): pruned by every agent
            drawn = torch.rand(fan_out, fan_in, generator=gen).t() < cfg.reset_ratio
            revive = pruned & drawn.to(weight.device)
            fresh = self._draw(self.n_agents, fan_in, fan_out, cfg.threshold_reset_scale, cfg.threshold_reset_bias, gen)
            threshold.copy_(torch.where(revive, fresh.to(threshold.device), threshold))
            new_weight = linear_default(fan_in, fan_out, gen)
            weight.copy_(torch.where(revive, new_weight.to(weight.device), weight))
        self.resets += 1

    def get_extra_state(self) -> dict:
        """The schedule's clock and the resets' random stream (checkpointed with the parameters)."""
        return {
            "env_steps": self.env_steps,
            "last_reset": self.last_reset,
            "resets": self.resets,
            "generator": self.rng.get_state(),
        }

    def set_extra_state(self, state: dict) -> None:
        self.env_steps, self.last_reset, self.resets = state["env_steps"], state["last_reset"], state["resets"]
        self.rng.set_state(state["generator"])

    # ------------------------------------------------------------------ diagnostics

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """The last regulariser term and coefficient, the mean fraction of entries pruned per agent, the mean
        fraction on which two agents' masks differ, and the resets so far."""
        masks = self.masks()
        total = float(self.param_count)
        kept = sum(float(m.sum()) for m in masks) / (self.n_agents * total)
        values = {
            f"kaleidoscope/{self.role}/aux_loss": float(self.last_aux),
            f"kaleidoscope/{self.role}/div_coef": float(self.last_coef),
            f"kaleidoscope/{self.role}/pruned": 1.0 - kept,
            f"kaleidoscope/{self.role}/resets": float(self.resets),
        }
        if self.n_agents > 1:
            differ = sum(float((m[:, None] != m[None]).flatten(2).sum()) for m in masks)
            values[f"kaleidoscope/{self.role}/mask_difference"] = differ / (self.n_agents * (self.n_agents - 1) * total)
        return values


class PopulationMaskedParams(PopulationParams, ResetSchedule, RegularisedPart):
    """The masked layers of P seeds (one `MaskedParams` member each, built alone under its seed), as one: layers are
    generated as `PopulationParams` does; the regulariser, its coefficient and running means are computed for all
    seeds at once but each from its own seed's masks and task loss; the reset schedule is shared (every seed trains
    on the same env steps) and each reset draws a seed's entries from that seed's own stream (its member's)."""

    def __init__(self, members: Sequence[MaskedParams], n_agents: int) -> None:
        super().__init__(members, n_agents)
        first = members[0]
        self.cfg, self.role = first.cfg, first.role
        self.layer_weights, self.param_count = first.layer_weights, first.param_count
        self.n_layers = len(first.weights)
        self.masked_members = list(members)  # not submodules: the seeds' solo views, whose clocks it writes
        self.rngs = [m.rng for m in members]  # each seed's resets' stream (its member's, checkpointed)
        self.env_steps, self.last_reset, self.resets = first.env_steps, first.last_reset, first.resets

    def _param(self, name: str) -> torch.Tensor:
        """The population's tensor of the members' parameter `name`, seen (P, ...) (thresholds (P, n, in, out))."""
        return member_view(self.stacked[self.names.index(name)], self.n_seeds)

    def _masks(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: every seed's shared weights (P, in, out) and its agents' binary masks (P, n, in, out)."""
        out = []
        for layer in range(self.n_layers):
            weight, threshold = self._param(f"weights.{layer}"), self._param(f"thresholds.{layer}")
            out.append((weight, _BinaryMask.apply(weight.detach().abs().unsqueeze(1) - torch.sigmoid(threshold))))
        return out

    def aux_loss(self, agents: Agents, task_loss: torch.Tensor, record: bool = True) -> torch.Tensor:
        """(P,) each seed's diversity terms of its selected agents (virtual agents, k per seed in seed order; all
        when None), scaled by that seed's adaptive coefficient; `task_loss`: each seed's task loss (P,)."""
        n, seeds = self.n_agents, self.n_seeds
        if n < 2 or self.cfg.div_coef == 0:
            return task_loss.new_zeros(seeds)
        masks = self._masks()
        device = masks[0][0].device
        local = None if agents is None else self.local_agents(torch.as_tensor(agents, device=device))  # (P, k)
        distances = []  # (P, k, n) per layer: weighted L1 distance of each selected agent's mask to its seed's agents'
        for layer_weight, (weight, mask) in zip(self.layer_weights, masks):
            if self.cfg.weighted_masks:
                mask = mask * weight.detach().abs().unsqueeze(1)  # (P, n, in, out)
            own = mask if local is None else mask[torch.arange(seeds, device=device).unsqueeze(1), local]  # (P, k, ·)
            distances.append(layer_weight * (own[:, :, None] - mask[:, None]).abs().flatten(3).sum(-1))
        distance = torch.stack(distances).sum(0)  # (P, k, n)
        term = -(distance.sum(2) / ((n - 1) * self.param_count)).sum(1)  # (P,)
        coef = self._coefficient(task_loss.detach().reshape(seeds), term.detach(), record)  # (P,)
        weighted = coef * term
        self.member_buffer("last_aux").copy_(weighted.detach())
        self.member_buffer("last_coef").copy_(coef)
        return weighted

    def _coefficient(self, task: torch.Tensor, term: torch.Tensor, record: bool) -> torch.Tensor:
        """(P,) each seed's div_coef · |mean task loss / mean term| over its recent updates (`MaskedParams`)."""
        history, count = self.member_buffer("history"), self.member_buffer("history_count")  # (P, 2, L), (P,)
        length = history.shape[2]
        if record:
            slot = (count % length).view(-1, 1, 1).expand(-1, 2, 1)  # (P, 2, 1)
            history.scatter_(2, slot, torch.stack([task, term], 1).unsqueeze(2).to(history.dtype))
            count.add_(1)
        means = history.sum(2) / count.clamp(min=1, max=length).unsqueeze(1)  # (P, 2)
        mean_task, mean_term = means.unbind(1)
        coef = self.cfg.div_coef
        return torch.where(mean_term != 0, (coef * mean_task / mean_term).abs(), torch.full_like(mean_term, coef))

    @torch.no_grad()
    def reset(self) -> None:
        """`MaskedParams.reset` for every seed, each seed's draws from its own stream in its solo run's order."""
        cfg = self.cfg
        for layer in range(self.n_layers):
            weight, threshold = self._param(f"weights.{layer}"), self._param(f"thresholds.{layer}")  # (P, ...)
            fan_in, fan_out = weight.shape[1:]
            drawn, fresh, new_weight = [], [], []
            for rng in self.rngs:  # each seed's own stream, drawn as its solo run draws
                drawn.append(torch.rand(fan_out, fan_in, generator=rng).t() < cfg.reset_ratio)
                fresh.append(
                    MaskedParams._draw(
                        self.n_agents, fan_in, fan_out, cfg.threshold_reset_scale, cfg.threshold_reset_bias, rng
                    )
                )
                new_weight.append(linear_default(fan_in, fan_out, rng))
            pruned = (weight.abs().unsqueeze(1) <= torch.sigmoid(threshold)).all(1)  # (P, in, out)
            revive = pruned & torch.stack(drawn).to(weight.device)  # (P, in, out)
            threshold.copy_(torch.where(revive.unsqueeze(1), torch.stack(fresh).to(threshold.device), threshold))
            weight.copy_(torch.where(revive, torch.stack(new_weight).to(weight.device), weight))
        self.resets += 1

    @torch.no_grad()
    def write_members(self) -> None:
        super().write_members()
        for member in self.masked_members:
            member.env_steps, member.last_reset, member.resets = self.env_steps, self.last_reset, self.resets

    @torch.no_grad()
    def read_members(self) -> None:
        super().read_members()
        first = self.masked_members[0]
        self.env_steps, self.last_reset, self.resets = first.env_steps, first.last_reset, first.resets


def build_kaleidoscope_net(*, spec: NetSpec, arch_cfg: KaleidoscopeConfig) -> nn.Module:
    """An `AgentMLP` on `MaskedParams` (critics without `critic_masks`: NoPS)."""
    if spec.role != "actor" and not arch_cfg.critic_masks:
        return get_architecture("nops").build_net(spec=spec, arch_cfg=EmptyConfig())
    dims, _ = spec.layers()  # the authors' Linear-default init, not the spec's orthogonal gains (see the module doc)
    return spec.mlp(MaskedParams(spec.n_agents, dims, arch_cfg, spec.role))


def build_kaleidoscope_agent_param(
    *, n_agents: int, width: int, init_value: float, role: str, arch_cfg: KaleidoscopeConfig
) -> AgentParam:
    """State-independent parameters (log-stds) are shared, as the shared network's (HARL's `share_param`)."""
    return AgentParam(n_agents, width, init_value, per_agent=False)


register_architecture(
    ArchEntry(
        name="kaleidoscope",
        config_cls=KaleidoscopeConfig,
        build_net=build_kaleidoscope_net,
        build_agent_param=build_kaleidoscope_agent_param,
        shares_parameters=True,
        description="Kaleidoscope: shared weights under per-agent learnable masks, mask-diversity loss, resets",
    )
)
