"""The fused agent-aware optimiser and agent-wise clipping against straightforward per-parameter references:
random agent subsets, parameters without a gradient, every memory layout, dtypes, checkpoints of the reference,
and training runs through the CLI."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from harl.algos import off_policy_base, ppo_base
from harl.cli import train_main
from harl.config import ModelConfig
from harl.models.agent_mlp import is_per_agent, mark_per_agent
from harl.models.policies import GaussianActor
from harl.optim import AgentAdam, clip_grad_norm_agentwise, grad_norms_agentwise
from harl.registry import get_architecture, load_extensions
from harl.utils.checkpoint import load_checkpoint

from .conftest import read_progress, run_train
from .reference_optim import ReferenceAgentAdam
from .test_models import hetero_spec
from .test_off_policy import TINY as OFF_POLICY_TINY
from .test_resume import MATRIX

load_extensions()
N = 4
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def reference_norms(params, n_agents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent and shared gradient norms, one parameter and one agent at a time."""
    per_agent = torch.zeros(n_agents, dtype=torch.float64)
    shared = torch.zeros((), dtype=torch.float64)
    for p in params:
        if p.grad is None:
            continue
        if is_per_agent(p):
            for i in range(n_agents):
                per_agent[i] += p.grad[i].double().square().sum()
        else:
            shared += p.grad.double().square().sum()
    return per_agent.sqrt(), shared.sqrt()


def every_layout(device: str) -> list[torch.nn.Parameter]:
    """Per-agent and shared parameters in every layout the optimiser must handle (N agents)."""
    base = torch.randn(N, 7, 2)

    def param(t: torch.Tensor, per_agent: bool) -> torch.nn.Parameter:
        p = torch.nn.Parameter(t.to(device))
        return mark_per_agent(p) if per_agent else p

    return [
        param(torch.randn(N, 6, 5).transpose(1, 2), True),  # (N, in, out) over nn.Linear's (N, out, in) storage
        param(torch.randn(N, 5), True),
        param(torch.randn(N), True),  # one value per agent: its rows are 0-dim
        param(torch.randn(3, N).t(), True),  # agent dim innermost: rows are strided
        param(base[:, :5, 1], True),  # not dense: a strided slice of a bigger tensor
        param(torch.randn(5, 3), False),
        param(torch.randn(3, 5).t(), False),
        param(torch.randn(5), False),
        param(torch.randn(4, 3, dtype=torch.float64), False),
        param(torch.randn(N, 3, dtype=torch.float64), True),
        param(torch.randn(N, 2), True),  # never gets a gradient
        param(torch.randn(2), False),  # never gets a gradient
    ]


def assign_grads(params: list[torch.nn.Parameter], generator: torch.Generator) -> list[torch.Tensor | None]:
    """Random gradients: the last two parameters get none, the others sometimes none; some in the parameter's
    memory layout (as autograd gives), some contiguous (as assigned by hand)."""
    grads: list[torch.Tensor | None] = []
    for k, p in enumerate(params):
        if k >= len(params) - 2 or torch.rand((), generator=generator) < 0.15:
            grads.append(None)
            continue
        values = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if torch.rand((), generator=generator) < 0.5:
            values = torch.empty_like(p).copy_(values)
        grads.append(values)
    return grads


def random_agents(generator: torch.Generator, device: str) -> torch.Tensor | None:
    """None (all agents) a third of the time, else a random subset (possibly empty or all) in random order."""
    if torch.rand((), generator=generator) < 1 / 3:
        return None
    size = int(torch.randint(0, N + 1, (), generator=generator))
    agents = torch.randperm(N, generator=generator)[:size]
    if size and torch.rand((), generator=generator) < 0.3:  # an agent named twice still steps once
        agents = torch.cat([agents, agents[:1]])
    return agents.to(device)


