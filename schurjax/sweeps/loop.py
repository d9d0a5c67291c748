"""The sweep loop: plan every model, evaluate the chunks that are not on disk yet, assemble the table.

Every chunk's metrics are written atomically into the run folder (:class:`schurjax.store.results.RunFolder`), so a
crashed or killed sweep resumes where it stopped, and the final table equals that of an uninterrupted run: the
batch, the variants and the chunk boundaries are all fixed by the config and the seed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from schurjax import engine
from schurjax.errors import InputError
from schurjax.models import ModelSpec, model_fingerprint, task_identity, task_params
from schurjax.runtime.distributed import Processes
from schurjax.runtime.environment import device_info, versions
from schurjax.store._json import finite_or_none, to_jsonable
from schurjax.store.results import Run, RunFolder, config_fingerprint, load
from schurjax.store.table import flatten_label
from schurjax.sweeps.budget import check_sizes
from schurjax.sweeps.config import COUNT_COLUMNS, FIXED_POINT_COLUMNS, SweepConfig, batch_key, fixed_point_key
from schurjax.sweeps.plan import ModelPlan, plan_model
from schurjax.sweeps.progress import Progress

__all__ = ["run_sweep", "build_rows"]

ChunkCallback = Callable[[str, int, int, int], object]
"""``on_chunk(model_id, chunk_index, start, stop)``, called after each chunk file is written."""


def _manifest(
    plans: Sequence[ModelPlan], config: SweepConfig, models: Sequence[ModelSpec], extra: dict[str, Any] | None
) -> dict[str, Any]:
    manifest = {
        "schurjax_run": 1,
        "config": config.to_dict(models),
        "versions": versions(),
        "device": device_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seeds": {
            "seed": config.seed,
            "batch_keys": [
                {
                    "task": name,
                    "params": json.loads(params),
                    "key": f"fold_in(fold_in(fold_in(key({config.seed}), 0), crc32({name!r})), crc32({params!r}))",
                }
                for name, params in dict.fromkeys(task_identity(p.spec.task) for p in plans)
            ],
            "control_keys": f"fold_in(fold_in(fold_in(key({config.seed}), 1), crc32(model id)), crc32(kind))",
        },
        "models": [
            {
                "id": p.spec.id,
                "source": p.spec.source,
                "task": p.spec.task.name,
                "task_params": task_params(p.spec.task),
                "seed": p.spec.seed,
                "n_hidden": int(p.sf.n),
                "metadata": finite_or_none(p.spec.metadata),
                "schur": to_jsonable(p.sf.summary_dict()),
                "variants": len(p.variants),
                "ablations": p.n_ablations,
                "chunks": len(p.chunks),
                "family_counts": p.family_counts,
            }
            for p in plans
        ],
    }
    return _with_extra(manifest, extra, "sweep")


def _with_extra(manifest: dict[str, Any], extra: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """``manifest`` plus the caller's ``extra_manifest`` entries, which never replace one schurjax writes."""
    if extra is None:
        return manifest
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise InputError(where, "extra_manifest", f"must be a dict with str keys, got {type(extra).__name__}")
    clash = sorted(set(extra) & set(manifest))
    if clash:
        raise InputError(
            where, "extra_manifest", f"must not replace the entries schurjax writes ({', '.join(clash)}); rename them"
        )
    return {**manifest, **extra}


