"""Ablation families and random controls in ordered real Schur coordinates (host side, NumPy float64).

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

Every variant ``k`` is a weight edit in Schur coordinates::

    W_k = Q (T + dT_k) Q^T,        ||W_k - W||_F = ||dT_k||_F      (Q orthogonal)

A coupling ablation with a 0/1 mask ``M`` that keeps the diagonal blocks is ``dT = T ⊙ (M - 1)``; it leaves
``T + dT`` quasi-triangular with the same diagonal blocks, so every family here preserves the spectrum of ``W``.
A coupling ``T[i, j]`` (``i`` in block ``a``, ``j`` in block ``b``, ``a < b``) carries ``z_j`` into ``z_i``
(``z = Q^T h``): a directed link from the *source* block ``b`` to the *target* block ``a``.

Families (each takes a :class:`~schurjax.schur.SchurForm` first). :data:`FAMILIES` is the one registry: its key is
the ``family`` field of every label the function makes. The families that need nothing but the Schur form
(:data:`SF_ONLY_FAMILIES`: single, block, band, all_nonnormal, eigen_groups at its default threshold) are the ones
``schurjax sweep --families`` accepts; top_k, cumulative and scaling need arguments and are used from Python:

=================  ========================  ===================================
name / ``family``  function                  arguments besides ``sf``
=================  ========================  ===================================
``single``         :func:`single_couplings`  none (see :data:`SF_ONLY_FAMILIES`)
``block``          :func:`block_couplings`   none
``band``           :func:`bands`             none
``all_nonnormal``  :func:`all_nonnormal`     none
``eigen_groups``   :func:`eigen_groups`      ``threshold`` (default 0.9)
``top_k``          :func:`top_k`             ``ks`` (required)
``cumulative``     :func:`cumulative`        ``order_idx`` (required), ``ks``
``scaling``        :func:`scaling`           ``alphas`` (required), ``which``
=================  ========================  ===================================

User masks: :func:`from_masks` (``family="mask"`` unless given). Controls, reproducible from a key (``family``
``"control"``, ``control_kind`` one of :data:`CONTROL_KINDS`): :func:`matched_norm`, :func:`matched_count`,
:func:`coupling_noise`, or several at once with :func:`controls`.

Every :class:`Variants` remembers the SchurForm it was built from (:func:`schur_fingerprint` of ``T``, ``blocks``
and ``order``); :func:`schurjax.evaluate` and the controls refuse another one.

Storage is compact: sparse edits are kept as CSR-like arrays, prefix families (top-k, cumulative, scaling) as
one ordering plus a length and a factor per variant, and random controls as a seed and a norm per variant; the
``(K, n, n)`` arrays are only made on demand by :meth:`Variants.delta_T` / :meth:`Variants.masks` (a dense
``(K, n, n)`` array is held only when the user passed dense masks to :func:`from_masks`).

Example:
    >>> import jax, numpy as np, schurjax as sj
    >>> sf = sj.ordered_schur(np.random.default_rng(0).normal(size=(8, 8)) / 3)
    >>> v = sj.ablate.single_couplings(sf)
    >>> ctrl = sj.ablate.matched_norm(jax.random.key(0), sf, v, n_per=2)
    >>> both = sj.ablate.Variants.concat(v, ctrl)
    >>> dT = both.delta_T(slice(0, 4))            # (4, 8, 8) float64
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Bool, Float, Int

from schurjax.schur import SchurForm

if TYPE_CHECKING:
    from jaxtyping import PRNGKeyArray, UInt32

    #: a ``jax.random.key(seed)``, a raw uint32 key or an int seed
    KeyLike = PRNGKeyArray | UInt32[np.ndarray, "2"] | int
    #: couplings, as (p,) indices into ``sf.couplings`` or (p, 2) ``[i, j]`` entries
    CouplingList = Int[np.ndarray, " p"] | Int[np.ndarray, "p 2"] | Sequence[int] | Sequence[Sequence[int]]
    IntsLike = int | Sequence[int] | Int[np.ndarray, " k"]
    #: a selection of variants: slice, int, (k,) int indices or a (K,) boolean mask
    Index = slice | int | Int[np.ndarray, " k"] | Bool[np.ndarray, " K"] | Sequence[int]

__all__ = [
    "Variants",
    "single_couplings",
    "block_couplings",
    "bands",
    "all_nonnormal",
    "eigen_groups",
    "top_k",
    "cumulative",
    "scaling",
    "from_masks",
    "matched_norm",
    "matched_count",
    "coupling_noise",
    "controls",
    "CONTROL_KINDS",
    "FAMILIES",
    "SF_ONLY_FAMILIES",
    "schur_fingerprint",
]

CONTROL_KINDS = ("matched_norm", "matched_count", "coupling_noise")
_KIND_CODE = {"matched_norm": 1, "matched_count": 2, "coupling_noise": 3}
_CLASSES = ("slow-real", "slow-osc", "fast-real", "fast-osc")
_MIXED = "mixed"
"""``Variants.fingerprint`` of a concatenation of sets built from different SchurForms (cannot be evaluated)."""


def schur_fingerprint(sf: SchurForm) -> str:
    """Digest of the parts of a SchurForm the variants depend on: ``T`` (exact float64 bytes), ``blocks``, ``order``.

    Two SchurForms get the same fingerprint exactly when these agree bit for bit (blake2b, 128 bits), e.g. the
    same ``ordered_schur(W, order)`` computed twice or a ``to_npz``/``from_npz`` round trip. Every
    :class:`Variants` built from a SchurForm stores it, and :func:`schurjax.evaluate` refuses a ``schur`` whose
    fingerprint differs.

    Args:
        sf: a SchurForm.

    Returns:
        32 hex characters.

    Example:
        >>> schur_fingerprint(sf) == sj.ablate.single_couplings(sf).fingerprint
        True
    """
    T = np.ascontiguousarray(np.asarray(sf.T, dtype=np.float64))
    blocks = tuple((int(a), int(z)) for a, z in sf.blocks)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((T.shape, blocks, str(getattr(sf, "order", None)))).encode())
    h.update(T.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# Schur-form helpers
# ----------------------------------------------------------------------------------------------------------------


class _Info:
    """What the families need from a SchurForm, recomputed from ``T`` and ``blocks`` (float64)."""

    def __init__(self, sf: SchurForm, fn: str):
        if not (hasattr(sf, "T") and hasattr(sf, "blocks") and hasattr(sf, "eigvals")):
            raise TypeError(f"{fn}: sf must be a SchurForm (from schurjax.ordered_schur), got {type(sf).__name__}")
        T = np.asarray(sf.T, dtype=np.float64)
        if T.ndim != 2 or T.shape[0] != T.shape[1]:
            raise ValueError(f"{fn}: sf.T must be a square 2-D matrix, got shape {T.shape}")
        n = T.shape[0]
        blocks = tuple((int(s), int(z)) for s, z in sf.blocks)
        bidx = np.empty(n, dtype=np.int64)
        pos = 0
        for b, (s, z) in enumerate(blocks):
            if s != pos or z not in (1, 2):
                raise ValueError(f"{fn}: sf.blocks must tile 0..n-1 with sizes 1 or 2, got {blocks}")
            bidx[s : s + z] = b
            pos += z
        if pos != n:
            raise ValueError(f"{fn}: sf.blocks must tile 0..{n - 1}, got {blocks}")
        eig = np.asarray(sf.eigvals, dtype=np.complex128)
        self.T = T
        self.n = n
        self.blocks = blocks
        self.nb = len(blocks)
        self.bidx = bidx
        self.sizes = np.array([z for _, z in blocks], dtype=np.int64)
        self.beig = np.array([eig[s] for s, _ in blocks], dtype=np.complex128)
        ci, cj = np.nonzero(bidx[:, None] < bidx[None, :])  # row-major
        self.ci = ci.astype(np.int64)
        self.cj = cj.astype(np.int64)
        self.cval = T[ci, cj]
        self.coupling_mask = bidx[:, None] < bidx[None, :]
        self.diag_mask = bidx[:, None] == bidx[None, :]
        self.fingerprint = schur_fingerprint(sf)

    @property
    def m(self) -> int:
        return int(self.ci.size)

    def eig(self, b: int) -> list[float]:
        z = self.beig[b]
        return [float(z.real), float(z.imag)]

    def cls(self, b: int, threshold: float) -> str:
        speed = "slow" if abs(self.beig[b]) >= threshold else "fast"
        kind = "osc" if self.sizes[b] == 2 else "real"
        return f"{speed}-{kind}"


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    offs = np.cumsum(counts) - counts
    return (np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(offs, counts) + np.repeat(starts, counts)).astype(
        np.int64
    )


# ----------------------------------------------------------------------------------------------------------------
# Storage segments (internal). Each holds `count` variants and produces their dT on demand.
# ----------------------------------------------------------------------------------------------------------------


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
        counts = np.array([len(e[0]) for e in entries], dtype=np.int64)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        cat = [np.concatenate([e[i] for e in entries]) if entries else np.zeros(0) for i in range(4)]
        return _Sparse(ptr, *cat)

    def nnz(self) -> np.ndarray:
        return np.diff(self.ptr)

    def norms(self) -> np.ndarray:
        owner = np.repeat(np.arange(self.count), self.nnz())
        return np.sqrt(np.bincount(owner, weights=self.vals**2, minlength=self.count))

    def _gather(self, loc: np.ndarray, arr: np.ndarray):
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

    def _gather(self, loc, per_variant):
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
    """Dense user masks (K, n, n) of multipliers on T; dT = T ⊙ (M - 1). T may be bound later."""

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
            raise ValueError(
                "Variants.delta_T: variants made by from_masks(masks) without sf need T; "
                "call variants.bind(sf) or pass T=sf.T"
            )
        return T

    def dense(self, loc, T):
        return self._T(T)[None] * (self.masks[loc] - 1.0)

    def coo(self, loc, T):
        d = self.dense(loc, T)
        k, r, c = np.nonzero(d)
        return np.bincount(k, minlength=len(loc)).astype(np.int64), r, c, d[k, r, c]


class _Noise:
    """Gaussian dT rescaled to a given Frobenius norm, drawn on demand from (entropy, kind, control_of, rep).

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
        co, rep = (int(x) for x in self.keys[j])
        rng = np.random.default_rng(np.random.SeedSequence([*self.entropy, self.code, co, rep]))
        g = rng.standard_normal(self._size())
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
        co, rep = (int(x) for x in self.keys[j])
        rng = np.random.default_rng(np.random.SeedSequence([*self.entropy, self.code, co, rep]))
        return np.sort(rng.choice(self.tvals.size, size=int(self.counts[j]), replace=False))

    def nnz(self) -> np.ndarray:
        return self.counts.copy()

    def norms(self) -> np.ndarray:
        return self._norms.copy()

    def _gather(self, loc, fill):
        take = [self.pick(int(j)) for j in loc]
        cat = np.concatenate(take).astype(np.int64) if take else np.zeros(0, np.int64)
        return self.counts[loc], self.rows[cat], self.cols[cat], fill(cat)

    def coo(self, loc, T):
        return self._gather(loc, lambda cat: -self.tvals[cat])

    def mult_coo(self, loc):
        return self._gather(loc, lambda cat: np.zeros(cat.size))


