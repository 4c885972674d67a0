"""HAD3QN (#24): dueling Q values, the double-Q target and the sequential actor losses against hand computations,
available-action masks in acting and in targets, the epsilon schedule, target updates, save -> load -> continue,
--seeds, refusals, and (slow) learning the 4-agent Specialisation game."""

from __future__ import annotations

import copy

import pytest
import torch

from harl.algos.had3qn import HAD3QN
from harl.buffers.replay import ReplayBatch
from harl.cli import train_main
from harl.config import apply_overrides
from harl.experiment import default_config
from harl.registry import ALGORITHMS, get_architecture, load_extensions
from harl.utils.checkpoint import load_checkpoint

from .conftest import read_progress, run_train
from .test_off_policy_discrete import assert_available, discrete_spec, random_masks
from .test_seeds import OFF_POLICY_TINY, assert_same_run, seed_folders

load_extensions()

B = 6  # a tiny batch


def learner_for(arch: str = "nops", **overrides) -> HAD3QN:
    cfg = default_config("had3qn", arch, "matrix")
    apply_overrides(cfg, {"batch_size": B, "hidden_sizes": [8], "lr": 0.01, "critic_lr": 0.01, **overrides})
    torch.manual_seed(0)
    return HAD3QN(discrete_spec(), cfg, get_architecture(arch), torch.device("cpu"))


def tiny_batch(seed: int = 0) -> ReplayBatch:
    """B transitions of the 3 heterogeneous agents (3, 5 and 4 actions) with random masks; one terminated."""
    g = torch.Generator().manual_seed(seed)
    avail = random_masks(B, g)
    actions = torch.stack([torch.multinomial(avail[:, i].float(), 1) for i in range(3)], 1)  # (B, 3, 1) available
    return ReplayBatch(
        obs=torch.randn(B, 3, 4, generator=g),
        state=torch.randn(B, 5, generator=g),
        actions=actions,
        reward=torch.randn(B, 1, generator=g).expand(B, 3).clone(),  # a team reward
        discount=torch.tensor([0.9, 0.9, 0.0, 0.81, 0.9, 0.9]),
        next_obs=torch.randn(B, 3, 4, generator=g),
        next_state=torch.randn(B, 5, generator=g),
        steps=torch.tensor([1, 1, 1, 2, 1, 1]),
        avail=avail,
        next_avail=random_masks(B, g),
    )


def one_hot(index: int, n: int = 5) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), n).float()


def masked_argmax(values: list[float], valid: list[bool]) -> int:
    """The first best valid entry (as torch's argmax breaks ties)."""
    best = None
    for action, (value, ok) in enumerate(zip(values, valid, strict=True)):
        if ok and (best is None or value > values[best]):
            best = action
    assert best is not None
    return best


# ---------------------------------------------------------------------------- the maths, by hand


@pytest.mark.parametrize("arch", ["nops", "fups_id", "hypermarl"])
def test_dueling_q_values_by_hand(arch):
    """Q = V + A - mean(A) over the agent's own actions; padded actions are zero (the net's outputs: A, then V)."""
    actor = learner_for(arch).actor
    obs = torch.randn(4, 3, 4)
    with torch.no_grad():
        out, q = actor.net(obs), actor.q_values(obs)
    for b in range(4):
        for agent, n_actions in enumerate((3, 5, 4)):
            advantage, value = out[b, agent, :n_actions], out[b, agent, 5]
            expected = value + advantage - advantage.mean()
            torch.testing.assert_close(q[b, agent, :n_actions], expected)
            assert bool((q[b, agent, n_actions:] == 0).all())
    agents = torch.tensor([2, 0])
    with torch.no_grad():
        torch.testing.assert_close(actor.q_values(obs[:, agents], agents), q[:, agents])


