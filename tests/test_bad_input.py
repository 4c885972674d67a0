"""Bad values and config files through the CLI: exit status 2, one line on stderr, nothing before it.

Every case runs `harl.cli.train` in-process (stdout and stderr captured); a few also run `examples/train.py`
in a real process, where a traceback or a printed config would show.
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc

import pytest
import torch

from harl.buffers.rollout import RolloutBuffer
from harl.cli import train
from harl.envs.matrix import memory_estimate
from harl.experiment import build_config, run_sizes
from harl.registry import ALGORITHMS, get_environment, load_extensions
from harl.runners.base import build_learner

from .conftest import run_script

load_extensions()

MAPPO = ["--algo", "mappo", "--arch", "nops", "--env", "matrix"]
MASAC = ["--algo", "masac", "--arch", "nops", "--env", "matrix"]
HATRPO = ["--algo", "hatrpo", "--arch", "nops", "--env", "matrix"]
HYPER = ["--algo", "mappo", "--arch", "hypermarl", "--env", "matrix"]
HASAC = ["--algo", "hasac", "--arch", "hypermarl", "--env", "mamujoco"]
HASAC_SHORT = (
    "--num_env_steps 3000 would train nothing: hasac's first update waits for warmup_steps 10000 env steps, past "
    "this run's last training phase (at 3000 env steps); raise --num_env_steps to 10000 or lower --warmup_steps to "
    "3000 or less"
)
MASAC_SMALL = "batch_size 5000 transitions, past this run's last training phase (at 3000 env steps); raise"

BAD_VALUES = [
    (MAPPO, ["--seed", "-1"], "run.seed must be in [0, 2**31) (what numpy's and the envs' seeding accept), got -1"),
    (MAPPO, ["--seed", "99999999999"], "run.seed must be in [0, 2**31)"),
    (MAPPO, ["--seed", "2147483648"], "run.seed must be in [0, 2**31)"),
    (MAPPO, ["--lr", "nan"], "algo.lr must be a finite number > 0, got nan"),
    (MAPPO, ["--lr", "inf"], "algo.lr must be a finite number > 0, got inf"),
    (MAPPO, ["--lr", "1e400"], "algo.lr must be a finite number > 0, got inf"),
    (MAPPO, ["--lr", "-0.001"], "algo.lr must be > 0, got -0.001"),
    (MAPPO, ["--critic_lr", "0"], "algo.critic_lr must be > 0, got 0.0"),
    (MAPPO, ["--gamma", "1.5"], "algo.gamma must be in [0, 1], got 1.5"),
    (MAPPO, ["--gae_lambda", "nan"], "algo.gae_lambda must be a finite number in [0, 1], got nan"),
    (MAPPO, ["--clip_param", "-inf"], "algo.clip_param must be a finite number > 0, got -inf"),
    (MAPPO, ["--entropy_coef", "-0.01"], "algo.entropy_coef must be >= 0, got -0.01"),
    (MAPPO, ["--max_grad_norm", "inf"], "algo.max_grad_norm must be a finite number >= 0, got inf"),
    (MAPPO, ["--opti_eps", "0"], "algo.opti_eps must be > 0, got 0.0"),
    (MAPPO, ["--std_init", "nan"], "model.std_init must be a finite number > 0, got nan"),
    (MAPPO, ["--hidden_sizes", "64,0"], "model.hidden_sizes must hold values > 0, got [64, 0]"),
    (MAPPO, ["--time_limit_minutes", "inf"], "run.time_limit_minutes must be a finite number >= 0, got inf"),
    (MAPPO, ["--n_workers", "-2"], "run.n_workers must be >= -1 (-1: auto, 0: in-process), got -2"),
    (MAPPO, ["--n_agents", "1"], "env.n_agents must be >= 2, got 1"),
    (MASAC, ["--polyak", "0"], "algo.polyak must be in (0, 1], got 0.0"),
    (MASAC, ["--alpha", "nan"], "algo.alpha must be a finite number > 0, got nan"),
    (MASAC, ["--alpha_lr", "inf"], "algo.alpha_lr must be a finite number > 0, got inf"),
    (HYPER, ["--embedding_gain", "nan"], "arch.embedding_gain must be a finite number > 0, got nan"),
    (MAPPO, ["--seeds", "0"], "run.seeds must be > 0, got 0"),
    (MAPPO, ["--seeds", "-3"], "run.seeds must be > 0, got -3"),
    (MAPPO, ["--seeds", "1.5"], "run.seeds expects an integer, got '1.5'"),
    (MAPPO, ["--seed", "2147483647", "--seeds", "2"], "reaches seed 2147483648, past the largest seed 2147483647"),
    (
        MAPPO,
        ["--seeds", "2", "--model.recurrent", "true", "--episode_length", "10", "--data_chunk_length", "4"],
        "--seeds 2 with recurrent policies needs whole training sequences (each seed draws its own): episode_length",
    ),
    (
        ["--algo", "ippo", "--arch", "nops", "--env", "matrix"],
        ["--critic", "shared"],
        "--critic shared: ippo's critics",
    ),
    (HYPER, ["--critic", "shared", "--share_embedding", "true"], "arch.share_embedding needs a critic generated per"),
    (MAPPO, ["--num_env_steps", "1e100"], "run.num_env_steps must be in (0, 2**53] (step counts are logged as float64"),
    (MAPPO, ["--n_workers", "1000"], "--n_workers 1000: the 100 training envs (n_rollout_threads) take at most 99 env"),
    (MAPPO, ["--n_workers", "4", "--n_rollout_threads", "2", "--seeds", "2"], "4 training envs (n_rollout_threads × "),
    (HASAC, ["--num_env_steps", "3000"], HASAC_SHORT),
    (MASAC, ["--num_env_steps", "1000"], "masac's first update waits for warmup_steps 2000 env steps, past this run's"),
    (MASAC, ["--num_env_steps", "3000", "--warmup_steps", "0", "--batch_size", "5000"], MASAC_SMALL),
]


def assert_one_line_error(capsys) -> str:
    """The captured output is exactly one `error: ...` line on stderr and nothing on stdout."""
    captured = capsys.readouterr()
    assert captured.out == "", captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize(("base", "argv", "message"), BAD_VALUES, ids=[" ".join(c[1]) for c in BAD_VALUES])
def test_bad_values_exit_2_with_one_line(base, argv, message, capsys, tmp_path):
    assert train([*base, *argv, "--log_dir", str(tmp_path)]) == 2
    assert message in assert_one_line_error(capsys)
    assert not any(tmp_path.iterdir())  # refused before making a run folder


def test_seeds_are_refused_for_a_learner_that_does_not_declare_batched_seeds(monkeypatch, capsys, tmp_path):
    """The refusal reads the learner's registry declaration (every shipped learner batches seeds)."""
    monkeypatch.setitem(ALGORITHMS, "hatrpo", dataclasses.replace(ALGORITHMS["hatrpo"], batched_seeds=False))
    assert train([*HATRPO, "--seeds", "2", "--log_dir", str(tmp_path)]) == 2
    line = assert_one_line_error(capsys)
    assert "--seeds 2: hatrpo trains one seed per process so far; learners that batch seeds: " in line
    assert not any(tmp_path.iterdir())


