"""Run folders on disk: a sweep's manifest, Schur forms, chunk files and tidy table, and :func:`load`.

Layout of a run folder::

    <run>/manifest.json          full config, versions, device, Schur summary per model, seeds and keys
    <run>/schur/<model>.npz      each model's SchurForm (SchurForm.to_npz)
    <run>/chunks/<m>-<c>.json    per-chunk metrics, written atomically (temp file, fsync, os.replace)
    <run>/table.csv              final tidy table, one row per (model, variant) (schurjax.table)
    <run>/COMPLETE               written last, only once every chunk is there

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schurjax._json import atomic_write_bytes, atomic_write_json, to_jsonable
from schurjax.errors import InputError
from schurjax.table import read_table, write_table

__all__ = ["Run", "RunFolder", "load", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2
"""Version of the run-folder results (chunk payloads, table columns, batch/control keys). Bump it whenever a code
change alters what a chunk holds or how its numbers are drawn: it is part of the sweep config compared on resume,
so a resumed sweep never mixes chunks of two versions (2: batches keyed by task name and params)."""

MANIFEST = "manifest.json"
TABLE_CSV = "table.csv"
COMPLETE = "COMPLETE"
CHUNK_DIR = "chunks"
SCHUR_DIR = "schur"


@dataclasses.dataclass(frozen=True)
class Run:
    """A run folder loaded from disk (see :func:`load`).

    Attributes:
        path: the run folder.
        table: the tidy table, a pandas DataFrame with one row per (model, variant) (see :mod:`schurjax.table`).
        manifest: the parsed ``manifest.json``.
        schurs: model id -> SchurForm of that model's recurrent matrix.
        complete: whether the run finished (every chunk is there).
    """

    path: Path
    table: Any
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
        :class:`Run` with ``table`` (a pandas DataFrame), ``manifest`` and ``schurs`` (model id -> SchurForm).

    Raises:
        FileNotFoundError: no manifest, or the run is incomplete (no table yet).

    Example::

        run = sj.results.load("runs/demo")
        run.table.groupby(["model", "family"]).rel_delta_loss.median()
        run.schurs["flipflop-0"].n
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

    Example::

        rf = RunFolder("runs/x")
        rf.start(manifest)                       # InputError if the folder holds a different sweep
        if not rf.has_chunk(0, 3):
            rf.write_chunk(0, 3, {"start": 0, "stop": 128, "loss": [...]})
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
            raise InputError("sweep", "out", f"{self.manifest_path} is not a schurjax manifest ({e.msg})") from None

    def start(self, manifest: dict[str, Any]) -> bool:
        """Create the folder and write ``manifest`` unless the same sweep is already there.

        Args:
            manifest: JSON-able dict with a ``config`` entry identifying the sweep.

        Returns:
            True when an earlier run of the same config was found (resume), else False.

        Raises:
            InputError: the folder holds a different sweep (its manifest ``config`` differs), or is not empty and
                holds no manifest.
        """
        if self.path.exists() and not self.path.is_dir():
            raise InputError("sweep", "out", f"{self.path} is a file, expected a run folder")
        old = self.existing_manifest()
        if old is not None:
            new_cfg = to_jsonable(manifest["config"])
            old_cfg = old.get("config")
            if old_cfg != new_cfg:
                diff = config_diff(old_cfg or {}, new_cfg)
                raise InputError("sweep", "out", f"{self.path} holds a different sweep ({diff}); choose another "
                                 "folder or delete it")  # fmt: skip
            return True
        if self.path.exists() and any(p.name != ".DS_Store" for p in self.path.iterdir()):
            raise InputError("sweep", "out", f"{self.path} exists, is not empty and holds no {MANIFEST}; choose "
                             "another folder")  # fmt: skip
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
