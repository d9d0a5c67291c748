"""Compression: the largest set of Schur couplings a trained network can lose *together*, found on the selection
batch, verified on the held-out batch, and exported as a model.

The search (all evaluations batched, on the selection batch; a set *passes* when its joint removal keeps the
criterion):

1. **Order** the couplings by single-removal importance, least important first: ``|Δloss| / loss`` of each single
   removal (the finest measure, for both criteria), then its score drop, then position
   (:func:`schurjax.studies.keep.importance_order`).
2. **Prefix search**: the longest passing prefix of that order, by a batched bisection: the prefixes at up to
   :data:`GRID` evenly spaced lengths between the last known passing and the first known failing length are
   evaluated at once, the bracket shrinks to the last passing length below the first failing one, until the two
   are adjacent. (Exact when passing is monotone in the prefix length; otherwise a passing prefix whose next
   coupling fails, with every grid length below it passing.)
3. **Greedy passes**: each pass tries the next ``candidates`` untried couplings in the order of step 1, each one
   added alone to the current set (one batched evaluation); those that pass, sorted by their joint loss change,
   are added as the longest passing prefix found as in step 2. A pass that adds nothing ends the search.

Selection that generalises (:func:`select`, :func:`decide`; three batches from distinct keys):

4. **Validate.** The found set is evaluated on a *validation* batch (as large as the selection batch). Its
   selection/validation gap ``g = v - s`` (``s``, ``v``: the set's relative loss change, or score drop, on the two
   batches) measures how much the search's many evaluations on one batch flatter the set. **Margin rule**: when
   ``v > tol`` the search is rerun at ``(1 - m) tol`` with ``m = min(MAX_MARGIN, max(m_prev, g / tol))`` (the
   threshold below which a set with the same optimism would land at ``tol`` on new trials), at most
   :data:`MARGIN_ROUNDS` times; the last search's set is kept. A margin given by the user (``--margin``) replaces
   the rule (one search at ``(1 - margin) tol``).
5. **Decide.** On a third, larger *held-out* batch (``decision_trials``, >= 1,024 by default), the set is accepted
   when the one-sided upper confidence bound (:data:`LEVEL`, bootstrap over trials) of its relative loss change is
   within tau (loss criterion, one-sided: ``Δloss / loss <= tau``), or that of its score drop within eps (score
   criterion: the lower bound of the score within eps of the base score). Otherwise it is **shrunk**: its couplings
   sorted by single-removal importance (least first), the longest prefix whose bound holds (batched bisection as in
   step 2, so the couplings with the largest effect go back first); a set of no coupling means nothing could be
   removed. Only an accepted, non-empty set is exported (``.eqx`` and, where torch is installed, ``.pt``) with the
   evidence in its metadata; a set that fails is listed in the report with its figures.

The accepted set is then evaluated on the held-out batch (with bootstrap intervals), next to random controls that
remove as many couplings (``matched_count``) or change ``W`` by the same norm (``matched_norm``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.errors import InputError
from schurjax.studies import stats
from schurjax.studies.measure import measure
from schurjax.studies.protocol import keeps_loss, keeps_score

__all__ = [
    "search",
    "select",
    "decide",
    "verify",
    "export",
    "compressed_W",
    "longest_prefix",
    "GRID",
    "VERIFY_CONTROLS",
    "LEVEL",
    "MAX_MARGIN",
    "MARGIN_ROUNDS",
]

GRID = 16
"""Prefix lengths evaluated at once per bisection round."""
VERIFY_CONTROLS = 8
"""Random controls of each kind evaluated with the compressed set on the held-out batch."""
LEVEL = 0.95
"""One-sided level of the decision bound (the 95th percentile of the bootstrap replicates)."""
MAX_MARGIN = 0.9
"""The margin rule never searches below ``(1 - MAX_MARGIN) tol``."""
MARGIN_ROUNDS = 2
"""Reruns of the search at a margin set from the measured selection/validation gap."""


def _passes(res: Any, criterion: str, tol: float) -> np.ndarray:
    if criterion == "loss":
        return keeps_loss(res.rel_delta_loss, tol)
    return keeps_score(res.base_score - np.asarray(res.score), tol)


def _joint(res: Any, criterion: str) -> np.ndarray:
    return np.abs(res.rel_delta_loss) if criterion == "loss" else res.base_score - np.asarray(res.score)


def longest_prefix(evaluate: Any, order: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """Longest passing prefix length in ``[lo, hi]`` of ``order`` (``lo`` known to pass) by batched bisection.

    ``evaluate(order, ks) -> (len(ks),) bool`` says which prefix lengths pass; see the module docstring.

    Returns:
        (length, evaluations).
    """
    hi_fail = hi + 1  # first length known to fail (sentinel: one past the end)
    n_eval = 0
    while hi_fail - lo > 1:
        ks = np.unique(np.linspace(lo + 1, hi_fail - 1, min(GRID, hi_fail - lo - 1)).round().astype(np.int64))
        ok = evaluate(order, ks)
        n_eval += ks.size
        fails = ks[~ok]
        first_fail = int(fails.min()) if fails.size else hi_fail
        passing_below = ks[ok & (ks < first_fail)]
        lo = int(passing_below.max()) if passing_below.size else lo
        hi_fail = first_fail
    return lo, n_eval


def search(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    order: np.ndarray,
    *,
    criterion: str = "loss",
    tol: float = 0.05,
    candidates: int = 256,
    passes: int = 4,
    **options: Any,
) -> dict[str, Any]:
    """Find a large set of couplings whose joint removal keeps the criterion on ``batch`` (the module's search).

    Args:
        model, sf, task, batch: the model, its Schur form, its task and the selection batch.
        order: (m, 2) the couplings ``[i, j]``, least important first (step 1).
        criterion: ``"loss"`` (``|Δloss| / loss <= tol``) or ``"score"`` (score drop ``<= tol``).
        tol: the criterion's threshold.
        candidates: couplings tried per greedy pass.
        passes: greedy passes at most.

    Returns:
        ``removed`` ((p, 2) list, in the order they were added), ``prefix`` (length found in step 2),
        ``greedy_added`` (per pass), ``evaluations``, ``selection`` (joint figure of the final set on ``batch``).
    """
    if criterion not in ("loss", "score"):
        raise InputError("compression.search", None, f"criterion must be 'loss' or 'score', got {criterion!r}")
    order = np.asarray(order, np.int64).reshape(-1, 2)

    def evaluate_prefixes(ordering: np.ndarray, ks: np.ndarray) -> np.ndarray:
        v = ablate.cumulative(sf, ordering, ks=ks)
        return _passes(measure(model, sf, v, batch, task, **options).res, criterion, tol)

    n_eval = 0
    prefix, n = longest_prefix(evaluate_prefixes, order, 0, len(order)) if len(order) else (0, 0)
    n_eval += n
    removed = order[:prefix]
    tried = np.zeros(len(order), bool)
    tried[:prefix] = True
    added = []
    for _ in range(passes):
        untried = np.nonzero(~tried)[0][:candidates]
        if untried.size == 0:
            break
        tried[untried] = True
        masks = np.ones((untried.size, sf.n, sf.n))
        if len(removed):
            masks[:, removed[:, 0], removed[:, 1]] = 0.0
        masks[np.arange(untried.size), order[untried, 0], order[untried, 1]] = 0.0
        res = measure(model, sf, ablate.from_masks(masks, sf=sf), batch, task, **options).res
        n_eval += untried.size
        ok = _passes(res, criterion, tol)
        if not ok.any():
            added.append(0)
            break
        good = untried[ok][np.lexsort((untried[ok], _joint(res, criterion)[ok]))]
        ordering = np.concatenate([removed, order[good]]).reshape(-1, 2)
        k, n = longest_prefix(evaluate_prefixes, ordering, len(removed) + 1, len(ordering))
        n_eval += n
        added.append(k - len(removed))
        removed = ordering[:k]
    final = {"rel": 0.0, "drop": 0.0}
    if len(removed):
        res = measure(model, sf, ablate.cumulative(sf, removed, ks=[len(removed)]), batch, task, **options).res
        final = {"rel": float(res.rel_delta_loss[0]), "drop": float(res.base_score - res.score[0])}
        n_eval += 1
    return {
        "criterion": criterion,
        "tol": float(tol),
        "removed": removed.tolist(),
        "prefix": int(prefix),
        "greedy_added": added,
        "evaluations": int(n_eval),
        "selection": final,
        "couplings": int(len(order)),
    }


def _figure(res: Any, criterion: str) -> float:
    """The one-sided figure a criterion bounds: the relative loss change, or the score drop."""
    return float(res.rel_delta_loss[0]) if criterion == "loss" else float(res.base_score - res.score[0])


def select(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    validation: Any,
    order: np.ndarray,
    *,
    criterion: str = "loss",
    tol: float = 0.05,
    margin: float | None = None,
    candidates: int = 256,
    passes: int = 4,
    **options: Any,
) -> dict[str, Any]:
    """:func:`search` on ``batch`` with the margin set from the selection/validation gap (module docstring, step 4).

    Args:
        validation: the validation batch (same task, another key).
        margin: a fixed margin (one search at ``(1 - margin) tol``), or None for the rule.
        the rest: as for :func:`search`.

    Returns:
        :func:`search`'s dict (``tol``: the threshold of the last search) plus ``margin`` (``value``, ``rule``:
        ``"gap"`` or ``"given"``, ``rounds``: per search its ``tol``, ``size``, ``selection`` and ``validation``
        figures and ``gap``) and ``validation`` (the final set's ``rel`` and ``drop`` on the validation batch).
    """
    m = 0.0 if margin is None else float(margin)
    rounds = []
    while True:
        found = search(
            model,
            sf,
            task,
            batch,
            order,
            criterion=criterion,
            tol=tol * (1 - m),
            candidates=candidates,
            passes=passes,
            **options,
        )
        removed = np.asarray(found["removed"], np.int64).reshape(-1, 2)
        s = found["selection"]["rel"] if criterion == "loss" else found["selection"]["drop"]
        v_rel = v_drop = 0.0
        if len(removed):
            res = measure(model, sf, ablate.cumulative(sf, removed, ks=[len(removed)]), validation, task, **options).res
            v_rel, v_drop = float(res.rel_delta_loss[0]), float(res.base_score - res.score[0])
        v = v_rel if criterion == "loss" else v_drop
        gap = v - s
        rounds.append(
            {"margin": m, "tol": tol * (1 - m), "size": int(len(removed)), "selection": s, "validation": v, "gap": gap}
        )
        found["validation"] = {"rel": v_rel, "drop": v_drop}
        if margin is not None or v <= tol or len(rounds) > MARGIN_ROUNDS or not len(removed):
            break
        new = min(MAX_MARGIN, max(m, gap / tol if tol > 0 else MAX_MARGIN))
        if new <= m:
            break
        m = new
    found["margin"] = {"value": m, "rule": "gap" if margin is None else "given", "rounds": rounds}
    return found


def decide(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    key: Any,
    removed: np.ndarray,
    rank: np.ndarray,
    *,
    criterion: str,
    tol: float,
    bootstrap: int,
    level: float = LEVEL,
    **options: Any,
) -> dict[str, Any]:
    """Accept ``removed`` on the held-out ``batch`` by a one-sided bootstrap bound, or shrink it until it holds.

    Args:
        batch: the held-out (decision) batch.
        key: the bootstrap key.
        removed: (p, 2) the found set.
        rank: (p,) single-removal importance rank of each coupling of ``removed`` (smaller: less important); the
            shrink puts back the highest ranks first.
        criterion, tol: as for :func:`search`. level: one-sided level.

    Returns:
        ``accepted`` ((k, 2), a prefix of ``removed`` by rank; empty when nothing holds), ``found_size``,
        ``holds`` (the accepted set is non-empty and its bound holds), ``found`` (the found set's figures:
        ``rel``, ``rel_ucb``, ``drop``, ``drop_ucb``), ``bound`` (the accepted set's), ``evaluations``.
    """
    from schurjax.studies import stats

    removed = np.asarray(removed, np.int64).reshape(-1, 2)
    ordering = removed[np.argsort(np.asarray(rank), kind="stable")] if len(removed) else removed
    counts = stats.bootstrap_counts(key, int(np.shape(batch.inputs)[0]), bootstrap)
    cache: dict[int, dict[str, float]] = {}

    def bounds(ks: np.ndarray) -> list[dict[str, float]]:
        todo = [int(k) for k in ks if int(k) not in cache]
        if todo:
            m = measure(model, sf, ablate.cumulative(sf, ordering, ks=todo), batch, task, **options)
            rel_ucb = np.nanquantile(m.rel_replicates(counts), level, axis=1)
            dr = m.drop_replicates(counts)
            drop_ucb = np.full(len(todo), math.nan) if dr is None else np.nanquantile(dr, level, axis=1)
            for i, k in enumerate(todo):
                cache[k] = {
                    "rel": float(m.rel[i]),
                    "rel_ucb": float(rel_ucb[i]),
                    "drop": float(m.drop[i]),
                    "drop_ucb": float(drop_ucb[i]),
                }
        return [cache[int(k)] for k in ks]

    def ok(b: dict[str, float]) -> bool:
        x = b["rel_ucb"] if criterion == "loss" else b["drop_ucb"]
        return bool(x <= tol)  # NaN never holds

    def evaluate(_order: np.ndarray, ks: np.ndarray) -> np.ndarray:
        return np.array([ok(b) for b in bounds(ks)])

    found = bounds(np.array([len(ordering)]))[0] if len(ordering) else None
    if found is not None and ok(found):
        k = len(ordering)
    elif len(ordering) > 1:
        k, _ = longest_prefix(evaluate, ordering, 0, len(ordering) - 1)
    else:
        k = 0
    return {
        "accepted": ordering[:k].tolist(),
        "found_size": int(len(ordering)),
        "holds": bool(k > 0),
        "found": found,
        "bound": cache.get(k),
        "level": float(level),
        "trials": int(np.shape(batch.inputs)[0]),
        "resamples": int(bootstrap),
        "evaluations": len(cache),
    }


def verify(
    model: Any, sf: Any, task: Any, batch: Any, key: Any, removed: np.ndarray, *, bootstrap: int, **options: Any
) -> dict[str, Any]:
    """The found set on the held-out batch, with bootstrap intervals, next to random controls of the same size.

    Returns:
        ``rel``/``rel_lo``/``rel_hi``, ``drop``/``drop_lo``/``drop_hi``, ``score``, ``base_score``, ``delta_norm``,
        and per control kind (``matched_count``, ``matched_norm``) the median ``rel`` and ``drop`` of its
        :data:`VERIFY_CONTROLS` draws.
    """
    import jax

    removed = np.asarray(removed, np.int64).reshape(-1, 2)
    if len(removed) == 0:
        return {
            "rel": 0.0,
            "rel_lo": 0.0,
            "rel_hi": 0.0,
            "drop": 0.0,
            "drop_lo": 0.0,
            "drop_hi": 0.0,
            "score": math.nan,
            "base_score": math.nan,
            "delta_norm": 0.0,
            "controls": {},
        }
    k_ctrl, k_boot = jax.random.split(key)
    v = ablate.cumulative(sf, removed, ks=[len(removed)])
    kinds = ("matched_count", "matched_norm")
    ctrl = ablate.controls(k_ctrl, sf, v, kinds=kinds, n_per=VERIFY_CONTROLS)
    m = measure(model, sf, ablate.Variants.concat(v, ctrl), batch, task, **options)
    counts = stats.bootstrap_counts(k_boot, int(np.shape(batch.inputs)[0]), bootstrap)
    lo, hi = stats.percentile_interval(m.rel_replicates(counts, np.array([0]))[0])
    out = {
        "rel": float(m.rel[0]),
        "rel_lo": float(lo),
        "rel_hi": float(hi),
        "drop": float(m.drop[0]),
        "drop_lo": math.nan,
        "drop_hi": math.nan,
        "score": float(m.res.score[0]),
        "base_score": float(m.res.base_score),
        "base_loss": float(m.res.base_loss),
        "delta_norm": float(m.res.delta_norm[0]),
        "controls": {},
    }
    drop_r = m.drop_replicates(counts, np.array([0]))
    if drop_r is not None:
        out["drop_lo"], out["drop_hi"] = (float(x) for x in stats.percentile_interval(drop_r[0]))
    for i, kind in enumerate(kinds):
        sel = 1 + i * VERIFY_CONTROLS + np.arange(VERIFY_CONTROLS)
        out["controls"][kind] = {
            "rel": float(np.median(m.rel[sel])),
            "drop": float(np.median(m.drop[sel])),
            "score": float(np.median(m.res.score[sel])),
        }
    return out


def compressed_W(sf: Any, removed: np.ndarray) -> np.ndarray:
    """``Q (T with the removed couplings set to zero) Q^T`` in float64.

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> bool(np.allclose(compressed_W(sf, []), sf.reconstruct()))
        True
    """
    T = np.array(sf.T, dtype=np.float64)
    r = np.asarray(removed, np.int64).reshape(-1, 2)
    T[r[:, 0], r[:, 1]] = 0.0
    return sf.Q @ T @ sf.Q.T


def export(path: str | Path, model: Any, sf: Any, removed: np.ndarray, metadata: dict[str, Any]) -> Path:
    """Save the compressed model (``W_rec = compressed_W(sf, removed)``, everything else unchanged) with
    :func:`schurjax.save_model`, and as PyTorch state dicts (``.pt``) where torch is installed
    (:func:`schurjax.pruning.export_model`); ``metadata`` should name the task, the base model, the criterion and
    the held-out evidence.

    Returns:
        The ``.eqx`` path (``sj.load_model``, ``schurjax sweep`` and ``TanhRNN.to_torch`` read it).
    """
    r = np.asarray(removed, np.int64).reshape(-1, 2)
    meta = {
        **metadata,
        "removed_couplings": r.tolist(),
        "removed_count": int(len(r)),
        "schur": {"order": sf.order, "fingerprint": sf.fingerprint, "couplings": int(len(sf.couplings))},
    }
    from schurjax.pruning import export_model

    written = export_model(path, model.with_recurrent(compressed_W(sf, r)), meta)
    return Path(written.get("eqx") or written["npz"])
