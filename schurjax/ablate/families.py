"""The ablation families: coupling removals and scalings in Schur coordinates, and user masks.

Every family takes a :class:`~schurjax.schur.SchurForm` first; options are keyword-only. :data:`FAMILIES` is the
registry, keyed by the ``family`` field of the labels each function makes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Bool, Float, Int

from schurjax.ablate.storage import _Mask, _Prefix, _Sparse
from schurjax.ablate.variants import Variants, _check_sf
from schurjax.errors import InputError
from schurjax.schur import SchurForm

if TYPE_CHECKING:
    #: couplings, as (p,) indices into ``sf.couplings`` or (p, 2) ``[i, j]`` entries
    CouplingList = Int[np.ndarray, " p"] | Int[np.ndarray, "p 2"] | Sequence[int] | Sequence[Sequence[int]]
    IntsLike = int | Sequence[int] | Int[np.ndarray, " k"]

_CLASSES = ("slow-real", "slow-osc", "fast-real", "fast-osc")


def _couplings(sf: SchurForm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the coupling positions of ``sf`` (row-major, as ``sf.couplings``)."""
    ci, cj = sf.couplings[:, 0], sf.couplings[:, 1]
    return ci, cj, sf.T[ci, cj]


def _block_eigs(sf: SchurForm) -> list[tuple[float, float]]:
    """``(re, im)`` of each block's eigenvalue (the ``Im >= 0`` member of a pair), for labels."""
    be = sf.block_eigvals
    return list(zip(be.real.tolist(), be.imag.tolist(), strict=True))


def _removal(sf: SchurForm, rows: np.ndarray, cols: np.ndarray):
    return rows, cols, -sf.T[rows, cols], np.zeros(rows.size)


def _counts(vals: np.ndarray) -> dict:
    nz = int(np.count_nonzero(vals))
    return {"n_removed": nz, "n_changed": nz}


def _check_threshold(x, fn: str, name: str = "threshold") -> float:
    try:
        val = float(x)
    except (TypeError, ValueError):
        raise InputError(fn, None, f"{name} must be a finite non-negative float, got {x!r}") from None
    if not math.isfinite(val) or val < 0:
        raise InputError(fn, None, f"{name} must be a finite non-negative float, got {x!r}")
    return val


def single_couplings(sf: SchurForm, *, include_zeros: bool = False, threshold: float = 0.0) -> Variants:
    """One variant per coupling entry ``T[i, j]`` (above the block diagonal): remove it.

    Args:
        sf: SchurForm of W (n x n).
        include_zeros: keep every coupling entry, even exact zeros (they change nothing).
        threshold: otherwise keep only entries with ``|T[i, j]| > threshold``.

    Returns:
        Variants, one per kept entry in row-major order. Labels: ``entries=((i, j),)``, ``row``, ``col``,
        ``value``, ``target_block`` (block of i), ``source_block`` (block of j), ``target_eig``, ``source_eig``.

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> [lab["label"] for lab in sj.ablate.single_couplings(sf).labels]
        ['T[0,1]', 'T[0,2]', 'T[1,2]']
    """
    fn = "single_couplings"
    _check_sf(sf, fn)
    thr = _check_threshold(threshold, fn)
    ci, cj, cval = _couplings(sf)
    keep = np.ones(ci.size, bool) if include_zeros else np.abs(cval) > thr
    ci, cj, cv = ci[keep], cj[keep], cval[keep]
    K = ci.size
    seg = _Sparse(np.arange(K + 1), ci, cj, -cv, np.zeros(K))
    bidx, eig = sf.block_index.tolist(), _block_eigs(sf)
    labels = []
    for i, j, t in zip(ci.tolist(), cj.tolist(), cv.tolist(), strict=True):
        a, b = bidx[i], bidx[j]
        nz = int(t != 0.0)
        labels.append(
            {
                "family": "single",
                "label": f"T[{i},{j}]",
                "entries": ((i, j),),
                "row": i,
                "col": j,
                "value": t,
                "target_block": a,
                "source_block": b,
                "target_eig": eig[a],
                "source_eig": eig[b],
                "n_removed": nz,
                "n_changed": nz,
            }
        )
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def block_couplings(sf: SchurForm, *, include_zeros: bool = False) -> Variants:
    """One variant per block pair ``a < b``: remove the coupling block ``T[block a, block b]`` (link b -> a).

    Args:
        sf: SchurForm of W.
        include_zeros: also make variants for block pairs whose couplings are all zero.

    Returns:
        Variants ordered by (a, b). Labels: ``target_block`` a, ``source_block`` b, their eigenvalues
        (``(re, im)``) and sizes, ``entries`` (the nonzero removed ``(i, j)``).

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> [lab["label"] for lab in sj.ablate.block_couplings(sf).labels]    # nb (nb - 1) / 2 at most
        ['B0<-1', 'B0<-2', 'B1<-2']
    """
    _check_sf(sf, "block_couplings")
    T, blocks, eig = sf.T, sf.blocks, _block_eigs(sf)
    entries, labels = [], []
    for a in range(sf.n_blocks):
        sa, za = blocks[a]
        for b in range(a + 1, sf.n_blocks):
            sb, zb = blocks[b]
            rr, cc = np.meshgrid(np.arange(sa, sa + za), np.arange(sb, sb + zb), indexing="ij")
            rr, cc = rr.ravel(), cc.ravel()
            nz = T[rr, cc] != 0.0
            if not nz.any() and not include_zeros:
                continue
            rr, cc = rr[nz], cc[nz]
            entries.append(_removal(sf, rr, cc))
            labels.append(
                {
                    "family": "block",
                    "label": f"B{a}<-{b}",
                    "target_block": a,
                    "source_block": b,
                    "target_eig": eig[a],
                    "source_eig": eig[b],
                    "target_size": za,
                    "source_size": zb,
                    "entries": tuple(zip(rr.tolist(), cc.tolist(), strict=True)),
                    **_counts(T[rr, cc]),
                }
            )
    return Variants._from_segment(sf.n, _Sparse.from_lists(entries), labels, sf.fingerprint)


