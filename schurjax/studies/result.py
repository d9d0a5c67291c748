"""A finished study as an object (:class:`Study`), :func:`load` for a study folder, and the study's batches."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from schurjax.errors import InputError
from schurjax.store._json import canonical
from schurjax.studies.protocol import StudyConfig, study_key

__all__ = ["Study", "load", "Context", "decode"]


@dataclasses.dataclass(frozen=True)
class Study:
    """A finished study (see :func:`study`, :func:`load`).

    Attributes:
        path: the study folder.
        config: its :class:`StudyConfig`.
        models: one dict per model (``id``, ``task``, ``task_params``, ``seed``, ``n_hidden``, ``source``).
        parts: model id -> part name -> the part's results.
        summary: the per-model summary table (pandas DataFrame; also ``table.csv``).
        tables: name -> pandas DataFrame (also ``tables/<name>.csv``).
        profiles: the cross-seed profile comparisons.
    """

    path: Path
    config: StudyConfig
    models: list[dict[str, Any]]
    parts: dict[str, dict[str, Any]]
    summary: Any
    tables: dict[str, Any]
    profiles: dict[str, Any]

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def figure(self) -> Path:
        return self.path / "figure.png"

    def compressed(self, model_id: str, criterion: str = "loss") -> Path:
        """Path of the compressed model of ``model_id`` under ``criterion`` (``"loss"`` or ``"score"``)."""
        return self.path / "compressed" / f"{model_id}-{criterion}.eqx"

    def _record(self, model_id: str) -> dict[str, Any]:
        for m in self.models:
            if m["id"] == model_id:
                return m
        raise InputError(
            "Study",
            "model_id",
            f"no model {model_id!r} in {self.path}; it has {', '.join(m['id'] for m in self.models)}",
        )

    def model(self, model_id: str) -> tuple[Any, Any]:
        """``(TanhRNN, Task)`` of a model of the study, loaded again from its source (zoo entry or file) and checked
        against the weights the study recorded.

        Raises:
            InputError: an unknown id, a model that was passed in memory, or a source whose weights changed.
        """
        from schurjax.models import model_fingerprint
        from schurjax.sweeps import resolve_models

        m = self._record(model_id)
        if m["source"] == "object":
            raise InputError("Study", "model_id", f"{model_id} was passed in memory; it has no source to load")
        spec = resolve_models([m["source"]])[0]
        if model_fingerprint(spec.model) != m["weights_sha256"]:
            raise InputError("Study", "model_id", f"{m['source']} no longer holds the weights the study used")
        return spec.model, spec.task

    def schur(self, model_id: str) -> Any:
        """The model's Schur form, as the study used it (``schur/<model_id>.npz``)."""
        from schurjax.schur import SchurForm

        self._record(model_id)
        return SchurForm.from_npz(self.path / "schur" / f"{model_id}.npz")

    def batch(self, purpose: str, task: Any) -> Any:
        """The study's ``"selection"`` or ``"heldout"`` batch of ``task`` (drawn again from its key)."""
        if purpose not in ("selection", "heldout"):
            raise InputError("Study", "purpose", f"must be 'selection' or 'heldout', got {purpose!r}")
        return Context(self.config).batch(purpose, task)


class Context:
    """Shared state of one study run: the batches of each task and the engine options."""

    def __init__(self, config: StudyConfig):
        self.config = config
        self.batches: dict[tuple[str, str, str], Any] = {}

    def batch(self, purpose: str, task: Any) -> Any:
        from schurjax.models import task_params

        ident = (purpose, task.name, canonical(task_params(task)))
        if ident not in self.batches:
            from schurjax.tasks.protocol import checked_sample

            self.batches[ident] = checked_sample(
                task, study_key(self.config.seed, purpose, ident[1], ident[2]), self.config.trials, "study"
            )
        return self.batches[ident]


