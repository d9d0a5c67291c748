"""How the engine runs a call: :class:`EngineOptions`, one frozen value checked once.

The options choose the arithmetic and the layout of a rollout, never what it computes: every choice gives the same
metrics to the error bound in ``benchmarks/RESULTS.md`` (``dtype="float64"`` and ``deviation=False`` are the
cross-checks). What to compute (the task, the loss, per-trial sums, trial statistics, the divergence) is an
argument of :func:`schurjax.evaluate` itself.

Example:
    >>> from schurjax.engine import EngineOptions
    >>> opts = EngineOptions(path="dense", compiled_chunk=64)
    >>> opts.path, opts.dtype, opts.deviation, opts.replace(dtype="float64").dtype
    ('dense', 'float32', True, 'float64')
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from schurjax.errors import InputError

__all__ = ["EngineOptions", "PATHS", "PRECISIONS"]

PATHS = ("auto", "shared", "dense")
"""Accepted ``path`` values (canonical; the CLI's ``--path`` choices)."""
PRECISIONS = ("highest", "high", "default", "tf32")
"""Accepted ``precision`` values (canonical; the CLI's ``--precision`` choices). ``"tensorfloat32"`` is also
accepted as an alias of ``"tf32"``."""
_MATMUL_PRECISION = {"highest": "highest", "high": "high", "default": "default", "tf32": "tensorfloat32"}
"""``precision`` value -> JAX matmul precision."""
_MAX_HOST_WORKERS = 8


def _dtype_name(dtype: Any) -> str | None:
    """``"float32"``/``"float64"`` for a dtype given as a string, a NumPy or a JAX dtype; None for anything else."""
    try:
        name = np.dtype(dtype).name if dtype is not None and not isinstance(dtype, bool) else None
    except (TypeError, ValueError):
        return None
    return name if name in ("float32", "float64") else None


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """How :func:`schurjax.evaluate` runs: the path, the arithmetic, the chunking and the devices.

    Attributes:
        path: ``"auto"`` (default: per call, ``"shared"`` when every variant changes at most
            ``max(SHARED_MIN_NNZ, n // 4)`` entries of T, else ``"dense"``), ``"shared"`` or ``"dense"``.
        precision: matmul precision, one of :data:`PRECISIONS` (``"highest"``, the default: true float32 dots).
        dtype: ``"float32"`` (default) or ``"float64"`` (also given as ``jnp.float32``/``np.float64``; stored
            as the name).
        deviation: carry each variant's deviation from the float64 base trajectory (default ``True``);
            ``False`` is the plain rollout, which differences two float32 trajectories.
        compiled_chunk: variants per *compiled* chunk, an int >= 1 or ``"auto"`` (default:
            :func:`schurjax.engine.auto_chunk_size`). Not the sweep's ``chunk_size``, which counts the variants
            per chunk *file* of a run folder.
        devices: ``"all"`` (default: every local device of the default backend), an int (the first that many) or
            a sequence of ``jax.Device``: each chunk's variants are split across them.
        host_workers: chunks run at once from host threads on the dense CPU path (XLA:CPU runs its batched
            matmuls on about one core); None (default): one per core the process may use, at most 8.

    Raises:
        InputError: a field outside its accepted values, in one line naming it.
    """

    path: Literal["auto", "shared", "dense"] = "auto"
    precision: str = "highest"
    dtype: Literal["float32", "float64"] = "float32"
    deviation: bool = True
    compiled_chunk: int | Literal["auto"] = "auto"
    devices: Any = "all"
    host_workers: int | None = None

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> None:
            raise InputError("evaluate", field, f"must be {expected}, got {getattr(self, field)!r}")

        if not isinstance(self.path, str) or self.path not in PATHS:
            bad("path", "one of " + ", ".join(map(repr, PATHS)))
        precision = "tf32" if self.precision == "tensorfloat32" else self.precision
        if not isinstance(precision, str) or precision not in _MATMUL_PRECISION:
            bad("precision", "one of " + ", ".join(map(repr, PRECISIONS)))
        object.__setattr__(self, "precision", precision)
        name = _dtype_name(self.dtype)
        if name is None:
            bad("dtype", "'float32' or 'float64' (or jnp.float32, jnp.float64)")
        object.__setattr__(self, "dtype", name)
        if self.deviation is None:  # the keyword's old "default" spelling
            object.__setattr__(self, "deviation", True)
        if not isinstance(self.deviation, bool):
            bad("deviation", "True or False")
        if not (self.compiled_chunk == "auto" or (_is_int(self.compiled_chunk) and self.compiled_chunk >= 1)):
            bad("compiled_chunk", "'auto' or an int >= 1")
        devices = self.devices
        if isinstance(devices, list):
            devices = tuple(devices)
            object.__setattr__(self, "devices", devices)
        ok = (isinstance(devices, str) and devices == "all") or _is_int(devices)
        ok = ok or (isinstance(devices, tuple) and devices and all(isinstance(d, jax.Device) for d in devices))
        if not ok:
            bad("devices", "'all', an int or a list of jax.Device")
        if self.host_workers is not None and not (_is_int(self.host_workers) and self.host_workers >= 1):
            bad("host_workers", "None or an int >= 1")

    def replace(self, **changes: Any) -> EngineOptions:
        """A copy with some fields changed (checked again)."""
        fields = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in fields:
                raise InputError("EngineOptions", name, f"is not an option; expected some of {', '.join(fields)}")
        return dataclasses.replace(self, **changes)

    @property
    def jax_dtype(self) -> Any:
        """The rollout dtype as a JAX dtype."""
        return jnp.float64 if self.dtype == "float64" else jnp.float32

    @property
    def matmul_precision(self) -> str:
        """The JAX matmul precision of ``precision``."""
        return _MATMUL_PRECISION[self.precision]

    def mesh(self) -> jax.sharding.Mesh | None:
        """A 1-D ``Mesh`` over the variant axis of ``devices``, or None for one device.

        Raises:
            InputError: an int outside 1..(local devices).
        """
        local = jax.local_devices()
        devices = self.devices
        if isinstance(devices, str):
            devs = local
        elif _is_int(devices):
            if not 1 <= int(devices) <= len(local):
                raise InputError(
                    "evaluate",
                    "devices",
                    f"must be 'all' or an int in 1..{len(local)} (the local devices), got {devices!r}",
                )
            devs = local[: int(devices)]
        else:
            devs = list(devices)
        return None if len(devs) == 1 else jax.sharding.Mesh(np.array(devs), ("variants",))

    def workers(self, path: str, device: jax.Device) -> int:
        """Chunks run at once from host threads: ``host_workers`` (or one per core, at most 8) on the dense CPU
        path, else 1."""
        if path != "dense" or device.platform != "cpu":
            return 1
        if self.host_workers is not None:
            return int(self.host_workers)
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, _MAX_HOST_WORKERS))
