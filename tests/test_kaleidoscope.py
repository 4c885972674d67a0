"""`--arch kaleidoscope` (learnable masks over shared weights): masks start nearly equal and the regulariser keeps
them apart, masked-out weights get no gradient, resets happen on schedule (and only then), the architecture's
auxiliary loss reaches every learner's loss, a run saves, loads and continues exactly, and bad options exit 2."""

from __future__ import annotations

import shutil

import pytest
import torch

from harl.cli import train, train_main
from harl.config import ModelConfig
from harl.experiment import build_config
from harl.models.kaleidoscope import KaleidoscopeConfig, MaskedParams
from harl.models.net_spec import NetSpec
from harl.registry import ALGORITHMS, get_architecture, load_extensions
from harl.runners import runner_for
from harl.utils.checkpoint import load_checkpoint

from .conftest import read_progress, run_train
from .test_bad_input import assert_one_line_error
from .test_smoke import ALGO_TINY

load_extensions()
MATRIX = ["--env", "matrix", "--n_agents", "3", "--n_rollout_threads", "4", "--eval_episodes", "2"]
MATRIX += ["--n_eval_rollout_threads", "2", "--hidden_sizes", "16,16"]


def masked_net(n_agents: int = 4, **options) -> tuple[torch.nn.Module, MaskedParams]:
    spec = NetSpec.full_input(
        n_agents=n_agents, in_dim=10, out_dim=3, hidden_sizes=[32, 32], out_gain=0.01, role="actor", model=ModelConfig()
    )
    net = get_architecture("kaleidoscope").build_net(spec=spec, arch_cfg=KaleidoscopeConfig(**options))
    assert isinstance(net.params, MaskedParams)
    return net, net.params


def tiny(algo: str, steps: int | None = None) -> list[str]:
    fields = set(ALGORITHMS[algo].config_cls.__dataclass_fields__)
    args = [arg for key, value in ALGO_TINY.items() if key in fields for arg in (f"--{key}", value)]
    default = 40 if ALGORITHMS[algo].on_policy else 60
    return ["--algo", algo, "--arch", "kaleidoscope", *args, "--num_env_steps", str(steps or default)]


# ---------------------------------------------------------------------------------------------- the masks


def test_masks_start_nearly_full_and_equal():
    torch.manual_seed(0)
    _, params = masked_net()
    masks = torch.cat([m.detach().flatten(1) for m in params.masks()], dim=1)  # (N, entries)
    assert float(masks.mean()) > 0.97  # every agent keeps nearly every shared weight
    assert float((masks != masks[:1]).float().mean()) < 0.03  # and the agents' masks nearly agree
    assert params.diagnostics()["kaleidoscope/actor/mask_difference"] < 0.03


def test_regulariser_alone_pushes_differing_thresholds_apart_and_leaves_agreeing_entries():
    """The regulariser's gradient reaches only the entries where some agents' masks differ, and moves their
    thresholds so that the masks stay different (it never makes them more alike)."""
    torch.manual_seed(1)
    _, params = masked_net(threshold_init_scale=6.0, threshold_init_bias=1.0)  # σ(s) up to 0.27: masks differ
    before = [m.detach().clone() for m in params.masks()]
    optimizer = torch.optim.Adam(list(params.thresholds), lr=0.05)
    gaps = []
    for _ in range(5):
        optimizer.zero_grad()
        params.aux_loss(None, torch.tensor(1.0)).backward()
        for threshold, mask in zip(params.thresholds, before):
            differ = (mask != mask[:1]).any(0)  # (in, out): some agents disagree
            assert bool(threshold.grad[:, ~differ].eq(0).all()) and bool(threshold.grad[:, differ].ne(0).any())
        optimizer.step()
        levels = torch.sigmoid(params.thresholds[0].detach())  # (N, in, out)
        gaps.append(float((levels.max(0).values - levels.min(0).values)[(before[0] != before[0][:1]).any(0)].mean()))
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]
    for mask, start in zip(params.masks(), before):
        assert torch.equal(mask, start)


