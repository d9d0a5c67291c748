"""Random controls for a set of variants, reproducible from a key: matched norm, matched count, coupling noise,
rank-matched and Schur-basis rank-1 edits.

Each control function takes ``key`` first (a ``jax.random.key(seed)``, a raw uint32 key or an int seed, which
means ``jax.random.key(seed)``), then the SchurForm and the variants to control; ``n_per`` is keyword-only. Draws
are made on demand from ``(key, kind, control_of, rep)``, so the same key gives the same draws in any slice.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from schurjax._seeds import key_words
from schurjax.ablate.storage import _LowRank, _Noise, _RandomSubset
from schurjax.ablate.variants import Variants, _check_sf
from schurjax.errors import InputError
from schurjax.schur import SchurForm

if TYPE_CHECKING:
    from jaxtyping import PRNGKeyArray, UInt32

    #: a ``jax.random.key(seed)``, a raw uint32 key or an int seed
    KeyLike = PRNGKeyArray | UInt32[np.ndarray, "2"] | int

# the code of each kind enters its seed words, so the kinds draw different streams from one key
_KIND_CODE = {"matched_norm": 1, "matched_count": 2, "coupling_noise": 3, "rank_matched": 4, "schur_rank1": 5}


def _entropy(key: KeyLike, fn: str) -> tuple[int, ...]:
    """Deterministic NumPy seed words from a JAX key (typed or raw uint32) or an int seed (same as key(seed))."""
    import jax

    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    if not hasattr(key, "dtype"):
        raise TypeError(f"{fn}: key must be a jax.random.key(seed) or an int seed, got {type(key).__name__}")
    return key_words(fn, key)


def _control_setup(fn: str, key: KeyLike, sf: SchurForm, variants: Variants, n_per: int):
    """Seed words, the variants bound to ``sf``, and the (K * n_per, 2) ``(control_of, rep)`` keys."""
    entropy = _entropy(key, fn)
    _check_sf(sf, fn)
    if not isinstance(variants, Variants):
        raise TypeError(f"{fn}: variants must be a Variants, got {type(variants).__name__}")
    if variants.n != sf.n:
        raise InputError(fn, None, f"variants have n = {variants.n} but sf has n = {sf.n}")
    if len(variants) == 0:
        raise InputError(fn, None, "variants is empty (K = 0); nothing to control")
    if not isinstance(n_per, numbers.Integral) or isinstance(n_per, bool) or n_per < 1:
        raise InputError(fn, None, f"n_per must be a positive int, got {n_per!r}")
    variants = variants._bind(sf, fn, "variants", "sf")
    K = len(variants)
    keys = np.stack([np.repeat(np.arange(K), n_per), np.tile(np.arange(n_per), K)], axis=1)
    return entropy, variants, keys


def _control_labels(kind: str, variants: Variants, keys: np.ndarray, counts) -> list[dict]:
    labels = []
    for (co, rep), c in zip(keys.tolist(), counts, strict=True):
        src = variants.labels[co]
        labels.append(
            {
                "family": "control",
                "label": f"{kind}({src.get('label', co)})#{rep}",
                "control_kind": kind,
                "control_of": co,
                "rep": rep,
                "controlled_family": src.get("family"),
                "controlled_label": src.get("label"),
                "n_removed": int(c[0]),
                "n_changed": int(c[1]),
            }
        )
    return labels


def matched_norm(key: KeyLike, sf: SchurForm, variants: Variants, *, n_per: int = 1) -> Variants:
    """Dense Gaussian controls in weight space with ``||E||_F = ||W - W_k||_F``, ``n_per`` per variant.

    ``E = Q G Q^T`` with G iid Gaussian is itself iid Gaussian, so the edit is drawn directly as ``dT = G``,
    rescaled exactly to the controlled variant's ``delta_norm``.

    Args:
        key: ``jax.random.key(seed)`` (or a raw uint32 key, or an int seed, same as ``jax.random.key(seed)``).
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per``, variant-major (``control_of`` = 0, 0, ..., 1, 1, ...; ``rep`` =
        0..n_per-1). Labels: ``control_kind``, ``control_of`` (index into ``variants``), ``rep``.

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> v = sj.ablate.single_couplings(sf)
        >>> ctrl = sj.ablate.matched_norm(jax.random.key(1), sf, v, n_per=4)
        >>> len(ctrl), bool(np.allclose(ctrl.delta_norm, np.repeat(v.delta_norm, 4)))
        (12, True)
    """
    kind = "matched_norm"
    entropy, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    norms = variants.delta_norm[keys[:, 0]]
    seg = _Noise(entropy, _KIND_CODE[kind], keys, norms, sf.n)
    counts = [(0, sf.n * sf.n if x > 0 else 0) for x in norms]
    return Variants._from_segment(sf.n, seg, _control_labels(kind, variants, keys, counts), sf.fingerprint)


def matched_count(key: KeyLike, sf: SchurForm, variants: Variants, *, n_per: int = 1) -> Variants:
    """Remove as many random couplings as each variant changes (``n_changed``), ``n_per`` per variant.

    The couplings are drawn uniformly without replacement among the nonzero coupling entries of T
    (zero couplings would change nothing). Spectrum-preserving.

    Args:
        key: ``jax.random.key(seed)``, a raw uint32 key or an int seed.
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per`` (variant-major), labels as in :func:`matched_norm`.

    Raises:
        ValueError: if a variant changes more entries than T has nonzero couplings.

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> ctrl = sj.ablate.matched_count(2, sf, sj.ablate.block_couplings(sf), n_per=3)
        >>> len(ctrl), {lab["n_removed"] for lab in ctrl.labels}
        (9, {1})
    """
    kind = "matched_count"
    entropy, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    ci, cj = sf.couplings[:, 0], sf.couplings[:, 1]
    cval = sf.T[ci, cj]
    sel = cval != 0.0
    counts = np.array([variants.labels[co].get("n_changed", int(variants.nnz[co])) for co in keys[:, 0]], np.int64)
    if counts.size and counts.max() > sel.sum():
        raise InputError(
            kind,
            None,
            f"a variant changes {counts.max()} entries but T has only {int(sel.sum())} nonzero couplings to draw from",
        )
    seg = _RandomSubset(entropy, _KIND_CODE[kind], keys, counts, ci[sel], cj[sel], cval[sel])
    labels = _control_labels(kind, variants, keys, [(c, c) for c in counts.tolist()])
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def coupling_noise(key: KeyLike, sf: SchurForm, variants: Variants, *, n_per: int = 1) -> Variants:
    """Gaussian edits supported on all coupling positions, rescaled to each variant's ``delta_norm``.

    Spectrum-preserving (only entries above the block diagonal change).

    Args:
        key: ``jax.random.key(seed)``, a raw uint32 key or an int seed.
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per`` (variant-major), labels as in :func:`matched_norm`.

    Raises:
        ValueError: if a variant has a nonzero norm but W has no coupling positions (n <= 2 with one block).

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> ctrl = sj.ablate.coupling_noise(jax.random.key(3), sf, sj.ablate.bands(sf))
        >>> bool(np.all(ctrl.delta_T()[:, ~sf.coupling_mask] == 0))    # only couplings change
        True
    """
    kind = "coupling_noise"
    entropy, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    norms = variants.delta_norm[keys[:, 0]]
    m = len(sf.couplings)
    if m == 0 and np.any(norms > 0):
        raise InputError(kind, None, f"sf has no coupling positions (blocks {sf.blocks}), cannot match a nonzero norm")
    seg = _Noise(entropy, _KIND_CODE[kind], keys, norms, sf.n, support=(sf.couplings[:, 0], sf.couplings[:, 1]))
    counts = [(0, m if x > 0 else 0) for x in norms]
    return Variants._from_segment(sf.n, seg, _control_labels(kind, variants, keys, counts), sf.fingerprint)


_SVD_CHUNK = 256


def edit_singular_values(variants: Variants, *, rtol: float | None = None) -> list[np.ndarray]:
    """The nonzero singular values of each variant's edit ``dT`` (= those of ``W_k - W``), largest first.

    The numerical rank of an edit is the number of singular values above ``rtol * s_max`` (default
    ``n * float64 eps``, NumPy's ``matrix_rank`` rule). A single coupling has rank 1, a block coupling the rank of its
    block pair's submatrix of T.

    Args:
        variants: K variants (bound to their SchurForm).
        rtol: relative tolerance of the numerical rank.

    Returns:
        K float64 arrays; ``len(s)`` is the edit's rank and ``||s||_2 = delta_norm``.

    Example:
        >>> import numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> [len(s) for s in sj.ablate.edit_singular_values(sj.ablate.all_nonnormal(sf))]
        [2]
    """
    if not isinstance(variants, Variants):
        raise TypeError(f"edit_singular_values: variants must be a Variants, got {type(variants).__name__}")
    n = variants.n
    tol = float(n * np.finfo(np.float64).eps) if rtol is None else float(rtol)
    out: list[np.ndarray] = [np.zeros(0)] * len(variants)
    nnz = np.asarray(variants.nnz)
    one = np.flatnonzero(nnz <= 1)
    for k in one.tolist():  # a single entry: one singular value, its modulus
        d = float(variants.delta_norm[k])
        out[k] = np.array([d]) if d > 0 else np.zeros(0)
    rest = np.flatnonzero(nnz > 1)
    for a in range(0, rest.size, _SVD_CHUNK):
        idx = rest[a : a + _SVD_CHUNK]
        s = np.linalg.svd(variants.delta_T(idx), compute_uv=False)
        for k, sk in zip(idx.tolist(), s, strict=True):
            out[k] = sk[sk > tol * sk[0]] if sk[0] > 0 else np.zeros(0)
    return out


def rank_matched(key: KeyLike, sf: SchurForm, variants: Variants, *, n_per: int = 1) -> Variants:
    """Random dense edits of the same rank and the same singular values as each variant's edit, ``n_per`` each.

    ``dT = U diag(s) V^T`` with ``s`` the singular values of the controlled edit (:func:`edit_singular_values`)
    and U, V Haar-random orthonormal ``n x r`` frames, so the control has the variant's ``||ΔW||_F`` and rank (1
    for a single coupling, the block pair's rank for a block coupling) but random directions in weight space. As
    ``Q U`` is Haar-random when U is, the edit is drawn in Schur coordinates directly. It does not keep the spectrum.

    Args:
        key: ``jax.random.key(seed)``, a raw uint32 key or an int seed.
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per`` (variant-major), labels as in :func:`matched_norm` plus ``rank``.

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.random.default_rng(0).normal(size=(6, 6)))
        >>> v = sj.ablate.single_couplings(sf)
        >>> c = sj.ablate.rank_matched(jax.random.key(0), sf, v)
        >>> int(np.linalg.matrix_rank(c.delta_T(0)[0])), bool(np.allclose(c.delta_norm, v.delta_norm))
        (1, True)
    """
    kind = "rank_matched"
    entropy, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    sv = edit_singular_values(variants)
    full = np.arange(sf.n)
    sel = [sv[co] for co in keys[:, 0].tolist()]
    seg = _LowRank(entropy, _KIND_CODE[kind], keys, [full] * len(sel), [full] * len(sel), sel, sf.n)
    counts = [(0, sf.n * sf.n if s.size else 0) for s in sel]
    labels = _control_labels(kind, variants, keys, counts)
    for lab, s in zip(labels, sel, strict=True):
        lab["rank"] = int(s.size)
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


def _touched_blocks(sf: SchurForm, variants: Variants, co: int) -> tuple[np.ndarray, np.ndarray]:
    """The (target, source) block indices of variant ``co``: its label's, else the blocks its edit's rows and
    columns touch."""
    lab = variants.labels[co]
    if lab.get("target_block") is not None and lab.get("source_block") is not None:
        return np.array([int(lab["target_block"])]), np.array([int(lab["source_block"])])
    d = variants.delta_T(co)[0]
    bi = sf.block_index
    return np.unique(bi[np.flatnonzero(np.any(d != 0, axis=1))]), np.unique(bi[np.flatnonzero(np.any(d != 0, axis=0))])


def schur_rank1(key: KeyLike, sf: SchurForm, variants: Variants, *, n_per: int = 1) -> Variants:
    """Rank-1 edits ``ΔW = ||ΔW_k||_F u v^T`` with random unit vectors inside the same invariant subspaces.

    ``u`` is uniform on the unit sphere of ``span(Q[:, target block])`` and ``v`` on that of
    ``span(Q[:, source block])``, the two spectral blocks the controlled coupling links (single and block couplings
    carry them in their labels; for other variants, the blocks that the edit's rows and columns touch). In Schur
    coordinates the edit is supported on the block pair's entries of T, so for a coupling (target block before the
    source block) it keeps the spectrum. Between two 1x1 blocks the only unit vectors are ``±e``, so the control is
    the coupling's own entry with a random sign and its norm.

    Args:
        key: ``jax.random.key(seed)``, a raw uint32 key or an int seed.
        sf: SchurForm of W.
        variants: the K variants to control.
        n_per: controls per variant.

    Returns:
        Variants of length ``K * n_per`` (variant-major), labels as in :func:`matched_norm` plus ``target_blocks`` and
        ``source_blocks`` (tuples of block indices).

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.random.default_rng(1).normal(size=(6, 6)))
        >>> v = sj.ablate.block_couplings(sf)
        >>> c = sj.ablate.schur_rank1(jax.random.key(0), sf, v, n_per=2)
        >>> same_norm = np.allclose(c.delta_norm, np.repeat(v.delta_norm, 2))
        >>> bool(np.all(c.delta_T()[:, ~sf.coupling_mask] == 0)), bool(same_norm)
        (True, True)
    """
    kind = "schur_rank1"
    entropy, variants, keys = _control_setup(kind, key, sf, variants, n_per)
    starts, sizes = sf.block_starts, sf.block_sizes
    span = lambda bl: np.concatenate([np.arange(starts[b], starts[b] + sizes[b]) for b in bl]).astype(np.int64)  # noqa: E731
    per = [_touched_blocks(sf, variants, co) for co in range(len(variants))]
    rows, cols, sel, tb, sb = [], [], [], [], []
    for co in keys[:, 0].tolist():
        t, s = per[co]
        d = float(variants.delta_norm[co])
        ok = d > 0 and t.size and s.size
        rows.append(span(t) if ok else np.zeros(0, np.int64))
        cols.append(span(s) if ok else np.zeros(0, np.int64))
        sel.append(np.array([d]) if ok else np.zeros(0))
        tb.append(tuple(t.tolist()))
        sb.append(tuple(s.tolist()))
    seg = _LowRank(entropy, _KIND_CODE[kind], keys, rows, cols, sel, sf.n)
    counts = [(0, r.size * c.size if x.size else 0) for r, c, x in zip(rows, cols, sel, strict=True)]
    labels = _control_labels(kind, variants, keys, counts)
    for lab, t, s in zip(labels, tb, sb, strict=True):
        lab["target_blocks"], lab["source_blocks"], lab["rank"] = t, s, 1
    return Variants._from_segment(sf.n, seg, labels, sf.fingerprint)


_CONTROLS = {
    "matched_norm": matched_norm,
    "matched_count": matched_count,
    "coupling_noise": coupling_noise,
    "rank_matched": rank_matched,
    "schur_rank1": schur_rank1,
}

#: The control kinds, in their canonical order (the ``control_kind`` label field).
CONTROL_KINDS = tuple(_CONTROLS)


def controls(
    key: KeyLike, sf: SchurForm, variants: Variants, *, kinds: str | Sequence[str] = CONTROL_KINDS, n_per: int = 1
) -> Variants:
    """Several control kinds at once, concatenated in the order of ``kinds`` (each ``K * n_per`` long).

    Args:
        key: ``jax.random.key(seed)``, a raw uint32 key or an int seed (each kind draws its own stream from it).
        sf: SchurForm of W.
        variants: the K variants to control.
        kinds: one or more of :data:`CONTROL_KINDS` (``"matched_norm"``, ``"matched_count"``, ``"coupling_noise"``,
            ``"rank_matched"``, ``"schur_rank1"``).
        n_per: controls per variant and kind.

    Returns:
        Variants of length ``len(kinds) * K * n_per``.

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> sf = sj.ordered_schur(np.triu(np.ones((3, 3))) * [1.0, 0.5, 0.25])
        >>> v = sj.ablate.single_couplings(sf)
        >>> ctrl = sj.ablate.controls(jax.random.key(0), sf, v, kinds=("matched_norm", "coupling_noise"), n_per=2)
        >>> len(ctrl), ctrl.labels[6]["control_kind"]
        (12, 'coupling_noise')
    """
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if not names:
        raise InputError("controls", None, f"kinds must name at least one of {list(CONTROL_KINDS)}, got {kinds!r}")
    for k in names:
        if k not in _CONTROLS:
            raise InputError("controls", None, f"unknown control kind {k!r}; expected one of {list(CONTROL_KINDS)}")
    return Variants.concat(*[_CONTROLS[k](key, sf, variants, n_per=n_per) for k in names])
