"""Off-policy learners (HASAC, MASAC, MADDPG, MATD3, HADDPG, HATD3): sequential vs simultaneous update semantics,
heterogeneous action sizes and bounds, resume with the buffer and the tuned configs. Their tiny runs with every
architecture (and the signals those log) are in test_smoke.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import harl.models.off_policy as off_policy_models
from harl.buffers.replay import ReplayBuffer
from harl.cli import train_main
from harl.config import TUNED_CONFIG_DIR, apply_overrides
from harl.experiment import build_config, default_config
from harl.models.off_policy import JointQCritic, SquashedGaussianActor
from harl.registry import ALGORITHMS, ARCHITECTURES, get_architecture, load_extensions
from harl.spec import EnvSpec
from harl.utils.checkpoint import load_checkpoint

from .conftest import read_progress, run_train

load_extensions()

# The actor-critic off-policy learners (continuous and discrete; HAD3QN, discrete only, has tests/test_had3qn.py).
OFF_POLICY = sorted(name for name, entry in ALGORITHMS.items() if not entry.on_policy and entry.continuous)
TINY = [
    "--env",
    "mamujoco",
    "--num_env_steps",
    "400",
    "--n_rollout_threads",
    "2",
    "--warmup_steps",
    "100",
    "--batch_size",
    "32",
    "--buffer_size",
    "2000",
    "--n_step",
    "5",
    "--hidden_sizes",
    "16,16",
    "--episode_limit",
    "50",
    "--eval_episodes",
    "1",
    "--n_eval_rollout_threads",
    "1",
    "--n_workers",
    "0",
]


def test_the_six_off_policy_learners_are_registered():
    assert OFF_POLICY == ["haddpg", "hasac", "hatd3", "maddpg", "masac", "matd3"]
    assert {name for name in OFF_POLICY if ALGORITHMS[name].sequential} == {"haddpg", "hasac", "hatd3"}


# ---------------------------------------------------------------------------- update semantics


def toy_spec(act_dims=(2, 2, 2), low=None, high=None, discrete: bool = False) -> EnvSpec:
    """Agents with observation size 4 and a state of size 5: continuous actions in [low, high] (default [-1, 1]),
    or `discrete` ones (act_dims choices each, with available-action masks)."""
    n, a = len(act_dims), max(act_dims)
    default_low = np.zeros((n, a), np.float32) if discrete else -np.ones((n, a), np.float32)
    return EnvSpec(
        agent_ids=tuple(f"agent_{i}" for i in range(n)),
        obs_dims=(4,) * n,
        state_dim=5,
        action_type="discrete" if discrete else "continuous",
        act_dims=tuple(act_dims),
        act_low=default_low if low is None else low,
        act_high=np.ones((n, a), np.float32) if high is None else high,
        has_avail_actions=discrete,
    )


def toy_learner(algo: str, spec: EnvSpec, arch: str = "nops", **overrides):
    cfg = default_config(algo, arch, "mamujoco")
    apply_overrides(
        cfg,
        {
            "batch_size": 16,
            "n_step": 3,
            "hidden_sizes": [8],
            "lr": 0.05,
            **({"policy_freq": 1} if "td3" in algo else {}),
            **overrides,
        },
    )
    learner = ALGORITHMS[algo].learner_cls(spec, cfg, get_architecture(arch), torch.device("cpu"))
    buffer = ReplayBuffer(spec, 200, 2, 3, 0.99, torch.device("cpu"))
    for _ in range(20):
        e, n = 2, spec.n_agents
        buffer.insert(
            torch.randn(e, n, 4),
            torch.randn(e, 5),
            learner.random_act(e).actions,
            torch.randn(e, n),
            torch.randn(e, n, 4),
            torch.randn(e, 5),
            torch.zeros(e, dtype=torch.bool),
            torch.zeros(e, dtype=torch.bool),
            *([torch.rand(e, n, spec.act_dim_max) < 0.7] * 2 if spec.discrete else []),  # avail, next_avail
        )
    batch = buffer.sample(16, learner.rng)
    buffer.sample = lambda *args: batch  # every update sees this batch
    return learner, buffer, batch


def record_actor_phase_inputs(learner):
    """Record the joint actions the critic sees after the critic update (i.e. in the actor update), where
    the actors' losses read it through `min_q`; its fast frozen-critic path stays in use."""
    calls = []
    min_q = learner.critic.min_q

    def recording(state, actions, *args, **kwargs):
        if not next(learner.critic.parameters()).requires_grad:  # frozen: the actor update
            calls.append(actions.detach().clone())
        return min_q(state, actions, *args, **kwargs)

    learner.critic.min_q = recording
    return calls


