"""A finished study as an object (:class:`Study`), :func:`load` for a study folder, and the study's batches.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from schurjax._json import canonical
from schurjax.errors import InputError
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
        from schurjax.sweeps import resolve_models
        from schurjax.sweeps.config import model_fingerprint

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
        from schurjax.sweeps.config import task_params

        ident = (purpose, task.name, canonical(task_params(task)))
        if ident not in self.batches:
            self.batches[ident] = task.sample(
                study_key(self.config.seed, purpose, ident[1], ident[2]), self.config.trials
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
    """Load a finished study folder (its parts and tables; nothing is recomputed).

    Raises:
        FileNotFoundError: no study there, or it is not complete.

    Example::

        st = sj.study_load("runs/study"); st.tables["keep"]
    """
    from schurjax.results import COMPLETE, RunFolder, read_manifest
    from schurjax.table import read_table

    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"study.load: no finished study at {path} (missing {COMPLETE}); run sj.study first")
    manifest = read_manifest(path / "manifest.json", "study.load")
    cfg = {k: v for k, v in manifest["config"].items() if k in {f.name for f in dataclasses.fields(StudyConfig)}}
    config = StudyConfig(**cfg)
    folder = RunFolder(path, where="study.load")
    models = manifest["models"]
    parts: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(models):
        parts[m["id"]] = {}
        for c, name in enumerate(manifest["parts"]):
            p = folder.chunk_path(i, c)
            if p.is_file():
                parts[m["id"]][name] = decode(json.loads(p.read_bytes())["result"])
    tables = {p.stem: read_table(p) for p in sorted((path / "tables").glob("*.csv"))}
    from schurjax.studies import report

    prof = report.profile_comparisons(config, models, parts)
    return Study(path, config, models, parts, read_table(path / "table.csv"), tables, prof)
