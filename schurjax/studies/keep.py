"""Which couplings a trained network can lose: keep shares of single and block removals under both criteria, on a
selection batch and on a held-out batch, and the effect of removing every nonnormal coupling at once.

The selection batch only ranks and selects (:func:`selection_part`); every reported share comes from the held-out
batch (:func:`heldout_part`), with a bootstrap interval over its trials.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.studies import stats
from schurjax.studies.measure import measure, summarize_keep
from schurjax.studies.protocol import keeps_loss

__all__ = ["selection_part", "heldout_part", "single_entries", "importance_order", "curve_ks", "STUDY_FAMILIES"]

STUDY_FAMILIES = ("single", "block", "band", "all_nonnormal", "cumulative")
"""The Schur ablation families a study evaluates on the held-out batch (``cumulative``: prefixes of the
couplings ordered by their single-removal importance on the selection batch)."""


def importance_order(sel_part: dict[str, Any], *, most_first: bool = False) -> np.ndarray:
    """Indices of the single couplings sorted by their importance on the selection batch: ``|Δloss| / loss``, then
    the score drop, then position; least important first (or most important first).

    Example:
        >>> importance_order({"single": {"rel": [0.2, -0.01, 0.05], "drop": [0.0, 0.0, 0.0]}}).tolist()
        [1, 2, 0]
    """
    rel = np.abs(np.asarray(sel_part["single"]["rel"], np.float64))
    drop = np.asarray(sel_part["single"]["drop"], np.float64)
    idx = np.arange(rel.size)
    if most_first:
        return np.lexsort((idx, -drop, -rel))
    return np.lexsort((idx, drop, rel))


def curve_ks(m: int, points: int = 20) -> np.ndarray:
    """Prefix lengths of a cumulative curve over ``m`` couplings: about ``points`` lengths, dense at the start.

    Example:
        >>> curve_ks(100, 6).tolist()
        [1, 10, 33, 67, 100]
    """
    if m < 1:
        return np.zeros(0, np.int64)
    half = max(points // 2, 1)
    ks = np.concatenate([np.geomspace(1, m, half), np.linspace(m / half, m, half)])
    return np.unique(np.clip(np.round(ks), 1, m).astype(np.int64))


def single_entries(variants: Any) -> np.ndarray:
    """(K, 2) ``[i, j]`` entry of each single-coupling variant."""
    return np.array([lab["entries"][0] for lab in variants.labels], dtype=np.int64).reshape(-1, 2)


def _families(sf: Any) -> dict[str, Any]:
    return {name: ablate.FAMILIES[name](sf) for name in ("single", "block", "band", "all_nonnormal")}


def _slices(fams: dict[str, Any]) -> dict[str, np.ndarray]:
    out, a = {}, 0
    for name, v in fams.items():
        out[name] = np.arange(a, a + len(v))
        a += len(v)
    return out


def _f(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, np.float64).ravel()]


def selection_part(model: Any, sf: Any, task: Any, batch: Any, **options: Any) -> dict[str, Any]:
    """Single and block removals on the selection batch (ranking for the compression search, selection sets).

    Returns:
        ``base_loss``, ``base_score`` and, for ``single`` and ``block``, the per-variant ``rel`` (relative loss
        change) and ``drop`` (score drop).
    """
    fams = {k: v for k, v in _families(sf).items() if k in ("single", "block")}
    res = measure(model, sf, ablate.Variants.concat(*fams.values()), batch, task, **options).res
    out: dict[str, Any] = {"base_loss": float(res.base_loss), "base_score": float(res.base_score)}
    for name, idx in _slices(fams).items():
        out[name] = {"rel": _f(res.rel_delta_loss[idx]), "drop": _f(res.base_score - res.score[idx])}
    return out


def heldout_part(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    key: Any,
    sel_part: dict[str, Any],
    *,
    tau: float,
    eps: float,
    bootstrap: int,
    sides: str = "one",
    **options: Any,
) -> dict[str, Any]:
    """Every Schur family on the held-out batch: keep shares with intervals, per-variant figures, all-nonnormal.

    Args:
        model, sf, task, batch: the model, its Schur form, its task and the held-out batch.
        key: bootstrap key.
        sel_part: the selection part (the order of the cumulative curves).
        tau, eps: the criteria.
        bootstrap: resamples.
        sides: the loss criterion's form (``"one"``: ``Δloss / loss <= tau``; ``"two"``: ``|Δloss| / loss <= tau``).

    Returns:
        ``base_loss``, ``base_score``, ``n_eff`` (effective trials behind the base loss,
        :func:`schurjax.studies.stats.effective_trials`), ``blocks`` (|λ| and size of each diagonal block), and
        per family the
        per-variant figures (``rel``, ``drop``, ``score``, ``output_distance``, and the coupling's position for
        ``single``/``block``), ``keep`` (shares under both criteria) for ``single`` and ``block``, and the
        all-nonnormal change with intervals; ``curves``: cumulative removal of the couplings least important first
        (``least_first``) and most important first (``most_first``), each with ``k``, ``rel``, ``drop``, ``score``.
    """
    fams = _families(sf)
    entries = single_entries(fams["single"])
    ks = curve_ks(len(entries))
    orders = {"least_first": importance_order(sel_part), "most_first": importance_order(sel_part, most_first=True)}
    for name, order in orders.items():
        fams[name] = ablate.cumulative(sf, entries[order], ks=ks)
    m = measure(model, sf, ablate.Variants.concat(*fams.values()), batch, task, **options)
    res = m.res
    counts = stats.bootstrap_counts(key, int(np.shape(batch.inputs)[0]), bootstrap)
    sl = _slices(fams)
    blocks = {"abs_eig": _f(np.abs(sf.block_eigvals)), "size": sf.block_sizes.tolist()}
    out: dict[str, Any] = {
        "base_loss": float(res.base_loss),
        "base_score": float(res.base_score),
        "n_eff": float(stats.effective_trials(res.trial_base_loss)),
        "blocks": blocks,
    }
    for name in ("single", "block", "band"):
        idx = sl[name]
        labs = fams[name].labels
        d: dict[str, Any] = {
            "rel": _f(m.rel[idx]),
            "drop": _f(m.drop[idx]),
            "score": _f(res.score[idx]),
            "output_distance": _f(res.output_distance[idx]),
            "delta_norm": _f(res.delta_norm[idx]),
        }
        if name == "single":
            e = single_entries(fams[name])
            d.update(
                row=e[:, 0].tolist(),
                col=e[:, 1].tolist(),
                target_block=[int(lab["target_block"]) for lab in labs],
                source_block=[int(lab["source_block"]) for lab in labs],
            )
        elif name == "block":
            d.update(
                target_block=[int(lab["target_block"]) for lab in labs],
                source_block=[int(lab["source_block"]) for lab in labs],
                n_removed=[int(lab["n_removed"]) for lab in labs],
            )
        else:
            d["band"] = [int(lab["band"]) for lab in labs]
        if name in ("single", "block") and len(idx):
            d["keep"] = summarize_keep(m, idx, counts, tau=tau, eps=eps, sides=sides)
        out[name] = d
    k = sl["all_nonnormal"]
    jack = stats.jackknife_counts(int(np.shape(batch.inputs)[0]))
    rel_r = m.rel_replicates(counts, k)[0]
    drop_r = m.drop_replicates(counts, k)
    lo, hi = stats.bca_interval(m.rel[k][0], rel_r, m.rel_replicates(jack, k)[0])
    nn = {
        "rel": float(m.rel[k][0]),
        "rel_lo": float(lo),
        "rel_hi": float(hi),
        "score": float(res.score[k][0]),
        "drop": float(m.drop[k][0]),
        "drop_lo": math.nan,
        "drop_hi": math.nan,
        "delta_norm": float(res.delta_norm[k][0]),
        "keeps_loss": bool(keeps_loss(m.rel[k], tau, sides)[0]),
        "n_eff": float(stats.effective_trials(res.trial_delta_loss[k][0])),
    }
    if drop_r is not None:
        drop_j = m.drop_replicates(jack, k)[0]
        nn["drop_lo"], nn["drop_hi"] = (float(x) for x in stats.bca_interval(m.drop[k][0], drop_r[0], drop_j))
    out["all_nonnormal"] = nn
    out["curves"] = {
        name: {
            "k": ks.tolist(),
            "rel": _f(m.rel[sl[name]]),
            "drop": _f(m.drop[sl[name]]),
            "score": _f(res.score[sl[name]]),
        }
        for name in orders
    }
    return out
