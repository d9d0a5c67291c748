"""Sweep results: the per-variant metrics of one model, tidy rows, and run folders on disk.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SweepResult",
    "Run",
    "RunFolder",
    "Table",
    "load",
    "read_table",
    "write_table",
    "flatten_label",
    "atomic_write_bytes",
    "atomic_write_json",
    "SCHEMA_VERSION",
    "METRICS",
]

METRICS = ("loss", "delta_loss", "rel_delta_loss", "output_distance", "hidden_distance", "score", "delta_norm")
"""The per-variant metric arrays of a :class:`SweepResult` (and metric columns of the tidy table), in order."""


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """Per-variant metrics of one model on one batch (all arrays are NumPy, shape (K,)).

    Attributes:
        loss: masked MSE of each variant on the batch.
        delta_loss: ``loss - base_loss``, summed from the output differences (no cancellation for small changes).
        rel_delta_loss: ``delta_loss / base_loss``.
        output_distance: mean squared difference between the variant's and the unablated outputs.
        hidden_distance: mean over trials of ``||h_T(variant) - h_T(base)||_2`` at the final step.
        score: task score in [0, 1] (NaN when no task was given).
        delta_norm: ``||W_variant - W||_F``.
        base_loss, base_score: the unablated model on the same batch.
        labels: one dict per variant (family, label, blocks, eigenvalues, ...), from ``Variants.labels``.
        divergence: (K, T) per-step output divergence, or None when not requested.

    Example:
        >>> res = sj.evaluate(model, sf, sj.ablate.single_couplings(sf), batch)
        >>> res.rel_delta_loss.argmax()
    """

    loss: np.ndarray
    delta_loss: np.ndarray
    rel_delta_loss: np.ndarray
    output_distance: np.ndarray
    hidden_distance: np.ndarray
    score: np.ndarray
    delta_norm: np.ndarray
    base_loss: float
    base_score: float
    labels: list[dict[str, Any]]
    divergence: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.loss.shape[0])

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat dict per variant: its label fields followed by its metrics."""
        rows = []
        for k in range(len(self)):
            row = dict(self.labels[k]) if self.labels else {}
            for name in METRICS:
                row[name] = float(getattr(self, name)[k])
            row["base_loss"] = float(self.base_loss)
            row["base_score"] = float(self.base_score)
            rows.append(row)
        return rows


# ---------------------------------------------------------------------------------------------------------------
# Run folders on disk
# ---------------------------------------------------------------------------------------------------------------
#
#   <run>/manifest.json          full config, versions, device, Schur summary per model, seeds and keys
#   <run>/schur/<model>.npz      each model's SchurForm (SchurForm.to_npz)
#   <run>/chunks/<m>-<c>.json    per-chunk metrics, written atomically (temp file, fsync, os.replace)
#   <run>/table.csv              final tidy table, one row per (model, variant) (+ table.parquet with pyarrow)
#   <run>/COMPLETE               written last, only once every chunk is there

SCHEMA_VERSION = 2
"""Version of the run-folder results (chunk payloads, table columns, batch/control keys). Bump it whenever a code
change alters what a chunk holds or how its numbers are drawn: it is part of the sweep config compared on resume,
so a resumed sweep never mixes chunks of two versions (2: batches keyed by task name and params)."""

MANIFEST = "manifest.json"
TABLE_CSV = "table.csv"
TABLE_PARQUET = "table.parquet"
COMPLETE = "COMPLETE"
CHUNK_DIR = "chunks"
SCHUR_DIR = "schur"

# Leading columns of the tidy table, in this order; any other label keys follow, sorted.
COLUMNS = (
    "row_id", "model", "task", "model_seed", "family", "label", "control_of", "control_kind",
    "n_removed", "delta_norm", "loss", "delta_loss", "rel_delta_loss", "output_distance", "hidden_distance",
    "score", "base_loss", "base_score",
)  # fmt: skip


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
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=1, sort_keys=False) + "\n").encode())


