"""HATRPO's maths (conjugate gradient on Fisher-vector products, the trust region, the line search), HAA2C's and
MAA2C's surrogate against a hand computation, and save → load → continue through the CLI."""

from __future__ import annotations

import pytest
import torch

import harl.algos.hatrpo as hatrpo
from harl.algos.hatrpo import TurnParameters, conjugate_gradient
from harl.cli import train_main
from harl.experiment import build_config
from harl.models.agent_mlp import is_per_agent
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner
from harl.utils.checkpoint import load_checkpoint

from .conftest import TINY_MAMUJOCO, read_progress, run_train

load_extensions()

MATRIX = ["--env", "matrix", "--n_rollout_threads", "4", "--eval_episodes", "2", "--n_eval_rollout_threads", "2"]


def make(algo: str, arch: str, env_name: str, **overrides: str):
    """A learner of a tiny network and two envs."""
    extra = {"episode_limit": "5"} if env_name == "mamujoco" else {"n_agents": "3"}
    if arch == "hypermarl":  # small generators: the explicit Fisher is a (D, D) Hessian
        extra.update({"hypernet_hidden_dims": "4", "embedding_dim": "2"})
    settings = {"hidden_sizes": "4", "critic_hidden_sizes": "8", "episode_length": "6", **extra, **overrides}
    cfg, _ = build_config(algo, arch, env_name, settings, use_tuned=False)
    env = get_environment(env_name).make(cfg.env, n_envs=2, seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    return build_learner(cfg, env.spec, torch.device("cpu")), env


def rollout(learner, env):
    """One finished rollout of the learner's policy."""
    buffer = learner.make_buffer(2)
    out = env.reset(0)
    for _ in range(buffer.length):
        action = learner.act(out.obs, out.state, out.avail_actions)
        step = env.step(action.env_actions)
        buffer.insert(
            out.obs, out.state, out.avail_actions, action.actions, action.log_probs, step.reward, step.done.float()
        )
        out = step
    buffer.finish(out.obs, out.state)
    return buffer


def learner_and_batch(algo: str, arch: str, env_name: str, agent: int = 1, **overrides: str):
    """A learner of a tiny network after one rollout, and its sequences' batch of `agent` (all chunks)."""
    learner, env = make(algo, arch, env_name, **overrides)
    buffer = rollout(learner, env)
    env.close()
    sequences = learner.prepare(buffer).sequences
    return learner, sequences.actor_batch(sequences.all_chunks(), torch.tensor([agent]))


class EvaluatePolicy(torch.nn.Module):
    """The actor's `policy_terms` as a module's forward, for `torch.func.functional_call`."""

    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, batch):
        return self.actor.policy_terms(batch.obs, batch.actions, batch.avail, batch.agents)


def explicit_fisher(learner, batch, turn: TurnParameters) -> torch.Tensor:
    """The Hessian of the batch's mean KL(π_old ‖ π_θ) over the turn's entries at θ_old (one agent), by autograd's
    `hessian` of a function of the turn's vector (the other entries held at their values)."""
    wrapper = EvaluatePolicy(learner.actor)
    names = {id(p): name for name, p in wrapper.named_parameters()}
    with torch.no_grad():
        old_params = batch.flat(wrapper(batch)[2])
    sizes = [turn.part(p, p).numel() for p in turn.params]
    (agent,) = turn.agents

    def mean_kl(vector: torch.Tensor) -> torch.Tensor:
        tensors, offset = {}, 0
        for p, size in zip(turn.params, sizes, strict=True):
            piece = vector[offset : offset + size]
            offset += size
            if is_per_agent(p):
                full = torch.cat([p.detach()[:agent], piece.view(1, *p.shape[1:]), p.detach()[agent + 1 :]])
            else:
                full = piece.view_as(p)
            tensors[names[id(p)]] = full
        params = batch.flat(torch.func.functional_call(wrapper, tensors, (batch,))[2])
        return learner.actor.kl(old_params, params, batch.agents).mean()

    return torch.autograd.functional.hessian(mean_kl, turn.values()[0])


@pytest.mark.parametrize(
    ("arch", "env_name"), [("nops", "matrix"), ("hypermarl", "matrix"), ("fups_id", "mamujoco"), ("nops", "mamujoco")]
)
def test_conjugate_gradient_solves_the_damped_fisher_system(arch, env_name):
    learner, batch = learner_and_batch("hatrpo", arch, env_name)
    turn = TurnParameters([p for p in learner.actor.parameters() if p.requires_grad], batch.agents.tolist())
    _, _, old_params = learner.policy_terms(batch)
    fisher = explicit_fisher(learner, batch, turn)  # (D, D)
    damped = fisher + learner.cfg.cg_damping * torch.eye(len(fisher))
    product = learner.fisher_product(batch, turn, old_params.detach())
    v = torch.randn(1, len(fisher), generator=torch.Generator().manual_seed(0))  # (P, D), one seed
    torch.testing.assert_close(product(v)[0], damped @ v[0], rtol=1e-4, atol=1e-6)  # the Fisher-vector product
    log_probs, _, _ = learner.policy_terms(batch)
    g = turn.grad((torch.exp(log_probs - batch.log_probs) * batch.advantages).mean())  # (1, D)
    x = conjugate_gradient(product, g, iters=3 * g.shape[1])
    x, g = x[0], g[0]
    expected = torch.linalg.solve(damped.double(), g.double()).float()
    assert torch.linalg.vector_norm(x - expected) <= 1e-3 * torch.linalg.vector_norm(expected)
    assert torch.linalg.vector_norm(damped @ x - g) <= 1e-3 * torch.linalg.vector_norm(g)


