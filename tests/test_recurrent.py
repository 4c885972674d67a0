"""Recurrent policies (`--model.recurrent true`): the batched GRU, hidden-state resets, chunked BPTT, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harl.models.agent_mlp as agent_mlp_module
import harl.models.recurrent as recurrent_module
from harl.buffers.rollout import RolloutBuffer
from harl.cli import evaluate_cli, train
from harl.config import EmptyConfig, ModelConfig
from harl.experiment import build_config
from harl.models.agent_mlp import SharedParams, StackedParams, is_per_agent
from harl.models.policies import SAMPLE, AgentValueCritic, CategoricalActor, GaussianActor
from harl.models.recurrent import AgentGRU, reset_hidden
from harl.registry import get_architecture, load_extensions
from harl.runners.on_policy import OnPolicyRunner
from harl.spec import EnvSpec
from hypermarl_ext.config import HyperMARLConfig
from hypermarl_ext.hypernet import HyperParams

from .conftest import read_progress, run_train
from .test_smoke import tiny_args

load_extensions()

ARCH_CFG = {"nops": EmptyConfig(), "fups": EmptyConfig(), "fups_id": EmptyConfig(), "hypermarl": HyperMARLConfig()}


def spec(n_agents: int = 3, discrete: bool = False) -> EnvSpec:
    """Agents with observation sizes 5, 3, 4, ... (heterogeneous, padded) and 2 actions each."""
    low = np.zeros((n_agents, 2), np.float32) if discrete else -np.ones((n_agents, 2), np.float32)
    return EnvSpec(
        agent_ids=tuple(f"a{i}" for i in range(n_agents)),
        obs_dims=tuple(5 - (i % 3) for i in range(n_agents)),
        state_dim=6,
        action_type="discrete" if discrete else "continuous",
        act_dims=(2,) * n_agents,
        act_low=low,
        act_high=np.ones((n_agents, 2), np.float32),
    )


def recurrent_model(**kwargs) -> ModelConfig:
    return ModelConfig(hidden_sizes=[16, 16], recurrent=True, rnn_hidden_size=8, **kwargs)


def actor(arch: str, n_agents: int = 3, discrete: bool = False):
    cls = CategoricalActor if discrete else GaussianActor
    return cls(spec(n_agents, discrete), get_architecture(arch), recurrent_model(), ARCH_CFG[arch])


def observations(env_spec: EnvSpec, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, env_spec.n_agents, env_spec.obs_dim_max) * torch.as_tensor(env_spec.obs_mask)


# ---------------------------------------------------------------------------- the core


@pytest.mark.parametrize("per_agent", [False, True])
def test_agent_gru_is_torch_gru_per_agent(per_agent):
    torch.manual_seed(0)
    gru = AgentGRU(3, 4, 5, per_agent)
    x, h0 = torch.randn(3, 6, 2, 4), torch.randn(3, 2, 5)  # (k, L, B, in), (k, B, H)
    resets = torch.zeros(6, 2)
    resets[3, 1] = 1.0
    out, last = gru(x, h0, resets)
    (w_in, b_in), (w_hid, b_hid) = gru.params.layers(None)
    for i in range(3):  # reference: one torch GRUCell per agent
        cell = torch.nn.GRUCell(4, 5)
        with torch.no_grad():
            for param, value in ((cell.weight_ih, w_in), (cell.weight_hh, w_hid)):
                param.copy_((value[i] if per_agent else value).T)
            for param, value in ((cell.bias_ih, b_in), (cell.bias_hh, b_hid)):
                param.copy_(value[i] if per_agent else value)
        h = h0[i]
        for t in range(6):
            h = cell(x[i, t], h * (1 - resets[t]).unsqueeze(-1))
            torch.testing.assert_close(out[i, t], h)
        torch.testing.assert_close(last[i], h)


@pytest.mark.parametrize("per_agent", [False, True])
def test_agent_gru_without_gradients_computes_input_gates_in_blocks_with_the_same_values(per_agent, monkeypatch):
    """Without gradients the input gates of a long sequence are computed a block of steps at a time (here blocks
    of 3 steps, the last one shorter); outputs, resets inside and across blocks and the last state are bitwise
    those of the one-matmul pass a training graph takes."""
    monkeypatch.setattr(recurrent_module, "GATE_ROWS", 3 * 4)  # 3 steps of a batch of 4
    torch.manual_seed(0)
    gru = AgentGRU(3, 5, 6, per_agent)
    x, h0 = torch.randn(3, 8, 4, 5), torch.randn(3, 4, 6)  # (k, L, B, in), (k, B, H)
    resets = torch.zeros(8, 4)
    resets[2, 0] = resets[3, 1] = resets[7, 3] = 1.0  # inside a block, at a block's start, in the last block
    calls = []
    linear = recurrent_module.agent_linear
    monkeypatch.setattr(recurrent_module, "agent_linear", lambda x, w, b: calls.append(x.shape[1]) or linear(x, w, b))
    out, last = gru(x, h0, resets)  # with gradients: one matmul for all input gates
    assert calls.count(8 * 4) == 1
    calls.clear()
    with torch.no_grad():
        blocked, blocked_last = gru(x, h0, resets)
    assert [rows for rows in calls if rows != 4] == [12, 12, 8]  # input gates of steps 0-2, 3-5, 6-7
    assert torch.equal(blocked, out.detach()) and torch.equal(blocked_last, last.detach())


@pytest.mark.parametrize("arch", ["nops", "fups", "fups_id", "hypermarl"])
@pytest.mark.parametrize("discrete", [False, True])
def test_shapes(arch, discrete):
    torch.manual_seed(0)
    pi = actor(arch, discrete=discrete)
    env_spec = spec(discrete=discrete)
    obs, hidden = observations(env_spec, 5), torch.zeros(5, 3, 8)
    avail = torch.ones(5, 3, 2, dtype=torch.bool) if discrete else None
    actions, log_probs, next_hidden = pi.act_step(obs, hidden, avail, SAMPLE)
    assert actions.shape == (5, 3, 1 if discrete else 2)
    assert log_probs.shape == (5, 3) and next_hidden.shape == (5, 3, 8)
    seq_actions = actions.unsqueeze(0).expand(4, -1, -1, -1)
    log_probs, entropy = pi.sequence_log_probs_entropy(
        observations(env_spec, 4, 5), seq_actions, hidden, torch.zeros(4, 5)
    )
    assert log_probs.shape == entropy.shape == (4, 5, 3)
    agents = torch.tensor([2])
    log_probs, _ = pi.sequence_log_probs_entropy(
        observations(env_spec, 4, 5)[:, :, agents], seq_actions[:, :, agents], hidden[:, agents], None, None, agents
    )
    assert log_probs.shape == (4, 5, 1)
    critic = AgentValueCritic(env_spec, get_architecture(arch), recurrent_model(), ARCH_CFG[arch])
    values, critic_hidden = critic.forward_sequence(torch.randn(4, 5, 6), hidden, torch.zeros(4, 5))
    assert values.shape == (4, 5, 3) and critic_hidden.shape == (5, 3, 8)


@pytest.mark.parametrize("arch", ["nops", "fups_id", "hypermarl"])
def test_reset_equals_fresh_start(arch):
    torch.manual_seed(0)
    pi, env_spec = actor(arch), spec()
    obs, hidden = observations(env_spec, 6, 4), torch.randn(4, 3, 8)
    resets = torch.zeros(6, 4)
    resets[3, 1] = 1.0  # env 1's episode ends after step 2
    out, _ = pi.net(obs, hidden, resets)
    fresh, _ = pi.net(obs[3:, 1:2], torch.zeros(1, 3, 8))
    torch.testing.assert_close(out[3:, 1:2], fresh)
    untouched, _ = pi.net(obs, hidden)
    torch.testing.assert_close(out[:3], untouched[:3])
    torch.testing.assert_close(out[:, [0, 2, 3]], untouched[:, [0, 2, 3]])
    # step by step as the runner does: zero the hidden state where an episode ended
    h = hidden
    for t in range(6):
        if t > 0:
            h = reset_hidden(h, resets[t])
        step, h = pi.net(obs[t : t + 1], h)
        torch.testing.assert_close(step[0], out[t])


def test_nops_core_is_per_agent_without_agent_loop(monkeypatch):
    torch.manual_seed(0)
    pi, env_spec = actor("nops"), spec()
    for module in (pi.net.encoder.params, pi.net.gru.params):
        assert isinstance(module, StackedParams)
        assert all(is_per_agent(p) and p.shape[0] == 3 for p in module.parameters())
    obs, hidden = observations(env_spec, 5, 2), torch.zeros(2, 3, 8)
    out, last = pi.net(obs, hidden)
    moved = obs.clone()
    moved[0, :, 0] += torch.randn(2, env_spec.obs_dim_max)  # agent 0's first observation
    out2, last2 = pi.net(moved, hidden)
    torch.testing.assert_close(out2[:, :, 1:], out[:, :, 1:])  # other agents: same outputs and memories
    torch.testing.assert_close(last2[:, 1:], last[:, 1:])
    assert not torch.allclose(out2[:, :, 0], out[:, :, 0])
    pi.net(obs, hidden)[0][:, :, 1].sum().backward()  # agent 1's outputs only touch agent 1's rows
    for param in pi.net.gru.params.parameters():
        assert param.grad[[0, 2]].abs().max() == 0 and param.grad[1].abs().max() > 0

    calls = []

    def counting(x, weight, bias):
        calls.append(weight.dim())
        return agent_linear(x, weight, bias)

    agent_linear = agent_mlp_module.agent_linear
    monkeypatch.setattr(recurrent_module, "agent_linear", counting)
    monkeypatch.setattr(agent_mlp_module, "agent_linear", counting)
    counts = []
    for n_agents in (2, 6):
        calls.clear()
        many, many_spec = actor("nops", n_agents), spec(n_agents)
        many.net(observations(many_spec, 5, 2), torch.zeros(2, n_agents, 8))
        counts.append(len(calls))
        assert set(calls) == {3}  # every layer a batched (k, in, out) weight
    assert counts[0] == counts[1] == 1 + 1 + 5 + 2  # encoder, GRU input, 5 GRU steps, 2 head layers


@pytest.mark.parametrize("arch", ["fups", "fups_id", "hypermarl"])
def test_shared_core_and_architecture_head(arch):
    pi = actor(arch)
    for module in (pi.net.encoder.params, pi.net.gru.params):
        assert isinstance(module, SharedParams)
        assert not any(is_per_agent(p) for p in module.parameters())
    if arch == "hypermarl":  # the hypernetwork generates the layers after the GRU, not the GRU
        assert isinstance(pi.net.head.params, HyperParams)
        assert pi.net.head.params.heads.dims == [(8, 16), (16, 2)]
    critic = AgentValueCritic(spec(), get_architecture(arch), recurrent_model(), ARCH_CFG[arch])
    assert critic.net.run_core_once  # one pass of the shared core for the state every agent sees


# ---------------------------------------------------------------------------- chunked BPTT


def test_sequences_layout():
    env_spec = spec()
    buffer = RolloutBuffer(env_spec, 10, 3, torch.device("cpu"), hidden_size=2, chunk_length=4)
    critic_hidden = torch.zeros(3, 3, 3, 2)  # (⌈T/L⌉, E, N, H), the learner's after a rollout
    dones = torch.zeros(10, 3)
    dones[5, 1] = dones[2, 0] = 1.0
    for t in range(10):
        code = 100.0 * t + torch.arange(3.0)  # (E,): step and env
        buffer.insert(
            code.view(3, 1, 1).expand(3, 3, env_spec.obs_dim_max),
            torch.zeros(3, 6),
            None,
            torch.zeros(3, 3, 2),
            torch.zeros(3, 3),
            torch.zeros(3, 3),
            dones[t],
            code.view(3, 1, 1).expand(3, 3, 2),
        )
        if t % 4 == 0:  # the critic's chunk-start hidden states, computed by the learner after a rollout
            critic_hidden[t // 4] = -code.view(3, 1, 1).expand(3, 3, 2)
    seq = buffer.sequences(torch.zeros(10, 3, 3), torch.zeros(10, 3, 3), torch.zeros(10, 3, 3), critic_hidden)
    assert seq.length == 4 and seq.n_chunks == 9  # ⌈10 / 4⌉ chunks per env
    for j in range(3):
        for e in range(3):
            c = j * 3 + e
            assert seq.actor_hidden[c, 0, 0] == 100 * 4 * j + e and seq.critic_hidden[c, 0, 0] == -(100 * 4 * j + e)
            for step in range(4):
                t = 4 * j + step
                assert bool(seq.valid[step, c]) == (t < 10)
                if t < 10:
                    assert seq.obs[step, c, 0, 0] == 100 * t + e
                    assert seq.resets[step, c] == (dones[t - 1, e] if t > 0 else 0)
    batch = seq.actor_batch(torch.tensor([7, 2]), torch.tensor([1]))
    assert batch.obs.shape == (4, 2, 1, env_spec.obs_dim_max) and batch.hidden.shape == (2, 1, 2)
    assert batch.log_probs.shape == (4 + 2, 1)  # chunk 7 (env 1's last) holds 2 real steps


@pytest.mark.parametrize(("algo", "arch"), [("mappo", "nops"), ("happo", "fups_id"), ("mappo", "hypermarl")])
def test_chunked_evaluation_reproduces_rollout(algo, arch, tmp_path):
    """Chunks started from stored hidden states, reset at episode ends inside them, give the rollout's
    log-probs and values exactly (ratio 1 before any update), also with padded chunks and one agent."""
    cfg, _ = build_config(
        algo,
        arch,
        "mamujoco",
        {
            "recurrent": "true",
            "rnn_hidden_size": "8",
            "hidden_sizes": "16,16",
            "episode_length": "10",
            "data_chunk_length": "4",
            "episode_limit": "7",
            "n_rollout_threads": "2",
            "n_workers": "0",
            "actor_num_mini_batch": "2",
            "critic_num_mini_batch": "2",
        },
        use_tuned=False,
    )
    runner = OnPolicyRunner(cfg, tmp_path)
    try:
        learner, buffer = runner.learner, runner.buffer
        runner.collect()
        learner.value_rollout(buffer)
        runner.collect()  # the second rollout starts from carried-over hidden states
        carried = learner.critic_carry.clone()
        critic_hidden = learner.value_rollout(buffer).chunk_hidden
        assert buffer.actor_hidden[0].abs().sum() > 0
        for j in range(1, buffer.actor_hidden.shape[0]):  # chunk starts right after an episode end hold zeros
            ended = buffer.dones[4 * j - 1].bool()
            assert (buffer.actor_hidden[j][ended] == 0).all() and (critic_hidden[j][ended] == 0).all()
            assert (buffer.actor_hidden[j][~ended].abs().sum((-1, -2)) > 0).all()
        assert buffer.dones.sum() > 0
        learner.critic_carry = carried  # prepare values the rollout again, from the same carried states
        seq = learner.prepare(buffer).sequences
        assert seq.valid is not None  # 10 steps in chunks of 4: padded
        with torch.no_grad():
            for batch in seq.actor_minibatches(2, learner.rng):
                _, _, diagnostics = learner.surrogate(batch)
                ratio = diagnostics["ratio"]
                torch.testing.assert_close(ratio, torch.ones_like(ratio))
            one = seq.actor_batch(seq.all_chunks(), torch.tensor([1]))
            log_probs = one.flat(learner.batch_log_probs_entropy(one)[0])
            torch.testing.assert_close(log_probs, one.log_probs)
            assert log_probs.shape == (10 * 2, 1)
            for batch in seq.critic_minibatches(2, learner.rng):
                values = learner.value_norm.denormalize(learner.batch_values(batch))
                torch.testing.assert_close(values, batch.values)
        (metrics,) = learner.train(buffer)  # one seed: one dict
        assert np.isfinite(metrics["losses/critic/value_loss"])
    finally:
        runner.close()


# ---------------------------------------------------------------------------- the CLI

SMOKE_ENVS = {"matrix": None, "mamujoco": None, "smacv2": "jaxmarl"}
SMOKE_EXTRA = {"smacv2": ["--max_steps", "10"]}


@pytest.mark.parametrize("env", sorted(SMOKE_ENVS))
@pytest.mark.parametrize("arch", ["nops", "fups_id", "hypermarl"])
@pytest.mark.parametrize("algo", ["mappo", "happo"])
def test_recurrent_smoke(algo, arch, env, tmp_path):
    if SMOKE_ENVS[env]:
        pytest.importorskip(SMOKE_ENVS[env])
    args = [*tiny_args(algo, env), *SMOKE_EXTRA.get(env, [])]
    recurrent = ["--recurrent", "true", "--rnn_hidden_size", "8", "--data_chunk_length", "4"]
    run_dir = run_train(tmp_path, "--algo", algo, "--arch", arch, "--env", env, *args, *recurrent)
    rows = read_progress(run_dir)
    assert rows[-1]["eval/episode_return"] != ""
    assert np.isfinite(float(rows[-1]["losses/critic/value_loss"]))
    if (algo, arch, env) == ("mappo", "nops", "matrix"):  # a recurrent checkpoint evaluates from the CLI
        assert evaluate_cli(["--checkpoint", str(run_dir), "--episodes", "2"]) == 0


def test_recurrent_resume(tmp_path):
    """Checkpoints need no hidden states: a resumed run restarts from fresh episodes and continues the count."""
    run_dir = run_train(
        tmp_path,
        "--algo",
        "happo",
        "--arch",
        "nops",
        "--env",
        "matrix",
        "--recurrent",
        "true",
        *tiny_args("happo", "matrix"),
    )
    assert train(["--resume", str(run_dir), "--num_env_steps", "80"]) == 0
    assert int(read_progress(run_dir)[-1]["env_steps"]) == 80


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "hasac", "--arch", "nops", "--env", "matrix"], "feed-forward policies only"),
        (["--algo", "maddpg", "--arch", "hypermarl", "--env", "mamujoco"], "feed-forward policies only"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--snd_interval", "10"], "snd_interval"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--actor_num_mini_batch", "5"], "sequences"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--rnn_hidden_size", "0"], "rnn_hidden_size"),
    ],
)
def test_impossible_recurrent_settings_exit_2(args, message, tmp_path, capsys):
    tiny = ["--n_rollout_threads", "2", "--num_env_steps", "20"]  # 2 envs × 10 steps: 2 sequences
    assert train([*args, *tiny, "--recurrent", "true", "--log_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not list(tmp_path.iterdir())  # refused before any run folder is made