def test_too_many_agents_is_refused_with_the_estimate(capsys, tmp_path):
    assert train([*MAPPO, "--n_agents", "100000", "--log_dir", str(tmp_path)]) == 2
    line = assert_one_line_error(capsys)
    assert line.startswith("error: this run needs at least ") and " TiB on cpu (payoff counts " in line
    assert "available there; use fewer agents or environments" in line


def test_memory_refusal_follows_the_available_memory(monkeypatch, capsys, tmp_path):
    """The same config passes or is refused depending on what the device has (the limit, not a constant)."""
    import harl.experiment

    argv = [*MAPPO, "--n_agents", "64", "--list_keys"]
    monkeypatch.setattr(harl.experiment, "available_memory", lambda device: 1 << 20)
    assert train(argv) == 2
    assert "more than the 1.0 MiB available there" in assert_one_line_error(capsys)
    monkeypatch.setattr(harl.experiment, "available_memory", lambda device: 1 << 30)
    assert train(argv) == 0
    assert "n_agents: 64" in capsys.readouterr().out


@pytest.mark.parametrize(("algo", "arch"), [("mappo", "nops"), ("happo", "fups"), ("mappo", "hypermarl")])
def test_memory_estimate_is_a_lower_bound_of_what_a_run_allocates(algo, arch):
    sizes = {"n_agents": "6", "n_rollout_threads": "3", "n_eval_rollout_threads": "5", "episode_length": "4"}
    cfg, _ = build_config(algo, arch, "matrix", sizes)
    parts = memory_estimate(cfg.env, run_sizes(cfg))
    env = get_environment("matrix").make(cfg.env, n_envs=5, seed=0, device="cpu")
    learner = build_learner(cfg, env.spec, torch.device("cpu"))
    logits = learner.actor.net(env.reset(0).obs, None)  # (E, N, N) for the larger (evaluation) batch
    assert logits.numel() * logits.element_size() == parts["action logits"]
    assert parts["payoff counts"] == 2 * parts["action logits"]  # the same shape in int64
    weights = sum(p.numel() for p in learner.actor.parameters())
    assert 16 * weights >= parts["actor output layers"] > 0  # with gradients and Adam's two moments
    buffer = RolloutBuffer(env.spec, cfg.algo.episode_length, cfg.run.n_rollout_threads, torch.device("cpu"))
    stored = sum(t.numel() * t.element_size() for t in vars(buffer).values() if isinstance(t, torch.Tensor))
    assert stored >= parts["rollout buffer"] > 0