@pytest.mark.parametrize("algo", ["haddpg", "hatd3"])
def test_sequential_update_trains_each_agent_against_its_predecessors_updated_policies(algo):
    torch.manual_seed(0)
    learner, buffer, batch = toy_learner(algo, toy_spec())
    with torch.no_grad():
        before = learner.actor(batch.obs)  # (B, N, A)
    calls = record_actor_phase_inputs(learner)
    learner.update(buffer)
    order = [group[0] for group in learner.last_order]
    assert sorted(order) == [0, 1, 2] and all(len(group) == 1 for group in learner.last_order)
    with torch.no_grad():
        after = learner.actor(batch.obs)
    assert len(calls) == 3  # one critic evaluation per agent's step
    for position, (agent, joint) in enumerate(zip(order, calls, strict=True)):
        for earlier in order[:position]:  # already updated: acting with its new policy
            torch.testing.assert_close(joint[:, earlier], after[:, earlier])
            assert not torch.allclose(joint[:, earlier], before[:, earlier])
        for later in order[position + 1 :]:  # not updated yet: its current policy
            torch.testing.assert_close(joint[:, later], before[:, later])
        torch.testing.assert_close(joint[:, agent], before[:, agent])  # its own action before its step
    orders = set()
    for _ in range(12):
        learner.update(buffer)
        orders.add(tuple(group[0] for group in learner.last_order))
    assert len(orders) > 1  # a fresh random order every update


@pytest.mark.parametrize("algo", ["maddpg", "matd3"])
def test_simultaneous_update_trains_all_agents_against_the_current_joint_policy(algo):
    torch.manual_seed(0)
    learner, buffer, batch = toy_learner(algo, toy_spec())
    with torch.no_grad():
        before = learner.actor(batch.obs)
    calls = record_actor_phase_inputs(learner)
    learner.update(buffer)
    assert learner.last_order == [[0, 1, 2]]
    (joint,) = calls
    torch.testing.assert_close(joint, before)
    with torch.no_grad():
        assert not torch.allclose(learner.actor(batch.obs), before)


SEQUENTIAL_VARIANTS = [
    (algo, discrete, loss)
    for algo in ("hasac", "haddpg", "hatd3")
    for discrete in (False, True)
    for loss in (["gumbel", "exact"] if algo == "hasac" and discrete else ["gumbel"])
]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize(("algo", "discrete", "loss"), SEQUENTIAL_VARIANTS)
def test_sequential_turns_that_replay_the_starting_forward_update_as_recomputing_it(algo, discrete, loss, activation):
    """Without shared parameters no turn moves another agent's weights, so each agent's turn replays its pass of
    the update's starting forward: three updates leave the same parameters as recomputing every pass (the same
    random numbers are drawn), for every actor kind and discrete policy loss."""
    overrides = {"layer_norm": False, "activation": activation, "feature_norm": True}
    if algo == "hasac":
        overrides["discrete_policy_loss"] = loss
    torch.manual_seed(0)
    spec = toy_spec(act_dims=(2, 3, 1), discrete=discrete)
    replaying, buffer, _ = toy_learner(algo, spec, **overrides)
    recomputing = copy.deepcopy(replaying)
    recomputing.replays_start_pass = False
    assert replaying.replays_start_pass
    start = copy.deepcopy(replaying.actor.state_dict())
    for learner in (replaying, recomputing):
        torch.manual_seed(1)
        for _ in range(3):
            learner.update(buffer)
    for (name, after), recomputed in zip(replaying.actor.named_parameters(), recomputing.actor.parameters()):
        torch.testing.assert_close(after, recomputed, msg=name)
        assert not torch.equal(after, start[name]), name


