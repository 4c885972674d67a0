"""docs/extending.md runs as written: each worked example (a learner, an architecture, an environment) is a
`python` block that registers its entry and trains it for a tiny budget through `harl.cli.train_main`.

Each block is written to a file and imported as a module, as an extension named in `HARL_EXTENSIONS` would be
(so its config dataclass has a source for `--help`), with the working directory in a temporary folder (its
runs go to `results/` there). The registries are restored afterwards, so the examples' entries do not leak into
the other tests of this worker (e.g. `test_smoke.test_every_environment_is_covered`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from harl import registry
from harl.cli import train_main
from harl.errors import UserError
from harl.registry import AlgoEntry, ArchEntry, EnvEntry

from .conftest import ROOT

DOC = ROOT / "docs" / "extending.md"
SECTIONS = {"Add a learner": AlgoEntry, "Add an architecture": ArchEntry, "Add an environment": EnvEntry}
REGISTRIES = ("ALGORITHMS", "ARCHITECTURES", "ENVIRONMENTS", "ENVIRONMENT_MODULES")


def sections() -> dict[str, str]:
    """The text of each `## ` section of the page, by its title."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


EXAMPLES = {title: python_blocks(text) for title, text in sections().items() if title in SECTIONS}


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A temporary working directory, and the registries as they were before the test."""
    registry.all_environments()  # every built-in and extension entry in place (their modules are imported once)
    saved = {name: dict(getattr(registry, name)) for name in REGISTRIES}
    modules = set(sys.modules)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name, entries in saved.items():
        table = getattr(registry, name)
        table.clear()
        table.update(entries)
    for module in set(sys.modules) - modules:
        if module.startswith("extending_example"):
            del sys.modules[module]


def run_block(code: str, folder: Path, name: str) -> None:
    """Import `code` as module `name` from a file in `folder`."""
    path = folder / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def test_every_section_has_one_worked_example():
    assert {title: len(blocks) for title, blocks in EXAMPLES.items()} == dict.fromkeys(SECTIONS, 1)


@pytest.mark.parametrize("title", sorted(SECTIONS))
def test_every_registry_field_is_documented(title):
    """The section's table names every field of its registry entry, so a new field cannot go undocumented."""
    text = sections()[title]
    missing = [f.name for f in dataclasses.fields(SECTIONS[title]) if f"`{f.name}`" not in text]
    assert not missing, f"{title}: document {missing}"


@pytest.mark.parametrize("title", sorted(SECTIONS))
def test_worked_example_registers_and_trains(title, isolated, capsys):
    (code,) = EXAMPLES[title]
    kind = SECTIONS[title]
    table = {AlgoEntry: registry.ALGORITHMS, ArchEntry: registry.ARCHITECTURES, EnvEntry: registry.ENVIRONMENTS}[kind]
    before = set(table)
    run_block(code, isolated, f"extending_example_{kind.__name__.lower()}")
    (new,) = set(table) - before  # the example registered one entry, and trained with it
    (run_dir,) = (isolated / "results").glob("*/*/*/*/seed-*")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert new in config["main"].values()
    assert list((run_dir / "checkpoints").glob("step_*.pt"))
    capsys.readouterr()
    assert train_main(["--list"]) == 0
    assert new in capsys.readouterr().out


def test_new_learner_option_is_checked_saved_and_documented(isolated, capsys):
    """The learner example's config key: in the saved config, in `--help` with its docstring, range-checked."""
    run_block(EXAMPLES["Add a learner"][0], isolated, "extending_example_learner_option")
    (run_dir,) = (isolated / "results").glob("*/*/*/*/seed-*")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["algo"]["dual_clip"] == 2.5
    capsys.readouterr()
    assert train_main(["--help", "--algo", "mappo_dualclip"]) == 0
    assert "Lower bound c of the surrogate" in capsys.readouterr().out
    args = ["--algo", "mappo_dualclip", "--arch", "nops", "--env", "matrix"]
    for bad in (["--dual_clip", "0.5"], ["--seeds", "2"]):
        with pytest.raises(UserError):
            train_main([*args, *bad, "--list_keys"])