def to_jsonable(x: Any) -> Any:
    """Convert NumPy scalars/arrays, complex numbers, tuples and paths into plain JSON types (recursively).

    Complex numbers become ``{"re": ..., "im": ...}``; arrays become (nested) lists.
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


def flatten_label(label: dict[str, Any]) -> dict[str, Any]:
    """Flatten one variant label into table cells: str, int, float, bool or None.

    Complex values ``key`` (and eigenvalues ``*_eig`` stored as ``[re, im]``) become two columns ``key_re`` and
    ``key_im``; sequences and arrays become compact JSON
    strings (e.g. the removed entries ``[[0, 3], [1, 3]]``).
    """
    out: dict[str, Any] = {}
    for key, value in label.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, complex):
            out[f"{key}_re"] = float(value.real)
            out[f"{key}_im"] = float(value.imag)
        elif key.endswith("_eig") and isinstance(value, list | tuple | np.ndarray) and len(value) == 2:
            out[f"{key}_re"] = float(value[0])  # eigenvalues stored as [re, im]
            out[f"{key}_im"] = float(value[1])
        elif isinstance(value, np.ndarray | list | tuple | Mapping):
            out[key] = json.dumps(to_jsonable(value), separators=(",", ":"))
        elif value is None or isinstance(value, str | int | float | bool):
            out[key] = value
        else:
            out[key] = str(value)
    return out


class Table(list):
    """A tidy table: a list of dict rows, plus column access as NumPy arrays (no pandas needed).

    Example:
        >>> run = sj.results.load("runs/demo")
        >>> rel = run.table.column("rel_delta_loss")            # (rows,) float64
        >>> singles = run.table.where(family="single", model="flipflop-0")
    """

    @property
    def columns(self) -> list[str]:
        """Column names, in the order of the first row (then any later extra keys)."""
        names: dict[str, None] = {}
        for row in self:
            names.update(dict.fromkeys(row))
        return list(names)

    def column(self, name: str) -> np.ndarray:
        """One column as a NumPy array (float for numbers with missing cells as NaN, else object)."""
        if self and not any(name in row for row in self):
            raise KeyError(f"Table.column: no column {name!r}; columns are {self.columns}")
        values = [row.get(name) for row in self]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present) and len(present) == len(values):
            return np.asarray(values, dtype=bool)
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            if len(present) == len(values):
                return np.asarray(values, dtype=np.int64)
            return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        return np.asarray(values, dtype=object)

    def to_columns(self) -> dict[str, np.ndarray]:
        """The whole table as a dict of NumPy columns."""
        return {name: self.column(name) for name in self.columns}

    def where(self, **equal: Any) -> Table:
        """Rows whose cells equal the given values, e.g. ``where(family="single", control_of=None)``."""
        return Table(row for row in self if all(row.get(k) == v for k, v in equal.items()))


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order of the tidy table: :data:`COLUMNS` first (those present), then the other keys sorted."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    lead = [c for c in COLUMNS if c in seen]
    return lead + sorted(c for c in seen if c not in COLUMNS)


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip ("nan", "inf" included)
    return str(value)


def write_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write tidy rows as CSV (atomically); also ``.parquet`` next to it when pyarrow is importable.

    Args:
        rows: one flat dict per (model, variant); cells are str, int, float, bool or None.
        path: the CSV file to write.

    Returns:
        The CSV path.
    """
    cols = table_columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_format_cell(row.get(c)) for c in cols])
    path = atomic_write_bytes(path, buf.getvalue().encode())
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return path
    table = pa.Table.from_pylist([{c: row.get(c) for c in cols} for row in rows])
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path.with_suffix(".parquet"))
    return path


def _parse_column(cells: list[str]) -> list[Any]:
    present = [c for c in cells if c != ""]
    if present and all(c in ("true", "false") for c in present):
        return [None if c == "" else c == "true" for c in cells]
    try:
        return [None if c == "" else int(c) for c in cells]
    except ValueError:
        pass
    try:
        return [None if c == "" else float(c) for c in cells]
    except ValueError:
        return [None if c == "" else c for c in cells]


def read_table(path: str | os.PathLike) -> Table:
    """Read a tidy table CSV written by :func:`write_table`; each column gets one type (int, float, bool or str).

    Args:
        path: the CSV file.

    Returns:
        A :class:`Table` (list of dict rows); empty cells are None.
    """
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return Table()
        body = list(reader)
    cols = [_parse_column([r[i] if i < len(r) else "" for r in body]) for i in range(len(header))]
    return Table({name: col[k] for name, col in zip(header, cols, strict=True)} for k in range(len(body)))


@dataclasses.dataclass(frozen=True)
class Run:
    """A run folder loaded from disk (see :func:`load`).

    Attributes:
        path: the run folder.
        table: the tidy table, one row per (model, variant).
        manifest: the parsed ``manifest.json``.
        schurs: model id -> SchurForm of that model's recurrent matrix.
        complete: whether the run finished (every chunk is there).
    """

    path: Path
    table: Table
    manifest: dict[str, Any]
    schurs: dict[str, Any]
    complete: bool

    @property
    def models(self) -> list[str]:
        """Model ids in manifest order."""
        return [m["id"] for m in self.manifest.get("models", [])]


def load(path: str | os.PathLike) -> Run:
    """Load a run folder written by ``schurjax sweep`` / ``schurjax demo``.

    Args:
        path: the run folder (or its ``manifest.json``).

    Returns:
        :class:`Run` with ``table`` (list of dict rows, ``.column(name)`` gives NumPy arrays), ``manifest`` and
        ``schurs`` (model id -> SchurForm).

    Raises:
        FileNotFoundError: no manifest, or the run is incomplete (no table yet).

    Example:
        >>> run = sj.results.load("runs/demo")
        >>> run.table.column("rel_delta_loss").max(), run.schurs["flipflop-0"].n
    """
    path = Path(path)
    if path.name == MANIFEST:
        path = path.parent
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"load: no run folder at {path} (missing {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    table_path = path / TABLE_CSV
    if not table_path.is_file():
        raise FileNotFoundError(f"load: run {path} has no {TABLE_CSV} yet (incomplete; rerun the same command)")
    from schurjax.schur import SchurForm

    schurs = {}
    for model in manifest.get("models", []):
        f = path / SCHUR_DIR / f"{model['id']}.npz"
        if f.is_file():
            schurs[model["id"]] = SchurForm.from_npz(f)
    return Run(path, read_table(table_path), manifest, schurs, (path / COMPLETE).is_file())