def run_sweep(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    out: str | os.PathLike,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_chunk: ChunkCallback | None = None,
    extra_manifest: dict[str, Any] | None = None,
    processes: Processes | None = None,
    trials: Any = None,
    devices: Any = "all",
) -> Run:
    """Run (or resume) a sweep of resolved models into a run folder (the engine of :func:`schurjax.sweeps`).

    Args:
        models: the models (see :func:`schurjax.sweeps.resolve_models`).
        config: the sweep config.
        out: the run folder; an existing folder must hold the same sweep (same config), which is then resumed.
        progress: draw the progress line on stderr.
        log: where to write one-line status messages (default: stderr).
        on_chunk: called after every chunk file is written (see :data:`ChunkCallback`).
        extra_manifest: more JSON-able entries for the manifest (e.g. the command line).
        processes: this process's place among several sharing the folder (:mod:`schurjax.runtime.distributed`): each
            evaluates its share of the chunks, process 0 writes the manifest first and the table last.
        trials: a fixed TaskBatch every model is evaluated on (None: each task samples ``config.trials``).
        devices: the local devices each chunk's variants are split across (``engine.evaluate(devices=...)``).

    Returns:
        The finished run (table, manifest, Schur forms).

    Raises:
        InputError: the folder holds a different sweep, or the families give a model no variants.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    batches = SharedBatches(config, trials)
    plans = [plan_model(m, config, batches) for m in models]
    check_sizes(plans, config)
    manifest = _manifest(plans, config, models, extra_manifest)
    names = (*engine.METRICS, *(FIXED_POINT_COLUMNS if config.fixed_points else ()))
    procs = processes or Processes()
    tag = f"sweep[{procs.index}/{procs.count}]" if procs.many else "sweep"
    with RunFolder(out, index=procs.index, count=procs.count, lock=procs.lock) as folder:
        resumed, failed = _start(folder, manifest, plans, procs)
        mine = config_fingerprint(manifest["config"])
        seen = procs.gather(mine, int(failed is not None))
        if failed is not None:
            raise failed
        if seen[0][1]:
            raise InputError("sweep", "out", f"process 0 could not start {folder.path} (see its message)")
        other = [k for k, (sha, _) in enumerate(seen) if sha != seen[0][0]]
        if other:
            raise InputError(
                "sweep",
                "out",
                f"processes {other} were given another sweep than process 0 for "
                f"{folder.path}; every process must run the same command",
            )
        if procs.index != 0:
            folder.join(manifest["config"])
        chunks = [(i, c, a, b) for i, p in enumerate(plans) for c, (a, b) in enumerate(p.chunks)]
        evaluate = _ChunkEvaluator(plans, config, batches, devices)
        ident = [
            {"model": p.spec.id, "weights_sha256": model_fingerprint(p.spec.model), **evaluate.trials_identity(i)}
            for i, p in enumerate(plans)
        ]
        problems = {(i, c): folder.chunk_problem(i, c, a, b, names, ident[i]) for i, c, a, b in chunks}
        for (i, c), why in problems.items():
            if why not in (None, "missing"):
                log(f"{tag}: recomputing {folder.chunk_path(i, c)} ({why})")
        todo = [(i, c, a, b) for j, (i, c, a, b) in enumerate(chunks) if problems[i, c] is not None and procs.mine(j)]
        total = sum(len(p.variants) for p in plans)
        if resumed:
            log(
                f"{tag}: resuming {folder.path}: {sum(x is None for x in problems.values())}/{len(chunks)} chunks "
                "already done"
            )
        log(f"{tag}: {len(plans)} model(s), {total} variants in {len(chunks)} chunks, trials={config.trials}")
        mine = sum(b - a for j, (_, _, a, b) in enumerate(chunks) if procs.mine(j))
        bar = Progress(mine, label=tag, enabled=progress)
        bar.update(mine - sum(b - a for _, _, a, b in todo), computed=False)
        for i, c, a, b in todo:
            folder.write_chunk(i, c, evaluate(i, a, b), names, ident[i])
            bar.update(b - a, note=plans[i].spec.id)
            if on_chunk is not None:
                on_chunk(plans[i].spec.id, c, a, b)
        bar.close()
        procs.barrier("schurjax sweep: every process wrote its chunks")
        if procs.index == 0:
            for _ in range(3):  # the table is assembled from chunks checked once more (a stale writer may strike)
                bad = [
                    (i, c, a, b)
                    for i, c, a, b in chunks
                    if folder.chunk_problem(i, c, a, b, names, ident[i]) is not None
                ]
                for i, c, a, b in bad:
                    why = folder.chunk_problem(i, c, a, b, names, ident[i])
                    log(f"{tag}: recomputing {folder.chunk_path(i, c)} ({why})")
                    folder.write_chunk(i, c, evaluate(i, a, b), names, ident[i])
                if not bad:
                    break
            rows = build_rows(plans, folder, FIXED_POINT_COLUMNS if config.fixed_points else ())
            folder.finish(rows, {"models": len(plans), "variants": total, "chunks": len(chunks)})
        procs.barrier("schurjax sweep: process 0 wrote the table")
    return load(folder.path)


class SharedBatches:
    """The one batch per task identity that every model of that task is evaluated on (common random numbers):
    ``config.trials`` trials from :func:`batch_key`, or the fixed ``trials``; sampled and checked once."""

    def __init__(self, config: SweepConfig, trials: Any = None):
        self.config, self.trials = config, trials
        self.batches: dict[tuple[str, str], Any] = {}

    def __call__(self, spec: ModelSpec) -> Any:
        task, config = spec.task, self.config
        ident = task_identity(task)
        if ident not in self.batches:
            from schurjax.tasks.protocol import check_outputs, checked_sample

            self.batches[ident] = (
                self.trials
                if self.trials is not None
                else checked_sample(task, batch_key(config.seed, ident[0], task_params(task)), config.trials, "sweep")
            )
            check_outputs(task, spec.model, self.batches[ident], "sweep")
        return self.batches[ident]


class _ChunkEvaluator:
    """Evaluates chunk ``[a, b)`` of model ``i``: one shared batch per task identity, one engine path per segment."""

    def __init__(self, plans: Sequence[ModelPlan], config: SweepConfig, batches: SharedBatches, devices: Any = "all"):
        self.plans, self.config, self.shared, self.devices = plans, config, batches, devices
        self.paths: dict[tuple[int, int, int], str] = {}

    def batch(self, i: int) -> Any:
        """The shared batch of model ``i``'s task (sampled and checked once per task identity)."""
        return self.shared(self.plans[i].spec)

    def trials_identity(self, i: int) -> dict[str, str]:
        """For a task whose trials come from code outside schurjax (your task, NeuroGym), the SHA-256 of the
        trials themselves: a resumed sweep never mixes chunks of trials from edited task code or an upgraded
        NeuroGym. Empty for the built-in tasks (their code is the schurjax version in the config) and trial files
        (their SHA-256 is in the config)."""
        import hashlib

        from schurjax.tasks.ngym import NeuroGymTask

        task = self.plans[i].spec.task
        if self.shared.trials is not None or (
            type(task).__module__.startswith("schurjax.") and not isinstance(task, NeuroGymTask)
        ):
            return {}
        b = self.batch(i)
        h = hashlib.sha256()
        for a in (b.inputs, b.targets, b.mask, *(() if b.valid is None else (b.valid,))):
            a = np.ascontiguousarray(np.asarray(a))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        return {"trials_sha256": h.hexdigest()}

    def __call__(self, i: int, a: int, b: int) -> dict[str, Any]:
        p, config = self.plans[i], self.config
        task = p.spec.task
        batch = self.batch(i)
        seg = p.segment_of(a)
        if (i, *seg) not in self.paths:  # chosen from the whole segment, so results don't depend on chunk_size
            self.paths[i, *seg] = engine.choose_path(p.variants[seg[0] : seg[1]].max_nnz, int(p.sf.n))
        res = engine.evaluate(
            p.spec.model,
            p.sf,
            p.variants[np.arange(a, b, dtype=np.int64)],  # the engine pads short chunks itself (zero edits)
            batch,
            task=task,
            options=config.engine_options(path=self.paths[i, *seg], devices=self.devices),
        )
        payload = {
            "model": p.spec.id,
            "start": a,
            "stop": b,
            "base_loss": float(res.base_loss),
            "base_score": float(res.base_score),
        }
        for name in engine.METRICS:
            payload[name] = np.asarray(getattr(res, name), dtype=np.float64).tolist()
        if config.fixed_points:
            from schurjax.dynamics import fixed_point_columns

            cols = fixed_point_columns(
                p.spec.model,
                p.sf,
                p.variants[np.arange(a, b, dtype=np.int64)],
                key=fixed_point_key(config.seed, p.spec.id),
                batch=batch,
            )
            for name in FIXED_POINT_COLUMNS:
                payload[name] = np.asarray(cols[name], dtype=np.float64).tolist()
        return payload


