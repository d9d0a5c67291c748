"""Fixed points of one network as a point set: distinct points, their Jacobian class, and matching across networks.

Each point ``h`` of ``h -> tanh(W h + u)`` is classified by the eigenvalues of ``J = diag(1 - h²) W``: stable
(spectral radius below 1), saddle (a real leading eigenvalue outside), rotational (a complex one). A variant's
attractors are matched one to one to the unablated network's (Hungarian assignment on distances).

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jaxtyping import Bool, Complex, Float, Int
from scipy.optimize import linear_sum_assignment

__all__ = ["KINDS", "STATUS", "PointSet", "classify"]

KINDS = ("stable", "saddle", "rotational")
"""Point kinds: spectral radius of ``diag(1 - h²) W`` below 1; else real or complex leading eigenvalue."""

STATUS = ("survive", "move", "vanish")
"""Fate of a base attractor in a variant (:attr:`FixedPoints.status` codes 0, 1, 2)."""


@dataclasses.dataclass(frozen=True, eq=False)
class PointSet:
    """The distinct fixed points of one network at one input (host side, NumPy, float64).

    Points are sorted by ``n_unstable`` (attractors first), then by their first coordinate.

    Attributes:
        points: (p, n) fixed points.
        stable: (p,) bool, spectral radius of ``J = diag(1 - h²) W`` below 1.
        kind: (p,) str, one of :data:`KINDS`.
        leading: (p,) complex, the eigenvalue of J of largest modulus (``Im >= 0`` member of a pair).
        n_unstable: (p,) int, eigenvalues of J with modulus > 1.
        residual: (p,) ``||tanh(W h + u) - h||_2`` in float64.

    Example::

        fp.base.points[fp.base.stable]        # the unablated network's attractors
    """

    points: Float[np.ndarray, "p n"]
    stable: Bool[np.ndarray, " p"]
    kind: np.ndarray
    leading: Complex[np.ndarray, " p"]
    n_unstable: Int[np.ndarray, " p"]
    residual: Float[np.ndarray, " p"]

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def radius(self) -> Float[np.ndarray, " p"]:
        """(p,) spectral radius of the Jacobian at each point."""
        return np.abs(self.leading)

    @property
    def freq(self) -> Float[np.ndarray, " p"]:
        """(p,) ``|arg λ_lead|`` in rad/step (0 for a real leading eigenvalue)."""
        return np.abs(np.angle(self.leading))


def _residuals(W: np.ndarray, u: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(k, s) float64 ``||tanh(W_k h + u) - h||_2`` (NaN stays NaN)."""
    pre = np.einsum("kij,ksj->ksi", W, h) + u
    with np.errstate(invalid="ignore", over="ignore"):
        return np.linalg.norm(np.tanh(pre) - h, axis=-1)


def _distinct(h: np.ndarray, ok: np.ndarray, tol: float) -> np.ndarray:
    """(k, s) bool: valid points not within ``tol`` (Euclidean) of an earlier valid point of the same variant."""
    hz = np.where(ok[..., None], h, 0.0)
    sq = np.einsum("ksn,ksn->ks", hz, hz)
    d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * np.einsum("ksn,ktn->kst", hz, hz)
    s = h.shape[1]
    close = (d2 < tol * tol) & ok[:, :, None] & ok[:, None, :] & np.tri(s, s, -1, dtype=bool).T[None]
    return ok & ~close.any(axis=1)


def classify(
    W: Float[np.ndarray, "n n"], points: Float[np.ndarray, "p n"]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classify fixed points of ``h -> tanh(W h + u)`` by the eigenvalues of ``J = diag(1 - h²) W``.

    Args:
        W: (n, n) recurrent matrix.  points: (p, n) fixed points.

    Returns:
        ``(stable, kind, leading, n_unstable)``: (p,) bool, (p,) str in :data:`KINDS`, (p,) complex leading
        eigenvalue (largest modulus, ``Im >= 0``), (p,) int count of eigenvalues with modulus > 1.

    Example::

        stable, kind, lead, nu = classify(np.asarray(model.W_rec, float), fp.base.points)
    """
    W = np.asarray(W, dtype=np.float64)
    P = np.asarray(points, dtype=np.float64).reshape(-1, W.shape[0])
    if P.shape[0] == 0:
        return np.zeros(0, bool), np.zeros(0, "<U10"), np.zeros(0, complex), np.zeros(0, np.int64)
    return _classify_many(np.broadcast_to(W, (P.shape[0],) + W.shape), P)


def _classify_many(W: np.ndarray, P: np.ndarray):
    J = (1.0 - P * P)[:, :, None] * W
    ev = np.linalg.eigvals(J)  # (p, n)
    mod = np.abs(ev)
    # leading: largest modulus; among a conjugate pair the Im >= 0 member (ties broken by -Im, deterministic)
    order = np.lexsort((-ev.imag, -np.round(mod, 12)), axis=-1)
    lead = np.take_along_axis(ev, order[:, :1], axis=1)[:, 0]
    lead = np.where(lead.imag < 0, lead.conj(), lead)
    radius = np.abs(lead)
    stable = radius < 1.0
    n_unstable = (mod > 1.0).sum(axis=1).astype(np.int64)
    complex_lead = np.abs(lead.imag) > 1e-9 * np.maximum(radius, 1e-300)
    kind = np.where(stable, "stable", np.where(complex_lead, "rotational", "saddle")).astype("<U10")
    return stable, kind, lead, n_unstable


def _point_set(W: np.ndarray, h: np.ndarray, res: np.ndarray) -> PointSet:
    stable, kind, lead, nu = classify(W, h)
    if h.shape[0]:
        order = np.lexsort((h[:, 0], nu))
        h, res, stable, kind, lead, nu = h[order], res[order], stable[order], kind[order], lead[order], nu[order]
    for a in (h, res, stable, kind, lead, nu):
        a.setflags(write=False)
    return PointSet(points=h, stable=stable, kind=kind, leading=lead, n_unstable=nu, residual=res)


def _sets_from_chunk(W: np.ndarray, u: np.ndarray, h: np.ndarray, tol: float, dedupe_tol: float) -> list[PointSet]:
    res = _residuals(W, u, h)
    ok = np.isfinite(res) & (res <= tol)
    keep = _distinct(h, ok, dedupe_tol)
    return [_point_set(W[k], h[k][keep[k]].copy(), res[k][keep[k]].copy()) for k in range(h.shape[0])]


def _match(base: PointSet, other: PointSet, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one match of base attractors to the other set's attractors (Hungarian on distances <= radius)."""
    A = base.points[base.stable]
    idx = np.nonzero(other.stable)[0]
    match = np.full(A.shape[0], -1, np.int64)
    disp = np.full(A.shape[0], np.nan)
    if A.shape[0] == 0 or idx.size == 0:
        return match, disp
    D = np.linalg.norm(A[:, None, :] - other.points[idx][None, :, :], axis=-1)
    big = 1e6 * (1.0 + float(np.nanmax(D)))
    rows, cols = linear_sum_assignment(np.where(D <= radius, D, big))
    ok = D[rows, cols] <= radius
    match[rows[ok]] = idx[cols[ok]]
    disp[rows[ok]] = D[rows[ok], cols[ok]]
    return match, disp
