"""Which couplings the copy replay needs, and where they sit in the Schur order.

The paper finds that in the copy task, autonomous replay needs some nonnormal couplings.

A removal *breaks* the replay when the replay's R² falls below ``replay_r2`` (default 0.5). Three views:

* **Individually needed**: single couplings (and block pairs, bands) whose removal alone breaks the replay on the
  held-out batch.
* **The core**: couplings ordered by single-removal importance on the selection batch (largest R² drop first,
  then largest ``|Δloss|``); the core is the shortest prefix of that order whose joint removal breaks the replay
  there (batched bisection, :func:`schurjax.studies.compression.longest_prefix`). On the held-out batch it is
  judged three ways: removing the core (necessity), removing every coupling *but* the core (sufficiency), and
  removing as many random couplings (control).
* **Feed-forward lines**: the core's couplings are mapped to the directed block links ``b -> a`` (source block
  ``b`` feeds target block ``a``, ``a < b``) that hold them. Those links form a directed acyclic graph on the Schur
  modes; a feed-forward line is a directed path through it. Its longest path is compared with a null: as many
  links drawn at random among all coupled block pairs (:func:`chain_null`). The study's report adds a second
  null whose links have the core's own block distances (:func:`chain_null_matched`), since short links chain
  more easily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from schurjax.studies import stats

__all__ = ["longest_chain", "chain_null", "chain_null_matched", "replay_part"]


def longest_chain(edges: Sequence[tuple[int, int]], n_blocks: int) -> list[int]:
    """The longest directed path (most links) through links ``(a, b)`` = ``b -> a`` with ``a < b``.

    Returns:
        The blocks on the path from its source (highest index) to its end, e.g. ``[7, 4, 1]`` for ``7 -> 4 -> 1``
        (``[]`` without links).

    Example:
        >>> longest_chain([(1, 4), (4, 7), (0, 7)], 8)
        [7, 4, 1]
    """
    if not len(edges):
        return []
    into: dict[int, list[int]] = {}
    for a, b in edges:
        into.setdefault(int(a), []).append(int(b))
    best = np.zeros(n_blocks, np.int64)  # longest path (links) ending at block a
    prev = np.full(n_blocks, -1, np.int64)
    for a in range(n_blocks - 1, -1, -1):  # sources have higher indices: process them first
        for b in into.get(a, []):
            if best[b] + 1 > best[a]:
                best[a], prev[a] = best[b] + 1, b
    end = int(np.argmax(best))
    path = [end]
    while prev[path[-1]] >= 0:
        path.append(int(prev[path[-1]]))
    return path[::-1]


def chain_null(key: Any, pairs: np.ndarray, n_links: int, n_blocks: int, *, draws: int = 1000) -> np.ndarray:
    """Longest-path lengths (in links) of ``n_links`` links drawn at random without replacement from ``pairs``.

    Returns:
        (draws,) int.
    """
    rng = stats._rng(key)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.zeros(draws, np.int64)
    if n_links == 0 or len(pairs) == 0:
        return out
    for r in range(draws):
        pick = pairs[rng.choice(len(pairs), size=min(n_links, len(pairs)), replace=False)]
        out[r] = max(len(longest_chain([tuple(p) for p in pick], n_blocks)) - 1, 0)
    return out


def chain_null_matched(
    key: Any, pairs: np.ndarray, links: Sequence[tuple[int, int]], n_blocks: int, *, draws: int = 1000
) -> np.ndarray:
    """As :func:`chain_null`, but each drawn link has the block distance ``b - a`` of one of ``links``: the null
    keeps the core's distance profile (short links chain more easily), and only where they sit is random.

    Returns:
        (draws,) int.
    """
    rng = stats._rng(key)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    links = np.asarray(links, np.int64).reshape(-1, 2)
    out = np.zeros(draws, np.int64)
    if len(links) == 0 or len(pairs) == 0:
        return out
    dist = pairs[:, 1] - pairs[:, 0]
    need = {int(d): int(k) for d, k in zip(*np.unique(links[:, 1] - links[:, 0], return_counts=True), strict=True)}
    pools = {d: pairs[dist == d] for d in need}
    for r in range(draws):
        pick = [
            pools[d][rng.choice(len(pools[d]), size=min(k, len(pools[d])), replace=False)]
            for d, k in need.items()
            if len(pools[d])
        ]
        drawn = np.concatenate(pick) if pick else np.zeros((0, 2), np.int64)
        out[r] = max(len(longest_chain([tuple(p) for p in drawn], n_blocks)) - 1, 0)
    return out


def replay_part(
    model: Any,
    sf: Any,
    task: Any,
    selection: Any,
    heldout: Any,
    sel_part: dict[str, Any],
    held_part: dict[str, Any],
    key: Any,
    *,
    replay_r2: float,
    draws: int = 1000,
    **options: Any,
) -> dict[str, Any]:
    """What the replay needs (see the module docstring).

    Args:
        model, sf, task: the copy network, its Schur form and its task.
        selection, heldout: the two batches.
        sel_part, held_part: the network's selection and held-out parts (:mod:`schurjax.studies.keep`).
        key: ``jax.random.key``: controls and the chain null.
        replay_r2: the R² below which the replay counts as broken.
        draws: draws of the chain null.

    Returns:
        ``individually`` (counts of single couplings, block pairs and bands whose removal breaks the replay, and
        the lowest R² among single and block removals), ``core`` (its size, couplings ``[i, j]``, the held-out
        R² after removing it, after removing everything but it, and the median over random removals of as many
        couplings), ``links`` (block links ``[a, b]`` of the core), ``chain`` (blocks of the longest feed-forward
        line through them), ``chain_links``, the null's median, 95th percentile and ``p``, the chain blocks' |λ|,
        and the median block distance of the core's links against that of all coupled block pairs.
    """
    import jax

    from schurjax import ablate
    from schurjax.studies.compression import longest_prefix
    from schurjax.studies.measure import measure

    k_ctrl, k_null = jax.random.split(key)
    hs, hb, hband = held_part["single"], held_part["block"], held_part["band"]
    n_blocks = len(held_part["blocks"]["abs_eig"])
    entries = np.stack([np.asarray(hs["row"]), np.asarray(hs["col"])], axis=1).astype(np.int64).reshape(-1, 2)
    drop, rel = np.asarray(sel_part["single"]["drop"], np.float64), np.abs(np.asarray(sel_part["single"]["rel"]))
    order = np.lexsort((np.arange(len(entries)), -rel, -drop))  # most important first

    def intact(ordering: np.ndarray, ks: np.ndarray) -> np.ndarray:
        res = measure(model, sf, ablate.cumulative(sf, ordering, ks=ks), selection, task, **options).res
        return np.asarray(res.score) >= replay_r2

    k0, _ = longest_prefix(intact, entries[order], 0, len(order))
    core_idx = order[: min(k0 + 1, len(order))]
    core = entries[core_idx]
    rest = entries[np.setdiff1d(np.arange(len(entries)), core_idx)]
    parts = [ablate.cumulative(sf, core, ks=[len(core)])]
    if len(rest):
        parts.append(ablate.cumulative(sf, rest, ks=[len(rest)]))
    parts.append(ablate.matched_count(k_ctrl, sf, parts[0], n_per=8))
    res = measure(model, sf, ablate.Variants.concat(*parts), heldout, task, **options).res
    sc = np.asarray(res.score, np.float64)
    core_links = sorted({(int(hs["target_block"][k]), int(hs["source_block"][k])) for k in core_idx})
    all_pairs = np.array(sorted(zip(hb["target_block"], hb["source_block"], strict=True)), np.int64).reshape(-1, 2)
    chain = longest_chain(core_links, n_blocks)
    L = max(len(chain) - 1, 0)
    null = chain_null(k_null, all_pairs, len(core_links), n_blocks, draws=draws)
    dist = np.array([b - a for a, b in core_links], np.float64)
    all_dist = (all_pairs[:, 1] - all_pairs[:, 0]).astype(np.float64)
    abs_eig = np.asarray(held_part["blocks"]["abs_eig"], np.float64)
    s_score, b_score = np.asarray(hs["score"], np.float64), np.asarray(hb["score"], np.float64)
    band_score = np.asarray(hband["score"], np.float64)
    return {
        "threshold": float(replay_r2),
        "base_score": float(held_part["base_score"]),
        "individually": {
            "single": int(np.sum(s_score < replay_r2)),
            "block": int(np.sum(b_score < replay_r2)),
            "band": [int(d) for d, x in zip(hband["band"], band_score, strict=True) if x < replay_r2],
            "min_single_score": float(s_score.min()) if s_score.size else math.nan,
            "min_block_score": float(b_score.min()) if b_score.size else math.nan,
        },
        "couplings": int(len(entries)),
        "core_size": int(len(core)),
        "core": core.tolist(),
        "core_score": float(sc[0]),
        "rest_score": float(sc[1]) if len(rest) else math.nan,
        "random_score": float(np.median(sc[-8:])),
        "links": [list(p) for p in core_links],
        "chain": chain,
        "chain_links": L,
        "chain_abs_eig": [float(abs_eig[b]) for b in chain],
        "null_median": float(np.median(null)) if null.size else math.nan,
        "null_p95": float(np.percentile(null, 95)) if null.size else math.nan,
        "p": float((1 + np.sum(null >= L)) / (1 + null.size)) if core_links else math.nan,
        "median_distance": float(np.median(dist)) if dist.size else math.nan,
        "median_distance_all": float(np.median(all_dist)) if all_dist.size else math.nan,
        "n_blocks": n_blocks,
    }