# ----------------------------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------------------------


class Variants:
    """A set of K weight edits ``W_k = Q (T + dT_k) Q^T`` in Schur coordinates, with one label dict per variant.

    Made by the family and control functions of this module (not constructed directly). Immutable; indexing
    and :meth:`concat` share the compact storage.

    Attributes:
        n: matrix size.
        labels: list of K JSON-serialisable dicts. Always ``family``, ``label`` (short str), ``n_removed``
            (entries set to zero), ``n_changed`` (entries changed), ``delta_norm``; plus family keys
            (``entries``, ``target_block``, ``source_block``, ``target_eig``/``source_eig`` as ``[re, im]``,
            ``band``, ``k``, ``alpha``, ``target_class``/``source_class``, ``control_of``, ``control_kind`` ...).
        delta_norm: (K,) float64, ``||dT_k||_F = ||W_k - W||_F`` (NaN for ``from_masks`` variants without ``sf``
            until :meth:`bind`).
        nnz: (K,) int64, number of stored changed entries per variant (dense random controls count ``n*n``).
        fingerprint: :func:`schur_fingerprint` of the SchurForm the variants were built from; None for
            ``from_masks`` variants made without ``sf`` (until :meth:`bind`), ``"mixed"`` for a :meth:`concat`
            of sets built from different SchurForms (such a set cannot be evaluated or controlled).

    Example:
        >>> v = sj.ablate.single_couplings(sf)
        >>> v[:10].delta_T(slice(None)).shape        # (10, n, n)
        >>> rows, cols, vals = v.sparse(np.arange(3)) # (3, r) each, zero padded
    """

    def __init__(self, n: int, segments: list, seg: np.ndarray, loc: np.ndarray, labels: list[dict],
                 fingerprint: str | None = None):  # fmt: skip
        self.n = int(n)
        self.fingerprint = fingerprint
        self._segments = list(segments)
        self._seg = np.asarray(seg, dtype=np.int64)
        self._loc = np.asarray(loc, dtype=np.int64)
        self.labels = labels
        K = self._seg.size
        self.delta_norm = np.zeros(K)
        self.nnz = np.zeros(K, dtype=np.int64)
        for s, segment in enumerate(self._segments):
            p = np.nonzero(self._seg == s)[0]
            if p.size:
                self.delta_norm[p] = segment.norms()[self._loc[p]]
                self.nnz[p] = segment.nnz()[self._loc[p]]

    @staticmethod
    def _single(n: int, segment, labels: list[dict], fingerprint: str | None = None) -> Variants:
        v = Variants(n, [segment], np.zeros(segment.count, np.int64), np.arange(segment.count), labels, fingerprint)
        for lab, dn in zip(v.labels, v.delta_norm, strict=True):
            lab["delta_norm"] = None if math.isnan(dn) else float(dn)
        return v

    # -- basic protocol ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._seg.size)

    def __repr__(self) -> str:
        fams: dict[str, int] = {}
        for lab in self.labels:
            fams[lab.get("family", "?")] = fams.get(lab.get("family", "?"), 0) + 1
        return f"Variants(n={self.n}, K={len(self)}, families={fams}, max_nnz={self.max_nnz})"

    def _index(self, idx: Index, fn: str) -> np.ndarray:
        K = len(self)
        if isinstance(idx, slice):
            return np.arange(K)[idx]
        if isinstance(idx, numbers.Integral) and not isinstance(idx, bool):
            if not -K <= int(idx) < K:
                raise IndexError(f"Variants.{fn}: index {int(idx)} out of range for K = {K}")
            return np.array([int(idx) % K])
        arr = np.asarray(idx)
        if arr.dtype == bool:
            if arr.shape != (K,):
                raise ValueError(f"Variants.{fn}: boolean index must have shape ({K},), got {arr.shape}")
            return np.nonzero(arr)[0]
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(
                f"Variants.{fn}: idx must be a slice, an int or a 1-D int array, got {type(idx).__name__} "
                f"with dtype {arr.dtype} and shape {arr.shape}"
            )
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < -K or arr.max() >= K):
            raise IndexError(f"Variants.{fn}: index out of range for K = {K} (got min {arr.min()}, max {arr.max()})")
        return arr % K if K else arr

    def __getitem__(self, idx: Index) -> Variants:
        """Sub-select variants (slice, int, 1-D int array or boolean mask) -> Variants (labels copied)."""
        ix = self._index(idx, "__getitem__")
        out = Variants.__new__(Variants)
        out.n = self.n
        out.fingerprint = self.fingerprint
        out._segments = self._segments
        out._seg = self._seg[ix]
        out._loc = self._loc[ix]
        out.labels = [dict(self.labels[i]) for i in ix]
        out.delta_norm = self.delta_norm[ix]
        out.nnz = self.nnz[ix]
        return out

    @staticmethod
    def concat(*variants: Variants) -> Variants:
        """Concatenate variant sets of the same ``n`` (labels keep their fields; ``control_of`` is not remapped).

        The result keeps the parts' :attr:`fingerprint` when all parts built from a SchurForm agree (parts made by
        ``from_masks`` without ``sf`` are bound later); else it is ``"mixed"`` and cannot be evaluated.
        """
        if len(variants) == 1 and not isinstance(variants[0], Variants):
            variants = tuple(variants[0])
        if not variants:
            raise ValueError("Variants.concat: need at least one Variants, got none")
        for v in variants:
            if not isinstance(v, Variants):
                raise TypeError(f"Variants.concat: arguments must be Variants, got {type(v).__name__}")
        n = variants[0].n
        if any(v.n != n for v in variants):
            raise ValueError(f"Variants.concat: all variants must have the same n, got {[v.n for v in variants]}")
        out = Variants.__new__(Variants)
        out.n = n
        fps = {v.fingerprint for v in variants} - {None}
        out.fingerprint = fps.pop() if len(fps) == 1 else (_MIXED if fps else None)
        out._segments, segs, locs, out.labels = [], [], [], []
        for v in variants:
            segs.append(v._seg + len(out._segments))
            out._segments = out._segments + list(v._segments)
            locs.append(v._loc)
            out.labels += [dict(lab) for lab in v.labels]
        out._seg = np.concatenate(segs)
        out._loc = np.concatenate(locs)
        out.delta_norm = np.concatenate([v.delta_norm for v in variants])
        out.nnz = np.concatenate([v.nnz for v in variants])
        return out

    def bind(self, sf: SchurForm) -> Variants:
        """Tie the variants to ``sf``: attach ``sf.T`` to ``from_masks`` variants made without ``sf``.

        Checks what ``from_masks(masks, sf)`` checks (masks that change the diagonal blocks of T raise unless they
        were made with ``allow_diagonal=True``), fills ``delta_norm`` and recomputes the label counts
        ``n_changed``/``n_removed`` from T. Variants already built from a SchurForm must come from this one
        (same :func:`schur_fingerprint`); they are returned as a copy.

        Args:
            sf: the SchurForm of W.

        Returns:
            Variants with ``fingerprint == schur_fingerprint(sf)``.

        Raises:
            ValueError: if ``sf`` has another ``n``, the variants were built from a different SchurForm (or mix
                several), or a mask changes the diagonal blocks of T without ``allow_diagonal``.

        Example:
            >>> v = sj.ablate.from_masks(masks).bind(sf)
        """
        return self._bind(sf, "Variants.bind", "variants", "sf")

    def _bind(self, sf: SchurForm, fn: str, name: str, sf_name: str) -> Variants:
        """:meth:`bind` with the error messages of caller ``fn`` (argument names ``name`` and ``sf_name``)."""
        info = _Info(sf, fn)
        if info.n != self.n:
            raise ValueError(f"{fn}: {sf_name} has n = {info.n} but {name} have n = {self.n}; expected equal")
        if self.fingerprint == _MIXED:
            raise ValueError(f"{fn}: {name} mix variants built from different SchurForms (Variants.concat of sets "
                             f"from different sf); build every part from {sf_name}")  # fmt: skip
        if self.fingerprint is not None and self.fingerprint != info.fingerprint:
            raise ValueError(f"{fn}: {name} were built from a different SchurForm than {sf_name} (fingerprint "
                             f"{self.fingerprint[:12]} != {info.fingerprint[:12]}); build the variants from the "
                             f"SchurForm you pass as {sf_name}")  # fmt: skip
        unbound = [s for s, seg in enumerate(self._segments) if isinstance(seg, _Mask) and seg.T is None]
        if not unbound:
            out = self[:]
            out.fingerprint = info.fingerprint
            return out
        segs = list(self._segments)
        labels = [dict(lab) for lab in self.labels]
        for s in unbound:
            seg = self._segments[s]
            p = np.nonzero(self._seg == s)[0]  # the variants of this set stored in segment s
            masks = seg.masks[self._loc[p]]
            touched = ((masks != 1.0) & info.diag_mask[None]).reshape(p.size, -1).any(axis=1)
            if touched.any() and not seg.allow_diagonal:
                raise ValueError(
                    f"{fn}: {name} {p[touched][:5].tolist()} (from_masks without sf) change the diagonal blocks of "
                    f"{sf_name}.T (this changes the spectrum); pass allow_diagonal=True to from_masks to allow it"
                )
            segs[s] = _Mask(seg.masks, info.T, seg.allow_diagonal)
            nz = info.T[None] != 0.0
            changed = ((masks != 1.0) & nz).reshape(p.size, -1).sum(axis=1)
            removed = ((masks == 0.0) & nz).reshape(p.size, -1).sum(axis=1)
            for i, c, r in zip(p.tolist(), changed.tolist(), removed.tolist(), strict=True):
                labels[i]["n_changed"], labels[i]["n_removed"] = int(c), int(r)
        out = Variants(self.n, segs, self._seg, self._loc, labels, info.fingerprint)
        for lab, dn in zip(out.labels, out.delta_norm, strict=True):
            lab["delta_norm"] = float(dn)
        return out

    # -- views -------------------------------------------------------------------------------------------------

    @property
    def max_nnz(self) -> int:
        """Largest number of changed entries of any variant (dense random controls count ``n*n``)."""
        return int(self.nnz.max()) if len(self) else 0

    def is_sparse(self, max_nnz: int) -> bool:
        """True when every variant changes at most ``max_nnz`` entries of T."""
        return self.max_nnz <= int(max_nnz)

    def _groups(self, ix: np.ndarray):
        seg = self._seg[ix]
        for s in np.unique(seg):
            p = np.nonzero(seg == s)[0]
            yield self._segments[int(s)], p, self._loc[ix[p]]

    def delta_T(
        self, idx: Index = slice(None), T: Float[np.ndarray, "n n"] | None = None
    ) -> Float[np.ndarray, "k n n"]:
        """The edits ``dT`` of the selected variants, materialised.

        Args:
            idx: slice, int, 1-D int array or boolean mask over the K variants.
            T: (n, n) Schur factor, only needed for unbound ``from_masks`` variants (see :meth:`bind`).

        Returns:
            (k, n, n) float64 array, ``W_k = Q (T + dT_k) Q^T``.
        """
        ix = self._index(idx, "delta_T")
        out = np.zeros((ix.size, self.n, self.n))
        for segment, p, loc in self._groups(ix):
            if hasattr(segment, "dense"):
                out[p] = segment.dense(loc, T)
            else:
                counts, r, c, v = segment.coo(loc, T)
                out[np.repeat(p, counts), r, c] = v
        return out

    def sparse(
        self, idx: Index = slice(None), T: Float[np.ndarray, "n n"] | None = None
    ) -> tuple[Int[np.ndarray, "k r"], Int[np.ndarray, "k r"], Float[np.ndarray, "k r"]]:
        """The edits of the selected variants as zero-padded coordinate lists.

        Args:
            idx: slice, int, 1-D int array or boolean mask over the K variants.
            T: only needed for unbound ``from_masks`` variants.

        Returns:
            rows, cols (k, r) int64 and vals (k, r) float64 with ``dT_k[rows[k, p], cols[k, p]] = vals[k, p]``;
            ``r = max(1, max nnz over idx)``; padding has ``rows = cols = 0`` and ``vals = 0``. Meant for sparse
            sets (check :meth:`is_sparse`); dense variants give ``n*n`` entries each.
        """
        ix = self._index(idx, "sparse")
        counts = np.zeros(ix.size, dtype=np.int64)
        parts = []
        for segment, p, loc in self._groups(ix):
            cnt, r, c, v = segment.coo(loc, T)
            counts[p] = cnt
            parts.append((p, cnt, r, c, v))
        width = max(1, int(counts.max()) if counts.size else 0)
        rows = np.zeros((ix.size, width), dtype=np.int64)
        cols = np.zeros((ix.size, width), dtype=np.int64)
        vals = np.zeros((ix.size, width), dtype=np.float64)
        for p, cnt, r, c, v in parts:
            owner = np.repeat(p, cnt)
            start = np.repeat(np.cumsum(cnt) - cnt, cnt)
            slot = np.arange(owner.size) - start
            rows[owner, slot], cols[owner, slot], vals[owner, slot] = r, c, v
        return rows, cols, vals

    def masks(self, idx: Index = slice(None)) -> Float[np.ndarray, "k n n"]:
        """Multiplier view ``M`` with ``T + dT = T ⊙ M`` for mask-type variants (all families, not random noise).

        Returns:
            (k, n, n) float64; ones where a variant changes nothing.

        Raises:
            ValueError: if a selected variant is a random Gaussian control (not a multiplier on T).
        """
        ix = self._index(idx, "masks")
        out = np.ones((ix.size, self.n, self.n))
        for segment, p, loc in self._groups(ix):
            if isinstance(segment, _Mask):
                out[p] = segment.masks[loc]
            elif isinstance(segment, _Noise):
                kind = self.labels[int(ix[p[0]])].get("control_kind", "noise")
                raise ValueError(
                    f"Variants.masks: variant {int(ix[p[0]])} ({kind}) is an additive Gaussian edit, not a mask "
                    "of T; use delta_T"
                )
            else:
                counts, r, c, m = segment.mult_coo(loc)
                out[np.repeat(p, counts), r, c] = m
        return out


