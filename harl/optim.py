"""Optimisation aware of the agent dimension.

Per-agent parameters are stored stacked (dim 0 = agent, see `mark_per_agent`). A plain Adam over
such a tensor would, in a sequential (HA) update of agent i, still move every other agent's rows
with their stale momentum. `AgentAdam.step(agents=...)` updates only the selected agents' rows
(and their own step counters) of per-agent tensors, and shared tensors as usual — the
semantics of one optimiser per agent (NoPS) or one shared optimiser (parameter sharing).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from harl.models.agent_mlp import is_per_agent


class AgentAdam(torch.optim.Optimizer):
    """Adam whose `step` can be restricted to a subset of agents.

    Args:
        params: parameters (per-agent ones tagged with `mark_per_agent`).
        lr: learning rate.
        betas: Adam's moment decay rates.
        eps: Adam's epsilon.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, agents: torch.Tensor | None = None) -> None:
        """Update parameters; per-agent tensors only in the rows of `agents` (all rows when None)."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                per_agent = is_per_agent(p)
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] = torch.zeros(p.shape[0] if per_agent else (), device=p.device)
                rows = agents if (per_agent and agents is not None) else None
                if rows is None:
                    self._adam(p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group, beta1, beta2)
                    continue
                param, grad = p[rows], p.grad[rows]
                exp_avg, exp_avg_sq, step = state["exp_avg"][rows], state["exp_avg_sq"][rows], state["step"][rows]
                self._adam(param, grad, exp_avg, exp_avg_sq, step, group, beta1, beta2)
                p[rows] = param
                state["exp_avg"][rows] = exp_avg
                state["exp_avg_sq"][rows] = exp_avg_sq
                state["step"][rows] = step

    @staticmethod
    def _adam(param, grad, exp_avg, exp_avg_sq, step, group, beta1, beta2) -> None:
        step += 1
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        view = (-1,) + (1,) * (param.dim() - 1) if step.dim() == 1 else ()
        bias1 = (1 - beta1**step).view(view)
        bias2 = (1 - beta2**step).view(view)
        denom = (exp_avg_sq / bias2).sqrt_().add_(group["eps"])
        param.addcdiv_(exp_avg / bias1, denom, value=-group["lr"])


def grad_norms_agentwise(params: Iterable[torch.nn.Parameter], n_agents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient norms split by ownership: (n_agents,) over per-agent tensors' rows, and a scalar over
    shared tensors."""
    per_agent_sq = None
    shared_sq = None
    device = None
    for p in params:
        device = p.device
        if p.grad is None:
            continue
        if is_per_agent(p):
            sq = p.grad.pow(2).reshape(p.shape[0], -1).sum(-1)  # (n_agents,)
            per_agent_sq = sq if per_agent_sq is None else per_agent_sq + sq
        else:
            sq = p.grad.pow(2).sum()
            shared_sq = sq if shared_sq is None else shared_sq + sq
    per_agent = per_agent_sq.sqrt() if per_agent_sq is not None else torch.zeros(n_agents, device=device)
    shared = shared_sq.sqrt() if shared_sq is not None else torch.zeros((), device=device)
    return per_agent, shared


def clip_grad_norm_agentwise(
    params: list[torch.nn.Parameter], max_norm: float, n_agents: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip each agent's own gradient (its rows of per-agent tensors) to `max_norm`, and the shared
    tensors' gradient as one group to `max_norm` — as one clipped optimiser per agent plus one for
    shared networks would. Returns the norms before clipping: (n_agents,) and shared scalar."""
    per_agent, shared = grad_norms_agentwise(params, n_agents)
    agent_scale = (max_norm / (per_agent + 1e-6)).clamp(max=1.0)  # (n_agents,)
    shared_scale = (max_norm / (shared + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is None:
            continue
        if is_per_agent(p):
            p.grad.mul_(agent_scale.to(p.device).view(-1, *([1] * (p.dim() - 1))))
        else:
            p.grad.mul_(shared_scale.to(p.device))
    return per_agent, shared
