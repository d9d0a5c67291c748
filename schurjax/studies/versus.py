"""Schur ablations against random edits of the same size: pairs (ablation, control at equal ``||ΔW||_F``).

Per family and control kind, on the held-out batch: every ablation gets ``control_draws`` controls; the share of
(ablation, control) pairs in which the Schur ablation changes the loss more than its control (``|Δloss|``) and the
median ratio ``|Δloss(ablation)| / |Δloss(control)|``, both with BCa intervals from resamples that draw the trials
and, independently, the ablations with all their control draws (:func:`schurjax.studies.stats.two_way_pairs`), so
that they cover trial sampling, the control draws and the subset of ablations; and a Wilcoxon signed-rank test per
ablation of ``|Δloss(ablation)|`` against the mean ``|Δloss|`` of its controls (paired across ablations). A
family with more than ``control_max`` ablations is represented by a random subset of that size. The one
all-nonnormal ablation is paired with :data:`NONNORMAL_CONTROLS` controls of each kind but matched-count
(:data:`SAME_EDIT`); its test is a *one-sample* signed-rank test of ``|Δloss(T → D)| - |Δloss(control_j)|`` over
those controls (``test`` says which). The ``cumulative`` family (prefixes of the couplings ordered by importance on
the selection batch, least important first) is compared the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.studies import stats
from schurjax.studies.measure import measure
from schurjax.sweeps.summary import changes_more

__all__ = ["controls_part", "NONNORMAL_CONTROLS", "SAME_EDIT", "compare_pairs", "compare_draws"]

SAME_EDIT = frozenset({("all_nonnormal", "matched_count")})
"""(family, control kind) pairs whose control is the ablation itself: removing as many random couplings as there
are couplings removes all of them. They are not computed."""

NONNORMAL_CONTROLS = 16
"""Controls of each kind for the single all-nonnormal ablation (so that its comparison has 16 pairs)."""


def _subset(key: Any, K: int, k_max: int) -> np.ndarray:
    if K <= k_max:
        return np.arange(K)
    return np.sort(stats._rng(key).choice(K, size=k_max, replace=False))


def compare_draws(
    key: Any,
    abl: np.ndarray,
    ctrl: np.ndarray,
    trial_abl: np.ndarray,
    trial_ctrl: np.ndarray,
    *,
    bootstrap: int,
) -> dict[str, Any]:
    """Compare P ablations with their J control draws each: ``abl`` (P,), ``ctrl`` (P, J) loss changes and their
    per-trial sums (P, B), (P, J, B).

    Returns:
        ``pairs`` (P * J), ``removals`` (P), ``draws`` (J), ``share_more`` with ``share_lo``/``share_hi`` and
        ``median_ratio`` with ``ratio_lo``/``ratio_hi`` (BCa, :func:`schurjax.studies.stats.two_way_pairs`),
        ``median_abl``, ``median_ctrl``, ``wilcoxon`` and ``test``: with P >= 2 a signed-rank test of ``|abl|``
        against the mean ``|ctrl|`` of each ablation's draws (``"paired signed-rank"``), with P = 1 a one-sample
        signed-rank test of ``|abl| - |ctrl_j|`` over the J draws (``"one-sample signed-rank"``).
    """
    a, c = np.abs(np.asarray(abl, np.float64)), np.abs(np.asarray(ctrl, np.float64))
    P, J = c.shape
    iv = stats.two_way_pairs(key, a, c, n_resamples=bootstrap, trial_abl=trial_abl, trial_ctrl=trial_ctrl)
    if P >= 2:
        test, w = "paired signed-rank", stats.wilcoxon_paired(a, c.mean(axis=1))
    else:
        test, w = "one-sample signed-rank", stats.wilcoxon_paired(np.repeat(a, J), c.ravel())
    return {
        "pairs": int(P * J),
        "removals": int(P),
        "draws": int(J),
        **iv,
        "median_abl": float(np.median(a)) if a.size else math.nan,
        "median_ctrl": float(np.median(c)) if c.size else math.nan,
        "wilcoxon": w,
        "test": test,
    }


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
    s_lo, s_hi = stats.percentile_interval(changes_more(abl_r, ctrl_r).mean(axis=0))
    r_lo, r_hi = stats.percentile_interval(np.nanmedian(np.where(np.isfinite(ratio_r), ratio_r, np.nan), axis=0))
    finite = ratio[np.isfinite(ratio)]
    return {
        "pairs": int(a.size),
        "share_more": float(changes_more(abl, ctrl).mean()) if a.size else math.nan,
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
    control_draws: int = 1,
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
        bootstrap: resamples (trials and ablations).
        control_draws: controls per ablation and kind (the all-nonnormal ablation gets :data:`NONNORMAL_CONTROLS`).
        order: (m, 2) couplings least important first (selection batch), for the ``cumulative`` family (its
            prefixes at :func:`schurjax.studies.keep.curve_ks` lengths); without it that family is skipped.

    Returns:
        ``{family: {kind: compare_draws(...) + {"abl", "ctrl", "norm"} (per pair: relative loss changes and
        ||ΔW||_F)}}``.
    """
    import jax

    k_sub, k_ctrl, k_boot = jax.random.split(key, 3)
    from schurjax.studies.keep import curve_ks

    makers = {name: ablate.FAMILIES[name] for name in ("single", "block", "band", "all_nonnormal")}
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
        n_per = NONNORMAL_CONTROLS if fam == "all_nonnormal" else int(control_draws)
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
            plan.append((fam, kind, abl_idx, ctrl_idx.reshape(len(v), n_per)))
    m = measure(model, sf, ablate.Variants.concat(*pieces), batch, task, **options)
    delta = np.asarray(m.res.delta_loss, np.float64)
    trial = np.asarray(m.res.trial_delta_loss, np.float64)
    out: dict[str, Any] = {}
    for p_i, (fam, kind, a, c) in enumerate(plan):
        d = compare_draws(jax.random.fold_in(k_boot, p_i), delta[a], delta[c], trial[a], trial[c], bootstrap=bootstrap)
        a = np.repeat(a, c.shape[1])
        c = c.ravel()
        d.update(
            abl=[float(x) for x in m.rel[a]],
            ctrl=[float(x) for x in m.rel[c]],
            norm=[float(x) for x in m.res.delta_norm[a]],
        )
        out.setdefault(fam, {})[kind] = d
    return out
