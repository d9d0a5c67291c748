"""Resumable sweeps: ablate the Schur couplings of trained models, with random controls, into a run folder.

``sj.sweep(models, out=..., ...)`` is the entry point for scripts and notebooks; ``schurjax sweep`` calls it.

- :mod:`~schurjax.sweeps.config`: :class:`SweepConfig`, the family and control names, the batch and control keys;
- :mod:`~schurjax.sweeps.plan`: each model's Schur form, variants and chunk boundaries;
- :mod:`~schurjax.sweeps.loop`: evaluate the chunks not yet on disk, assemble the table;
- :mod:`~schurjax.sweeps.budget`: the largest trial count and chunk size that fit the device's memory;
- :mod:`~schurjax.sweeps.progress`: the progress line;
- :mod:`~schurjax.sweeps.summary`: summary statistics of a sweep table (text summary and HTML report);
- :mod:`~schurjax.sweeps.figures`: the figures of a sweep (importance maps, loss vs norm, families, profiles);
- :mod:`~schurjax.sweeps.report`: the self-contained ``report.html`` of a run.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from schurjax.engine.options import EngineOptions
from schurjax.errors import InputError
from schurjax.models import ModelSpec as ModelSpec
from schurjax.models import resolve_models as resolve_models
from schurjax.runtime.distributed import initialize
from schurjax.sweeps.config import CONTROL_KINDS as CONTROL_KINDS
from schurjax.sweeps.config import SWEEP_FAMILIES as SWEEP_FAMILIES
from schurjax.sweeps.config import SweepConfig as SweepConfig
from schurjax.sweeps.config import TrialsFile
from schurjax.sweeps.loop import ChunkCallback
from schurjax.sweeps.loop import run_sweep as run_sweep
from schurjax.sweeps.plan import plan_chunks as plan_chunks

__all__ = [
    "sweep",
    "SweepConfig",
    "ModelSpec",
    "resolve_models",
    "run_sweep",
    "plan_chunks",
    "SWEEP_FAMILIES",
    "CONTROL_KINDS",
]


def sweep(
    models: Any,
    *,
    out: str | os.PathLike,
    families: str | Sequence[str] = ("single", "block", "band", "all_nonnormal"),
    controls: int = 1,
    control_kinds: str | Sequence[str] = ("matched_norm",),
    control_max: int | None = None,
    trials: int = 256,
    order: str | None = None,
    precision: str = "highest",
    dtype: str = "float32",
    chunk_size: int = 512,
    seed: int = 0,
    deviation: bool = True,
    task: str | None = None,
    task_params: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_chunk: ChunkCallback | None = None,
    extra_manifest: dict[str, Any] | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout: float | None = None,
    trials_file: str | os.PathLike | None = None,
    fixed_points: bool = False,
    devices: Any = "all",
) -> Any:
    """Run (or resume) a sweep into the run folder ``out`` and return the finished run.

    Every model's recurrent matrix is written in ordered real Schur coordinates; the families' ablations and their
    random controls are evaluated chunk by chunk on one shared task batch per task (common random numbers), and
    each chunk is saved atomically, so calling again with the same arguments resumes an interrupted sweep and gives
    the same table as an uninterrupted one.

    Args:
        models: ``"zoo:flipflop/0"``, ``"zoo:flipflop"`` (every seed), a saved ``.eqx`` path, a ``(TanhRNN, Task)``
            pair, or a list of these (see :func:`resolve_models`).
        out: the run folder (created; an existing one must hold the same sweep).
        families: names from :data:`SWEEP_FAMILIES`, a list or a comma string.
        controls: random controls per Schur ablation and control kind (0: none).
        control_kinds: names from :data:`CONTROL_KINDS`.
        control_max: at most this many ablations per family and model get controls (None: all).
        trials: trials in the shared batch of each task.
        order: Schur block order: ``"modulus"``, ``"real"``, ``"angle"``, ``"decay"`` (per-step decay with each
            model's alpha) or ``"auto"``; None (default): ``"modulus"`` when no model is leaky, else ``"auto"``
            (``"decay"`` for leaky models, ``"modulus"`` for the others). The manifest records it per model.
        precision: matmul precision of the rollouts (``engine.PRECISIONS``).
        dtype: ``"float32"`` or ``"float64"`` (verification).
        chunk_size: variants per chunk file.
        seed: root seed of the batches and controls, an int in [0, 2**63) (each seed its own key).
        deviation: carry deviations from the float64 base trajectory (default True; see
            :class:`schurjax.engine.EngineOptions`).
        task: evaluate every model named by a string on this task instead of the one in its metadata.
        task_params: parameters of ``task`` (NeuroGym env arguments included, e.g. ``{"dt": 20, "timing": {"delay":
            200}}``); recorded in the manifest with the task.
        progress: draw a progress line on stderr.
        log: where one-line status messages go (default: stderr).
        on_chunk: ``on_chunk(model_id, chunk_index, start, stop)`` after each chunk file is written.
        extra_manifest: more JSON-able entries for ``manifest.json`` (the CLI records its command line).
        trials_file: an ``.npz`` of fixed trials (``inputs``, ``targets``, optional ``mask``, ``valid``; see
            ``TaskBatch.from_npz``) that every model is evaluated on instead of ``trials`` sampled ones. Its
            SHA-256 goes into the config; each model's task must fit it (``task`` can name one that does).
        devices: ``"all"`` (default: every local device), an int or a list of ``jax.Device``: each chunk's
            variants are split across them; the table is the same as on one device.
        fixed_points: also find each variant's fixed points at zero input (``sj.dynamics.fixed_points``) and
            add their columns to the table: ``n_stable``, ``lost``, ``gained``, ``max_displacement``, ...
            (``config.FIXED_POINT_COLUMNS``); about 10 variants/s at n = 64 on a CPU core.
        coordinator, num_processes, process_id: run as one of several processes sharing ``out`` (the arguments
            of ``jax.distributed.initialize``; omit them where SLURM or Open MPI sets them). Each process
            evaluates its share of the chunks; process 0 assembles the table. Every process gets the same
            arguments otherwise, and returns the same run.
        timeout: seconds a process waits for the others to join (default 120; ``distributed.DEFAULT_TIMEOUT``).

    Returns:
        :class:`schurjax.store.results.Run`: ``run.table`` (pandas DataFrame), ``run.manifest``, ``run.schurs``.

    Raises:
        InputError: bad arguments (one line naming the argument), or ``out`` holds a different sweep.

    Example::

        run = sj.sweep(["zoo:flipflop/0"], out="runs/ff", trials=64)
        run.table.groupby("family").rel_delta_loss.median()
    """
    fixed = None
    if trials_file is not None:  # the declared shapes first: nothing is loaded before they are bounded
        trials = TrialsFile.declared(trials_file)[0]
        digest = TrialsFile.digest(trials_file)
    config = SweepConfig(
        families=families,
        controls=controls,
        control_kinds=control_kinds,
        control_max=control_max,
        trials=trials,
        order="modulus" if order is None else order,
        precision=precision,
        dtype=dtype,
        chunk_size=chunk_size,
        seed=seed,
        deviation=deviation,
        trials_file_sha256=None if trials_file is None else digest,
        fixed_points=fixed_points,
    )
    processes = initialize(coordinator, num_processes, process_id, timeout=timeout, out=out)
    try:
        try:
            EngineOptions(devices=devices).mesh()
        except InputError as e:
            raise InputError("sweep", "devices", e.detail) from None
        fallback = None if trials_file is None else TrialsFile.task(trials_file)
        specs = resolve_models(models, task=task, task_params=task_params, fallback_task=fallback)
        for spec in specs:
            if fallback is not None and spec.task is fallback:
                (log or (lambda s: print(s, file=sys.stderr, flush=True)))(
                    f"sweep: {spec.source} names no task: evaluated on the trials of {trials_file} (loss from its "
                    "targets and mask; no task, so the score columns stay empty)"
                )
        if order is None:  # "modulus" for networks without leak (as every earlier sweep), "auto" once one is leaky
            leaky = any(float(getattr(s.model, "alpha", 1.0)) != 1.0 for s in specs)
            config = dataclasses.replace(config, order="auto" if leaky else "modulus")
        if trials_file is not None:
            TrialsFile.check_budget(trials_file, specs)
            fixed = TrialsFile.read(trials_file)
            if fixed.sha256 != digest:
                raise InputError("sweep", "trials_file", f"{trials_file} changed while the sweep read it; rerun")
            for spec in specs:
                fixed.check_fits(spec)
            extra_manifest = {
                **(extra_manifest or {}),
                "trials_file": {"path": fixed.path, "sha256": fixed.sha256, "trials": trials},
            }
        return run_sweep(
            specs,
            config,
            out,
            progress=progress,
            log=log,
            on_chunk=on_chunk,
            extra_manifest=extra_manifest,
            processes=processes,
            trials=fixed and fixed.batch,
            devices=devices,
        )
    finally:
        processes.release()  # the folder's lock (the RunFolder released it already when it ran)
