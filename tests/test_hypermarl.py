"""hypermarl_ext: generated-layer shapes and init statistics, caching, linear ≡ NoPS, heterogeneous masking,
parameter counts, bad input, checkpoints, and learning on the 8-agent matrix games."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import yaml

from harl.cli import evaluate_main, train, train_main
from harl.config import ModelConfig
from harl.errors import ConfigError
from harl.models.agent_mlp import AgentMLP, StackedParams, is_per_agent
from harl.models.net_spec import NetSpec
from harl.models.policies import SAMPLE, AgentValueCritic, CategoricalActor, GaussianActor
from harl.optim import AgentAdam
from harl.registry import ALGORITHMS, get_architecture, load_extensions
from harl.spec import EnvSpec
from harl.utils.checkpoint import load_checkpoint
from hypermarl_ext import count_parameters
from hypermarl_ext.architectures import generated_params
from hypermarl_ext.config import CoupledHyperConfig, HyperMARLConfig, LinearHyperConfig
from hypermarl_ext.hypernet import LinearHyperParams, MLPHyperParams

from .conftest import read_progress, run_script, run_train
from .test_smoke import tiny_args

load_extensions()
HYPER_ARCHS = ("hypermarl", "hypermarl_linear", "hypermarl_coupled")
RELU_GAIN = math.sqrt(2.0)


def build(
    arch: str,
    n: int = 5,
    in_dim: int = 6,
    out_dim: int = 3,
    hidden=(32, 16),
    out_gain: float = 0.01,
    role: str = "actor",
    in_mask=None,
    model: ModelConfig | None = None,
    **options,
):
    entry = get_architecture(arch)
    mask = torch.ones(n, in_dim, dtype=torch.bool) if in_mask is None else in_mask
    model = model or ModelConfig(hidden_sizes=list(hidden))
    spec = NetSpec(n, in_dim, out_dim, tuple(hidden), out_gain, mask, role, model)
    return entry.build_net(spec=spec, arch_cfg=entry.config_cls(**options))


def generated(net) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every agent's generated (weight (n, in, out), bias (n, out)) per layer."""
    with torch.no_grad():
        if isinstance(net, AgentMLP):
            return net.params.layers(None)
        z = net.trunk(torch.cat([net.embedding(), torch.randn(net.embedding.weight.shape[0], net.dims[0][0])], -1))
        return net.heads([z] * len(net.dims), [z] * len(net.dims))


def hetero_spec() -> EnvSpec:
    """Three agents with different observation sizes (5, 3, 4) and action sizes (2, 1, 3)."""
    act_dims = (2, 1, 3)
    return EnvSpec(
        agent_ids=("a", "b", "c"),
        obs_dims=(5, 3, 4),
        state_dim=7,
        action_type="continuous",
        act_dims=act_dims,
        act_low=-np.ones((3, 3), np.float32),
        act_high=np.ones((3, 3), np.float32),
    )


# ---------------------------------------------------------------------------- shapes and init


@pytest.mark.parametrize("arch", HYPER_ARCHS)
def test_output_shapes_and_agent_selection(arch):
    net = build(arch)
    x = torch.randn(7, 5, 6)  # (B, n, in)
    out = net(x)
    assert out.shape == (7, 5, 3)
    agents = torch.tensor([3, 1])
    torch.testing.assert_close(net(x[:, agents], agents), out[:, agents])
    with torch.no_grad():  # the cached path gives the same values
        torch.testing.assert_close(net(x[:, agents], agents), out[:, agents].detach())
        torch.testing.assert_close(net(x), out.detach())


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("hypermarl", {"hypernet_init": "paper"}),
        ("hypermarl", {"hypernet_init": "paper", "trunk": "shared"}),
        ("hypermarl", {"hypernet_init": "paper", "embedding": "onehot"}),
        ("hypermarl", {"hypernet_init": "paper", "embedding_dim": 4, "hypernet_hidden_dims": [64, 32]}),
        ("hypermarl_linear", {}),
        ("hypermarl_linear", {"shared_bias": False}),
        ("hypermarl_coupled", {}),
    ],
)
@pytest.mark.parametrize(("activation", "hidden_gain"), [("relu", RELU_GAIN), ("tanh", 5.0 / 3.0)])
@pytest.mark.parametrize(("role", "out_gain"), [("actor", 0.01), ("critic", 1.0)])
def test_paper_init_gives_independent_orthogonal_layers_and_zero_biases(
    arch, options, activation, hidden_gain, role, out_gain
):
    n = 6
    model = ModelConfig(hidden_sizes=[32, 16], activation=activation)
    net = build(arch, n=n, in_dim=10, out_dim=4, out_gain=out_gain, role=role, model=model, **options)
    layers = generated(net)
    assert [tuple(w.shape) for w, _ in layers] == [(n, 10, 32), (n, 32, 16), (n, 16, 4)]
    for (weight, bias), gain in zip(layers, [hidden_gain, hidden_gain, out_gain], strict=True):
        assert torch.count_nonzero(bias) == 0
        fan_in, fan_out = weight.shape[1:]
        # orthonormal columns (fan_in >= fan_out) or rows, scaled by the gain, for every agent
        gram = weight.transpose(1, 2) @ weight if fan_in >= fan_out else weight @ weight.transpose(1, 2)
        eye = torch.eye(min(fan_in, fan_out)).expand_as(gram) * gain**2
        torch.testing.assert_close(gram, eye, atol=1e-4 * gain**2, rtol=0)
        # independent across agents: no two agents share a matrix, cross-agent correlations are small
        flat = weight.reshape(n, -1) / weight.reshape(n, -1).norm(dim=1, keepdim=True)
        cross = (flat @ flat.T - torch.eye(n)).abs().max()
        assert cross < 0.6, cross