# ----------------------------------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------------------------------


def _removal(info: _Info, rows: np.ndarray, cols: np.ndarray):
    vals = info.T[rows, cols]
    return rows, cols, -vals, np.zeros(rows.size)


def _counts(vals: np.ndarray) -> dict:
    nz = int(np.count_nonzero(vals))
    return {"n_removed": nz, "n_changed": nz}


def _check_threshold(x, fn: str, name: str = "threshold") -> float:
    try:
        val = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: {name} must be a finite non-negative float, got {x!r}") from None
    if not math.isfinite(val) or val < 0:
        raise ValueError(f"{fn}: {name} must be a finite non-negative float, got {x!r}")
    return val


def single_couplings(sf: SchurForm, *, include_zeros: bool = False, threshold: float = 0.0) -> Variants:
    """One variant per coupling entry ``T[i, j]`` (above the block diagonal): remove it.

    Args:
        sf: SchurForm of W (n x n).
        include_zeros: keep every coupling entry, even exact zeros (they change nothing).
        threshold: otherwise keep only entries with ``|T[i, j]| > threshold``.

    Returns:
        Variants, one per kept entry in row-major order. Labels: ``entries=[[i, j]]``, ``row``, ``col``,
        ``value``, ``target_block`` (block of i), ``source_block`` (block of j), ``target_eig``, ``source_eig``.

    Example:
        >>> v = sj.ablate.single_couplings(sf)       # ~n^2/2 variants
    """
    fn = "single_couplings"
    info = _Info(sf, fn)
    thr = _check_threshold(threshold, fn)
    keep = np.ones(info.m, bool) if include_zeros else np.abs(info.cval) > thr
    ci, cj, cv = info.ci[keep], info.cj[keep], info.cval[keep]
    K = ci.size
    seg = _Sparse(np.arange(K + 1), ci, cj, -cv, np.zeros(K))
    labels = []
    for i, j, t in zip(ci.tolist(), cj.tolist(), cv.tolist(), strict=True):
        a, b = int(info.bidx[i]), int(info.bidx[j])
        nz = int(t != 0.0)
        labels.append(
            {"family": "single", "label": f"T[{i},{j}]", "entries": [[i, j]], "row": i, "col": j, "value": t,
             "target_block": a, "source_block": b, "target_eig": info.eig(a), "source_eig": info.eig(b),
             "n_removed": nz, "n_changed": nz}
        )  # fmt: skip
    return Variants._single(info.n, seg, labels, info.fingerprint)


