"""Diversity and gradient statistics logged during training (`--snd_interval`, `--grad_stats`)."""

from __future__ import annotations

from harl.cli import train

from .conftest import TINY_MAMUJOCO, read_progress, run_train


def test_on_policy_run_logs_snd_and_gradient_stats(tmp_path):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "mappo",
        "--arch",
        "nops",
        "--env",
        "matrix",
        "--num_env_steps",
        "400",
        "--n_rollout_threads",
        "10",
        "--actor_num_mini_batch",
        "2",
        "--snd_interval",
        "200",
        "--grad_stats",
        "true",
        "--eval_episodes",
        "4",
    )
    rows = read_progress(run_dir)
    snd = [float(r["diversity/snd"]) for r in rows if r.get("diversity/snd")]
    assert len(snd) == 2 and all(0.0 <= v <= 1.0 for v in snd)
    last = rows[-1]
    assert float(last["grad/param_variance"]) > 0 and float(last["grad/noise"]) >= 0


def test_off_policy_run_logs_snd_and_gradient_stats(tmp_path):
    run_dir = run_train(
        tmp_path,
        "--algo",
        "masac",
        "--arch",
        "fups_id",
        "--env",
        "mamujoco",
        *TINY_MAMUJOCO,
        "--num_env_steps",
        "60",
        "--warmup_steps",
        "20",
        "--batch_size",
        "8",
        "--train_interval",
        "5",
        "--snd_interval",
        "20",
        "--grad_stats",
        "true",
    )
    last = read_progress(run_dir)[-1]
    assert 0.0 <= float(last["diversity/snd"]) <= 1.0 and float(last["grad/param_variance"]) > 0


def test_snd_of_deterministic_actors_is_refused(tmp_path, capsys):
    assert (
        train(
            [
                "--algo",
                "maddpg",
                "--arch",
                "nops",
                "--env",
                "mamujoco",
                *TINY_MAMUJOCO,
                "--snd_interval",
                "20",
                "--log_dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "deterministic" in capsys.readouterr().err
