"""The parts of a study: one question per part, behind one protocol (:class:`Part`), run per model in the order
of :data:`REGISTRY`.

A part reads the model, its Schur form and the study's batches (:class:`PartInput`), and the records of the parts
it ``needs`` (already computed for the same model); it returns its *record*, a JSON-able dict that the study folder
stores (``RunFolder.write_record``) and the report reads. Adding a question means writing one :class:`Part` and
registering it (:func:`register`): the runner, the resume logic and the folder checks need no change.

Example:
    >>> from schurjax.studies import parts
    >>> [p.name for p in parts.REGISTRY.values()][:3], parts.REGISTRY["heldout"].needs
    (['selection', 'heldout', 'controls'], ('selection',))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from schurjax import ablate
from schurjax.errors import InputError
from schurjax.store import _safe_io
from schurjax.store._json import canonical, finite_or_none
from schurjax.studies import compression, coordinates, exports, fragility, keep, replay, restriction, versus
from schurjax.studies.exports import COMPRESS_CRITERIA
from schurjax.studies.protocol import StudyConfig, keeps_loss, study_key
from schurjax.studies.result import Context

__all__ = ["Part", "PartInput", "FnPart", "REGISTRY", "register", "applicable", "COMPRESS_CRITERIA"]

Record = dict[str, Any]
"""A part's result: JSON-able (non-finite numbers are stored as null and read back as NaN)."""


class PartInput(NamedTuple):
    """What a part computes from: one model of the study, its Schur form, the study's batches and its own key."""

    spec: Any  # schurjax.models.ModelSpec: id, model, task, seed, source
    sf: Any  # the model's SchurForm (ordered as the study orders it)
    ctx: Context  # the study's config and its batch cache
    key: Any  # study_key(seed, part name, model id)
    out: Path  # the study folder (parts that export write into compressed/)
    check: Callable[[], None]  # raises when this writer no longer holds the folder; call before any export

    @property
    def config(self) -> StudyConfig:
        return self.ctx.config

    def batch(self, purpose: str) -> Any:
        """The study's ``"selection"`` or ``"heldout"`` batch of this model's task."""
        return self.ctx.batch(purpose, self.spec.task)


@runtime_checkable
class Part(Protocol):
    """One question of the study, asked of every model it applies to."""

    name: str
    needs: tuple[str, ...]  # the parts whose records it reads (they run before it)

    def applies(self, spec: Any, finetune: bool) -> bool:
        """Whether the part runs for this model (``finetune``: the model is one of those fine-tuned)."""
        ...

    def compute(self, inp: PartInput, done: Mapping[str, Record]) -> Record:
        """The part's record (``done``: this model's records so far, every name of ``needs`` among them)."""
        ...


@dataclasses.dataclass(frozen=True)
class FnPart:
    """A :class:`Part` from a function ``fn(inp, done) -> record``."""

    name: str
    fn: Callable[[PartInput, Mapping[str, Record]], Record]
    needs: tuple[str, ...] = ()
    when: Callable[[Any, bool], bool] = lambda spec, finetune: True

    def applies(self, spec: Any, finetune: bool) -> bool:
        return bool(self.when(spec, finetune))

    def compute(self, inp: PartInput, done: Mapping[str, Record]) -> Record:
        missing = [n for n in self.needs if n not in done]
        if missing:  # pragma: no cover - the registry order puts every need first
            raise RuntimeError(f"study part {self.name!r} needs {missing} for {inp.spec.id}, which did not run")
        return self.fn(inp, done)


REGISTRY: dict[str, Part] = {}
"""Part name -> part, in the order the parts run (a part's chunk index is its position: append only)."""


def register(part: Part) -> Part:
    """Add a part at the end of :data:`REGISTRY` (its needs must be registered already).

    Raises:
        InputError: a name taken, or a need that is not registered.
    """
    if not isinstance(part, Part):
        raise InputError("register", "part", f"must have name, needs, applies() and compute(), got {part!r}")
    if part.name in REGISTRY:
        raise InputError("register", "part", f"a part named {part.name!r} is registered already")
    unknown = [n for n in part.needs if n not in REGISTRY]
    if unknown:
        raise InputError("register", "part", f"{part.name!r} needs {unknown}, which are not registered (yet)")
    REGISTRY[part.name] = part
    return part


def applicable(spec: Any, finetune: bool = False) -> list[str]:
    """The names of the parts that run for one model, in order."""
    return [name for name, p in REGISTRY.items() if p.applies(spec, finetune)]


def _order(inp: PartInput, done: Mapping[str, Record]) -> np.ndarray:
    """The single couplings ``(i, j)`` from most to least important on the selection batch."""
    return keep.single_entries(ablate.single_couplings(inp.sf))[keep.importance_order(done["selection"])]


# ---------------------------------------------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------------------------------------------


def _selection(inp: PartInput, done: Mapping[str, Record]) -> Record:
    return keep.selection_part(inp.spec.model, inp.sf, inp.spec.task, inp.batch("selection"))


def _heldout(inp: PartInput, done: Mapping[str, Record]) -> Record:
    cfg = inp.config
    return keep.heldout_part(
        inp.spec.model,
        inp.sf,
        inp.spec.task,
        inp.batch("heldout"),
        inp.key,
        done["selection"],
        tau=cfg.tau,
        eps=cfg.eps,
        bootstrap=cfg.bootstrap,
        sides=cfg.loss_sides,
    )


def _controls(inp: PartInput, done: Mapping[str, Record]) -> Record:
    cfg = inp.config
    return versus.controls_part(
        inp.spec.model,
        inp.sf,
        inp.spec.task,
        inp.batch("heldout"),
        inp.key,
        kinds=cfg.control_kinds,
        control_max=cfg.control_max,
        bootstrap=cfg.bootstrap,
        control_draws=cfg.control_draws,
        order=_order(inp, done),
    )