def block_couplings(sf: SchurForm, *, include_zeros: bool = False) -> Variants:
    """One variant per block pair ``a < b``: remove the coupling block ``T[block a, block b]`` (link b -> a).

    Args:
        sf: SchurForm of W.
        include_zeros: also make variants for block pairs whose couplings are all zero.

    Returns:
        Variants ordered by (a, b). Labels: ``target_block`` a, ``source_block`` b, their eigenvalues
        (``[re, im]``) and sizes, ``entries`` (the nonzero removed ``[i, j]``).

    Example:
        >>> v = sj.ablate.block_couplings(sf)       # nb (nb - 1) / 2 variants at most
    """
    fn = "block_couplings"
    info = _Info(sf, fn)
    entries, labels = [], []
    for a in range(info.nb):
        sa, za = info.blocks[a]
        for b in range(a + 1, info.nb):
            sb, zb = info.blocks[b]
            rr, cc = np.meshgrid(np.arange(sa, sa + za), np.arange(sb, sb + zb), indexing="ij")
            rr, cc = rr.ravel(), cc.ravel()
            nz = info.T[rr, cc] != 0.0
            if not nz.any() and not include_zeros:
                continue
            rr, cc = rr[nz], cc[nz]
            entries.append(_removal(info, rr, cc))
            labels.append(
                {"family": "block", "label": f"B{a}<-{b}", "target_block": a, "source_block": b,
                 "target_eig": info.eig(a), "source_eig": info.eig(b), "target_size": za, "source_size": zb,
                 "entries": [[int(i), int(j)] for i, j in zip(rr, cc, strict=True)], **_counts(info.T[rr, cc])}
            )  # fmt: skip
    return Variants._single(info.n, _Sparse.from_lists(entries), labels, info.fingerprint)


