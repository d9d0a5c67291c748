"""The processes of one sweep, on JAX's own distributed runtime (``jax.distributed``).

Several processes (on one host or several) share one run folder on a shared file system. Each evaluates its share
of the chunks (chunk ``j`` belongs to process ``j % process_count``) and writes its own chunk files; process 0
writes the manifest before anyone starts and assembles the table after everyone is done. The processes meet at
two barriers of JAX's runtime (``multihost_utils.sync_global_devices``) and agree on the config through
``multihost_utils.process_allgather``, so processes given different configs for one folder all stop with an error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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

    def __init__(self, index: int = 0, count: int = 1):
        self.index, self.count = int(index), int(count)

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

            with self._lost(name):
                multihost_utils.sync_global_devices(name)

    def gather(self, digest: str, status: int) -> list[tuple[str, int]]:
        """Every process's ``(digest, status)``, in process order, seen by every process (itself alone for one)."""
        if not self.many:
            return [(digest, status)]
        from jax.experimental import multihost_utils

        mine = np.concatenate([np.frombuffer(bytes.fromhex(digest), dtype=np.uint8), [status]]).astype(np.int32)
        with self._lost("the config check"):
            rows = np.asarray(multihost_utils.process_allgather(mine)).reshape(self.count, -1)
        return [(bytes(r[:-1].astype(np.uint8)).hex(), int(r[-1])) for r in rows]


DEFAULT_TIMEOUT = 120
"""Seconds a process waits for the others (to reach the coordinator, for all to join) before it stops."""


def _wait_for_coordinator(host: str, port: int, timeout: float, num_processes: int, process_id: int) -> None:
    """Wait (interruptibly: SIGTERM and Ctrl-C work here) until process 0's coordinator accepts connections."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, max(timeout, 0.1))):
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
) -> Processes:
    """Join the processes of a sweep (``jax.distributed.initialize``); one process when nothing says otherwise.

    Args:
        coordinator: ``HOST:PORT`` of process 0's coordination service.
        num_processes: number of processes.
        process_id: this process's index in ``0..num_processes-1``.

    All three may be omitted where a cluster scheduler (SLURM, Open MPI) sets them; with none given outside such
    an environment this is a single process and JAX is left as it is.

    Raises:
        InputError: an incomplete or inconsistent set of settings.
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
    if not jax.distributed.is_initialized():
        kwargs: dict[str, Any] = {"initialization_timeout": int(timeout)}
        if all(given):
            kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
            kwargs["heartbeat_timeout_seconds"] = int(max(10, min(timeout, 100)))
            if process_id != 0:  # a missing coordinator is found here, in bounded time, never in C++
                _wait_for_coordinator(host, int(port), float(timeout), num_processes, process_id)
        try:
            jax.distributed.initialize(**kwargs)
        except Exception as e:  # noqa: BLE001 - the runtime's errors say which process or deadline failed
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
    return Processes(jax.process_index(), jax.process_count())
