"""The tidy table of a sweep: one row per (model, variant), written as CSV, read as a pandas DataFrame.

Columns: :data:`COLUMNS` first (those present), then every other label key, sorted. Label values that are lists
(the removed entries ``[[0, 3], [1, 3]]``) are stored as compact JSON strings; eigenvalues ``[re, im]`` as two
columns ``*_re``, ``*_im``. Floats are written with Python's shortest exact round-trip form, so a table read back
holds exactly the numbers that were computed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.store._json import atomic_write_bytes, to_jsonable

__all__ = ["COLUMNS", "flatten_label", "table_columns", "to_csv_bytes", "write_table", "read_table", "records"]

COLUMNS = (
    "row_id",
    "model",
    "task",
    "model_seed",
    "family",
    "label",
    "control_of",
    "control_kind",
    "n_removed",
    "delta_norm",
    "loss",
    "delta_loss",
    "rel_delta_loss",
    "output_distance",
    "hidden_distance",
    "score",
    "base_loss",
    "base_score",
)
"""Leading columns of the tidy table, in this order; any other label keys follow, sorted."""

INT_COLUMNS = (
    "row_id",
    "model_seed",
    "control_of",
    "n_removed",
    "n_changed",
    "row",
    "col",
    "target_block",
    "source_block",
    "target_size",
    "source_size",
    "band",
    "n_pairs",
    "k",
    "p",
    "index",
    "rep",
    "n_scaled",
    "n_fixed",
    "n_stable",
    "lost",
    "gained",
    "n_moved",
)
"""Columns read as integers (pandas ``Int64``) even when every cell is missing (e.g. ``control_of`` of a sweep
without controls)."""
TEXT_COLUMNS = (
    "model",
    "task",
    "family",
    "label",
    "control_kind",
    "entries",
    "controlled_family",
    "controlled_label",
    "target_class",
    "source_class",
)
"""Columns read as text even when every cell is missing."""


def flatten_label(label: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one variant label into table cells: str, int, float, bool or None.

    Complex values ``key`` (and eigenvalues ``*_eig`` stored as ``[re, im]``) become two columns ``key_re`` and
    ``key_im``; sequences and arrays become compact JSON strings.

    Example:
        >>> flatten_label({"family": "single", "entries": [[0, 3]], "target_eig": [0.5, 0.1]})
        {'family': 'single', 'entries': '[[0,3]]', 'target_eig_re': 0.5, 'target_eig_im': 0.1}
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


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
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


def to_csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The CSV text of tidy rows (one flat dict per row; cells str, int, float, bool or None)."""
    cols = table_columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_format_cell(row.get(c)) for c in cols])
    return buf.getvalue().encode()


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write tidy rows as CSV, atomically (see :func:`to_csv_bytes`). Returns the path."""
    return atomic_write_bytes(path, to_csv_bytes(rows))


_NA_CELLS = ["", "nan", "NaN", "-nan", "NA", "<NA>", "N/A", "n/a", "NULL", "null", "None"]
"""Cells read as missing in the columns that are not text (pandas' usual list; text columns: the empty cell)."""


def read_table(path: str | os.PathLike | Any) -> Any:
    """Read a tidy table CSV as a pandas DataFrame.

    Integer and boolean columns with missing cells keep their type (pandas ``Int64`` / ``boolean``, missing as
    ``<NA>``); float columns are NumPy float64 (missing as NaN); text columns are strings, read as written: a
    model named ``nan``, ``NA`` or ``1e3`` keeps its name (only an empty cell is missing).

    Example::

        df = sj.table.read_table("runs/demo/table.csv")
        df[df.family == "single"].groupby("model").rel_delta_loss.median()
    """
    import pandas as pd

    data = path.read() if hasattr(path, "read") else Path(path).read_bytes()
    data = data.encode() if isinstance(data, str) else data
    header = next(csv.reader(io.StringIO(data.decode("utf-8", errors="replace").partition("\n")[0])), [])
    text = [c for c in header if c in TEXT_COLUMNS]
    na = {c: [""] if c in text else _NA_CELLS for c in header}
    df = pd.read_csv(
        io.BytesIO(data),
        dtype={c: "string" for c in text},
        keep_default_na=False,
        na_values=na,
        dtype_backend="numpy_nullable",
    )
    for name in df.columns:
        if name in INT_COLUMNS:
            df[name] = df[name].astype("Int64")
        elif name in TEXT_COLUMNS:
            df[name] = df[name].astype("string")
        elif str(df[name].dtype) == "Float64" or df[name].isna().all():
            df[name] = df[name].astype("float64")
    return df


def records(table: Any) -> list[dict[str, Any]]:
    """The rows of a table (DataFrame or a list of dicts) as plain dicts, missing cells as None."""
    if isinstance(table, list):
        return table
    return table.to_dict("records")