def test_critic_target_and_loss_by_hand():
    """target = team n-step reward + discount · Q'(s', a'), a' each agent's best *available* action under its target
    Q network, Q' the target critic; loss ½·mean((Q(s, a) - target)²)."""
    learner = learner_for()
    for param in learner.target_actor.parameters():  # targets that differ from the online networks
        param.add_(torch.randn_like(param))
    batch = tiny_batch()
    critic = copy.deepcopy(learner.critic)
    with torch.no_grad():
        next_q = learner.target_actor.q_values(batch.next_obs)
    next_values, masked_out = [], 0
    for b in range(B):
        joint = []
        for agent, n_actions in enumerate((3, 5, 4)):
            values = next_q[b, agent, :n_actions].tolist()
            best = masked_argmax(values, batch.next_avail[b, agent, :n_actions].tolist())
            masked_out += best != masked_argmax(values, [True] * n_actions)
            joint.append(one_hot(best))
        with torch.no_grad():
            next_values.append(learner.target_critic(batch.next_state[b : b + 1], torch.stack(joint)[None])[0, 0])
    assert masked_out > 0, "the masks should change some argmax for this test to see them"
    torch.testing.assert_close(learner.next_value(batch), torch.stack(next_values))
    target = batch.reward[:, 0] + batch.discount * torch.stack(next_values)
    metrics = learner.fit_critic(batch, learner.next_value(batch))
    with torch.no_grad():
        q = critic(batch.state, learner.actor.critic_actions(batch.actions))[:, 0]
    torch.testing.assert_close(metrics["values/target_mean"], target.mean())
    torch.testing.assert_close(metrics["losses/critic/loss"], 0.5 * (q - target).pow(2).mean())


@pytest.mark.parametrize("fit_all_actions", [True, False])
def test_sequential_actor_losses_by_hand(fit_all_actions):
    """Agent by agent in the update's order: the critic's values of the agent's own actions with its predecessors at
    their best responses and its successors at their greedy actions; the agent's Q values regressed onto them (every
    available action, or the greedy one as HARL); its best response the masked argmax. NoPS: an agent's network is
    untouched until its turn, so every turn's loss is computed from the networks before the update."""
    learner = learner_for(fit_all_actions=fit_all_actions)
    batch = tiny_batch(1)
    learner.sample = lambda buffer: batch
    actor = copy.deepcopy(learner.actor)
    metrics = learner.update(None)
    critic = learner.critic  # the actors are trained against the critic after its step
    order = [group[0] for group in learner.last_order]
    assert sorted(order) == [0, 1, 2]
    n_actions = (3, 5, 4)
    with torch.no_grad():
        q = actor.q_values(batch.obs)  # (B, 3, 5)
    greedy = [
        [masked_argmax(q[b, i, : n_actions[i]].tolist(), batch.avail[b, i, : n_actions[i]].tolist()) for i in range(3)]
        for b in range(B)
    ]
    joint = [list(row) for row in greedy]
    for agent in order:
        losses = []
        for b in range(B):
            valid = batch.avail[b, agent, : n_actions[agent]].tolist()
            values = []
            for action in range(n_actions[agent]):
                actions = [one_hot(action if i == agent else joint[b][i]) for i in range(3)]
                with torch.no_grad():
                    values.append(critic(batch.state[b : b + 1], torch.stack(actions)[None])[0, 0].item())
            if fit_all_actions:
                errors = [(q[b, agent, a].item() - values[a]) ** 2 for a in range(n_actions[agent]) if valid[a]]
                losses.append(sum(errors) / len(errors))
            else:
                own = greedy[b][agent]
                losses.append((q[b, agent, own].item() - values[own]) ** 2)
            joint[b][agent] = masked_argmax(values, valid)
        expected = sum(losses) / B
        assert metrics["actor_loss"][agent].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------------------- masks