def _start(
    folder: RunFolder, manifest: dict[str, Any], plans: Sequence[ModelPlan], procs: Processes
) -> tuple[bool, InputError | None]:
    """Process 0 starts (or resumes) the folder and writes the Schur forms; returns (resumed, its error or None)."""
    if procs.index != 0:
        return False, None
    try:
        resumed = folder.start(manifest)
        if resumed:
            _check_same_plan(folder, manifest)
        for p in plans:
            folder.save_schur(p.spec.id, p.sf)
    except InputError as e:
        if not procs.many:
            raise
        return False, e
    return resumed, None


def _check_same_plan(folder: RunFolder, manifest: dict[str, Any]) -> None:
    """On resume: the variant counts and chunk plan must be those of the run on disk (same code, same config)."""
    old = folder.existing_manifest() or {}
    plan_old = [(m.get("id"), m.get("variants"), m.get("chunks")) for m in old.get("models", [])]
    plan_new = [(m["id"], m["variants"], m["chunks"]) for m in manifest["models"]]
    if plan_old != plan_new:
        raise InputError(
            "sweep",
            "out",
            f"{folder.path} holds a different sweep (its variant plan {plan_old[:2]}... "
            f"differs from {plan_new[:2]}...; was it made by another schurjax version?); choose another "
            "folder or delete it",
        )


def build_rows(plans: Sequence[ModelPlan], folder: RunFolder, extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Assemble the tidy table from the chunk files: one row per (model, variant), controls pointing to rows.

    ``extra``: more per-variant columns the chunks hold (e.g. the fixed-point columns), after the metrics.
    """
    rows: list[dict[str, Any]] = []
    offset = 0
    per_variant = (*engine.METRICS, *extra)
    names = (*per_variant, "base_loss", "base_score")
    for i, p in enumerate(plans):
        metrics = {name: np.full(len(p.variants), np.nan) for name in names}
        for c, (a, b) in enumerate(p.chunks):
            chunk = folder.read_chunk(i, c, per_variant)
            for name in per_variant:
                metrics[name][a:b] = chunk[name]
            # each chunk carries its own unablated rollout (same compiled program, so deltas cancel rounding)
            metrics["base_loss"][a:b] = chunk["base_loss"]
            metrics["base_score"][a:b] = chunk["base_score"]
        for k, label in enumerate(p.variants.labels):
            row: dict[str, Any] = {
                "row_id": offset + k,
                "model": p.spec.id,
                "task": p.spec.task.name,
                "model_seed": p.spec.seed,
            }
            flat = flatten_label(label)
            ctrl = label.get("control_of")
            flat["control_of"] = None if ctrl is None or (isinstance(ctrl, int) and ctrl < 0) else offset + int(ctrl)
            flat.setdefault("control_kind", None)
            row.update(flat)
            for name in names:
                v = float(metrics[name][k])
                row[name] = int(v) if name in COUNT_COLUMNS and math.isfinite(v) else v
            rows.append(row)
        offset += len(p.variants)
    return rows