def decode(x: Any) -> Any:
    """Part results as read back: JSON null (a non-finite number when written) becomes NaN."""
    if isinstance(x, dict):
        return {k: decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [decode(v) for v in x]
    return float("nan") if x is None else x


def load(path: str | os.PathLike) -> Study:
    """Load a finished study folder (its parts and tables; nothing is recomputed), checked against its records.

    ``COMPLETE`` records the SHA-256 of ``table.csv`` and of every table, figure, report and compressed model;
    every part must be whole and made for its slot (model, weights, part). Anything else is refused in one line.

    Raises:
        FileNotFoundError: no study there, or it is not complete.
        InputError: a truncated or edited table, export or part, a part copied into another slot.

    Example::

        st = sj.study_load("runs/study"); st.tables["keep"]
    """
    from schurjax.store.results import (
        CHUNK_DIR,
        COMPLETE,
        EARLIER_VERSION,
        RunFolder,
        _read_json,
        _sha256,
        config_fingerprint,
        read_manifest,
    )

    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"study.load: no finished study at {path} (missing {COMPLETE}); run sj.study first")
    manifest = read_manifest(path / "manifest.json", "study.load")
    repair = "rerun the study command to rebuild it"
    record = _read_json(path / COMPLETE, "study.load", "completion record", repair)
    if not isinstance(record, dict):
        raise InputError("study.load", None, f"{path / COMPLETE} is not a completion record; {repair}")
    cfg = {k: v for k, v in manifest["config"].items() if k in {f.name for f in dataclasses.fields(StudyConfig)}}
    config = StudyConfig(**cfg)
    folder = RunFolder(path, where="study.load")
    folder.config_sha256 = config_fingerprint(manifest["config"])

    def verified(rel: str, want: Any) -> bytes:
        from schurjax.store import _safe_io

        try:
            data = _safe_io.read_bytes(path, rel, where="study.load")
        except FileNotFoundError:
            raise InputError("study.load", None, f"{path / rel} is missing; {repair}") from None
        if want != _sha256(data):
            raise InputError(
                "study.load", None, f"{path / rel} does not match its checksum in {path / COMPLETE}; {repair}"
            )
        return data

    summary = _csv(verified("table.csv", record.get("table_sha256")))
    if len(summary) != record.get("rows"):
        raise InputError(
            "study.load", None, f"{path / 'table.csv'} holds {len(summary)} rows, not {record.get('rows')}"
        )
    files = record.get("files")
    listed = sorted(f"tables/{p.name}" for p in (path / "tables").glob("*.csv")) if (path / "tables").is_dir() else []
    if isinstance(files, dict):  # written by a schurjax that records every file COMPLETE vouches for
        extra = sorted(set(listed) - set(files))
        if extra:
            raise InputError("study.load", None, f"{path / extra[0]} is not one of the study's files; {repair}")
        data = {rel: verified(rel, want) for rel, want in files.items()}
    else:
        from schurjax.store import _safe_io

        data = {rel: _safe_io.read_bytes(path, rel, where="study.load") for rel in listed}
    models = manifest["models"]
    parts: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(models):
        parts[m["id"]] = {}
        for c, name in enumerate(manifest["parts"]):
            ident = {"model": m["id"], "weights_sha256": m.get("weights_sha256"), "part": name}
            why = folder.record_problem(i, c, ident)
            if why == "missing":
                continue
            if why == EARLIER_VERSION:
                raise InputError(
                    "study.load",
                    None,
                    f"{folder.chunk_path(i, c)} was {why}; rerun the same study command to recompute its chunks (or "
                    f"delete {path / CHUNK_DIR} first, or run the study with a fresh --out)",
                )
            if why is not None:
                raise InputError("study.load", None, f"{folder.chunk_path(i, c)} is {why}; {repair}")
            parts[m["id"]][name] = decode(folder.read_record(i, c))
    tables = {Path(rel).stem: _csv(b) for rel, b in sorted(data.items()) if rel.startswith("tables/")}
    from schurjax.studies import report

    prof = report.profile_comparisons(config, models, parts)
    return Study(path, config, models, parts, summary, tables, prof)


def _csv(data: bytes) -> Any:
    """A table from CSV bytes; an empty table (a study of one model has no cross-seed profiles) is empty."""
    import io

    import pandas as pd

    from schurjax.store.table import read_table

    return read_table(io.BytesIO(data)) if data.strip() else pd.DataFrame()
