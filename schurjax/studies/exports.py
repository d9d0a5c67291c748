"""The compressed models a study writes: their metadata, the export, and the check that what is on disk is the
study's own (a swapped, stale or symlinked export is rewritten, never kept).

Files: ``compressed/<model>-<criterion>.eqx`` (+ ``.json``, ``.pt``) from the compression parts,
``compressed/<model>-finetuned-loss.eqx`` from the ``finetune`` part.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.store import _safe_io
from schurjax.store._json import canonical, finite_or_none
from schurjax.studies import compression
from schurjax.studies.protocol import StudyConfig

__all__ = ["COMPRESS_CRITERIA", "base_meta", "export_meta", "export", "check_export", "check_exports"]

COMPRESS_CRITERIA = ("loss", "score")
"""The compression search runs once per criterion (loss within tau; score drop within eps)."""


def base_meta(spec: Any) -> dict[str, Any]:
    from schurjax.models import model_fingerprint, task_params

    return {
        "task": {"name": spec.task.name, "params": task_params(spec.task)},
        "seed": spec.seed,
        "base_model": {
            "id": spec.id,
            "source": spec.source,
            "seed": spec.seed,
            "n_hidden": int(spec.model.n_hidden),
            "weights_sha256": model_fingerprint(spec.model),
        },
    }


def export_meta(spec: Any, criterion: str, found: dict[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    return {
        **base_meta(spec),
        "compression": {
            "criterion": criterion,
            "tol": cfg.tau if criterion == "loss" else cfg.eps,
            "rule": (
                "accepted when the one-sided upper bound of dloss/loss <= tol"
                if criterion == "loss"
                else "accepted when the one-sided lower bound of the score >= base score - tol"
            ),
            "selection": found["selection"],
            "validation": found["validation"],
            "margin": found["margin"],
            "heldout": found["heldout"],
            "loss_ratio": found["heldout"].get("loss_ratio"),
            "found_size": found["decision"]["found_size"],
            "keys": found["decision"]["keys"],
            "study_seed": cfg.seed,
            "trials": found["decision"]["trials"],
        },
    }


def export(out: Path, spec: Any, sf: Any, criterion: str, found: dict[str, Any], cfg: StudyConfig) -> Path:
    meta = export_meta(spec, criterion, found, cfg)
    name = _safe_io.check_name("study", "models", f"{spec.id}-{criterion}.eqx")
    # written into a fresh private folder, then moved into compressed/ (a symlinked compressed/ or file is refused
    # or replaced, never written through)
    _safe_io.write_files(
        out,
        "compressed",
        lambda tmp: compression.export(tmp / name, spec.model, sf, np.asarray(found["removed"]), finite_or_none(meta)),
        where="study",
    )
    return out / "compressed" / name


def check_export(loaded: tuple[Any, dict[str, Any]], spec: Any, sf: Any, criterion: str, found: Any, cfg: Any) -> None:
    """Raise ValueError unless a compressed model on disk is the one this study's part describes: its weights,
    removed couplings, base model and criterion (a swapped or stale export is rewritten, never kept)."""
    from schurjax.models import model_fingerprint

    model, meta = loaded
    removed = np.asarray(found["removed"], np.int64).reshape(-1, 2)

    def what(m: dict[str, Any]) -> Any:  # the export's identity (not how the user spelled its source)
        base = m.get("base_model") if isinstance(m.get("base_model"), dict) else {}
        ident = {"task": m.get("task"), "compression": m.get("compression"), "base": base.get("weights_sha256")}
        return json.loads(canonical(finite_or_none(ident)))

    if (
        what(meta) != what(export_meta(spec, criterion, found, cfg))
        or meta.get("removed_couplings") != removed.tolist()
    ):
        raise ValueError("its metadata is not this study's (another model, criterion or setting)")
    expected = spec.model.with_recurrent(compression.compressed_W(sf, removed))
    if model_fingerprint(model) != model_fingerprint(expected):
        raise ValueError("its weights are not this study's compressed model")


def check_exports(
    out: Path,
    specs: Sequence[Any],
    sfs: dict[str, Any],
    parts: dict[str, dict[str, Any]],
    cfg: StudyConfig,
    log: Callable[[str], None],
) -> None:
    """Rewrite any compressed model that is missing or does not load (its part holds everything needed)."""
    from schurjax.store.checkpoint import load_model

    if any(f"compression-{c}" in parts[s.id] for s in specs for c in COMPRESS_CRITERIA):
        _safe_io.mkdirs(out, "compressed", where="study")  # a symlinked compressed/ is refused, never read or written
    for spec in specs:
        for criterion in COMPRESS_CRITERIA:
            found = parts[spec.id].get(f"compression-{criterion}")
            if found is None or not found.get("exported", True):
                continue
            path = out / "compressed" / f"{spec.id}-{criterion}.eqx"
            try:
                if path.is_symlink() or path.with_suffix(".json").is_symlink():
                    raise ValueError("a symlink, replaced by the model itself")
                check_export(load_model(path), spec, sfs[spec.id], criterion, found, cfg)
            except ValueError as e:
                log(f"study: rewriting {path} ({str(e).splitlines()[0][:80]})")
                export(out, spec, sfs[spec.id], criterion, found, cfg)