@pytest.mark.parametrize(
    ("arch", "overrides", "replays"),
    [("nops", {"layer_norm": False}, True), ("nops", {"layer_norm": True}, False), ("fups", {}, False)]
    + [("hypermarl", {"layer_norm": False}, False), ("nops", {"layer_norm": False, "activation": "silu"}, False)],
)
def test_only_turns_whose_weights_nothing_else_moves_replay_the_starting_forward(arch, overrides, replays):
    learner, _, batch = toy_learner("hasac", toy_spec(), arch, **overrides)
    assert learner.replays_start_pass is replays
    assert (learner.record_actors(batch.obs) is not None) is replays


def test_hasac_sequential_and_masac_simultaneous_data_flow():
    torch.manual_seed(0)
    learner, buffer, _ = toy_learner("hasac", toy_spec())
    calls = record_actor_phase_inputs(learner)
    samples = []
    sample = learner.actor.sample

    def recording_sample(obs, agents=None, deterministic=False, avail=None, recorded=None):
        actions, log_probs = sample(obs, agents, deterministic, avail, recorded)
        if agents is not None and not torch.is_grad_enabled():  # the re-sample after an agent's step
            samples.append((int(agents[0]), actions.detach().clone()))
        return actions, log_probs

    learner.actor.sample = recording_sample
    learner.update(buffer)
    order = [group[0] for group in learner.last_order]
    assert sorted(order) == [0, 1, 2] and len(calls) == 3
    assert [agent for agent, _ in samples] == order[:-1]  # every agent but the last re-samples after its step
    for position in range(1, 3):
        for earlier in range(position):
            agent, resampled = samples[earlier]
            torch.testing.assert_close(calls[position][:, agent], resampled[:, 0])
    masac, buffer, _ = toy_learner("masac", toy_spec())
    calls = record_actor_phase_inputs(masac)
    masac.update(buffer)
    assert masac.last_order == [[0, 1, 2]] and len(calls) == 1


@pytest.mark.parametrize("algo", ["hasac", "masac"])
def test_temperatures_are_per_agent_and_tuned_towards_their_own_action_size(algo):
    torch.manual_seed(0)
    learner, buffer, _ = toy_learner(algo, toy_spec(act_dims=(3, 1)))
    torch.testing.assert_close(learner.target_entropy, torch.tensor([-3.0, -1.0]))
    start = learner.alpha.clone()
    (metrics,) = learner.train(buffer, 3)  # one seed: one dict
    assert not torch.equal(learner.alpha, start)
    assert {"losses/agent_0/alpha", "losses/agent_1/alpha", "losses/critic/alpha"} <= metrics.keys()
    state = learner.state_dict()
    fresh, _, _ = toy_learner(algo, toy_spec(act_dims=(3, 1)))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.alpha, learner.alpha)
    assert fresh.updates == learner.updates == 3


# ---------------------------------------------------------------------------- heterogeneous actions


def test_squashed_gaussian_actor_uses_each_agents_own_size_and_bounds():
    low = np.array([[-1.0, -1.0, -1.0], [0.0, -1.0, -1.0]], np.float32)  # agent 1: one dim in [0, 0.4]
    high = np.array([[1.0, 1.0, 1.0], [0.4, 1.0, 1.0]], np.float32)
    spec = toy_spec(act_dims=(3, 1), low=low, high=high)
    cfg = default_config("hasac", "nops", "mamujoco")
    apply_overrides(cfg, {"hidden_sizes": [8], "gain": 1.0})
    actor = SquashedGaussianActor(spec, get_architecture("nops"), cfg.model, cfg.arch)
    obs = torch.randn(500, 2, 4)
    torch.manual_seed(0)
    actions, log_probs = actor.sample(obs)
    env = actor.env_actions(actions)
    assert torch.all(actions[:, 1, 1:] == 0) and torch.all(env[:, 1, 1:] == 0)  # padded dims
    assert torch.all((env[:, 1, 0] >= 0) & (env[:, 1, 0] <= 0.4)) and env[:, 1, 0].max() > 0.3
    assert torch.all(env[:, 0].abs() <= 1) and env[:, 0].min() < -0.5
    # agent 1's log-prob: a 1-D tanh-Gaussian, nothing from its padded dims
    torch.manual_seed(0)
    mean, log_std = actor.net(obs).split(3, dim=-1)
    log_std = log_std.clamp(-20, 2)
    pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
    u = pre_tanh[:, 1, 0].double()
    expected = Normal(mean[:, 1, 0].double(), log_std[:, 1, 0].double().exp()).log_prob(u)
    expected -= torch.log1p(-(torch.tanh(u) ** 2))  # in float64: accurate where float32 saturates
    torch.testing.assert_close(log_probs[:, 1].double(), expected, rtol=1e-4, atol=1e-4)
    warmup = actor.env_actions(actor.random_actions(1000))
    assert torch.all((warmup[:, 1, 0] >= 0) & (warmup[:, 1, 0] <= 0.4)) and torch.all(warmup[:, 1, 1:] == 0)
    critic = JointQCritic(spec, 2, cfg.model)
    assert critic.action_weight.shape[1] == 4  # 3 + 1 real action dims, padding dropped
    assert critic(torch.randn(7, 5), actions[:7]).shape == (7, 2)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "leaky_relu", "silu"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("heads", [None, [1]], ids=["twin", "one-head"])
