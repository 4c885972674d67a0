"""`--arch dico` (Diversity Control): the rescaled team's SND is the target, 0 gives identical agents, every
learner trains it on VMAS Navigation through the CLI, and a run saves, loads and continues."""

from __future__ import annotations

import pytest
import torch

from harl.cli import train_main
from harl.config import ModelConfig
from harl.errors import ConfigError
from harl.metrics import snd_of_actor
from harl.models.dico import DiCoConfig, DiCoNet
from harl.models.net_spec import NetSpec
from harl.registry import ALGORITHMS, get_architecture, load_extensions
from harl.research.diversity import collect_observations, load_policy
from harl.utils.checkpoint import load_checkpoint

from .conftest import read_progress, run_train
from .test_seeds import assert_same_run, seed_folders
from .test_smoke import ALGO_TINY

load_extensions()
CPU = torch.device("cpu")
MPE_CONTINUOUS = ["--env", "mpe", "--scenario", "simple_spread", "--continuous_actions", "true", "--max_cycles", "10"]
MPE_CONTINUOUS += ["--n_rollout_threads", "2", "--n_workers", "1"]
OFF_POLICY_SHORT = ["--warmup_steps", "20", "--train_interval", "5", "--batch_size", "8", "--buffer_size", "100"]
NAVIGATION = [
    "--env",
    "vmas",
    "--scenario",
    "navigation",
    "--n_agents",
    "3",
    "--max_steps",
    "10",
    "--n_rollout_threads",
    "4",
    "--eval_episodes",
    "4",
    "--n_eval_rollout_threads",
    "4",
    "--hidden_sizes",
    "16,16",
]
MATRIX = ["--env", "matrix", "--n_agents", "3", "--n_rollout_threads", "4", "--eval_episodes", "2"]
MATRIX += ["--n_eval_rollout_threads", "2"]
CONTINUOUS = sorted(name for name, entry in ALGORITHMS.items() if entry.continuous)


def needs_vmas() -> None:
    pytest.importorskip("vmas")


def tiny(algo: str, steps: int | None = None) -> list[str]:
    fields = set(ALGORITHMS[algo].config_cls.__dataclass_fields__)
    args = [arg for key, value in ALGO_TINY.items() if key in fields for arg in (f"--{key}", value)]
    default = 40 if ALGORITHMS[algo].on_policy else 60
    return ["--algo", algo, "--arch", "dico", *args, "--num_env_steps", str(steps or default)]


def dico_net(n_agents: int, target: float, out_dim: int = 2, in_dim: int = 5) -> DiCoNet:
    sizes = {"in_dim": in_dim, "out_dim": out_dim, "hidden_sizes": [16], "out_gain": 0.01}
    spec = NetSpec.full_input(n_agents=n_agents, **sizes, role="actor", model=ModelConfig())
    net = get_architecture("dico").build_net(spec=spec, arch_cfg=DiCoConfig(target_diversity=target))
    assert isinstance(net, DiCoNet)
    return net


def team_snd(net: torch.nn.Module, obs: torch.Tensor) -> float:
    """Mean L2 distance between every pair of agents' outputs, every agent reading every observation (B, N, O)."""
    n = obs.shape[1]
    out = net(obs.reshape(-1, 1, obs.shape[-1]).expand(-1, n, -1))  # (B·N, N, D)
    i, j = torch.triu_indices(n, n, offset=1)
    return float((out[:, i] - out[:, j]).norm(dim=-1).mean())


# ---------------------------------------------------------------------------------------------- the network


@pytest.mark.parametrize("n_agents", [2, 4, 8])
@pytest.mark.parametrize("target", [0.3, 1.2, 4.8])
def test_team_snd_is_the_target_on_fresh_batches(n_agents, target):
    torch.manual_seed(n_agents)
    net = dico_net(n_agents, target)
    with torch.no_grad():
        for batch in (1, 7, 300):  # fresh observations each time, of any batch size
            assert team_snd(net, torch.randn(batch, n_agents, 5)) == pytest.approx(target, rel=0.05)


@torch.no_grad()
def test_target_zero_is_the_shared_network_and_minus_one_the_unscaled_sum():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5)
    homogeneous = dico_net(3, 0.0)
    out = homogeneous(x[:, :1].expand(-1, 3, -1))  # one observation seen by every agent
    torch.testing.assert_close(out, out[:, :1].expand_as(out))
    assert team_snd(homogeneous, x) == 0.0
    unconstrained = dico_net(3, -1.0)
    torch.testing.assert_close(unconstrained(x), unconstrained.shared(x) + unconstrained.hetero(x))


def test_one_agents_turn_moves_only_its_own_heterogeneous_rows():
    """Sequential (HA) updates: the SND measured on the batch carries no gradient into other agents' networks."""
    net = dico_net(4, 1.2)
    net(torch.randn(16, 1, 5), torch.tensor([2])).square().sum().backward()
    for weight in net.hetero.params.weights:
        assert weight.grad is not None and bool(weight.grad[2].abs().sum() > 0)
        assert bool((weight.grad[[0, 1, 3]] == 0).all())
    assert all(w.grad is not None for w in net.shared.params.weights)


