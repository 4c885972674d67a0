"""Off-policy learners on discrete actions: Gumbel-softmax categorical actors, one-hot joint actions for the
critic, action indices and available-action masks in the replay buffer, masks respected everywhere."""

from __future__ import annotations

import pytest
import torch

from harl.buffers.replay import ReplayBuffer
from harl.config import apply_overrides
from harl.experiment import default_config
from harl.models.off_policy import GumbelCategoricalActor
from harl.models.policies import GREEDY, SAMPLE
from harl.registry import ALGORITHMS, ARCHITECTURES, get_architecture, load_extensions
from harl.spec import EnvSpec

from .test_off_policy import toy_spec

load_extensions()

OFF_POLICY = sorted(name for name, entry in ALGORITHMS.items() if not entry.on_policy)
ACT_DIMS = (3, 5, 4)  # heterogeneous action counts, padded to 5


def discrete_spec() -> EnvSpec:
    return toy_spec(ACT_DIMS, discrete=True)


def random_masks(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B, N, A) masks within each agent's own actions, at least one action available per agent."""
    real = torch.as_tensor(discrete_spec().act_mask)  # (N, A)
    masks = (torch.rand(batch, *real.shape, generator=generator) < 0.5) & real
    first_real = torch.zeros_like(real)
    first_real[:, 0] = True
    return masks | (first_real & ~masks.any(-1, keepdim=True))


def learner_for(algo: str, arch: str = "nops"):
    cfg = default_config(algo, arch, "matrix")
    apply_overrides(
        cfg, {"batch_size": 32, "n_step": 2, "hidden_sizes": [8], **({"policy_freq": 1} if "td3" in algo else {})}
    )
    return ALGORITHMS[algo].learner_cls(discrete_spec(), cfg, get_architecture(arch), torch.device("cpu"))


def assert_available(one_hot_or_index: torch.Tensor, masks: torch.Tensor) -> None:
    index = one_hot_or_index.argmax(-1) if one_hot_or_index.shape[-1] == masks.shape[-1] else one_hot_or_index[..., 0]
    assert bool(masks.gather(-1, index.long().unsqueeze(-1)).all()), "an unavailable action was chosen"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_masks_that_change_over_time_are_respected(arch):
    """By construction (zero probability) and in every way of choosing an action, step after step."""
    generator = torch.Generator().manual_seed(0)
    actor = learner_for("hasac", arch).actor
    assert isinstance(actor, GumbelCategoricalActor)
    for _ in range(10):  # new masks every step
        masks = random_masks(64, generator)
        obs = torch.randn(64, 3, 4, generator=generator)
        with torch.no_grad():
            probs = actor.distribution(obs, masks).probs  # (B, N, A)
            torch.testing.assert_close(probs.sum(-1), torch.ones(64, 3))
            assert bool((probs[~masks] == 0).all())
            for exploration in (SAMPLE, GREEDY):
                one_hot, log_probs = actor.act(obs, masks, exploration)
                assert_available(one_hot, masks)
                assert bool(torch.isfinite(log_probs).all()) and bool((log_probs <= 0).all())
                assert torch.equal(one_hot.sum(-1), torch.ones(64, 3))
            assert_available(actor.random_actions(64, masks), masks)
            agents = torch.tensor([1])
            one_hot, _ = actor.sample(obs[:, agents], agents, avail=masks[:, agents])
            assert_available(one_hot, masks[:, agents])


@pytest.mark.parametrize("algo", OFF_POLICY)
def test_every_learner_acts_within_masks(algo):
    generator = torch.Generator().manual_seed(1)
    learner = learner_for(algo)
    for _ in range(5):
        masks = random_masks(32, generator)
        obs, state = torch.randn(32, 3, 4, generator=generator), torch.randn(32, 5, generator=generator)
        for deterministic in (False, True):
            action = learner.act(obs, state, masks, deterministic=deterministic)
            assert action.env_actions.shape == action.actions.shape == (32, 3, 1)
            assert action.actions.dtype == torch.long
            assert_available(action.env_actions, masks)
        warmup = learner.random_act(32, masks)
        assert_available(warmup.env_actions, masks)
        assert torch.equal(warmup.env_actions, warmup.actions)