def _compression(criterion: str) -> Callable[[PartInput, Mapping[str, Record]], Record]:
    def part(inp: PartInput, done: Mapping[str, Record]) -> Record:
        cfg, spec, sf, ctx = inp.config, inp.spec, inp.sf, inp.ctx
        model, task = spec.model, spec.task
        tol = cfg.tau if criterion == "loss" else cfg.eps
        order = _order(inp, done)
        val, dec = _batch(ctx, "validation", task, cfg.trials), _batch(ctx, "decision", task, cfg.decision_size)
        found = compression.select(
            model,
            sf,
            task,
            inp.batch("selection"),
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
            model, sf, task, dec, inp.key, np.asarray(found["removed"]), bootstrap=cfg.bootstrap
        )
        found["heldout"].update(_bound_figures(found["decision"], found["heldout"]))
        found["exported"] = bool(found["decision"]["holds"])
        if found["exported"]:
            inp.check()  # a stale writer (its folder deleted and restarted) stops before it exports
            exports.export(inp.out, spec, sf, criterion, found, cfg)
        return found

    return part


def _finetune_part(inp: PartInput, done: Mapping[str, Record]) -> Record:
    acc = done.get("compression-loss", {}).get("removed")
    initial = np.asarray(acc, np.int64).reshape(-1, 2) if acc else None
    return _finetune(inp.spec, inp.ctx, inp.out, inp.key, initial)


def _restriction(inp: PartInput, done: Mapping[str, Record]) -> Record:
    cfg = inp.config
    keepers = np.nonzero(keeps_loss(done["heldout"]["single"]["rel"], cfg.tau, cfg.loss_sides))[0]
    comp = done.get("compression-loss", {}).get("removed")
    return restriction.restriction_part(
        inp.spec.model,
        inp.sf,
        inp.spec.task,
        inp.batch("heldout"),
        inp.key,
        keepers,
        None if comp is None else np.asarray(comp),
        restriction_max=cfg.restriction_max,
        tau=cfg.tau,
        sides=cfg.loss_sides,
    )


def _replay(inp: PartInput, done: Mapping[str, Record]) -> Record:
    cfg = inp.config
    return replay.replay_part(
        inp.spec.model,
        inp.sf,
        inp.spec.task,
        inp.batch("selection"),
        inp.batch("heldout"),
        done["selection"],
        done["heldout"],
        inp.key,
        replay_r2=cfg.replay_r2,
        draws=cfg.null_draws,
    )


def _fragility(inp: PartInput, done: Mapping[str, Record]) -> Record:
    cfg = inp.config
    return fragility.fragility_part(
        inp.spec.model,
        inp.sf,
        inp.spec.task,
        inp.batch("selection"),
        inp.batch("heldout"),
        inp.key,
        done["heldout"],
        tau=cfg.tau,
        sides=cfg.loss_sides,
        starts=cfg.worst_starts,
        steps=cfg.worst_steps,
        iters=cfg.radius_iters,
    )


def _coordinates(inp: PartInput, done: Mapping[str, Record]) -> Record:
    cfg, held = inp.config, inp.batch("heldout")
    k = min(cfg.trials, cfg.coordinate_trials)
    sub = held if k >= cfg.trials else type(held)(*(None if a is None else a[:k] for a in held))
    return coordinates.coordinates_part(
        inp.spec.model,
        inp.sf,
        inp.spec.task,
        sub,
        inp.key,
        tau=cfg.tau,
        eps=cfg.eps,
        sides=cfg.loss_sides,
        rotations=cfg.rotations,
    )


# ---------------------------------------------------------------------------------------------------------------
# helpers of the compression and fine-tuning parts
# ---------------------------------------------------------------------------------------------------------------


def _batch(ctx: Context, purpose: str, task: Any, size: int) -> Any:
    """A batch of ``task`` for ``purpose`` (``"validation"``, ``"decision"``), from its own key, cached in ``ctx``."""
    from schurjax.models import task_params

    ident = (purpose, task.name, canonical(task_params(task)), int(size))
    if ident not in ctx.batches:
        ctx.batches[ident] = task.sample(study_key(ctx.config.seed, purpose, ident[1], ident[2]), int(size))
    return ctx.batches[ident]


def _decision_keys(cfg: StudyConfig, task: Any, model_id: str, criterion: str) -> dict[str, Any]:
    """How the decision's trials and resamples were drawn (enough to draw them again)."""
    from schurjax.models import task_params

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


def _finetune(spec: Any, ctx: Context, out: Path, key: Any, initial: Any = None) -> dict[str, Any]:
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

        meta = {**exports.base_meta(spec), **res.metadata()}
        meta["compression"]["study_seed"] = cfg.seed
        name = _safe_io.check_name("study", "models", f"{spec.id}-finetuned-loss.eqx")
        _safe_io.write_files(
            out, "compressed", lambda tmp: export_model(tmp / name, res.model, finite_or_none(meta)), where="study"
        )
    return part


for _part in (
    FnPart("selection", _selection),
    FnPart("heldout", _heldout, needs=("selection",)),
    FnPart("controls", _controls, needs=("selection",)),
    *(FnPart(f"compression-{c}", _compression(c), needs=("selection",)) for c in COMPRESS_CRITERIA),
    FnPart("restriction", _restriction, needs=("heldout",)),
    FnPart("replay", _replay, needs=("selection", "heldout"), when=lambda spec, finetune: spec.task.name == "copy"),
    FnPart("fragility", _fragility, needs=("heldout",)),
    FnPart("coordinates", _coordinates),
    FnPart("finetune", _finetune_part, when=lambda spec, finetune: finetune),
):
    register(_part)
del _part