def test_conjugate_gradient_on_a_known_system_stops_moving_once_solved():
    a = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    b = torch.tensor([1.0, 2.0])
    x = conjugate_gradient(lambda v: a @ v, b, iters=50)  # solved after 2; the remaining iterations change nothing
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    assert torch.equal(conjugate_gradient(lambda v: a @ v, torch.zeros(2), iters=5), torch.zeros(2))


def test_turn_parameters_move_only_the_agents_rows():
    learner, batch = learner_and_batch("hatrpo", "nops", "matrix", agent=2)
    before = {name: p.detach().clone() for name, p in learner.actor.named_parameters()}
    step = learner.trust_region_step(batch, torch.ones_like(batch.log_probs), agents=[2])
    assert step["step_fraction"] > 0
    for name, p in learner.actor.named_parameters():
        assert torch.equal(p[:2], before[name][:2]) and torch.equal(p[3:], before[name][3:]), name
    assert any(not torch.equal(p[2], before[name][2]) for name, p in learner.actor.named_parameters())


@pytest.mark.parametrize(("arch", "env_name"), [("nops", "matrix"), ("hypermarl", "matrix"), ("fups", "mamujoco")])
def test_a_kept_step_improves_the_surrogate_within_the_trust_region(arch, env_name):
    learner, batch = learner_and_batch("hatrpo", arch, env_name, kl_threshold="0.005")
    factor = torch.ones_like(batch.log_probs)
    with torch.no_grad():
        old_log_probs, _, old_params = learner.policy_terms(batch)
    step = learner.trust_region_step(batch, factor, agents=[1])
    with torch.no_grad():
        log_probs, _, params = learner.policy_terms(batch)
        kl = learner.actor.kl(old_params, params, batch.agents).mean(0)  # (1,): one seed
        gain = ((log_probs.exp() - old_log_probs.exp()) / batch.log_probs.exp() * batch.advantages).mean(0)
    assert step["step_fraction"] > 0 and 0 < kl <= 0.005
    torch.testing.assert_close(step["kl"], kl)
    assert gain > 0 and step["surrogate_improvement"] > 0
    torch.testing.assert_close(step["surrogate_improvement"], gain, rtol=1e-3, atol=1e-6)


def test_line_search_rejects_a_step_that_worsens_the_surrogate(monkeypatch):
    learner, batch = learner_and_batch("hatrpo", "nops", "matrix")
    solve = hatrpo.conjugate_gradient
    monkeypatch.setattr(hatrpo, "conjugate_gradient", lambda *args, **kwargs: -solve(*args, **kwargs))  # downhill
    before = [p.detach().clone() for p in learner.actor.parameters()]
    step = learner.trust_region_step(batch, torch.ones_like(batch.log_probs), agents=[1])
    assert all(torch.equal(p, q) for p, q in zip(learner.actor.parameters(), before, strict=True))
    assert step["step_fraction"] == 0 and step["kl"] == 0 and step["surrogate_improvement"] == 0
    torch.testing.assert_close(step["ratio"], torch.tensor([1.0]))


@pytest.mark.parametrize(("arch", "env_name"), [("nops", "matrix"), ("hypermarl", "matrix"), ("fups_id", "mamujoco")])
def test_every_agent_step_stays_within_kl_threshold_through_the_cli(arch, env_name, tmp_path):
    tiny = [*MATRIX, "--hidden_sizes", "16"] if env_name == "matrix" else ["--env", "mamujoco", *TINY_MAMUJOCO]
    steps = "200" if env_name == "matrix" else "60"
    run_dir = run_train(
        tmp_path, "--algo", "hatrpo", "--arch", arch, *tiny, "--kl_threshold", "0.002", "--episode_length", "10",
        "--critic_epoch", "2", "--num_env_steps", steps,
    )  # fmt: skip
    rows = read_progress(run_dir)
    kls = [float(v) for row in rows for k, v in row.items() if k.endswith("/kl") and v != ""]
    fractions = [float(v) for row in rows for k, v in row.items() if k.endswith("/step_fraction") and v != ""]
    assert kls and all(0 <= kl <= 0.002 for kl in kls)
    assert any(f > 0 for f in fractions)  # steps were taken, not only refused


