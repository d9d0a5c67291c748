"""``sj.study(...)``: run (or resume) the whole study into one folder, then write its tables, report and figure.

Layout of a study folder (a run folder, :class:`schurjax.results.RunFolder`, so it is checked the same way)::

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

from schurjax import _safe_io, ablate
from schurjax._json import canonical, dumps, finite_or_none, loads
from schurjax.errors import InputError
from schurjax.studies import compression, coordinates, fragility, keep, replay, restriction, versus
from schurjax.studies.protocol import QUICK, StudyConfig, keeps_loss, study_key
from schurjax.studies.result import Context, Study, decode

__all__ = ["study", "PARTS", "COMPRESS_CRITERIA", "STUDY_SCHEMA", "scratch_folder", "SMALL"]

STUDY_SCHEMA = 3
"""Version of what a study's parts hold; part of the config compared on resume (2: the engine's deviation rollout;
3: several control draws, rank-matched and Schur-basis controls, BCa intervals, one-sided loss criterion;
compression validated and decided on a held-out batch by a bound, prune-and-fine-tune)."""
COMPRESS_CRITERIA = ("loss", "score")
"""The compression search runs once per criterion (loss within tau; score drop within eps)."""
PARTS = (
    "selection",
    "heldout",
    "controls",
    "compression-loss",
    "compression-score",
    "restriction",
    "replay",
    "fragility",
    "coordinates",
    "finetune",
)
"""The parts of each model, in the order they run (``replay`` only for copy networks; ``finetune`` only for the
first ``finetune`` models of each task and size)."""

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


def _parts_of(spec: Any, finetune: bool = False) -> list[str]:
    return [p for p in PARTS if (p != "replay" or spec.task.name == "copy") and (p != "finetune" or finetune)]


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
    from schurjax.environment import device_info, versions
    from schurjax.sweeps.config import model_fingerprint, task_params

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
        "parts": list(PARTS),
        "models": [_model_record(s) for s in specs],
    }
    return _with_extra(manifest, extra, "study")


def _model_record(spec: Any) -> dict[str, Any]:
    from schurjax.sweeps.config import model_fingerprint, task_params

    return {
        "id": spec.id,
        "source": spec.source,
        "task": spec.task.name,
        "task_params": task_params(spec.task),
        "seed": spec.seed,
        "n_hidden": int(spec.model.n_hidden),
        "weights_sha256": model_fingerprint(spec.model),
    }


def _compute(
    name: str,
    spec: Any,
    sf: Any,
    ctx: Context,
    done: dict[str, Any],
    out: Path,
    check: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Compute one part of one model (``done`` holds the model's finished parts; ``check()`` raises when this
    writer no longer holds the folder, and runs before anything is written)."""
    cfg, task, model = ctx.config, spec.task, spec.model
    sel, held = ctx.batch("selection", task), ctx.batch("heldout", task)
    key = study_key(cfg.seed, name, spec.id)
    if name == "selection":
        return keep.selection_part(model, sf, task, sel)
    if name == "heldout":
        return keep.heldout_part(
            model,
            sf,
            task,
            held,
            key,
            done["selection"],
            tau=cfg.tau,
            eps=cfg.eps,
            bootstrap=cfg.bootstrap,
            sides=cfg.loss_sides,
        )
    if name == "controls":
        order = keep.single_entries(ablate.single_couplings(sf))[keep.importance_order(done["selection"])]
        return versus.controls_part(
            model,
            sf,
            task,
            held,
            key,
            kinds=cfg.control_kinds,
            control_max=cfg.control_max,
            bootstrap=cfg.bootstrap,
            control_draws=cfg.control_draws,
            order=order,
        )
    if name.startswith("compression-"):
        criterion = name.split("-", 1)[1]
        tol = cfg.tau if criterion == "loss" else cfg.eps
        order = keep.single_entries(ablate.single_couplings(sf))[keep.importance_order(done["selection"])]
        val, dec = _batch(ctx, "validation", task, cfg.trials), _batch(ctx, "decision", task, cfg.decision_size)
        found = compression.select(
            model,
            sf,
            task,
            sel,
            val,
            order,
            criterion=criterion,
            tol=tol,
            margin=cfg.margin,
            candidates=cfg.greedy_candidates,
            passes=cfg.greedy_passes,
        )
        found["found"] = found["removed"]
        rank = {(int(i), int(j)): r for r, (i, j) in enumerate(order)}
        found_arr = np.asarray(found["removed"], np.int64).reshape(-1, 2)
        k_dec = study_key(cfg.seed, "decision-bootstrap", spec.id, criterion)
        found["decision"] = compression.decide(
            model,
            sf,
            task,
            dec,
            k_dec,
            found_arr,
            np.array([rank[(int(i), int(j))] for i, j in found_arr], np.int64),
            criterion=criterion,
            tol=tol,
            bootstrap=cfg.bootstrap,
        )
        found["decision"]["keys"] = _decision_keys(cfg, task, spec.id, criterion)
        found["removed"] = found["decision"]["accepted"]
        found["heldout"] = compression.verify(
            model, sf, task, dec, key, np.asarray(found["removed"]), bootstrap=cfg.bootstrap
        )
        found["heldout"].update(_bound_figures(found["decision"], found["heldout"]))
        found["exported"] = bool(found["decision"]["holds"])
        if found["exported"]:
            check()  # a stale writer (its folder deleted and restarted) stops before it exports
            _export(out, spec, sf, criterion, found, cfg)
        return found
    if name == "finetune":
        acc = done.get("compression-loss", {}).get("removed")
        return _finetune_part(spec, ctx, out, key, np.asarray(acc, np.int64).reshape(-1, 2) if acc else None)
    if name == "restriction":
        keepers = np.nonzero(keeps_loss(done["heldout"]["single"]["rel"], cfg.tau, cfg.loss_sides))[0]
        comp = done.get("compression-loss", {}).get("removed")
        return restriction.restriction_part(
            model,
            sf,
            task,
            held,
            key,
            keepers,
            None if comp is None else np.asarray(comp),
            restriction_max=cfg.restriction_max,
            tau=cfg.tau,
            sides=cfg.loss_sides,
        )
    if name == "replay":
        return replay.replay_part(
            model,
            sf,
            task,
            sel,
            held,
            done["selection"],
            done["heldout"],
            key,
            replay_r2=cfg.replay_r2,
            draws=cfg.null_draws,
        )
    if name == "fragility":
        return fragility.fragility_part(
            model,
            sf,
            task,
            sel,
            held,
            key,
            done["heldout"],
            tau=cfg.tau,
            sides=cfg.loss_sides,
            starts=cfg.worst_starts,
            steps=cfg.worst_steps,
            iters=cfg.radius_iters,
        )
    if name == "coordinates":
        k = min(cfg.trials, cfg.coordinate_trials)
        sub = held if k >= cfg.trials else type(held)(*(None if a is None else a[:k] for a in held))
        return coordinates.coordinates_part(
            model, sf, task, sub, key, tau=cfg.tau, eps=cfg.eps, sides=cfg.loss_sides, rotations=cfg.rotations
        )
    raise ValueError(f"study: unknown part {name!r}")  # pragma: no cover - PARTS is closed