def test_masks_diverge_in_training(tmp_path):
    """Masks that start nearly equal end up different when every agent trains its own path (task gradients seed the
    differences, the regulariser keeps them): the logged fraction of differing entries grows."""
    run_dir = run_train(tmp_path, *tiny("mappo", 160), *MATRIX, "--threshold_init_bias", "3", "--log_interval", "40")
    rows = [row for row in read_progress(run_dir) if row.get("kaleidoscope/actor/mask_difference")]
    first, last = (float(row["kaleidoscope/actor/mask_difference"]) for row in (rows[0], rows[-1]))
    assert last > first


def test_masked_out_weights_get_no_gradient_through_that_agent():
    torch.manual_seed(2)
    net, params = masked_net(threshold_init_scale=4.0, threshold_init_bias=0.0)  # σ(s) in [0.02, 0.5]: many pruned
    net(torch.randn(64, 1, 10), torch.tensor([1])).square().sum().backward()  # agent 1's path only
    for weight, threshold in zip(params.weights, params.thresholds):
        pruned = weight.detach().abs() <= torch.sigmoid(threshold.detach()[1])  # (in, out): pruned for agent 1
        assert bool(pruned.any()) and bool((~pruned).any())
        assert bool(weight.grad[pruned].eq(0).all())
        assert bool(weight.grad[~pruned].ne(0).any())
        assert bool(threshold.grad[[0, 2, 3]].eq(0).all()) and bool(threshold.grad[1][pruned].eq(0).all())


def test_agents_are_one_batched_pass():
    torch.manual_seed(3)
    net, _ = masked_net()
    x = torch.randn(5, 4, 10)
    together = net(x)  # (B, N, out)
    for agent in range(4):
        torch.testing.assert_close(net(x[:, agent : agent + 1], torch.tensor([agent])), together[:, agent : agent + 1])


# ---------------------------------------------------------------------------------------------- the reset


def test_reset_happens_on_schedule_and_only_then():
    """The authors' rule: every reset_interval trained env steps, never within the last reset_interval of the run."""
    torch.manual_seed(4)
    _, params = masked_net(reset_interval=100)
    resets = []
    for _ in range(10):  # 10 iterations of 60 env steps in a run of 600
        params.advance(60, 600)
        resets.append(params.resets)
    assert resets == [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]  # at 120, 240, 360, 480; not at 600 (the run's end)
    assert params.last_reset == 480


