"""Internals of :func:`schurjax.schur.ordered_schur`: block structure, sort keys, reordering, sign standardisation.

Host side, NumPy/SciPy float64, in place on Fortran-ordered ``T`` and ``Q``. The rules these functions implement
(orders, ties, refused swaps, canonical signs) are documented in the :mod:`schurjax.schur` module docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from schurjax.errors import InputError

_TIE_RTOL = 1e-12  # keys within this (times scale) are ties
_REFUSE_RTOL = 1e-6  # a refused LAPACK swap is accepted as a tie within this (times scale)
_SIGN_RTOL = 1e-10  # magnitude ties when choosing the pivot entry of a Schur vector

# ----------------------------------------------------------------------------------------------------------------
# block structure, eigenvalues, keys
# ----------------------------------------------------------------------------------------------------------------


def _block_structure(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of the diagonal blocks of a quasi-triangular T (from its sub-diagonal)."""
    n = T.shape[0]
    sub = np.diagonal(T, -1) != 0
    if not np.any(sub[:-1] & sub[1:]):  # the normal case: no two adjacent nonzero sub-diagonal entries
        second = np.zeros(n, dtype=bool)
        second[1:] = sub
        st = np.flatnonzero(~second).astype(np.int64)
        return st, np.diff(np.append(st, n)).astype(np.int64)
    starts, sizes = [], []
    i = 0
    while i < n:
        if i + 1 < n and sub[i]:
            starts.append(i)
            sizes.append(2)
            i += 2
        else:
            starts.append(i)
            sizes.append(1)
            i += 1
    return np.asarray(starts, dtype=np.int64), np.asarray(sizes, dtype=np.int64)


