"""The tuned configs under `harl/tuned_configs/<env>/<scenario>/`: each holds only what differs from the layers below
it (dataclass defaults, `harl/configs/algos/`, `harl/configs/envs/`), loads through the CLI, builds the scenario its
folder names, and is the file the automatic lookup picks for its algo, arch and scenario."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from harl.cli import train
from harl.config import TUNED_CONFIG_DIR, parse_value, read_yaml, split_main, tuned_config_path
from harl.experiment import build_config
from harl.registry import ARCHITECTURES, get_algorithm, get_environment, load_extensions

load_extensions()

TUNED = sorted(TUNED_CONFIG_DIR.glob("*/*/*.yaml"))


def tuned_id(path: Path) -> str:
    return str(path.relative_to(TUNED_CONFIG_DIR))


def read_tuned(path: Path) -> tuple[str, str, list[str], dict]:
    """(env, algo, the archs the file applies to, its sections): its `main:` arch, or else every registered
    architecture whose entry declares it supports the learner (`--load_config` takes any)."""
    main, sections = split_main(read_yaml(path), path)
    assert {"algo", "env"} <= set(main), f"{tuned_id(path)}: main: must name algo and env (for --load_config alone)"
    assert main["env"] == path.parent.parent.name, f"{tuned_id(path)} lies under another env's folder"
    algo = get_algorithm(main["algo"])
    if "arch" in main:
        archs = [main["arch"]]
    else:
        archs = [name for name, entry in sorted(ARCHITECTURES.items()) if not entry.supports(algo, entry.config_cls())]
    return main["env"], main["algo"], archs, sections


@pytest.mark.parametrize("path", TUNED, ids=tuned_id)
def test_tuned_config_keys_depart_from_the_layers_below(path):
    """The rule at the top of harl/config.py: a key whose value the layers below already give (for every
    architecture the file applies to) is not restated. No layer below a tuned config depends on the scenario."""
    env, algo, archs, sections = read_tuned(path)
    below = [build_config(algo, arch, env, {}, use_tuned=False)[0] for arch in archs]
    restated = []
    for section, values in sections.items():
        for key, value in values.items():
            tp = typing.get_type_hints(type(getattr(below[0], section)))[key]
            parsed = parse_value(f"{section}.{key}", tp, value)
            if all(parsed == getattr(getattr(cfg, section), key) for cfg in below):
                restated.append(f"{section}.{key}")
    assert not restated, f"{tuned_id(path)} restates what the layers below give: {', '.join(restated)}"


def cli_value(value: object) -> str:
    """A YAML value as the command line spells it."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def listed(capsys, argv: list[str]) -> dict:
    """The resolved config `--list_keys` prints for these arguments."""
    assert train([*argv, "--list_keys"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", TUNED, ids=tuned_id)
def test_tuned_config_loads_builds_its_folders_scenario_and_is_looked_up(path, capsys):
    """`--load_config FILE` (with each arch the file applies to) builds the scenario of its folder; where the file
    is named `<algo>-<arch>.yaml`, or `<algo>.yaml` and no `<algo>-<arch>.yaml` lies beside it, the automatic lookup
    for that scenario picks it and resolves the same config."""
    env, algo, archs, sections = read_tuned(path)
    scenario = path.parent.name
    names = {arch: f"{algo}-{arch}" if (path.parent / f"{algo}-{arch}.yaml").is_file() else algo for arch in archs}
    env_flags = [
        part for key, value in (sections.get("env") or {}).items() for part in (f"--env.{key}", cli_value(value))
    ]
    for arch in archs:
        loaded = listed(capsys, ["--load_config", str(path), "--arch", arch])
        built = get_environment(env).config_cls(**loaded["env"]).scenario_name()
        assert built == scenario, f"{tuned_id(path)} builds scenario {built}"
        if path.stem == names[arch]:
            assert tuned_config_path(env, scenario, algo, arch) == path
            looked_up = listed(capsys, ["--algo", algo, "--arch", arch, "--env", env, *env_flags])
            assert looked_up == loaded