# ---------------------------------------------------------------------------- the authors' structure (defaults)


def official_count(n: int, emb: int, hidden: int, dims: list[tuple[int, int]], trunk: str = "per_head") -> int:
    """Trainable parameters of the hypernetwork of one network: embeddings, generators and heads."""
    heads = sum((hidden * i * o + i * o) + (hidden * o + o) for i, o in dims)
    generators = (2 * len(dims) if trunk == "per_head" else 1) * (emb * hidden + hidden)
    return n * emb + generators + heads


@pytest.mark.parametrize("trunk", ["per_head", "shared"])
def test_parameter_count_of_the_default_structure(trunk):
    n, emb, hidden = 5, 8, 64
    net = build("hypermarl", n=n, in_dim=6, out_dim=3, hidden=(32,), trunk=trunk)
    dims = [(6, 32), (32, 3)]
    assert sum(p.numel() for p in net.parameters()) == official_count(n, emb, hidden, dims, trunk)
    if trunk == "per_head":  # one generator MLP (E -> H) per weight head and per bias head: 2 per layer
        assert net.params.generators.weights[0].shape == (4, emb, hidden)
    # the same count through count_parameters (actor: + per-agent log-stds; critic on the 10-dim state)
    sizes = {"n_agents": n, "obs_dim": 6, "act_dim": 3, "state_dim": 10, "model": {"hidden_sizes": [32]}}
    counts = count_parameters("hypermarl", **sizes, arch_options={"trunk": trunk})
    assert counts["actor"] == official_count(n, emb, hidden, dims, trunk) + n * 3
    assert counts["critic"] == official_count(n, emb, hidden, [(10, 32), (32, 1)], trunk)
    shared = count_parameters("hypermarl", **sizes, arch_options={"trunk": trunk, "share_embedding": True})
    assert shared["actor"] == counts["actor"] and shared["critic"] == counts["critic"] - n * emb


@pytest.mark.parametrize(("role", "out_gain"), [("actor", 0.01), ("critic", 1.0)])
def test_official_init_orthogonal_head_rows_zero_bias_heads_lecun_generators(role, out_gain):
    torch.manual_seed(0)
    n, emb, hidden = 6, 8, 64
    net = build("hypermarl", n=n, in_dim=10, out_dim=4, hidden=(32, 16), out_gain=out_gain, role=role)
    params: MLPHyperParams = net.params
    # embeddings: orthogonal rows of norm √2 (n ≤ E)
    gram = params.embedding.weight @ params.embedding.weight.T
    torch.testing.assert_close(gram, 2.0 * torch.eye(n), atol=1e-5, rtol=0)
    for (fan_in, fan_out), gain, w_head, b_head in zip(
        [(10, 32), (32, 16), (16, 4)],
        [RELU_GAIN, RELU_GAIN, out_gain],
        params.heads.weight_heads,
        params.heads.bias_heads,
    ):
        assert w_head.weight.shape == (fan_in * fan_out, hidden)
        # every row of the authors' (H, in·out) kernel (a column here), as a layer matrix, is orthogonal at the gain
        q = w_head.weight.T.reshape(hidden, fan_out, fan_in)  # (H, out, in)
        small = min(fan_in, fan_out)
        gram = q @ q.transpose(1, 2) if fan_out <= fan_in else q.transpose(1, 2) @ q
        torch.testing.assert_close(gram, gain**2 * torch.eye(small).expand(hidden, -1, -1), atol=1e-5, rtol=0)
        flat = q.reshape(hidden, -1) / q.reshape(hidden, -1).norm(dim=1, keepdim=True)  # independent rows
        assert (flat @ flat.T - torch.eye(hidden)).abs().max() < 0.6
        assert torch.count_nonzero(w_head.bias) == 0
        assert torch.count_nonzero(b_head.weight) == 0 and torch.count_nonzero(b_head.bias) == 0
    # generator MLPs: LeCun normal (variance 1/E, truncated at 2 std), zero biases
    weights = params.generators.weights[0]
    assert weights.var().item() == pytest.approx(1.0 / emb, rel=0.1)
    assert weights.abs().max().item() <= 2.0 / math.sqrt(emb) / 0.8796 + 1e-6
    assert torch.count_nonzero(params.generators.biases[0]) == 0
    # generated: zero biases and Σ_h z_ih·Q_h, larger than an orthogonal layer by about √(H/E) (not "fixed")
    layers = generated(net)
    assert all(torch.count_nonzero(b) == 0 for _, b in layers)
    weight = layers[0][0]  # (n, 10, 32)
    ratio = weight.norm(dim=(1, 2)).mean() / (RELU_GAIN * math.sqrt(10))
    assert 0.5 * math.sqrt(hidden / emb) < ratio < 2.0 * math.sqrt(hidden / emb)


