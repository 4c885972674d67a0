"""harl.research.diversity on saved checkpoints and harl.research.param_scaling through the registry builders."""

from __future__ import annotations

import torch

from harl.cli import guarded
from harl.research import diversity, param_scaling

from .conftest import run_train

TINY = [
    "--env",
    "matrix",
    "--num_env_steps",
    "100",
    "--n_rollout_threads",
    "10",
    "--eval_episodes",
    "2",
    "--n_eval_rollout_threads",
    "2",
    "--progress_bar",
    "false",
]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_diversity_of_checkpoints_on_a_shared_observation_set(tmp_path, capsys):
    nops = run_train(tmp_path, "--algo", "mappo", "--arch", "nops", *TINY)
    fups = run_train(tmp_path, "--algo", "mappo", "--arch", "fups", *TINY)
    other = run_train(tmp_path, "--algo", "mappo", "--arch", "nops", *TINY, "--n_agents", "3")
    obs_file = tmp_path / "obs.pt"
    capsys.readouterr()
    argv = ["--checkpoints", str(nops), str(fups), "--collect", "30", "--obs", str(obs_file)]
    assert guarded(diversity.main)(argv) == 0
    out = capsys.readouterr().out
    assert torch.load(obs_file)["obs"].shape == (30, 4, 1)
    rows = [line for line in out.splitlines() if line.startswith(f"| {nops}") or line.startswith(f"| {fups}")]
    assert len(rows) == 2
    snd = {row.split("|")[2].strip(): float(row.split("|")[4]) for row in rows}
    assert snd["mappo-fups"] == 0.0 and snd["mappo-nops"] > 0.0  # no ids, one observation: identical agents

    assert guarded(diversity.main)(["--checkpoints", str(nops), "--obs", str(obs_file), "--metric", "tvd"]) == 0
    assert "SND (tvd, exact, shared observations)" in capsys.readouterr().out

    assert guarded(diversity.main)(["--checkpoints", str(nops), str(other), "--obs", str(obs_file)]) == 2
    assert "different environments" in one_line(capsys)
    assert guarded(diversity.main)(["--checkpoints", str(nops), "--obs", str(obs_file), "--metric", "kl"]) == 2
    assert "unknown metric 'kl'" in one_line(capsys)
    assert guarded(diversity.main)(["--checkpoints", str(other), "--obs", str(obs_file)]) == 2
    assert "must have shape (B, 3, 1)" in one_line(capsys)
    assert guarded(diversity.main)(["--checkpoints", str(nops)]) == 2
    assert "--obs FILE" in one_line(capsys)


def test_param_scaling_table_and_plot(tmp_path, capsys):
    out = tmp_path / "scaling.png"
    argv = ["--agents", "4,8", "--archs", "nops,fups_id,not_an_arch", "--out", str(out)]
    assert guarded(param_scaling.main)(argv) == 0
    text = capsys.readouterr().out
    assert "architecture not_an_arch is not registered" in text
    # NoPS, per agent: actor 18·64+64 + 64·64+64 + 64·5+5 = 5701, critic 18·64+64 + 64·64+64 + 64+1 = 5441
    assert f"| 4 | {4 * 11142:,} |" in text and f"| 8 | {8 * 11142:,} |" in text
    assert out.stat().st_size > 1000
