"""Do different trained solutions need the same couplings? Importance profiles in a frame that does not depend on
the basis, compared across seeds and sizes against a shuffled null.

Two networks never share a Schur basis, so couplings cannot be matched one to one. Each coupling is mapped to a
*cell* defined by its spectral context instead:

* ``"modulus"``: the |λ| quantile bins (``bins`` per axis, quantiles over each network's own blocks) of its source
  and its target block;
* ``"distance"``: its block distance ``b - a`` relative to the number of blocks, in ``2 * bins`` equal bins.

A coupling's importance is its rank among the network's single removals by held-out ``|Δloss| / loss`` (0 least,
1 most important); a network's profile is the mean importance per cell. Profiles of two networks are compared by
the Spearman correlation over the cells both populate. The null shuffles importance among the couplings of each
network (cell sizes kept) and recomputes everything (:func:`schurjax.studies.stats.spearman_null`).

Profiles of any two trained networks share some structure (couplings between large-|λ| modes matter more in every
task), so agreement beyond the shuffled null does not yet say that *seeds of one task* agree. :func:`task_null`
asks that: the same mean correlation over groups of networks drawn at random from all tasks of the same sizes (a
permutation test of the task labels).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from schurjax.errors import InputError
from schurjax.studies import stats

__all__ = ["cells", "importance_ranks", "profile", "compare", "jobs", "task_null", "CELL_KINDS"]

CELL_KINDS = ("modulus", "distance")


def importance_ranks(rel: np.ndarray) -> np.ndarray:
    """Ranks of ``|rel|`` scaled to [0, 1] (average ranks for ties; NaN counts as most important).

    Example:
        >>> importance_ranks(np.array([0.1, -0.5, 0.0])).tolist()
        [0.5, 1.0, 0.0]
    """
    from scipy.stats import rankdata

    a = np.abs(np.asarray(rel, np.float64))
    a = np.where(np.isfinite(a), a, np.inf)
    if a.size < 2:
        return np.zeros(a.size)
    return (rankdata(a) - 1) / (a.size - 1)


def cells(heldout: dict[str, Any], kind: str, bins: int) -> tuple[np.ndarray, int]:
    """The cell of each single coupling of a held-out part, and the number of cells.

    Returns:
        ((m,) int cell index, n_cells).
    """
    s = heldout["single"]
    src, tgt = np.asarray(s["source_block"], np.int64), np.asarray(s["target_block"], np.int64)
    if kind == "modulus":
        mod = np.asarray(heldout["blocks"]["abs_eig"], np.float64)
        edges = np.quantile(mod, np.linspace(0, 1, bins + 1)[1:-1])
        q = np.searchsorted(edges, mod, side="right")  # bin of each block, 0 (smallest |λ|) .. bins-1
        return q[src] * bins + q[tgt], bins * bins
    if kind == "distance":
        nb = len(heldout["blocks"]["abs_eig"])
        rel = (src - tgt) / max(nb - 1, 1)
        nbin = 2 * bins
        return np.minimum((rel * nbin).astype(np.int64), nbin - 1), nbin
    raise InputError("profiles.cells", None, f"kind must be one of {CELL_KINDS}, got {kind!r}")


def profile(cell: np.ndarray, value: np.ndarray, n_cells: int) -> np.ndarray:
    """Mean value per cell, NaN for empty cells."""
    cnt = np.bincount(cell, minlength=n_cells).astype(np.float64)
    tot = np.bincount(cell, weights=value, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / cnt, np.nan)


def jobs(models: list[dict[str, Any]]) -> dict[str, tuple[list[str], list[tuple[int, int]]]]:
    """The comparisons a study makes, name -> (model ids, index pairs into them):

    * ``"<task> n=<n>"``: every pair of seeds of one task and size;
    * ``"<task> n=<n1> vs n=<n2>"``: every seed of one size against every seed of the other;
    * ``"between tasks n=<n>"``: every pair of networks of *different* tasks at one size (a reference: how alike
      profiles are when the task differs).
    """
    by: dict[tuple[str, int], list[str]] = {}
    for m in models:
        by.setdefault((m["task"], int(m["n_hidden"])), []).append(m["id"])
    out: dict[str, tuple[list[str], list[tuple[int, int]]]] = {}
    for (task, n), ids in by.items():
        out[f"{task} n={n}"] = (ids, list(itertools.combinations(range(len(ids)), 2)))
    sizes = sorted({n for _, n in by})
    for task in sorted({t for t, _ in by}):
        for n1, n2 in itertools.combinations(sizes, 2):
            a, b = by.get((task, n1), []), by.get((task, n2), [])
            out[f"{task} n={n1} vs n={n2}"] = (a + b, [(i, len(a) + j) for i in range(len(a)) for j in range(len(b))])
    for n in sizes:
        ids = [m["id"] for m in models if int(m["n_hidden"]) == n]
        task_of = {m["id"]: m["task"] for m in models}
        pairs = [(i, j) for i, j in itertools.combinations(range(len(ids)), 2) if task_of[ids[i]] != task_of[ids[j]]]
        out[f"between tasks n={n}"] = (ids, pairs)
    return {k: v for k, v in out.items() if v[1]}


def compare(
    key: Any,
    parts: dict[str, dict[str, Any]],
    comparisons: dict[str, tuple[list[str], list[tuple[int, int]]]],
    *,
    kind: str,
    bins: int,
    draws: int = 1000,
) -> dict[str, Any]:
    """Profile similarity for each comparison (see :func:`jobs`), against the shuffled null.

    Args:
        key: ``jax.random.key``.
        parts: model id -> its held-out part.
        comparisons: name -> (model ids, index pairs compared).
        kind: cell kind (:data:`CELL_KINDS`).
        bins: bins per axis.
        draws: null draws.

    Returns:
        name -> ``{"observed", "null_mean", "null_lo", "null_hi", "p", "pairs", "per_pair", "ids", "profiles"}``
        (mean pairwise Spearman correlation and its shuffled null; the per-model profiles for figures).
    """
    import jax

    out: dict[str, Any] = {}
    for g, name in enumerate(sorted(comparisons)):
        ids, pairs = comparisons[name]
        cs, vs, n_cells = [], [], 0
        for mid in ids:
            c, n_cells = cells(parts[mid], kind, bins)
            cs.append(c)
            vs.append(importance_ranks(parts[mid]["single"]["rel"]))
        res = stats.spearman_null(
            jax.random.fold_in(key, g), cs, vs, pairs, lambda c, v, n=n_cells: profile(c, v, n), n_shuffles=draws
        )
        out[name] = {
            "observed": res["observed"],
            "null_mean": res["null_mean"],
            "null_lo": res["null_lo"],
            "null_hi": res["null_hi"],
            "p": res["p"],
            "pairs": len(pairs),
            "per_pair": [float(x) for x in res["per_pair"]],
            "ids": list(ids),
            "profiles": [profile(c, v, n_cells).tolist() for c, v in zip(cs, vs, strict=True)],
        }
    return out


def task_null(
    key: Any, parts: dict[str, dict[str, Any]], models: list[dict[str, Any]], *, kind: str, bins: int, draws: int = 1000
) -> dict[str, dict[str, float]]:
    """Permutation test of the task labels for each within-task comparison of :func:`jobs`.

    For ``"<task> n=<n>"`` (g seeds) the statistic is the mean pairwise Spearman correlation of their profiles; its
    null draws g networks at random from every network of size n (any task) and takes the same mean. For
    ``"<task> n=<n1> vs n=<n2>"`` it draws as many networks of each size.

    Args:
        key: ``jax.random.key``.
        parts: model id -> its held-out part.
        models: model records (``id``, ``task``, ``n_hidden``).
        kind, bins: the cells (:func:`cells`).
        draws: random groups.

    Returns:
        name -> ``{"p_task", "task_mean", "task_lo", "task_hi"}`` (one-sided p; the null's mean and 95 % range).
    """
    rng = stats._rng(key)
    have = [m for m in models if m["id"] in parts]
    prof = {}
    for m in have:
        c, n_cells = cells(parts[m["id"]], kind, bins)
        prof[m["id"]] = profile(c, importance_ranks(parts[m["id"]]["single"]["rel"]), n_cells)
    by_size: dict[int, list[dict[str, Any]]] = {}
    for m in have:
        by_size.setdefault(int(m["n_hidden"]), []).append(m)

    def matrix(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> np.ndarray:
        return np.array([[stats.spearman(prof[x["id"]], prof[y["id"]]) for y in b] for x in a], np.float64)

    def result(observed: float, null: np.ndarray) -> dict[str, float]:
        null = null[np.isfinite(null)]
        if not null.size or not np.isfinite(observed):
            return {"p_task": float("nan"), "task_mean": float("nan"), "task_lo": float("nan"), "task_hi": float("nan")}
        lo, hi = stats.percentile_interval(null)
        return {
            "p_task": (1 + int(np.sum(null >= observed))) / (1 + null.size),
            "task_mean": float(null.mean()),
            "task_lo": float(lo),
            "task_hi": float(hi),
        }

    out: dict[str, dict[str, float]] = {}
    sizes = sorted(by_size)
    for n in sizes:
        ms = by_size[n]
        S = matrix(ms, ms)
        for task in sorted({m["task"] for m in ms}):
            g = [i for i, m in enumerate(ms) if m["task"] == task]
            if len(g) < 2 or len(g) == len(ms):
                continue
            obs = float(np.nanmean(S[np.ix_(g, g)][np.triu_indices(len(g), 1)]))
            null = np.empty(draws)
            for r in range(draws):
                pick = np.sort(rng.choice(len(ms), size=len(g), replace=False))
                null[r] = np.nanmean(S[np.ix_(pick, pick)][np.triu_indices(len(g), 1)])
            out[f"{task} n={n}"] = result(obs, null)
    for n1, n2 in itertools.combinations(sizes, 2):
        a, b = by_size[n1], by_size[n2]
        C = matrix(a, b)
        for task in sorted({m["task"] for m in a} & {m["task"] for m in b}):
            ga = [i for i, m in enumerate(a) if m["task"] == task]
            gb = [j for j, m in enumerate(b) if m["task"] == task]
            if len(ga) == len(a) and len(gb) == len(b):
                continue
            obs = float(np.nanmean(C[np.ix_(ga, gb)]))
            null = np.empty(draws)
            for r in range(draws):
                pa = rng.choice(len(a), size=len(ga), replace=False)
                pb = rng.choice(len(b), size=len(gb), replace=False)
                null[r] = np.nanmean(C[np.ix_(pa, pb)])
            out[f"{task} n={n1} vs n={n2}"] = result(obs, null)
    return out
