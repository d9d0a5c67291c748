"""``sj.study(...)``: run (or resume) the whole study into one folder, then write its tables, report and figure.

Layout of a study folder (a run folder, :class:`schurjax.store.results.RunFolder`, so it is checked the same way)::

    <study>/manifest.json        config (settings, models and their weights' SHA-256), versions, device, part names
    <study>/schur/<model>.npz    each model's Schur form
    <study>/chunks/<m>-<p>.json  one file per (model m, part p), written atomically with the config fingerprint and a
                                 checksum; a rerun recomputes exactly the parts that are missing or damaged
    <study>/compressed/<model>-<criterion>.eqx (+ .json, .pt)   the compressed models whose held-out bound holds
    <study>/compressed/<model>-finetuned-loss.eqx (+ .json, .pt)  pruned and fine-tuned (``finetune`` part)
    <study>/tables/*.csv         keep shares, all-nonnormal, controls, compression, restriction, replay, profiles
    <study>/report.md, figure.png, timings.json
    <study>/table.csv, COMPLETE  one summary row per model; COMPLETE (written last) records its checksum

Parts per model, in order: ``selection``, ``heldout``, ``controls``, ``compression-<criterion>``, ``restriction``,
for copy networks ``replay``, then ``fragility`` (worst-case edits, robustness radius) and ``coordinates``
(the headlines under other Schur bases), and for the first ``finetune`` models of each task and size ``finetune``
(:func:`schurjax.compress` with its baselines). Compression uses two more batches from their own keys: a
``validation`` batch (``trials``) and the ``decision`` batch (``decision_size`` trials) its exports rest on.
The report is a function of the parts and the config only (timings go to ``timings.json``), so an
interrupted and resumed study writes the same report as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.errors import InputError
from schurjax.store import _safe_io
from schurjax.store._json import canonical, dumps, finite_or_none, loads
from schurjax.studies.exports import COMPRESS_CRITERIA, check_exports
from schurjax.studies.parts import REGISTRY, PartInput, applicable
from schurjax.studies.protocol import QUICK, StudyConfig, study_key
from schurjax.studies.result import Context, Study, decode

__all__ = ["study", "PARTS", "COMPRESS_CRITERIA", "STUDY_SCHEMA", "scratch_folder", "SMALL"]

STUDY_SCHEMA = 3
"""Version of what a study's parts hold; part of the config compared on resume (2: the engine's deviation rollout;
3: several control draws, rank-matched and Schur-basis controls, BCa intervals, one-sided loss criterion;
compression validated and decided on a held-out batch by a bound, prune-and-fine-tune)."""
PARTS = tuple(REGISTRY)
"""The built-in parts of each model, in the order they run (``replay`` only for copy networks; ``finetune`` only
for the first ``finetune`` models of each task and size); parts registered later run after them
(:mod:`schurjax.studies.parts`)."""

SMALL: dict[str, Any] = {
    "tasks": ("copy",),
    "seeds": (0, 1),
    "trials": 16,
    "bootstrap": 50,
    "control_max": 8,
    "greedy_candidates": 8,
    "greedy_passes": 1,
    "restriction_max": 8,
    "null_draws": 50,
    "worst_starts": 2,
    "worst_steps": 5,
    "radius_iters": 2,
    "rotations": 1,
    "finetune": 0,
    "quick": True,
}
"""A very small study (copy networks, whose trials are the shortest, two seeds, 16 trials) that runs in well under a
minute: for executing the notebooks in the test suite (``SCHURJAX_QUICK=1``). Its figures are too noisy to read;
``quick=True`` and the full study are the ones to read."""

PartCallback = Callable[[str, str], object]
"""``on_part(model_id, part)``, called after each part file is written."""


def scratch_folder(name: str) -> Path:
    """A folder under the system's temp dir for a throwaway study, named by ``name`` and a fingerprint of the code
    that computes studies (so that a folder left by other code is never resumed).

    Example::

        st = sj.study(out=sj.studies.scratch_folder("notebooks"), **sj.studies.SMALL)
    """
    import hashlib
    import tempfile

    import schurjax

    h = hashlib.sha256(f"{schurjax.__version__}/{STUDY_SCHEMA}".encode())
    root = Path(schurjax.__file__).parent
    for sub in ("studies", "engine", "ablate"):
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.read_bytes())
    return Path(tempfile.gettempdir()) / f"schurjax-{name}-{h.hexdigest()[:12]}"


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _resolve(config: StudyConfig, models: Sequence[Any] | None) -> tuple[StudyConfig, list[Any]]:
    """The model specs of the study (zoo models by task, seed and size, or the given models), ids with the size."""
    from schurjax import zoo
    from schurjax.sweeps import resolve_models

    if models is not None:
        specs = resolve_models(list(models))
        out = []
        for s in specs:
            n = int(s.model.n_hidden)
            out.append(dataclasses.replace(s, id=s.id if s.id.endswith(f"-n{n}") else f"{s.id}-n{n}"))
        return config, out
    if config.alpha not in zoo.alphas():
        have_a = ", ".join(f"{a:g}" for a in zoo.alphas())
        raise InputError("study", "alpha", f"the zoo has no models with alpha={config.alpha:g}; it has {have_a}")
    entries = zoo.entries(alpha=config.alpha)
    have = {(e.task, int(e.seed), int(getattr(e, "n_hidden", 64))) for e in entries}
    sizes = config.sizes or tuple(sorted({n for _, _, n in have}))
    config = dataclasses.replace(config, sizes=tuple(sizes))
    out = []
    for task in config.tasks:
        if not any(t == task for t, _, _ in have):
            raise InputError(
                "study", "tasks", f"the zoo has no {task!r} models; it has {', '.join(sorted({t for t, _, _ in have}))}"
            )
        for n in config.sizes:
            if not any(t == task and m == n for t, _, m in have):
                got = sorted({m for t, _, m in have if t == task})
                raise InputError(
                    "study",
                    "sizes",
                    f"the zoo has no {task!r} models with n_hidden={n}; it has {', '.join(map(str, got))}",
                )
            for seed in config.seeds:
                if (task, seed, n) not in have:
                    got = sorted(s for t, s, m in have if t == task and m == n)
                    raise InputError(
                        "study",
                        "seeds",
                        f"the zoo has no {task!r} model of seed {seed} at n={n}; "
                        f"seeds there: {', '.join(map(str, got))}",
                    )
                spec = resolve_models([zoo.format_spec(task, seed, n, config.alpha)])[0]
                leak = "" if config.alpha == 1.0 else f"-a{config.alpha:g}"
                out.append(dataclasses.replace(spec, id=f"{task}-{seed}-n{n}{leak}"))
    return config, out


def _finetuned(config: StudyConfig, specs: Sequence[Any], zoo_models: bool) -> set[str]:
    """Ids of the models that get the ``finetune`` part: the first ``finetune`` of each task and size."""
    k = config.finetune if config.finetune is not None else (1 if zoo_models else 0)
    seen: dict[tuple[str, int], int] = {}
    out = set()
    for s in specs:
        g = (s.task.name, int(s.model.n_hidden))
        seen[g] = seen.get(g, 0) + 1
        if seen[g] <= k:
            out.add(s.id)
    return out


def study(
    *,
    out: str | os.PathLike = "runs/study",
    tasks: str | Sequence[str] | None = None,
    seeds: str | Sequence[int] | None = None,
    sizes: str | Sequence[int] | None = None,
    alpha: float | None = None,
    tau: float | None = None,
    eps: float | None = None,
    trials: int | None = None,
    bootstrap: int | None = None,
    seed: int | None = None,
    quick: bool = False,
    models: Sequence[Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_part: PartCallback | None = None,
    extra_manifest: dict[str, Any] | None = None,
    **settings: Any,
) -> Study:
    """Run (or resume) the study: every model's parts, then the tables, ``report.md`` and ``figure.png``.

    Args:
        out: the study folder (created; an existing one must hold the same study, which is then resumed).
        tasks, seeds, sizes: zoo models (default: all four tasks, seeds 0-3, every size the zoo ships).
        alpha: the zoo family (1: the paper's tanh RNNs, default; 0.2: the leaky tanh rate networks).
        tau: loss criterion ``|Δloss| / loss <= tau`` (default 0.05).
        eps: score criterion, score drop ``<= eps`` (default 0.01).
        trials: trials in each of the selection and held-out batches (default 256).
        bootstrap: resamples of the held-out trials (default 1000).
        seed: root seed (default 0), an int in [0, 2**63) (each seed its own key).
        quick: the small preset :data:`schurjax.studies.protocol.QUICK` for the settings not given.
        models: instead of zoo models: model specs as :func:`schurjax.sweep` takes them (paths, ``(TanhRNN, Task)``
            pairs, ...).
        progress: log each part as it finishes.
        log: where status lines go (default: stderr).
        on_part: ``on_part(model_id, part)`` after each part file is written.
        extra_manifest: more JSON-able manifest entries (the CLI records its command line).
        **settings: further :class:`StudyConfig` fields (``control_max``, ``greedy_candidates``, ...).

    Returns:
        :class:`Study`.

    Raises:
        InputError: a bad setting (one line naming it), a model the zoo does not have, or a folder that holds
            another study.

    Example::

        st = sj.study(out="runs/study", quick=True)
        print(st.report.read_text())
    """
    given = {
        "tasks": tasks,
        "seeds": seeds,
        "sizes": sizes,
        "alpha": alpha,
        "tau": tau,
        "eps": eps,
        "trials": trials,
        "bootstrap": bootstrap,
        "seed": seed,
        **settings,
    }
    known = {f.name for f in dataclasses.fields(StudyConfig)} - {"quick"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InputError("study", unknown[0], f"unknown setting; expected some of {', '.join(sorted(known))}")
    kw = {k: v for k, v in given.items() if v is not None}
    if quick:
        kw = {**{k: v for k, v in QUICK.items() if k != "sizes" or models is None}, **kw}
    config = StudyConfig(quick=bool(quick), **kw)
    config, specs = _resolve(config, models)
    log = log or _log_default
    return _run(
        config,
        specs,
        Path(out),
        log=log if progress else (lambda s: None),
        on_part=on_part,
        extra_manifest=extra_manifest,
        zoo_models=models is None,
    )


def _manifest(config: StudyConfig, specs: Sequence[Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    import schurjax
    from schurjax.models import model_fingerprint, task_params
    from schurjax.runtime.environment import device_info, versions

    cfg = config.to_dict()
    cfg.update(
        schurjax_version=schurjax.__version__,
        study_schema=STUDY_SCHEMA,
        models=[
            {
                "id": s.id,
                "task": s.task.name,
                "task_params": task_params(s.task),
                "weights_sha256": model_fingerprint(s.model),
            }
            for s in specs
        ],
    )
    from schurjax.sweeps.loop import _with_extra

    manifest = {
        "schurjax_study": STUDY_SCHEMA,
        "config": cfg,
        "versions": versions(),
        "device": device_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parts": list(REGISTRY),
        "models": [_model_record(s) for s in specs],
    }
    return _with_extra(manifest, extra, "study")


def _model_record(spec: Any) -> dict[str, Any]:
    from schurjax.models import model_fingerprint, task_params

    return {
        "id": spec.id,
        "source": spec.source,
        "task": spec.task.name,
        "task_params": task_params(spec.task),
        "seed": spec.seed,
        "n_hidden": int(spec.model.n_hidden),
        "weights_sha256": model_fingerprint(spec.model),
    }


def _run(
    config: StudyConfig,
    specs: list[Any],
    out: Path,
    *,
    log: Callable[[str], None],
    on_part: PartCallback | None,
    extra_manifest: dict[str, Any] | None,
    zoo_models: bool = False,
) -> Study:
    from schurjax.models import model_fingerprint
    from schurjax.schur import order_for, ordered_schur
    from schurjax.store.results import RunFolder
    from schurjax.studies import figures, report

    manifest = _manifest(config, specs, extra_manifest)
    ctx = Context(config)
    parts: dict[str, dict[str, Any]] = {}
    sfs: dict[str, Any] = {}
    timings_path = out / "timings.json"
    with RunFolder(out, where="study", kind="study") as folder:
        resumed = folder.start(manifest)
        if resumed and (folder.existing_manifest() or {}).get("parts") != manifest["parts"]:
            folder.update_manifest({"parts": manifest["parts"]})  # a part registered since (records keep their slots)
        timings = _read_timings(timings_path) if resumed else {}
        tuned = _finetuned(config, specs, zoo_models)
        todo_total = sum(len(applicable(s, s.id in tuned)) for s in specs)
        slots = {name: c for c, name in enumerate(REGISTRY)}  # a part's record slot: its place in the registry
        done_n = 0
        for i, spec in enumerate(specs):
            sf = ordered_schur(np.asarray(spec.model.W_rec, np.float64), order=order_for(spec.model))
            sfs[spec.id] = sf
            folder.save_schur(spec.id, sf)
            parts[spec.id] = {}
            ident = {"model": spec.id, "weights_sha256": model_fingerprint(spec.model)}
            for name in applicable(spec, spec.id in tuned):
                c = slots[name]
                done_n += 1
                why = folder.record_problem(i, c, {**ident, "part": name})
                if why not in (None, "missing"):
                    log(f"study: recomputing {folder.chunk_path(i, c)} ({why})")
                if why is None:
                    parts[spec.id][name] = decode(folder.read_record(i, c))
                    continue
                t0 = time.perf_counter()
                inp = PartInput(spec, sf, ctx, study_key(config.seed, name, spec.id), out, folder.check)
                result = REGISTRY[name].compute(inp, parts[spec.id])
                folder.write_record(i, c, finite_or_none(result), {**ident, "part": name})
                # exactly what a resumed run reads back (canonical JSON: sorted keys, non-finite numbers as NaN)
                parts[spec.id][name] = decode(json.loads(canonical(finite_or_none(result))))
                dt = time.perf_counter() - t0
                timings[f"{spec.id}/{name}"] = round(dt, 3)
                _safe_io.write_bytes(out, "timings.json", (dumps(timings, indent=1) + "\n").encode(), where="study")
                log(f"study: [{done_n}/{todo_total}] {spec.id} {name} ({dt:.1f} s)")
                if on_part is not None:
                    on_part(spec.id, name)
        (out / "COMPLETE").unlink(missing_ok=True)  # what COMPLETE vouches for is rewritten below
        folder.check()  # a stale writer (its folder deleted or replaced) stops before it writes
        check_exports(out, specs, sfs, parts, config, log)
        models = [_model_record(s) for s in specs]
        prof = report.profile_comparisons(config, models, parts)
        tables = report.tables(config, models, parts, prof)
        _safe_io.mkdirs(out, "tables", where="study")  # a symlinked tables/ is refused, never followed
        folder.check()
        for name, df in tables.items():
            file = _safe_io.check_name("study", None, f"{name}.csv")
            _safe_io.write_bytes(out, ("tables", file), df.to_csv(index=False).encode(), where="study")
        for stale in (out / "tables").glob("*.csv"):  # a table this study did not write is not one of its files
            if stale.stem not in tables:
                stale.unlink()
        figures.panel(config, models, parts, prof, out / "figure.png", tables=tables)
        text = report.markdown(config, models, parts, prof, tables)
        _safe_io.write_bytes(out, "report.md", text.encode(), where="study")
        rows = report.summary_rows(config, models, parts)
        folder.finish(rows, {"models": len(specs), "parts": todo_total, "files": _checksums(out, specs, tables)})
    from schurjax.store.table import read_table

    return Study(out, config, models, parts, read_table(out / "table.csv"), tables, prof)


def _checksums(out: Path, specs: Sequence[Any], tables: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of every file the study's COMPLETE vouches for: tables, figure, report and compressed models."""
    import hashlib

    files = [f"tables/{name}.csv" for name in tables] + ["figure.png", "report.md"]
    for spec in specs:
        for criterion in COMPRESS_CRITERIA:
            for ext in (".eqx", ".json"):
                if (out / "compressed" / f"{spec.id}-{criterion}{ext}").is_file():
                    files.append(f"compressed/{spec.id}-{criterion}{ext}")
    return {f: hashlib.sha256(_safe_io.read_bytes(out, f, where="study")).hexdigest() for f in sorted(files)}


def _read_timings(path: Path) -> dict[str, float]:
    try:
        data = loads(_safe_io.read_bytes(path.parent, path.name, where="study"))  # no FIFO, no link
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}
