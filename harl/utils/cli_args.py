"""The command lines' one parser: training options (`--key value` config overrides, main flags and
switches, `parse_train_args`) for `harl-train` and for every script that passes options on to training runs
(`harl-sweep`, `compare_sequential`), and `ArgParser` for scripts' own options (`harl-evaluate`, the research
scripts). Errors are `UserError`s, so scripts wrapped in `harl.cli.guarded` report bad arguments (unknown
options or choices, missing, repeated or ill-typed values) as one line with exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from harl.config import SEED_LIMIT
from harl.errors import UserError, shown

MAIN_FLAGS = ("algo", "arch", "env", "load_config", "resume")
SWITCHES = ("list", "list_keys", "no_tuned")

TRAIN_USAGE = (
    "usage: train.py --algo ALGO --arch ARCH --env ENV [--exp_name NAME] [--load_config FILE.yaml] [--seed N] "
    "[--device cpu|cuda] [--<section>.<key> VALUE | --<key> VALUE ...]\n"
    "       train.py --resume RUN_DIR [--<key> VALUE ...]\n"
    "       train.py --list | --algo ALGO --arch ARCH --env ENV --list_keys"
)


def parse_train_args(argv: list[str]) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """Split argv into main flags, switches and config overrides (`--key value` or `--key=value`)."""
    main: dict[str, str] = {}
    switches: set[str] = set()
    overrides: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            print(TRAIN_USAGE)
            raise SystemExit(0)
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