def test_reset_revives_only_entries_every_agent_prunes_and_is_deterministic():
    def reset_once(seed: int) -> tuple[MaskedParams, list[torch.Tensor], list[torch.Tensor]]:
        torch.manual_seed(seed)
        _, params = masked_net(threshold_init_scale=4.0, threshold_init_bias=0.0, reset_ratio=1.0)
        weights = [w.detach().clone() for w in params.weights]
        thresholds = [s.detach().clone() for s in params.thresholds]
        params.reset()
        return params, weights, thresholds

    params, weights, thresholds = reset_once(5)
    for weight, old_weight, threshold, old_threshold in zip(params.weights, weights, params.thresholds, thresholds):
        everyone = (old_weight.abs() <= torch.sigmoid(old_threshold)).all(0)  # (in, out): pruned by every agent
        assert bool(everyone.any())
        assert torch.equal(weight[~everyone], old_weight[~everyone])
        assert torch.equal(threshold[:, ~everyone], old_threshold[:, ~everyone])
        assert bool((weight[everyone] != old_weight[everyone]).all())
        assert bool((threshold[:, everyone] != old_threshold[:, everyone]).all())
    again, _, _ = reset_once(5)
    for a, b in zip(params.parameters(), again.parameters()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- every learner


def trained_parameters(algo: str, div_coef: str, tmp_path) -> dict[str, torch.Tensor]:
    """Actor (and critic) parameters after one training iteration of a tiny run on the matrix game."""
    overrides = {
        key: value for key, value in ALGO_TINY.items() if key in ALGORITHMS[algo].config_cls.__dataclass_fields__
    }
    overrides |= {"n_agents": "3", "n_rollout_threads": "4", "hidden_sizes": "16,16", "div_coef": div_coef}
    overrides |= {"threshold_init_bias": "1", "threshold_init_scale": "6"}  # masks differ from the start
    cfg, _ = build_config(algo, "kaleidoscope", "matrix", overrides, use_tuned=False)
    runner = runner_for(ALGORITHMS[algo])(cfg, tmp_path / div_coef)
    try:
        while not any("critic" in key for row in runner.iterate() for key in row):  # until it trained
            pass
        return {
            f"{role}.{k}": v.detach().clone()
            for role, net in runner.learner.networks().items()
            for k, v in net.named_parameters()
        }
    finally:
        runner.close()


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_aux_loss_reaches_every_learners_actor_loss(algo, tmp_path):
    """A large regulariser weight moves the actor's thresholds away from where the task loss alone takes them
    (and, for on-policy learners, the critic's: their per-agent critics are masked too)."""
    without, with_aux = trained_parameters(algo, "0", tmp_path), trained_parameters(algo, "1000", tmp_path)
    moved = {key for key in without if not torch.equal(without[key], with_aux[key])}
    assert any(key.startswith("actor.") and "thresholds" in key for key in moved), moved
    if ALGORITHMS[algo].on_policy:
        assert any(key.startswith("critic.") and "thresholds" in key for key in moved), moved


# ---------------------------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("algo", ["hatrpo", "hasac"])  # every learner's smoke runs: tests/test_smoke.py
def test_trains_on_a_continuous_env_and_logs_its_terms(algo, tmp_path):
    pytest.importorskip("vmas")
    navigation = ["--env", "vmas", "--scenario", "navigation", "--n_agents", "2", "--max_steps", "10"]
    navigation += ["--n_rollout_threads", "4", "--eval_episodes", "4", "--n_eval_rollout_threads", "4"]
    run_dir = run_train(tmp_path, *tiny(algo), *navigation, "--hidden_sizes", "16,16")
    rows = read_progress(run_dir)
    assert rows[-1]["eval/episode_return"] != ""
    assert any(row.get("kaleidoscope/actor/aux_loss") not in ("", None) for row in rows)


def test_save_load_continue_equals_an_uninterrupted_run(tmp_path):
    """Resumed from its step-40 checkpoint, a run ends exactly where the uninterrupted run does: weights, masks,
    the regulariser's running means and the reset schedule (a reset falls after the resume) all continue."""
    args = [*tiny("happo", 120), *MATRIX, "--save_interval", "40", "--keep_checkpoints", "5"]
    args += ["--reset_interval", "30", "--log_interval", "40"]
    whole = run_train(tmp_path / "whole", *args)
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    for later in ("step_80.pt", "step_120.pt"):
        (resumed / "checkpoints" / later).unlink()
    assert train_main(["--resume", str(resumed)]) == 0
    a, b = load_checkpoint(whole), load_checkpoint(resumed)
    assert a["runner"]["env_steps"] == b["runner"]["env_steps"] == 120
    for role in ("actor", "critic"):
        assert a["learner"][role].keys() == b["learner"][role].keys()
        for key, value in a["learner"][role].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b["learner"][role][key]), key
    extra, resumed_extra = (state["learner"]["actor"]["net.params._extra_state"] for state in (a, b))
    assert extra["resets"] == 2 and extra["last_reset"] == 80  # resets at 40 and 80: the second after the resume
    assert {k: v for k, v in extra.items() if k != "generator"} == {
        k: v for k, v in resumed_extra.items() if k != "generator"
    }
    assert torch.equal(extra["generator"], resumed_extra["generator"])


@pytest.mark.parametrize(
    ("option", "value"),
    [("div_coef", "-1"), ("reset_ratio", "1.5"), ("deque_len", "0"), ("threshold_init_scale", "nan")],
)
def test_bad_options_exit_2_in_one_line(option, value, capsys, tmp_path):
    argv = ["--algo", "mappo", "--arch", "kaleidoscope", "--env", "matrix", f"--{option}", value]
    assert train([*argv, "--log_dir", str(tmp_path)]) == 2
    assert f"arch.{option} must " in assert_one_line_error(capsys)
