"""User-facing errors: anything raised as `UserError` is bad input, reported as one line with exit code 2."""

from __future__ import annotations

import reprlib
from typing import Any

SHOWN_CHARS = 80
"""The most characters of a bad value an error message shows."""
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 3, 6, 6, 6
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = SHOWN_CHARS


def shown(value: Any) -> str:
    """`repr(value)` for an error message, at most `SHOWN_CHARS` characters: a huge or deeply nested value (a
    101-digit number, a long string, a YAML alias bomb's lists of lists) is cut, never expanded in full."""
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


class UserError(Exception):
    """Bad input from the user (config key, value, scenario, checkpoint...). The CLI prints it and exits 2."""


class ConfigError(UserError):
    """An unknown, ambiguous or ill-typed configuration key or value."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or incompatible with the requested run."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss, gradient norm, parameter or action: the run stops with one line
    naming the quantity and the update, before anything from that update is checkpointed."""


class EnvWorkerError(RuntimeError):
    """An environment worker process died or stopped answering."""