def write_binary(path):
    path.write_bytes(bytes(range(256)) * 4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (write_binary, "is not a text file (not UTF-8); give a YAML file"),
        (lambda path: path.mkdir(), "is a directory; give a YAML file"),
        (lambda path: path.write_text("1: 2\n"), "key 1 is not a string (YAML reads it as int); quote it"),
        (
            lambda path: path.write_text("run:\n  yes: 3\n"),
            "key True under run is not a string (YAML reads it as bool)",
        ),
        (lambda path: path.write_text("algo:\n  lr: [1, {2: 3}]\n"), "algo.lr expects a number"),
        (lambda path: path.write_text("- lr\n- 0.1\n"), "must hold a mapping of sections"),
        (lambda path: path.write_text("run: {seed: 1\n"), "is not valid YAML"),
        (lambda path: path.write_text("algo:\n  lr: .nan\n"), "algo.lr must be a finite number > 0, got nan"),
        (lambda path: path.write_text("run:\n  seed: &a [1, *a]\n"), "an alias refers to a value that contains it"),
        (lambda path: path.write_text(f"run:\n  seed: {'[' * 10**5}{']' * 10**5}\n"), "nests its values too deeply"),
    ],
    ids=["binary", "directory", "int-key", "bool-key", "nested-non-string", "list", "syntax", "nan", "cycle", "deep"],
)
def test_bad_load_config_exits_2_with_one_line(make, message, capsys, tmp_path):
    path = tmp_path / "config.yaml"
    make(path)
    assert train([*MAPPO, "--load_config", str(path), "--log_dir", str(tmp_path / "results")]) == 2
    assert message in assert_one_line_error(capsys)


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs" in YAML flow style: `levels` lists of `width` aliases of the list before, the last one
    standing for width**levels values."""
    anchors = ["&l0 lol", *(f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1))]
    return f"[{', '.join(anchors)}]"


@pytest.mark.parametrize("key", ["run.seed", "run.exp_name", "model.hidden_sizes", "main.algo"])
def test_a_yaml_alias_bomb_is_one_line_at_once(key, capsys, tmp_path):
    """Refused when the file is read, within 5 s and 500 MB, and the message shows none of the values."""
    section, name = key.split(".")
    path = tmp_path / "bomb.yaml"
    path.write_text(f"{section}:\n  {name}: {alias_bomb()}\n")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        status = train([*MAPPO, "--load_config", str(path), "--log_dir", str(tmp_path / "results")])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 2 and time.perf_counter() - started < 5 and peak < 500 * 2**20
    line = assert_one_line_error(capsys)
    assert (
        line
        == f"error: config file {path}: its aliases expand to more than 100,000 values (a harl config holds a "
        + ("few hundred); write the values out instead of nesting aliases")
    )


def test_aliases_of_a_normal_size_load(capsys, tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text("model:\n  hidden_sizes: &sizes [16, 8]\n  critic_hidden_sizes: *sizes\n")
    assert train([*MAPPO, "--load_config", str(path), "--list_keys"]) == 0
    assert "critic_hidden_sizes:\n  - 16\n  - 8\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "nan"], "error: algo.lr must be a finite number > 0, got nan"),
        (["--n_agents", "100000"], "error: this run needs at least "),
    ],
)
def test_bad_values_in_a_real_process(argv, message, tmp_path):
    result = run_script("train.py", *MAPPO, *argv, "--log_dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "seeds must be in [0, 2**31), got -1"),
        (["--seed", "99999999999"], "seeds must be in [0, 2**31)"),
        (["--seed", "x"], "expected an integer seed, got 'x'"),
        (["--episodes", "two"], "--episodes"),
        (["--no_such_option", "1"], "unrecognized arguments"),
    ],
)
def test_evaluate_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    """`harl-evaluate` parses with the same parser family: one line, before the checkpoint is even read."""
    from harl.cli import evaluate_cli

    assert evaluate_cli(["--checkpoint", str(tmp_path / "missing"), *args]) == 2
    assert message in assert_one_line_error(capsys)
