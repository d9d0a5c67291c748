"""Ordered real Schur coordinates of a recurrent weight matrix (host side, NumPy/SciPy, float64).

``ordered_schur(W)`` writes ``W = Q T Q^T`` with ``Q`` orthogonal and ``T`` quasi-upper-triangular, its diagonal
blocks (1x1 for real eigenvalues, 2x2 for complex pairs) sorted along the diagonal by a key. Every entry of ``T``
strictly above the block diagonal is a *coupling*; ``T = D + N`` with ``D`` block diagonal and ``||N||_F`` the norm
of the couplings (``SchurForm.henrici``, named after Henrici's measure it bounds from below). Henrici's departure
from normality of ``W`` itself (``||N||_F`` of a complex Schur form, ``SchurForm.departure``) also counts the
nonnormal part inside the 2x2 blocks, which no coupling holds:
``departure^2 = henrici^2 + sum over 2x2 blocks of (b + c)^2``.

Algorithm:
    1. Real Schur form by LAPACK ``dgees`` (``scipy.linalg.schur(output="real")``), no sorting.
    2. Full reordering of the diagonal blocks with LAPACK's stable block swaps (``dtrexc``, in place on
       Fortran-ordered arrays): the blocks are placed one after the other at the top of the not yet placed part.
    3. 2x2 blocks are put (kept) in LAPACK standardized form ``[[a, b], [c, a]]``, ``b * c < 0``
       (``dtrexc`` re-standardizes swapped blocks with ``dlanv2``; a NumPy port of that rotation is the safety net).
    4. Canonical signs (below), then every entry below the block diagonal is set to an exact 0.
    Cost: one ``dtrexc`` call per block that is out of place (in place, no copies), so the reordering adds about
    10% to the unordered ``dgees`` at n = 512 (``benchmarks/schur_order.py``).

Orders (``order=``). ``lam`` is the block eigenvalue, the member with ``Im >= 0`` for a complex pair:
    ``"modulus"`` (default): descending ``|lam|``; ties by descending ``Re lam``, then ascending ``Im lam``.
    ``"real"``: descending ``Re lam``; ties by ascending ``Im lam`` (real modes before complex pairs).
    ``"angle"``: real modes first, then complex pairs; within each group ascending ``|arg lam|`` (so among real
        modes: ``lam >= 0`` before ``lam < 0``); ties by descending ``|lam|``, then descending ``Re lam``. A numerically
        zero eigenvalue (``|lam| <= 1e-12 ||W||_F``) has no meaningful angle and counts as angle ``pi`` (last in its
        group).
    ``"decay"`` (with ``alpha``, or ``order=("decay", alpha)``): descending per-step decay ``|1 - alpha + alpha lam|``
        of the leaky step ``h' = (1 - alpha) h + alpha (...)``, whose linear part ``(1 - alpha) I + alpha W`` has W's
        Schur vectors: the slowest modes of the *network* first. Ties by the ``"modulus"`` rule. For ``alpha = 1``
        the key is ``|lam|`` and the form is exactly the ``"modulus"`` form (recorded as ``"decay"``, alpha 1).
        :func:`order_for` gives the order that fits a model.
    callable ``key(lam: complex) -> float``: ascending ``key(lam)``; ties by the ``"modulus"`` rule.
        The order is then recorded as ``"custom"``.

Ties: two key values count as equal when they differ by at most ``1e-12 * scale``, where ``scale`` is the spectral
radius for modulus/real-part keys (``1`` for angles, ``max |key|`` for a callable or decay key). Tie groups are formed
greedily along the sorted values, anchored at the first member of each group. Blocks that tie in every key keep
the order in which LAPACK's ``dgees`` returned them, so tied blocks are never swapped needlessly. The result is a
deterministic function of ``W``.

Clusters: the key is evaluated on the eigenvalues of the current diagonal blocks. Swaps are backward stable, but a
defective or tightly clustered eigenvalue moves by up to (its condition number) x eps when its block is swapped, so
after a pass the order is checked again on the new blocks and repaired (at most 4 passes; no pass moves anything in
the ordinary case). For such clusters the final order holds up to that sensitivity, which no Schur reordering can
beat.

Refused swaps: ``dtrexc`` refuses to swap two adjacent blocks whose eigenvalues are too close to separate stably
(``info = 1``). Such blocks are treated as tied if their keys agree to ``1e-6 * scale`` (primary key; for a
callable key, ``1e-6 * max(|key|)``): the block that could not move up stays right after the block that refused, and
that block is placed first. Otherwise ``ordered_schur`` raises a ``ValueError`` naming the two eigenvalues. The
final order therefore holds exactly up to the tie tolerance, or up to ``1e-6 * scale`` between refused pairs.

Scaling: ``W`` is scaled by an exact power of 2 to ``max |W|`` in ``[0.5, 1)`` before LAPACK sees it, and ``T`` is
scaled back. So ``ordered_schur(2**k * W)`` gives exactly the same ``Q`` and exactly ``2**k`` times ``T`` (barring
overflow or underflow), and matrices near the ends of the float64 range are handled like ordinary ones.

Canonical signs (so that the same ``W`` always gives bitwise the same ``Q`` and ``T``):
    1x1 block at ``i``: the entry of largest magnitude of ``Q[:, i]`` is positive (the first index whose magnitude
        is within a relative ``1e-10`` of the largest, scanning from row 0).
    2x2 block at ``i, i+1`` with ``[[a, b], [c, a]]``: (1) if ``|c| > |b|`` the two Schur vectors are exchanged
        (``b <-> c``), so ``|b| >= |c|``; (2) if ``b < 0`` the second vector is negated, so ``b > 0 > c``; (3) both
        vectors are negated if needed so that the largest-magnitude entry of ``Q[:, i]`` is positive (rule as for
        1x1). These are exact signed permutations: no rounding. The eigenvalues are ``a +- i sqrt(-b c)``.
    For a (nearly) normal 2x2 block (``b ~ -c``) the Schur plane is fixed but the basis in the plane is not well
    conditioned: a tiny change of ``W`` may rotate it. Determinism holds for the same input bits.

Example:
    >>> import numpy as np, schurjax as sj
    >>> W = np.random.default_rng(0).standard_normal((8, 8)) / np.sqrt(8)
    >>> sf = sj.ordered_schur(W)
    >>> np.allclose(sf.reconstruct(), W)
    True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
from jaxtyping import Bool, Complex, Float, Int

from schurjax._schur_reorder import (
    _block_structure,
    _canonical_signs,
    _fmt,
    _fro,
    _pair_eigvals,
    _place,
    _standardize_pairs,
    _zero_below,
)
from schurjax.errors import InputError

__all__ = ["SchurForm", "ordered_schur", "order_for", "schur_of", "ORDERS", "ORDER_NAMES", "SCHUR_TOL"]

ORDERS = ("modulus", "real", "angle")
"""The order keys that need no parameter."""

ORDER_NAMES = (*ORDERS, "decay")
"""Every named order; ``"decay"`` needs ``alpha`` (``ordered_schur(W, order="decay", alpha=a)``)."""

SCHUR_TOL = 1e-5
"""Largest ``||Q T Q^T - W||_F / ||W||_F`` at which a SchurForm counts as ``W``'s (:meth:`SchurForm.check_of`)."""

