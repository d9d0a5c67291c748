"""The processes of one sweep, on JAX's own distributed runtime (``jax.distributed``).

Several processes (on one host or several) share one run folder on a shared file system. Each evaluates its share
of the chunks (chunk ``j`` belongs to process ``j % process_count``) and writes its own chunk files; process 0
writes the manifest before anyone starts and assembles the table after everyone is done. The processes meet at
two barriers of JAX's runtime (``multihost_utils.sync_global_devices``) and agree on the config through
``multihost_utils.process_allgather``, so processes given different configs for one folder all stop with an error.
"""

from __future__ import annotations

import os
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

    def mine(self, j: int) -> bool:
        """Whether chunk number ``j`` (in the sweep's global chunk order) is this process's to evaluate."""
        return j % self.count == self.index

    def barrier(self, name: str) -> None:
        """Wait until every process reaches ``name`` (a no-op for one process)."""
        if self.many:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def gather(self, digest: str, status: int) -> list[tuple[str, int]]:
        """Every process's ``(digest, status)``, in process order, seen by every process (itself alone for one)."""
        if not self.many:
            return [(digest, status)]
        from jax.experimental import multihost_utils

        mine = np.concatenate([np.frombuffer(bytes.fromhex(digest), dtype=np.uint8), [status]]).astype(np.int32)
        rows = np.asarray(multihost_utils.process_allgather(mine)).reshape(self.count, -1)
        return [(bytes(r[:-1].astype(np.uint8)).hex(), int(r[-1])) for r in rows]


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
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
        if not host or not port.isdigit():
            raise InputError("sweep", "coordinator", f"must be HOST:PORT, got {coordinator!r}")
        if not (isinstance(num_processes, int) and num_processes >= 1):
            raise InputError("sweep", "num_processes", f"must be an int >= 1, got {num_processes!r}")
        if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
            raise InputError("sweep", "process_id", f"must be an int in 0..{num_processes - 1}, got {process_id!r}")
    if not jax.distributed.is_initialized():
        kwargs: dict[str, Any] = {}
        if all(given):
            kwargs = dict(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
        try:
            jax.distributed.initialize(**kwargs)
        except RuntimeError as e:
            if "must be called before" not in str(e):
                raise
            raise InputError(
                "sweep",
                "coordinator",
                "needs a fresh process: JAX's distributed runtime starts before "
                "any other JAX call (run the sweep first in a new Python process)",
            ) from None
    return Processes(jax.process_index(), jax.process_count())
