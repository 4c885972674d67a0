"""IPPO: every agent's critic reads its own observation only, whatever builds it."""

from __future__ import annotations

import pytest
import torch

from harl.experiment import build_config
from harl.registry import ARCHITECTURES, get_environment, load_extensions
from harl.runners.base import build_learner

load_extensions()


def _learner(algo: str, arch: str, recurrent: bool):
    overrides = {"hidden_sizes": "16,16", "recurrent": str(recurrent).lower(), "agent_conf": "6x1"}
    cfg, _ = build_config(algo, arch, "mamujoco", overrides, use_tuned=False)
    env = get_environment("mamujoco").make(cfg.env, n_envs=1, seed=0, device=torch.device("cpu"))
    spec = env.spec
    env.close()
    return build_learner(cfg, spec, torch.device("cpu")), spec


def _values(learner, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    hidden = learner.initial_hidden(obs.shape[0])
    return learner.values(learner.critic.inputs(obs, state), hidden)[0]  # (B, N)


@pytest.mark.parametrize("recurrent", [False, True], ids=["feed-forward", "recurrent"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_ippo_critic_ignores_other_agents_observations(arch, recurrent):
    torch.manual_seed(0)
    learner, spec = _learner("ippo", arch, recurrent)
    assert not learner.critic.centralised
    mask = torch.as_tensor(spec.obs_mask, dtype=torch.float32)  # (N, O): heterogeneous agents, padded
    obs, state = torch.randn(5, spec.n_agents, spec.obs_dim_max) * mask, torch.randn(5, spec.state_dim)
    before = _values(learner, obs, state)
    for agent in range(spec.n_agents):
        changed = obs.clone()
        changed[:, agent] = torch.randn_like(changed[:, agent]) * mask[agent]
        after = _values(learner, changed, torch.randn_like(state))  # a new global state too
        others = [i for i in range(spec.n_agents) if i != agent]
        torch.testing.assert_close(after[:, others], before[:, others])
        assert not torch.allclose(after[:, agent], before[:, agent])


def test_mappo_critic_reads_the_state_and_ippo_does_not():
    mappo, spec = _learner("mappo", "nops", False)
    ippo, _ = _learner("ippo", "nops", False)
    assert mappo.critic.centralised and not ippo.critic.centralised
    obs, state = torch.randn(4, spec.n_agents, spec.obs_dim_max), torch.randn(4, spec.state_dim)
    assert not torch.allclose(_values(mappo, obs, state), _values(mappo, obs, torch.randn_like(state)))
    torch.testing.assert_close(_values(ippo, obs, state), _values(ippo, obs, torch.randn_like(state)))


# (env, scenario override, tuned folder, arch, lr, clip, embedding or None): the paper's appendix B tables 5-14
IPPO_TUNED = [
    ("vmas", {"scenario": "dispersion", "n_agents": "4"}, "vmas/dispersion-4", "nops", 5e-4, 0.2, None),
    ("vmas", {"scenario": "dispersion", "n_agents": "4"}, "vmas/dispersion-4", "hypermarl", 5e-4, 0.2, 4),
    ("vmas", {"scenario": "navigation", "n_agents": "2"}, "vmas/navigation-2", "hypermarl", 5e-5, 0.2, 4),
    ("vmas", {"scenario": "navigation", "n_agents": "4"}, "vmas/navigation-4", "fups_id", 5e-5, 0.2, None),
    ("vmas", {"scenario": "navigation", "n_agents": "8"}, "vmas/navigation-8", "hypermarl", 5e-5, 0.1, 4),
    ("smacv2", {"scenario": "smacv2_10_units"}, "smacv2/smacv2_10_units", "nops", 0.001, 0.05, None),
    ("smacv2", {"scenario": "smacv2_10_units"}, "smacv2/smacv2_10_units", "hypermarl", 0.005, 0.05, 4),
    ("smacv2", {"scenario": "3s5z"}, "smacv2/3s5z", "hypermarl", 0.004, 0.05, 64),
]


@pytest.mark.parametrize(("env", "overrides", "folder", "arch", "lr", "clip", "embedding"), IPPO_TUNED)
def test_ippo_tuned_configs_resolve(env, overrides, folder, arch, lr, clip, embedding):
    cfg, sources = build_config("ippo", arch, env, overrides)
    name = "ippo-hypermarl.yaml" if arch == "hypermarl" else "ippo.yaml"
    assert sources[-1].endswith(f"tuned_configs/{folder}/{name}")
    assert cfg.algo.lr == pytest.approx(lr) and cfg.algo.critic_lr == pytest.approx(lr)
    assert cfg.algo.clip_param == pytest.approx(clip)
    if embedding is not None:
        assert cfg.arch.embedding_dim == embedding