def _batch(ctx: Context, purpose: str, task: Any, size: int) -> Any:
    """A batch of ``task`` for ``purpose`` (``"validation"``, ``"decision"``), from its own key, cached in ``ctx``."""
    from schurjax.sweeps.config import task_params

    ident = (purpose, task.name, canonical(task_params(task)), int(size))
    if ident not in ctx.batches:
        ctx.batches[ident] = task.sample(study_key(ctx.config.seed, purpose, ident[1], ident[2]), int(size))
    return ctx.batches[ident]


def _decision_keys(cfg: StudyConfig, task: Any, model_id: str, criterion: str) -> dict[str, Any]:
    """How the decision's trials and resamples were drawn (enough to draw them again)."""
    from schurjax.sweeps.config import task_params

    names = [task.name, canonical(task_params(task))]
    return {
        "rule": "study_key(seed, purpose, *names) (schurjax.studies.protocol.study_key)",
        "seed": cfg.seed,
        "heldout": {"purpose": "decision", "names": names, "trials": cfg.decision_size},
        "validation": {"purpose": "validation", "names": names, "trials": cfg.trials},
        "selection": {"purpose": "selection", "names": names, "trials": cfg.trials},
        "bootstrap": {"purpose": "decision-bootstrap", "names": [model_id, criterion], "resamples": cfg.bootstrap},
    }


def _bound_figures(decision: dict[str, Any], heldout: dict[str, Any]) -> dict[str, Any]:
    """The accepted set's one-sided bounds, beside its held-out figures."""
    import math

    b = decision.get("bound") or {}
    drop_ucb = b.get("drop_ucb", math.nan)
    base_loss = heldout.get("base_loss", math.nan)
    return {
        "rel_ucb": b.get("rel_ucb", math.nan),
        "drop_ucb": drop_ucb,
        "score_lcb": heldout.get("base_score", math.nan) - drop_ucb,
        "loss_ratio": 1.0 + heldout["rel"] if base_loss == base_loss else math.nan,
        "level": decision["level"],
        "trials": decision["trials"],
        "holds": bool(decision["holds"]),
    }


def _finetune_part(spec: Any, ctx: Context, out: Path, key: Any, initial: Any = None) -> dict[str, Any]:
    """Prune-and-fine-tune (:func:`schurjax.compress`, loss criterion) with its baselines, starting from the
    compression search's accepted set; exported if it holds."""
    from schurjax.pruning import compress

    cfg = ctx.config
    res = compress(
        spec.model,
        spec.task,
        key=key,
        initial=initial,
        criterion="loss",
        tol=cfg.tau,
        schedule=cfg.finetune_schedule,
        steps=cfg.finetune_steps,
        trials=cfg.trials,
        decision_trials=cfg.decision_size,
        bootstrap=cfg.bootstrap,
    )
    strip = lambda rows: [{k: v for k, v in r.items() if k != "decision"} for r in rows]  # noqa: E731
    part = {
        "accepted": res.accepted,
        "removed": np.asarray(res.removed).tolist(),
        "couplings": res.settings["couplings"],
        "decision": res.decision,
        "one_shot": res.one_shot,
        "curve": strip(res.curve),
        "baselines": strip(res.baselines),
        "settings": {k: v for k, v in res.settings.items() if k != "keys"},
    }
    if res.accepted:
        from schurjax.pruning import export_model

        meta = {**_base_meta(spec), **res.metadata()}
        meta["compression"]["study_seed"] = cfg.seed
        name = _safe_io.check_name("study", "models", f"{spec.id}-finetuned-loss.eqx")
        _safe_io.write_files(
            out, "compressed", lambda tmp: export_model(tmp / name, res.model, finite_or_none(meta)), where="study"
        )
    return part


