"""The processes of one sweep, on JAX's own distributed runtime (``jax.distributed``).

Several processes (on one host or several) share one run folder on a shared file system. Each evaluates its share
of the chunks (chunk ``j`` belongs to process ``j % process_count``) and writes its own chunk files; process 0
writes the manifest before anyone starts and assembles the table after everyone is done. The processes meet at
two barriers of JAX's runtime (``multihost_utils.sync_global_devices``) and agree on the config through
``multihost_utils.process_allgather``, so processes given different configs for one folder all stop with an error.

Every wait is bounded and interruptible. JAX's runtime waits in C++ on the main thread, where Python cannot run a
signal handler, so :class:`_Watchdog` waits beside it: a thread reads the signal number that Python's C-level
handler writes to a wake-up pipe (``signal.set_wakeup_fd``) and, on SIGTERM or SIGINT, prints one line naming the
process that is missing and ends the process with ``128 + signum`` (``os._exit``: nothing is half-written while
processes wait, and the kernel releases the folder's locks); when ``--timeout`` passes first it prints one line and
ends it with 2, before XLA's own deadline would abort with a C++ stack trace.

Duplicate process ids are found by the run folder every process shares: before it joins the others, process ``i``
takes ``<out>/.lock-<i>`` exclusively (``fcntl.flock``, :class:`schurjax.store.lock.RunLock`; the kernel drops it when
the process dies, even on ``kill -9``, so a stale file never blocks a rerun). A second process given the same index
finds it held and stops at once in one line (exit 2). The same files tell a process that times out which indices
no live process holds, i.e. which processes are missing. A second process 0 on the same host is also found by the
coordinator's port being taken (a folder on a disk the processes do not share cannot see it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.errors import InputError

__all__ = ["Processes", "initialize", "cluster_environment"]

_CLUSTER_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def cluster_environment() -> bool:
    """Whether a cluster scheduler (SLURM, Open MPI, PMI) started this process as one of several."""
    return any(int(os.environ.get(v, "1") or 1) > 1 for v in _CLUSTER_VARS)


class Processes:
    """This process's place among the processes of a sweep.

    Attributes:
        index: this process's index (0 for a single process).
        count: number of processes.
    """

    def __init__(self, index: int = 0, count: int = 1, lock: Any = None):
        self.index, self.count = int(index), int(count)
        self.lock = lock  # this process's RunLock of the shared folder, taken before it joined (or None)

    def release(self) -> None:
        """Let go of the folder's lock taken by :func:`initialize` (a no-op once a RunFolder has released it)."""
        if self.lock is not None:
            self.lock.release()

    @property
    def many(self) -> bool:
        return self.count > 1

    @contextlib.contextmanager
    def _lost(self, what: str) -> Iterator[None]:
        """A collective that fails because another process died is the environment, said in one line."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - the runtime's error names the failed collective
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(
                "sweep",
                "num_processes",
                f"process {self.index} of {self.count} lost the others at {what!r} ({type(e).__name__}: "
                f"{first[:160]}); a process stopped: rerun every process with the same command, finished chunks "
                "are kept",
            ) from None

    def mine(self, j: int) -> bool:
        """Whether chunk number ``j`` (in the sweep's global chunk order) is this process's to evaluate."""
        return j % self.count == self.index

    def barrier(self, name: str) -> None:
        """Wait until every process reaches ``name`` (a no-op for one process)."""
        if self.many:
            from jax.experimental import multihost_utils

            with (
                self._lost(name),
                _Watchdog(
                    lambda: f"process {self.index} of {self.count} waited for the others at {name!r}", resume=_RESUME
                ),
            ):
                multihost_utils.sync_global_devices(name)

    def gather(self, digest: str, status: int) -> list[tuple[str, int]]:
        """Every process's ``(digest, status)``, in process order, seen by every process (itself alone for one)."""
        if not self.many:
            return [(digest, status)]
        from jax.experimental import multihost_utils

        mine = np.concatenate([np.frombuffer(bytes.fromhex(digest), dtype=np.uint8), [status]]).astype(np.int32)
        with (
            self._lost("the config check"),
            _Watchdog(
                lambda: f"process {self.index} of {self.count} waited for the others at the config check",
                resume=_RESUME,
            ),
        ):
            rows = np.asarray(multihost_utils.process_allgather(mine)).reshape(self.count, -1)
        return [(bytes(r[:-1].astype(np.uint8)).hex(), int(r[-1])) for r in rows]


DEFAULT_TIMEOUT = 120
"""Seconds a process waits for the others (to reach the coordinator, for all to join) before it stops."""

_RESUME = "finished chunks are kept; rerun the same command on every process to resume"
_XLA_GRACE = 60
"""Seconds XLA's own join deadline lies beyond ours: ours always ends the wait first, in one line."""


class _Watchdog:
    """Wait beside a blocking C++ call of JAX's runtime: SIGTERM/SIGINT end the process at once, and so does the
    deadline (``timeout`` seconds; None: no deadline), each with one line on stderr (see the module docstring).

    Args:
        waiting: the line's subject, e.g. ``"process 0 of 2 waited at 127.0.0.1:1234 for process 1"`` (called
            only when the line is printed, so it can look at the folder then).
        timeout: seconds until :meth:`expired` (None: none).
        expired: the one line for the deadline (called then).
        resume: what the user does next, appended to the signal's line.
        cleanup: run before the process ends (e.g. remove a folder this process created).

    Outside the main thread signals cannot be watched; the deadline still is.
    """

    def __init__(
        self,
        waiting: Callable[[], str],
        *,
        timeout: float | None = None,
        expired: Callable[[], str] | None = None,
        resume: str = _RESUME,
        cleanup: Callable[[], None] | None = None,
    ):
        self.waiting, self.timeout, self.expired, self.resume = waiting, timeout, expired, resume
        self.cleanup = cleanup
        self.received: int | None = None
        self._handlers: dict[int, Any] = {}
        self._old_fd: int | None = None

    def __enter__(self) -> _Watchdog:
        self._r, self._w = os.pipe()
        self._stop_r, self._stop_w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old = signal.getsignal(sig)
                if old is not signal.SIG_IGN:  # an ignored signal stays ignored
                    self._handlers[sig] = signal.signal(sig, self._record)
            self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="schurjax-watchdog", daemon=True)
        self._thread.start()
        return self

    def _record(self, signum: int, frame: Any) -> None:  # runs only once the C++ call has returned
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        if self._old_fd is not None:
            signal.set_wakeup_fd(self._old_fd)
        for sig, old in self._handlers.items():
            signal.signal(sig, old)
        for fd in (self._r, self._w, self._stop_r, self._stop_w):
            os.close(fd)
        if self.received is not None and exc[0] is None:
            signal.raise_signal(self.received)  # arrived as the call returned: the caller's handler takes it

    def _watch(self) -> None:
        import select

        end = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            ready, _, _ = select.select([self._r, self._stop_r], [], [], left)
            if self._stop_r in ready:
                return
            if self._r in ready:
                try:
                    data = os.read(self._r, 64)
                except BlockingIOError:
                    continue
                if self._old_fd is not None and self._old_fd >= 0:  # whoever watched before still hears
                    with contextlib.suppress(OSError):
                        os.write(self._old_fd, data)
                sig = next((b for b in data if b in (signal.SIGTERM, signal.SIGINT)), None)
                if sig is not None:
                    word = "terminated" if sig == signal.SIGTERM else "interrupted"
                    self._end(128 + sig, f"schurjax sweep: {word} while {self._say(self.waiting)} ({self.resume})")
            elif end is not None and time.monotonic() >= end:
                self._end(2, f"schurjax sweep: error: {self._say(self.expired or self.waiting)}")

    @staticmethod
    def _say(line: Callable[[], str]) -> str:
        try:
            return line()
        except Exception as e:  # noqa: BLE001 - the line must come out whatever the folder looks like
            return f"waiting ({type(e).__name__} describing it)"

    def _end(self, code: int, line: str) -> None:
        if self.cleanup is not None:
            with contextlib.suppress(Exception):
                self.cleanup()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        os._exit(code)