def bands(sf: SchurForm, *, include_zeros: bool = False) -> Variants:
    """One variant per block distance ``d = b - a >= 1``: remove all couplings between blocks at distance d.

    Args:
        sf: SchurForm of W.
        include_zeros: also make variants for bands whose couplings are all zero.

    Returns:
        Variants ordered by d. Labels: ``band`` d, ``n_pairs`` (block pairs at that distance).

    Example:
        >>> v = sj.ablate.bands(sf)                 # v.labels[0]["band"] == 1: nearest-neighbour links
    """
    info = _Info(sf, "bands")
    dist = info.bidx[info.cj] - info.bidx[info.ci]
    entries, labels = [], []
    for d in range(1, info.nb):
        sel = (dist == d) & (info.cval != 0.0)
        if not sel.any() and not include_zeros:
            continue
        entries.append(_removal(info, info.ci[sel], info.cj[sel]))
        labels.append(
            {"family": "band", "label": f"band {d}", "band": d, "n_pairs": info.nb - d, **_counts(info.cval[sel])}
        )
    return Variants._single(info.n, _Sparse.from_lists(entries), labels, info.fingerprint)


def all_nonnormal(sf: SchurForm) -> Variants:
    """One variant: ``T -> D`` (every coupling removed). For a normal W it changes nothing (``delta_norm`` 0).

    ``D`` keeps the diagonal blocks as they are, so the result is normal only when every 2x2 block is: a block
    ``[[a, b], [c, a]]`` with ``b != -c`` keeps its own nonnormality (the part by which ``sf.departure`` exceeds
    ``sf.henrici``). ``delta_norm[0] == sf.henrici``, the norm of the couplings, not Henrici's departure of W.

    Returns:
        Variants with K = 1.

    Example:
        >>> v = sj.ablate.all_nonnormal(sf)         # v.delta_norm[0] == sf.henrici
    """
    info = _Info(sf, "all_nonnormal")
    sel = info.cval != 0.0
    seg = _Sparse.from_lists([_removal(info, info.ci[sel], info.cj[sel])])
    labels = [{"family": "all_nonnormal", "label": "T->D", **_counts(info.cval[sel])}]
    return Variants._single(info.n, seg, labels, info.fingerprint)