def _base_meta(spec: Any) -> dict[str, Any]:
    from schurjax.sweeps.config import model_fingerprint, task_params

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


def _export_meta(spec: Any, criterion: str, found: dict[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    return {
        **_base_meta(spec),
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


def _export(out: Path, spec: Any, sf: Any, criterion: str, found: dict[str, Any], cfg: StudyConfig) -> Path:
    meta = _export_meta(spec, criterion, found, cfg)
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


def _check_export(loaded: tuple[Any, dict[str, Any]], spec: Any, sf: Any, criterion: str, found: Any, cfg: Any) -> None:
    """Raise ValueError unless a compressed model on disk is the one this study's part describes: its weights,
    removed couplings, base model and criterion (a swapped or stale export is rewritten, never kept)."""
    from schurjax.sweeps.config import model_fingerprint

    model, meta = loaded
    removed = np.asarray(found["removed"], np.int64).reshape(-1, 2)

    def what(m: dict[str, Any]) -> Any:  # the export's identity (not how the user spelled its source)
        base = m.get("base_model") if isinstance(m.get("base_model"), dict) else {}
        ident = {"task": m.get("task"), "compression": m.get("compression"), "base": base.get("weights_sha256")}
        return json.loads(canonical(finite_or_none(ident)))

    if (
        what(meta) != what(_export_meta(spec, criterion, found, cfg))
        or meta.get("removed_couplings") != removed.tolist()
    ):
        raise ValueError("its metadata is not this study's (another model, criterion or setting)")
    expected = spec.model.with_recurrent(compression.compressed_W(sf, removed))
    if model_fingerprint(model) != model_fingerprint(expected):
        raise ValueError("its weights are not this study's compressed model")


def _check_exports(
    out: Path,
    specs: Sequence[Any],
    sfs: dict[str, Any],
    parts: dict[str, dict[str, Any]],
    cfg: StudyConfig,
    log: Callable[[str], None],
) -> None:
    """Rewrite any compressed model that is missing or does not load (its part holds everything needed)."""
    from schurjax.checkpoint import load_model

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
                _check_export(load_model(path), spec, sfs[spec.id], criterion, found, cfg)
            except ValueError as e:
                log(f"study: rewriting {path} ({str(e).splitlines()[0][:80]})")
                _export(out, spec, sfs[spec.id], criterion, found, cfg)


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
    from schurjax.results import RunFolder
    from schurjax.schur import order_for, ordered_schur
    from schurjax.studies import figures, report
    from schurjax.sweeps.config import model_fingerprint

    manifest = _manifest(config, specs, extra_manifest)
    ctx = Context(config)
    parts: dict[str, dict[str, Any]] = {}
    sfs: dict[str, Any] = {}
    timings_path = out / "timings.json"
    with RunFolder(out, where="study", kind="study") as folder:
        resumed = folder.start(manifest)
        timings = _read_timings(timings_path) if resumed else {}
        tuned = _finetuned(config, specs, zoo_models)
        todo_total = sum(len(_parts_of(s, s.id in tuned)) for s in specs)
        done_n = 0
        for i, spec in enumerate(specs):
            sf = ordered_schur(np.asarray(spec.model.W_rec, np.float64), order=order_for(spec.model))
            sfs[spec.id] = sf
            folder.save_schur(spec.id, sf)
            parts[spec.id] = {}
            ident = {"model": spec.id, "weights_sha256": model_fingerprint(spec.model)}
            for name in _parts_of(spec, spec.id in tuned):
                c = PARTS.index(name)
                done_n += 1
                why = folder.chunk_problem(i, c, 0, 0, (), {**ident, "part": name})
                if why not in (None, "missing"):
                    log(f"study: recomputing {folder.chunk_path(i, c)} ({why})")
                if why is None:
                    parts[spec.id][name] = decode(folder.read_chunk(i, c, ())["result"])
                    continue
                t0 = time.perf_counter()
                result = _compute(name, spec, sf, ctx, parts[spec.id], out, folder.check)
                folder.write_chunk(
                    i,
                    c,
                    {"start": 0, "stop": 0, "model": spec.id, "part": name, "result": finite_or_none(result)},
                    (),
                    {**ident, "part": name},
                )
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
        _check_exports(out, specs, sfs, parts, config, log)
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
    from schurjax.table import read_table

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
