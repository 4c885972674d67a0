"""Per-agent parameters stay per-agent in copies: `copy.deepcopy` (target networks, snapshots) and pickling."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from harl.experiment import build_config
from harl.models.agent_mlp import is_per_agent
from harl.models.policies import SAMPLE
from harl.optim import AgentAdam
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner

load_extensions()
N_AGENTS = 4


def matrix_learner(arch: str):
    """A MAPPO learner for the 4-agent matrix game, built as a training run builds it, and the env."""
    cfg, _ = build_config("mappo", arch, "matrix", {"n_agents": str(N_AGENTS), "hidden_sizes": "8"})
    env = get_environment("matrix").make(cfg.env, n_envs=5, seed=0, device="cpu")
    return build_learner(cfg, env.spec, torch.device("cpu")), env


def per_agent_names(module: torch.nn.Module) -> list[str]:
    return [name for name, p in module.named_parameters() if is_per_agent(p)]


@pytest.mark.parametrize("arch", ["nops", "hypermarl", "hypermarl_linear"])
def test_agent_adam_on_a_deep_copied_actor_moves_only_the_selected_agent(arch):
    torch.manual_seed(0)
    learner, env = matrix_learner(arch)
    original = learner.actor
    copied = copy.deepcopy(original)
    assert per_agent_names(original) and per_agent_names(copied) == per_agent_names(original)
    before = {name: p.detach().clone() for name, p in copied.named_parameters()}
    optimizer = AgentAdam(copied.parameters(), lr=0.1)
    obs = env.reset(0).obs  # (E, N, 1)
    actions, _ = copied.act(obs, None, SAMPLE)
    log_probs, entropy = copied.log_probs_entropy(obs, actions)  # (E, N) each: every agent has a gradient
    (-(log_probs + entropy).sum()).backward()
    k = 2
    optimizer.step(agents=torch.tensor([k]))
    others = [i for i in range(N_AGENTS) if i != k]
    moved = 0
    for name, p in copied.named_parameters():
        if not is_per_agent(p) or p.grad is None:
            continue
        assert torch.equal(p[others], before[name][others]), f"{name}: other agents' rows moved"
        assert not torch.equal(p[k], before[name][k]), f"{name}: agent {k}'s rows did not move"
        moved += 1
    assert moved > 0
    for name, p in original.named_parameters():  # the copy trains alone
        assert torch.equal(p, before[name]), name


def test_pickled_and_target_copies_keep_their_tags():
    learner, _ = matrix_learner("nops")
    restored = pickle.loads(pickle.dumps(learner.actor))
    assert per_agent_names(restored) == per_agent_names(learner.actor)
    for (name, p), q in zip(learner.actor.named_parameters(), restored.parameters(), strict=True):
        assert torch.equal(p, q) and p.requires_grad == q.requires_grad, name
    frozen = copy.deepcopy(learner.actor).requires_grad_(False)  # as off-policy learners make target actors
    assert per_agent_names(frozen) == per_agent_names(learner.actor)