def bands(sf: SchurForm, *, include_zeros: bool = False) -> Variants:
    """One variant per block distance ``d = b - a >= 1``: remove all couplings between blocks at distance d.

    Args:
        sf: SchurForm of W.
        include_zeros: also make variants for bands whose couplings are all zero.

    Returns:
        Variants ordered by d. Labels: ``band`` d, ``n_pairs`` (block pairs at that distance).

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> [(lab["band"], lab["n_removed"]) for lab in sj.ablate.bands(sf).labels]  # 1: nearest-neighbour links
        [(1, 2), (2, 1)]
    """
    _check_sf(sf, "bands")
    ci, cj, cval = _couplings(sf)
    bidx, nb = sf.block_index, sf.n_blocks
    dist = bidx[cj] - bidx[ci]
    entries, labels = [], []
    for d in range(1, nb):
        sel = (dist == d) & (cval != 0.0)
        if not sel.any() and not include_zeros:
            continue
        entries.append(_removal(sf, ci[sel], cj[sel]))
        labels.append({"family": "band", "label": f"band {d}", "band": d, "n_pairs": nb - d, **_counts(cval[sel])})
    return Variants._from_segment(sf.n, _Sparse.from_lists(entries), labels, sf.fingerprint)


def all_nonnormal(sf: SchurForm) -> Variants:
    """One variant: ``T -> D`` (every coupling removed). For a normal W it changes nothing (``delta_norm`` 0).

    ``D`` keeps the diagonal blocks as they are, so the result is normal only when every 2x2 block is: a block
    ``[[a, b], [c, a]]`` with ``b != -c`` keeps its own nonnormality (the part by which ``sf.departure`` exceeds
    ``sf.henrici``). ``delta_norm[0] == sf.henrici``, the norm of the couplings, not Henrici's departure of W.

    Returns:
        Variants with K = 1.

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.array([[0.9, 1.0, 0.3], [0.0, 0.5, 2.0], [0.0, 0.0, -0.2]]))
        >>> v = sj.ablate.all_nonnormal(sf)
        >>> len(v), bool(np.isclose(v.delta_norm[0], sf.henrici))
        (1, True)
    """
    _check_sf(sf, "all_nonnormal")
    ci, cj, cval = _couplings(sf)
    sel = cval != 0.0
    seg = _Sparse.from_lists([_removal(sf, ci[sel], cj[sel])])
    labels = [{"family": "all_nonnormal", "label": "T->D", **_counts(cval[sel])}]
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def eigen_groups(sf: SchurForm, *, threshold: float = 0.9, include_zeros: bool = False) -> Variants:
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
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> [lab["label"] for lab in sj.ablate.eigen_groups(sf, threshold=0.95).labels]  # at most 16 variants
        ['slow-real<-fast-real', 'fast-real<-fast-real']
    """
    fn = "eigen_groups"
    _check_sf(sf, fn)
    thr = _check_threshold(threshold, fn)
    ci, cj, cval = _couplings(sf)
    # class of each block, as an index into _CLASSES: 0/1 slow real/osc, 2/3 fast real/osc
    cls = np.where(np.abs(sf.block_eigvals) >= thr, 0, 2) + (sf.block_sizes == 2)
    tc, sc = cls[sf.block_index[ci]], cls[sf.block_index[cj]]
    entries, labels = [], []
    for t in range(4):
        for s in range(4):
            pos = (tc == t) & (sc == s)
            sel = pos & (cval != 0.0)
            if not pos.any() or (not sel.any() and not include_zeros):
                continue
            entries.append(_removal(sf, ci[sel], cj[sel]))
            labels.append(
                {
                    "family": "eigen_groups",
                    "label": f"{_CLASSES[t]}<-{_CLASSES[s]}",
                    "target_class": _CLASSES[t],
                    "source_class": _CLASSES[s],
                    "threshold": thr,
                    **_counts(cval[sel]),
                }
            )
    return Variants._from_segment(sf.n, _Sparse.from_lists(entries), labels, sf.fingerprint)


def _ks(ks, upper: int, fn: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ks))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(fn, None, f"ks must be an int or a non-empty 1-D sequence of ints, got {ks!r}")
    if arr.min() < 0 or arr.max() > upper:
        raise InputError(fn, None, f"ks must lie in [0, {upper}], got min {arr.min()}, max {arr.max()}")
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
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> [lab["min_abs"] for lab in sj.ablate.top_k(sf, [0, 1, 3]).labels]
        [0.0, 0.5, 0.25]
    """
    fn = "top_k"
    _check_sf(sf, fn)
    ci, cj, cval = _couplings(sf)
    karr = _ks(ks, ci.size, fn)
    order = np.argsort(-np.abs(cval), kind="stable")
    tv = cval[order]
    seg = _Prefix(ci[order], cj[order], tv, karr, -np.ones(karr.size))
    labels = [
        {
            "family": "top_k",
            "label": f"top {k}",
            "k": int(k),
            "min_abs": float(abs(tv[k - 1])) if k else 0.0,
            **_counts(tv[:k]),
        }
        for k in karr
    ]
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def _subset(sf: SchurForm, which, fn: str, name: str) -> np.ndarray:
    """Indices into ``sf.couplings`` from: 1-D int indices, (p, 2) ``[i, j]`` entries, or a bool (n, n) mask."""
    arr = np.asarray(which)
    n, m = sf.n, len(sf.couplings)
    ci, cj = sf.couplings[:, 0], sf.couplings[:, 1]
    if arr.dtype == bool:
        if arr.shape != (n, n):
            raise InputError(fn, None, f"boolean {name} must have shape ({n}, {n}), got {arr.shape}")
        if (arr & ~sf.coupling_mask).any():
            raise InputError(fn, None, f"{name} marks entries that are not couplings (on or below the block diagonal)")
        pos = np.full((n, n), -1, dtype=np.int64)
        pos[ci, cj] = np.arange(m)
        return pos[arr]
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(fn, None, f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.ndim == 1:
        if arr.size and (arr.min() < 0 or arr.max() >= m):
            raise InputError(
                fn, None, f"{name} indexes sf.couplings, must lie in [0, {m}), got {arr.min()}..{arr.max()}"
            )
        idx = arr
    elif arr.ndim == 2 and arr.shape[1] == 2:
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise InputError(fn, None, f"{name} entries must lie in [0, {n}), got {arr.min()}..{arr.max()}")
        pos = np.full((n, n), -1, dtype=np.int64)
        pos[ci, cj] = np.arange(m)
        idx = pos[arr[:, 0], arr[:, 1]]
        if (idx < 0).any():
            bad = arr[np.nonzero(idx < 0)[0][0]].tolist()
            raise InputError(fn, None, f"{name} entry {bad} is not a coupling (on or below the block diagonal)")
    else:
        raise InputError(
            fn,
            None,
            f"{name} must be 1-D coupling indices, (p, 2) entries or a bool (n, n) mask, got shape {arr.shape}",
        )
    if np.unique(idx).size != idx.size:
        raise InputError(fn, None, f"{name} must not repeat couplings")
    return idx


def cumulative(sf: SchurForm, order_idx: CouplingList, *, ks: IntsLike | None = None) -> Variants:
    """Remove prefixes of a given importance order over couplings (compression curves), one variant per k.

    Args:
        sf: SchurForm of W.
        order_idx: the order, as (p,) indices into ``sf.couplings`` or (p, 2) ``[i, j]`` entries (for example the
            ``entries`` of single-coupling labels sorted by their measured ``delta_loss``, least important first).
        ks: prefix lengths in ``[0, p]``; default ``1..p``.

    Returns:
        Variants in the order of ``ks``; variant k removes ``order_idx[:k]``. Labels: ``k``, ``p``.

    Example::

        res = sj.evaluate(model, sf, single, batch)
        order = [single.labels[i]["entries"][0] for i in np.argsort(res.delta_loss)]
        curve = sj.ablate.cumulative(sf, order, ks=range(0, len(order) + 1, 16))
    """
    fn = "cumulative"
    _check_sf(sf, fn)
    ci, cj, cval = _couplings(sf)
    idx = _subset(sf, order_idx, fn, "order_idx")
    karr = np.arange(1, idx.size + 1) if ks is None else _ks(ks, idx.size, fn)
    if karr.size == 0:
        raise InputError(fn, None, "order_idx is empty, so there is no prefix to remove")
    tv = cval[idx]
    seg = _Prefix(ci[idx], cj[idx], tv, karr, -np.ones(karr.size))
    labels = [
        {"family": "cumulative", "label": f"cum {k}", "k": int(k), "p": int(idx.size), **_counts(tv[:k])} for k in karr
    ]
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def scaling(
    sf: SchurForm,
    alphas: float | Sequence[float] | Float[np.ndarray, " k"],
    *,
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
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> v = sj.ablate.scaling(sf, np.linspace(0.0, 2.0, 5))    # the path from T -> D (α = 0) to 2N
        >>> [lab["label"] for lab in v.labels], bool(np.isclose(v.delta_norm[0], sf.henrici))
        (['x0', 'x0.5', 'x1', 'x1.5', 'x2'], True)
    """
    fn = "scaling"
    _check_sf(sf, fn)
    ci, cj, cval = _couplings(sf)
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError):
        raise InputError(
            fn, None, f"alphas must be a float or a 1-D sequence of finite floats, got {alphas!r}"
        ) from None
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise InputError(
            fn, None, f"alphas must be a float or a non-empty 1-D sequence of finite floats, got {alphas!r}"
        )
    idx = np.arange(ci.size) if which is None else _subset(sf, which, fn, "which")
    idx = idx[cval[idx] != 0.0]
    seg = _Prefix(ci[idx], cj[idx], cval[idx], np.full(a.size, idx.size), a - 1.0)
    labels = []
    for al in a.tolist():
        c = int(idx.size) if al != 1.0 else 0
        labels.append(
            {
                "family": "scaling",
                "label": f"x{al:g}",
                "alpha": al,
                "n_scaled": int(idx.size),
                "n_removed": c if al == 0.0 else 0,
                "n_changed": c,
            }
        )
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def from_masks(
    masks: Float[np.ndarray, "K n n"] | Bool[np.ndarray, "K n n"] | Float[np.ndarray, "n n"] | Bool[np.ndarray, "n n"],
    *,
    sf: SchurForm | None = None,
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
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> M = np.ones((2, 3, 3)); M[0][sf.coupling_mask] = 0.0
        >>> v = sj.ablate.from_masks(M, sf=sf)
        >>> [(lab["label"], lab["n_removed"]) for lab in v.labels]
        [('mask 0', 3), ('mask 1', 0)]
    """
    fn = "from_masks"
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise InputError(fn, None, f"masks must have shape (K, n, n), got {np.shape(masks)}")
    if arr.shape[0] == 0:
        raise InputError(fn, None, f"masks must hold at least one mask (K > 0), got shape {arr.shape}")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(fn, None, f"masks must be real or bool, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(fn, None, f"masks must be finite, got {int((~np.isfinite(arr)).sum())} non-finite entries")
    K, n = arr.shape[0], arr.shape[1]
    T = None
    if sf is not None:
        _check_sf(sf, fn)
        if n != sf.n:
            raise InputError(
                fn, None, f"masks have shape {arr.shape} but sf has n = {sf.n}; expected (K, {sf.n}, {sf.n})"
            )
        touched = ((arr != 1.0) & sf.diag_mask[None]).reshape(K, -1).any(axis=1)
        if touched.any() and not allow_diagonal:
            raise InputError(
                fn,
                None,
                f"masks {np.nonzero(touched)[0][:5].tolist()} change the diagonal blocks of T (this changes the "
                "spectrum); pass allow_diagonal=True to allow it",
            )
        T = sf.T
    seg = _Mask(arr, T, allow_diagonal)
    removed = (arr == 0.0) if T is None else (arr == 0.0) & (T[None] != 0.0)
    v = Variants._from_segment(
        n,
        seg,
        [{"family": family, "label": f"{family} {k}", "index": k} for k in range(K)],
        None if sf is None else sf.fingerprint,
    )
    counts = zip(v.labels, seg.nnz().tolist(), removed.reshape(K, -1).sum(axis=1).tolist(), strict=True)
    return v.with_labels([{**lab, "n_changed": int(c), "n_removed": int(r)} for lab, c, r in counts])


#: The family registry: name -> function. The name is the ``family`` field of every label the function makes
#: (see the package docstring).
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