def _listing(indices: list[int]) -> str:
    """``[1]`` -> ``"process 1"``; ``[1, 3]`` -> ``"processes 1, 3"``; long lists are cut."""
    if not indices:
        return "no process"
    text = ", ".join(map(str, indices[:8])) + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")
    return f"process {text}" if len(indices) == 1 else f"processes {text}"


def _missing(out: Path | None, num_processes: int, process_id: int) -> list[int] | None:
    """The indices no live process holds in the shared folder (see the module docstring), or None unknown."""
    if out is None:
        return None
    from schurjax.store.lock import held_indices

    held = held_indices(out) | {process_id}
    return [i for i in range(num_processes) if i not in held]


def _port_taken(port: int) -> OSError | None:
    """Whether something on this host already listens on ``port`` (a second process 0, another program)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed run's TIME_WAIT does not count
        try:
            s.bind(("", port))
        except OSError as e:
            return e
    return None


class _Claim:
    """This process's lock of the shared folder, taken before it joins the others (duplicate ids stop here)."""

    def __init__(self, out: Path, process_id: int, num_processes: int):
        from schurjax.store.lock import RunLock

        self.out, self.created = out, not out.exists()
        if out.exists() and not out.is_dir():
            raise InputError("sweep", "out", f"{out} is a file, expected a run folder")
        out.mkdir(parents=True, exist_ok=True)
        try:
            # a moment's patience: another process may be probing the file (held_indices)
            self.lock = RunLock(out, "sweep", index=process_id, count=num_processes).acquire(patience=1.0)
        except BaseException:
            self.undo(held=False)
            raise

    def undo(self, held: bool = True) -> None:
        """Release the lock; a folder this process created and that holds nothing else is removed again."""
        if held:
            self.lock.release()
        if not self.created:
            return
        import fcntl

        from schurjax.store.lock import LOCK_FILE

        with contextlib.suppress(OSError):
            mine = f"{LOCK_FILE}-{self.lock.index}" if held else None
            if mine is not None:
                (self.out / mine).unlink(missing_ok=True)
            if set(os.listdir(self.out)) <= {LOCK_FILE}:
                fd = os.open(self.out / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else joined meanwhile
                    (self.out / LOCK_FILE).unlink()
                    self.out.rmdir()
                finally:
                    os.close(fd)


def _wait_for_coordinator(host: str, port: int, timeout: float, num_processes: int, process_id: int) -> None:
    """Wait (interruptibly: SIGTERM and Ctrl-C work here) until process 0's coordinator accepts connections."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            # an IPv6 address is written [::1]:PORT (as gRPC reads it); the socket wants it bare
            bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            with socket.create_connection((bare, port), timeout=min(1.0, max(timeout, 0.1))):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise InputError(
                    "sweep",
                    "coordinator",
                    f"process {process_id} of {num_processes} could not reach {host}:{port} within {timeout:g} s "
                    f"({e.strerror or type(e).__name__}); start process 0 there first (or pass --timeout), then "
                    "rerun this command: finished chunks are kept",
                ) from None
            time.sleep(0.2)


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float | None = None,
    out: str | os.PathLike | None = None,
) -> Processes:
    """Join the processes of a sweep (``jax.distributed.initialize``); one process when nothing says otherwise.

    Args:
        coordinator: ``HOST:PORT`` of process 0's coordination service.
        num_processes: number of processes.
        process_id: this process's index in ``0..num_processes-1``.
        timeout: seconds to wait for the others (default :data:`DEFAULT_TIMEOUT`).
        out: the run folder the processes share: this process takes its lock there before joining, so that a
            second process with the same ``process_id`` is refused at once (``Processes.lock``, handed to the
            sweep's RunFolder), and a process that times out can say which processes are missing.

    All three may be omitted where a cluster scheduler (SLURM, Open MPI) sets them; with none given outside such
    an environment this is a single process and JAX is left as it is.

    While it waits, SIGTERM or SIGINT ends the process at once (exit ``128 + signum``), and so does the deadline
    (exit 2), each after one line on stderr naming the missing processes (see the module docstring).

    Raises:
        InputError: an incomplete or inconsistent set of settings, a process id already taken in ``out``, or the
            coordinator's port already in use on process 0's host.
    """
    import jax

    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if not any(given) and not cluster_environment():
        return Processes()
    if any(given) and not all(given):
        raise InputError(
            "sweep",
            "coordinator",
            "coordinator, num_processes and process_id go together: give all "
            f"three or none, got coordinator={coordinator!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}",
        )
    if all(given):
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise InputError("sweep", "coordinator", f"must be HOST:PORT with a port in 1..65535, got {coordinator!r}")
        if not (isinstance(num_processes, int) and num_processes >= 1):
            raise InputError("sweep", "num_processes", f"must be an int >= 1, got {num_processes!r}")
        if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
            raise InputError("sweep", "process_id", f"must be an int in 0..{num_processes - 1}, got {process_id!r}")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= 86_400:
        raise InputError("sweep", "timeout", f"must be a number of seconds in [1, 86400], got {timeout!r}")
    if jax.distributed.is_initialized():
        return Processes(
            jax.process_index(), jax.process_count(), _claim(out, jax.process_index(), jax.process_count())
        )
    t0 = time.monotonic()
    kwargs: dict[str, Any] = {"initialization_timeout": int(timeout) + _XLA_GRACE}
    claim = None
    if all(given):
        assert num_processes is not None and process_id is not None
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
        kwargs["heartbeat_timeout_seconds"] = int(max(10, min(timeout, 100)))
        if process_id != 0:  # a missing coordinator is found here, in bounded time, never in C++
            _wait_for_coordinator(host, int(port), float(timeout), num_processes, process_id)
        claim = None if out is None or num_processes == 1 else _Claim(Path(out), process_id, num_processes)
        if process_id == 0 and num_processes > 1:
            taken = _port_taken(int(port))
            if taken is not None:
                if claim is not None:
                    claim.undo()
                raise InputError(
                    "sweep",
                    "coordinator",
                    f"port {port} is already in use on this host ({taken.strerror or taken}): another process 0 of "
                    "this sweep, or another program, listens there; stop it or choose another port",
                )
    n, me = num_processes, process_id
    where = f" at {coordinator}" if coordinator else ""
    this = "this process" if me is None else f"process {me} of {n}"  # a scheduler's: its index is not known yet

    def waiting() -> str:
        gone = _missing(None if out is None else Path(out), n, me) if n is not None and me is not None else None
        who = _listing(gone) if gone else "the other processes"
        return f"{this} waited{where} for {who} to join"

    def expired() -> str:
        gone = _missing(None if out is None else Path(out), n, me) if n is not None and me is not None else None
        who = _listing(gone) if gone else "the other processes"
        start = f"start {'it' if gone and len(gone) == 1 else 'them'} with the same command and "
        ids = (
            f"--process-id {', '.join(map(str, gone[:8]))}"
            if gone
            else f"each its own --process-id in 0..{(n or 1) - 1}"
        )
        return (
            f"--timeout: {this} waited {timeout:g} s{where}, but {who} did not join; "
            f"{start}{ids} (or pass a longer --timeout), then rerun every process: finished chunks are kept"
        )

    try:
        with _Watchdog(
            waiting,
            timeout=max(1.0, timeout - (time.monotonic() - t0)),
            expired=expired,
            resume="nothing was written; rerun the same command on every process",
            cleanup=None if claim is None else claim.undo,
        ):
            jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - the runtime's errors say which process or deadline failed
        if claim is not None:
            claim.undo()
        if "must be called before" not in str(e):
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(
                "sweep",
                "coordinator",
                f"the {num_processes or 'cluster'} processes did not all join within {timeout:g} s "
                f"({type(e).__name__}: {first[:200]}); start every process with its own --process-id (0.."
                f"{(num_processes or 1) - 1}, each once), then rerun: finished chunks are kept",
            ) from None
        raise InputError(
            "sweep",
            "coordinator",
            "needs a fresh process: JAX's distributed runtime starts before "
            "any other JAX call (run the sweep first in a new Python process)",
        ) from None
    if claim is not None:
        _CLAIMS[os.path.abspath(claim.out), claim.lock.index] = claim.lock
    # a cluster scheduler named the processes: the folder is claimed now
    return Processes(jax.process_index(), jax.process_count(), _claim(out, jax.process_index(), jax.process_count()))


_CLAIMS: dict[tuple[str, int], Any] = {}
"""The folder locks this Python process holds as a process of several, by (folder, index): a second call of
:func:`initialize` for the same folder (``schurjax sweep`` joins first, then ``sj.sweep`` asks again) reuses it."""


def _claim(out: str | os.PathLike | None, index: int, count: int) -> Any:
    """The folder's lock for a process that joined earlier (held already, or taken now)."""
    if out is None or count == 1:
        return None
    key = (os.path.abspath(out), index)
    held = _CLAIMS.get(key)
    if held is not None and held._fd is not None:
        return held
    _CLAIMS[key] = lock = _Claim(Path(out), index, count).lock
    return lock