@pytest.mark.parametrize("arch", ["nops", "fups", "hypermarl"])
def test_never_selects_a_masked_action(arch):
    """Acting (greedy, fully random, epsilon-greedy, warm-up) and updating (the greedy joint action, every best
    response, the targets' next actions) stay within the masks."""
    generator = torch.Generator().manual_seed(5)
    learner = learner_for(arch, epsilon=1.0)
    for epsilon in (0.0, 0.5, 1.0):
        learner.cfg.epsilon = epsilon
        for _ in range(5):
            masks = random_masks(64, generator)
            obs, state = torch.randn(64, 3, 4, generator=generator), torch.randn(64, 5, generator=generator)
            for deterministic in (False, True):
                assert_available(learner.act(obs, state, masks, deterministic=deterministic).env_actions, masks)
            assert_available(learner.random_act(64, masks).env_actions, masks)
            assert_available(learner.actor.distribution(obs, masks).probs, masks)
    batch = tiny_batch(2)
    learner.sample = lambda buffer: batch
    seen, own_values, target_forward = [], learner.own_action_values, learner.target_critic.forward

    def recording_own(state, joint, agents, embedding):
        seen.append(joint.clone())
        return own_values(state, joint, agents, embedding)

    def recording_target(state, actions, *args, **kwargs):
        assert_available(actions, batch.next_avail)
        return target_forward(state, actions, *args, **kwargs)

    learner.own_action_values, learner.target_critic.forward = recording_own, recording_target
    learner.update(None)
    assert len(seen) == 3
    for joint in seen:
        assert_available(joint, batch.avail)


def test_exploration_is_uniform_over_available_actions():
    learner = learner_for(epsilon=1.0)
    masks = torch.zeros(4000, 3, 5, dtype=torch.bool)
    masks[:, :, 1:3] = True  # actions 1 and 2 of every agent
    actions = learner.act(torch.zeros(4000, 3, 4), torch.zeros(4000, 5), masks).env_actions[..., 0]
    assert set(actions.unique().tolist()) == {1, 2}
    assert abs((actions == 1).float().mean().item() - 0.5) < 0.05
    learner.cfg.epsilon = 0.0
    actions = learner.act(torch.zeros(100, 3, 4), torch.zeros(100, 5), None).env_actions
    assert bool((actions == actions[0]).all())  # greedy: the same action on the same observation


# ---------------------------------------------------------------------------- schedule and targets


def test_epsilon_schedule_is_linear_in_the_env_steps_acted_on():
    learner = learner_for(epsilon_start=1.0, epsilon=0.1, epsilon_anneal_steps=100)
    for steps, expected in ((0, 1.0), (50, 0.55), (100, 0.1), (400, 0.1)):
        learner.env_steps = steps
        assert learner.epsilon() == pytest.approx(expected)
    learner.env_steps = 0
    learner.random_act(8)
    obs, state = torch.zeros(8, 3, 4), torch.zeros(8, 5)
    learner.act(obs, state, None)
    assert learner.env_steps == 16
    learner.act(obs, state, None, deterministic=True)  # evaluation does not advance the schedule
    assert learner.env_steps == 16
    assert learner_for().epsilon() == 0.05  # HARL's constant by default


@pytest.mark.parametrize("interval", [0, 3])
def test_targets_follow_by_polyak_or_hard_copies(interval):
    learner = learner_for(target_update_interval=interval, polyak=0.5)
    batch = tiny_batch(3)
    learner.sample = lambda buffer: batch
    for update in range(1, 7):
        before = [p.clone() for p in learner.target_critic.parameters()]
        learner.update(None)
        for name in ("critic", "actor"):
            online = list(getattr(learner, name).parameters())
            target = list(getattr(learner, f"target_{name}").parameters())
            copied = all(torch.equal(o, t) for o, t in zip(online, target, strict=True))
            assert copied == (interval > 0 and update % interval == 0)
        moved = any(not torch.equal(b, p) for b, p in zip(before, learner.target_critic.parameters(), strict=True))
        assert moved == (interval == 0 or update % interval == 0)


# ---------------------------------------------------------------------------- through the CLI

TINY = [
    "--algo", "had3qn", "--env", "matrix", "--n_rollout_threads", "4", "--warmup_steps", "40", "--train_interval",
    "5", "--batch_size", "16", "--buffer_size", "400", "--eval_episodes", "2", "--n_eval_rollout_threads", "2",
    "--hidden_sizes", "16", "--epsilon_start", "1.0", "--epsilon_anneal_steps", "200",
]  # fmt: skip


