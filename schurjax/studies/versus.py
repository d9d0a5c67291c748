"""Schur ablations against random edits of the same size: pairs (ablation, control at equal ``||ΔW||_F``).

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

Per family and control kind, on the held-out batch: the share of pairs in which the Schur ablation changes the loss
more than its control (``|Δloss|``), the median ratio ``|Δloss(ablation)| / |Δloss(control)|`` (both with bootstrap
intervals over trials), and a paired Wilcoxon signed-rank test of ``|Δloss(ablation)| - |Δloss(control)|``. A
family with more than ``control_max`` ablations is represented by a random subset of that size. The one
all-nonnormal ablation is paired with :data:`NONNORMAL_CONTROLS` controls of each kind but matched-count
(:data:`SAME_EDIT`). The ``cumulative`` family (prefixes of the couplings ordered by importance on the selection
batch, least important first) is compared the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.studies import stats
from schurjax.studies.measure import measure

__all__ = ["controls_part", "NONNORMAL_CONTROLS", "SAME_EDIT", "compare_pairs"]

SAME_EDIT = frozenset({("all_nonnormal", "matched_count")})
"""(family, control kind) pairs whose control is the ablation itself: removing as many random couplings as there
are couplings removes all of them. They are not computed."""

NONNORMAL_CONTROLS = 16
"""Controls of each kind for the single all-nonnormal ablation (so that its comparison has 16 pairs)."""


def _subset(key: Any, K: int, k_max: int) -> np.ndarray:
    if K <= k_max:
        return np.arange(K)
    return np.sort(stats._rng(key).choice(K, size=k_max, replace=False))


def compare_pairs(abl: np.ndarray, ctrl: np.ndarray, abl_r: np.ndarray, ctrl_r: np.ndarray) -> dict[str, Any]:
    """Compare paired loss changes: ``abl``, ``ctrl`` (P,) and their replicates (P, R).

    Returns:
        ``pairs``, ``share_more`` (share of pairs with ``|abl| > |ctrl|``) with ``share_lo``/``share_hi``,
        ``median_ratio`` (of ``|abl| / |ctrl|``) with ``ratio_lo``/``ratio_hi``, ``median_abl``, ``median_ctrl``
        and ``wilcoxon`` (:func:`schurjax.studies.stats.wilcoxon_paired` of ``|abl|`` vs ``|ctrl|``).
    """
    a, c = np.abs(abl), np.abs(ctrl)
    ar, cr = np.abs(abl_r), np.abs(ctrl_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio, ratio_r = a / c, ar / cr
    s_lo, s_hi = stats.percentile_interval((ar > cr).mean(axis=0))
    r_lo, r_hi = stats.percentile_interval(np.nanmedian(np.where(np.isfinite(ratio_r), ratio_r, np.nan), axis=0))
    finite = ratio[np.isfinite(ratio)]
    return {
        "pairs": int(a.size),
        "share_more": float((a > c).mean()) if a.size else math.nan,
        "share_lo": float(s_lo),
        "share_hi": float(s_hi),
        "median_ratio": float(np.median(finite)) if finite.size else math.nan,
        "ratio_lo": float(r_lo),
        "ratio_hi": float(r_hi),
        "median_abl": float(np.median(a)) if a.size else math.nan,
        "median_ctrl": float(np.median(c)) if c.size else math.nan,
        "wilcoxon": stats.wilcoxon_paired(a, c),
    }


def controls_part(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    key: Any,
    *,
    kinds: tuple[str, ...],
    control_max: int,
    bootstrap: int,
    order: np.ndarray | None = None,
    families: tuple[str, ...] = ("single", "block", "band", "all_nonnormal", "cumulative"),
    **options: Any,
) -> dict[str, Any]:
    """Schur ablations and their random controls of every kind on the held-out batch.

    Args:
        model, sf, task, batch: the model, its Schur form, its task and the held-out batch.
        key: ``jax.random.key``: subsets, control draws and bootstrap.
        kinds: control kinds (``ablate.CONTROL_KINDS``).
        control_max: ablations per family (random subset above it).
        bootstrap: resamples of the trials.
        order: (m, 2) couplings least important first (selection batch), for the ``cumulative`` family (its
            prefixes at :func:`schurjax.studies.keep.curve_ks` lengths); without it that family is skipped.

    Returns:
        ``{family: {kind: compare_pairs(...) + {"abl", "ctrl", "norm"} (per pair: relative loss changes and
        ||ΔW||_F)}}``.
    """
    import jax

    k_sub, k_ctrl, k_boot = jax.random.split(key, 3)
    from schurjax.studies.keep import curve_ks

    makers = {
        "single": ablate.single_couplings,
        "block": ablate.block_couplings,
        "band": ablate.bands,
        "all_nonnormal": ablate.all_nonnormal,
    }
    if order is not None and len(order):
        makers["cumulative"] = lambda sf_: ablate.cumulative(sf_, order, ks=curve_ks(len(order)))
    pieces, plan = [], []
    offset = 0
    for f_i, fam in enumerate(families):
        if fam not in makers:
            continue
        v = makers[fam](sf)
        if len(v) == 0:
            continue
        v = v[_subset(jax.random.fold_in(k_sub, f_i), len(v), control_max)]
        n_per = NONNORMAL_CONTROLS if fam == "all_nonnormal" else 1
        pieces.append(v)
        abl_idx = np.arange(offset, offset + len(v))
        offset += len(v)
        for kind in kinds:
            if (fam, kind) in SAME_EDIT:
                continue
            c = ablate.controls(jax.random.fold_in(k_ctrl, f_i), sf, v, kinds=(kind,), n_per=n_per)
            pieces.append(c)
            ctrl_idx = np.arange(offset, offset + len(c))
            offset += len(c)
            plan.append((fam, kind, np.repeat(abl_idx, n_per), ctrl_idx))
    m = measure(model, sf, ablate.Variants.concat(*pieces), batch, task, **options)
    counts = stats.bootstrap_counts(k_boot, int(np.shape(batch.inputs)[0]), bootstrap)
    delta_r = m.delta_replicates(counts)
    delta = np.asarray(m.res.delta_loss, np.float64)
    out: dict[str, Any] = {}
    for fam, kind, a, c in plan:
        d = compare_pairs(delta[a], delta[c], delta_r[a], delta_r[c])
        d.update(
            abl=[float(x) for x in m.rel[a]],
            ctrl=[float(x) for x in m.rel[c]],
            norm=[float(x) for x in m.res.delta_norm[a]],
        )
        out.setdefault(fam, {})[kind] = d
    return out