def test_per_head_generators_are_independent():
    """Weight and bias heads of every layer have their own generator MLP: only the context is shared."""
    net = build("hypermarl", n=4, in_dim=6, out_dim=3, hidden=(8,))
    params: MLPHyperParams = net.params
    with torch.no_grad():  # give the bias heads something to say, then perturb the bias generators only
        for b_head in params.heads.bias_heads:
            b_head.weight.normal_()
    before = [(w.detach().clone(), b.detach().clone()) for w, b in params.generate(None)]
    with torch.no_grad():
        params.generators.weights[0][2:].add_(1.0)  # MLPs 2, 3: the bias heads of layers 0, 1
    after = params.generate(None)
    for (w0, b0), (w1, b1) in zip(before, after, strict=True):
        assert torch.equal(w0, w1) and not torch.equal(b0, b1)
    loss = params.generate(None)[0][0].sum()  # layer 0's weights: only generator 0 and its head get gradients
    grads = torch.autograd.grad(loss, [params.generators.weights[0]])[0]
    assert grads[0].abs().sum() > 0 and torch.count_nonzero(grads[1:]) == 0


def test_shared_embedding_is_owned_by_the_actor_optimiser(tmp_path):
    spec = hetero_spec()
    load_extensions()
    from harl.algos.base import OnPolicyLearner
    from harl.experiment import build_config

    cfg, _ = build_config(
        "mappo", "hypermarl", "mamujoco", {"share_embedding": "true", "hidden_sizes": "16"}, use_tuned=False
    )
    learner = ALGORITHMS["mappo"].learner_cls(spec, cfg, get_architecture("hypermarl"), torch.device("cpu"))
    assert isinstance(learner, OnPolicyLearner)
    actor_params, critic_params = generated_params(learner.actor), generated_params(learner.critic)
    embedding = actor_params.embedding.weight
    critic_tensors = {id(p) for group in learner.critic_optimizer.param_groups for p in group["params"]}
    assert id(embedding) not in critic_tensors and all(embedding is not p for p in learner.critic.parameters())
    assert id(embedding) in {id(p) for group in learner.actor_optimizer.param_groups for p in group["params"]}
    assert not any("embedding" in key for key in learner.critic.state_dict())
    torch.testing.assert_close(critic_params.context(None), embedding.detach())
    # the critic's loss does not move it; the actor's step does, and the critic then reads the new values
    state = torch.randn(5, spec.state_dim)
    learner.critic(state).sum().backward()
    assert embedding.grad is None
    with torch.no_grad():
        values_before = learner.critic(state)
        embedding.add_(0.5)  # what an optimiser step does: an in-place update of the actor's tensor
        assert not torch.allclose(learner.critic(state), values_before)  # not a stale cached generation
    assert critic_params.diagnostics() == {}


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("hypermarl", {}),
        ("hypermarl", {"trunk": "shared"}),
        ("hypermarl", {"embedding": "onehot"}),
        ("hypermarl_linear", {}),
    ],
)
def test_hyperfan_init_variances(arch, options):
    torch.manual_seed(0)
    n, fan_in = 32, 64
    net = build(arch, n=n, in_dim=fan_in, out_dim=48, hidden=(64,), out_gain=1.0, hypernet_init="hyperfan", **options)
    for (weight, bias), gain in zip(generated(net), [RELU_GAIN, 1.0], strict=True):
        expected_w = gain**2 / (2 * weight.shape[1])
        assert weight.var().item() == pytest.approx(expected_w, rel=0.2)
        assert bias.var().item() == pytest.approx(gain**2 / 2, rel=0.3)


def test_paper_init_with_more_agents_than_features_keeps_the_gain():
    n = 96  # more agents than the 64 hypernetwork features: orthogonality can only be approximate
    net = build("hypermarl", n=n, in_dim=16, out_dim=16, hidden=(16,), out_gain=1.0, hypernet_init="paper")
    for (weight, _), gain in zip(generated(net), [RELU_GAIN, 1.0], strict=True):
        mean_sq_norm = weight.pow(2).sum((1, 2)).mean()
        assert mean_sq_norm.item() == pytest.approx(16 * gain**2, rel=1e-4)
        assert torch.isfinite(weight).all()


