"""An argparse parser whose errors are `UserError`s, so scripts wrapped in `harl.cli.guarded` report bad
arguments (unknown choices, missing or ill-typed values) as one line with exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from harl.errors import UserError


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
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values
