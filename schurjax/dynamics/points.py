"""Fixed points of one network as a point set: distinct points, their Jacobian class, and matching across networks.

Each fixed point ``h`` of the network's step map ``h -> G(h)`` is classified by the eigenvalues of the step's
Jacobian ``J = dG/dh``: stable (spectral radius below 1), saddle (a real leading eigenvalue outside), rotational
(a complex one). A variant's attractors are matched one to one to the unablated network's (Hungarian assignment on
distances).

The step map, its fixed-point equation ``F(h) = 0`` and its Jacobian, per form (``a = alpha``, ``phi`` the
nonlinearity, ``u = W_in x + b`` the constant drive; see :mod:`schurjax.rnn`)::

    form      step G(h)                              F(h) (fixed points)              J = dG/dh at h
    rate      (1-a) h + a phi(W h + u)              phi(W h + u) - h                 (1-a) I + a diag(phi'(W h + u)) W
    post      phi((1-a) h + a (W h + u))            phi((1-a) h + a (W h + u)) - h   diag(phi'(pre)) ((1-a) I + a W)
    current   (1-a) h + a (W phi(h) + u)            W phi(h) + u - h                 (1-a) I + a W diag(phi'(h))

For the rate and current forms ``G(h) - h = a F(h)``: their fixed points do not depend on ``a`` (the rate form's are
those of the paper's ``h = tanh(W h + u)`` for tanh), only their stability does. The post form's fixed points
(``h = phi((1-a) h + a (W h + u))``) do depend on ``a``. For the paper's TanhRNN (``a = 1``, tanh, rate) this is
``F(h) = tanh(W h + u) - h`` and ``J = diag(1 - h²) W``, computed exactly as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from jaxtyping import Bool, Complex, Float, Int
from scipy.optimize import linear_sum_assignment
from scipy.special import expit

from schurjax.errors import InputError
from schurjax.rnn import FORMS, NONLINEARITIES, Dynamics, check_alpha

__all__ = ["KINDS", "STATUS", "PointSet", "classify", "step_jacobians", "fixed_point_residual", "TANH_STEP"]

TANH_STEP = Dynamics(1.0, "tanh", "rate")
"""The paper's step ``h -> tanh(W h + u)`` (the default wherever no model is given)."""

KINDS = ("stable", "saddle", "rotational")
"""Point kinds: spectral radius of the step Jacobian below 1; else real or complex leading eigenvalue."""

STATUS = ("survive", "move", "vanish")
"""Fate of a base attractor in a variant (:attr:`FixedPoints.status` codes 0, 1, 2)."""


