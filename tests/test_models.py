"""Batched agent networks, masked distributions and the agent-aware optimiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harl.config import EmptyConfig, ModelConfig
from harl.models.agent_mlp import (
    AgentMLP,
    StackedParams,
    agent_linear,
    agent_rows,
    mark_per_agent,
    masked_layer_norm,
    orthogonal_stack,
)
from harl.models.policies import GREEDY, SAMPLE, CategoricalActor, GaussianActor
from harl.optim import AgentAdam, clip_grad_norm_agentwise
from harl.registry import get_architecture, load_extensions
from harl.spec import EnvSpec

load_extensions()


def hetero_spec(discrete: bool = False) -> EnvSpec:
    """Three agents with observation sizes 5, 3, 4 and action sizes 2, 3, 1."""
    act_dims = (2, 3, 1)
    low = -np.ones((3, 3), dtype=np.float32) * np.array([[1.0], [0.4], [2.0]], dtype=np.float32)
    return EnvSpec(
        agent_ids=("a", "b", "c"),
        obs_dims=(5, 3, 4),
        state_dim=6,
        action_type="discrete" if discrete else "continuous",
        act_dims=act_dims,
        act_low=low,
        act_high=-low,
    )


def model_cfg() -> ModelConfig:
    return ModelConfig(hidden_sizes=[16, 16])


def test_stacked_linear_equals_per_agent_matmul():
    x = torch.randn(7, 4, 5)  # (B, N, in)
    w, b = torch.randn(4, 5, 3), torch.randn(4, 3)
    expected = torch.stack([x[:, i] @ w[i] + b[i] for i in range(4)], dim=1)
    torch.testing.assert_close(agent_linear(x.transpose(0, 1), w, b).transpose(0, 1), expected)
    torch.testing.assert_close(agent_linear(x, w[0], b[0]), x @ w[0] + b[0])


@pytest.mark.parametrize(
    "param",
    [orthogonal_stack(5, 4, 3, 1.0), torch.randn(5, 3), torch.randn(5, 2, 3, 4).permute(0, 3, 1, 2)],
    ids=["transposed weight", "bias rows", "permuted"],
)
def test_agent_rows_gathers_rows_and_sends_back_a_gradient_laid_out_like_the_parameter(param):
    param = torch.nn.Parameter(param)
    agents = torch.tensor([3, 1])
    rows = agent_rows(param, agents)
    torch.testing.assert_close(rows, param.detach()[agents])
    weights = torch.randn(rows.shape)
    (rows * weights).sum().backward()
    expected = torch.zeros_like(param)
    expected[agents] = weights
    torch.testing.assert_close(param.grad, expected)
    assert param.grad.stride() == param.stride()  # autograd kept it as it came: no re-layout copy
    assert agent_rows(param, None) is param


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "leaky_relu", "silu"])
def test_agent_mlp_values_and_gradients_match_a_per_agent_reference(activation):
    """The batched MLP (in-place activations included) against plain per-agent functional layers."""
    torch.manual_seed(0)
    functional = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "elu": torch.nn.functional.elu,
        "leaky_relu": torch.nn.functional.leaky_relu,
        "silu": torch.nn.functional.silu,
    }[activation]
    params = StackedParams(3, [(4, 8), (8, 8), (8, 2)], [1.0, 1.0, 1.0])
    net = AgentMLP(params, 3, torch.ones(3, 4, dtype=torch.bool), activation, layer_norm=False, feature_norm=False)
    x = torch.randn(5, 3, 4)
    net(x).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    ws = [w.detach().clone().requires_grad_() for w in params.weights]
    bs = [b.detach().clone().requires_grad_() for b in params.biases]
    outs = []
    for i in range(3):
        h = x[:, i]
        for layer, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w[i] + b[i]
            h = functional(h) if layer < 2 else h
        outs.append(h)
    expected = torch.stack(outs, 1)
    torch.testing.assert_close(net(x), expected)
    expected.square().sum().backward()
    for got, reference in zip(grads, [*ws, *bs], strict=True):  # net.parameters(): weights, then biases
        torch.testing.assert_close(got, reference.grad)


@pytest.mark.parametrize("agents", [None, [2], [2, 0]], ids=["all", "one", "two"])
@pytest.mark.parametrize("feature_norm", [False, True], ids=["raw", "feature_norm"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "leaky_relu"])
@pytest.mark.parametrize("arch", ["nops", "fups", "fups_id", "hypermarl"])
def test_a_replayed_pass_is_the_recomputed_pass_in_value_and_gradient(arch, activation, feature_norm, agents):
    """`AgentMLP.replay` of a recorded forward: the same outputs, and the same gradient for every parameter (laid
    out as autograd lays it out), as recomputing the selected agents' pass, for any weight source."""
    torch.manual_seed(0)
    spec = hetero_spec()
    cfg = ModelConfig(hidden_sizes=[16, 16], activation=activation, layer_norm=False, feature_norm=feature_norm)
    net = GaussianActor(spec, get_architecture(arch), cfg, get_architecture(arch).config_cls()).net
    assert net.replayable
    obs = torch.randn(8, 3, 5) * torch.as_tensor(spec.obs_mask)  # (B, N, O), padded entries zero
    selected = None if agents is None else torch.tensor(agents)
    own_obs = obs if selected is None else obs[:, selected]
    weights = torch.randn(8, 3 if selected is None else len(agents), 3)  # a loss's weights on the outputs
    expected = net(own_obs, selected)
    (expected * weights).sum().backward()
    expected_grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    replayed = net.replay(net.record(obs), selected)
    torch.testing.assert_close(replayed, expected)
    (replayed * weights).sum().backward()
    for name, param in net.named_parameters():
        torch.testing.assert_close(param.grad, expected_grads[name], msg=name)
        assert param.grad.stride() == expected_grads[name].stride(), name