@pytest.mark.parametrize(
    ("value", "ok"), [(-1.0, True), (0.0, True), (2.4, True), (-0.5, False), (-2.0, False), (float("nan"), False)]
)
def test_target_diversity_bounds(value, ok):
    cfg = DiCoConfig(target_diversity=value)
    if ok:
        cfg.validate()
    else:
        with pytest.raises(ConfigError, match=r"^arch\.target_diversity must "):
            cfg.validate()


@pytest.mark.parametrize(
    ("algo", "env"),
    [("ippo", ["--env", "matrix", "--n_agents", "3", "--n_rollout_threads", "3", "--episode_length", "10"])]
    + [("happo", ["--env", "matrix", "--n_agents", "3", "--n_rollout_threads", "3", "--episode_length", "10"])]
    + [("mappo", MPE_CONTINUOUS + ["--episode_length", "10"]), ("hasac", MPE_CONTINUOUS + OFF_POLICY_SHORT)],
)
def test_a_seed_of_a_batched_dico_run_is_its_solo_run(algo, env, tmp_path):
    """`--seeds 2`: each seed's SND is measured on its own agents and observations and scales only them; seed 2 of
    the batch logs what its solo run logs (the measured SND and scale included) and ends with its parameters.
    Discrete (logits) on the matrix game, Gaussian means and SAC's outputs on MPE (envs seeded one by one, one in a
    worker for MAPPO)."""
    common = ["--algo", algo, "--arch", "dico", *env, "--hidden_sizes", "16,16", "--critic_hidden_sizes", "16"]
    common += ["--eval_interval", "0", "--grad_stats", "true", "--num_env_steps", "60"]
    assert train_main([*common, "--seed", "1", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "2", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched")[2], seed_folders(tmp_path / "solo")[2]
    assert read_progress(solo)[-1]["diversity/dico_scale"]  # the scale was logged
    assert_same_run(batched, solo)


# ---------------------------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("algo", CONTINUOUS)
def test_every_learner_trains_dico_on_navigation(algo, tmp_path):
    """VMAS Navigation (continuous, the paper's task); then, on fresh observations from rollouts of the trained
    policy, the team's SND is the target: of the policies (2-Wasserstein) for Gaussian actors, of the network
    outputs (means, pre-tanh actions, or SAC's means and log-stds) for every actor."""
    needs_vmas()
    run_dir = run_train(tmp_path, *tiny(algo), *NAVIGATION, "--target_diversity", "0.7")
    rows = read_progress(run_dir)
    assert rows[-1]["eval/episode_return"] != ""
    assert any(row.get("diversity/dico_scale") not in ("", None) for row in rows)
    policy = load_policy(str(run_dir), CPU)
    obs, _ = collect_observations(policy, 64, seed=11, device=CPU)
    actor = policy.learner.actor
    with torch.no_grad():
        assert team_snd(actor.net, obs) == pytest.approx(0.7, rel=0.05)
    if ALGORITHMS[algo].actor_kind["continuous"] == "gaussian":
        assert snd_of_actor(actor, obs, distance="wasserstein").value == pytest.approx(0.7, rel=0.05)


@pytest.mark.parametrize(("algo", "env"), [("ippo", NAVIGATION), ("happo", MATRIX), ("maddpg", MATRIX)])
def test_target_zero_trains_identical_agents(algo, env, tmp_path):
    if env is NAVIGATION:
        needs_vmas()
    run_dir = run_train(tmp_path, *tiny(algo), *env, "--target_diversity", "0")
    policy = load_policy(str(run_dir), CPU)
    obs, avail = collect_observations(policy, 32, seed=3, device=CPU)
    n = obs.shape[1]
    shared_obs = obs.reshape(-1, 1, obs.shape[-1]).expand(-1, n, -1)  # every agent on every observation
    with torch.no_grad():
        out = policy.learner.actor.net(shared_obs)
    assert torch.equal(out, out[:, :1].expand_as(out))
    if ALGORITHMS[algo].on_policy:
        assert snd_of_actor(policy.learner.actor, obs, avail).value == 0.0


def test_save_load_continue(tmp_path):
    """Resumed from its step-40 checkpoint, a run continues from the saved weights, optimiser state and options
    (its target diversity) to step 80."""
    needs_vmas()
    args = [*tiny("ippo", 40), *NAVIGATION, "--target_diversity", "0.5", "--save_interval", "40"]
    run_dir = run_train(tmp_path, *args)
    saved = load_checkpoint(run_dir)
    assert saved["runner"]["env_steps"] == 40 and saved["config"]["arch"] == {"target_diversity": 0.5}
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "80"]) == 0
    resumed = load_checkpoint(run_dir)
    assert resumed["runner"]["env_steps"] == 80 and resumed["learner"]["actor_optimizer"]["state"]
    steps = [int(row["env_steps"]) for row in read_progress(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == 80
    moved = [k for k, v in resumed["learner"]["actor"].items() if not torch.equal(saved["learner"]["actor"][k], v)]
    assert any(k.startswith("net.hetero.") for k in moved) and any(k.startswith("net.shared.") for k in moved)
    policy = load_policy(str(run_dir), CPU)
    obs, _ = collect_observations(policy, 32, seed=5, device=CPU)
    with torch.no_grad():
        assert team_snd(policy.learner.actor.net, obs) == pytest.approx(0.5, rel=0.05)
