"""`make train`: the headline command with the quick-start config, and extra options through `TRAIN_ARGS`."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
import yaml

from harl.cli import train
from harl.config import TUNED_CONFIG_DIR

from .conftest import ROOT

QUICKSTART = TUNED_CONFIG_DIR / "mamujoco" / "Hopper-3x1" / "hasac-hypermarl-quickstart.yaml"


def make_train_argv(*make_args: str) -> list[str]:
    """The options `make train` passes to examples/train.py (`make -n`: printed, not run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "-n", "train", *make_args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    (command,) = [line for line in out.replace("\\\n", " ").splitlines() if "examples/train.py" in line]
    words = shlex.split(command)
    return words[words.index("examples/train.py") + 1 :]


def resolved(argv: list[str], capsys) -> dict:
    """The config `argv` resolves to (`--list_keys`)."""
    capsys.readouterr()
    assert train([*argv, "--list_keys"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_make_train_runs_the_headline_command_with_the_quickstart_config(capsys):
    argv = make_train_argv()
    assert argv[:6] == ["--algo", "hasac", "--arch", "hypermarl", "--env", "mamujoco"]
    assert argv[argv.index("--load_config") + 1] == str(QUICKSTART.relative_to(ROOT))
    config = resolved(argv, capsys)
    quickstart = yaml.safe_load(QUICKSTART.read_text())
    assert config["main"] == quickstart["main"] == {"algo": "hasac", "arch": "hypermarl", "env": "mamujoco"}
    for section, values in quickstart.items():
        if section != "main":
            assert {key: config[section][key] for key in values} == values, section
    assert config["run"]["exp_name"] == "quickstart"


def test_train_args_override_the_quickstart_budget(capsys):
    """The README's longer run: `make train TRAIN_ARGS="--num_env_steps 1000000"`."""
    config = resolved(make_train_argv("TRAIN_ARGS=--num_env_steps 1000000 --seed 3"), capsys)
    assert config["run"]["num_env_steps"] == 1_000_000 and config["run"]["seed"] == 3


@pytest.mark.parametrize("train_args", ["--exp_name mine", "--exp_name=mine --seed 2"])
def test_train_args_replace_the_flags_make_train_gives(train_args, capsys):
    """A flag `make train` sets itself (here --exp_name) is given once, with the TRAIN_ARGS value."""
    argv = make_train_argv(f"TRAIN_ARGS={train_args}")
    assert sum(word.split("=")[0] == "--exp_name" for word in argv) == 1
    assert resolved(argv, capsys)["run"]["exp_name"] == "mine"