def test_same_seed_same_networks():
    def make(seed: int):
        torch.manual_seed(seed)
        return build("hypermarl")

    a, b, c = make(3), make(3), make(4)
    for (key, value), other in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(value, other), key
    assert not torch.equal(a.params.embedding.weight, c.params.embedding.weight)


def test_coupled_equals_hypermarl_at_init_then_couples_the_observation():
    torch.manual_seed(0)
    coupled = build("hypermarl_coupled", n=4, in_dim=6, hidden=(80, 8), hypernet_hidden_dims=[16])
    decoupled = build(
        "hypermarl", n=4, in_dim=6, hidden=(80, 8), hypernet_hidden_dims=[16], trunk="shared", hypernet_init="paper"
    )
    params: MLPHyperParams = decoupled.params
    with torch.no_grad():  # the same embeddings, trunk (without its observation columns) and heads
        params.embedding.weight.copy_(coupled.embedding.weight)
        params.trunk[0].weight.copy_(coupled.trunk[0].weight[:, :8])
        params.trunk[0].bias.copy_(coupled.trunk[0].bias)
        params.heads.load_state_dict(coupled.heads.state_dict())
    x = torch.randn(9, 4, 6)
    torch.testing.assert_close(coupled(x), decoupled(x))  # covers both per-sample paths (in 6 <= 16 < 80)
    with torch.no_grad():
        coupled.trunk[0].weight[:, 8:].normal_()  # once learned, the generated layers depend on x
    out = coupled(x)
    assert not torch.allclose(out, decoupled(x))
    # what it computes: θ_i(x) = heads(trunk([e_i, x])), then the target MLP on x with θ_i(x), per sample
    norm = torch.nn.functional.layer_norm
    for b, i in ((0, 0), (5, 3)):
        h = norm(x[b, i], (6,))
        z = coupled.trunk(torch.cat([coupled.embedding.weight[i], h]))
        generated_layers = coupled.heads([z[None]] * 3, [z[None]] * 3)
        for index, ((w, bias), (fan_in, fan_out)) in enumerate(zip(generated_layers, coupled.dims, strict=True)):
            h = h @ w[0] + bias[0]
            assert w.shape == (1, fan_in, fan_out)
            if index < len(coupled.dims) - 1:
                h = norm(torch.relu(h), (fan_out,))
        torch.testing.assert_close(h, out[b, i])


# ---------------------------------------------------------------------------- caching


def test_cache_reused_without_grad_and_refreshed_by_any_update():
    net = build("hypermarl")
    params: MLPHyperParams = net.params
    x = torch.randn(4, 5, 6)
    with torch.no_grad():
        first = params.layers(None)
        assert params.layers(None) is first  # cache hit
        assert params.layers(torch.tensor([2]))[0][0].shape == (1, 6, 32)
    fresh = [(w.detach(), b.detach()) for w, b in params.generate(None)]  # with grad: never cached
    for (w, b), (fw, fb) in zip(first, fresh, strict=True):
        torch.testing.assert_close(w, fw)
        torch.testing.assert_close(b, fb)

    def check_refreshed():
        with torch.no_grad():
            cached = net(x)
        torch.testing.assert_close(cached, net(x).detach())

    optimizer = AgentAdam(net.parameters(), lr=0.1)
    net(x).pow(2).sum().backward()
    optimizer.step(agents=torch.tensor([1]))  # a sequential (HA) step: rows of agent 1 and shared tensors
    check_refreshed()
    optimizer.step()
    check_refreshed()
    with torch.no_grad():
        before = net(x)
    net.load_state_dict(build("hypermarl").state_dict())  # copy_ into the parameters
    check_refreshed()
    with torch.no_grad():
        assert not torch.allclose(before, net(x))


def test_a_selection_asked_for_while_the_cache_is_stale_is_generated_alone_and_not_cached(monkeypatch):
    net = build("hypermarl")
    params: MLPHyperParams = net.params
    generated: list[int | None] = []
    generate = params.generate
    monkeypatch.setattr(params, "generate", lambda agents: generated.append(agents) or generate(agents))
    with torch.no_grad():
        params.layers(None)  # fills the cache
        for p in net.parameters():
            p.add_(0.01)  # as an optimiser step of the shared hypernetwork in an HA turn
        agent = torch.tensor([3])
        selected = params.layers(agent)  # the agent in turn re-samples: its layers only
        assert generated == [None, agent]
        assert selected[0][0].shape == (1, 6, 32)
        fresh = params.layers(None)  # all agents: generated and cached
        assert params.layers(None) is fresh
        assert len(generated) == 3 and generated[2] is None
    for (w, b), (fw, fb) in zip(selected, fresh, strict=True):
        torch.testing.assert_close(w, fw[agent])
        torch.testing.assert_close(b, fb[agent])


