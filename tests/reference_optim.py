"""`AgentAdam` as first written, the reference its fused implementation is tested (`tests/test_optim.py`) and
timed (`bench/agent_adam.py`) against."""

from __future__ import annotations

import torch

from harl.models.agent_mlp import is_per_agent


class ReferenceAgentAdam(torch.optim.Optimizer):
    """`AgentAdam` as first written: one parameter at a time, selected rows gathered, updated and scattered back."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, agents: torch.Tensor | None = None) -> None:
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