@pytest.mark.parametrize("model", [{"layer_norm": True}, {"activation": "silu"}], ids=["layer_norm", "silu"])
def test_a_network_replay_cannot_differentiate_says_so(model):
    cfg = ModelConfig(hidden_sizes=[16], **{"layer_norm": False, **model})
    net = GaussianActor(hetero_spec(), get_architecture("nops"), cfg, EmptyConfig()).net
    assert not net.replayable
    with pytest.raises(ValueError, match="replay needs"):
        net.record(torch.zeros(2, 3, 5))


@pytest.mark.parametrize("arch", ["nops", "fups", "fups_id"])
def test_agent_outputs_ignore_padding_and_other_agents(arch):
    torch.manual_seed(0)
    spec = hetero_spec()
    actor = GaussianActor(spec, get_architecture(arch), model_cfg(), EmptyConfig())
    obs = torch.randn(8, 3, 5) * torch.as_tensor(spec.obs_mask)
    mean = actor.net(obs)
    noisy = obs.clone()
    noisy[:, 1, 3:] = 100.0  # agent 1's padding
    noisy[:, 0] += 1.0  # agent 0's real entries
    moved = actor.net(noisy)
    torch.testing.assert_close(moved[:, 1:], mean[:, 1:])  # agents 1, 2 unaffected
    actions, log_probs = actor.act(obs, None, SAMPLE)
    assert (actions[:, 2, 1:] == 0).all() and (actions[:, 1, 3:] == 0).all()  # padded dims never sampled
    env_actions = actor.env_actions(actions * 10)
    assert env_actions[:, 1].abs().max() <= 0.4 + 1e-6 and env_actions[:, 2].abs().max() <= 2.0 + 1e-6


def test_gaussian_log_prob_covers_own_dims_only():
    torch.manual_seed(0)
    spec = hetero_spec()
    actor = GaussianActor(spec, get_architecture("nops"), model_cfg(), EmptyConfig())
    obs = torch.randn(6, 3, 5) * torch.as_tensor(spec.obs_mask)
    actions, log_probs = actor.act(obs, None, SAMPLE)
    lp, entropy = actor.log_probs_entropy(obs, actions)
    torch.testing.assert_close(lp, log_probs)
    mean, log_std = actor._params(obs, None)
    for i, dims in enumerate(spec.act_dims):
        dist = torch.distributions.Normal(mean[:, i, :dims], log_std[:, i, :dims].exp())
        torch.testing.assert_close(lp[:, i], dist.log_prob(actions[:, i, :dims]).sum(-1))
        torch.testing.assert_close(entropy[:, i], dist.entropy().sum(-1))


def test_gaussian_deterministic_act_is_the_mean_with_its_density():
    torch.manual_seed(0)
    spec = hetero_spec()
    actor = GaussianActor(spec, get_architecture("nops"), model_cfg(), EmptyConfig())
    obs = torch.randn(6, 3, 5) * torch.as_tensor(spec.obs_mask)
    actions, log_probs = actor.act(obs, None, GREEDY)
    mean, _ = actor._params(obs, None)
    torch.testing.assert_close(actions, mean * actor.act_mask)
    torch.testing.assert_close(log_probs, actor.log_probs_entropy(obs, actions)[0])


def test_masked_layer_norm_equals_layer_norm_of_real_entries():
    torch.manual_seed(0)
    dims = (5, 3, 4)
    mask = torch.zeros(3, 1, 5)
    for i, d in enumerate(dims):
        mask[i, 0, :d] = 1.0
    x = torch.randn(3, 7, 5) * 4.0 + 2.0  # (k, B, d), padding not zero
    out = masked_layer_norm(x, mask)
    for i, d in enumerate(dims):
        torch.testing.assert_close(out[i, :, :d], torch.nn.functional.layer_norm(x[i, :, :d], (d,)))
        assert (out[i, :, d:] == 0).all()


