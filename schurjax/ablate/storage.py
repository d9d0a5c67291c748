"""Compact storage of variant edits: segments that make each variant's ``dT`` on demand (host side, NumPy float64).

A segment holds ``count`` variants. Every segment follows :class:`Segment`; those that are cheaper to materialise
as dense ``(k, n, n)`` arrays also follow :class:`DenseSegment`, and those whose edits are multipliers on ``T``
(``T + dT = T ⊙ M``) follow :class:`MultiplierSegment`. :class:`~schurjax.ablate.Variants` selects variants by
``(segment, loc)`` pairs, so slicing and concatenation never copy the storage.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float, Int

from schurjax.errors import InputError

#: per-variant counts (k,), then rows, cols, values of all their entries, concatenated in variant order
Coo = tuple[Int[np.ndarray, " k"], Int[np.ndarray, " e"], Int[np.ndarray, " e"], Float[np.ndarray, " e"]]


@runtime_checkable
class Segment(Protocol):
    """``count`` variants whose edits are produced on demand, selected by position ``loc`` (k,) in the segment."""

    count: int

    def nnz(self) -> Int[np.ndarray, " count"]:
        """(count,) number of stored changed entries per variant."""
        ...

    def norms(self) -> Float[np.ndarray, " count"]:
        """(count,) ``||dT||_F`` per variant (NaN while it depends on a ``T`` not yet bound)."""
        ...

    def coo(self, loc: Int[np.ndarray, " k"], T: Float[np.ndarray, "n n"] | None) -> Coo:
        """The edits ``dT`` of the variants ``loc`` as coordinates (``T`` only for unbound masks)."""
        ...


@runtime_checkable
class DenseSegment(Segment, Protocol):
    """A segment whose edits are dense: ``dense`` is cheaper than scattering ``coo``."""

    def dense(self, loc: Int[np.ndarray, " k"], T: Float[np.ndarray, "n n"] | None) -> Float[np.ndarray, "k n n"]:
        """(k, n, n) edits ``dT`` of the variants ``loc``."""
        ...


@runtime_checkable
class MultiplierSegment(Segment, Protocol):
    """A segment whose edits are multipliers on ``T``: ``T + dT = T ⊙ M``."""

    def mult_coo(self, loc: Int[np.ndarray, " k"]) -> Coo:
        """The entries of ``M`` that differ from 1, as coordinates."""
        ...


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    offs = np.cumsum(counts) - counts
    return (np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(offs, counts) + np.repeat(starts, counts)).astype(
        np.int64
    )


def _stream(entropy: tuple[int, ...], code: int, key: np.ndarray) -> np.random.Generator:
    """The NumPy generator of one random control: seed words, control-kind code, ``(control_of, rep)``."""
    co, rep = (int(x) for x in key)
    return np.random.default_rng(np.random.SeedSequence([*entropy, code, co, rep]))


class _Sparse:
    """Explicit CSR: variant j adds vals[p] to T[rows[p], cols[p]] (multiplier mult[p]), p in ptr[j]:ptr[j+1]."""

    def __init__(self, ptr, rows, cols, vals, mult):
        self.ptr = np.asarray(ptr, dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cols = np.asarray(cols, dtype=np.int64)
        self.vals = np.asarray(vals, dtype=np.float64)
        self.mult = np.asarray(mult, dtype=np.float64)
        self.count = int(self.ptr.size - 1)

    @staticmethod
    def from_lists(entries: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> _Sparse:
        """One variant per ``(rows, cols, vals, mult)``."""
        counts = np.array([len(e[0]) for e in entries], dtype=np.int64)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        cat = [np.concatenate([e[i] for e in entries]) if entries else np.zeros(0) for i in range(4)]
        return _Sparse(ptr, *cat)

    def nnz(self) -> np.ndarray:
        return np.diff(self.ptr)

    def norms(self) -> np.ndarray:
        owner = np.repeat(np.arange(self.count), self.nnz())
        return np.sqrt(np.bincount(owner, weights=self.vals**2, minlength=self.count))

    def _gather(self, loc: np.ndarray, arr: np.ndarray) -> Coo:
        counts = self.ptr[loc + 1] - self.ptr[loc]
        take = _ranges(self.ptr[loc], counts)
        return counts, self.rows[take], self.cols[take], arr[take]

    def coo(self, loc, T):
        return self._gather(loc, self.vals)

    def mult_coo(self, loc):
        return self._gather(loc, self.mult)


class _Prefix:
    """Ordered entries (rows, cols, tvals); variant j changes the first ks[j] of them by factors[j] * tvals."""

    def __init__(self, rows, cols, tvals, ks, factors):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cols = np.asarray(cols, dtype=np.int64)
        self.tvals = np.asarray(tvals, dtype=np.float64)
        self.ks = np.asarray(ks, dtype=np.int64)
        self.factors = np.asarray(factors, dtype=np.float64)
        self.count = int(self.ks.size)

    def nnz(self) -> np.ndarray:
        return self.ks.copy()

    def norms(self) -> np.ndarray:
        cs = np.concatenate([[0.0], np.cumsum(self.tvals**2)])
        return np.abs(self.factors) * np.sqrt(cs[self.ks])

    def _gather(self, loc, per_variant) -> Coo:
        ks = self.ks[loc]
        take = _ranges(np.zeros(ks.size, np.int64), ks)
        return ks, self.rows[take], self.cols[take], per_variant(take, ks)

    def coo(self, loc, T):
        f = self.factors[loc]
        return self._gather(loc, lambda take, ks: self.tvals[take] * np.repeat(f, ks))

    def mult_coo(self, loc):
        f = self.factors[loc]
        return self._gather(loc, lambda take, ks: 1.0 + np.repeat(f, ks))


class _Mask:
    """Dense user masks (K, n, n) of multipliers on T; dT = T ⊙ (M - 1). T may be bound later (None until then)."""

    def __init__(self, masks: np.ndarray, T: np.ndarray | None, allow_diagonal: bool = False):
        self.masks = masks
        self.T = T
        self.allow_diagonal = bool(allow_diagonal)
        self.count = int(masks.shape[0])

    def nnz(self) -> np.ndarray:
        changed = self.masks != 1.0
        if self.T is not None:
            changed &= self.T[None] != 0.0
        return changed.reshape(self.count, -1).sum(axis=1).astype(np.int64)

    def norms(self) -> np.ndarray:
        if self.T is None:
            return np.full(self.count, np.nan)
        d = self.T[None] * (self.masks - 1.0)
        return np.sqrt(np.einsum("kij,kij->k", d, d))

    def _T(self, T):
        T = self.T if self.T is not None else T
        if T is None:
            raise InputError(
                "Variants.delta_T",
                None,
                "variants made by from_masks(masks) without sf need T; call variants.bind(sf) or pass T=sf.T",
            )
        return T

    def dense(self, loc, T):
        return self._T(T)[None] * (self.masks[loc] - 1.0)

    def coo(self, loc, T):
        d = self.dense(loc, T)
        k, r, c = np.nonzero(d)
        return np.bincount(k, minlength=len(loc)).astype(np.int64), r, c, d[k, r, c]

    def mult_coo(self, loc):
        m = self.masks[loc]
        k, r, c = np.nonzero(m != 1.0)
        return np.bincount(k, minlength=len(loc)).astype(np.int64), r, c, m[k, r, c]


class _Noise:
    """Gaussian dT rescaled to a given Frobenius norm, drawn on demand from (entropy, kind code, control_of, rep).

    ``support`` None: dense n x n; else (rows, cols): only these entries.
    """

    def __init__(self, entropy, code, keys, norms, n, support=None):
        self.entropy = tuple(int(e) for e in entropy)
        self.code = int(code)
        self.keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        self.target = np.asarray(norms, dtype=np.float64)
        self.n = int(n)
        self.support = support
        self.count = int(self.target.size)

    def _size(self) -> int:
        return self.n * self.n if self.support is None else int(self.support[0].size)

    def nnz(self) -> np.ndarray:
        return np.full(self.count, self._size(), dtype=np.int64)

    def norms(self) -> np.ndarray:
        return self.target.copy()

    def draw(self, j: int) -> np.ndarray:
        """The values of variant ``j`` (on the support), exactly of norm ``target[j]``."""
        g = _stream(self.entropy, self.code, self.keys[j]).standard_normal(self._size())
        s = float(np.linalg.norm(g))
        if self.target[j] == 0.0 or s == 0.0:
            return np.zeros_like(g)
        return g * (self.target[j] / s)

    def dense(self, loc, T):
        out = np.zeros((len(loc), self.n, self.n))
        for p, j in enumerate(loc):
            g = self.draw(int(j))
            if self.support is None:
                out[p] = g.reshape(self.n, self.n)
            else:
                out[p, self.support[0], self.support[1]] = g
        return out

    def coo(self, loc, T):
        if self.support is None:
            rr, cc = np.divmod(np.arange(self.n * self.n), self.n)
        else:
            rr, cc = self.support
        vals = [self.draw(int(j)) for j in loc]
        counts = np.full(len(loc), rr.size, dtype=np.int64)
        cat = np.concatenate(vals) if vals else np.zeros(0)
        return counts, np.tile(rr, len(loc)), np.tile(cc, len(loc)), cat


class _RandomSubset:
    """Removal of counts[j] entries drawn without replacement from a pool, on demand from (entropy, key)."""

    def __init__(self, entropy, code, keys, counts, rows, cols, tvals):
        self.entropy = tuple(int(e) for e in entropy)
        self.code = int(code)
        self.keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.rows, self.cols, self.tvals = rows, cols, tvals
        self.count = int(self.counts.size)
        self._norms = np.array([np.linalg.norm(self.tvals[self.pick(j)]) for j in range(self.count)])

    def pick(self, j: int) -> np.ndarray:
        """Sorted positions in the pool removed by variant ``j``."""
        rng = _stream(self.entropy, self.code, self.keys[j])
        return np.sort(rng.choice(self.tvals.size, size=int(self.counts[j]), replace=False))

    def nnz(self) -> np.ndarray:
        return self.counts.copy()

    def norms(self) -> np.ndarray:
        return self._norms.copy()

    def _gather(self, loc, fill) -> Coo:
        take = [self.pick(int(j)) for j in loc]
        cat = np.concatenate(take).astype(np.int64) if take else np.zeros(0, np.int64)
        return self.counts[loc], self.rows[cat], self.cols[cat], fill(cat)

    def coo(self, loc, T):
        return self._gather(loc, lambda cat: -self.tvals[cat])

    def mult_coo(self, loc):
        return self._gather(loc, lambda cat: np.zeros(cat.size))


def _haar(rng: np.random.Generator, p: int, r: int) -> np.ndarray:
    """(p, r) matrix with orthonormal columns, Haar-distributed (QR of a Gaussian with the sign of R's diagonal)."""
    g = rng.standard_normal((p, r))
    q, rr = np.linalg.qr(g)
    d = np.sign(np.diag(rr))
    d[d == 0] = 1.0
    return q * d[None, :]


class _LowRank:
    """Random low-rank dT = U diag(s) V^T on a row support x column support, drawn on demand from (entropy, key).

    Variant j lives on the rows ``rows[j]`` and columns ``cols[j]`` (index arrays) with singular values ``svals[j]``;
    U (p, r) and V (q, r) are Haar-random orthonormal frames, so ``||dT||_F = ||s||_2`` and ``rank(dT) = r``.
    """

    def __init__(self, entropy, code, keys, rows, cols, svals, n):
        self.entropy = tuple(int(e) for e in entropy)
        self.code = int(code)
        self.keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        self.rows = [np.asarray(r, dtype=np.int64) for r in rows]
        self.cols = [np.asarray(c, dtype=np.int64) for c in cols]
        self.svals = [np.asarray(s, dtype=np.float64) for s in svals]
        self.n = int(n)
        self.count = int(self.keys.shape[0])

    def nnz(self) -> np.ndarray:
        return np.array(
            [r.size * c.size if s.size else 0 for r, c, s in zip(self.rows, self.cols, self.svals, strict=True)],
            dtype=np.int64,
        )

    def norms(self) -> np.ndarray:
        return np.array([float(np.linalg.norm(s)) for s in self.svals])

    def draw(self, j: int) -> np.ndarray:
        """(p, q) values of variant ``j`` on its rows x cols."""
        s = self.svals[j]
        p, q = self.rows[j].size, self.cols[j].size
        if s.size == 0:
            return np.zeros((p, q))
        rng = _stream(self.entropy, self.code, self.keys[j])
        u, v = _haar(rng, p, s.size), _haar(rng, q, s.size)
        return (u * s[None, :]) @ v.T

    def dense(self, loc, T):
        out = np.zeros((len(loc), self.n, self.n))
        for p, j in enumerate(loc):
            j = int(j)
            if self.svals[j].size:
                out[p][np.ix_(self.rows[j], self.cols[j])] = self.draw(j)
        return out

    def coo(self, loc, T):
        counts, rr, cc, vv = [], [], [], []
        for j in loc:
            j = int(j)
            if self.svals[j].size == 0:
                counts.append(0)
                continue
            r, c = np.meshgrid(self.rows[j], self.cols[j], indexing="ij")
            rr.append(r.ravel())
            cc.append(c.ravel())
            vv.append(self.draw(j).ravel())
            counts.append(r.size)

        def cat(xs, dt):
            return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

        return np.array(counts, np.int64), cat(rr, np.int64), cat(cc, np.int64), cat(vv, np.float64)


class _Explicit:
    """Stored dense edits ``dT`` (K, n, n), float64: edits found by a search (the worst case), not drawn."""

    def __init__(self, dT: np.ndarray):
        self.dT = np.asarray(dT, dtype=np.float64)
        self.dT.setflags(write=False)
        self.count = int(self.dT.shape[0])

    def nnz(self) -> np.ndarray:
        return (self.dT != 0.0).reshape(self.count, -1).sum(axis=1).astype(np.int64)

    def norms(self) -> np.ndarray:
        return np.sqrt(np.einsum("kij,kij->k", self.dT, self.dT))

    def dense(self, loc, T):
        return self.dT[np.asarray(loc, dtype=np.int64)].copy()

    def coo(self, loc, T):
        d = self.dense(loc, T)
        k, r, c = np.nonzero(d)
        return np.bincount(k, minlength=len(loc)).astype(np.int64), r, c, d[k, r, c]
