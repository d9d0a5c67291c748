"""Which couplings the copy replay needs, and where they sit in the Schur order.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026): in the copy
task, autonomous replay needs some nonnormal couplings.

A coupling is *needed* when removing it alone breaks the replay: the replay's R² on the held-out batch falls below
``replay_r2`` (default 0.5). The needed couplings are mapped to the directed block links ``b -> a`` (source block
``b`` feeds target block ``a``, ``a < b``) that hold them. Those links form a directed acyclic graph on the Schur
modes; a *feed-forward line* is a directed path through it. The longest path is compared with a null: as many
links drawn at random among all coupled block pairs (:func:`chain_null`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from schurjax.studies import stats

__all__ = ["longest_chain", "chain_null", "replay_part"]


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


def replay_part(heldout: dict[str, Any], key: Any, *, replay_r2: float, draws: int = 1000) -> dict[str, Any]:
    """The couplings and block links the replay needs, from a held-out part (:func:`.keep.heldout_part`).

    Returns:
        ``needed_single`` (count), ``singles`` (their ``[i, j]``), ``links`` (block links ``[a, b]`` holding a
        needed coupling), ``needed_block`` (block-pair removals that break the replay), ``chain`` (blocks of the
        longest feed-forward line through the links) with ``chain_links`` and the null's median, 95th percentile
        and ``p`` (share of null draws at least as long), the |λ| of the chain's blocks, and the median block
        distance of the links against that of all coupled block pairs.
    """
    s, blk = heldout["single"], heldout["block"]
    n_blocks = len(heldout["blocks"]["abs_eig"])
    score = np.asarray(s["score"], np.float64)
    need = np.nonzero(score < replay_r2)[0]
    links = sorted({(int(s["target_block"][k]), int(s["source_block"][k])) for k in need})
    bscore = np.asarray(blk["score"], np.float64)
    bneed = [(int(blk["target_block"][k]), int(blk["source_block"][k])) for k in np.nonzero(bscore < replay_r2)[0]]
    all_pairs = np.array(sorted(zip(blk["target_block"], blk["source_block"], strict=True)), np.int64).reshape(-1, 2)
    chain = longest_chain(links, n_blocks)
    L = max(len(chain) - 1, 0)
    null = chain_null(key, all_pairs, len(links), n_blocks, draws=draws)
    dist = np.array([b - a for a, b in links], np.float64)
    all_dist = (all_pairs[:, 1] - all_pairs[:, 0]).astype(np.float64)
    abs_eig = np.asarray(heldout["blocks"]["abs_eig"], np.float64)
    return {
        "threshold": float(replay_r2),
        "base_score": float(heldout["base_score"]),
        "needed_single": int(need.size),
        "singles": [[int(s["row"][k]), int(s["col"][k])] for k in need],
        "links": [list(p) for p in links],
        "needed_block": len(bneed),
        "block_links": [list(p) for p in bneed],
        "chain": chain,
        "chain_links": L,
        "chain_abs_eig": [float(abs_eig[b]) for b in chain],
        "null_median": float(np.median(null)) if null.size else math.nan,
        "null_p95": float(np.percentile(null, 95)) if null.size else math.nan,
        "p": float((1 + np.sum(null >= L)) / (1 + null.size)) if links else math.nan,
        "median_distance": float(np.median(dist)) if dist.size else math.nan,
        "median_distance_all": float(np.median(all_dist)) if all_dist.size else math.nan,
        "n_blocks": n_blocks,
    }
