"""The CLI contract: listing, bad input (exit 2, one line, no traceback), run folders and logs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harl.cli import evaluate_cli, train
from harl.config import ModelConfig, RunConfig, field_docs, first_sentence
from harl.registry import ALGORITHMS, ARCHITECTURES, all_environments, load_extensions
from harl.utils.cli_args import MAIN_FLAGS, SWITCHES

from .conftest import read_progress, run_script

load_extensions()
MATRIX_TINY = ["--env", "matrix", "--num_env_steps", "200", "--n_rollout_threads", "10", "--eval_episodes", "5"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algo", "mapo", "--arch", "nops", "--env", "matrix"], "unknown algorithm 'mapo'; valid: "),
        (["--algo", "mappo", "--arch", "hyper", "--env", "matrix"], "unknown architecture 'hyper'"),
        (["--algo", "mappo", "--arch", "nops", "--env", "smac"], "unknown environment 'smac'"),
        (["--algo", "mappo", "--arch", "nops", "--env", "mamujoco", "--agent_conf", "5x7"], "agent_conf"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--learning_rate", "1"], "unknown config key"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--seed", "x"], "expects an integer"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--seed"], "--seed needs a value"),
        (["--algo", "mappo", "--arch", "nops"], "missing --env"),
        (["--resume", "/nonexistent/run"], "not a run folder"),
        (["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--load_config", "/nope.yaml"], "not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert train([*argv, "--log_dir", str(tmp_path)]) == 2
    assert message in one_line_error(capsys)


def test_missing_cuda_is_a_clear_error(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert (
        train(["--algo", "mappo", "--arch", "nops", *MATRIX_TINY, "--device", "cuda", "--log_dir", str(tmp_path)]) == 2
    )
    assert "CUDA is not available" in one_line_error(capsys)


def test_impossible_combination_is_refused(capsys, tmp_path, monkeypatch):
    """Every built-in learner handles both action types, so an extension's continuous-only one is used."""
    import dataclasses

    entry = dataclasses.replace(ALGORITHMS["mappo"], name="continuous_only", discrete=False)
    monkeypatch.setitem(ALGORITHMS, "continuous_only", entry)
    assert train(["--algo", "continuous_only", "--arch", "nops", *MATRIX_TINY, "--log_dir", str(tmp_path)]) == 2
    assert "continuous actions only" in one_line_error(capsys)
    assert not any(tmp_path.iterdir())


def test_exit_status_in_a_real_process(tmp_path):
    result = run_script(
        "train.py", "--algo", "mappo", "--arch", "nops", "--env", "matrix", "--lrr", "1", "--log_dir", str(tmp_path)
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown config key 'lrr' for this algo/arch/env; closest valid keys: algo.lr (in command line)"
    ]