def test_straight_through_samples_are_one_hot_with_gradients():
    actor = learner_for("masac").actor
    obs = torch.randn(16, 3, 4)
    one_hot, log_probs = actor.sample(obs)
    assert torch.equal(one_hot.detach(), torch.nn.functional.one_hot(one_hot.detach().argmax(-1), 5).float())
    expected = actor.log_probs_all(obs).gather(-1, one_hot.detach().argmax(-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(log_probs, expected)
    weights = torch.randn(5)
    (one_hot * weights).sum().backward()  # the relaxation's gradient reaches the policy through the one-hot
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in actor.parameters())


def fill(buffer: ReplayBuffer, learner, generator, steps: int = 12) -> list[tuple]:
    written = []
    for _ in range(steps):
        avail, next_avail = random_masks(2, generator), random_masks(2, generator)
        actions = learner.random_act(2, avail).actions  # (E, N, 1) indices
        buffer.insert(
            torch.randn(2, 3, 4, generator=generator),
            torch.randn(2, 5, generator=generator),
            actions,
            torch.randn(2, 3, generator=generator),
            torch.randn(2, 3, 4, generator=generator),
            torch.randn(2, 5, generator=generator),
            torch.zeros(2, dtype=torch.bool),
            torch.zeros(2, dtype=torch.bool),
            avail=avail,
            next_avail=next_avail,
        )
        written.append((actions, avail, next_avail))
    return written


def test_replay_keeps_action_indices_and_both_masks():
    generator = torch.Generator().manual_seed(2)
    learner = learner_for("hasac")
    buffer = ReplayBuffer(discrete_spec(), 100, 2, 3, 0.9, torch.device("cpu"))
    assert buffer.actions.dtype == torch.long and buffer.actions.shape[-1] == 1
    written = fill(buffer, learner, generator)
    t, e = torch.tensor([0, 4, 11]), torch.tensor([1, 0, 1])
    batch = buffer.gather(t, e)
    for row, (step, env) in enumerate(zip(t.tolist(), e.tolist(), strict=True)):
        actions, avail, _ = written[step]
        assert torch.equal(batch.actions[row], actions[env]) and torch.equal(batch.avail[row], avail[env])
        last = min(step + 2, 11)  # 3-step targets: the next masks are those of the last step taken
        assert torch.equal(batch.next_avail[row], written[last][2][env])
    one_hot = learner.actor.critic_actions(batch.actions)
    assert one_hot.shape == (3, 3, 5) and torch.equal(one_hot.argmax(-1, keepdim=True), batch.actions)
    copy = ReplayBuffer(discrete_spec(), 100, 2, 3, 0.9, torch.device("cpu"))
    copy.load_state_dict(buffer.state_dict())
    again = copy.gather(t, e)
    assert all(torch.equal(getattr(again, f), getattr(batch, f)) for f in ("actions", "avail", "next_avail"))


@pytest.mark.parametrize("algo", OFF_POLICY)
def test_updates_bootstrap_from_available_next_actions(algo):
    """The target's next actions (what the target critic sees) lie within the next observations' masks;
    an update runs and gives finite losses."""
    generator = torch.Generator().manual_seed(3)
    learner = learner_for(algo, "hypermarl")
    buffer = ReplayBuffer(discrete_spec(), 100, 2, 2, 0.9, torch.device("cpu"))
    fill(buffer, learner, generator)
    batch = buffer.sample(32, learner.rng)
    buffer.sample = lambda *args: batch
    seen = []
    target_forward = learner.target_critic.forward

    def recording(state, actions, *args, **kwargs):
        seen.append(actions.detach().clone())
        return target_forward(state, actions, *args, **kwargs)

    learner.target_critic.forward = recording
    metrics = learner.update(buffer)
    (next_actions,) = seen
    assert torch.equal(next_actions.sum(-1), torch.ones(32, 3))  # one-hot joint actions
    assert_available(next_actions, batch.next_avail)
    assert all(bool(torch.isfinite(v).all()) for v in metrics.values())


@pytest.mark.parametrize("arch", ["nops", "hypermarl"])
@pytest.mark.parametrize("scenario", ["smacv2_5_units", "smacv2_10_units"])
def test_smacv2_hasac_tuned_configs_resolve(scenario, arch):
    from harl.experiment import build_config

    cfg, sources = build_config("hasac", arch, "smacv2", {"scenario": scenario})
    name = "hasac-hypermarl.yaml" if arch == "hypermarl" else "hasac.yaml"
    assert sources[-1].endswith(f"tuned_configs/smacv2/{scenario}/{name}")
    assert cfg.algo.alpha == pytest.approx(0.001) and cfg.algo.n_step == 20 and cfg.algo.batch_size == 1000
    assert cfg.model.hidden_sizes == [256, 256] and cfg.model.feature_norm
    # HyperMARL's actor lr is 10x smaller (its policies collapse at 3e-4: docs/results/hasac_smax_entropy/)
    assert cfg.algo.lr == pytest.approx(3e-5 if arch == "hypermarl" else 3e-4)
    assert cfg.algo.critic_lr == pytest.approx(5e-4)


@pytest.mark.parametrize("algo", ["hasac", "masac"])
def test_exact_soft_policy_loss_against_a_hand_computation(algo):
    """Σ_i Σ_a π_i(a)[α_i log π_i(a) − min_k Q_k(s, a, a_−i)], averaged over the batch, computed one
    (sample, agent, action) at a time, equals the batched expectation; unavailable actions weigh nothing."""
    generator = torch.Generator().manual_seed(4)
    learner = learner_for(algo)
    with torch.no_grad():
        learner.log_alpha.copy_(torch.tensor([-1.0, -2.0, -0.5]))
    buffer = ReplayBuffer(discrete_spec(), 100, 2, 1, 0.9, torch.device("cpu"))
    fill(buffer, learner, generator)
    batch = buffer.gather(torch.tensor([0, 3, 5, 9]), torch.tensor([0, 1, 1, 0]))
    actions = learner.actor.critic_actions(learner.random_act(4, batch.avail).actions)  # (B, N, A) one-hot
    agents = torch.tensor([2, 0])
    loss, per_agent, expected_log_probs = learner.exact_actor_loss(batch, actions, agents)
    alpha = learner.log_alpha.detach().exp()
    manual, terms = 0.0, torch.zeros(2)
    with torch.no_grad():
        for b in range(4):
            for j, agent in enumerate(agents.tolist()):
                log_p = learner.actor.log_probs_all(batch.obs[b : b + 1, [agent]], torch.tensor([agent]))[0, 0]
                valid = batch.avail[b, agent] & torch.as_tensor(discrete_spec().act_mask)[agent]
                log_p = torch.log_softmax(log_p.masked_fill(~valid, -1e30), -1)
                for a in range(5):
                    if not valid[a]:
                        continue
                    joint = actions[b].clone()
                    joint[agent] = torch.nn.functional.one_hot(torch.tensor(a), 5).float()
                    q = learner.critic(batch.state[b : b + 1], joint[None]).min(-1).values[0]
                    term = log_p[a].exp() * (alpha[agent] * log_p[a] - q)
                    manual += term.item() / 4
                    terms[j] += term / 4
    assert loss.item() == pytest.approx(manual, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(per_agent, terms, rtol=1e-4, atol=1e-5)
    assert expected_log_probs.shape == (4, 2) and bool((expected_log_probs <= 0).all())
    loss.backward()  # the gradient reaches the actor through the probabilities only (the critic is not trained)
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in learner.actor.parameters())


@pytest.mark.parametrize("algo", ["hasac", "masac"])
def test_exact_loss_trains_through_the_cli(tmp_path, algo):
    from .conftest import read_progress, run_train

    run_dir = run_train(
        tmp_path, "--algo", algo, "--arch", "hypermarl", "--env", "matrix", "--discrete_policy_loss", "exact",
        "--num_env_steps", "400", "--warmup_steps", "100", "--batch_size", "16", "--train_interval", "1",
        "--eval_episodes", "4", "--n_eval_rollout_threads", "4",
    )  # fmt: skip
    rows = read_progress(run_dir)
    assert any(row["losses/critic/loss"] for row in rows) and rows[-1]["eval/episode_return"] != ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "hasac", "--env", "mamujoco", "--discrete_policy_loss", "exact"], "over discrete actions"),
        (["--algo", "maddpg", "--env", "vmas", "--scenario", "navigation", "--snd_interval", "5"], "deterministic"),
    ],
    ids=["exact loss, continuous env", "snd, deterministic actors"],
)
def test_options_the_env_actions_rule_out_are_refused_before_anything_is_printed(args, message, tmp_path, capsys):
    from harl.cli import train

    assert train([*args, "--arch", "nops", "--log_dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], captured.err
    assert not any(tmp_path.iterdir())
