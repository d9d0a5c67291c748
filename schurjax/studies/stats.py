"""Statistics of the study: bootstrap intervals over trials, paired signed-rank tests, rank correlations and their
shuffled null.

Every figure of a study is computed on a batch of trials. Its uncertainty from the finite batch is estimated by
resampling trials with replacement (:func:`bootstrap_counts`) and recomputing the figure from per-trial sums
(``engine.evaluate(..., per_trial=True)``): a resample is a vector of trial multiplicities ``c`` (B,), and every
sum over trials ``sum_b x_b`` becomes ``sum_b c_b x_b``. The study's intervals are BCa intervals
(:func:`bca_interval`; the jackknife that sets their acceleration leaves one trial out, ``c = 1 - e_b``), which
contain their point estimate; comparisons of removals with controls resample the trials and, independently, the
removals with all their control draws (:func:`two_way_pairs`). :func:`percentile_interval` and
:func:`keep_share_interval` are the plain percentile intervals (biased for thresholded statistics: their interval need
not contain the point). Within a reported family of tests, p-values are adjusted by :func:`adjust_p` (Holm, or
Benjamini-Hochberg above :data:`BH_ABOVE` tests); :func:`effective_trials` says how many trials a loss rests on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from schurjax._seeds import numpy_rng
from schurjax.errors import InputError

__all__ = [
    "bootstrap_counts",
    "spearman_rows",
    "percentile_interval",
    "rel_change_replicates",
    "keep_share_interval",
    "wilcoxon_paired",
    "spearman",
    "spearman_null",
    "KEY_WORDS",
    "bca_interval",
    "jackknife_counts",
    "effective_trials",
    "FEW_TRIALS",
    "adjust_p",
    "family_method",
    "BH_ABOVE",
    "weighted_median_rows",
    "pair_statistics",
    "two_way_pairs",
]

KEY_WORDS = 2
"""A study key is a ``jax.random.key``; NumPy generators are seeded from its raw words."""


def _rng(key: Any) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (typed or raw uint32), so that draws follow the caller's key."""
    return numpy_rng("stats", key)


def bootstrap_counts(key: Any, n_trials: int, n_resamples: int) -> np.ndarray:
    """Trial multiplicities of ``n_resamples`` bootstrap resamples of ``n_trials`` trials.

    Args:
        key: ``jax.random.key(seed)``.
        n_trials: B, trials in the batch.
        n_resamples: R.

    Returns:
        (R, B) float64 counts; every row sums to B (a multinomial draw, i.e. B trials drawn with replacement).

    Example:
        >>> import jax
        >>> c = bootstrap_counts(jax.random.key(0), 8, 3)
        >>> c.shape, c.sum(axis=1).tolist()
        ((3, 8), [8.0, 8.0, 8.0])
    """
    for name, v in (("n_trials", n_trials), ("n_resamples", n_resamples)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise InputError("bootstrap_counts", None, f"{name} must be an int >= 1, got {v!r}")
    rng = _rng(key)
    idx = rng.integers(0, n_trials, size=(n_resamples, n_trials))
    counts = np.zeros((n_resamples, n_trials))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n_trials), idx.ravel()), 1.0)
    return counts


def percentile_interval(replicates: np.ndarray, *, level: float = 0.95, axis: int = 0) -> tuple[Any, Any]:
    """The percentile interval ``(lo, hi)`` of bootstrap replicates along ``axis`` (NaN replicates ignored).

    Example:
        >>> lo, hi = percentile_interval(np.arange(101.0))
        >>> round(float(lo), 6), round(float(hi), 6)
        (2.5, 97.5)
    """
    if not 0 < level < 1:
        raise InputError("percentile_interval", None, f"level must lie in (0, 1), got {level!r}")
    a = 100 * (1 - level) / 2
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(np.asarray(replicates, dtype=np.float64), [a, 100 - a], axis=axis)
    return lo, hi