def test_list_shows_every_registry(capsys):
    assert train(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("mappo", "happo", "nops", "fups", "fups_id", "mamujoco", "matrix", "HalfCheetah-2x3"):
        assert name in out


def test_run_folder_logs_and_evaluation(train_run, capsys):
    run_dir = train_run("--algo", "mappo", "--arch", "fups_id", *MATRIX_TINY, "--exp_name", "cli", "--seed", "3")
    parts = run_dir.relative_to(run_dir.parents[4]).parts
    assert parts[:4] == ("matrix", "specialisation-4", "mappo-fups_id", "cli") and parts[4].startswith("seed-3-")
    assert (run_dir / "config.yaml").is_file() and any((run_dir / "tb").iterdir())
    rows = read_progress(run_dir)
    assert list(rows[0])[:3] == ["env_steps", "train/episode_return", "eval/episode_return"]
    assert rows[-1]["env_steps"] == "200" and rows[-1]["eval/episode_return"] != ""
    assert {"charts/SPS", "losses/agent_0/policy_loss", "losses/critic/value_loss"} <= set(rows[-1])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_200.pt"]
    capsys.readouterr()
    assert evaluate_cli(["--checkpoint", str(run_dir), "--episodes", "7"]) == 0
    assert "episode return over 7 episodes: mean" in capsys.readouterr().out


def test_corrupt_checkpoint_is_refused(train_run, capsys, tmp_path):
    run_dir = train_run("--algo", "mappo", "--arch", "nops", *MATRIX_TINY)
    (ckpt,) = (run_dir / "checkpoints").iterdir()
    ckpt.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert evaluate_cli(["--checkpoint", str(ckpt)]) == 2
    assert "corrupt or not a harl checkpoint" in one_line_error(capsys)
    assert train(["--resume", str(run_dir)]) == 2
    assert "corrupt" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("target", "listing", "status", "message"),
    [
        (
            "step_100.pt",
            None,
            2,
            "step_100.pt was removed: its run keeps only its latest checkpoints (keep_checkpoints)",
        ),
        ("run", ["step_200.pt", "step_300.pt"], 0, "checkpoint: {checkpoints}/step_200.pt (200 env steps)"),
        ("run", ["step_300.pt", "step_400.pt"], 2, "were removed while being loaded (rotated away by a running"),
    ],
    ids=["rotated-file", "listed-then-rotated", "all-listed-then-rotated"],
)
def test_evaluate_of_a_rotated_checkpoint_says_so(target, listing, status, message, train_run, capsys, monkeypatch):
    """A checkpoint a running training rotated away (`keep_checkpoints`) is named removed, never corrupt; `listing`:
    the folder as listed before the files past step_200.pt were rotated away."""
    import harl.utils.checkpoint as checkpoint

    args = ["--algo", "mappo", "--arch", "nops", *MATRIX_TINY, "--save_interval", "100", "--keep_checkpoints", "1"]
    checkpoints = train_run(*args) / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step_200.pt"]
    if listing is not None:
        monkeypatch.setattr(checkpoint, "list_checkpoints", lambda folder: [folder / name for name in listing])
    capsys.readouterr()
    path = checkpoints / target if target != "run" else checkpoints.parent
    assert evaluate_cli(["--checkpoint", str(path), "--episodes", "2"]) == status
    captured = capsys.readouterr()
    if status == 0:
        assert message.format(checkpoints=checkpoints) in captured.out and "note:" not in captured.out
    else:
        assert message in captured.err and "corrupt" not in captured.err
        assert len(captured.err.splitlines()) == 1 and captured.out == ""


def config_classes() -> set[type]:
    """Every config section's dataclass: run, model and each registered algorithm's, architecture's and env's."""
    entries = [*ALGORITHMS.values(), *ARCHITECTURES.values(), *all_environments().values()]
    return {RunConfig, ModelConfig, *(entry.config_cls for entry in entries)}


def test_help_lists_every_option_with_its_doc(capsys):
    assert train(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for flag in [*MAIN_FLAGS, *SWITCHES, "help"]:
        assert any(line.startswith(f"  --{flag} ") for line in lines), flag
    for cls in config_classes():
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            doc = first_sentence(docs[f.name])
            assert any(line.startswith(f"  --{f.name} ") and doc in line for line in lines), (cls.__name__, f.name)


def test_help_for_one_algo_arch_and_env_lists_theirs(capsys):
    assert train(["--algo", "hasac", "--arch=nops", "--env", "matrix", "--help", "--no_such_key"]) == 0
    out = capsys.readouterr().out
    assert "algo options of hasac:\n  --warmup_steps N " in out and "env options of matrix:\n  --game " in out
    assert "--ppo_epoch" not in out and "arch options" not in out  # NoPS has no options
    assert train(["--algo", "nope", "--help"]) == 2
    assert "unknown algorithm 'nope'" in one_line_error(capsys)


def test_help_in_a_real_process():
    result = run_script("train.py", "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: train.py --algo ALGO") and "\n  --num_env_steps N " in result.stdout
