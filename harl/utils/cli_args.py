"""The command lines' one parser: training options (`--key value` config overrides, main flags and
switches, `parse_train_args`) for `harl-train` and for every script that passes options on to training runs
(`harl-sweep`, `compare_sequential`), and `ArgParser` for scripts' own options (`harl-evaluate`, the research
scripts). Errors are `UserError`s, so scripts wrapped in `harl.cli.guarded` report bad arguments (unknown
options or choices, missing, repeated or ill-typed values) as one line with exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, NoReturn

from harl.config import SEED_LIMIT, ModelConfig, RunConfig, field_docs, first_sentence
from harl.errors import UserError, shown
from harl.registry import (
    ALGORITHMS,
    ARCHITECTURES,
    all_environments,
    get_algorithm,
    get_architecture,
    get_environment,
)

MAIN_FLAGS = ("algo", "arch", "env", "load_config", "resume")
SWITCHES = ("list", "list_keys", "no_tuned")
MAIN_HELP = {
    "algo": ("ALGO", "the learner (see --list)"),
    "arch": ("ARCH", "the architecture of the agents' networks (see --list)"),
    "env": ("ENV", "the environment (see --list); --scenario and the env options below pick its task"),
    "load_config": (
        "FILE.yaml",
        "a config file applied instead of the tuned config (its main: may name algo/arch/env)",
    ),
    "resume": ("RUN_DIR", "continue the run in RUN_DIR from its newest readable checkpoint (plus --<key> overrides)"),
    "list": ("", "list the registered algorithms, architectures and environments, and exit"),
    "list_keys": ("", "print the resolved config of --algo/--arch/--env (every key with its value), and exit"),
    "no_tuned": ("", "do not apply the tuned config under tuned_configs/<env>/<scenario>/ for this algo and arch"),
    "help": ("", "this help; with --algo/--arch/--env, only the options of those"),
}
"""`--help`'s line for each main flag and switch: (value name, what it does)."""

TRAIN_USAGE = (
    "usage: train.py --algo ALGO --arch ARCH --env ENV [--exp_name NAME] [--load_config FILE.yaml] [--seed N] "
    "[--device cpu|cuda] [--<section>.<key> VALUE | --<key> VALUE ...]\n"
    "       train.py --resume RUN_DIR [--<key> VALUE ...]\n"
    "       train.py --list | --algo ALGO --arch ARCH --env ENV --list_keys"
)


def parse_train_args(argv: list[str]) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """Split argv into main flags, switches and config overrides (`--key value` or `--key=value`).

    With `-h` / `--help` anywhere, the switches are just `help` and the main flags the `--algo`, `--arch` and
    `--env` names given (whose options the help then lists), whatever else argv holds.
    """
    if "-h" in argv or "--help" in argv:
        return help_names(argv), {"help"}, {}
    main: dict[str, str] = {}
    switches: set[str] = set()
    overrides: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise UserError(f"unexpected argument {shown(token)}; options look like --key value")
        key, eq, value = token[2:].partition("=")
        if key in SWITCHES:
            switches.add(key)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2):
                raise UserError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        target = main if key in MAIN_FLAGS else overrides
        if key in target:
            raise UserError(f"--{key} given twice")
        target[key] = value
    return main, switches, overrides


def train_help(names: dict[str, str]) -> str:
    """`harl-train --help`: the usage, the main flags and switches, then every config option by section with its
    value, default and the first sentence of its docstring (`field_docs`); only the algo, arch and env `names`
    gives (`help_names`) list their options, all registered ones otherwise."""
    lines = [TRAIN_USAGE, "", "main flags and switches:"]
    lines += [_option_line(f"--{flag} {value}".rstrip(), doc) for flag, (value, doc) in MAIN_HELP.items()]
    lines += [
        "",
        "config options: --<key> VALUE, or --<section>.<key> VALUE for a key two sections have. Defaults are the "
        "dataclasses'; the algo and env YAML files and tuned configs may change them (--list_keys shows a run's).",
    ]
    groups: list[tuple[str, str, type]] = [("run", "", RunConfig), ("model", "", ModelConfig)]
    for section, registry, lookup in (
        ("algo", ALGORITHMS, get_algorithm),
        ("arch", ARCHITECTURES, get_architecture),
        ("env", all_environments(), get_environment),
    ):
        entries = [lookup(names[section])] if section in names else [registry[name] for name in sorted(registry)]
        owners: dict[type, list[str]] = {}
        for entry in entries:
            owners.setdefault(entry.config_cls, []).append(entry.name)
        groups += [(section, ", ".join(names_of), cls) for cls, names_of in owners.items()]
    for section, owners_text, cls in groups:
        fields = dataclasses.fields(cls)
        if not fields:
            continue
        docs, hints, defaults = field_docs(cls), typing.get_type_hints(cls), cls()
        lines += ["", f"{section} options" + (f" of {owners_text}" if owners_text else "") + ":"]
        for f in fields:
            doc = f"{first_sentence(docs.get(f.name, ''))} (default: {_text(getattr(defaults, f.name))})"
            lines.append(_option_line(f"--{f.name} {_value_name(hints[f.name])}", doc))
    return "\n".join(lines)


def _option_line(option: str, doc: str) -> str:
    return f"  {option:<34} {doc}"


def _value_name(tp: Any) -> str:
    """How `--help` writes a field type's values: N, X, true|false, TEXT, N,N,..., a choice list."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(map(str, typing.get_args(tp)))
    if origin is list:
        return f"{_value_name(typing.get_args(tp)[0])},..."
    if origin in (typing.Union, types.UnionType):
        return _value_name(next(arg for arg in typing.get_args(tp) if arg is not type(None))) + "|none"
    return {int: "N", float: "X", bool: "true|false", str: "TEXT"}.get(tp, "VALUE")


def _text(value: Any) -> str:
    """A default as one would type it on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return '""' if value == "" else str(value)


def help_names(argv: list[str]) -> dict[str, str]:
    """The `--algo`, `--arch` and `--env` names in argv (`--key name` or `--key=name`), read leniently for `--help`."""
    names: dict[str, str] = {}
    for index, token in enumerate(argv):
        key, eq, value = token.removeprefix("--").partition("=")
        if token.startswith("--") and key in ("algo", "arch", "env"):
            if eq:
                names[key] = value
            elif index + 1 < len(argv):
                names[key] = argv[index + 1]
    return names


class ArgParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` raising `UserError` instead of printing usage and exiting.

    Abbreviated long options are off, so an option the script does not define (e.g. a training config
    key such as `--seed` next to the script's `--seeds`) is never taken for one it does.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see --help)")


def int_list(text: str) -> list[int]:
    """Parse "2,4,8" into [2, 4, 8] (for `type=` of list options)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {shown(text)}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def seed(text: str) -> int:
    """A seed, in [0, 2**31) as the training config's (for `type=` of seed options)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {shown(text)}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"seeds must be in [0, 2**31), got {value}")
    return value