@pytest.mark.parametrize("algo", ["haa2c", "maa2c"])
def test_a2c_surrogate_is_ratio_times_advantage_by_hand(algo):
    learner, batch = learner_and_batch(algo, "nops", "matrix")
    old = batch.log_probs - torch.linspace(-1.0, 1.0, len(batch.log_probs)).unsqueeze(1)  # ratios far outside a clip
    batch.log_probs = old
    surrogate, entropy, diagnostics = learner.surrogate(batch)
    logits = learner.actor.net(batch.obs.flatten(0, 1), batch.agents)  # (M, 1, A): the tiny net, by hand below
    dist = torch.distributions.Categorical(logits=logits)
    log_probs = dist.log_prob(batch.actions.flatten(0, 1).squeeze(-1))  # (M, 1)
    ratio = torch.exp(log_probs - old)
    assert (ratio > 1 + learner.cfg.clip_param).any()  # PPO would clip these; A2C does not
    torch.testing.assert_close(surrogate, ratio * batch.advantages)
    torch.testing.assert_close(entropy, dist.entropy())
    torch.testing.assert_close(diagnostics["ratio"], ratio.detach())
    assert "clip_frac" not in diagnostics
    hand_loss = -(ratio * batch.advantages).mean() - learner.cfg.entropy_coef * dist.entropy().mean()
    loss = -surrogate.mean() - learner.cfg.entropy_coef * entropy.mean()
    torch.testing.assert_close(loss, hand_loss)


def test_haa2c_runs_a2c_epoch_epochs_per_agent():
    learner, env = make("haa2c", "nops", "matrix", a2c_epoch="3", actor_num_mini_batch="2")
    buffer = rollout(learner, env)
    env.close()
    steps, step = [], learner.actor_optimizer.step
    learner.actor_optimizer.step = lambda agents=None: (steps.append(agents), step(agents=agents))
    (metrics,) = learner.train(buffer)
    assert len(steps) == 3 * 3 * 2  # agents × a2c_epoch × minibatches, each stepping one agent's rows
    assert [s[0] for s in steps[::6]] == learner.last_order
    assert "losses/agent_0/factor" in metrics and "losses/agent_0/clip_frac" not in metrics


@pytest.mark.parametrize("algo", ["hatrpo", "haa2c", "maa2c"])
def test_save_load_continue(algo, tmp_path):
    epochs = ["--critic_epoch", "2"] + (["--a2c_epoch", "2"] if "a2c" in algo else [])
    args = ["--algo", algo, "--arch", "nops", *MATRIX, "--episode_length", "10", *epochs, "--hidden_sizes", "16"]
    run_dir = run_train(tmp_path, *args, "--num_env_steps", "200", "--save_interval", "120")
    saved = load_checkpoint(run_dir)
    assert saved["runner"]["env_steps"] == 200
    assert ("actor_optimizer" in saved["learner"]) == (algo != "hatrpo")  # no optimiser steps HATRPO's actor
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "280"]) == 0
    resumed = load_checkpoint(run_dir)
    assert resumed["runner"]["env_steps"] == 280
    assert any(not torch.equal(saved["learner"]["actor"][k], v) for k, v in resumed["learner"]["actor"].items())
    steps = [int(row["env_steps"]) for row in read_progress(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == 280


def test_grad_stats_log_each_turns_surrogate_gradient():
    """One full-batch surrogate gradient per agent turn: the variance of its entries over the actor's parameters
    (other agents' rows zero, as a sequential learner's turns record them), averaged over the turns; no
    minibatch noise."""
    learner, env = make("hatrpo", "nops", "matrix", grad_stats="true")
    buffer = rollout(learner, env)
    env.close()
    recorded = []
    record = learner.grad_stats.record
    learner.grad_stats.record = lambda params, grads=None: (recorded.append(grads), record(params, grads))
    (metrics,) = learner.train(buffer)
    assert len(recorded) == 3 and "grad/noise" not in metrics
    variances = [torch.cat([g.reshape(-1) for g in grads]).double().var(unbiased=False) for grads in recorded]
    assert all(v > 0 for v in variances)
    torch.testing.assert_close(metrics["grad/param_variance"], float(sum(variances) / 3))


def test_recurrent_hatrpo_steps_stay_within_kl_threshold(tmp_path):
    """Chunked sequences from stored hidden states: the Fisher-vector products run through the GRU."""
    run_dir = run_train(
        tmp_path, "--algo", "hatrpo", "--arch", "hypermarl", "--env", "mamujoco", *TINY_MAMUJOCO, "--recurrent",
        "true", "--rnn_hidden_size", "8", "--episode_length", "20", "--data_chunk_length", "8", "--critic_epoch", "2",
        "--num_env_steps", "80",
    )  # fmt: skip
    rows = read_progress(run_dir)
    kls = [float(v) for row in rows for k, v in row.items() if k.endswith("/kl") and v != ""]
    assert kls and all(0 <= kl <= 0.01 for kl in kls) and any(kl > 0 for kl in kls)