def test_target_copy_follows_polyak_updates():
    online = build("hypermarl")
    target = copy.deepcopy(online).requires_grad_(False)
    x = torch.randn(3, 5, 6)
    with torch.no_grad():
        before = target(x)  # fills the target's cache
        for p in online.parameters():
            p.add_(0.1)
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 0.5)  # as polyak_update
        cached = target(x)
    torch.testing.assert_close(cached, target(x))  # with grad enabled: generated afresh
    assert not torch.allclose(cached, before)
    assert target.params.diagnostics() == {}  # frozen copies log nothing


def test_two_forwards_then_one_backward_match_a_single_forward():
    net = build("hypermarl")
    x1, x2 = torch.randn(4, 5, 6), torch.randn(4, 5, 6)
    (net(x1).sum() + net(x2).pow(2).sum()).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    both = net(torch.cat([x1, x2]))
    (both[:4].sum() + both[4:].pow(2).sum()).backward()
    for g, p in zip(grads, net.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


# ---------------------------------------------------------------------------- linear ≡ NoPS


def test_linear_without_shared_bias_is_exactly_nops():
    n = 4
    net = build("hypermarl_linear", n=n, shared_bias=False)
    params: LinearHyperParams = net.params
    # the generated parameters are independent per-agent layers: equal to a NoPS network holding them
    nops = build("nops", n=n)
    assert isinstance(nops.params, StackedParams)
    nops.load_state_dict(net.state_dict())
    x = torch.randn(8, n, 6)
    torch.testing.assert_close(net(x), nops(x))
    for (w, b), pw, pb in zip(params.layers(None), params.weights, params.biases, strict=True):
        assert w is pw and b is pb
    assert all(is_per_agent(p) for p in net.parameters())
    # agent i's loss gives zero gradient to every other agent's generated parameters
    for i in range(n):
        net.zero_grad()
        net(x)[:, i].pow(2).sum().backward()
        for p in net.parameters():
            others = torch.cat([p.grad[:i], p.grad[i + 1 :]])
            assert torch.count_nonzero(others) == 0
            assert torch.count_nonzero(p.grad[i]) > 0


def test_linear_with_shared_bias_shares_only_the_bias():
    n = 4
    net = build("hypermarl_linear", n=n)
    x = torch.randn(8, n, 6)
    net(x)[:, 0].pow(2).sum().backward()
    params: LinearHyperParams = net.params
    for w in [*params.weights, *params.biases]:
        assert torch.count_nonzero(w.grad[1:]) == 0
    assert all(torch.count_nonzero(s.grad) > 0 for s in [*params.shared_weights, *params.shared_biases][:2])
    assert not any(is_per_agent(s) for s in [*params.shared_weights, *params.shared_biases])


def test_mlp_hypernet_owns_only_the_embedding_rows():
    net = build("hypermarl")
    embedding = net.params.embedding.weight
    per_agent = [p for p in net.parameters() if is_per_agent(p)]
    assert len(per_agent) == 1 and per_agent[0] is embedding
    optimizer = AgentAdam(net.parameters(), lr=0.1)
    before = embedding.detach().clone()
    net(torch.randn(4, 5, 6)).sum().backward()
    optimizer.step(agents=torch.tensor([2]))
    moved = (embedding.detach() != before).any(1)
    assert moved.tolist() == [False, False, True, False, False]


# ---------------------------------------------------------------------------- generate option, heterogeneity


@pytest.mark.parametrize("arch", HYPER_ARCHS)
@pytest.mark.parametrize("generate", ["actor", "critic", "both"])
def test_generate_option_picks_generated_or_fups_id_networks(arch, generate):
    spec = hetero_spec()
    entry = get_architecture(arch)
    cfg = entry.config_cls(generate=generate)
    model = ModelConfig(hidden_sizes=[16])
    actor, critic = GaussianActor(spec, entry, model, cfg), AgentValueCritic(spec, entry, model, cfg)
    for net, log_std, role in ((actor.net, actor.log_std, "actor"), (critic.net, None, "critic")):
        is_generated = generate in (role, "both")
        fups_id = isinstance(net, AgentMLP) and net.append_id
        assert fups_id != is_generated
        if log_std is not None:
            assert is_per_agent(log_std.value) == is_generated


@pytest.mark.parametrize("arch", HYPER_ARCHS)
def test_heterogeneous_agents_see_only_their_own_entries(arch):
    torch.manual_seed(0)
    spec = hetero_spec()
    entry = get_architecture(arch)
    actor = GaussianActor(spec, entry, ModelConfig(hidden_sizes=[16, 16]), entry.config_cls())
    obs_mask = torch.as_tensor(spec.obs_mask)
    act_mask = torch.as_tensor(spec.act_mask)
    obs = torch.randn(6, 3, 5) * obs_mask  # padded entries are zero
    mean = actor.net(obs)  # (B, 3, 3)
    noisy = obs + torch.randn_like(obs) * ~obs_mask  # garbage in the padding
    torch.testing.assert_close(actor.net(noisy), mean)
    for j in range(3):
        changed = obs.clone()
        changed[:, j] += torch.randn(6, 5) * obs_mask[j]
        diff = (actor.net(changed) - mean).abs().amax((0, 2))  # (3,) per agent
        assert diff[j] > 0 and torch.count_nonzero(torch.cat([diff[:j], diff[j + 1 :]])) == 0
    actions, log_probs = actor.act(obs, None, SAMPLE)
    assert torch.count_nonzero(actions * ~act_mask) == 0
    padded_noise = torch.randn_like(actions) * ~act_mask
    torch.testing.assert_close(actor.log_probs_entropy(obs, actions + padded_noise)[0], log_probs)
    entropy = actor.log_probs_entropy(obs, actions)[1][0]
    per_dim = 0.5 + 0.5 * math.log(2 * math.pi) + actor.log_std()  # (3, 3)
    torch.testing.assert_close(entropy, (per_dim * act_mask).sum(-1))


def test_heterogeneous_discrete_actions_never_pick_padded_ones():
    spec = hetero_spec()
    spec = EnvSpec(
        agent_ids=spec.agent_ids,
        obs_dims=spec.obs_dims,
        state_dim=7,
        action_type="discrete",
        act_dims=(2, 4, 3),
        act_low=np.zeros((3, 4), np.float32),
        act_high=np.ones((3, 4), np.float32),
    )
    entry = get_architecture("hypermarl")
    actor = CategoricalActor(spec, entry, ModelConfig(hidden_sizes=[16]), HyperMARLConfig())
    probs = actor.distribution(torch.randn(50, 3, 5) * torch.as_tensor(spec.obs_mask)).probs
    assert torch.count_nonzero(probs * ~torch.as_tensor(spec.act_mask)) == 0
    torch.testing.assert_close(probs.sum(-1), torch.ones(50, 3))


# ---------------------------------------------------------------------------- diagnostics and counting


def test_embedding_cosine_diagnostics():
    actor_net, critic_net = build("hypermarl", role="actor"), build("hypermarl", role="critic")
    ((key, value),) = actor_net.params.diagnostics().items()
    assert key == "diversity/embedding_cosine"
    assert value == pytest.approx(1.0, abs=1e-5)  # 5 orthonormal embeddings of size 8
    assert list(critic_net.params.diagnostics()) == ["diversity/critic_embedding_cosine"]
    with torch.no_grad():
        actor_net.params.embedding.weight.copy_(torch.ones(5, 8))
    assert actor_net.params.diagnostics()["diversity/embedding_cosine"] == pytest.approx(0.0, abs=1e-6)
    assert list(build("hypermarl_coupled").diagnostics()) == ["diversity/embedding_cosine"]


def test_count_parameters():
    sizes = {"obs_dim": 12, "act_dim": 3, "state_dim": 17}
    nops_4, nops_8 = count_parameters("nops", n_agents=4, **sizes), count_parameters("nops", n_agents=8, **sizes)
    assert nops_8["actor"] == 2 * nops_4["actor"] and nops_8["critic"] == 2 * nops_4["critic"]
    per_actor = 12 * 128 + 128 + 128 * 128 + 128 + 128 * 3 + 3 + 3  # layers + log-std
    assert nops_4["actor"] == 4 * per_actor
    hyper = [count_parameters("hypermarl", n_agents=n, **sizes, arch_options={"embedding_dim": 4}) for n in (4, 8)]
    # only the embeddings (actor and critic) and the per-agent log-stds grow with the agents
    assert hyper[1]["total"] - hyper[0]["total"] == 4 * (4 + 4 + 3)
    assert hyper[0]["total"] == hyper[0]["actor"] + hyper[0]["critic"]
    onehot = count_parameters("hypermarl", n_agents=4, **sizes, arch_options={"embedding": "onehot"})
    assert onehot["actor"] == hyper[0]["actor"] - 4 * 4  # same trunk (4 inputs), one-hot ids are not trained
    linear = count_parameters("hypermarl_linear", n_agents=4, **sizes, arch_options={"shared_bias": False})
    assert linear == nops_4
    with pytest.raises(ConfigError, match="embedding_dim"):
        count_parameters("hypermarl", n_agents=4, **sizes, arch_options={"embedding_dim": 0})


# ---------------------------------------------------------------------------- configs and the CLI


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (HyperMARLConfig(embedding_dim=0), "arch.embedding_dim must be > 0, got 0"),
        (HyperMARLConfig(hypernet_init="xavier"), "arch.hypernet_init must be one of official, paper, hyperfan"),
        (HyperMARLConfig(embedding="random"), "arch.embedding must be one of learned, onehot"),
        (HyperMARLConfig(hypernet_hidden_dims=[64, 0]), "arch.hypernet_hidden_dims"),
        (HyperMARLConfig(trunk="none"), "arch.trunk must be one of per_head, shared"),
        (HyperMARLConfig(embedding_gain=0.0), "arch.embedding_gain must be > 0, got 0.0"),
        (HyperMARLConfig(share_embedding=True, generate="actor"), "arch.share_embedding needs generated actor"),
        (HyperMARLConfig(share_embedding=True, embedding="onehot"), "arch.share_embedding shares learned"),
        (LinearHyperConfig(generate="policy"), "arch.generate must be one of actor, critic, both"),
        (LinearHyperConfig(hypernet_init="official"), "arch.hypernet_init must be one of paper, hyperfan"),
        (CoupledHyperConfig(hypernet_hidden_dims=[]), "at least one width"),
        (CoupledHyperConfig(trunk="per_head"), "arch.trunk per_head is not available for hypermarl_coupled"),
    ],
)
def test_config_validation(cfg, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        cfg.validate()


MATRIX = [
    "--algo",
    "mappo",
    "--env",
    "matrix",
    "--num_env_steps",
    "200",
    "--n_rollout_threads",
    "10",
    "--eval_episodes",
    "5",
]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "hypermarl", "--embedding_dim", "0"], "arch.embedding_dim must be > 0, got 0"),
        (["--arch", "hypermarl", "--embedding_dim", "-3"], "arch.embedding_dim must be > 0, got -3"),
        (
            ["--arch", "hypermarl", "--hypernet_init", "xavier"],
            "arch.hypernet_init must be one of official, paper, hyperfan",
        ),
        (["--arch", "hypermarl", "--embedding", "random"], "arch.embedding must be one of learned, onehot"),
        (["--arch", "hypermarl", "--trunk", "deep"], "arch.trunk must be one of per_head, shared"),
        (
            ["--arch", "hypermarl", "--share_embedding", "true", "--generate", "actor"],
            "arch.share_embedding needs generated actor and critic",
        ),
        (["--arch", "hypermarl_coupled", "--trunk", "per_head"], "not available for hypermarl_coupled"),
        (["--arch", "hypermarl_coupled", "--generate", "value"], "arch.generate must be one of actor, critic, both"),
        (["--arch", "hypermarl_linear", "--embedding_dim", "4"], "unknown config key 'embedding_dim'"),
        (["--arch", "hypermarl_linear", "--shared_bias", "maybe"], "arch.shared_bias expects true/false"),
    ],
)
def test_bad_arch_options_exit_2_with_one_line(argv, message, capsys, tmp_path):
    assert train([*MATRIX, *argv, "--log_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and message in err, err


def test_shared_embedding_without_a_generated_critic_exits_2_before_printing(capsys, tmp_path):
    argv = ["--algo", "masac", "--arch", "hypermarl", "--env", "mamujoco", "--share_embedding", "true"]
    assert train([*argv, "--log_dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: --algo masac cannot use --arch hypermarl: arch.share_embedding needs a critic generated per agent, "
        "and its critic is one joint Q network; set --share_embedding false"
    )


def test_bad_arch_option_in_a_real_process(tmp_path):
    result = run_script("train.py", *MATRIX, "--arch", "hypermarl", "--embedding_dim", "0", "--log_dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: arch.embedding_dim must be > 0, got 0"]


def test_checkpoint_resume_and_evaluate_through_the_cli(tmp_path, capsys):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "mappo",
        "--env",
        "matrix",
        "--arch",
        "hypermarl",
        "--n_agents",
        "3",
        "--num_env_steps",
        "400",
        "--n_rollout_threads",
        "10",
        "--episode_length",
        "10",
        "--save_interval",
        "200",
        "--eval_episodes",
        "5",
        "--hypernet_hidden_dims",
        "16,16",
        "--embedding_dim",
        "3",
    )
    rows = read_progress(run_dir)
    counts = count_parameters(
        "hypermarl",
        n_agents=3,
        obs_dim=1,
        act_dim=3,
        state_dim=1,
        discrete=True,
        model={"hidden_sizes": [64], "layer_norm": False, "feature_norm": False},
        arch_options={"hypernet_hidden_dims": [16, 16], "embedding_dim": 3},
    )
    assert int(float(rows[0]["model/actor_parameters"])) == counts["actor"]
    assert int(float(rows[0]["model/critic_parameters"])) == counts["critic"]
    assert rows[-1]["diversity/embedding_cosine"] != "" and rows[-1]["diversity/critic_embedding_cosine"] != ""
    saved = load_checkpoint(run_dir)
    assert "net.params.embedding.weight" in saved["learner"]["actor"]
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "600"]) == 0
    resumed = load_checkpoint(run_dir)
    assert resumed["runner"]["env_steps"] == 600
    assert not torch.equal(
        saved["learner"]["actor"]["net.params.embedding.weight"],
        resumed["learner"]["actor"]["net.params.embedding.weight"],
    )
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(run_dir), "--episodes", "4"]) == 0
    assert "episode return over 4 episodes" in capsys.readouterr().out