def test_categorical_respects_own_actions_and_avail_masks():
    torch.manual_seed(0)
    spec = hetero_spec(discrete=True)
    actor = CategoricalActor(spec, get_architecture("fups_id"), model_cfg(), EmptyConfig())
    obs = torch.randn(500, 3, 5) * torch.as_tensor(spec.obs_mask)
    avail = torch.ones(500, 3, 3, dtype=torch.bool)
    avail[:, 1, 0] = False
    actions, _ = actor.act(obs, avail, SAMPLE)
    assert actions[:, 0].max() <= 1 and (actions[:, 2] == 0).all() and (actions[:, 1] != 0).all()
    probs = actor.distribution(obs, avail).probs
    torch.testing.assert_close(probs.sum(-1), torch.ones(500, 3))
    _, entropy = actor.log_probs_entropy(obs, actions, avail)
    assert torch.isfinite(entropy).all() and (entropy[:, 2] == 0).all()


def test_agent_adam_moves_only_selected_rows_and_matches_adam():
    torch.manual_seed(0)
    spec = hetero_spec()
    actor = GaussianActor(spec, get_architecture("nops"), model_cfg(), EmptyConfig())
    reference = GaussianActor(spec, get_architecture("nops"), model_cfg(), EmptyConfig())
    reference.load_state_dict(actor.state_dict())
    ours, theirs = AgentAdam(actor.parameters(), lr=1e-2), torch.optim.Adam(reference.parameters(), lr=1e-2)
    obs = torch.randn(4, 3, 5) * torch.as_tensor(spec.obs_mask)
    for _ in range(3):
        for model, opt in ((actor, ours), (reference, theirs)):
            opt.zero_grad()
            model.net(obs).pow(2).sum().backward()
            opt.step()
    for p, q in zip(actor.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)
    before = [p.detach().clone() for p in actor.parameters()]
    ours.zero_grad()
    actor.net(obs).pow(2).sum().backward()  # every agent has a gradient...
    ours.step(agents=torch.tensor([1]))  # ...but only agent 1 moves
    for p, old in zip(actor.parameters(), before):
        if p.grad is None:  # the log-std gets no gradient from the mean
            continue
        assert not torch.equal(p[1], old[1])
        torch.testing.assert_close(p[[0, 2]], old[[0, 2]], rtol=0, atol=0)


def test_agentwise_clipping_clips_each_agent_separately():
    a = mark_per_agent(torch.nn.Parameter(torch.zeros(2, 3)))
    shared = torch.nn.Parameter(torch.zeros(4))
    a.grad = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])
    shared.grad = torch.tensor([0.0, 0.0, 6.0, 8.0])
    per_agent, shared_norm = clip_grad_norm_agentwise([a, shared], 1.0, n_agents=2)
    torch.testing.assert_close(per_agent, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(a.grad.norm(dim=1), torch.tensor([1.0, 0.5]), atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.grad.norm(), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert shared_norm.item() == pytest.approx(10.0)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("arch", ["nops", "hypermarl"])
def test_a_shared_critic_is_one_value_network_for_every_agent(arch, recurrent):
    """`--critic shared` (HARL's V(s)): one plain network on the state whatever the architecture, so its size does
    not grow with the agents, every agent gets its value, and a population stacks one per seed."""
    from harl.models.policies import AgentValueCritic

    model = ModelConfig(hidden_sizes=[16, 16], recurrent=recurrent, rnn_hidden_size=8)
    entry = get_architecture(arch)
    torch.manual_seed(0)
    critic = AgentValueCritic(hetero_spec(), entry, model, entry.config_cls(), shared=True)
    single = AgentValueCritic(
        EnvSpec(
            agent_ids=("a",),
            obs_dims=(5,),
            state_dim=6,
            action_type="continuous",
            act_dims=(2,),
            act_low=-np.ones((1, 2), dtype=np.float32),
            act_high=np.ones((1, 2), dtype=np.float32),
        ),
        get_architecture("fups"),
        model,
        EmptyConfig(),
    )
    assert sum(p.numel() for p in critic.parameters()) == sum(p.numel() for p in single.parameters())
    states = torch.randn(7, 6)
    if recurrent:
        values, hidden = critic.forward_sequence(states.unsqueeze(0), torch.zeros(7, 3, 8))
        values = values[0]
        assert hidden.shape == (7, 3, 8) and torch.equal(hidden[:, 0], hidden[:, 2])
    else:
        values = critic(states)
    assert (
        values.shape == (7, 3) and torch.equal(values[:, 0], values[:, 1]) and torch.equal(values[:, 0], values[:, 2])
    )
    population = AgentValueCritic.population([critic, critic])
    pair = torch.stack([states, 2 * states], dim=1)  # (B, P, S): each seed's own state
    if recurrent:
        both, _ = population.forward_sequence(pair.unsqueeze(0), torch.zeros(7, 6, 8))
        both = both[0]
    else:
        both = population(pair)
    assert both.shape == (7, 6)
    torch.testing.assert_close(both[:, :3], values)