_ZERO_RTOL = 1e-12  # |lam| <= this * ||W||_F is numerically zero (for the angle key)
_MAX_PASSES = 4


# ----------------------------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------------------------


def _as_real_matrix(W: Any, fn: str = "ordered_schur") -> np.ndarray:
    try:
        a = np.asarray(W)
    except Exception as e:  # pragma: no cover - exotic objects
        raise InputError(fn, None, f"W must be a square 2-D real matrix, got {type(W).__name__} ({e})") from None
    if a.dtype.kind == "c":
        raise InputError(fn, None, f"W must be a square 2-D real matrix, got complex dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(fn, None, f"W must be a square 2-D real matrix, got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise InputError(fn, None, f"W must be a non-empty square 2-D real matrix, got shape {tuple(a.shape)}")
    if a.dtype.kind not in "biuf":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(fn, None, f"W must be a square 2-D real matrix, got dtype {a.dtype}") from None
    a = np.array(a, dtype=np.float64, order="F", copy=True)
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise InputError(fn, None, f"W must be finite, got {bad} NaN/Inf entries in a matrix of shape {a.shape}")
    return a


def _order_name(order: Any) -> str:
    if callable(order):
        return "custom"
    if isinstance(order, str) and order in ORDER_NAMES:
        return order
    raise InputError(
        "ordered_schur",
        None,
        "order must be one of 'modulus', 'real', 'angle', 'decay' (with alpha), ('decay', alpha) or "
        f"a callable, got {order!r}",
    )


def _check_alpha(where: str, alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating | np.integer):
        raise InputError(where, None, f"alpha must be a real number in (0, 1] (alpha = dt / tau), got {alpha!r}")
    if not (0.0 < float(alpha) <= 1.0):
        raise InputError(where, None, f"alpha must be a real number in (0, 1] (alpha = dt / tau), got {alpha!r}")
    return float(alpha)


class _DecayKey:
    """Sort key ``-|1 - alpha + alpha lam|`` (ascending: descending per-step decay), ties by the modulus rule."""

    label = "'decay'"

    def __init__(self, alpha: float):
        self.alpha = alpha

    def __call__(self, lam: complex) -> float:
        return -abs((1.0 - self.alpha) + self.alpha * lam)


def _resolve_order(order: Any, alpha: Any) -> tuple[Any, str, float | None]:
    """``(key for the reordering, recorded name, recorded alpha)`` from ``ordered_schur``'s order/alpha."""
    if isinstance(order, tuple):
        if len(order) != 2 or order[0] != "decay":
            raise InputError("ordered_schur", None, f"a tuple order must be ('decay', alpha), got {order!r}")
        a = _check_alpha("ordered_schur", order[1])
        if alpha is not None and _check_alpha("ordered_schur", alpha) != a:
            raise InputError("ordered_schur", None, f"order={order!r} and alpha={alpha!r} disagree; give alpha once")
        order, alpha = "decay", a
    name = _order_name(order)
    if name != "decay":
        if alpha is not None:
            raise InputError(
                "ordered_schur", None, f"alpha applies to order='decay' only, got alpha={alpha!r} with order={name!r}"
            )
        return order, name, None
    if alpha is None:
        raise InputError("ordered_schur", None, "order='decay' needs alpha (the model's dt / tau), got alpha=None")
    a = _check_alpha("ordered_schur", alpha)
    # alpha = 1: the decay key is |lam| and the modulus rule is the same order, to the bit
    return ("modulus" if a == 1.0 else _DecayKey(a)), "decay", a


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


def ordered_schur(
    W: Any, order: str | tuple[str, float] | Callable[[complex], float] = "modulus", *, alpha: float | None = None
) -> SchurForm:
    """Ordered real Schur form ``W = Q T Q^T`` (NumPy float64), blocks sorted along the diagonal by ``order``.

    Args:
        W: (n, n) real matrix (NumPy or JAX array, any real or integer dtype; converted to float64).
        order: ``"modulus"`` (descending ``|lam|``, default), ``"real"`` (descending ``Re lam``), ``"angle"``
            (real modes first, then ascending ``|arg lam|``), ``"decay"`` (descending per-step decay
            ``|1 - alpha + alpha lam|``; needs ``alpha``) or ``("decay", alpha)`` (what :func:`order_for` returns
            for a leaky model), or a callable ``key(lam) -> float`` sorted ascending (``lam`` the ``Im >= 0``
            member of a pair). Tie rules: see the module docstring.
        alpha: the ``alpha = dt / tau`` in (0, 1] of the ``"decay"`` key (recorded as ``SchurForm.alpha``); only
            with ``order="decay"``.

    Returns:
        SchurForm with Q (n, n) orthogonal, T (n, n) quasi-upper-triangular with standardized 2x2 blocks,
        exact zeros below the block diagonal, and canonical Schur-vector signs.

    Raises:
        ValueError: W not a finite, non-empty, square 2-D real matrix; bad ``order`` or ``alpha``; or a swap that
            LAPACK refused between blocks whose keys are not tied.

    Example:
        >>> sf = ordered_schur(np.array([[0.5, 2.0], [0.0, -0.9]]))
        >>> sf.eigvals
        array([-0.9+0.j,  0.5+0.j])
        >>> leaky = ordered_schur(np.array([[0.5, 2.0], [0.0, -0.9]]), order="decay", alpha=0.2)
        >>> leaky.eigvals, leaky.step_decay().round(2)          # |0.8 + 0.2 lam|: 0.9 > 0.62
        (array([ 0.5+0.j, -0.9+0.j]), array([0.9 , 0.62]))
    """
    order, name, alpha = _resolve_order(order, alpha)
    A = _as_real_matrix(W)
    # exact power-of-2 scaling to max |W| in [0.5, 1): LAPACK's swaps misbehave near under/overflow, and this makes
    # the result exactly scale-invariant: ordered_schur(2**k * W) has the same Q and T scaled by 2**k.
    top = float(np.abs(A).max())
    e = math.frexp(top)[1] if top > 0 else 0
    if e:
        A = np.ldexp(A, -e, out=A)
    T, Q = scipy.linalg.schur(A, output="real", overwrite_a=True, check_finite=False)
    T = np.asfortranarray(T)
    Q = np.asfortranarray(Q)
    if A.shape[0] > 1:
        zero = _ZERO_RTOL * float(_fro(T))
        _standardize_pairs(T, Q)
        # Passes until a plan on the current T moves nothing. A second pass only acts where the swaps perturbed
        # ill-conditioned (clustered/defective) eigenvalues across a key boundary, or after a 2x2 block split.
        # A restructured pass (a 2x2 block split into two real eigenvalues) does not count: splits only ever
        # lower the number of 2x2 blocks, so there are at most n / 2 of them.
        passes = 0
        for _ in range(A.shape[0] + _MAX_PASSES):
            if passes >= _MAX_PASSES:
                break
            T, Q, status = _place(T, Q, order, zero, math.ldexp(1.0, e))
            split = _standardize_pairs(T, Q)
            if status == "sorted" and not split:
                break
            passes += status == "moved" and not split
        _canonical_signs(T, Q)
        T = _zero_below(T)
    if e:
        T = np.ldexp(T, e)
    starts, sizes = _block_structure(T)
    blocks = tuple((int(s), int(z)) for s, z in zip(starts, sizes, strict=True))
    return SchurForm(Q=Q, T=T, blocks=blocks, eigvals=_pair_eigvals(T, starts, sizes), order=name, alpha=alpha)


def order_for(model: Any) -> str | tuple[str, float]:
    """The mode order that fits ``model``'s step: ``"modulus"`` for ``alpha = 1``, else ``("decay", alpha)``.

    A leaky network's slow modes are those with the largest per-step decay ``|1 - alpha + alpha lam|``, not the
    largest ``|lam|``; for ``alpha = 1`` (the paper's ``TanhRNN``) both are ``|lam|`` and the default stays
    ``"modulus"``. The result goes straight into ``ordered_schur(W, order=...)``.

    Args:
        model: a ``RateRNN`` / ``TanhRNN`` (anything with an ``alpha``; without one: ``"modulus"``).

    Example:
        >>> import jax, schurjax as sj
        >>> order_for(sj.TanhRNN(1, 4, 1, key=jax.random.key(0)))
        'modulus'
        >>> order_for(sj.RateRNN(1, 4, 1, alpha=0.2, key=jax.random.key(0)))
        ('decay', 0.2)
    """
    alpha = float(getattr(model, "alpha", 1.0))
    _check_alpha("order_for", alpha)
    return "modulus" if alpha == 1.0 else ("decay", alpha)


def schur_of(model: Any, order: Any = None) -> SchurForm:
    """``ordered_schur(model.W_rec)`` in float64 with the order that fits the model (:func:`order_for`) by default.

    Example:
        >>> import jax, schurjax as sj
        >>> schur_of(sj.RateRNN(1, 4, 1, alpha=0.5, key=jax.random.key(0))).order
        'decay'
    """
    W = np.asarray(model.W_rec, dtype=np.float64)
    return ordered_schur(W, order=order_for(model) if order is None else order)


def _key3(sf: SchurForm) -> tuple[Any, ...]:
    return (sf.T.shape, sf.blocks, sf.order)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class SchurForm:
    """An ordered real Schur form ``W = Q T Q^T`` with its block structure (host side, NumPy float64).

    Attributes:
        Q: (n, n) orthogonal Schur vectors (read-only array).
        T: (n, n) quasi-upper-triangular Schur form (read-only array).
        blocks: ``(start, size)`` of each diagonal block, in diagonal order; size 1 (real) or 2 (complex pair).
        eigvals: (n,) complex eigenvalues in diagonal order; a pair gives ``(a + ib, a - ib)`` with ``b > 0`` first.
        order: ``"modulus"``, ``"real"``, ``"angle"``, ``"decay"`` or ``"custom"``.
        alpha: the ``alpha`` of the ``"decay"`` order (float in (0, 1]); None for every other order.

    Example:
        >>> sf = ordered_schur(np.array([[0.9, 1.0, 0.3], [0.0, 0.5, 2.0], [0.0, 0.0, -0.2]]))
        >>> sf.blocks, sf.couplings.shape, sf.block_coupling_norms().shape
        (((0, 1), (1, 1), (2, 1)), (3, 2), (3, 3))
        >>> round(sf.henrici, 6) == round(float(np.sqrt(1.0 + 0.09 + 4.0)), 6)
        True
    """

    Q: Float[np.ndarray, "n n"]
    T: Float[np.ndarray, "n n"]
    blocks: tuple[tuple[int, int], ...]
    eigvals: Complex[np.ndarray, " n"]
    order: str
    alpha: float | None = None

    def __post_init__(self) -> None:
        Q = np.array(self.Q, dtype=np.float64, order="C")
        T = np.array(self.T, dtype=np.float64, order="C")
        ev = np.array(self.eigvals, dtype=np.complex128)
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or T.shape != Q.shape or ev.shape != (Q.shape[0],):
            raise InputError(
                "SchurForm", None, f"Q, T must be (n, n) and eigvals (n,), got {Q.shape}, {T.shape}, {ev.shape}"
            )
        blocks = tuple((int(s), int(z)) for s, z in self.blocks)
        pos = 0
        for s, z in blocks:
            if s != pos or z not in (1, 2):
                raise InputError("SchurForm", None, f"blocks must tile 0..n-1 with sizes 1 or 2, got {blocks}")
            pos += z
        if pos != Q.shape[0]:
            raise InputError("SchurForm", None, f"blocks must tile 0..n-1 (n={Q.shape[0]}), got {blocks}")
        object.__setattr__(self, "Q", _readonly(Q))
        object.__setattr__(self, "T", _readonly(T))
        object.__setattr__(self, "eigvals", _readonly(ev))
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "order", str(self.order))
        if self.order == "decay":
            if self.alpha is None:
                raise InputError("SchurForm", None, "order 'decay' needs its alpha (a float in (0, 1]), got alpha=None")
            object.__setattr__(self, "alpha", _check_alpha("SchurForm", self.alpha))
        elif self.alpha is not None:
            raise InputError(
                "SchurForm",
                None,
                f"alpha belongs to order 'decay' only, got alpha={self.alpha!r} with order={self.order!r}",
            )

    # -- structure ------------------------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Matrix size."""
        return int(self.Q.shape[0])

    @property
    def n_blocks(self) -> int:
        """Number of diagonal blocks."""
        return len(self.blocks)

    @functools.cached_property
    def block_index(self) -> Int[np.ndarray, " n"]:
        """(n,) int64: block number of each row."""
        sizes = np.array([z for _, z in self.blocks], dtype=np.int64)
        return _readonly(np.repeat(np.arange(len(self.blocks), dtype=np.int64), sizes))

    @functools.cached_property
    def block_sizes(self) -> Int[np.ndarray, " nb"]:
        """(nb,) int64: size (1 or 2) of each block."""
        return _readonly(np.array([z for _, z in self.blocks], dtype=np.int64))

    @functools.cached_property
    def block_starts(self) -> Int[np.ndarray, " nb"]:
        """(nb,) int64: first row of each block."""
        return _readonly(np.array([s for s, _ in self.blocks], dtype=np.int64))

    @functools.cached_property
    def block_eigvals(self) -> Complex[np.ndarray, " nb"]:
        """(nb,) complex128: one eigenvalue per block (the ``Im >= 0`` member of a pair)."""
        return _readonly(self.eigvals[self.block_starts].copy())

    @functools.cached_property
    def coupling_mask(self) -> np.ndarray:
        """(n, n) bool: True strictly above the block diagonal (the coupling positions)."""
        bi = self.block_index
        return _readonly(bi[:, None] < bi[None, :])

    @functools.cached_property
    def couplings(self) -> Int[np.ndarray, "m 2"]:
        """(m, 2) int64: ``(i, j)`` of every position strictly above the block diagonal, row-major sorted."""
        i, j = np.nonzero(self.coupling_mask)
        return _readonly(np.stack([i, j], axis=1).astype(np.int64))

    @functools.cached_property
    def diag_mask(self) -> Bool[np.ndarray, "n n"]:
        """(n, n) bool: True on the diagonal blocks (the positions of ``D``)."""
        bi = self.block_index
        return _readonly(bi[:, None] == bi[None, :])

    @functools.cached_property
    def fingerprint(self) -> str:
        """Digest of what variants built from this form depend on: ``T`` (exact float64 bytes), ``blocks``, ``order``.

        32 hex characters (blake2b, 128 bits). Two forms get the same fingerprint exactly when these agree bit for
        bit, e.g. the same ``ordered_schur(W, order)`` computed twice, or a ``to_npz``/``from_npz`` round trip.
        ``schurjax.ablate.Variants`` record it, and ``schurjax.evaluate`` refuses variants built from another form.

        Example:
            >>> sf = ordered_schur(np.array([[0.5, 2.0], [0.0, -0.9]]))
            >>> sf.fingerprint == ordered_schur(np.array([[0.5, 2.0], [0.0, -0.9]])).fingerprint
            True
        """
        h = hashlib.blake2b(digest_size=16)
        key = (self.T.shape, self.blocks, self.order) if self.alpha is None else (*_key3(self), self.alpha)
        h.update(repr(key).encode())
        h.update(np.ascontiguousarray(self.T).tobytes())
        return h.hexdigest()

    @functools.cached_property
    def D(self) -> Float[np.ndarray, "n n"]:
        """(n, n) block-diagonal part of T."""
        bi = self.block_index
        return _readonly(np.where(bi[:, None] == bi[None, :], self.T, 0.0))

    @functools.cached_property
    def N(self) -> Float[np.ndarray, "n n"]:
        """(n, n) coupling (nonnormal) part of T: ``T = D + N``."""
        return _readonly(np.where(self.coupling_mask, self.T, 0.0))

    def block_coupling_norms(self) -> Float[np.ndarray, "nb nb"]:
        """(nb, nb) ``||T[block a, block b]||_F`` for ``a < b``, else 0."""
        S = self.T * self.T
        st = self.block_starts
        R = np.add.reduceat(np.add.reduceat(S, st, axis=0), st, axis=1)
        return np.triu(np.sqrt(R), k=1)

    @property
    def henrici(self) -> float:
        """Norm of the couplings, ``||N||_F`` of the real Schur form (the entries above the block diagonal).

        This is what removing every coupling (``ablate.all_nonnormal``) takes away. It is *not* Henrici's departure
        from normality of ``W`` (:attr:`departure`, ``>= henrici``): a 2x2 block ``[[a, b], [c, a]]`` with
        ``b != -c`` is itself nonnormal, and that part stays in ``D``. The name is kept for compatibility.
        """
        return float(_fro(self.N))

    @property
    def henrici_relative(self) -> float:
        """``||N||_F / ||T||_F`` (couplings relative to the whole of T, ``||T||_F = ||W||_F``; 0 when T == 0)."""
        t = float(_fro(self.T))
        return 0.0 if t == 0 else self.henrici / t

    @property
    def departure(self) -> float:
        """Henrici's departure from normality of W itself, ``sqrt(||W||_F^2 - sum |lam|^2)`` (>= ``henrici``).

        Equal to ``||N||_F`` of a complex Schur form. The real Schur form splits it as
        ``departure^2 = henrici^2 + sum over 2x2 blocks of (b + c)^2``: a nonnormal 2x2 block carries the rest.
        """
        pairs = [s for s, z in self.blocks if z == 2]
        extra = sum((self.T[s, s + 1] + self.T[s + 1, s]) ** 2 for s in pairs)
        return float(math.sqrt(self.henrici**2 + extra))

    @property
    def spectral_radius(self) -> float:
        """``max |lam|``."""
        return float(np.abs(self.eigvals).max())

    @property
    def order_spec(self) -> str | tuple[str, float]:
        """The ``order`` argument that reproduces this form: ``"modulus"`` etc., or ``("decay", alpha)``.

        Example:
            >>> ordered_schur(np.eye(2), order="decay", alpha=0.2).order_spec
            ('decay', 0.2)
        """
        return self.order if self.alpha is None else (self.order, self.alpha)

    def step_decay(self, alpha: float | None = None) -> Float[np.ndarray, " n"]:
        """(n,) per-step decay ``|1 - alpha + alpha lam|`` of each eigenvalue, in diagonal order (aligned with eigvals).

        The modulus of the eigenvalues of the step's linear part ``(1 - alpha) I + alpha W``: how much of a mode is
        left after one step of a leaky network. ``alpha = 1`` gives ``|lam|``.

        Args:
            alpha: in (0, 1]; default the form's own (``order="decay"``); required for other orders.

        Example:
            >>> sf = ordered_schur(np.diag([0.9, -0.95]), order="decay", alpha=0.1)
            >>> sf.eigvals.real, sf.step_decay().round(3), sf.step_decay(1.0)
            (array([ 0.9 , -0.95]), array([0.99 , 0.805]), array([0.9 , 0.95]))
        """
        if alpha is None:
            if self.alpha is None:
                raise InputError(
                    "SchurForm.step_decay",
                    None,
                    f"this form has order {self.order!r} and no alpha; pass alpha (the model's "
                    "dt / tau, 1 for TanhRNN)",
                )
            alpha = self.alpha
        a = _check_alpha("SchurForm.step_decay", alpha)
        return np.abs((1.0 - a) + a * self.eigvals)

    # -- maps -----------------------------------------------------------------------------------------------------

    def reconstruct(self, T: Any = None) -> np.ndarray:
        """``Q @ T @ Q.T`` for ``T`` (n, n) or a stack (..., n, n); default the form's own T (gives W)."""
        Tm = self.T if T is None else np.asarray(T, dtype=np.float64)
        if Tm.ndim < 2 or Tm.shape[-2:] != (self.n, self.n):
            raise InputError(
                "SchurForm.reconstruct", None, f"T must have shape (..., {self.n}, {self.n}), got {Tm.shape}"
            )
        return self.Q @ Tm @ self.Q.T

    def check_of(self, W: Any, where: str, *, name: str = "sf", model: str = "model") -> None:
        """Refuse, in one line, a form that is not this matrix's: ``||Q T Q^T - W||_F / ||W||_F`` (float64) must be
        at most :data:`SCHUR_TOL` (float32 storage of ``W`` rounds at ~1e-7; another matrix is off by O(1)).

        Raises:
            InputError: ``"{where}: {name} is not the Schur form of {model}.W_rec (relative reconstruction error
                ...)"``, also for a non-finite form or a shape mismatch.

        Example:
            >>> import numpy as np
            >>> W = np.array([[0.5, 1.0], [0.0, -0.3]]); sf = ordered_schur(W)
            >>> sf.check_of(W, "demo")
            >>> try:
            ...     sf.check_of(W.T + 1.0, "demo")
            ... except ValueError as e:
            ...     print(str(e).split(" (")[0])
            demo: sf is not the Schur form of model.W_rec
        """
        Wm = np.asarray(W, dtype=np.float64)
        if Wm.shape != (self.n, self.n):
            raise InputError(where, None, f"{name} has n = {self.n} but {model} has n = {Wm.shape[0]}; expected equal")
        err = float(np.linalg.norm(self.reconstruct() - Wm)) / max(float(np.linalg.norm(Wm)), 1e-30)
        if not err <= SCHUR_TOL:  # NaN fails too
            raise InputError(
                where,
                None,
                f"{name} is not the Schur form of {model}.W_rec (relative reconstruction error {err:.2e}, expected "
                f"<= {SCHUR_TOL:g}); pass sj.ordered_schur({model}.W_rec)",
            )

    # -- reporting ------------------------------------------------------------------------------------------------

    def summary_dict(self) -> dict[str, Any]:
        """JSON-able summary: sizes, block counts, spectrum (in order) and nonnormality.

        ``henrici``: ``||N||_F``, the norm of the couplings of the real Schur form; ``henrici_relative``:
        ``||N||_F / ||T||_F``; ``departure``: Henrici's departure from normality of W (``>= henrici``; it adds the
        nonnormal part inside 2x2 blocks); ``frobenius_T``: ``||T||_F = ||W||_F``.
        """
        sizes = self.block_sizes
        extra: dict[str, Any] = {}
        if self.alpha is not None:  # only the decay order: other forms' summaries are what they were
            d = self.step_decay()
            extra = {"alpha": self.alpha, "step_decay": d.tolist(), "max_step_decay": float(d.max())}
        return {
            "n": self.n,
            "order": self.order,
            "n_blocks": self.n_blocks,
            "n_real": int(np.count_nonzero(sizes == 1)),
            "n_complex_pairs": int(np.count_nonzero(sizes == 2)),
            "n_couplings": int(len(self.couplings)),
            "spectral_radius": self.spectral_radius,
            "frobenius_T": float(_fro(self.T)),
            "henrici": self.henrici,
            "henrici_relative": self.henrici_relative,
            "departure": self.departure,
            "blocks": [[s, z] for s, z in self.blocks],
            "eigvals": {"re": self.eigvals.real.tolist(), "im": self.eigvals.imag.tolist()},
            **extra,
        }

    def summary(self, top: int = 5, max_eigvals: int = 12) -> str:
        """One screen of text: size, blocks, spectral radius, coupling norm and Henrici's departure of W, strongest
        couplings, spectrum."""
        d = self.summary_dict()
        order = self.order if self.alpha is None else f"{self.order} (alpha={self.alpha:g})"
        lines = [
            f"SchurForm  n={self.n}  order={order}  blocks={d['n_blocks']} "
            f"({d['n_real']} real, {d['n_complex_pairs']} complex pairs)  couplings={d['n_couplings']}",
            f"spectral radius {d['spectral_radius']:.6g}   ||T||_F {d['frobenius_T']:.6g}   "
            f"couplings ||N||_F {d['henrici']:.6g} (relative {d['henrici_relative']:.4f})   "
            f"Henrici departure of W {d['departure']:.6g}",
        ]
        C = self.block_coupling_norms()
        flat = np.argsort(-C, axis=None, kind="stable")[:top]
        be = self.block_eigvals
        strong = [(int(k // C.shape[1]), int(k % C.shape[1])) for k in flat if C.flat[k] > 0]
        if strong:
            lines.append(f"top block couplings (block b -> block a, ||T[a, b]||_F), of {self.n_blocks} blocks:")
            for a, b in strong:
                lines.append(f"  {b:>4} -> {a:<4} {C[a, b]:10.4g}   lam_b={_fmt(be[b]):>22}  lam_a={_fmt(be[a])}")
        else:
            lines.append("no block couplings (normal up to rounding or a single block)")
        shown = [_fmt(z) + (" (pair)" if z.imag > 0 else "") for z in be[:max_eigvals]]
        lines.append("block eigenvalues in order:")
        for k in range(0, len(shown), 4):
            lines.append("  " + ", ".join(shown[k : k + 4]))
        if self.n_blocks > max_eigvals:
            lines.append(f"  ... ({self.n_blocks - max_eigvals} more)")
        if self.alpha is not None:
            dec = self.step_decay()[self.block_starts][:max_eigvals]
            lines.append(f"per-step decay |1 - alpha + alpha lam| in order (alpha={self.alpha:g}):")
            for k in range(0, len(dec), 8):
                lines.append("  " + ", ".join(f"{v:.6g}" for v in dec[k : k + 8]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        alpha = "" if self.alpha is None else f", alpha={self.alpha:g}"
        return (
            f"SchurForm(n={self.n}, order={self.order!r}{alpha}, blocks={self.n_blocks}, "
            f"spectral_radius={self.spectral_radius:.4g}, henrici={self.henrici:.4g})"
        )

    # -- persistence ----------------------------------------------------------------------------------------------

    def to_npz(self, path: str | Path) -> Path:
        """Write Q, T, blocks, eigvals, order (and alpha, for the decay order) to ``path`` (``.npz`` appended if
        missing); exact round trip."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        extra = {} if self.alpha is None else {"alpha": np.asarray(self.alpha, dtype=np.float64)}
        np.savez(
            path,
            Q=np.asarray(self.Q),
            T=np.asarray(self.T),
            blocks=np.asarray(self.blocks, dtype=np.int64).reshape(-1, 2),
            eigvals=np.asarray(self.eigvals),
            order=np.asarray(self.order),
            format_version=np.asarray(1),
            **extra,
        )
        return path

    @classmethod
    def from_npz(cls, path: str | Path) -> SchurForm:
        """Read a SchurForm written by ``to_npz``."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                data = {k: z[k] for k in ("Q", "T", "blocks", "eigvals", "order")}
                alpha = float(z["alpha"]) if "alpha" in z.files else None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            msg = f"SchurForm.from_npz: path must be a SchurForm .npz file, got {str(path)!r} ({e})"
            raise ValueError(msg) from None
        return cls(
            Q=data["Q"],
            T=data["T"],
            blocks=tuple((int(s), int(z)) for s, z in data["blocks"]),
            eigvals=data["eigvals"],
            order=str(data["order"]),
            alpha=alpha,
        )