@dataclasses.dataclass(frozen=True, eq=False)
class PointSet:
    """The distinct fixed points of one network at one input (host side, NumPy, float64).

    Points are sorted by ``n_unstable`` (attractors first), then by their first coordinate.

    Attributes:
        points: (p, n) fixed points.
        stable: (p,) bool, spectral radius of the step Jacobian J (``diag(1 - h²) W`` for the paper's tanh RNN;
            every form: module docstring) below 1.
        kind: (p,) str, one of :data:`KINDS`.
        leading: (p,) complex, the eigenvalue of J of largest modulus (``Im >= 0`` member of a pair).
        n_unstable: (p,) int, eigenvalues of J with modulus > 1.
        residual: (p,) ``||F(h)||_2`` in float64 (``||tanh(W h + u) - h||_2`` for the paper's tanh RNN).

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


def as_dynamics(dynamics: Any, where: str = "classify") -> Dynamics:
    """A checked :class:`~schurjax.rnn.Dynamics` from None (the paper's step), a Dynamics / tuple, or a model."""
    if dynamics is None:
        return TANH_STEP
    if hasattr(dynamics, "alpha") and hasattr(dynamics, "form") and not isinstance(dynamics, tuple):
        dynamics = (dynamics.alpha, dynamics.nonlinearity, dynamics.form)
    try:
        a, phi, form = dynamics
    except (TypeError, ValueError):
        raise InputError(
            where,
            None,
            f"dynamics must be a schurjax.rnn.Dynamics (alpha, nonlinearity, form) or a model, got {dynamics!r}",
        ) from None
    if phi not in NONLINEARITIES or form not in FORMS:
        raise InputError(
            where,
            None,
            f"dynamics must name a nonlinearity in {tuple(NONLINEARITIES)} and a form in {FORMS}, got {dynamics!r}",
        )
    return Dynamics(check_alpha(where, a), str(phi), str(form))


def _phi(name: str, a: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0.0)
    return np.logaddexp(0.0, a)  # softplus, without overflow


def _dphi(name: str, a: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1.0 - np.tanh(a) ** 2
    if name == "relu":
        return (a > 0).astype(np.float64)  # jax.nn.relu's derivative: 0 at 0
    return expit(a)


def _F(W: np.ndarray, u: np.ndarray, h: np.ndarray, dyn: Dynamics) -> np.ndarray:
    """(k, s, n) float64 ``F_k(h)`` of the form's fixed-point equation (module docstring); W (k, n, n)."""
    a, phi, form = dyn
    if form == "current":
        return np.einsum("kij,ksj->ksi", W, _phi(phi, h)) + u - h
    pre = np.einsum("kij,ksj->ksi", W, h) + u
    if form == "post" and a != 1.0:
        pre = (1.0 - a) * h + a * pre
    return _phi(phi, pre) - h


def _residuals(W: np.ndarray, u: np.ndarray, h: np.ndarray, dyn: Dynamics = TANH_STEP) -> np.ndarray:
    """(k, s) float64 ``||F_k(h)||_2`` (NaN stays NaN); for the paper's step ``||tanh(W_k h + u) - h||_2``."""
    if dyn == TANH_STEP:
        pre = np.einsum("kij,ksj->ksi", W, h) + u
        with np.errstate(invalid="ignore", over="ignore"):
            return np.linalg.norm(np.tanh(pre) - h, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.linalg.norm(_F(W, u, h, dyn), axis=-1)


def fixed_point_residual(
    W: Float[np.ndarray, "n n"], u: Float[np.ndarray, " n"], points: Float[np.ndarray, "p n"], dynamics: Any = None
) -> Float[np.ndarray, " p"]:
    """(p,) float64 ``||F(h)||_2`` of the form's fixed-point equation at each point (module docstring).

    Example::

        fixed_point_residual(np.asarray(model.W_rec, float), u, fp.base.points, model.dynamics)
    """
    W = np.asarray(W, dtype=np.float64)
    P = np.asarray(points, dtype=np.float64).reshape(-1, W.shape[0])
    return _residuals(W[None], np.asarray(u, np.float64), P[None], as_dynamics(dynamics, "fixed_point_residual"))[0]


def _distinct(h: np.ndarray, ok: np.ndarray, tol: float) -> np.ndarray:
    """(k, s) bool: valid points not within ``tol`` (Euclidean) of an earlier valid point of the same variant."""
    hz = np.where(ok[..., None], h, 0.0)
    sq = np.einsum("ksn,ksn->ks", hz, hz)
    d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * np.einsum("ksn,ktn->kst", hz, hz)
    s = h.shape[1]
    close = (d2 < tol * tol) & ok[:, :, None] & ok[:, None, :] & np.tri(s, s, -1, dtype=bool).T[None]
    return ok & ~close.any(axis=1)


def step_jacobians(
    W: Float[np.ndarray, "n n"],
    points: Float[np.ndarray, "p n"],
    u: Float[np.ndarray, " n"] | None = None,
    dynamics: Any = None,
) -> Float[np.ndarray, "p n n"]:
    """(p, n, n) float64 Jacobians ``dG/dh`` of the step map at each point (the table in the module docstring).

    Args:
        W: (n, n) recurrent matrix.  points: (p, n) states.  u: (n,) constant drive ``W_in x + b``; needed for
            the rate and post forms, except with tanh at fixed points (there ``phi'(pre) = 1 - h²``).
        dynamics: a model, its :class:`~schurjax.rnn.Dynamics`, or None (the paper's step).

    Example::

        J = step_jacobians(np.asarray(model.W_rec, float), fp.base.points, u, model)
    """
    dyn = as_dynamics(dynamics, "step_jacobians")
    W = np.asarray(W, dtype=np.float64)
    P = np.asarray(points, dtype=np.float64).reshape(-1, W.shape[0])
    return _jacobians(np.broadcast_to(W, (P.shape[0],) + W.shape), P, u, dyn)


def _jacobians(W: np.ndarray, P: np.ndarray, u: Any, dyn: Dynamics) -> np.ndarray:
    """(p, n, n) step Jacobians of matrices W (p, n, n) at states P (p, n)."""
    a, phi, form = dyn
    if dyn == TANH_STEP:
        return (1.0 - P * P)[:, :, None] * W  # at a fixed point h = tanh(pre): phi'(pre) = 1 - h²
    n = P.shape[1]
    eye = np.eye(n)
    if form == "current":
        return (1.0 - a) * eye + a * W * _dphi(phi, P)[:, None, :]
    if phi == "tanh" and u is None:
        d = 1.0 - P * P  # exact at a fixed point
    else:
        if u is None:
            raise InputError("classify", None, f"the {form} form with {phi} needs the drive u (W_in x + b), got u=None")
        pre = np.einsum("pij,pj->pi", W, P) + np.asarray(u, np.float64)
        if form == "post":
            pre = (1.0 - a) * P + a * pre
        d = _dphi(phi, pre)
    if form == "rate":
        return (1.0 - a) * eye + a * d[:, :, None] * W
    return d[:, :, None] * ((1.0 - a) * eye + a * W)  # post


def classify(
    W: Float[np.ndarray, "n n"],
    points: Float[np.ndarray, "p n"],
    *,
    u: Float[np.ndarray, " n"] | None = None,
    dynamics: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classify fixed points by the eigenvalues of the step Jacobian (``J = diag(1 - h²) W`` for the paper's step).

    Args:
        W: (n, n) recurrent matrix.  points: (p, n) fixed points.
        u: (n,) constant drive ``W_in x + b`` (needed for relu/softplus in the rate and post forms).
        dynamics: a model or its :class:`~schurjax.rnn.Dynamics` (default: the paper's ``h -> tanh(W h + u)``).

    Returns:
        ``(stable, kind, leading, n_unstable)``: (p,) bool, (p,) str in :data:`KINDS`, (p,) complex leading
        eigenvalue (largest modulus, ``Im >= 0``), (p,) int count of eigenvalues with modulus > 1.

    Example::

        stable, kind, lead, nu = classify(np.asarray(model.W_rec, float), fp.base.points)
        stable, kind, lead, nu = classify(W, points, u=u, dynamics=leaky_model)
    """
    dyn = as_dynamics(dynamics)
    W = np.asarray(W, dtype=np.float64)
    P = np.asarray(points, dtype=np.float64).reshape(-1, W.shape[0])
    if P.shape[0] == 0:
        return np.zeros(0, bool), np.zeros(0, "<U10"), np.zeros(0, complex), np.zeros(0, np.int64)
    return _classify_many(np.broadcast_to(W, (P.shape[0],) + W.shape), P, u, dyn)


def _classify_many(W: np.ndarray, P: np.ndarray, u: Any = None, dyn: Dynamics = TANH_STEP):
    J = _jacobians(W, P, u, dyn)
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


def _point_set(W: np.ndarray, h: np.ndarray, res: np.ndarray, u: Any = None, dyn: Dynamics = TANH_STEP) -> PointSet:
    stable, kind, lead, nu = classify(W, h, u=u, dynamics=dyn)
    if h.shape[0]:
        order = np.lexsort((h[:, 0], nu))
        h, res, stable, kind, lead, nu = h[order], res[order], stable[order], kind[order], lead[order], nu[order]
    for a in (h, res, stable, kind, lead, nu):
        a.setflags(write=False)
    return PointSet(points=h, stable=stable, kind=kind, leading=lead, n_unstable=nu, residual=res)


def _sets_from_chunk(
    W: np.ndarray, u: np.ndarray, h: np.ndarray, tol: float, dedupe_tol: float, dyn: Dynamics = TANH_STEP
) -> list[PointSet]:
    res = _residuals(W, u, h, dyn)
    ok = np.isfinite(res) & (res <= tol)
    keep = _distinct(h, ok, dedupe_tol)
    return [_point_set(W[k], h[k][keep[k]].copy(), res[k][keep[k]].copy(), u, dyn) for k in range(h.shape[0])]


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