def _block_eigs(T: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """One eigenvalue per block (the Im >= 0 member of a pair), as LAPACK computes them from a standardized block."""
    lam = np.empty(len(starts), dtype=np.complex128)
    one = sizes == 1
    s1 = starts[one]
    lam[one] = T[s1, s1]
    s2 = starts[~one]
    if len(s2):
        a = 0.5 * (T[s2, s2] + T[s2 + 1, s2 + 1])
        b = T[s2, s2 + 1]
        c = T[s2 + 1, s2]
        d = 0.5 * (T[s2, s2] - T[s2 + 1, s2 + 1])
        # eigenvalues of [[a + d, b], [c, a - d]]: a +- sqrt(d^2 + b c); complex when d^2 + b c < 0
        sc = np.maximum(np.maximum(np.abs(b), np.abs(c)), np.abs(d))
        sc = np.where(sc > 0, sc, 1.0)
        disc = (d / sc) ** 2 + (b / sc) * (c / sc)  # scaled: no overflow/underflow
        im = np.sqrt(np.abs(b)) * np.sqrt(np.abs(c))
        im = np.where(d == 0, im, sc * np.sqrt(np.maximum(-disc, 0.0)))
        lam[~one] = a + 1j * im
    return lam


def _keys(
    lam: np.ndarray, order: str | Callable[[complex], float], zero: float = 0.0, unit: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sort keys (nb, m), ascending, lexicographic, and their tie tolerances (m,).

    ``zero``: eigenvalues with ``|lam| <= zero`` count as numerically zero (their angle is noise: pi, so last).
    """
    mod = np.abs(lam)
    re = lam.real
    im = np.abs(lam.imag)
    scale = float(mod.max()) if len(mod) else 0.0
    ts = _TIE_RTOL * scale if scale > 0 else 0.0
    if callable(order):
        vals = []
        for z in lam:
            v = order(complex(z) * unit)  # a callable key sees the eigenvalues of W itself
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise InputError(
                    "ordered_schur", None, f"order key must return a real number, got {v!r} for {z}"
                ) from None
            if not math.isfinite(v):
                raise InputError("ordered_schur", None, f"order key must return a finite number, got {v!r} for {z}")
            vals.append(v)
        k0 = np.asarray(vals, dtype=np.float64)
        kscale = float(np.abs(k0).max()) if len(k0) else 0.0
        keys = np.stack([k0, -mod, -re, im], axis=1)
        tols = np.array([_TIE_RTOL * kscale, ts, ts, ts])
    elif order == "modulus":
        keys = np.stack([-mod, -re, im], axis=1)
        tols = np.array([ts, ts, ts])
    elif order == "real":
        keys = np.stack([-re, im], axis=1)
        tols = np.array([ts, ts])
    elif order == "angle":
        cplx = (lam.imag != 0).astype(np.float64)
        ang = np.where(mod <= zero, np.pi, np.abs(np.angle(lam)))
        keys = np.stack([cplx, ang, -mod, -re], axis=1)
        tols = np.array([0.0, _TIE_RTOL, ts, ts])
    else:  # pragma: no cover - validated before
        raise InputError("ordered_schur", None, f"unknown order {order!r}")
    return keys, tols


def _tie_sort(keys: np.ndarray, tols: np.ndarray) -> np.ndarray:
    """Lexicographic ascending sort with tolerant ties; full ties keep the current (index) order."""

    def rec(idx: np.ndarray, level: int) -> list[np.ndarray]:
        if level == keys.shape[1] or len(idx) <= 1:
            return [idx]
        k = keys[idx, level]
        o = idx[np.argsort(k, kind="stable")]
        ks = keys[o, level]
        tol = tols[level]
        if not np.any(np.diff(ks) <= tol):  # no ties at this level
            return [o]
        out: list[np.ndarray] = []
        start = 0
        m = len(o)
        # groups anchored at their first member
        while start < m:
            stop = max(int(np.searchsorted(ks, ks[start] + tol, side="right")), start + 1)
            out.extend(rec(np.sort(o[start:stop]), level + 1) if stop - start > 1 else [o[start:stop]])
            start = stop
        return out

    parts = rec(np.arange(keys.shape[0]), 0)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _refuse_tolerance(keys: np.ndarray, lam: np.ndarray, order: Any) -> float:
    if callable(order):
        return _REFUSE_RTOL * float(np.abs(keys[:, 0]).max(initial=0.0))
    if order == "angle":
        return _REFUSE_RTOL
    return _REFUSE_RTOL * float(np.abs(lam).max(initial=0.0))


def _primary_key(order: Any, lam: complex, zero: float, unit: float) -> float:
    keys, _ = _keys(np.asarray([lam]), order, zero, unit)
    # angle's primary is (complex?, angle): compare the angle (block types are checked separately)
    return float(keys[0, 1] if (not callable(order) and order == "angle") else keys[0, 0])


# ----------------------------------------------------------------------------------------------------------------
# reordering
# ----------------------------------------------------------------------------------------------------------------


def _place(
    T: np.ndarray, Q: np.ndarray, order: Any, zero: float, unit: float = 1.0
) -> tuple[np.ndarray, np.ndarray, str]:
    """One reordering pass. Returns (T, Q, status), status "sorted" (nothing moved), "moved" or "restructured"
    (a 2x2 block split during a swap; the pass stopped early)."""
    starts, sizes = _block_structure(T)
    lam = _block_eigs(T, starts, sizes)
    keys, tols = _keys(lam, order, zero, unit)
    target = _tie_sort(keys, tols)
    nb = len(starts)
    if np.array_equal(target, np.arange(nb)):
        return T, Q, "sorted"
    refuse_tol = _refuse_tolerance(keys, lam, order)
    size = sizes.tolist()
    n_pairs = int(np.count_nonzero(sizes == 2))
    cur = list(range(nb))  # block ids in current diagonal order, not yet placed
    pending = [int(b) for b in target]  # block ids in the wanted order, not yet placed
    p = 0  # first row of the not yet placed part
    placed_pairs = 0
    while pending:
        b = pending[0]
        idx = cur.index(b)
        r = p + sum(map(size.__getitem__, cur[:idx]))
        if r != p:
            T, Q, info = lapack.dtrexc(T, Q, r + 1, p + 1, wantq=1, overwrite_a=1, overwrite_q=1)
            if info < 0:  # pragma: no cover - argument error, a bug
                raise RuntimeError(f"ordered_schur: LAPACK dtrexc failed with info={info}")
            if np.count_nonzero(np.diagonal(T, -1)[p:] != 0) != n_pairs - placed_pairs:
                return T, Q, "restructured"
            if info == 1:
                j = _locate_after_refusal(T, p, cur[: idx + 1], size, lam, b)
                a = cur[j]
                ka = _primary_key(order, lam[a], zero, unit)
                kb = _primary_key(order, lam[b], zero, unit)
                same_kind = order != "angle" or (lam[a].imag != 0) == (lam[b].imag != 0)
                if not (same_kind and abs(ka - kb) <= refuse_tol):
                    shown = unit if order in ("modulus", "real") else 1.0  # key differences in W's units
                    raise InputError(
                        "ordered_schur",
                        None,
                        "LAPACK refused to swap the Schur blocks with eigenvalues "
                        f"{_fmt(lam[a] * unit)} and {_fmt(lam[b] * unit)} (too close to separate stably), and their "
                        f"{_order_label(order)} keys differ by {abs(ka - kb) * shown:.3g}, more than the tie "
                        f"tolerance {refuse_tol * shown:.3g}; choose another order key",
                    )
                # b now sits right after a; treat them as tied: place a first.
                cur.pop(idx)
                cur.insert(j + 1, b)
                pending.remove(a)
                pending.insert(0, a)
                continue
        cur.pop(idx)
        pending.pop(0)
        p += size[b]
        placed_pairs += size[b] == 2
    return T, Q, "moved"


def _locate_after_refusal(T: np.ndarray, p: int, seg: list[int], size: list[int], lam: np.ndarray, b: int) -> int:
    """After a refused move of block b (last of seg) upwards, find j such that b now sits right after seg[j]."""
    rest = seg[:-1]
    best_j, best_err = 0, np.inf
    for j in range(len(rest)):
        trial = rest[: j + 1] + [b] + rest[j + 1 :]
        r = p
        err = 0.0
        ok = True
        for blk in trial:
            s = size[blk]
            if s == 2 and (r + 1 >= T.shape[0] or T[r + 1, r] == 0):
                ok = False
                break
            if s == 1 and r + 1 < T.shape[0] and T[r + 1, r] != 0:
                ok = False
                break
            got = _block_eigs(T, np.array([r]), np.array([s]))[0]
            err += abs(got - lam[blk])
            r += s
        if ok and err < best_err:
            best_j, best_err = j, err
    return best_j


def _fro(x: np.ndarray) -> float:
    """Frobenius norm without overflow or underflow for extreme scales."""
    m = float(np.abs(x).max(initial=0.0))
    if m == 0.0 or not math.isfinite(m):
        return m
    return m * float(np.linalg.norm(x / m))


def _fmt(z: complex) -> str:
    z = complex(z)
    return f"{z.real:.6g}" if z.imag == 0 else f"{z.real:.6g}{z.imag:+.6g}j"


def _order_label(order: Any) -> str:
    return getattr(order, "label", "custom") if callable(order) else repr(order)


def _standardize_pairs(T: np.ndarray, Q: np.ndarray) -> bool:
    """Put every 2x2 block in standardized form (dlanv2's rotation). Returns True if a block split (real pair)."""
    starts, sizes = _block_structure(T)
    p2 = starts[sizes == 2]
    b2, c2 = T[p2, p2 + 1], T[p2 + 1, p2]
    good = (T[p2, p2] == T[p2 + 1, p2 + 1]) & (((b2 < 0) & (c2 > 0)) | ((b2 > 0) & (c2 < 0)))
    split = False
    for i in p2[~good].tolist():
        a, b, c, d = T[i, i], T[i, i + 1], T[i + 1, i], T[i + 1, i + 1]
        G = _dlanv2_rotation(a, b, c, d)
        T[i : i + 2, i:] = G.T @ T[i : i + 2, i:]
        T[: i + 2, i : i + 2] = T[: i + 2, i : i + 2] @ G
        Q[:, i : i + 2] = Q[:, i : i + 2] @ G
        aa, bb, cc, dd = T[i, i], T[i, i + 1], T[i + 1, i], T[i + 1, i + 1]
        if _opposite(bb, cc):
            m = 0.5 * (aa + dd)
            T[i, i] = T[i + 1, i + 1] = m
        else:
            # real eigenvalues: triangularize the 2x2 block with its real Schur form
            _, Z = scipy.linalg.schur(T[i : i + 2, i : i + 2], output="real")
            T[i : i + 2, i:] = Z.T @ T[i : i + 2, i:]
            T[: i + 2, i : i + 2] = T[: i + 2, i : i + 2] @ Z
            Q[:, i : i + 2] = Q[:, i : i + 2] @ Z
            T[i + 1, i] = 0.0
            split = True
    return split


def _opposite(b: float, c: float) -> bool:
    """b * c < 0 without forming the product (which can underflow or overflow)."""
    return (b < 0 < c) or (c < 0 < b)


def _dlanv2_rotation(a: float, b: float, c: float, d: float) -> np.ndarray:
    """Rotation G = [[cs, -sn], [sn, cs]] with G^T [[a, b], [c, d]] G of equal diagonal (LAPACK dlanv2)."""
    p = 0.5 * (a - d)
    sigma = b + c
    tau = math.hypot(sigma, a - d)
    if tau == 0.0:
        return np.eye(2)
    cs = math.sqrt(0.5 * (1.0 + abs(sigma) / tau))
    sn = -(p / (tau * cs)) * (1.0 if sigma >= 0 else -1.0)
    return np.array([[cs, -sn], [sn, cs]])


def _pivot_signs(Qc: np.ndarray) -> np.ndarray:
    """Per column: -1 if the first entry within a relative 1e-10 of the largest magnitude is negative, else +1."""
    m = np.abs(Qc)
    top = m.max(axis=0)
    j = np.argmax(m >= top * (1.0 - _SIGN_RTOL), axis=0)
    piv = Qc[j, np.arange(Qc.shape[1])]
    return np.where(piv < 0, -1.0, 1.0)


def _canonical_signs(T: np.ndarray, Q: np.ndarray) -> None:
    """Apply the documented sign/exchange rule in place: one exact signed permutation of the Schur vectors."""
    n = T.shape[0]
    starts, sizes = _block_structure(T)
    p2 = starts[sizes == 2]
    # (1) exchange the two vectors of a pair when |c| > |b|
    ex = p2[np.abs(T[p2 + 1, p2]) > np.abs(T[p2, p2 + 1])]
    if len(ex):
        perm = np.arange(n)
        perm[ex], perm[ex + 1] = ex + 1, ex
        T[:, :] = T[np.ix_(perm, perm)]
        Q[:, :] = Q[:, perm]
    # (2) b > 0 via the second vector, (3) pivot entry of each block's first vector positive
    sign = np.ones(n)
    sign[starts] = _pivot_signs(Q[:, starts])
    sign[p2 + 1] = sign[p2] * np.where(T[p2, p2 + 1] < 0, -1.0, 1.0)
    if np.all(sign == 1.0):
        return
    T *= sign[:, None]
    T *= sign[None, :]
    Q *= sign[None, :]


def _zero_below(T: np.ndarray) -> np.ndarray:
    starts, sizes = _block_structure(T)
    bidx = np.repeat(np.arange(len(starts)), sizes)
    below = bidx[:, None] > bidx[None, :]
    T[below] = 0.0
    return T


def _pair_eigvals(T: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(n,) eigenvalues in diagonal order from standardized blocks: a pair gives a + i w, a - i w, w > 0."""
    ev = np.diagonal(T).astype(np.complex128)
    p2 = starts[sizes == 2]
    w = np.sqrt(np.abs(T[p2, p2 + 1])) * np.sqrt(np.abs(T[p2 + 1, p2]))
    ev[p2] = T[p2, p2] + 1j * w
    ev[p2 + 1] = T[p2, p2] - 1j * w
    return ev
