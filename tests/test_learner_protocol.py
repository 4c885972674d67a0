"""Every registered learner over every architecture satisfies the protocol a runner drives it through."""

from __future__ import annotations

import pytest
import torch

from harl.algos.base import ActOutput, CollectionSchedule, OffPolicyLearner, OnPolicyLearner
from harl.buffers.replay import ReplayBuffer
from harl.buffers.rollout import RolloutBuffer
from harl.experiment import build_config
from harl.registry import ALGORITHMS, ARCHITECTURES, get_environment, load_extensions
from harl.runners.base import build_learner

load_extensions()

PAIRS = [(algo, arch) for algo in sorted(ALGORITHMS) for arch in sorted(ARCHITECTURES)]


def _learner_on(algo: str, arch: str, env_name: str, overrides: dict[str, str]):
    cfg, _ = build_config(algo, arch, env_name, {"hidden_sizes": "8", **overrides}, use_tuned=False)
    env = get_environment(env_name).make(cfg.env, n_envs=3, seed=0, device=torch.device("cpu"))
    return build_learner(cfg, env.spec, torch.device("cpu")), env


@pytest.mark.parametrize(("algo", "arch"), PAIRS)
def test_learner_protocol(algo, arch):
    entry = ALGORITHMS[algo]
    env_name = "matrix" if entry.discrete else "mamujoco"
    learner, env = _learner_on(algo, arch, env_name, {"episode_limit": "5"} if env_name == "mamujoco" else {})
    try:
        kind = OnPolicyLearner if entry.on_policy else OffPolicyLearner
        assert isinstance(learner, kind)
        assert isinstance(learner.schedule, CollectionSchedule) and learner.schedule.steps_per_iteration > 0
        buffer = learner.make_buffer(3)
        assert isinstance(buffer, RolloutBuffer if entry.on_policy else ReplayBuffer)
        out = env.reset(0)
        hidden = learner.initial_hidden(3)
        for deterministic in (False, True):
            action = learner.act(out.obs, out.state, out.avail_actions, deterministic=deterministic, hidden=hidden)
            assert isinstance(action, ActOutput)
            assert action.env_actions.shape[:2] == action.actions.shape[:2] == (3, env.spec.n_agents)
            assert action.log_probs is None or action.log_probs.shape == (3, env.spec.n_agents)
            env.step(action.env_actions)
        if not entry.on_policy:
            warmup = learner.random_act(3)
            assert warmup.env_actions.shape == action.env_actions.shape
        networks = learner.networks()
        assert set(networks) == {"actor", "critic"}
        assert all(any(p.requires_grad for p in net.parameters()) for net in networks.values())
        diagnostics = learner.diagnostics()
        assert all(isinstance(k, str) and "{" not in k and isinstance(v, float) for k, v in diagnostics.items())
        if arch in ("hypermarl", "hypermarl_coupled") and env.spec.n_agents > 1:  # learned embeddings
            assert "diversity/embedding_cosine" in diagnostics
        distribution = learner.actor.distribution(out.obs, out.avail_actions)
        assert (distribution is None) == (entry.actor_kind.get(env.spec.action_type) == "deterministic")
    finally:
        env.close()
