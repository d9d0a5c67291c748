"""Run folders on disk: a sweep's manifest, Schur forms, chunk files and tidy table, and :func:`load`.

Layout of a run folder::

    <run>/manifest.json          full config, versions, device, Schur summary per model, seeds and keys
    <run>/schur/<model>.npz      each model's SchurForm (SchurForm.to_npz)
    <run>/chunks/<m>-<c>.json    per-chunk metrics, written atomically (temp file, fsync, os.replace), each with
                                 the SHA-256 of the config that made it and of its own content
    <run>/table.csv              final tidy table, one row per (model, variant) (schurjax.store.table)
    <run>/COMPLETE               written last, only once every chunk is there: the table's row count and SHA-256
    <run>/.lock                  held (fcntl) by the one process writing the folder; names it
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schurjax.errors import InputError
from schurjax.store import _safe_io
from schurjax.store._json import canonical, dumps, loads, to_jsonable
from schurjax.store.lock import LOCK_FILE, RunLock
from schurjax.store.table import read_table, to_csv_bytes

__all__ = ["Run", "RunFolder", "load", "read_manifest", "config_fingerprint", "SCHEMA_VERSION", "EARLIER_VERSION"]

SCHEMA_VERSION = 3
"""Version of the run-folder results (chunk payloads, table columns, batch/control keys). Bump it whenever a code
change alters what a chunk holds or how its numbers are drawn: it is part of the sweep config compared on resume,
so a resumed sweep never mixes chunks of two versions (2: batches keyed by task name and params; 3: chunks carry
the config fingerprint and a checksum, COMPLETE the table's checksum)."""

EARLIER_VERSION = "written by an earlier version of schurjax, which recorded no chunk identity"
"""What :meth:`RunFolder.chunk_problem` says of a chunk file from before chunks carried their identity: a sweep or
study recomputes it (with a line saying so); loading a study refuses it and says how to proceed."""

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
        table: the tidy table, a pandas DataFrame with one row per (model, variant) (see :mod:`schurjax.store.table`).
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

    def batch(self, model_id: str) -> Any:
        """The trial batch the sweep evaluated ``model_id`` on: drawn again from its key, or read again from the
        trial file (checked against the SHA-256 the config records), so that any row can be checked by hand.

        The task is resolved from the manifest like a task named in a file: registered tasks and NeuroGym ids only
        (register your own task first, or name it with ``--task``, in this process).

        Raises:
            InputError: an unknown id, a trial file that moved or changed, or a task that does not resolve.

        Example::

            run = sj.results.load("runs/ff"); batch = run.batch("flipflop-0")
        """
        from schurjax import tasks
        from schurjax.sweeps.config import TrialsFile, batch_key
        from schurjax.tasks.protocol import checked_sample

        rec = next((m for m in self.manifest.get("models", []) if m.get("id") == model_id), None)
        if rec is None:
            raise InputError("Run.batch", "model_id", f"no model {model_id!r} in {self.path}; it has {self.models}")
        cfg = self.manifest["config"]
        if cfg.get("trials_file_sha256"):
            path = (self.manifest.get("trials_file") or {}).get("path")
            fixed = TrialsFile.read(path)
            if fixed.sha256 != cfg["trials_file_sha256"]:
                raise InputError("Run.batch", None, f"{path} is no longer the trial file the sweep used (SHA-256)")
            return fixed.batch
        try:
            task = tasks.from_record(rec.get("task"), rec.get("task_params"), where=f"{self.path / MANIFEST}")
        except ValueError as e:
            raise InputError("Run.batch", None, str(e).splitlines()[0]) from None
        seed, trials = cfg.get("seed"), cfg.get("trials")
        for name, v, top in (("seed", seed, 2**63 - 1), ("trials", trials, 2**31 - 1)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
                raise InputError(
                    "Run.batch", None, f"{self.path / MANIFEST}: config {name} is {v!r}, expected an int in 0..{top:,}"
                )
        from schurjax.runtime.environment import available_memory
        from schurjax.sweeps.budget import bytes_per_trial

        n = self.schurs[model_id].n if model_id in self.schurs else 1
        per = bytes_per_trial(int(n), int(task.steps), int(task.n_in), int(task.n_out))
        if trials * per > available_memory() // 2:  # an edited manifest: refused before anything is allocated
            raise InputError(
                "Run.batch",
                None,
                f"{self.path / MANIFEST}: {trials:,} trials of {task.steps} steps ({per:,} bytes each) cannot fit in "
                "memory; the sweep itself could not have run them (was the manifest edited?)",
            )
        key = batch_key(seed, rec["task"], rec.get("task_params") or {})
        return checked_sample(task, key, trials, "Run.batch")


def _read_json(path: Path, where: str, what: str, repair: str) -> Any:
    """Parse a JSON file that schurjax wrote, or raise a one-line :class:`InputError` naming it and the repair."""
    try:
        return loads(path.read_bytes())
    except (OSError, ValueError) as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise InputError(where, None, f"{path} is not a readable {what} ({why}); {repair}") from None


def read_manifest(path: Path, where: str = "load") -> dict[str, Any]:
    """The manifest of a run folder as a dict, or a one-line :class:`InputError` naming the file."""
    repair = f"delete {path.parent} and rerun the sweep"
    manifest = _read_json(path, where, "schurjax manifest", repair)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise InputError(
            where,
            None,
            f"{path} is not a schurjax manifest (expected a JSON object with a "
            f"'config' entry, got {type(manifest).__name__}); {repair}",
        )
    models = manifest.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models):
        raise InputError(
            where,
            None,
            f"{path}: 'models' must be a list of records with a str 'id', got {_json_kind(models)}; {repair}",
        )
    return manifest


def _json_kind(x: Any) -> str:
    if isinstance(x, list):
        bad = next((m for m in x if not (isinstance(m, dict) and isinstance(m.get("id"), str))), None)
        return f"a list holding {type(bad).__name__ if not isinstance(bad, dict) else 'a record without a str id'}"
    return type(x).__name__


def load(path: str | os.PathLike) -> Run:
    """Load a run folder written by ``schurjax sweep`` / ``sj.sweep``, checking it against its records.

    A finished run's ``table.csv`` must match the row count and SHA-256 that ``COMPLETE`` records, and every Schur
    form must read back; anything else is refused in one line naming the file and the repair.

    Args:
        path: the run folder (or its ``manifest.json``).

    Returns:
        :class:`Run` with ``table`` (a pandas DataFrame), ``manifest`` and ``schurs`` (model id -> SchurForm).

    Raises:
        FileNotFoundError: no manifest, or the run is incomplete (no table yet).
        InputError: a damaged manifest, table or Schur file.

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
    manifest = read_manifest(manifest_path)
    table_path = path / TABLE_CSV
    if not table_path.is_file():
        raise FileNotFoundError(f"load: run {path} has no {TABLE_CSV} yet (incomplete; rerun the same command)")
    complete = (path / COMPLETE).is_file()
    data = table_path.read_bytes()
    if complete:
        record = _read_json(path / COMPLETE, "load", "completion record", "rerun the sweep command to rewrite it")
        want = record.get("table_sha256") if isinstance(record, dict) else None
        if want != _sha256(data):
            raise InputError(
                "load",
                None,
                f"{table_path} does not match the checksum in {path / COMPLETE} "
                "(truncated or edited); rerun the sweep command to rebuild it from the "
                "chunks",
            )
    from schurjax.schur import SchurForm

    schurs = {}
    for model in manifest.get("models", []):
        _safe_io.check_name("load", None, str(model.get("id")))  # an id from the manifest names a file below path
        f = path / SCHUR_DIR / f"{model['id']}.npz"
        if f.is_file():
            try:
                schurs[model["id"]] = SchurForm.from_npz(f)
            except ValueError as e:
                raise InputError(
                    "load",
                    None,
                    f"{f} is damaged ({str(e).splitlines()[0][-80:]}); rerun the sweep command to rewrite it",
                ) from None
    table = read_table(io.BytesIO(data))
    if complete and len(table) != record.get("rows"):
        raise InputError(
            "load",
            None,
            f"{table_path} holds {len(table)} rows but {path / COMPLETE} records "
            f"{record.get('rows')}; rerun the sweep command to rebuild it",
        )
    return Run(path, table, manifest, schurs, complete)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_fingerprint(config: dict[str, Any]) -> str:
    """SHA-256 of a sweep config's canonical JSON: every chunk file records the config that made it."""
    return _sha256(canonical(config).encode())


def _encode(values: Sequence[float]) -> list[Any]:
    """Floats as standard JSON: NaN and infinities become the strings "nan", "inf", "-inf"."""
    return [v if math.isfinite(v) else repr(v) for v in map(float, values)]


def _decode(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values]


class RunFolder:
    """Writer side of a run folder: manifest, Schur forms, checked chunk files, final table, complete marker.

    Use it as a context manager: :meth:`start` takes the folder's lock (one writer at a time), leaving releases it.
    Every chunk file records the fingerprint of the config that made it and a SHA-256 of its content; a chunk
    that is missing, damaged or made by another config is reported by :meth:`chunk_problem` and recomputed.

    Args:
        path: the run folder (created if missing).
        where: the function named in errors.
        index, count: this process and the number of processes sharing the folder (scale-out; 0 and 1 alone).
        kind: what the folder holds, in errors (``"sweep"``, ``"study"``).
        lock: the folder's :class:`~schurjax.store.lock.RunLock`, already taken (``Processes.lock``); released
            on leaving.

    Example::

        with RunFolder("runs/x") as rf:
            rf.start(manifest)                       # InputError if the folder holds a different sweep
            if rf.chunk_problem(0, 3, 0, 128, names) is not None:
                rf.write_chunk(0, 3, {"start": 0, "stop": 128, "loss": [...]})
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        where: str = "sweep",
        index: int = 0,
        count: int = 1,
        kind: str = "sweep",
        lock: RunLock | None = None,
    ):
        if not isinstance(path, str | os.PathLike) or not os.fspath(path).strip():
            raise InputError(where, "out", f"must name a folder, got {path!r}")  # "" would be the current folder
        self.path = Path(path)
        self.where = where
        self.kind = kind
        self.index, self.count = int(index), int(count)  # this process among those sharing the folder
        self.config_sha256: str | None = None
        self._lock: RunLock | None = lock  # one already taken (a process of several takes it before joining)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def existing_manifest(self) -> dict[str, Any] | None:
        """The manifest already in the folder, or None; a damaged one raises :class:`InputError` naming it."""
        if not self.manifest_path.is_file():
            return None
        return read_manifest(self.manifest_path, self.where)

    def _chunk_files(self) -> list[Path]:
        d = self.path / CHUNK_DIR
        return sorted(p for p in d.iterdir() if p.suffix == ".json") if d.is_dir() else []

    def start(self, manifest: dict[str, Any]) -> bool:
        """Lock the folder, create it and write ``manifest`` unless the same sweep is already there.

        A folder whose manifest differs but that holds no chunk yet (a run stopped before its first chunk) is
        taken over by the new config.

        Args:
            manifest: JSON-able dict with a ``config`` entry identifying the sweep.

        Returns:
            True when an earlier run of the same config was found (resume), else False.

        Raises:
            InputError: another process writes the folder; the folder holds a different sweep (its manifest
                ``config`` differs); or it is not empty and holds no manifest.
        """
        if self.path.exists() and not self.path.is_dir():
            raise InputError(self.where, "out", f"{self.path} is a file, expected a run folder")
        fresh = not self.path.exists() or not any(
            p.name != ".DS_Store" and not p.name.startswith(LOCK_FILE) for p in self.path.iterdir()
        )
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        new_cfg = to_jsonable(manifest["config"])
        self.config_sha256 = config_fingerprint(new_cfg)
        old = None if fresh else self.existing_manifest()
        if old is not None and old.get("config") == new_cfg:
            self._make_dirs()
            return True
        if old is not None and self._chunk_files():
            diff = config_diff(old.get("config") or {}, new_cfg)
            raise InputError(
                self.where,
                "out",
                f"{self.path} holds a different {self.kind} ({diff}); choose another folder or delete it",
            )
        if old is None and not fresh:
            raise InputError(
                self.where, "out", f"{self.path} exists, is not empty and holds no {MANIFEST}; choose another folder"
            )
        for stale in (self.path / COMPLETE, self.path / TABLE_CSV):  # a manifest-only folder taken over
            stale.unlink(missing_ok=True)
        self._make_dirs()
        self._lock.check()
        _safe_io.write_bytes(self.path, MANIFEST, (dumps(manifest, indent=1) + "\n").encode(), where=self.where)
        return False

    def update_manifest(self, entries: dict[str, Any]) -> None:
        """Replace top-level entries of the manifest (never its ``config``), atomically: e.g. the parts list of a
        study resumed with a part registered since."""
        if "config" in entries:
            raise ValueError("RunFolder.update_manifest: the config identifies the folder and is never replaced")
        manifest = {**(self.existing_manifest() or {}), **entries}
        self._lock.check()
        _safe_io.write_bytes(self.path, MANIFEST, (dumps(manifest, indent=1) + "\n").encode(), where=self.where)

    def _acquire(self) -> None:
        if self._lock is None:
            self._lock = RunLock(self.path, self.where, index=self.index, count=self.count).acquire()

    def join(self, config: dict[str, Any]) -> None:
        """Take this process's part in a folder that process 0 has started (:meth:`start`) with ``config``."""
        self._acquire()
        self.config_sha256 = config_fingerprint(to_jsonable(config))
        self._make_dirs()

    def _make_dirs(self) -> None:
        for d in (CHUNK_DIR, SCHUR_DIR):  # a symlinked chunks/ or schur/ is refused, never followed
            _safe_io.mkdirs(self.path, d, where=self.where)

    def save_schur(self, model_id: str, sf: Any) -> Path:
        """Save one model's SchurForm as ``schur/<model_id>.npz`` (atomically)."""
        self._lock.check()
        name = _safe_io.check_name(self.where, "models", f"{model_id}.npz")
        _safe_io.write_files(self.path, SCHUR_DIR, lambda tmp: sf.to_npz(tmp / name), where=self.where)
        return self.path / SCHUR_DIR / name

    def chunk_path(self, model_index: int, chunk_index: int) -> Path:
        return self.path / CHUNK_DIR / f"{model_index:03d}-{chunk_index:05d}.json"

    @staticmethod
    def chunk_identity(
        model_index: int, chunk_index: int, start: int, stop: int, identity: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What a chunk file says it is (inside its checksum): its slot, its range and the caller's identity
        (model id and weights fingerprint, part name), so that a chunk copied under another chunk's name is refused.
        """
        return to_jsonable(
            {"model_index": int(model_index), "chunk_index": int(chunk_index), "start": int(start), "stop": int(stop)}
            | dict(identity or {})
        )

    def chunk_problem(
        self,
        model_index: int,
        chunk_index: int,
        start: int,
        stop: int,
        names: Sequence[str],
        identity: dict[str, Any] | None = None,
    ) -> str | None:
        """Why this chunk file cannot be used (``"missing"``, ``"damaged: ..."``, ``"made by another config"``,
        ``"made for another chunk"``, :data:`EARLIER_VERSION`), or None when it is whole, made by this config for
        this very chunk (:meth:`chunk_identity`), covers ``start:stop`` and holds every metric in ``names``."""
        p = self.chunk_path(model_index, chunk_index)
        if p.is_symlink() or (p.exists() and not p.is_file()):
            return "damaged: not a regular file"
        if not p.exists():
            return "missing"
        try:
            chunk = loads(p.read_bytes())
            body = {k: v for k, v in chunk.items() if k != "sha256"}
            if chunk.get("sha256") != _sha256(canonical(body).encode()):
                return "damaged: checksum mismatch"
            if chunk.get("config_sha256") != self.config_sha256:
                return "made by another config"
            if (chunk.get("start"), chunk.get("stop")) != (start, stop):
                return f"damaged: covers {chunk.get('start')}:{chunk.get('stop')}, expected {start}:{stop}"
            if not isinstance(chunk.get("identity"), dict):
                return EARLIER_VERSION
            want = self.chunk_identity(model_index, chunk_index, start, stop, identity)
            if chunk.get("identity") != want:
                got = chunk.get("identity")
                return f"made for another chunk ({_identity_diff(got, want)})"
            for name in names:
                if len(chunk[name]) != stop - start:
                    return f"damaged: {name} holds {len(chunk[name])} values, expected {stop - start}"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return f"damaged: {type(e).__name__}"
        return None

    def write_chunk(
        self,
        model_index: int,
        chunk_index: int,
        payload: dict[str, Any],
        names: Sequence[str],
        identity: dict[str, Any] | None = None,
    ) -> Path:
        """Write one chunk's metrics atomically, with the config fingerprint and a checksum of the content.

        Args:
            model_index, chunk_index: which chunk.
            payload: ``start``, ``stop``, scalars, and the per-variant lists named in ``names``.
            names: the per-variant float lists of ``payload`` (non-finite values are stored as strings).
        """
        body = {k: (_encode(v) if k in names else v) for k, v in to_jsonable(payload).items()}
        body["config_sha256"] = self.config_sha256
        body["identity"] = self.chunk_identity(model_index, chunk_index, body["start"], body["stop"], identity)
        for k, v in body.items():
            if isinstance(v, float) and not math.isfinite(v):
                body[k] = repr(v)
        body["sha256"] = _sha256(canonical(body).encode())
        self._lock.check()  # a writer whose folder was deleted or replaced stops here
        dest = self.chunk_path(model_index, chunk_index)
        # a symlink at dest is replaced, never written through; a symlinked chunks/ is refused
        return _safe_io.write_bytes(self.path, (CHUNK_DIR, dest.name), canonical(body).encode(), where=self.where)

    def read_chunk(self, model_index: int, chunk_index: int, names: Sequence[str]) -> dict[str, Any]:
        """Read one chunk (check it first with :meth:`chunk_problem`); floats round-trip exactly."""
        chunk = loads(self.chunk_path(model_index, chunk_index).read_bytes())
        for k, v in chunk.items():
            if k in names:
                chunk[k] = _decode(v)
            elif isinstance(v, str) and v in ("nan", "inf", "-inf"):
                chunk[k] = float(v)
        return chunk

    # -- records: one JSON value per (model, slot), e.g. a study's part; stored as chunk files of an empty range

    def record_problem(self, model_index: int, index: int, identity: dict[str, Any]) -> str | None:
        """Why the record in slot ``(model_index, index)`` cannot be used (as :meth:`chunk_problem`), or None."""
        return self.chunk_problem(model_index, index, 0, 0, (), identity)

    def write_record(self, model_index: int, index: int, record: Any, identity: dict[str, Any]) -> Path:
        """Write one JSON-able record atomically, with the config fingerprint, ``identity`` (``model`` and
        ``part`` among it) and a checksum over all of it."""
        payload = {"start": 0, "stop": 0, "model": identity["model"], "part": identity["part"], "result": record}
        return self.write_chunk(model_index, index, payload, (), identity)

    def read_record(self, model_index: int, index: int) -> Any:
        """The record in slot ``(model_index, index)`` (check it first with :meth:`record_problem`)."""
        return self.read_chunk(model_index, index, ())["result"]

    def check(self) -> None:
        """Raise :class:`InputError` if this writer no longer holds the folder (it was deleted or replaced)."""
        if self._lock is not None:
            self._lock.check()

    def finish(self, rows: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None) -> Path:
        """Write the final table, then the complete marker with the table's row count and SHA-256 (last)."""
        self._lock.check()
        data = to_csv_bytes(rows)
        (self.path / COMPLETE).unlink(missing_ok=True)
        csv_path = _safe_io.write_bytes(self.path, TABLE_CSV, data, where=self.where)
        record = {"rows": len(rows), "table_sha256": _sha256(data), **(summary or {})}
        _safe_io.write_bytes(self.path, COMPLETE, (dumps(record, indent=1) + "\n").encode(), where=self.where)
        return csv_path

    @property
    def complete(self) -> bool:
        return (self.path / COMPLETE).is_file()


def _identity_diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    diff = [f"{k} {got.get(k)!r} != {want[k]!r}" for k in want if got.get(k) != want[k]]
    text = ", ".join(diff[:2]) or "other entries"
    return text if len(text) < 160 else text[:157] + "..."


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
