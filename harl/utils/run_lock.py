"""One writer per run folder: an OS-level lock on `<run folder>/run.lock`, held while a process trains there.

The lock is `fcntl.flock` on an open file, so the kernel releases it when the process ends in any way
(a SIGKILLed run never leaves a stale lock). The holder writes its pid into the file so that a second
writer can name it. A new run folder is created under a hidden name, locked, and only then renamed
into place, so nobody (e.g. a sweep cleaning dead runs) ever sees it unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType

from harl.errors import UserError

LOCK_NAME = "run.lock"


class RunLock:
    """An exclusive hold on a run folder, released by `release()`, at the end of a `with` block or at exit.

    Attributes:
        folder: the run folder held.
        created: ancestors of `folder` (and `folder` itself) that this process created, deepest first;
            `discard()` removes them again.
    """

    def __init__(self, folder: Path, fd: int, created: list[Path] | None = None) -> None:
        self.folder, self._fd = Path(folder), fd
        self.created = created or []

    @classmethod
    def acquire(cls, folder: Path | str) -> RunLock:
        """Hold `folder` (an existing run folder) or raise `UserError` naming the process that holds it."""
        folder = Path(folder)
        lock = cls.try_acquire(folder)
        if lock is None:
            pid = holder_pid(folder)
            who = f"process {pid}" if pid is not None else "another process"
            raise UserError(
                f"{folder} is in use by {who} (a run folder takes one writer at a time); "
                "wait for it to end or stop it first"
            )
        return lock

    @classmethod
    def try_acquire(cls, folder: Path | str) -> RunLock | None:
        """Hold `folder`, or return None when another process holds it."""
        folder = Path(folder)
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise UserError(f"cannot lock the run folder {folder}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(folder, fd)

    @classmethod
    def create(cls, base: Path, name: str) -> RunLock:
        """Make and hold a new run folder `base/name` (or `base/name-2`, `-3`, ... when taken).

        Raises `OSError` when the folder cannot be created (e.g. `base` lies under a regular file or in a
        read-only directory).
        """
        base = Path(base)
        missing = [p for p in (base, *base.parents) if not p.exists()]
        base.mkdir(parents=True, exist_ok=True)
        staging = base / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"  # hidden: no glob of run folders sees it
        staging.mkdir()
        lock = cls.try_acquire(staging)
        assert lock is not None  # nobody else knows the staging folder
        suffix = 1
        while True:
            folder = base / (name if suffix == 1 else f"{name}-{suffix}")
            if not folder.exists():
                try:
                    staging.rename(folder)
                    break
                except OSError as err:
                    if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            suffix += 1
        lock.folder, lock.created = folder, [folder, *missing]
        return lock

    def release(self) -> None:
        """Give the folder up (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Delete what `create` made (the run folder and the empty parents it added), then release."""
        for path in self.created:
            if path == self.folder:
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when empty
        self.release()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def holder_pid(folder: Path | str) -> int | None:
    """The pid written by the latest holder of `folder`'s lock (None when unknown)."""
    try:
        return int((Path(folder) / LOCK_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def is_held(folder: Path | str) -> bool:
    """Whether another process holds `folder` now (without creating a lock file where there is none)."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