@pytest.mark.parametrize("gather", [True, False], ids=["rows-gathered", "rows-masked"])
def test_a_frozen_critics_min_q_is_the_autograd_min_in_value_and_action_gradient(
    activation, layer_norm, heads, gather, monkeypatch
):
    """`min_q` of a frozen critic (the actor update): the twin minimum and its gradient w.r.t. the actions as
    autograd gives them through `forward(...).min(-1)`, each sample's gradient through its minimum head only (rows
    gathered, as on the CPU, or masked, as on other devices); the fast backward is used exactly where its
    activation and layers allow, and an unfrozen critic still gets parameter gradients."""
    monkeypatch.setattr(off_policy_models, "gathers_rows", lambda device: gather)
    torch.manual_seed(0)
    spec = toy_spec(act_dims=(3, 1, 2))
    cfg = default_config("hasac", "nops", "mamujoco")
    apply_overrides(cfg, {"hidden_sizes": [16, 8], "activation": activation, "layer_norm": layer_norm})
    critic = JointQCritic(spec, 2, cfg.model)
    selected = None if heads is None else torch.tensor(heads)
    state, actions, weights = torch.randn(64, 5), torch.rand(64, 3, 3) * 2 - 1, torch.randn(64)
    critic.requires_grad_(False)
    by_autograd, by_min_q = actions.clone().requires_grad_(), actions.clone().requires_grad_()
    expected = critic(state, by_autograd, selected).min(-1).values
    value = critic.min_q(state, by_min_q, selected)
    (expected * weights).sum().backward()
    (value * weights).sum().backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(by_min_q.grad, by_autograd.grad)
    assert by_min_q.grad[:, 1, 1:].abs().sum() == 0 and by_min_q.grad.abs().sum() > 0  # padded dims get nothing
    fast = not layer_norm and activation != "silu"
    assert (type(value.grad_fn).__name__ == "_FrozenMinQBackward") == fast
    critic.requires_grad_(True)
    critic.min_q(state, actions).sum().backward()
    assert all(param.grad is not None for param in critic.parameters())


# ---------------------------------------------------------------------------- resume


def test_resume_continues_with_the_saved_replay_buffer(tmp_path):
    args = ["--algo", "hasac", "--arch", "nops", *TINY, "--save_interval", "200"]
    with_buffer = run_train(tmp_path / "a", *args, "--save_buffer", "true")
    saved = load_checkpoint(with_buffer)
    assert saved["buffer"]["filled"] == 200 and saved["learner"]["updates"] == 4 * 50  # 50 per 50 vector steps
    assert train_main(["--resume", str(with_buffer), "--num_env_steps", "600"]) == 0
    rows = read_progress(with_buffer)
    assert [int(r["env_steps"]) for r in rows if r["buffer/size"]][-3:] == [400, 500, 600]
    assert [float(r["buffer/size"]) for r in rows if r["buffer/size"]][-2:] == [500.0, 600.0]
    resumed = load_checkpoint(with_buffer)
    assert resumed["runner"]["env_steps"] == 600 and resumed["learner"]["updates"] == 6 * 50
    without = run_train(tmp_path / "b", *args)
    assert load_checkpoint(without)["buffer"] is None
    assert train_main(["--resume", str(without), "--num_env_steps", "600"]) == 0
    assert float(read_progress(without)[-1]["buffer/size"]) == 200.0  # refilled from empty


