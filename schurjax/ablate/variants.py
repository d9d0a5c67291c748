"""``Variants``: an immutable set of K weight edits in Schur coordinates, with one read-only label per variant."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Float, Int

from schurjax.ablate.storage import DenseSegment, MultiplierSegment, Segment, _Mask
from schurjax.errors import InputError
from schurjax.schur import SchurForm

if TYPE_CHECKING:
    from jaxtyping import Bool

    #: a selection of variants: slice, int, (k,) int indices or a (K,) boolean mask
    Index = slice | int | Int[np.ndarray, " k"] | Bool[np.ndarray, " K"] | Sequence[int]

MIXED = "mixed"
"""``Variants.fingerprint`` of a concatenation of sets built from different SchurForms (cannot be evaluated)."""

_IMMUTABLE = "derive a new set with v[idx], Variants.concat(...), v.bind(sf) or v.with_labels(labels)"


def _check_sf(sf: Any, fn: str) -> SchurForm:
    """``sf`` if it is a SchurForm, else a TypeError naming the caller ``fn``."""
    if not isinstance(sf, SchurForm):
        raise TypeError(f"{fn}: sf must be a SchurForm (from schurjax.ordered_schur), got {type(sf).__name__}")
    return sf


_ATOMS = frozenset({str, int, float, bool, type(None)})


def _frozen(x: Any) -> Any:
    """A read-only version of a label value: sequences become tuples, mappings read-only, arrays read-only."""
    if type(x) in _ATOMS:
        return x
    if isinstance(x, list | tuple):
        if type(x) is tuple and all(type(v) in _ATOMS for v in x):
            return x
        return tuple(_frozen(v) for v in x)
    if isinstance(x, Mapping):
        return _frozen_label(x)
    if isinstance(x, np.ndarray):
        x = x.copy()
        x.flags.writeable = False
    return x


def _frozen_label(label: Mapping[str, Any]) -> MappingProxyType:
    """A read-only copy of one label (values as in :func:`_frozen`)."""
    return MappingProxyType({k: v if type(v) in _ATOMS else _frozen(v) for k, v in label.items()})


def _thawed(x: Any) -> Any:
    """Inverse of :func:`_frozen` for mappings (for pickling: a read-only mapping cannot be pickled)."""
    if isinstance(x, Mapping):
        return {k: _thawed(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_thawed(v) for v in x)
    return x


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Variants:
    """A set of K weight edits ``W_k = Q (T + dT_k) Q^T`` in Schur coordinates, with one label per variant.

    Made by the family and control functions of :mod:`schurjax.ablate`, not constructed directly. Immutable: no
    attribute can be set and labels are read-only; derive new sets with ``v[idx]``, :meth:`concat`, :meth:`bind`
    and :meth:`with_labels` (they share the compact storage).

    Attributes:
        n: matrix size.
        labels: tuple of K read-only mappings (``dict(label)`` gives a dict; lists inside are tuples). Always
            ``family``, ``label`` (short str), ``n_removed`` (entries set to zero), ``n_changed`` (entries changed),
            ``delta_norm``; plus family keys (``entries``, ``target_block``, ``source_block``,
            ``target_eig``/``source_eig`` as ``(re, im)``, ``band``, ``k``, ``alpha``,
            ``target_class``/``source_class``, ``control_of``, ``control_kind`` ...).
        delta_norm: (K,) float64, read-only, ``||dT_k||_F = ||W_k - W||_F`` (NaN for ``from_masks`` variants
            without ``sf`` until :meth:`bind`).
        nnz: (K,) int64, read-only, number of stored changed entries per variant (dense random controls count
            ``n*n``).
        fingerprint: ``SchurForm.fingerprint`` of the form the variants were built from; None for ``from_masks``
            variants made without ``sf`` (until :meth:`bind`), ``"mixed"`` for a :meth:`concat` of sets built from
            different SchurForms (such a set cannot be evaluated or controlled).

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.random.default_rng(0).normal(size=(6, 6)) / 3)
        >>> v = sj.ablate.single_couplings(sf)
        >>> len(v), v.fingerprint == sf.fingerprint
        (13, True)
        >>> v[:10].delta_T().shape
        (10, 6, 6)
        >>> rows, cols, vals = v.sparse(np.arange(3))  # (3, 1) each: one entry per single coupling
        >>> rows.shape, v.labels[0]["label"]
        ((3, 1), 'T[0,1]')
    """

    __slots__ = ("n", "labels", "delta_norm", "nnz", "fingerprint", "_segments", "_seg", "_loc")

    n: int
    labels: tuple[Mapping[str, Any], ...]
    delta_norm: Float[np.ndarray, " K"]
    nnz: Int[np.ndarray, " K"]
    fingerprint: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "Variants: made by the functions of schurjax.ablate (families, controls, from_masks), not directly"
        )

    @classmethod
    def _make(
        cls,
        n: int,
        segments: Sequence[Segment],
        seg: np.ndarray,
        loc: np.ndarray,
        labels: tuple[Mapping[str, Any], ...],
        fingerprint: str | None,
        delta_norm: np.ndarray | None = None,
        nnz: np.ndarray | None = None,
    ) -> Variants:
        """The one internal constructor. ``labels`` must already be read-only; norms and counts are taken from
        the segments unless given (then they must belong to these ``(seg, loc)``)."""
        seg = np.asarray(seg, dtype=np.int64)
        loc = np.asarray(loc, dtype=np.int64)
        if len(labels) != seg.size:
            raise InputError(
                "Variants", None, f"{seg.size} variants but {len(labels)} labels"
            )  # pragma: no cover - a bug
        if delta_norm is None or nnz is None:
            delta_norm, nnz = np.zeros(seg.size), np.zeros(seg.size, dtype=np.int64)
            for s, segment in enumerate(segments):
                p = np.nonzero(seg == s)[0]
                if p.size:
                    delta_norm[p] = segment.norms()[loc[p]]
                    nnz[p] = segment.nnz()[loc[p]]
        out = object.__new__(cls)
        fields = {
            "n": int(n),
            "labels": tuple(labels),
            "fingerprint": fingerprint,
            "_segments": tuple(segments),
            "delta_norm": _readonly(np.array(delta_norm, dtype=np.float64)),
            "nnz": _readonly(np.array(nnz, dtype=np.int64)),
            "_seg": _readonly(seg.copy()),
            "_loc": _readonly(loc.copy()),
        }
        for name, value in fields.items():
            object.__setattr__(out, name, value)
        return out

    @classmethod
    def _from_segment(cls, n: int, segment: Segment, labels: list[dict], fingerprint: str | None) -> Variants:
        """A set of all the variants of one segment; each label gets the variant's ``delta_norm`` (None if NaN).

        ``labels`` are fresh dicts of immutable values (str, numbers, None, tuples of them), owned by the caller
        until this call: they are wrapped read-only, not copied.
        """
        norms = segment.norms()
        frozen = []
        for lab, d in zip(labels, norms.tolist(), strict=True):
            lab["delta_norm"] = None if math.isnan(d) else d
            frozen.append(MappingProxyType(lab))
        return cls._make(
            n,
            (segment,),
            np.zeros(segment.count, np.int64),
            np.arange(segment.count),
            frozen,
            fingerprint,
            norms,
            segment.nnz(),
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Variants is immutable (cannot set {name!r}): {_IMMUTABLE}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Variants is immutable (cannot delete {name!r}): {_IMMUTABLE}")

    def __reduce__(self):
        labels = tuple(_thawed(lab) for lab in self.labels)
        return _unpickle, (self.n, self._segments, self._seg, self._loc, labels, self.fingerprint)

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
        """Sub-select variants (slice, int, 1-D int array or boolean mask) -> Variants sharing the storage."""
        ix = self._index(idx, "__getitem__")
        return Variants._make(
            self.n,
            self._segments,
            self._seg[ix],
            self._loc[ix],
            tuple(self.labels[i] for i in ix.tolist()),
            self.fingerprint,
            self.delta_norm[ix],
            self.nnz[ix],
        )

    @staticmethod
    def concat(*variants: Variants) -> Variants:
        """Concatenate variant sets of the same ``n`` (labels keep their fields; ``control_of`` is not remapped).

        The result keeps the parts' :attr:`fingerprint` when all parts built from a SchurForm agree (parts made by
        ``from_masks`` without ``sf`` are bound later); else it is ``"mixed"`` and cannot be evaluated.
        """
        if len(variants) == 1 and not isinstance(variants[0], Variants):
            variants = tuple(variants[0])
        if not variants:
            raise InputError("Variants.concat", None, "need at least one Variants, got none")
        for v in variants:
            if not isinstance(v, Variants):
                raise TypeError(f"Variants.concat: arguments must be Variants, got {type(v).__name__}")
        n = variants[0].n
        if any(v.n != n for v in variants):
            raise InputError(
                "Variants.concat", None, f"all variants must have the same n, got {[v.n for v in variants]}"
            )
        fps = {v.fingerprint for v in variants} - {None}
        fingerprint = fps.pop() if len(fps) == 1 else (MIXED if fps else None)
        segments: list[Segment] = []
        segs = []
        for v in variants:
            segs.append(v._seg + len(segments))
            segments.extend(v._segments)
        return Variants._make(
            n,
            segments,
            np.concatenate(segs),
            np.concatenate([v._loc for v in variants]),
            tuple(lab for v in variants for lab in v.labels),
            fingerprint,
            np.concatenate([v.delta_norm for v in variants]),
            np.concatenate([v.nnz for v in variants]),
        )

    def with_labels(self, labels: Sequence[Mapping[str, Any]]) -> Variants:
        """The same edits with new labels (one mapping per variant), e.g. ``control_of`` pointing into a larger set.

        Args:
            labels: K mappings (copied, made read-only).

        Returns:
            A new Variants sharing this set's storage.

        Example:
            >>> import numpy as np, schurjax as sj
            >>> v = sj.ablate.bands(sj.ordered_schur(np.triu(np.ones((4, 4)))))
            >>> v.with_labels([{**lab, "note": "x"} for lab in v.labels]).labels[0]["note"]
            'x'
        """
        labels = list(labels)
        if len(labels) != len(self):
            raise InputError(
                "Variants.with_labels", None, f"labels must hold K = {len(self)} mappings, got {len(labels)}"
            )
        for lab in labels:
            if not isinstance(lab, Mapping):
                raise TypeError(f"Variants.with_labels: labels must be mappings, got {type(lab).__name__}")
        return Variants._make(
            self.n,
            self._segments,
            self._seg,
            self._loc,
            tuple(_frozen_label(lab) for lab in labels),
            self.fingerprint,
            self.delta_norm,
            self.nnz,
        )

    def bind(self, sf: SchurForm) -> Variants:
        """Tie the variants to ``sf``: attach ``sf.T`` to ``from_masks`` variants made without ``sf``.

        Checks what ``from_masks(masks, sf=sf)`` checks (masks that change the diagonal blocks of T raise unless
        they were made with ``allow_diagonal=True``), fills ``delta_norm`` and recomputes the label counts
        ``n_changed``/``n_removed`` from T. Variants already built from a SchurForm must come from this one
        (same ``sf.fingerprint``); they are returned as a new set sharing the storage.

        Args:
            sf: the SchurForm of W.

        Returns:
            Variants with ``fingerprint == sf.fingerprint``.

        Raises:
            ValueError: if ``sf`` has another ``n``, the variants were built from a different SchurForm (or mix
                several), or a mask changes the diagonal blocks of T without ``allow_diagonal``.

        Example:
            >>> import numpy as np, schurjax as sj
            >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))))
            >>> u = sj.ablate.from_masks(np.triu(np.zeros((3, 3)), 1) + np.tril(np.ones((3, 3))))
            >>> u.fingerprint is None, u.bind(sf).fingerprint == sf.fingerprint, float(u.bind(sf).delta_norm[0])
            (True, True, 1.7320508075688772)
        """
        return self._bind(sf, "Variants.bind", "variants", "sf")

    def _bind(self, sf: SchurForm, fn: str, name: str, sf_name: str) -> Variants:
        """:meth:`bind` with the error messages of caller ``fn`` (argument names ``name`` and ``sf_name``)."""
        if not isinstance(sf, SchurForm):
            raise TypeError(
                f"{fn}: {sf_name} must be a SchurForm (from schurjax.ordered_schur), got {type(sf).__name__}"
            )
        if sf.n != self.n:
            raise InputError(fn, None, f"{sf_name} has n = {sf.n} but {name} have n = {self.n}; expected equal")
        if self.fingerprint == MIXED:
            raise InputError(
                fn,
                None,
                f"{name} mix variants built from different SchurForms (Variants.concat of sets "
                f"from different sf); build every part from {sf_name}",
            )
        fp = sf.fingerprint
        if self.fingerprint is not None and self.fingerprint != fp:
            raise InputError(
                fn,
                None,
                f"{name} were built from a different SchurForm than {sf_name} (fingerprint "
                f"{self.fingerprint[:12]} != {fp[:12]}); build the variants from the SchurForm you "
                f"pass as {sf_name}",
            )
        unbound = [s for s, seg in enumerate(self._segments) if isinstance(seg, _Mask) and seg.T is None]
        if not unbound:
            return Variants._make(
                self.n, self._segments, self._seg, self._loc, self.labels, fp, self.delta_norm, self.nnz
            )
        segs = list(self._segments)
        labels = [dict(lab) for lab in self.labels]
        T = sf.T
        nz = T[None] != 0.0
        for s in unbound:
            seg = self._segments[s]
            p = np.nonzero(self._seg == s)[0]  # the variants of this set stored in segment s
            masks = seg.masks[self._loc[p]]
            touched = ((masks != 1.0) & sf.diag_mask[None]).reshape(p.size, -1).any(axis=1)
            if touched.any() and not seg.allow_diagonal:
                raise InputError(
                    fn,
                    None,
                    f"{name} {p[touched][:5].tolist()} (from_masks without sf) change the diagonal blocks of "
                    f"{sf_name}.T (this changes the spectrum); pass allow_diagonal=True to from_masks to allow it",
                )
            segs[s] = _Mask(seg.masks, T, seg.allow_diagonal)
            changed = ((masks != 1.0) & nz).reshape(p.size, -1).sum(axis=1)
            removed = ((masks == 0.0) & nz).reshape(p.size, -1).sum(axis=1)
            for i, c, r in zip(p.tolist(), changed.tolist(), removed.tolist(), strict=True):
                labels[i]["n_changed"], labels[i]["n_removed"] = int(c), int(r)
        out = Variants._make(self.n, segs, self._seg, self._loc, self.labels, fp)
        for lab, dn in zip(labels, out.delta_norm.tolist(), strict=True):
            lab["delta_norm"] = dn
        return out.with_labels(labels)

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
            if isinstance(segment, DenseSegment):
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
            ValueError: if a selected variant is an additive random Gaussian control (not a multiplier on T).
        """
        ix = self._index(idx, "masks")
        out = np.ones((ix.size, self.n, self.n))
        for segment, p, loc in self._groups(ix):
            if not isinstance(segment, MultiplierSegment):
                kind = self.labels[int(ix[p[0]])].get("control_kind", "noise")
                raise InputError(
                    "Variants.masks",
                    None,
                    f"variant {int(ix[p[0]])} ({kind}) is an additive Gaussian edit, not a mask of T; use delta_T",
                )
            counts, r, c, m = segment.mult_coo(loc)
            out[np.repeat(p, counts), r, c] = m
        return out


def _unpickle(n, segments, seg, loc, labels, fingerprint) -> Variants:
    return Variants._make(n, segments, seg, loc, tuple(_frozen_label(lab) for lab in labels), fingerprint)