def eigen_groups(sf: SchurForm, threshold: float = 0.9, *, include_zeros: bool = False) -> Variants:
    """One variant per (target class, source class) pair of spectral classes: remove the couplings between them.

    A block is ``slow`` if ``|λ| >= threshold`` else ``fast``, and ``real`` (1x1) or ``osc`` (2x2); the classes
    are ``slow-real``, ``slow-osc``, ``fast-real``, ``fast-osc``.

    Args:
        sf: SchurForm of W.
        threshold: |λ| boundary between slow and fast modes (finite, >= 0).
        include_zeros: also make variants for class pairs whose couplings are all zero (pairs with no coupling
            positions at all are always skipped).

    Returns:
        Variants ordered by (target class, source class) in the order above. Labels: ``target_class``,
        ``source_class``, ``threshold``.

    Example:
        >>> v = sj.ablate.eigen_groups(sf, threshold=0.95)   # at most 16 variants
    """
    fn = "eigen_groups"
    info = _Info(sf, fn)
    thr = _check_threshold(threshold, fn)
    cls = np.array([_CLASSES.index(info.cls(b, thr)) for b in range(info.nb)], dtype=np.int64)
    tc, sc = cls[info.bidx[info.ci]], cls[info.bidx[info.cj]]
    entries, labels = [], []
    for t in range(4):
        for s in range(4):
            pos = (tc == t) & (sc == s)
            sel = pos & (info.cval != 0.0)
            if not pos.any() or (not sel.any() and not include_zeros):
                continue
            entries.append(_removal(info, info.ci[sel], info.cj[sel]))
            labels.append(
                {"family": "eigen_groups", "label": f"{_CLASSES[t]}<-{_CLASSES[s]}", "target_class": _CLASSES[t],
                 "source_class": _CLASSES[s], "threshold": thr, **_counts(info.cval[sel])}
            )  # fmt: skip
    return Variants._single(info.n, _Sparse.from_lists(entries), labels, info.fingerprint)


def _ks(ks, upper: int, fn: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ks))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{fn}: ks must be an int or a non-empty 1-D sequence of ints, got {ks!r}")
    if arr.min() < 0 or arr.max() > upper:
        raise ValueError(f"{fn}: ks must lie in [0, {upper}], got min {arr.min()}, max {arr.max()}")
    return arr.astype(np.int64)


def top_k(sf: SchurForm, ks: IntsLike) -> Variants:
    """Remove the k largest-|T_ij| couplings, one variant per k in ``ks``.

    Ties in |T_ij| are broken by row-major position. Zero couplings come last; removing them changes nothing.

    Args:
        sf: SchurForm of W.
        ks: int or 1-D ints in ``[0, m]``, m the number of coupling positions (``len(sf.couplings)``).

    Returns:
        Variants in the order of ``ks``. Labels: ``k``, ``min_abs`` (smallest removed |T_ij|, 0 for k = 0).

    Example:
        >>> v = sj.ablate.top_k(sf, [1, 10, 100])
    """
    fn = "top_k"
    info = _Info(sf, fn)
    karr = _ks(ks, info.m, fn)
    order = np.argsort(-np.abs(info.cval), kind="stable")
    tv = info.cval[order]
    seg = _Prefix(info.ci[order], info.cj[order], tv, karr, -np.ones(karr.size))
    labels = [
        {"family": "top_k", "label": f"top {k}", "k": int(k), "min_abs": float(abs(tv[k - 1])) if k else 0.0,
         **_counts(tv[:k])}
        for k in karr
    ]  # fmt: skip
    return Variants._single(info.n, seg, labels, info.fingerprint)