# ---------------------------------------------------------------------------- tuned configs

OFF_POLICY_TUNED = sorted(  # tuned configs are named <algo>-<arch>.yaml (the quick start's config is not one)
    path
    for path in (TUNED_CONFIG_DIR / "mamujoco").glob("*/*.yaml")
    if len(path.stem.split("-")) == 2 and path.stem.split("-")[0] in OFF_POLICY
)


def test_off_policy_tuned_configs_exist_for_the_four_scenarios():
    found = {(path.parent.name, path.stem) for path in OFF_POLICY_TUNED}
    for scenario in ("HalfCheetah-2x3", "Ant-4x2", "Walker2d-2x3", "Humanoid-17x1"):
        for algo in ("hasac", "masac", "matd3"):
            for arch in ("nops", "hypermarl"):
                assert (scenario, f"{algo}-{arch}") in found


@pytest.mark.parametrize("path", OFF_POLICY_TUNED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_off_policy_tuned_config_resolves_and_states_its_obs_mode(path):
    assert path.read_text().startswith("# Assumes obs_mode ")
    algo, arch = path.stem.split("-", 1)
    if arch not in ARCHITECTURES:
        pytest.skip(f"--arch {arch} is not registered")
    scenario, conf = path.parent.name.split("-")
    cfg, sources = build_config(algo, arch, "mamujoco", {"scenario": scenario, "agent_conf": conf})
    assert sources[-1] == str(path)
    assert f"obs_mode {cfg.env.obs_mode}" in path.read_text().splitlines()[0]


# ---------------------------------------------------------------------------- learning (slow)


@pytest.mark.slow
@pytest.mark.parametrize("algo", OFF_POLICY)
def test_learners_find_the_best_joint_action_of_a_one_step_game(algo):
    """Reward −Σ((a − a*)/half-range)² for targets a* inside each agent's own (different) bounds."""
    torch.manual_seed(0)
    low = np.array([[-1.0, -1.0], [0.0, -1.0]], np.float32)  # agent 1 acts in [0, 0.4]
    high = np.array([[1.0, 1.0], [0.4, 1.0]], np.float32)
    spec = toy_spec(act_dims=(2, 1), low=low, high=high)
    cfg = default_config(algo, "nops", "mamujoco")
    apply_overrides(cfg, {"batch_size": 128, "n_step": 1, "hidden_sizes": [32, 32], "lr": 1e-3, "critic_lr": 3e-3})
    learner = ALGORITHMS[algo].learner_cls(spec, cfg, get_architecture("nops"), torch.device("cpu"))
    buffer = ReplayBuffer(spec, 4096, 64, 1, 0.99, torch.device("cpu"))
    target = torch.tensor([[0.5, -0.5], [0.3, 0.0]])  # normalised: (0.5, -0.5) and 0.5
    scale, mask = learner.actor.act_scale, learner.actor.act_mask
    for _ in range(64):  # one-step episodes with uniformly random actions
        obs, state = torch.randn(64, 2, 4), torch.zeros(64, 5)
        warmup = learner.random_act(64)
        env_actions, actions = warmup.env_actions, warmup.actions
        reward = -(((env_actions - target) / scale * mask) ** 2).sum((1, 2))  # (E,)
        buffer.insert(
            obs,
            state,
            actions,
            reward.unsqueeze(1).expand(-1, 2),
            obs,
            state,
            torch.ones(64, dtype=torch.bool),
            torch.zeros(64, dtype=torch.bool),
        )
    learner.train(buffer, 600)
    with torch.no_grad():
        env_actions = learner.act(torch.randn(500, 2, 4), None, None, deterministic=True).env_actions
    mean = env_actions.mean(0)
    assert torch.all((env_actions[:, 1, 0] >= 0) & (env_actions[:, 1, 0] <= 0.4))
    if "sac" in algo:
        torch.testing.assert_close(mean[0], target[0], atol=0.1, rtol=0)
        assert abs(mean[1, 0] - 0.3) < 0.06
    else:  # on the way from the centres (0, 0) and 0.2: deterministic policy gradients move slower here
        assert mean[0, 0] > 0.15 and mean[0, 1] < -0.15 and mean[1, 0] > 0.23
