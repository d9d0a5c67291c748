"""Trial batches: the ``TaskBatch`` container, building one from arrays or a file, and the check ``sj.evaluate`` runs.

Trials of unequal length share one batch padded at the end: ``TaskBatch.valid`` ``(B, T)`` marks each trial's real
steps (``None``: every step is real) and ``mask`` is 0 on the padding, so loss and score never see it.

Example::

    batch = TaskBatch.from_arrays(x_tbn, y_tbn, valid=valid_tb, time_major=True)   # NeuroGym's layout
    as_batch(batch, "mine", task=task)                                           # what sj.evaluate checks
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from schurjax.errors import InputError

__all__ = ["TaskBatch", "as_batch"]

_FIELDS = ("inputs", "targets", "mask")


class TaskBatch(NamedTuple):
    """A batch of trials: float32 arrays, ``mask`` 0/1 marks the entries that count in loss and score.

    Attributes:
        inputs: (B, T, n_in).
        targets: (B, T, n_out).
        mask: (B, T, n_out); 0 on padded steps.
        valid: (B, T) bool or None. Marks the real steps of trials of unequal length, padded at the end
            (trial ``i`` is real for ``t < lengths[i]``); ``None`` means every step is real.

    Build one from your own arrays with :meth:`from_arrays` (it checks shapes, values and the layout); a task's
    ``sample(key, B)`` returns one. ``sj.evaluate`` accepts a ``TaskBatch`` only (see :func:`as_batch`).

    Example::

        batch = TaskBatch.from_arrays(x, y, valid=lengths[:, None] > np.arange(T))   # x (B, T, n_in)
        batch = TaskBatch.from_arrays(x_tbn, y_tbn, time_major=True)                 # x (T, B, n_in)
    """

    inputs: Float[Array, "B T n_in"]
    targets: Float[Array, "B T n_out"]
    mask: Float[Array, "B T n_out"]
    valid: Bool[Array, "B T"] | None = None

    @classmethod
    def from_arrays(
        cls, inputs: Any, targets: Any, mask: Any = None, *, valid: Any = None, time_major: bool = False
    ) -> TaskBatch:
        """Check and convert NumPy/JAX/torch arrays into a ``TaskBatch`` (host side, float32).

        Args:
            inputs: (B, T, n_in), or (T, B, n_in) with ``time_major=True`` (NeuroGym's and PyTorch's default).
            targets: (B, T, n_out) (time-major likewise).
            mask: None (every real step counts), (B, T) (broadcast over outputs), (B, T, 1) or (B, T, n_out);
                finite, >= 0.
            valid: None (all trials have length T) or (B, T) bool/0-1: each row is ones then zeros (trials padded
                at the end, at least one real step each). Non-finite values on padded steps become 0.
            time_major: the arrays are (T, B, ...); they are transposed to (B, T, ...).

        Returns:
            TaskBatch with ``mask`` set to 0 on the padded steps and ``valid`` as given (bool) or None.

        Raises:
            ValueError: one line naming the argument, its shape or bad value, and the expected form (NaN/inf on a
                real step, wrong rank, shapes that disagree, a ``valid`` row that is not ones-then-zeros).

        A time-major array passed without ``time_major=True`` cannot be told apart here when every array is
        consistently transposed; it is caught where the trial length is known: ``sj.evaluate(..., task=task)``
        compares T with ``task.steps`` and names the swap. Arrays of mixed layouts are refused here.

        Example:
            >>> b = TaskBatch.from_arrays(np.zeros((22, 8, 3)), np.zeros((22, 8, 2)), time_major=True)
            >>> b.inputs.shape, b.mask.shape
            ((8, 22, 3), (8, 22, 2))
        """
        where = "TaskBatch.from_arrays"
        if not isinstance(time_major, bool):
            raise InputError(where, None, f"time_major must be True or False, got {time_major!r}")
        lay = "(T, B, " if time_major else "(B, T, "
        x = _host(where, "inputs", inputs)
        y = _host(where, "targets", targets)
        if x.ndim != 3:
            raise InputError(where, None, f"inputs must be a 3-D array {lay}n_in), got shape {x.shape}")
        if y.ndim != 3:
            raise InputError(where, None, f"targets must be a 3-D array {lay}n_out), got shape {y.shape}")
        if time_major:
            x, y = x.swapaxes(0, 1), y.swapaxes(0, 1)
        B, T = x.shape[:2]
        if B == 0 or T == 0:
            raise InputError(where, None, f"inputs must hold B >= 1 trials of T >= 1 steps, got B={B}, T={T}")
        if y.shape[:2] != (B, T):
            raise InputError(
                where,
                None,
                f"targets must have shape {_lay(time_major, B, T, 'n_out')} like inputs, got "
                f"{_raw(y, time_major)}{_swap_hint(y.shape[:2], B, T)}",
            )
        n_out = y.shape[2]
        v = None
        if valid is not None:
            v = _host(where, "valid", valid)
            if v.ndim != 2:
                raise InputError(
                    where, None, f"valid must be a 2-D array {_lay(time_major, B, T)}, got shape {v.shape}"
                )
            if time_major:
                v = v.swapaxes(0, 1)
            if v.shape != (B, T):
                raise InputError(
                    where,
                    None,
                    f"valid must have shape {_lay(time_major, B, T)}, got "
                    f"{_raw(v, time_major)}{_swap_hint(v.shape, B, T)}",
                )
            if not np.all((v == 0) | (v == 1)):
                raise InputError(where, None, f"valid must hold only 0/1 (or bool), got values {np.unique(v)[:5]}")
            v = v.astype(bool)
            _check_prefix(where, "valid", v)
        if mask is None:
            m = np.ones((B, T, n_out))
        else:
            m = _host(where, "mask", mask)
            if m.ndim not in (2, 3):
                raise InputError(
                    where,
                    None,
                    f"mask must be None, {_lay(time_major, B, T)} or "
                    f"{_lay(time_major, B, T, 'n_out')}, got shape {m.shape}",
                )
            if time_major:
                m = m.swapaxes(0, 1)
            if m.ndim == 2:
                m = m[:, :, None]
            if m.shape[:2] != (B, T) or m.shape[2] not in (1, n_out):
                raise InputError(
                    where,
                    None,
                    f"mask must have shape {_lay(time_major, B, T)} or "
                    f"{_lay(time_major, B, T, n_out)}, got {_raw(m, time_major)}"
                    f"{_swap_hint(m.shape[:2], B, T)}",
                )
            m = np.broadcast_to(m, (B, T, n_out))
        real = np.ones((B, T), bool) if v is None else v
        for arg, a in (("inputs", x), ("targets", y), ("mask", m)):
            _check_finite(where, arg, a, real)
        if np.any(m[real] < 0):
            raise InputError(where, None, f"mask must be >= 0, got min {float(m[real].min())!r}")
        pad = ~real[:, :, None]
        x, y = np.where(pad, 0.0, x), np.where(pad, 0.0, y)
        m = np.where(pad, 0.0, m)
        f32 = jnp.float32
        return cls(jnp.asarray(x, f32), jnp.asarray(y, f32), jnp.asarray(m, f32), None if v is None else jnp.asarray(v))

    @classmethod
    def from_npz(cls, path: Any, *, time_major: bool = False) -> TaskBatch:
        """Read a trial file: arrays ``inputs``, ``targets``, optional ``mask`` and ``valid`` (see :meth:`from_arrays`).

        What ``schurjax sweep MODEL --trials-file trials.npz`` loads. Read with ``allow_pickle=False``.

        Raises:
            ValueError: one line: no such file, not an ``.npz`` archive, a missing or unknown array, or any
                :meth:`from_arrays` error (prefixed with the file name).

        Example::

            np.savez("trials.npz", inputs=x, targets=y, valid=lengths[:, None] > np.arange(T))
            batch = TaskBatch.from_npz("trials.npz")
        """
        import os
        import zipfile

        where = "TaskBatch.from_npz"
        if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
            raise InputError(where, None, f"no trial file at {str(path)!r}")
        shapes = npz_shapes(path, where)  # declared shapes, read and bounded before anything is loaded
        _check_declared(where, path, shapes)
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array")
            with z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
            raise InputError(
                where,
                None,
                f"{str(path)!r} is not an .npz archive of arrays ({str(err).splitlines()[0]}); "
                "expected np.savez(path, inputs=..., targets=...[, mask=..., valid=...])",
            ) from None
        missing = [k for k in ("inputs", "targets") if k not in arrays]
        unknown = sorted(set(arrays) - {"inputs", "targets", "mask", "valid"})
        if missing or unknown:
            raise InputError(
                where,
                None,
                f"{str(path)!r} holds arrays {sorted(arrays)}; expected inputs, targets"
                f"[, mask, valid] (missing {missing}, unknown {unknown})",
            )
        try:
            return cls.from_arrays(
                arrays["inputs"],
                arrays["targets"],
                arrays.get("mask"),
                valid=arrays.get("valid"),
                time_major=time_major,
            )
        except ValueError as err:
            raise InputError(
                where, None, f"{str(path)!r}: {str(err).removeprefix('TaskBatch.from_arrays: ')}"
            ) from None

    @property
    def lengths(self) -> Array:
        """(B,) int32: the number of real steps of each trial (T for all when ``valid`` is None); jit-able."""
        B, T = jnp.shape(self.inputs)[:2]
        if self.valid is None:
            return jnp.full((B,), T, jnp.int32)
        return jnp.sum(jnp.asarray(self.valid, bool), axis=1, dtype=jnp.int32)

    def astype(self, dtype: Any) -> TaskBatch:
        """Copy with ``inputs``, ``targets`` and ``mask`` as JAX arrays of ``dtype`` (``valid`` stays bool)."""
        v = None if self.valid is None else jnp.asarray(self.valid, bool)
        return TaskBatch(*(jnp.asarray(getattr(self, f), dtype) for f in _FIELDS), v)


def npz_shapes(path: Any, where: str = "TaskBatch.from_npz") -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays an ``.npz`` declares, ``name -> (shape, dtype)``, read from each member's ``.npy`` header only.

    Nothing is decompressed beyond the headers, so a file whose header declares 1e12 trials costs nothing.

    Raises:
        ValueError: one line: not a zip archive (a text file, a single ``.npy``), a member that is not a ``.npy``
            array, an object (pickle) dtype, or a header that declares more bytes than the member holds.

    Example::

        npz_shapes("trials.npz")["inputs"][0]      # (B, T, n_in)
    """
    import zipfile

    p = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise InputError(where, None, f"cannot read {p!r}: {err.strerror}") from None
    if head.startswith(b"\x93NUMPY"):
        raise InputError(
            where,
            None,
            f"{p!r} is not an .npz archive of arrays (a single .npy array); expected "
            "np.savez(path, inputs=..., targets=...)",
        )
    if not zipfile.is_zipfile(path):
        raise InputError(
            where,
            None,
            f"{p!r} is not an .npz archive of arrays (not a zip file: starts with {head[:8]!r}); expected "
            "np.savez(path, inputs=..., targets=...[, mask=..., valid=...])",
        )
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"member {info.filename!r} has .npy format {version}; expected 1.0 or 2.0")
                if dtype.hasobject:
                    raise ValueError(f"array {name!r} has dtype {dtype} (pickled objects); expected numbers")
                count = math.prod(int(d) for d in shape)
                if count * dtype.itemsize > info.file_size:
                    raise ValueError(
                        f"array {name!r} declares shape {tuple(shape)} ({count * dtype.itemsize:,} bytes) but its "
                        f"member holds {info.file_size:,} bytes"
                    )
                out[name] = (tuple(int(d) for d in shape), dtype)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(where, None, f"{p!r} is not an .npz archive of arrays that can be read ({text})") from None
    return out