class RunFolder:
    """Writer side of a run folder: manifest, Schur forms, atomic per-chunk files, final table, complete marker.

    Args:
        path: the run folder (created if missing).

    Example:
        >>> rf = RunFolder("runs/x")
        >>> rf.start(manifest)                       # ValueError if the folder holds a different sweep
        >>> if not rf.has_chunk(0, 3): rf.write_chunk(0, 3, {"start": 0, "stop": 128, "loss": [...]})
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def existing_manifest(self) -> dict[str, Any] | None:
        """The manifest already in the folder, or None (a torn or foreign file raises ValueError)."""
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"--out: {self.manifest_path} is not a schurjax manifest ({e.msg})") from None

    def start(self, manifest: dict[str, Any]) -> bool:
        """Create the folder and write ``manifest`` unless the same sweep is already there.

        Args:
            manifest: JSON-able dict with a ``config`` entry identifying the sweep.

        Returns:
            True when an earlier run of the same config was found (resume), else False.

        Raises:
            ValueError: the folder holds a different sweep (its manifest ``config`` differs), or is not empty and
                holds no manifest.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out: {self.path} is a file, expected a run folder")
        old = self.existing_manifest()
        if old is not None:
            new_cfg = to_jsonable(manifest["config"])
            old_cfg = old.get("config")
            if old_cfg != new_cfg:
                diff = config_diff(old_cfg or {}, new_cfg)
                raise ValueError(
                    f"--out: {self.path} holds a different sweep ({diff}); choose another --out or delete it"
                )
            return True
        if self.path.exists() and any(p.name != ".DS_Store" for p in self.path.iterdir()):
            raise ValueError(f"--out: {self.path} exists, is not empty and holds no {MANIFEST}; choose another --out")
        (self.path / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
        (self.path / SCHUR_DIR).mkdir(exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)
        return False

    def save_schur(self, model_id: str, sf: Any) -> Path:
        """Save one model's SchurForm as ``schur/<model_id>.npz`` (atomically)."""
        dest = self.path / SCHUR_DIR / f"{model_id}.npz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.stem}.tmp.npz")
        sf.to_npz(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        return dest

    def chunk_path(self, model_index: int, chunk_index: int) -> Path:
        return self.path / CHUNK_DIR / f"{model_index:03d}-{chunk_index:05d}.json"

    def has_chunk(self, model_index: int, chunk_index: int) -> bool:
        """Whether this chunk's result file is there (files are atomic, so present means whole)."""
        return self.chunk_path(model_index, chunk_index).is_file()

    def write_chunk(self, model_index: int, chunk_index: int, payload: dict[str, Any]) -> Path:
        """Write one chunk's metrics atomically."""
        data = json.dumps(to_jsonable(payload), separators=(",", ":")).encode()
        return atomic_write_bytes(self.chunk_path(model_index, chunk_index), data)

    def read_chunk(self, model_index: int, chunk_index: int) -> dict[str, Any]:
        """Read one chunk's metrics (floats round-trip exactly through JSON)."""
        return json.loads(self.chunk_path(model_index, chunk_index).read_text())

    def finish(self, rows: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None) -> Path:
        """Write the final table, then the complete marker (last). Returns the CSV path."""
        csv_path = write_table(rows, self.path / TABLE_CSV)
        atomic_write_json(self.path / COMPLETE, {"rows": len(rows), **(summary or {})})
        return csv_path

    @property
    def complete(self) -> bool:
        return (self.path / COMPLETE).is_file()


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short description of the first differing config keys, e.g. ``trials: 256 != 64``."""
    keys = sorted(set(old) | set(new))
    parts = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            x, y = a[i], b[i]
            if isinstance(x, dict) and isinstance(y, dict):
                diff = [kk for kk in sorted(set(x) | set(y)) if x.get(kk) != y.get(kk)]
                sub = [f"{kk}: {x.get(kk)!r} != {y.get(kk)!r}" for kk in diff]
                parts.append(f"{k}[{i}] " + ", ".join(sub))
                continue
            parts.append(f"{k}[{i}]: {x!r} != {y!r}")
            continue
        parts.append(f"{k}: {a!r} != {b!r}")
    text = "; ".join(parts[:3]) + ("; ..." if len(parts) > 3 else "")
    return text if len(text) < 300 else text[:297] + "..."