def rel_change_replicates(counts: np.ndarray, trial_delta: np.ndarray, trial_base: np.ndarray) -> np.ndarray:
    """Relative loss change of every variant on every resample: ``sum_b c_b d_kb / sum_b c_b l_b``.

    Args:
        counts: (R, B) trial multiplicities (:func:`bootstrap_counts`).
        trial_delta: (K, B) per-trial loss changes (``SweepResult.trial_delta_loss``).
        trial_base: (B,) per-trial base losses (``SweepResult.trial_base_loss``).

    Returns:
        (K, R) relative loss changes. The normalisation of the loss (the batch's mask sum) cancels in the ratio.
    """
    num = np.asarray(trial_delta, np.float64) @ counts.T
    den = counts @ np.asarray(trial_base, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den[None, :]


def keep_share_interval(keep_replicates: np.ndarray, point: np.ndarray, *, level: float = 0.95) -> dict[str, float]:
    """Share of kept variants, with its bootstrap percentile interval (the study uses BCa intervals instead,
    :func:`schurjax.studies.measure.summarize_keep`: a percentile interval of a thresholded share need not contain
    the share, as in the example).

    Args:
        keep_replicates: (K, R) bool, whether variant k is kept on resample r.
        point: (K,) bool, whether it is kept on the batch itself.
        level: interval level.

    Returns:
        ``{"share", "lo", "hi", "n"}`` (``n`` = K).

    Example:
        >>> keep_share_interval(np.array([[True, True], [False, True]]), np.array([True, False]))
        {'share': 0.5, 'lo': 0.5125, 'hi': 0.9875, 'n': 2}
    """
    point = np.asarray(point, bool)
    if point.size == 0:
        return {"share": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    lo, hi = percentile_interval(np.asarray(keep_replicates, bool).mean(axis=0), level=level)
    return {"share": float(point.mean()), "lo": float(lo), "hi": float(hi), "n": int(point.size)}


def wilcoxon_paired(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Paired Wilcoxon signed-rank test of ``x - y`` (two-sided, SciPy), with the matched-pairs effect size.

    Pairs where either value is NaN are dropped; zero differences are dropped (Wilcoxon's convention). The effect
    size is the matched-pairs rank-biserial correlation ``r = (W+ - W-) / (W+ + W-)`` in [-1, 1]: +1 when every
    nonzero difference is positive.

    Args:
        x, y: (P,) paired values.

    Returns:
        ``{"n", "statistic", "p", "rank_biserial"}`` (NaN where fewer than one nonzero pair remains).

    Example:
        >>> r = wilcoxon_paired(np.array([2.0, 3.0, 5.0, 4.0]), np.array([1.0, 1.0, 1.0, 1.0]))
        >>> r["n"], r["rank_biserial"]
        (4, 1.0)
    """
    from scipy import stats as sps

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError("wilcoxon_paired", None, f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    d = d[d != 0]
    out = {"n": int(ok.sum()), "statistic": math.nan, "p": math.nan, "rank_biserial": math.nan}
    if d.size == 0:
        return out
    ranks = sps.rankdata(np.abs(d))
    w_plus, w_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    out["rank_biserial"] = float((w_plus - w_minus) / (w_plus + w_minus))
    res = sps.wilcoxon(d)
    out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation over the entries finite in both (average ranks for ties); NaN below 3 entries.

    Example:
        >>> spearman(np.array([1.0, 2.0, 3.0, np.nan]), np.array([10.0, 30.0, 20.0, 0.0]))
        0.5
    """
    from scipy.stats import rankdata

    # the arithmetic of spearman_rows (not scipy.stats.spearmanr, which agrees to rounding): a permutation test
    # compares this statistic with its shuffled copies, and ties must compare equal, not by their last bits
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float(np.dot(ra, rb) / np.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`spearman` of each row pair of ``a`` and ``b`` (R, k), row by row.

    Rows are ranked together over the columns where the first rows of both are finite: a shuffled profile keeps its
    empty cells, so every row has the same ones. A row whose empty cells differ is computed on its own.

    Returns:
        (R,) float, NaN where a row has fewer than 3 such columns or no spread.
    """
    from scipy.stats import rankdata

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a[0]) & np.isfinite(b[0])
    if ok.sum() < 3:
        return np.full(a.shape[0], math.nan)
    a, b = a[:, ok], b[:, ok]
    odd = ~(np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1))  # rows whose empty cells differ: one by one
    ra, rb = rankdata(np.where(odd[:, None], 0.0, a), axis=1), rankdata(np.where(odd[:, None], 0.0, b), axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    den = np.sqrt(np.einsum("rk,rk->r", ra, ra) * np.einsum("rk,rk->r", rb, rb))
    flat = (np.ptp(ra, axis=1) == 0) | (np.ptp(rb, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(flat, math.nan, np.einsum("rk,rk->r", ra, rb) / den)
    for r in np.flatnonzero(odd):
        out[r] = spearman(a[r], b[r])
    return out


def spearman_null(
    key: Any,
    cells: list[np.ndarray],
    values: list[np.ndarray],
    pairs: list[tuple[int, int]],
    profile: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    n_shuffles: int = 1000,
) -> dict[str, Any]:
    """Mean pairwise Spearman correlation of cell profiles, against a null from shuffling values among cells.

    Each model m has items (its couplings) with a cell index ``cells[m]`` and a value ``values[m]``;
    ``profile(cells, values)`` reduces them to one number per cell (NaN for an empty cell). The observed statistic
    is the mean Spearman correlation over ``pairs`` of models. The null shuffles the values among the items
    *within each model* (so each model keeps its cell sizes and its values), recomputes every profile and the
    statistic, ``n_shuffles`` times.

    Args:
        key: ``jax.random.key(seed)``.
        cells: per model, (m_i,) int cell index of each item.
        values: per model, (m_i,) value of each item.
        pairs: the model pairs (i, j) compared.
        profile: ``(cells, values) -> (n_cells,)``.
        n_shuffles: null draws.

    Returns:
        ``observed`` (mean over pairs), ``per_pair`` (list), ``null`` ((n_shuffles,) array), ``null_lo``/``null_hi``
        (its 2.5/97.5 percentiles), ``null_mean`` and ``p`` (one-sided, ``(1 + #null >= observed) / (1 + n)``).
    """
    rng = _rng(key)
    prof = [profile(c, v) for c, v in zip(cells, values, strict=True)]
    per_pair = [spearman(prof[i], prof[j]) for i, j in pairs]
    observed = float(np.nanmean(per_pair)) if np.isfinite(per_pair).any() else math.nan
    # every draw's profiles, (n_shuffles, n_cells) per model (one permutation per model and draw, in that order)
    shuffled = [np.empty((n_shuffles, p.size)) for p in prof]
    for r in range(n_shuffles):
        for m, (c, v) in enumerate(zip(cells, values, strict=True)):
            shuffled[m][r] = profile(c, v[rng.permutation(v.size)])
    rs = np.stack([spearman_rows(shuffled[i], shuffled[j]) for i, j in pairs]) if pairs else np.empty((0, 0))
    with warnings.catch_warnings():  # a draw without any finite correlation is NaN and skipped below
        warnings.simplefilter("ignore", RuntimeWarning)
        null = np.nanmean(rs, axis=0) if len(pairs) else np.full(n_shuffles, math.nan)
    finite = null[np.isfinite(null)]
    lo, hi = percentile_interval(finite) if finite.size else (math.nan, math.nan)
    p = (1 + int(np.sum(finite >= observed))) / (1 + finite.size) if math.isfinite(observed) else math.nan
    return {
        "observed": observed,
        "per_pair": per_pair,
        "null": null,
        "null_lo": float(lo),
        "null_hi": float(hi),
        "null_mean": float(finite.mean()) if finite.size else math.nan,
        "p": p,
    }


# ------------------------------------------------------------------------------------------------------------------
# BCa intervals, two-way (trials x removals) resampling, effective trials, multiplicity
# ------------------------------------------------------------------------------------------------------------------


def jackknife_counts(n: int) -> np.ndarray:
    """(n, n) leave-one-out multiplicities: row i is all ones but a zero at i.

    Example:
        >>> jackknife_counts(3).tolist()
        [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    return 1.0 - np.eye(int(n))


def _influence(jack: np.ndarray) -> np.ndarray:
    """Jackknife influence values ``(n - 1) (mean - theta_(i))`` along the last axis (NaN leave-outs ignored)."""
    jack = np.asarray(jack, np.float64)
    n = np.isfinite(jack).sum(axis=-1, keepdims=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return (n - 1) * (np.nanmean(jack, axis=-1, keepdims=True) - jack)


def _ndtr(x):
    from scipy.special import ndtr

    return ndtr(x)


def _ndtri(x):
    from scipy.special import ndtri

    return ndtri(x)


def _quantile_rows(rep: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row of ``rep`` (M, R), the quantile ``q[m]`` of its finite entries (linear interpolation, NumPy's rule)."""
    s = np.sort(np.where(np.isfinite(rep), rep, np.inf), axis=1)
    nf = np.isfinite(rep).sum(axis=1)
    out = np.full(rep.shape[0], np.nan)
    ok = (nf > 0) & np.isfinite(q)
    pos = np.clip(q[ok], 0.0, 1.0) * (nf[ok] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, nf[ok] - 1)
    rows = np.flatnonzero(ok)
    frac = pos - lo
    out[ok] = s[rows, lo] * (1 - frac) + s[rows, hi] * frac
    return out


def bca_interval(
    point: Any, replicates: np.ndarray, jackknives: Any, *, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated (BCa) bootstrap interval, vectorised over leading axes.

    Efron's BCa interval: ``z0 = Φ⁻¹(share of replicates below the point, ties counted half)``; the acceleration
    ``a = Σ U³ / (6 (Σ U²)^{3/2})`` from the jackknife influence values ``U`` of every resampled source (pass
    one leave-one-out array per source, e.g. trials and removals; their influence values are pooled); the ends are
    the replicates' quantiles at ``Φ(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z = ±Φ⁻¹((1 + level) / 2)``.
    An interval is widened to contain its point estimate where it would not (possible only when nearly every
    replicate lies on one side of it); NaN replicates are ignored.

    Args:
        point: (...) the statistic on the data.
        replicates: (..., R) the statistic on each bootstrap resample.
        jackknives: one array (..., n) or a sequence of arrays (..., n_s) of leave-one-out statistics.
        level: interval level.

    Returns:
        ``(lo, hi)``, each of shape (...).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.exponential(size=40)
        >>> reps = np.array([rng.choice(x, x.size).mean() for _ in range(2000)])
        >>> jack = np.array([np.delete(x, i).mean() for i in range(x.size)])
        >>> lo, hi = bca_interval(x.mean(), reps, jack)
        >>> bool(lo < x.mean() < hi)
        True
    """
    if not 0 < level < 1:
        raise InputError("bca_interval", None, f"level must lie in (0, 1), got {level!r}")
    point = np.asarray(point, np.float64)
    rep = np.asarray(replicates, np.float64)
    shape = rep.shape[:-1]
    rep = rep.reshape(-1, rep.shape[-1])
    pt = np.broadcast_to(point, shape).reshape(-1)
    jl = [jackknives] if isinstance(jackknives, np.ndarray) else list(jackknives)
    U = np.concatenate([_influence(np.asarray(j, np.float64).reshape(rep.shape[0], -1)) for j in jl], axis=1)
    with np.errstate(all="ignore"):
        num = np.nansum(U**3, axis=1)
        den = 6.0 * np.nansum(U**2, axis=1) ** 1.5
        a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        fin = np.isfinite(rep)
        nf = fin.sum(axis=1)
        below = (np.where(fin, rep, np.inf) < pt[:, None]).sum(axis=1) + 0.5 * (rep == pt[:, None]).sum(axis=1)
        frac = np.clip(below / np.maximum(nf, 1), 0.5 / np.maximum(nf, 1), 1 - 0.5 / np.maximum(nf, 1))
        z0 = _ndtri(frac)
        z = _ndtri((1 + level) / 2)
        q = [_ndtr(z0 + (z0 + zz) / (1 - a * (z0 + zz))) for zz in (-z, z)]
    lo, hi = (_quantile_rows(rep, qq) for qq in q)
    bad = ~np.isfinite(pt) | (nf == 0)
    lo = np.where(bad, np.nan, np.fmin(lo, pt))
    hi = np.where(bad, np.nan, np.fmax(hi, pt))
    return lo.reshape(shape), hi.reshape(shape)


def effective_trials(w: np.ndarray, axis: int = -1) -> np.ndarray:
    """Effective number of trials behind a sum of per-trial losses: ``(Σ w)² / Σ w²`` (``|w|`` used).

    B when every trial carries the same loss, 1 when one trial carries all of it.

    Example:
        >>> float(effective_trials(np.ones(8))), float(effective_trials(np.array([1.0, 0, 0, 0])))
        (8.0, 1.0)
    """
    w = np.abs(np.asarray(w, np.float64))
    with np.errstate(all="ignore"):
        return np.sum(w, axis=axis) ** 2 / np.sum(w * w, axis=axis)


FEW_TRIALS = 30
"""A loss figure resting on fewer effective trials than this (:func:`effective_trials`) is flagged in the report."""


def adjust_p(p: Any, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values within one family of tests (NaN entries are left out and stay NaN).

    ``"holm"``: Holm's step-down adjustment (controls the family-wise error rate); ``"bh"``: Benjamini-Hochberg
    (controls the false discovery rate; SciPy's ``false_discovery_control``).

    Example:
        >>> adjust_p([0.01, 0.04, 0.03], "holm").round(3).tolist()
        [0.03, 0.06, 0.06]
        >>> adjust_p([0.01, 0.04, 0.03, float("nan")], "bh").round(3).tolist()
        [0.03, 0.04, 0.04, nan]
    """
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    x = p[ok]
    if x.size == 0:
        return out
    if method == "holm":
        m = x.size
        order = np.argsort(x, kind="stable")
        adj = np.maximum.accumulate((m - np.arange(m)) * x[order])
        res = np.empty(m)
        res[order] = np.minimum(adj, 1.0)
    elif method == "bh":
        from scipy.stats import false_discovery_control

        res = false_discovery_control(x, method="bh")
    else:
        raise InputError("adjust_p", None, f"method must be 'holm' or 'bh', got {method!r}")
    out[ok] = res
    return out


def family_method(m: int) -> str:
    """The adjustment of a family of ``m`` tests: Holm up to :data:`BH_ABOVE` tests, Benjamini-Hochberg above."""
    return "holm" if m <= BH_ABOVE else "bh"


BH_ABOVE = 20
"""Families of more tests than this are adjusted by Benjamini-Hochberg (false discovery rate), smaller ones by Holm."""


def weighted_median_rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per column r, the weighted median of ``x[:, r]`` with weights ``w[:, r]`` (NaN entries left out): the
    smallest value whose cumulative weight reaches half the total.

    Example:
        >>> weighted_median_rows(np.array([[1.0], [2.0], [10.0]]), np.array([[1.0], [1.0], [3.0]])).tolist()
        [10.0]
    """
    x = np.asarray(x, np.float64)
    w = np.where(np.isfinite(x), np.asarray(w, np.float64), 0.0)
    order = np.argsort(np.where(np.isfinite(x), x, np.inf), axis=0)
    xs, ws = np.take_along_axis(x, order, 0), np.take_along_axis(w, order, 0)
    cw = np.cumsum(ws, axis=0)
    tot = cw[-1]
    first = np.argmax(cw >= 0.5 * tot[None, :] - 1e-12 * tot[None, :], axis=0)
    out = xs[first, np.arange(x.shape[1])]
    return np.where(tot > 0, out, np.nan)


def pair_statistics(a: np.ndarray, c: np.ndarray, unit_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of pairs where ``|a| > |c|`` and median ``|a| / |c|``, each removal weighted by ``unit_w``.

    Args:
        a: (P, S) loss change of each of P removals in S settings (resamples).
        c: (P, J, S) loss changes of its J controls.
        unit_w: (P, S) multiplicity of each removal (1 on the data, bootstrap or jackknife counts).

    Returns:
        ``share`` (S,) and ``ratio`` (S,); every (removal, control) pair counts ``unit_w / J``.
    """
    a, c = np.abs(a), np.abs(c)
    J = c.shape[1]
    more = (a[:, None, :] > c).mean(axis=1)
    with np.errstate(all="ignore"):
        share = np.sum(unit_w * more, axis=0) / np.sum(unit_w, axis=0)
        ratio = a[:, None, :] / c
    ratio = np.where(np.isfinite(ratio), ratio, np.nan).reshape(-1, a.shape[1])
    ratio_w = np.repeat(unit_w, J, axis=0) / J
    return share, weighted_median_rows(ratio, ratio_w)


def two_way_pairs(
    key: Any,
    abl: np.ndarray,
    ctrl: np.ndarray,
    *,
    n_resamples: int,
    level: float = 0.95,
    trial_abl: np.ndarray | None = None,
    trial_ctrl: np.ndarray | None = None,
    resample_units: bool | None = None,
) -> dict[str, float]:
    """BCa intervals of the pair share and median ratio that cover trials, control draws and the removal subset.

    Each bootstrap resample draws the trials (when per-trial sums are given) and, independently, the removals with
    replacement, each removal with all its J controls (so the variation between control draws and between removals
    enters every replicate). The jackknife for the acceleration leaves out one trial and one removal at a time.

    Args:
        key: ``jax.random.key``.
        abl: (P,) loss change of each removal; ctrl: (P, J) of its controls.
        n_resamples: R.
        level: interval level.
        trial_abl: (P, B) per-trial loss changes of the removals; trial_ctrl: (P, J, B) of the controls (optional;
            ``abl = trial_abl.sum(-1)`` up to a common normalisation).
        resample_units: resample the removals too (default: when there are at least 2); with one removal and its
            J controls (a one-sample comparison) only the trials are resampled.

    Returns:
        ``share_more``, ``share_lo``, ``share_hi``, ``median_ratio``, ``ratio_lo``, ``ratio_hi``.
    """
    import jax

    abl, ctrl = np.asarray(abl, np.float64), np.asarray(ctrl, np.float64)
    P, J = ctrl.shape
    k_t, k_u = jax.random.split(key)
    share0, ratio0 = pair_statistics(abl[:, None], ctrl[:, :, None], np.ones((P, 1)))
    out = {"share_more": float(share0[0]), "median_ratio": float(ratio0[0])}
    if P == 0:
        return {**out, "share_lo": math.nan, "share_hi": math.nan, "ratio_lo": math.nan, "ratio_hi": math.nan}
    if resample_units is None:
        resample_units = P >= 2
    units = bootstrap_counts(k_u, P, n_resamples).T if resample_units else np.ones((P, n_resamples))  # (P, R)
    if trial_abl is not None:
        B = trial_abl.shape[-1]
        tc = bootstrap_counts(k_t, B, n_resamples)
        ar, cr = np.asarray(trial_abl, np.float64) @ tc.T, np.asarray(trial_ctrl, np.float64) @ tc.T
        jt = jackknife_counts(B)
        aj, cj = np.asarray(trial_abl) @ jt.T, np.asarray(trial_ctrl) @ jt.T
        sj_t, rj_t = pair_statistics(aj, cj, np.ones((P, B)))
    else:
        ar, cr = np.repeat(abl[:, None], n_resamples, 1), np.repeat(ctrl[:, :, None], n_resamples, 2)
        sj_t = rj_t = None
    share_r, ratio_r = pair_statistics(ar, cr, units)
    js, jr = [], []
    if sj_t is not None:
        js.append(sj_t)
        jr.append(rj_t)
    if resample_units:
        ju = jackknife_counts(P).T  # (P, P): column i leaves removal i out
        sj_u, rj_u = pair_statistics(np.repeat(abl[:, None], P, 1), np.repeat(ctrl[:, :, None], P, 2), ju)
        js.append(sj_u)
        jr.append(rj_u)
    if not js:
        js = jr = [np.zeros((1, 1))]
    out["share_lo"], out["share_hi"] = (float(x) for x in bca_interval(share0[0], share_r, js, level=level))
    out["ratio_lo"], out["ratio_hi"] = (float(x) for x in bca_interval(ratio0[0], ratio_r, jr, level=level))
    return out
