"""A run whose training turns non-finite stops with one line, keeping its last good checkpoint."""

from __future__ import annotations

import pytest
import torch

from harl.algos.hasac import HASAC
from harl.algos.mappo import MAPPO
from harl.cli import train
from harl.errors import TrainingDiverged
from harl.runners.base import ActionWatch


def _poison_after(learner_cls, monkeypatch, calls: int, poison) -> None:
    original, seen = learner_cls.train, []

    def poisoned(self, *args):
        metrics = original(self, *args)
        seen.append(1)
        if len(seen) == calls:
            poison(self, metrics)
        return metrics

    monkeypatch.setattr(learner_cls, "train", poisoned)


def _nan_parameters(learner, metrics) -> None:
    with torch.no_grad():
        next(learner.actor.parameters()).fill_(float("nan"))


def _nan_loss(learner, metrics) -> None:
    metrics[0]["losses/critic/loss"] = float("nan")  # the first seed's


@pytest.mark.parametrize(
    ("algo", "learner_cls", "poison", "named"),
    [
        ("mappo", MAPPO, _nan_parameters, "the actor's parameters"),
        ("hasac", HASAC, _nan_loss, "losses/critic/loss = nan"),
    ],
)
def test_non_finite_training_stops_with_one_line(tmp_path, capsys, monkeypatch, algo, learner_cls, poison, named):
    """Iterations collect 40 env steps; a checkpoint every 80; the third update turns non-finite."""
    _poison_after(learner_cls, monkeypatch, 3, poison)
    log_dir = tmp_path / "results"
    args = ["--algo", algo, "--arch", "nops", "--env", "mamujoco", "--log_dir", str(log_dir)]
    args += ["--episode_limit", "20", "--n_rollout_threads", "2", "--n_workers", "0", "--hidden_sizes", "8"]
    args += ["--num_env_steps", "400", "--save_interval", "80", "--eval_interval", "0", "--progress_bar", "false"]
    if algo == "mappo":
        args += ["--episode_length", "20", "--ppo_epoch", "1", "--critic_epoch", "1"]
    else:  # warm-up of one iteration, then one update per iteration
        args += ["--train_interval", "20", "--warmup_steps", "40", "--batch_size", "8", "--buffer_size", "400"]
    capsys.readouterr()
    assert train(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "update" in err[0] and "step_80.pt" in err[0], err
    (run_dir,) = log_dir.glob("*/*/*/*/seed-*")
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt")) == ["step_80.pt"]


def test_non_finite_actions_stop_the_run_before_it_trains_on_them():
    watch = ActionWatch()
    watch.watch(torch.zeros(2, 3, 1))
    watch.watch(torch.zeros(2, 3, 1, dtype=torch.long))  # indices: nothing to check
    watch.check(0)
    watch.watch(torch.tensor([[[0.0], [float("inf")]]]))
    watch.watch(torch.zeros(1, 2, 1))  # a later finite step does not hide it
    with pytest.raises(TrainingDiverged, match="non-finite in the iteration ending at 120 env steps"):
        watch.check(120)
    watch.check(240)  # each check covers the steps since the last one
