"""A full disk as one line: a write refused for lack of space (ENOSPC, or EDQUOT for a spent quota) ends a run with a
`UserError` naming the run folder, the space left there and how to continue, instead of tracebacks.

`torch.save` reports such a failure as a `RuntimeError` ("unexpected pos") raised from the `OSError` of the file
it writes to, and tensorboard's writer thread as an `OSError` it stores (and prints from the thread) and raises
at the next write; `full_disk_error` finds the `OSError` in either chain.
"""

from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harl.errors import UserError
from harl.utils.checkpoint import list_checkpoints
from harl.utils.memory import format_bytes

FULL = (errno.ENOSPC, errno.EDQUOT)


def full_disk_error(err: BaseException | None) -> OSError | None:
    """The `OSError` of a write refused for lack of space that `err` is or arose from, or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


def free_space(path: Path) -> int:
    """Bytes free on the file system holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def no_space_message(run_dir: Path) -> str:
    """One line: the run folder, the space left on its file system and how to continue (from its latest checkpoint,
    or afresh when it holds none)."""
    run_dir = Path(run_dir)
    latest = list_checkpoints(run_dir / "checkpoints")
    if latest:
        then = f"continue with --resume {run_dir} (from {latest[-1].name})"
    else:
        then = "start the run again" + (f" ({run_dir} holds no checkpoint)" if run_dir.exists() else "")
    return (
        f"no space left on the device of {run_dir} ({format_bytes(free_space(run_dir))} free); free some, then {then}"
    )


@contextmanager
def full_disk_reported(run_dir: Path) -> Iterator[None]:
    """Turn a full disk met inside (in this thread, or in a writer thread such as tensorboard's, whose traceback is
    then not printed) into a one-line `UserError` (`no_space_message`) about `run_dir`."""
    previous = threading.excepthook

    def quiet_when_full(args: threading.ExceptHookArgs) -> None:
        if full_disk_error(args.exc_value) is None:
            previous(args)

    threading.excepthook = quiet_when_full
    try:
        yield
    except (OSError, RuntimeError) as err:
        if full_disk_error(err) is None:
            raise
        raise UserError(no_space_message(run_dir)) from None
    finally:
        threading.excepthook = previous
