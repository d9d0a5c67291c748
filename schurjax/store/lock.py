"""One writer per run folder: an exclusive ``fcntl`` lock on ``<run>/.lock``, held for the life of a sweep.

The kernel releases the lock when its process dies (even on ``kill -9``), so a stale lock from a dead process is
simply taken over. The holder writes its process id into the file, so a second writer is told who holds it. A
writer also checks, before each write, that the lock file it holds is still the folder's: if the folder was
deleted or replaced while it ran, it stops instead of mixing its chunks into another sweep's folder.

The processes of one multi-process sweep (:mod:`schurjax.runtime.distributed`) share the folder: each holds ``.lock``
shared and its own ``.lock-<index>`` exclusively, so a single-process sweep, or a second process with the same
index, is refused while they run. A process of several takes these locks *before* it joins the others
(:func:`schurjax.runtime.distributed.initialize`), so two processes given the same ``--process-id`` are told so at once
instead of both waiting for a process that never comes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from pathlib import Path

from schurjax.errors import InputError

__all__ = ["RunLock", "LOCK_FILE", "held_indices"]

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

    def __init__(self, folder: Path, where: str = "sweep", *, index: int = 0, count: int = 1):
        folder = Path(folder)
        self.main = folder / LOCK_FILE
        self.path = self.main if count == 1 else folder / f"{LOCK_FILE}-{index}"
        self.where = where
        self.index, self.count = int(index), int(count)
        self._fd: int | None = None
        self._main_fd: int | None = None

    def _take(self, path: Path, mode: int, patience: float = 0.0) -> int:
        import time

        from schurjax.store._safe_io import open_lock

        fd = open_lock(path.parent, path.name, where=self.where)  # never through a symlink
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InputError(self.where, "out", f"{path} is not a regular file; remove it and rerun")
        end = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() < end:  # a momentary holder (a process probing who is there) lets go
                    time.sleep(0.05)
                    continue
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a multi-process sweep (see .lock-*)"
            os.close(fd)
            if path != self.main:
                raise InputError(
                    self.where,
                    "process_id",
                    f"process {self.index} of {self.count} is already running ({holder}, holding {path}); give "
                    f"every process its own --process-id in 0..{self.count - 1} (each once)",
                )
            raise InputError(
                self.where,
                "out",
                f"{path.parent} is being written by {holder}; wait for it to finish, stop it, or choose another folder",
            )

    def acquire(self, patience: float = 0.0) -> RunLock:
        """Take the lock, or raise :class:`InputError` naming the process that holds it.

        Args:
            patience: seconds to keep trying while another process holds it (0: refuse at once).
        """
        if self.path != self.main:
            self._main_fd = self._take(self.main, fcntl.LOCK_SH, patience)
        try:
            fd = self._take(self.path, fcntl.LOCK_EX, patience)
        except InputError:
            self.release()
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def check(self) -> None:
        """Raise :class:`InputError` if the folder's lock file is no longer the one this writer holds."""
        if self._fd is None:
            raise RuntimeError("RunLock.check: the lock is not held")
        try:
            on_disk = os.lstat(self.path)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self._fd)
        if on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            raise InputError(
                self.where,
                "out",
                f"{self.path.parent} was deleted or replaced while this sweep was "
                "writing it; stopped without writing more (rerun to start it again)",
            )

    def release(self) -> None:
        """Let go of the lock (the files stay; they are only locks while some process holds them)."""
        for name in ("_fd", "_main_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def held_indices(folder: str | os.PathLike) -> set[int]:
    """The process indices whose ``<folder>/.lock-<index>`` a live process holds now.

    Each file is probed with a momentary shared lock (a process taking its own lock waits that moment out, see
    ``RunLock.acquire(patience=...)``); a missing folder or file counts as not held.

    Example::

        held_indices("runs/x")        # {0, 2}: processes 0 and 2 are there, 1 is not
    """
    found: set[int] = set()
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        head, _, tail = name.partition("-")
        if head != LOCK_FILE or not tail.isdigit():
            continue
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            found.add(int(tail))
        except OSError:
            pass
        finally:
            os.close(fd)
    return found