_LOAD_COPIES = 8
"""How many float64 copies of its arrays reading a trial file may hold at once (load, convert, pad, mask)."""


def _check_declared(where: str, path: Any, shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Refuse a trial file whose declared arrays cannot be read into this machine's memory (before reading)."""
    from schurjax.runtime.environment import available_memory

    count = sum(math.prod(s) for s, _ in shapes.values())
    need = _LOAD_COPIES * 8 * count
    have = available_memory()
    if need > have // 2:
        dims = ", ".join(f"{k} {s}" for k, (s, _) in sorted(shapes.items()))
        raise InputError(
            where,
            None,
            f"{str(path)!r} declares {count:,} values ({dims}); reading them needs ~{need / 2**30:,.1f} GiB, "
            f"more than the {have / 2**31:,.1f} GiB this machine can spare; expected a smaller trial file",
        )


def _lay(time_major: bool, B: int, T: int, last: Any = None) -> str:
    dims = (f"T={T}", f"B={B}") if time_major else (f"B={B}", f"T={T}")
    return "(" + ", ".join(dims) + ("" if last is None else f", {last}") + ")"


def _raw(a: np.ndarray, time_major: bool) -> tuple:
    """The shape the caller passed (before our transpose)."""
    s = a.shape
    return (s[1], s[0], *s[2:]) if time_major else tuple(s)


def _swap_hint(got: tuple, B: int, T: int) -> str:
    if tuple(got) == (T, B) and B != T:
        return " (its first two axes are swapped: pass every array in one layout, time_major=True for (T, B, ...))"
    return ""


def _host(where: str, arg: str, value: Any) -> np.ndarray:
    """NumPy float64 (bool kept) copy of an array-like or a torch tensor, or a one-line ValueError."""
    if isinstance(value, dict):
        raise InputError(where, None, f"{arg} must be an array, got a dict with keys {sorted(map(str, value))}")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise InputError(
            where,
            None,
            f"{arg} must be a rectangular numeric array, got {type(value).__name__} ({str(err).splitlines()[0]})",
        ) from None
    if a.dtype == bool:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(where, None, f"{arg} must be a real numeric array, got dtype {a.dtype} of shape {a.shape}")
    return a.astype(np.float64)


def _check_prefix(where: str, arg: str, v: np.ndarray) -> None:
    """Each row of ``valid`` must be ones then zeros, with at least one 1."""
    L = v.sum(axis=1)
    bad = np.nonzero(L == 0)[0]
    if bad.size:
        raise InputError(where, None, f"{arg} marks no real step in trial {int(bad[0])}; expected >= 1 per trial")
    prefix = np.arange(v.shape[1])[None, :] < L[:, None]
    bad = np.nonzero(np.any(v != prefix, axis=1))[0]
    if bad.size:
        i = int(bad[0])
        raise InputError(
            where,
            None,
            f"{arg} row {i} is not ones then zeros (trials are padded at the end), got "
            f"{v[i].astype(int).tolist()[:40]}",
        )


def _check_finite(where: str, arg: str, a: np.ndarray, real: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if a.ndim == 3:
        bad = bad & real[:, :, None]
    if np.any(bad):
        i, t = (int(k) for k in np.argwhere(bad)[0][:2])
        raise InputError(
            where,
            None,
            f"{arg} holds {int(bad.sum())} NaN/inf entries on real steps (first: trial {i}, "
            f"step {t}); expected finite values (mark padding with valid=)",
        )


def as_batch(obj: Any, where: str, *, task: Any = None) -> TaskBatch:
    """Check that ``obj`` is a well-formed ``TaskBatch`` (the validator ``sj.evaluate`` runs) and return it.

    Only a ``TaskBatch`` passes: a dict, a plain tuple or any other object with ``inputs``/``targets``/``mask``
    attributes is refused, because nothing says its layout is (B, T, ...). Checked: ranks and shapes of all
    fields, real dtypes, ``valid`` ones-then-zeros, and (for concrete arrays) finite values, ``mask >= 0`` and
    ``mask == 0`` on padded steps. With ``task``, ``(n_in, n_out, steps)`` must match the batch; a batch whose
    first two axes are swapped relative to ``task.steps`` is named as time-major.

    Args:
        obj: the candidate batch.
        where: the caller's name for messages (``"evaluate"``).
        task: optional task the batch must fit.

    Returns:
        ``obj`` unchanged.

    Raises:
        ValueError: one line, e.g. ``evaluate: batch must be a TaskBatch, got a dict with keys ['inputs',
            'targets'] (missing field 'mask'); build one with sj.TaskBatch.from_arrays(inputs, targets, mask)``.

    Example::

        as_batch(task.sample(key, 8), "mine", task=task)
    """
    build = "build one with sj.TaskBatch.from_arrays(inputs, targets, mask)"
    if not isinstance(obj, TaskBatch):
        if isinstance(obj, dict):
            keys = sorted(map(str, obj))
            missing = [f for f in _FIELDS if f not in obj]
            what = (
                f"missing field {missing[0]!r}"
                if len(missing) == 1
                else (f"missing fields {missing}" if missing else "a dict's layout is unknown")
            )
            raise InputError(where, None, f"batch must be a TaskBatch, got a dict with keys {keys} ({what}); {build}")
        missing = [f for f in _FIELDS if not hasattr(obj, f)]
        got = type(obj).__name__ + (f" (missing field {missing[0]!r})" if missing else "")
        raise InputError(where, None, f"batch must be a TaskBatch, got {got}; {build}")
    for f in _FIELDS:
        a = getattr(obj, f)
        if a is None or np.ndim(a) != 3:
            raise InputError(
                where, None, f"batch.{f} must be a 3-D array (B, T, ...), got {'None' if a is None else np.shape(a)}"
            )
        dt = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
        if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer) or dt == np.dtype(bool)):
            raise InputError(where, None, f"batch.{f} must be a real numeric array, got dtype {dt}")
    B, T, n_in = np.shape(obj.inputs)
    n_out = np.shape(obj.targets)[2]
    if np.shape(obj.targets)[:2] != (B, T) or np.shape(obj.mask) != np.shape(obj.targets):
        raise InputError(
            where,
            None,
            f"batch.targets {np.shape(obj.targets)} and batch.mask {np.shape(obj.mask)} must "
            f"both have shape (B={B}, T={T}, n_out)",
        )
    if B == 0 or T == 0:
        raise InputError(
            where, None, f"batch.inputs must have B >= 1 trials and T >= 1 steps, got shape {(B, T, n_in)}"
        )
    if obj.valid is not None and np.shape(obj.valid) != (B, T):
        raise InputError(
            where, None, f"batch.valid must be None or have shape (B={B}, T={T}), got {np.shape(obj.valid)}"
        )
    if task is not None:
        got = tuple(getattr(task, a, None) for a in ("n_in", "n_out", "steps"))
        if got != (n_in, n_out, T):
            hint = ""
            if got[:2] == (n_in, n_out) and B == got[2] and T != got[2]:
                hint = (
                    f" (batch axes look time-major (T={B}, B={T}): build it with "
                    "sj.TaskBatch.from_arrays(..., time_major=True), or store a trials file as (B, T, ...), "
                    "e.g. np.swapaxes(x, 0, 1))"
                )
            name = getattr(task, "name", type(task).__name__)
            raise InputError(
                where,
                None,
                f"task {name!r} has (n_in, n_out, steps) = {got} but the batch has "
                f"{(n_in, n_out, T)}; expected the task that sampled the batch{hint}",
            )
    if any(isinstance(a, jax.core.Tracer) for a in obj if a is not None):
        return obj  # values unknown under tracing; shapes were checked
    real = np.ones((B, T), bool)
    if obj.valid is not None:
        v = np.asarray(obj.valid)
        if not np.all((v == 0) | (v == 1)):
            raise InputError(where, None, f"batch.valid must hold only 0/1 (or bool), got values {np.unique(v)[:5]}")
        real = v.astype(bool)
        _check_prefix(where, "batch.valid", real)
    for f in _FIELDS:
        _check_finite(where, f"batch.{f}", np.asarray(getattr(obj, f), np.float64), real)
    m = np.asarray(obj.mask, np.float64)
    if np.any(m < 0):
        raise InputError(where, None, f"batch.mask must be >= 0, got min {float(m.min())!r}")
    if np.any(m[~real] != 0):
        raise InputError(
            where,
            None,
            "batch.mask must be 0 on padded steps (valid False); sj.TaskBatch.from_arrays(..., valid=...) does this",
        )
    return obj