def _subset(info: _Info, which, fn: str, name: str) -> np.ndarray:
    """Indices into the coupling list (row-major) from: 1-D int indices, (p, 2) entries, or a bool (n, n) mask."""
    arr = np.asarray(which)
    n = info.n
    if arr.dtype == bool:
        if arr.shape != (n, n):
            raise ValueError(f"{fn}: boolean {name} must have shape ({n}, {n}), got {arr.shape}")
        if (arr & ~info.coupling_mask).any():
            raise ValueError(f"{fn}: {name} marks entries that are not couplings (on or below the block diagonal)")
        pos = np.full((n, n), -1, dtype=np.int64)
        pos[info.ci, info.cj] = np.arange(info.m)
        return pos[arr]
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{fn}: {name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.ndim == 1:
        if arr.size and (arr.min() < 0 or arr.max() >= info.m):
            raise ValueError(
                f"{fn}: {name} indexes sf.couplings, must lie in [0, {info.m}), got {arr.min()}..{arr.max()}"
            )
        idx = arr
    elif arr.ndim == 2 and arr.shape[1] == 2:
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(f"{fn}: {name} entries must lie in [0, {n}), got {arr.min()}..{arr.max()}")
        pos = np.full((n, n), -1, dtype=np.int64)
        pos[info.ci, info.cj] = np.arange(info.m)
        idx = pos[arr[:, 0], arr[:, 1]]
        if (idx < 0).any():
            bad = arr[np.nonzero(idx < 0)[0][0]].tolist()
            raise ValueError(f"{fn}: {name} entry {bad} is not a coupling (on or below the block diagonal)")
    else:
        raise ValueError(f"{fn}: {name} must be 1-D coupling indices, (p, 2) entries or a bool (n, n) mask, "
                         f"got shape {arr.shape}")  # fmt: skip
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{fn}: {name} must not repeat couplings")
    return idx


def cumulative(sf: SchurForm, order_idx: CouplingList, ks: IntsLike | None = None) -> Variants:
    """Remove prefixes of a given importance order over couplings (compression curves), one variant per k.

    Args:
        sf: SchurForm of W.
        order_idx: the order, as (p,) indices into ``sf.couplings`` or (p, 2) ``[i, j]`` entries (for example the
            ``entries`` of single-coupling labels sorted by their measured ``delta_loss``, least important first).
        ks: prefix lengths in ``[0, p]``; default ``1..p``.

    Returns:
        Variants in the order of ``ks``; variant k removes ``order_idx[:k]``. Labels: ``k``, ``p``.

    Example:
        >>> res = sj.evaluate(model, sf, single, batch)
        >>> order = [single.labels[i]["entries"][0] for i in np.argsort(res.delta_loss)]
        >>> curve = sj.ablate.cumulative(sf, order, ks=range(0, len(order) + 1, 16))
    """
    fn = "cumulative"
    info = _Info(sf, fn)
    idx = _subset(info, order_idx, fn, "order_idx")
    karr = np.arange(1, idx.size + 1) if ks is None else _ks(ks, idx.size, fn)
    if karr.size == 0:
        raise ValueError(f"{fn}: order_idx is empty, so there is no prefix to remove")
    tv = info.cval[idx]
    seg = _Prefix(info.ci[idx], info.cj[idx], tv, karr, -np.ones(karr.size))
    labels = [{"family": "cumulative", "label": f"cum {k}", "k": int(k), "p": int(idx.size), **_counts(tv[:k])}
              for k in karr]  # fmt: skip
    return Variants._single(info.n, seg, labels, info.fingerprint)


def scaling(
    sf: SchurForm,
    alphas: float | Sequence[float] | Float[np.ndarray, " k"],
    which: CouplingList | Bool[np.ndarray, "n n"] | None = None,
) -> Variants:
    """Scale couplings by α, one variant per α: ``T[i, j] -> α T[i, j]`` on the chosen couplings.

    Args:
        sf: SchurForm of W.
        alphas: float or 1-D finite floats (α = 0 removes, α = 1 changes nothing).
        which: None (all couplings), (p,) indices into ``sf.couplings``, (p, 2) ``[i, j]`` entries or a bool
            (n, n) mask inside ``sf.coupling_mask``.

    Returns:
        Variants in the order of ``alphas``. Labels: ``alpha``, ``n_scaled`` (nonzero couplings scaled).

    Example:
        >>> v = sj.ablate.scaling(sf, np.linspace(0.0, 2.0, 9))    # the path from T -> D (α = 0) to 2N
    """
    fn = "scaling"
    info = _Info(sf, fn)
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: alphas must be a float or a 1-D sequence of finite floats, got {alphas!r}") from None
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{fn}: alphas must be a float or a non-empty 1-D sequence of finite floats, got {alphas!r}")
    idx = np.arange(info.m) if which is None else _subset(info, which, fn, "which")
    idx = idx[info.cval[idx] != 0.0]
    seg = _Prefix(info.ci[idx], info.cj[idx], info.cval[idx], np.full(a.size, idx.size), a - 1.0)
    labels = []
    for al in a.tolist():
        c = int(idx.size) if al != 1.0 else 0
        labels.append({"family": "scaling", "label": f"x{al:g}", "alpha": al, "n_scaled": int(idx.size),
                       "n_removed": c if al == 0.0 else 0, "n_changed": c})  # fmt: skip
    return Variants._single(info.n, seg, labels, info.fingerprint)


def from_masks(
    masks: Float[np.ndarray, "K n n"] | Bool[np.ndarray, "K n n"] | Float[np.ndarray, "n n"] | Bool[np.ndarray, "n n"],
    sf: SchurForm | None = None,
    *,
    allow_diagonal: bool = False,
    family: str = "mask",
) -> Variants:
    """Custom variants from multiplier masks on T: ``T + dT_k = T ⊙ masks[k]``.

    Args:
        masks: (K, n, n) (or (n, n) for K = 1) finite reals or bools; K > 0.
        sf: SchurForm of W. Without it the variants are unbound: ``delta_norm`` is NaN and the label counts
            ``n_changed``/``n_removed`` count mask entries, until :meth:`Variants.bind` (``evaluate`` binds its
            ``schur``) checks the masks against the blocks and recomputes both from T.
        allow_diagonal: allow masks that change the diagonal blocks (these change the spectrum); otherwise
            raise (here when ``sf`` is given, else when the variants are bound).
        family: ``family`` field of the labels.

    Returns:
        Variants holding the dense masks (float64). Labels: ``index`` (position in ``masks``).

    Example:
        >>> M = np.ones((2, n, n)); M[0][sf.coupling_mask] = 0.0
        >>> v = sj.ablate.from_masks(M, sf)
    """
    fn = "from_masks"
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"{fn}: masks must have shape (K, n, n), got {np.shape(masks)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{fn}: masks must hold at least one mask (K > 0), got shape {arr.shape}")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{fn}: masks must be real or bool, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: masks must be finite, got {int((~np.isfinite(arr)).sum())} non-finite entries")
    T = None
    if sf is not None:
        info = _Info(sf, fn)
        if arr.shape[1] != info.n:
            raise ValueError(f"{fn}: masks have shape {arr.shape} but sf has n = {info.n}; expected (K, {info.n}, "
                             f"{info.n})")  # fmt: skip
        touched = ((arr != 1.0) & info.diag_mask[None]).reshape(arr.shape[0], -1).any(axis=1)
        if touched.any() and not allow_diagonal:
            raise ValueError(
                f"{fn}: masks {np.nonzero(touched)[0][:5].tolist()} change the diagonal blocks of T (this changes the "
                "spectrum); pass allow_diagonal=True to allow it"
            )
        T = info.T
    n = arr.shape[1]
    labels = [{"family": family, "label": f"{family} {k}", "index": k} for k in range(arr.shape[0])]
    seg = _Mask(arr, T, allow_diagonal)
    v = Variants._single(n, seg, labels, None if sf is None else info.fingerprint)
    changed = seg.nnz()
    if T is not None:
        removed = ((arr == 0.0) & (T[None] != 0.0)).reshape(arr.shape[0], -1).sum(axis=1)
    else:
        removed = (arr == 0.0).reshape(arr.shape[0], -1).sum(axis=1)
    for lab, c, r in zip(v.labels, changed.tolist(), removed.tolist(), strict=True):
        lab["n_changed"], lab["n_removed"] = int(c), int(r)
    return v


# ----------------------------------------------------------------------------------------------------------------
# Controls
# ----------------------------------------------------------------------------------------------------------------


def _entropy(key: KeyLike, fn: str) -> tuple[int, ...]:
    """Deterministic NumPy seed words from a JAX key (typed or raw uint32) or an int seed (same as key(seed))."""
    import jax

    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    try:
        dtype = key.dtype
    except AttributeError:
        raise TypeError(f"{fn}: key must be a jax.random.key(seed) or an int seed, got {type(key).__name__}") from None
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{fn}: key must be a single key (shape ()), got shape {key.shape}")
        data = np.asarray(jax.random.key_data(key))
    elif np.dtype(dtype) == np.uint32 and key.ndim == 1:
        data = np.asarray(key)
    else:
        raise TypeError(f"{fn}: key must be a jax.random.key(seed) or an int seed, got dtype {dtype}")
    return tuple(int(x) for x in data.ravel())


def _control_setup(fn: str, key: KeyLike, sf: SchurForm, variants: Variants, n_per: int):
    entropy = _entropy(key, fn)
    info = _Info(sf, fn)
    if not isinstance(variants, Variants):
        raise TypeError(f"{fn}: variants must be a Variants, got {type(variants).__name__}")
    if variants.n != info.n:
        raise ValueError(f"{fn}: variants have n = {variants.n} but sf has n = {info.n}")
    if len(variants) == 0:
        raise ValueError(f"{fn}: variants is empty (K = 0); nothing to control")
    if not isinstance(n_per, numbers.Integral) or isinstance(n_per, bool) or n_per < 1:
        raise ValueError(f"{fn}: n_per must be a positive int, got {n_per!r}")
    variants = variants._bind(sf, fn, "variants", "sf")
    K = len(variants)
    keys = np.stack([np.repeat(np.arange(K), n_per), np.tile(np.arange(n_per), K)], axis=1)
    return entropy, info, variants, keys