def assert_same_state(ours: torch.optim.Optimizer, reference: torch.optim.Optimizer, params, ref_params) -> None:
    """Same parameters and states to float32 tolerance (the reference's bias corrections are float32 even for
    float64 parameters)."""
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        mine, theirs = ours.state.get(p, {}), reference.state.get(q, {})
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_agent_adam_equals_the_reference_over_random_agent_subsets(device):
    """Many steps with random subsets (and all agents), gradients that come and go, every layout and two dtypes:
    the fused optimiser moves exactly what the reference moves, to float tolerance, with the same state."""
    generator = torch.Generator().manual_seed(0)
    params = every_layout(device)
    ref_params = [type(p)(p.detach().clone(), p.requires_grad) for p in params]
    ours = AgentAdam(params, lr=3e-2, betas=(0.8, 0.99), eps=1e-6)
    reference = ReferenceAgentAdam(ref_params, lr=3e-2, betas=(0.8, 0.99), eps=1e-6)
    initial = [p.detach().clone() for p in params]
    for _ in range(60):
        agents = random_agents(generator, device)
        for p, q, grad in zip(params, ref_params, assign_grads(params, generator), strict=True):
            p.grad, q.grad = grad, None if grad is None else grad.clone()
        versions = [p._version for p in params]
        ours.step(agents=agents)
        reference.step(agents=agents)
        assert_same_state(ours, reference, params, ref_params)
        for p, version in zip(params, versions, strict=True):  # autograd and caches of generated weights see it
            assert (p._version > version) == (
                p.grad is not None and (agents is None or not is_per_agent(p) or len(agents) > 0)
            )
    assert all(torch.equal(p, old) for p, old in zip(params[-2:], initial[-2:], strict=True))
    assert all(not torch.equal(p, old) for p, old in zip(params[:-2], initial[:-2], strict=True))
    steps = ours.state[params[0]]["step"]
    assert steps.dtype == torch.float32 and steps.unique().numel() > 1  # the agents' step counts went apart


def test_agent_adam_equals_torch_adam_when_every_agent_steps():
    """Selecting all agents every step (explicitly or with None) is Adam, for a NoPS and a hypernetwork actor
    (per-agent tensors and mostly shared ones), over many steps."""
    torch.manual_seed(1)
    spec = hetero_spec()
    for arch in ("nops", "hypermarl"):
        entry = get_architecture(arch)
        model = ModelConfig(hidden_sizes=[16, 16])
        actor = GaussianActor(spec, entry, model, entry.config_cls())
        twin = GaussianActor(spec, entry, model, entry.config_cls())
        twin.load_state_dict(actor.state_dict())
        assert any(is_per_agent(p) for p in actor.parameters())
        ours = AgentAdam(actor.parameters(), lr=1e-2, eps=1e-5)
        theirs = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-5)
        everyone = torch.arange(spec.n_agents)
        for k in range(25):
            obs = torch.randn(8, spec.n_agents, max(spec.obs_dims))
            for net, opt in ((actor, ours), (twin, theirs)):
                opt.zero_grad()
                (net.net(obs).square().sum() + net.log_std(None).sum()).backward()
            ours.step(agents=everyone if k % 2 else None)
            theirs.step()
        for (name, p), q in zip(actor.named_parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p, q, msg=lambda m, where=f"{arch} {name}": f"{where}: {m}")


def test_agent_adam_continues_a_state_saved_by_the_reference():
    """A state_dict of the reference (moments in another memory layout than the parameters, as older checkpoints
    hold; agents' step counts apart) loads, and the next steps equal the reference's."""
    generator = torch.Generator().manual_seed(2)
    params = every_layout("cpu")
    ref_params = [type(p)(p.detach().clone(), p.requires_grad) for p in params]
    reference = ReferenceAgentAdam(ref_params, lr=1e-2)
    for _ in range(10):
        for q, grad in zip(ref_params, assign_grads(ref_params, generator), strict=True):
            q.grad = grad
        reference.step(agents=random_agents(generator, "cpu"))
    saved = copy.deepcopy(reference.state_dict())  # as read from a file: tensors of its own
    for state in saved["state"].values():
        state["exp_avg"], state["exp_avg_sq"] = state["exp_avg"].contiguous(), state["exp_avg_sq"].contiguous()
    assert saved["state"][0]["exp_avg"].stride() != ref_params[0].stride()
    with torch.no_grad():
        for p, q in zip(params, ref_params, strict=True):
            p.copy_(q)
    ours = AgentAdam(params, lr=1e-2)
    ours.load_state_dict(saved)
    assert ours.state_dict()["state"].keys() == saved["state"].keys()
    dense = [p for k, p in enumerate(params[:-2]) if k != 4]  # all with a state but the strided slice
    assert all(ours.state[p]["exp_avg"].stride() == p.stride() for p in dense)  # the fused kernel's layout
    for _ in range(10):
        agents = None if torch.rand((), generator=generator) < 0.5 else random_agents(generator, "cpu")
        for p, q, grad in zip(params, ref_params, assign_grads(params, generator), strict=True):
            p.grad, q.grad = grad, None if grad is None else grad.clone()
        ours.step(agents=agents)
        reference.step(agents=agents)
        assert_same_state(ours, reference, params, ref_params)


