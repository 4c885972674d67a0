"""Optimisation aware of the agent dimension.

Per-agent parameters are stored stacked (dim 0 = agent, see `mark_per_agent`). A plain Adam over
such a tensor would, in a sequential (HA) update of agent i, still move every other agent's rows
with their stale momentum. `AgentAdam.step(agents=...)` updates only the selected agents' rows
(and their own step counters) of per-agent tensors, and shared tensors as usual — the
semantics of one optimiser per agent (NoPS) or one shared optimiser (parameter sharing).

Both the optimiser and the agent-wise gradient clipping work on lists of tensors (torch's fused Adam
kernel, `torch._foreach_*` ops): their Python loops run over parameters, never over agents or elements.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.autograd.graph import increment_version

from harl.models.agent_mlp import is_per_agent


@functools.lru_cache(maxsize=1024)
def _dense_layout(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether a tensor of `shape` and `stride` covers one gap-free, non-overlapping block of memory (in any
    order of its dims), so that an elementwise kernel may walk it as a flat array."""
    expected = 1
    for size, step in sorted(zip(shape, stride, strict=True), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if step != expected:
            return False
        expected *= size
    return True


class _AdamBatch:
    """Operands of one fused Adam call (one device and dtype): a parameter tensor or one agent's row of it, with
    its gradient, moments and step counter (0-dim), each four laid out alike in memory."""

    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.exp_avgs: list[torch.Tensor] = []
        self.exp_avg_sqs: list[torch.Tensor] = []
        self.steps: list[torch.Tensor] = []  # 0-dim step counters the kernel reads (views into the state)
        self.bumps: list[torch.Tensor] = []  # step counters to increment before the kernel runs
        self.write_back: list[tuple[torch.Tensor, torch.Tensor]] = []  # (destination, working copy)

    def add(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        step: torch.Tensor,
    ) -> None:
        """Queue one tensor. The fused kernel walks memory flat, so the four tensors go to it as 1-D views of one
        dense layout (which also runs it at its contiguous speed on transposed weights); tensors laid out
        otherwise than a dense `param` go as working copies, copied back after it ran."""
        layout = param.stride()
        if _dense_layout(tuple(param.shape), layout) and exp_avg.stride() == layout == exp_avg_sq.stride():
            if grad.stride() != layout:  # e.g. a gradient assigned by hand
                grad = torch.empty_like(param).copy_(grad)
        else:
            work = [t.contiguous() for t in (param, exp_avg, exp_avg_sq)]
            self.write_back += [(t, w) for t, w in zip((param, exp_avg, exp_avg_sq), work, strict=True) if w is not t]
            param, exp_avg, exp_avg_sq = work
            grad = grad.contiguous()
        numel = param.numel()
        self.params.append(param.as_strided((numel,), (1,)))
        self.grads.append(grad.as_strided((numel,), (1,)))
        self.exp_avgs.append(exp_avg.as_strided((numel,), (1,)))
        self.exp_avg_sqs.append(exp_avg_sq.as_strided((numel,), (1,)))
        self.steps.append(step)

    def run(self, group: dict[str, Any]) -> None:
        """Increment the step counters, then one fused Adam step over every queued tensor."""
        if not self.params:
            return
        beta1, beta2 = group["betas"]
        torch._foreach_add_(self.bumps, 1.0)
        torch._fused_adam_(
            self.params,
            self.grads,
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )
        # the kernel writes through data pointers: tell autograd and version-keyed caches (e.g. generated weights)
        increment_version(self.params + self.exp_avgs + self.exp_avg_sqs)
        if self.write_back:
            destinations, copies = zip(*self.write_back, strict=True)
            torch._foreach_copy_(list(destinations), list(copies))


class AgentAdam(torch.optim.Optimizer):
    """Adam whose `step` can be restricted to a subset of agents.

    Each parameter's state is Adam's `exp_avg` and `exp_avg_sq` (the parameter's shape) and a float32 `step`:
    a scalar for shared tensors, (n_agents,) for per-agent ones, whose rows count their own steps and so
    get their own bias correction.

    Args:
        params: parameters (per-agent ones tagged with `mark_per_agent`).
        lr: learning rate.
        betas: Adam's moment decay rates.
        eps: Adam's epsilon.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        # per-agent parameters whose rows' step counts may differ (not saved: `load_state_dict` recomputes it)
        self._ragged: set[torch.Tensor] = set()

    @torch.no_grad()
    def step(self, agents: torch.Tensor | Sequence[int] | None = None) -> None:
        """Update parameters; per-agent tensors only in the rows of `agents` (all rows when None).

        Args:
            agents: indices of the agents to update: host ints, or a tensor (read on the host: one device sync on
                GPU).
        """
        if agents is not None:
            agents = agents.tolist() if isinstance(agents, torch.Tensor) else agents
        rows = None if agents is None else list(dict.fromkeys(agents))  # distinct, in order
        for group in self.param_groups:
            batches: dict[tuple[torch.device, torch.dtype], _AdamBatch] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                per_agent = is_per_agent(p)
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] = torch.zeros(p.shape[0] if per_agent else (), dtype=torch.float32, device=p.device)
                batch = batches.setdefault((p.device, p.dtype), _AdamBatch())
                tensors = (p, p.grad, state["exp_avg"], state["exp_avg_sq"])
                step = state["step"]
                if not per_agent:
                    batch.add(*tensors, step)
                    batch.bumps.append(step)
                elif rows is None and p not in self._ragged:  # all rows at one step count: the whole tensor
                    batch.add(*tensors, step[0])
                    batch.bumps.append(step)
                else:  # row by row, each with its own step count
                    if rows is not None and len(rows) < p.shape[0]:
                        self._ragged.add(p)
                    selected = [t.unbind(0) if rows is None else [t[a] for a in rows] for t in (*tensors, step)]
                    for row in zip(*selected, strict=True):
                        batch.add(*row)
                    batch.bumps += selected[-1]
            for batch in batches.values():
                batch.run(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a state: where `load_state_dict` (of a state saved by this or an earlier version of
        `AgentAdam`) and unpickling end. Moments get their parameter's memory layout, step counters become
        float32 on the parameter's device."""
        super().__setstate__(state)
        self._ragged = set()
        for group in self.param_groups:
            for p in group["params"]:
                param_state = self.state.get(p)
                if not param_state:
                    continue
                for key in ("exp_avg", "exp_avg_sq"):
                    if param_state[key].stride() != p.stride():
                        param_state[key] = torch.empty_like(p).copy_(param_state[key])
                step = param_state["step"] = param_state["step"].to(device=p.device, dtype=torch.float32)
                if step.dim() and bool((step != step[0]).any()):  # one device sync per per-agent parameter
                    self._ragged.add(p)


def _split_grads(params: Iterable[torch.nn.Parameter]) -> tuple[list[torch.Tensor], list[torch.Tensor], Any]:
    """The gradients of per-agent and of shared parameters (those with one), and the parameters' device.
    Per-seed parameters of a population (`SeedParameter`) count as shared: each seed's rows form its own group."""
    per_agent: list[torch.Tensor] = []
    shared: list[torch.Tensor] = []
    device = None
    for p in params:
        device = p.device
        if p.grad is not None:
            (per_agent if is_per_agent(p) else shared).append(p.grad)
    return per_agent, shared, device


def _row_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """(rows,) the norm of each row (dim 0) over all `grads`, each reduced in place over its other dims (no copy
    of a transposed layout)."""
    rows = [torch.linalg.vector_norm(g.unsqueeze(-1), dim=tuple(range(1, g.dim() + 1))) for g in grads]
    return torch.stack(rows).square().sum(0).sqrt()


def _norms(
    per_agent_grads: list[torch.Tensor], shared_grads: list[torch.Tensor], n_agents: int, device, seeds: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_agents,) norms of each agent's rows over all `per_agent_grads`, and the norm of `shared_grads`: a scalar,
    or (seeds,) the norm of each seed's rows for a population's per-seed parameters (`seeds` > 1)."""
    per_agent = _row_norms(per_agent_grads) if per_agent_grads else torch.zeros(n_agents, device=device)
    if not shared_grads:
        shared = torch.zeros(() if seeds == 1 else (seeds,), device=device)
    elif seeds > 1:
        shared = _row_norms(shared_grads)  # (seeds,)
    else:
        shared = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(shared_grads)))
    return per_agent, shared


def grad_norms_agentwise(
    params: Iterable[torch.nn.Parameter], n_agents: int, seeds: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient norms split by ownership: (n_agents,) over per-agent tensors' rows, and over shared tensors a
    scalar, or (seeds,) one per seed for a population's per-seed tensors."""
    per_agent_grads, shared_grads, device = _split_grads(params)
    return _norms(per_agent_grads, shared_grads, n_agents, device, seeds)


def clip_grad_norm_agentwise(
    params: Iterable[torch.nn.Parameter], max_norm: float, n_agents: int, seeds: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip each agent's own gradient (its rows of per-agent tensors) to `max_norm`, and the shared
    tensors' gradient as one group to `max_norm` — as one clipped optimiser per agent plus one for
    shared networks would. In a population of `seeds` seeds (`harl.models.population`) the agents are its virtual
    agents and each seed's rows of the per-seed tensors form that seed's shared group. Returns the norms before
    clipping: (n_agents,) and the shared scalar (or (seeds,))."""
    per_agent_grads, shared_grads, device = _split_grads(params)
    per_agent, shared = _norms(per_agent_grads, shared_grads, n_agents, device, seeds)
    if per_agent_grads:
        agent_scale = (max_norm / (per_agent + 1e-6)).clamp(max=1.0)  # (n_agents,)
        torch._foreach_mul_(per_agent_grads, [agent_scale.view(-1, *[1] * (g.dim() - 1)) for g in per_agent_grads])
    if shared_grads:
        shared_scale = (max_norm / (shared + 1e-6)).clamp(max=1.0)  # () or (seeds,)
        if seeds > 1:
            torch._foreach_mul_(shared_grads, [shared_scale.view(-1, *[1] * (g.dim() - 1)) for g in shared_grads])
        else:
            torch._foreach_mul_(shared_grads, shared_scale)
    return per_agent, shared
