"""Statistics of the study: bootstrap intervals over trials, paired signed-rank tests, rank correlations and their
shuffled null.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

Every figure of a study is computed on a batch of trials. Its uncertainty from the finite batch is estimated by
resampling trials with replacement (:func:`bootstrap_counts`) and recomputing the figure from per-trial sums
(``engine.evaluate(..., per_trial=True)``): a resample is a vector of trial multiplicities ``c`` (B,), and every
sum over trials ``sum_b x_b`` becomes ``sum_b c_b x_b``. Intervals are percentile intervals (95 % by default).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

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
]

KEY_WORDS = 2
"""A study key is a ``jax.random.key``; NumPy generators are seeded from its raw words."""


def _rng(key: Any) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (typed or raw uint32), so that draws follow the caller's key."""
    import jax

    if getattr(key, "dtype", None) is not None and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        words = np.asarray(jax.random.key_data(key)).ravel()
    else:
        words = np.asarray(key, dtype=np.uint32).ravel()
    if words.size == 0:
        raise TypeError(f"stats: key must be a jax.random.key(seed), got {key!r}")
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


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
            raise ValueError(f"bootstrap_counts: {name} must be an int >= 1, got {v!r}")
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
        raise ValueError(f"percentile_interval: level must lie in (0, 1), got {level!r}")
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
    """Share of kept variants, with its bootstrap percentile interval.

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
        raise ValueError(f"wilcoxon_paired: x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
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