def test_shared_embedding_through_the_cli(tmp_path, capsys):
    """`--share_embedding true`: one embedding, saved with the actor, read by the critic; resume and evaluate."""
    run_dir = run_train(tmp_path, *MATRIX, "--arch", "hypermarl", "--share_embedding", "true", "--save_interval", "100")
    saved = load_checkpoint(run_dir)
    assert "net.params.embedding.weight" in saved["learner"]["actor"]
    assert not any("embedding" in key for key in saved["learner"]["critic"])
    rows = read_progress(run_dir)
    assert rows[-1]["diversity/embedding_cosine"] != "" and "diversity/critic_embedding_cosine" not in rows[-1]
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "300"]) == 0
    resumed = load_checkpoint(run_dir)
    assert not torch.equal(
        saved["learner"]["actor"]["net.params.embedding.weight"],
        resumed["learner"]["actor"]["net.params.embedding.weight"],
    )
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(run_dir), "--episodes", "3"]) == 0


def test_checkpoint_of_the_earlier_structure_resumes_and_evaluates(tmp_path, capsys):
    """A run saved before trunk/embedding_gain/share_embedding existed (a shared trunk, paper init, embeddings at
    gain 1) rebuilds that structure from its saved config; forcing another structure is one line, exit 2."""
    legacy = ["--trunk", "shared", "--hypernet_init", "paper", "--embedding_gain", "1"]
    run_dir = run_train(tmp_path, *MATRIX, "--arch", "hypermarl", "--save_interval", "100", *legacy)
    new_keys = ("trunk", "embedding_gain", "share_embedding")

    def strip(config: dict) -> dict:
        return {**config, "arch": {k: v for k, v in config["arch"].items() if k not in new_keys}}

    (run_dir / "config.yaml").write_text(yaml.safe_dump(strip(yaml.safe_load((run_dir / "config.yaml").read_text()))))
    for path in (run_dir / "checkpoints").glob("step_*.pt"):
        payload = torch.load(path, weights_only=False)
        torch.save({**payload, "config": strip(payload["config"])}, path)
    assert "net.params.trunk.0.weight" in load_checkpoint(run_dir)["learner"]["actor"]
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(run_dir), "--episodes", "3"]) == 0
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "300"]) == 0
    assert load_checkpoint(run_dir)["runner"]["env_steps"] == 300
    capsys.readouterr()
    assert train(["--resume", str(run_dir), "--num_env_steps", "400", "--trunk", "per_head"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit this learner" in err[0], err


@pytest.mark.parametrize("algo", sorted(a for a, entry in ALGORITHMS.items() if entry.continuous))
def test_every_learner_trains_hypermarl_with_heterogeneous_actions(algo, tmp_path):
    """Humanoid 9|8: two agents with 9 and 8 action dimensions (and different observations)."""
    run_dir = run_train(
        tmp_path,
        "--algo",
        algo,
        "--arch",
        "hypermarl",
        "--env",
        "mamujoco",
        "--scenario",
        "Humanoid",
        "--agent_conf",
        "9|8",
        *tiny_args(algo, "mamujoco"),
    )
    last = read_progress(run_dir)[-1]
    assert last["eval/episode_return"] != "" and last["diversity/embedding_cosine"] != ""


def test_state_dict_round_trip_gives_identical_policies():
    torch.manual_seed(0)
    a = build("hypermarl_coupled")
    torch.manual_seed(1)
    b = build("hypermarl_coupled")
    x = torch.randn(4, 5, 6)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))


