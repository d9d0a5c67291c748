"""One writer per run folder: an exclusive ``fcntl`` lock on ``<run>/.lock``, held for the life of a sweep.

The kernel releases the lock when its process dies (even on ``kill -9``), so a stale lock from a dead process is
simply taken over. The holder writes its process id into the file, so a second writer is told who holds it. A
writer also checks, before each write, that the lock file it holds is still the folder's: if the folder was
deleted or replaced while it ran, it stops instead of mixing its chunks into another sweep's folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from schurjax.errors import InputError

__all__ = ["RunLock", "LOCK_FILE"]

LOCK_FILE = ".lock"


class RunLock:
    """The exclusive lock of one run folder.

    Args:
        folder: the run folder (must exist).
        where: the function named in errors.

    Example::

        with RunLock(Path("runs/x")) as lock:
            ...
            lock.check()          # before each write: raises if the folder was deleted or replaced
    """

    def __init__(self, folder: Path, where: str = "sweep"):
        self.path = Path(folder) / LOCK_FILE
        self.where = where
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`InputError` naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(self.where, "out", f"{self.path.parent} is being written by {holder}; wait for it to "
                             "finish, stop it, or choose another folder") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def check(self) -> None:
        """Raise :class:`InputError` if the folder's lock file is no longer the one this writer holds."""
        if self._fd is None:
            raise RuntimeError("RunLock.check: the lock is not held")
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self._fd)
        if on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            raise InputError(self.where, "out", f"{self.path.parent} was deleted or replaced while this sweep was "
                             "writing it; stopped without writing more (rerun to start it again)")  # fmt: skip

    def release(self) -> None:
        """Let go of the lock (the file stays; it is only a lock while some process holds it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
