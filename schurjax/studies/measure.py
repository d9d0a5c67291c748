"""One measurement of a study: a set of weight variants on one batch, with the per-trial sums a bootstrap needs.

:func:`measure` runs :func:`schurjax.evaluate` with ``per_trial=True`` and the task's score parts
(:mod:`schurjax.studies.scoring`), and returns a :class:`Measurement`: the per-variant figures (relative loss change,
score drop, output distance) and, for any trial multiplicities ``counts`` (R, B), their replicates.

Every evaluation of a study goes through :func:`measure`, with the same options and with the variant set padded by
zero edits to a multiple of one chunk size per path (at most :data:`MAX_CHUNK`), so that a whole study compiles a
handful of programs per batch shape instead of one per set size.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from schurjax.studies import stats
from schurjax.studies.protocol import keeps_loss, keeps_score
from schurjax.studies.scoring import ScoreParts, score_parts

__all__ = ["Measurement", "measure", "summarize_keep"]

_CHUNK = 256  # variants per block when forming (K, R, p) score replicates
MAX_CHUNK = 64
"""Variants per compiled program of a study's shared-path evaluations, and the largest on the dense path."""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Per-variant figures of one evaluation, with per-trial sums for resampling.

    Attributes:
        res: the engine's SweepResult (``trial_delta_loss``, ``trial_base_loss`` filled; ``trial_stats`` when the
            task has score parts).
        parts: the task's score parts, or None.
    """

    res: Any
    parts: ScoreParts | None

    def __len__(self) -> int:
        return len(self.res)

    @property
    def rel(self) -> np.ndarray:
        """(K,) relative loss change."""
        return np.asarray(self.res.rel_delta_loss, np.float64)

    @property
    def drop(self) -> np.ndarray:
        """(K,) task-score drop, ``base_score - score`` (positive: worse)."""
        return float(self.res.base_score) - np.asarray(self.res.score, np.float64)

    def rel_replicates(self, counts: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """(K', R) relative loss change of the variants ``idx`` (default all) on each resample."""
        d = self.res.trial_delta_loss if idx is None else self.res.trial_delta_loss[idx]
        return stats.rel_change_replicates(counts, d, self.res.trial_base_loss)

    def delta_replicates(self, counts: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """(K', R) loss change on each resample, ``sum_b c_b d_kb`` (the loss change itself when every trial has the
        same mask weight, as in the built-in tasks; in general proportional to it with one factor per resample,
        which cancels in every comparison of variants on the same resample)."""
        d = self.res.trial_delta_loss if idx is None else self.res.trial_delta_loss[idx]
        return np.asarray(d, np.float64) @ counts.T

    def drop_replicates(self, counts: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray | None:
        """(K', R) score drop on each resample, or None when the task has no score parts."""
        if self.parts is None or self.res.trial_stats is None:
            return None
        ts = self.res.trial_stats if idx is None else self.res.trial_stats[idx]
        base = self.parts.combine(counts @ np.asarray(self.res.base_trial_stats, np.float64))  # (R,)
        out = np.empty((ts.shape[0], counts.shape[0]))
        for a in range(0, ts.shape[0], _CHUNK):
            block = np.asarray(ts[a : a + _CHUNK], np.float64)
            sums = np.stack([block[:, :, j] @ counts.T for j in range(block.shape[2])], axis=-1)  # (k, R, p), BLAS
            out[a : a + _CHUNK] = base[None, :] - self.parts.combine(sums)
        return out


def measure(model: Any, sf: Any, variants: Any, batch: Any, task: Any, **options: Any) -> Measurement:
    """Evaluate ``variants`` of ``model`` on ``batch`` with per-trial sums and the task's score parts.

    Args:
        model, sf, variants, batch, task: as for :func:`schurjax.evaluate`.
        **options: more options of :func:`schurjax.evaluate` (``progress``, ``options`` or its fields, ...).

    Returns:
        :class:`Measurement`.
    """
    from schurjax import engine

    parts = None if task is None else score_parts(task)
    n = int(sf.n)
    sparse = np.asarray(variants.nnz) <= max(engine.SHARED_MIN_NNZ, n // 4)  # what path="auto" would do alone
    groups = [(path, np.nonzero(sel)[0]) for path, sel in (("shared", sparse), ("dense", ~sparse)) if sel.any()]
    results = [_evaluate(model, sf, variants[idx], batch, task, parts, path, **options) for path, idx in groups]
    if len(results) == 1:
        return Measurement(results[0], parts)
    order = np.argsort(np.concatenate([idx for _, idx in groups]), kind="stable")
    return Measurement(_join(results, order), parts)


def _evaluate(
    model: Any, sf: Any, variants: Any, batch: Any, task: Any, parts: ScoreParts | None, path: str, **options: Any
) -> Any:
    """One engine call on one path, padded with zero edits to a multiple of the chunk, cut back afterwards."""
    from schurjax import ablate, engine

    K = len(variants)
    n, (B, T, _), n_out = int(sf.n), np.shape(batch.inputs), int(np.shape(batch.targets)[2])
    # shared path: MAX_CHUNK (fewer dispatches; faster than the cache-sized chunk on a loaded 2-core machine);
    # dense path: the engine's chunk (its chunks run concurrently on the cores), at most MAX_CHUNK
    chunk = (
        MAX_CHUNK
        if path == "shared"
        else min(MAX_CHUNK, engine.auto_chunk_size(path, n=n, B=int(B), T=int(T), n_out=n_out))
    )
    pad = -K % chunk
    if pad:  # zero edits: a removal of no coupling (prefix of length 0)
        zero = ablate.cumulative(sf, np.asarray(sf.couplings[:1]), ks=np.zeros(pad, np.int64))
        variants = ablate.Variants.concat(variants, zero)
    res = engine.evaluate(
        model,
        sf,
        variants,
        batch,
        task=task,
        per_trial=True,
        path=path,
        compiled_chunk=chunk,
        trial_stats=None if parts is None else parts.parts,
        **options,
    )
    return _cut(res, K) if pad else res


_PER_VARIANT_SKIP = ("trial_base_loss", "base_trial_stats")


def _join(results: list[Any], order: np.ndarray) -> Any:
    """SweepResults of disjoint variant groups as one, in the original order (base figures of the first group;
    every group ran the same unablated model on the same batch)."""
    first = results[0]
    fields = {f.name: getattr(first, f.name) for f in dataclasses.fields(first)}
    for name, value in fields.items():
        if isinstance(value, np.ndarray) and name not in _PER_VARIANT_SKIP:
            fields[name] = np.concatenate([getattr(r, name) for r in results])[order]
    labels = [lab for r in results for lab in r.labels]
    fields["labels"] = [labels[i] for i in order]
    return type(first)(**fields)


def _cut(res: Any, K: int) -> Any:
    """The first K variants of a SweepResult."""
    fields = {f.name: getattr(res, f.name) for f in dataclasses.fields(res)}
    for name, value in fields.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and name not in _PER_VARIANT_SKIP:
            fields[name] = value[:K]
    fields["labels"] = list(res.labels)[:K]
    return type(res)(**fields)


def summarize_keep(
    m: Measurement, idx: np.ndarray, counts: np.ndarray, *, tau: float, eps: float, sides: str = "one"
) -> dict[str, Any]:
    """Keep shares of the variants ``idx`` under both criteria, with BCa intervals over the trials.

    Args:
        m: the measurement; idx: the variants; counts: (R, B) bootstrap multiplicities of the trials.
        tau, eps: the criteria; sides: the loss criterion's form (:func:`schurjax.studies.protocol.keeps_loss`).

    Returns:
        ``{"loss": {share, lo, hi, n}, "score": {share, lo, hi, n}}`` (score interval NaN without score parts).
    """
    idx = np.asarray(idx, np.int64)
    B = counts.shape[1]
    jack = stats.jackknife_counts(B)
    out: dict[str, Any] = {}

    def share(point, reps, jk):
        if point.size == 0:
            return {"share": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
        p = float(point.mean())
        lo, hi = stats.bca_interval(p, reps.mean(axis=0), jk.mean(axis=0))
        return {"share": p, "lo": float(lo), "hi": float(hi), "n": int(point.size)}

    out["loss"] = share(
        keeps_loss(m.rel[idx], tau, sides),
        keeps_loss(m.rel_replicates(counts, idx), tau, sides),
        keeps_loss(m.rel_replicates(jack, idx), tau, sides),
    )
    drop_r = m.drop_replicates(counts, idx)
    point = keeps_score(m.drop[idx], eps)
    if drop_r is None:
        out["score"] = {
            "share": float(point.mean()) if point.size else math.nan,
            "lo": math.nan,
            "hi": math.nan,
            "n": int(point.size),
        }
    else:
        out["score"] = share(point, keeps_score(drop_r, eps), keeps_score(m.drop_replicates(jack, idx), eps))
    return out
