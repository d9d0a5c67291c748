"""The sweep loop: plan every model, evaluate the chunks that are not on disk yet, assemble the table.

Every chunk's metrics are written atomically into the run folder (:class:`schurjax.results.RunFolder`), so a
crashed or killed sweep resumes where it stopped, and the final table equals that of an uninterrupted run: the
batch, the variants and the chunk boundaries are all fixed by the config and the seed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from schurjax import engine
from schurjax._json import to_jsonable
from schurjax.environment import device_info, versions
from schurjax.errors import InputError
from schurjax.results import Run, RunFolder, load
from schurjax.sweep.config import SweepConfig, batch_key, task_identity, task_params
from schurjax.sweep.models import ModelSpec
from schurjax.sweep.plan import ModelPlan, plan_model
from schurjax.sweep.progress import Progress
from schurjax.table import flatten_label

__all__ = ["run_sweep", "build_rows"]

ChunkCallback = Callable[[str, int, int, int], object]
"""``on_chunk(model_id, chunk_index, start, stop)``, called after each chunk file is written."""


def _manifest(plans: Sequence[ModelPlan], config: SweepConfig, models: Sequence[ModelSpec],
              extra: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    return {
        "schurjax_run": 1,
        "config": config.to_dict(models),
        "versions": versions(),
        "device": device_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seeds": {
            "seed": config.seed,
            "batch_keys": [
                {"task": name, "params": json.loads(params),
                 "key": f"fold_in(fold_in(fold_in(key({config.seed}), 0), crc32({name!r})), crc32({params!r}))"}
                for name, params in dict.fromkeys(task_identity(p.spec.task) for p in plans)
            ],
            "control_keys": f"fold_in(fold_in(fold_in(key({config.seed}), 1), crc32(model id)), crc32(kind))",
        },  # fmt: skip
        "models": [
            {
                "id": p.spec.id,
                "source": p.spec.source,
                "task": p.spec.task.name,
                "task_params": task_params(p.spec.task),
                "seed": p.spec.seed,
                "n_hidden": int(p.sf.n),
                "metadata": to_jsonable(p.spec.metadata),
                "schur": to_jsonable(p.sf.summary_dict()),
                "variants": len(p.variants),
                "ablations": p.n_ablations,
                "chunks": len(p.chunks),
                "family_counts": p.family_counts,
            }
            for p in plans
        ],
        **(extra or {}),
    }


def run_sweep(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    out: str | os.PathLike,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_chunk: ChunkCallback | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> Run:
    """Run (or resume) a sweep of resolved models into a run folder (the engine of :func:`schurjax.sweep`).

    Args:
        models: the models (see :func:`schurjax.sweep.resolve_models`).
        config: the sweep config.
        out: the run folder; an existing folder must hold the same sweep (same config), which is then resumed.
        progress: draw the progress line on stderr.
        log: where to write one-line status messages (default: stderr).
        on_chunk: called after every chunk file is written (see :data:`ChunkCallback`).
        extra_manifest: more JSON-able entries for the manifest (e.g. the command line).

    Returns:
        The finished run (table, manifest, Schur forms).

    Raises:
        InputError: the folder holds a different sweep, or the families give a model no variants.
    """
    import jax.numpy as jnp

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    folder = RunFolder(out)
    plans = [plan_model(m, config) for m in models]
    manifest = _manifest(plans, config, models, extra_manifest)
    resumed = folder.start(manifest)
    if resumed:
        _check_same_plan(folder, manifest)
    for p in plans:
        folder.save_schur(p.spec.id, p.sf)
    total = sum(len(p.variants) for p in plans)
    n_chunks = sum(len(p.chunks) for p in plans)
    have = sum(folder.has_chunk(i, c) for i, p in enumerate(plans) for c in range(len(p.chunks)))
    if resumed:
        log(f"sweep: resuming {folder.path}: {have}/{n_chunks} chunks already done")
    log(f"sweep: {len(plans)} model(s), {total} variants in {n_chunks} chunks, trials={config.trials}")
    bar = Progress(total, enabled=progress)
    batches: dict[tuple[str, str], Any] = {}  # one shared batch per task identity (name, params)
    for i, p in enumerate(plans):
        task = p.spec.task
        ident = task_identity(task)
        seg_paths: dict[tuple[int, int], str] = {}  # one engine path per family / control segment
        for c, (a, b) in enumerate(p.chunks):
            if folder.has_chunk(i, c):
                bar.update(b - a, computed=False, note=p.spec.id)
                continue
            if ident not in batches:
                batches[ident] = task.sample(batch_key(config.seed, ident[0], task_params(task)), config.trials)
            idx = np.arange(a, b, dtype=np.int64)  # the engine pads short chunks itself (zero edits, no host work)
            seg = p.segment_of(a)
            if seg not in seg_paths:  # chosen from the whole segment, so results don't depend on chunk_size
                seg_paths[seg] = engine.choose_path(p.variants[seg[0] : seg[1]].max_nnz, int(p.sf.n))
            res = engine.evaluate(
                p.spec.model,
                p.sf,
                p.variants[idx],
                batches[ident],
                task=task,
                chunk_size="auto",  # the engine's own cache-sized chunks
                path=seg_paths[seg],
                precision=config.precision,
                dtype=jnp.float64 if config.dtype == "float64" else jnp.float32,
                deviation=config.deviation,
            )
            payload = {"model": p.spec.id, "start": a, "stop": b, "base_loss": float(res.base_loss),
                       "base_score": float(res.base_score)}  # fmt: skip
            for name in engine.METRICS:
                payload[name] = np.asarray(getattr(res, name), dtype=np.float64).tolist()
            folder.write_chunk(i, c, payload)
            bar.update(b - a, note=p.spec.id)
            if on_chunk is not None:
                on_chunk(p.spec.id, c, a, b)
    bar.close()
    rows = build_rows(plans, folder)
    folder.finish(rows, {"models": len(plans), "variants": total, "chunks": n_chunks})
    return load(folder.path)


def _check_same_plan(folder: RunFolder, manifest: dict[str, Any]) -> None:
    """On resume: the variant counts and chunk plan must be those of the run on disk (same code, same config)."""
    old = folder.existing_manifest() or {}
    plan_old = [(m.get("id"), m.get("variants"), m.get("chunks")) for m in old.get("models", [])]
    plan_new = [(m["id"], m["variants"], m["chunks"]) for m in manifest["models"]]
    if plan_old != plan_new:
        raise InputError("sweep", "out", f"{folder.path} holds a different sweep (its variant plan {plan_old[:2]}... "
                         f"differs from {plan_new[:2]}...; was it made by another schurjax version?); choose another "
                         "folder or delete it")  # fmt: skip


def build_rows(plans: Sequence[ModelPlan], folder: RunFolder) -> list[dict[str, Any]]:
    """Assemble the tidy table from the chunk files: one row per (model, variant), controls pointing to rows."""
    rows: list[dict[str, Any]] = []
    offset = 0
    names = (*engine.METRICS, "base_loss", "base_score")
    for i, p in enumerate(plans):
        metrics = {name: np.full(len(p.variants), np.nan) for name in names}
        for c, (a, b) in enumerate(p.chunks):
            chunk = folder.read_chunk(i, c)
            if (chunk["start"], chunk["stop"]) != (a, b):
                raise InputError("sweep", "out", f"{folder.chunk_path(i, c)} covers {chunk['start']}:{chunk['stop']}, "
                                 f"expected {a}:{b}; the folder holds a different sweep")  # fmt: skip
            for name in engine.METRICS:
                metrics[name][a:b] = chunk[name]
            # each chunk carries its own unablated rollout (same compiled program, so deltas cancel rounding)
            metrics["base_loss"][a:b] = chunk["base_loss"]
            metrics["base_score"][a:b] = chunk["base_score"]
        for k, label in enumerate(p.variants.labels):
            row: dict[str, Any] = {"row_id": offset + k, "model": p.spec.id, "task": p.spec.task.name,
                                   "model_seed": p.spec.seed}  # fmt: skip
            flat = flatten_label(label)
            ctrl = label.get("control_of")
            flat["control_of"] = None if ctrl is None or (isinstance(ctrl, int) and ctrl < 0) else offset + int(ctrl)
            flat.setdefault("control_kind", None)
            row.update(flat)
            for name in names:
                row[name] = float(metrics[name][k])
            rows.append(row)
        offset += len(p.variants)
    return rows
