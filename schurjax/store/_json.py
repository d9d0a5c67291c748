"""JSON as schurjax writes it: plain types, standard JSON (no NaN or Infinity tokens), atomic files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.errors import InputError

__all__ = [
    "loads",
    "MAX_DEPTH",
    "to_jsonable",
    "nonfinite_path",
    "finite_or_none",
    "dumps",
    "canonical",
    "atomic_write_bytes",
    "atomic_write_json",
]


MAX_DEPTH = 64
"""How deeply a JSON file schurjax reads may nest (its own files nest a few levels; a file from elsewhere that
nests deeper would exhaust Python's recursion in the parser or in the code that walks it)."""


def loads(data: bytes | str) -> Any:
    """Parse JSON read from a file; any unreadable text, including nesting deeper than :data:`MAX_DEPTH`, raises
    ValueError (never RecursionError).

    Example::

        loads(b'{"a": [1, 2]}')         # {'a': [1, 2]}
    """
    try:
        obj = json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    level, deepest = [(obj, 1)], 1
    while level:  # iteratively: a walk that recursed would meet the very limit it checks
        x, d = level.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(x, dict):
            level.extend((v, d + 1) for v in x.values())
        elif isinstance(x, list):
            level.extend((v, d + 1) for v in x)
    return obj


def to_jsonable(x: Any) -> Any:
    """Convert NumPy scalars/arrays, complex numbers, tuples, mappings and paths into plain JSON types (recursively).

    Complex numbers become ``{"re": ..., "im": ...}``; arrays become (nested) lists. Non-finite floats stay as they
    are (see :func:`dumps`, which refuses them).

    Example:
        >>> to_jsonable({"a": np.arange(2), "z": 1 + 2j, "t": (np.float32(0.5),)})
        {'a': [0, 1], 'z': {'re': 1.0, 'im': 2.0}, 't': [0.5]}
    """
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, np.generic):
        return to_jsonable(x.item())
    if isinstance(x, complex):
        return {"re": float(x.real), "im": float(x.imag)}
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def finite_or_none(x: Any) -> Any:
    """A JSON-able value with NaN/inf floats replaced by None (for records, like a diverged run's metrics).

    Example:
        >>> finite_or_none({"loss": float("nan"), "ok": [1.0, float("inf")]})
        {'loss': None, 'ok': [1.0, None]}
    """
    x = to_jsonable(x)
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite_or_none(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def nonfinite_path(x: Any, path: str = "") -> str | None:
    """The first place in a JSON-able value that holds NaN or inf (``models[0].task_params.noise``), else None."""
    if isinstance(x, float) and not math.isfinite(x):
        return path or "value"
    if isinstance(x, dict):
        for k, v in x.items():
            found = nonfinite_path(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    if isinstance(x, list):
        for i, v in enumerate(x):
            found = nonfinite_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def dumps(obj: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """Standard JSON text of ``obj`` (after :func:`to_jsonable`).

    Raises:
        ValueError: ``obj`` holds NaN or inf (standard JSON has no such tokens); the message names where.
    """
    data = to_jsonable(obj)
    where = nonfinite_path(data)
    if where is not None:
        raise InputError(
            "JSON", None, f"{where} is not finite; expected finite numbers only (standard JSON has no NaN/inf)"
        )
    sep = (",", ":") if compact else None
    return json.dumps(data, indent=indent, separators=sep, allow_nan=False)


def canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): equal values give equal text, e.g. a task's parameters."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, then ``os.replace``.

    A reader (or a resumed run after ``kill -9``) sees either no file or the whole file, never a torn one.

    Args:
        path: destination file; its folder must exist.
        data: the bytes to write.

    Returns:
        The destination path.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented standard JSON, atomically (see :func:`atomic_write_bytes`, :func:`dumps`)."""
    return atomic_write_bytes(path, (dumps(obj, indent=1) + "\n").encode())
