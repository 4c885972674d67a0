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


# The seed paper's table 11 (IPPO, Navigation, 4 and 8 agents): (clip, lr) per goal setup and architecture, and
# table 10's SND_des for DiCo; 2 agents from table 8 (clip 0.2, lr 5e-5) and table 10 (SND_des 1.2 / 0).
NAVIGATION_TABLE_11 = {
    (2, "different"): {"nops": (0.2, 5e-5), "fups": (0.2, 5e-5), "hypermarl": (0.2, 5e-5), "dico": (0.2, 5e-5, 1.2)},
    (2, "same"): {"nops": (0.2, 5e-5), "fups": (0.2, 5e-5), "hypermarl": (0.2, 5e-5), "dico": (0.2, 5e-5, 0.0)},
    (4, "same"): {"nops": (0.1, 5e-5), "fups": (0.2, 5e-5), "hypermarl": (0.1, 5e-5), "dico": (0.2, 5e-5, 0.0)},
    (4, "different"): {"nops": (0.2, 5e-5), "fups": (0.2, 5e-5), "hypermarl": (0.1, 5e-5), "dico": (0.1, 2.5e-4, -1.0)},
    (4, "mixed"): {"nops": (0.1, 5e-5), "fups": (0.2, 5e-5), "hypermarl": (0.1, 5e-5), "dico": (0.1, 5e-4, -1.0)},
    (8, "same"): {"nops": (0.1, 5e-5), "fups": (0.2, 5e-5), "hypermarl": (0.2, 5e-5), "dico": (0.2, 5e-5, 0.0)},
    (8, "different"): {"nops": (0.2, 5e-5), "fups": (0.1, 5e-5), "hypermarl": (0.1, 5e-5), "dico": (0.1, 2.5e-4, -1.0)},
    (8, "mixed"): {"nops": (0.1, 5e-5), "fups": (0.1, 5e-5), "hypermarl": (0.1, 5e-5), "dico": (0.1, 2.5e-4, -1.0)},
}
GOAL_FOLDER = {"different": "", "same": "-same-goal", "mixed": "-mixed-goals"}


NAVIGATION_CELLS = [(n, goals, arch) for (n, goals), cells in NAVIGATION_TABLE_11.items() for arch in cells]


@pytest.mark.parametrize(("n_agents", "goals", "arch"), NAVIGATION_CELLS)
def test_navigation_tuned_configs_follow_tables_10_and_11(n_agents, goals, arch):
    """`--agents_with_same_goal` 1, n/2 or n picks the tuned folder of that goal setup (the paper's table 12), whose
    values are the paper's for the architecture; the env it builds has that setup."""
    sharing = {"different": 1, "same": n_agents, "mixed": n_agents // 2}[goals]
    overrides = {"scenario": "navigation", "n_agents": str(n_agents), "agents_with_same_goal": str(sharing)}
    cfg, sources = build_config("ippo", arch, "vmas", overrides)
    assert f"tuned_configs/vmas/navigation-{n_agents}{GOAL_FOLDER[goals]}/ippo" in sources[-1]
    assert cfg.env.agents_with_same_goal == sharing and cfg.env.n_agents == n_agents
    clip, lr, *snd = NAVIGATION_TABLE_11[n_agents, goals][arch]
    assert cfg.algo.clip_param == pytest.approx(clip)
    assert cfg.algo.lr == pytest.approx(lr) and cfg.algo.critic_lr == pytest.approx(lr)
    assert cfg.run.n_rollout_threads == 600 and cfg.model.hidden_sizes == [256, 256] and cfg.algo.gamma == 0.9
    if arch == "dico":
        assert cfg.arch.target_diversity == snd[0]
    if arch == "hypermarl":
        assert cfg.arch.embedding_dim == 4


@pytest.mark.parametrize(
    ("n_agents", "sharing", "split", "name"),
    [
        (4, 1, False, "navigation-4"),
        (4, 4, False, "navigation-4-same-goal"),
        (4, 2, False, "navigation-4-mixed-goals"),
        (4, 2, True, "navigation-4-split-goals"),
        (8, 3, False, "navigation-8-3-share-a-goal"),
        (2, 2, False, "navigation-2-same-goal"),
    ],
)
def test_navigation_scenario_names_its_goal_setup(n_agents, sharing, split, name):
    """Runs of different goal setups never share a run folder (or a plot's curve)."""
    config = get_environment("vmas").config_cls(
        scenario="navigation", n_agents=n_agents, agents_with_same_goal=sharing, split_goals=split
    )
    config.validate()
    assert config.scenario_name() == name