def test_save_load_continue(tmp_path):
    """A resumed run continues its counters, epsilon schedule, networks, targets and optimiser states, and ends where
    the uninterrupted run ends."""
    args = [*TINY, "--save_interval", "100", "--save_buffer", "true", "--arch", "nops"]
    run_dir = run_train(tmp_path / "a", *args, "--num_env_steps", "200")
    saved = load_checkpoint(run_dir)["learner"]
    assert saved["env_steps"] == 200 and saved["updates"] > 0 and "target_actor" in saved
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "400"]) == 0
    resumed = load_checkpoint(run_dir)["learner"]
    assert resumed["env_steps"] == 400 and resumed["updates"] > saved["updates"]
    whole = run_train(tmp_path / "b", *args, "--num_env_steps", "400")
    straight = load_checkpoint(whole)["learner"]
    for part in ("actor", "critic", "target_actor", "target_critic"):
        for key, value in straight[part].items():
            torch.testing.assert_close(resumed[part][key], value, atol=1e-6, rtol=0, msg=f"{part}.{key}")
    epsilons = [float(row["charts/epsilon"]) for row in read_progress(run_dir) if row.get("charts/epsilon")]
    assert epsilons == sorted(epsilons, reverse=True) and epsilons[-1] == pytest.approx(0.05)


@pytest.mark.parametrize("arch", ["nops", "hypermarl"])
def test_a_seed_of_a_batched_run_is_its_solo_run(arch, tmp_path):
    common = ["--algo", "had3qn", "--arch", arch, *OFF_POLICY_TINY, "--num_env_steps", "90", "--epsilon", "0.3"]
    assert train_main([*common, "--seed", "4", "--seeds", "3", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "6", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    assert_same_run(batched[6], solo[6])
    ours, theirs = load_checkpoint(batched[6])["learner"], load_checkpoint(solo[6])["learner"]
    assert ours["env_steps"] == theirs["env_steps"] == 90
    for part in ("target_actor", "target_critic"):
        for key, value in ours[part].items():
            torch.testing.assert_close(value, theirs[part][key], atol=1e-5, rtol=0, msg=f"{part}.{key}")


def test_continuous_actions_are_refused_in_one_line(tmp_path, capsys):
    from harl.cli import train

    assert train(["--algo", "had3qn", "--arch", "nops", "--env", "mamujoco", "--log_dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "had3qn supports discrete actions only" in err[0], captured.err
    assert not any(tmp_path.iterdir())
    entry = ALGORITHMS["had3qn"]
    assert entry.discrete and not entry.continuous and entry.sequential and entry.batched_seeds


@pytest.mark.parametrize(
    ("env", "overrides", "path"),
    [
        ("matrix", {}, "matrix/specialisation-4/had3qn-nops.yaml"),
        ("matrix", {"game": "synchronisation"}, "matrix/synchronisation-4/had3qn-nops.yaml"),
        ("smacv2", {}, "smacv2/smacv2_5_units/had3qn.yaml"),
    ],
)
def test_tuned_configs_resolve_to_harls_values(env, overrides, path):
    from harl.experiment import build_config

    for arch in ("nops",) if path.endswith("-nops.yaml") else ("nops", "hypermarl"):
        cfg, sources = build_config("had3qn", arch, env, overrides)
        assert sources[-1].endswith(f"tuned_configs/{path}")
        assert (cfg.algo.lr, cfg.algo.critic_lr, cfg.algo.batch_size) == (5e-4, 1e-3, 1000)
        assert (cfg.algo.epsilon, cfg.algo.gamma, cfg.algo.polyak, cfg.algo.n_step) == (0.05, 0.95, 0.005, 1)
        assert cfg.model.hidden_sizes == [128, 128] and not cfg.model.layer_norm


# ---------------------------------------------------------------------------- learning (slow)


@pytest.mark.slow
def test_specialisation_4_agents_with_nops(tmp_path):
    """HAD3QN-NoPS specialises the 4 agents (eval return 1) within 20k env steps of its tuned config (eval return 1
    from 10k)."""
    run_dir = run_train(
        tmp_path, "--algo", "had3qn", "--arch", "nops", "--env", "matrix", "--game", "specialisation",
        "--n_agents", "4", "--seed", "1", "--num_env_steps", "20000", "--eval_interval", "10000",
    )  # fmt: skip
    assert 0.95 < float(read_progress(run_dir)[-1]["eval/episode_return"]) <= 1.0