@pytest.mark.parametrize("device", DEVICES)
def test_agentwise_norms_and_clipping_equal_the_reference(device):
    """Norms per agent over every per-agent tensor (any layout) and over shared ones; clipping scales each agent's
    rows and the shared gradients by their own factor, leaves unclipped groups as they were."""
    generator = torch.Generator().manual_seed(3)
    for max_norm in (0.5, 3.0, 1e6):
        params = every_layout(device)
        for p, grad in zip(params, assign_grads(params, generator), strict=True):
            if grad is not None and is_per_agent(p):  # agents' norms far apart: some clipped, some not
                grad.mul_(torch.logspace(-2, 1, N, dtype=grad.dtype).view(-1, *[1] * (p.dim() - 1)).to(device))
            p.grad = grad
        before = [None if p.grad is None else p.grad.clone() for p in params]
        expected_agents, expected_shared = reference_norms(params, N)
        norms = grad_norms_agentwise(iter(params), N)
        clipped = clip_grad_norm_agentwise(params, max_norm, N)
        for agents, shared in (norms, clipped):
            assert agents.shape == (N,) and shared.shape == () and agents.device.type == device
            torch.testing.assert_close(agents.double().cpu(), expected_agents, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(shared.double().cpu(), expected_shared, rtol=1e-5, atol=1e-6)
        agent_scale = (max_norm / (expected_agents + 1e-6)).clamp(max=1.0)
        shared_scale = (max_norm / (expected_shared + 1e-6)).clamp(max=1.0)
        for p, old in zip(params, before, strict=True):
            if old is None:
                assert p.grad is None
                continue
            scale = agent_scale.view(-1, *[1] * (p.dim() - 1)) if is_per_agent(p) else shared_scale
            torch.testing.assert_close(p.grad, (old.double().cpu() * scale).to(device, p.dtype))
        if max_norm == 1e6:
            assert all(old is None or torch.equal(p.grad, old) for p, old in zip(params, before, strict=True))
        else:
            agents_after, shared_after = reference_norms(params, N)
            assert agents_after.max() <= max_norm * (1 + 1e-5) and shared_after <= max_norm * (1 + 1e-5)


def test_agentwise_norms_without_per_agent_or_shared_gradients():
    shared = torch.nn.Parameter(torch.zeros(3))
    shared.grad = torch.tensor([0.0, 3.0, 4.0])
    per_agent = mark_per_agent(torch.nn.Parameter(torch.zeros(N, 2)))
    agents, total = grad_norms_agentwise([shared, per_agent], N)
    assert torch.equal(agents, torch.zeros(N)) and total.item() == pytest.approx(5.0)
    per_agent.grad, shared.grad = torch.ones(N, 2), None
    agents, total = clip_grad_norm_agentwise([shared, per_agent], 1.0, N)
    torch.testing.assert_close(agents, torch.full((N,), math.sqrt(2)))
    assert total.item() == 0.0
    torch.testing.assert_close(per_agent.grad, torch.full((N, 2), 1 / math.sqrt(2)), atol=1e-5, rtol=0)


class CheckedAgentAdam(AgentAdam):
    """`AgentAdam` that replays each of its steps with the reference, on copies of the parameters, gradients and
    state it started from, and records how far apart the two results are."""

    record: dict[str, float] = {}

    @torch.no_grad()
    def step(self, agents: torch.Tensor | None = None) -> None:
        params = [p for group in self.param_groups for p in group["params"]]
        copies = [type(p)(p.detach().clone(), p.requires_grad) for p in params]
        for p, twin in zip(params, copies, strict=True):
            twin.grad = None if p.grad is None else p.grad.clone()
        reference = ReferenceAgentAdam(copies, **{k: v for k, v in self.defaults.items() if k != "differentiable"})
        ReferenceAgentAdam.load_state_dict(reference, copy.deepcopy(self.state_dict()))
        super().step(agents)
        reference.step(agents)
        gap = max((p - twin).abs().max().item() for p, twin in zip(params, copies, strict=True))
        kind = "all" if agents is None else "subset"
        self.record[kind] = self.record.get(kind, 0) + 1
        self.record["gap"] = max(self.record.get("gap", 0.0), gap)


def with_steps(args: list[str], steps: int) -> list[str]:
    args = list(args)
    args[args.index("--num_env_steps") + 1] = str(steps)
    return args


def with_arch(args: list[str], arch: str) -> list[str]:
    args = list(args)
    args[args.index("--arch") + 1] = arch
    return args


CHECKED_RUNS = {  # sequential learners (each actor step moves one agent's rows), a hypernetwork's shared tensors
    "happo-hypermarl": [*with_arch(MATRIX, "hypermarl"), "--num_env_steps", "200", "--episode_length", "10"],
    "hasac-nops": ["--algo", "hasac", "--arch", "nops", *with_steps(OFF_POLICY_TINY, 120)],
}


@pytest.mark.parametrize("run", sorted(CHECKED_RUNS))
def test_every_step_of_a_training_run_equals_the_reference(run, tmp_path, monkeypatch):
    """Through the CLI, every optimiser step of a run (actors: one agent at a time; critics: all agents) equals
    the reference's step from the same parameters, gradients and state. (Whole runs drift apart from float
    rounding, which Adam amplifies where gradients are near zero.)"""
    CheckedAgentAdam.record = {}
    monkeypatch.setattr(ppo_base, "AgentAdam", CheckedAgentAdam)
    monkeypatch.setattr(off_policy_base, "AgentAdam", CheckedAgentAdam)
    run_train(tmp_path, *CHECKED_RUNS[run])
    record = CheckedAgentAdam.record
    assert record["subset"] >= 10 and record["gap"] < 1e-5, record
    assert run.startswith("hasac") or record["all"] >= 10, record  # HAPPO's critic: all agents at once


def optimiser_format(state_dict: dict) -> tuple:
    """What a checkpoint's optimiser state is made of: group keys, and per parameter its state's keys, shapes
    and dtypes."""
    groups = [sorted(group) for group in state_dict["param_groups"]]
    states = {
        index: {key: (tuple(value.shape), value.dtype) for key, value in state.items()}
        for index, state in state_dict["state"].items()
    }
    return groups, states


def test_resumes_a_checkpoint_written_by_the_reference(tmp_path, monkeypatch):
    """A HAPPO run whose checkpoint holds the reference's optimiser states resumes with the fused optimiser,
    which continues the agents' step counts and writes checkpoints of the same format."""
    with monkeypatch.context() as patch:
        patch.setattr(ppo_base, "AgentAdam", ReferenceAgentAdam)
        run_dir = run_train(tmp_path, *MATRIX, "--num_env_steps", "200", "--episode_length", "10")
    saved = load_checkpoint(run_dir)["learner"]
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "400"]) == 0
    resumed = load_checkpoint(run_dir)["learner"]
    assert int(read_progress(run_dir)[-1]["env_steps"]) == 400
    for key in ("actor_optimizer", "critic_optimizer"):
        assert optimiser_format(resumed[key]) == optimiser_format(saved[key])
        old, new = saved[key]["state"], resumed[key]["state"]
        assert all((new[k]["step"] == 2 * state["step"]).all() for k, state in old.items())  # 2 updates each