# ---------------------------------------------------------------------------- learning (matrix defaults)


def eval_returns(run_dir) -> list[float]:
    return [float(row["eval/episode_return"]) for row in read_progress(run_dir) if row["eval/episode_return"]]


@pytest.mark.slow  # four full-length runs of the matrix default config, ~10 s each on an idle machine
@pytest.mark.parametrize(
    ("arch", "game", "reaches"),
    [
        ("hypermarl", "specialisation", True),
        ("hypermarl_linear", "specialisation", True),
        ("fups", "specialisation", False),
        ("hypermarl", "synchronisation", True),
    ],
)
def test_learning_on_8_agent_matrix_games(arch, game, reaches, tmp_path):
    """With the matrix env's default config: the final evaluation reaches a mean return ≥ 0.95, or (FuPS)
    the final train and eval returns stay ≤ 0.70."""
    run_dir = run_train(
        tmp_path, "--algo", "mappo", "--arch", arch, "--env", "matrix", "--game", game, "--n_agents", "8", "--seed", "1"
    )
    returns = eval_returns(run_dir)
    assert len(returns) >= 5
    if reaches:
        assert returns[-1] >= 0.95, returns
    else:
        assert max(returns) <= 0.70, returns
        assert float(read_progress(run_dir)[-1]["train/episode_return"]) <= 0.70