def _control_labels(kind: str, variants: Variants, keys: np.ndarray, counts) -> list[dict]:
    labels = []
    for (co, rep), c in zip(keys.tolist(), counts, strict=True):
        src = variants.labels[co]
        labels.append(
            {"family": "control", "label": f"{kind}({src.get('label', co)})#{rep}", "control_kind": kind,
             "control_of": co, "rep": rep, "controlled_family": src.get("family"),
             "controlled_label": src.get("label"), "n_removed": int(c[0]), "n_changed": int(c[1])}
        )  # fmt: skip
    return labels


def matched_norm(key: KeyLike, sf: SchurForm, variants: Variants, n_per: int = 1) -> Variants:
    """Dense Gaussian controls in weight space with ``||E||_F = ||W - W_k||_F``, ``n_per`` per variant.

    ``E = Q G Q^T`` with G iid Gaussian is itself iid Gaussian, so the edit is drawn directly as ``dT = G``,
    rescaled exactly to the controlled variant's ``delta_norm``. Draws are made on demand from
    ``(key, control_of, rep)``, so the same key gives the same draws in any slice.

    Args:
        key: ``jax.random.key(seed)`` (or a raw uint32 key, or an int seed, same as ``jax.random.key(seed)``).
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per``, variant-major (``control_of`` = 0, 0, ..., 1, 1, ...; ``rep`` =
        0..n_per-1). Labels: ``control_kind``, ``control_of`` (index into ``variants``), ``rep``.

    Example:
        >>> ctrl = sj.ablate.matched_norm(jax.random.key(1), sf, v, n_per=4)
    """
    kind = "matched_norm"
    entropy, info, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    norms = variants.delta_norm[keys[:, 0]]
    nn = info.n * info.n
    seg = _Noise(entropy, _KIND_CODE[kind], keys, norms, info.n)
    counts = [(0, nn if x > 0 else 0) for x in norms]
    return Variants._single(info.n, seg, _control_labels(kind, variants, keys, counts), info.fingerprint)


def matched_count(key: KeyLike, sf: SchurForm, variants: Variants, n_per: int = 1) -> Variants:
    """Remove as many random couplings as each variant changes (``n_changed``), ``n_per`` per variant.

    The couplings are drawn uniformly without replacement among the nonzero coupling entries of T
    (zero couplings would change nothing). Spectrum-preserving.

    Args:
        key: ``jax.random.key(seed)`` or an int seed.
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per`` (variant-major), labels as in :func:`matched_norm`.

    Raises:
        ValueError: if a variant changes more entries than T has nonzero couplings.

    Example:
        >>> ctrl = sj.ablate.matched_count(jax.random.key(2), sf, sj.ablate.block_couplings(sf), n_per=3)
    """
    kind = "matched_count"
    entropy, info, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    sel = info.cval != 0.0
    counts = np.array([variants.labels[co].get("n_changed", int(variants.nnz[co])) for co in keys[:, 0]], np.int64)
    if counts.size and counts.max() > sel.sum():
        raise ValueError(f"{kind}: a variant changes {counts.max()} entries but T has only {int(sel.sum())} nonzero "
                         "couplings to draw from")  # fmt: skip
    seg = _RandomSubset(entropy, _KIND_CODE[kind], keys, counts, info.ci[sel], info.cj[sel], info.cval[sel])
    labels = _control_labels(kind, variants, keys, [(c, c) for c in counts.tolist()])
    return Variants._single(info.n, seg, labels, info.fingerprint)


def coupling_noise(key: KeyLike, sf: SchurForm, variants: Variants, n_per: int = 1) -> Variants:
    """Gaussian edits supported on all coupling positions, rescaled to each variant's ``delta_norm``.

    Spectrum-preserving (only entries above the block diagonal change).

    Args:
        key: ``jax.random.key(seed)`` or an int seed.
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per`` (variant-major), labels as in :func:`matched_norm`.

    Raises:
        ValueError: if a variant has a nonzero norm but W has no coupling positions (n <= 2 with one block).

    Example:
        >>> ctrl = sj.ablate.coupling_noise(jax.random.key(3), sf, sj.ablate.bands(sf))
    """
    kind = "coupling_noise"
    entropy, info, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    norms = variants.delta_norm[keys[:, 0]]
    if info.m == 0 and np.any(norms > 0):
        raise ValueError(f"{kind}: sf has no coupling positions (blocks {info.blocks}), cannot match a nonzero norm")
    seg = _Noise(entropy, _KIND_CODE[kind], keys, norms, info.n, support=(info.ci, info.cj))
    counts = [(0, info.m if x > 0 else 0) for x in norms]
    return Variants._single(info.n, seg, _control_labels(kind, variants, keys, counts), info.fingerprint)


def controls(
    key: KeyLike, sf: SchurForm, variants: Variants, kinds: str | Sequence[str] = CONTROL_KINDS, n_per: int = 1
) -> Variants:
    """Several control kinds at once, concatenated in the order of ``kinds`` (each ``K * n_per`` long).

    Args:
        key: ``jax.random.key(seed)`` or an int seed (each kind draws its own stream from it).
        sf: SchurForm of W.
        variants: the K variants to control.
        kinds: one or more of ``"matched_norm"``, ``"matched_count"``, ``"coupling_noise"``.
        n_per: controls per variant and kind.

    Returns:
        Variants of length ``len(kinds) * K * n_per``.

    Example:
        >>> ctrl = sj.ablate.controls(jax.random.key(0), sf, v, ("matched_norm", "coupling_noise"), n_per=2)
    """
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if not names:
        raise ValueError(f"controls: kinds must name at least one of {list(CONTROL_KINDS)}, got {kinds!r}")
    for k in names:
        if k not in _CONTROLS:
            raise ValueError(f"controls: unknown control kind {k!r}; expected one of {list(CONTROL_KINDS)}")
    return Variants.concat(*[_CONTROLS[k](key, sf, variants, n_per=n_per) for k in names])


_CONTROLS = {"matched_norm": matched_norm, "matched_count": matched_count, "coupling_noise": coupling_noise}

#: The family registry: name -> function. The name is the CLI's ``--families`` name and the ``family`` field of
#: every label the function makes (see the module docstring).
FAMILIES = {
    "single": single_couplings,
    "block": block_couplings,
    "band": bands,
    "all_nonnormal": all_nonnormal,
    "eigen_groups": eigen_groups,
    "top_k": top_k,
    "cumulative": cumulative,
    "scaling": scaling,
}

#: The families of :data:`FAMILIES` that can be called with the SchurForm alone (``FAMILIES[name](sf)``).
SF_ONLY_FAMILIES = ("single", "block", "band", "all_nonnormal", "eigen_groups")
