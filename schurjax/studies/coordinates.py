"""Sensitivity to the coordinates: the headline figures rerun in other real Schur bases of the same network.

The ordered real Schur form is one choice among many: another mode order gives another T (its couplings are other
numbers), and inside a 2x2 block the real Schur basis is fixed only up to a rotation. This part rebuilds the Schur
form of the same W

* under the other orders (``"real"``: descending Re λ; ``"angle"``; ``"unsorted"``: LAPACK's ``dgees`` order, as
  ``scipy.linalg.schur`` returns it), and
* under ``rotations`` random rotations inside every 2x2 block of the default form (``Q' = Q R``, ``T' = Rᵀ T R``,
  R block diagonal with a uniform rotation per 2x2 block; the block structure and the spectrum are unchanged),

and reruns the headline figures on the held-out batch: the single-coupling and block keep shares under both criteria
and the T → D loss change and score drop. The report gives each figure's range and its largest move from the
default coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.studies.measure import measure
from schurjax.studies.protocol import keeps_loss, keeps_score

__all__ = ["coordinates_part", "unsorted_schur", "rotated_schur", "HEADLINES", "ORDERS"]

ORDERS = ("real", "angle", "unsorted")
"""The other mode orders the part tries."""

HEADLINES = (
    "single_keep_score",
    "single_keep_loss",
    "block_keep_score",
    "block_keep_loss",
    "nonnormal_rel",
    "nonnormal_drop",
)
"""The figures rerun in every coordinate system."""


def _blocks_of(T: np.ndarray) -> tuple[tuple[int, int], ...]:
    n, i, out = T.shape[0], 0, []
    while i < n:
        z = 2 if i + 1 < n and T[i + 1, i] != 0.0 else 1
        out.append((i, z))
        i += z
    return tuple(out)


def _eigvals(T: np.ndarray, blocks) -> np.ndarray:
    ev = []
    for s, z in blocks:
        if z == 1:
            ev.append(complex(T[s, s]))
        else:
            lam = np.linalg.eigvals(T[s : s + 2, s : s + 2])
            lam = sorted(lam, key=lambda x: -x.imag)
            ev += [complex(x) for x in lam]
    return np.array(ev)


def unsorted_schur(W: np.ndarray) -> Any:
    """The real Schur form in LAPACK's own order (``scipy.linalg.schur``), as a SchurForm (order ``"custom"``)."""
    import scipy.linalg

    from schurjax.schur import SchurForm

    T, Q = scipy.linalg.schur(np.asarray(W, np.float64), output="real")
    blocks = _blocks_of(T)
    T = np.triu(T, -1)
    keep = np.zeros_like(T, bool)
    for s, z in blocks:
        keep[s : s + z, s : s + z] = True
    T = np.where(np.tril(np.ones_like(T, bool), -1) & ~keep, 0.0, T)
    return SchurForm(Q=Q, T=T, blocks=blocks, eigvals=_eigvals(T, blocks), order="custom")


def rotated_schur(sf: Any, rng: np.random.Generator) -> Any:
    """``sf`` with a uniform random rotation inside every 2x2 block: ``Q R``, ``Rᵀ T R`` (same W, blocks, spectrum)."""
    from schurjax.schur import SchurForm

    n = sf.n
    R = np.eye(n)
    for s, z in sf.blocks:
        if z == 2:
            a = rng.uniform(0, 2 * np.pi)
            R[s : s + 2, s : s + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T = R.T @ sf.T @ R
    below = np.zeros((n, n), bool)
    bi = sf.block_index
    below[bi[:, None] > bi[None, :]] = True
    T[below] = 0.0  # exactly zero below the block diagonal (R is block diagonal)
    return SchurForm(Q=sf.Q @ R, T=T, blocks=sf.blocks, eigvals=_eigvals(T, sf.blocks), order="custom")


def headlines(model: Any, sf: Any, task: Any, batch: Any, *, tau: float, eps: float, sides: str) -> dict[str, float]:
    """The :data:`HEADLINES` of one Schur form on ``batch`` (point estimates)."""
    fams = {"single": ablate.single_couplings(sf), "block": ablate.block_couplings(sf), "nn": ablate.all_nonnormal(sf)}
    m = measure(model, sf, ablate.Variants.concat(*fams.values()), batch, task)
    out: dict[str, float] = {}
    a = 0
    for name, v in fams.items():
        idx = np.arange(a, a + len(v))
        a += len(v)
        if name == "nn":
            out["nonnormal_rel"] = float(m.rel[idx][0])
            out["nonnormal_drop"] = float(m.drop[idx][0])
        else:
            out[f"{name}_keep_score"] = float(keeps_score(m.drop[idx], eps).mean()) if len(idx) else float("nan")
            out[f"{name}_keep_loss"] = float(keeps_loss(m.rel[idx], tau, sides).mean()) if len(idx) else float("nan")
    return out


def coordinates_part(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    key: Any,
    *,
    tau: float,
    eps: float,
    sides: str,
    rotations: int,
) -> dict[str, Any]:
    """The headline figures under the default coordinates, the other orders and random 2x2 rotations.

    Returns:
        ``default``: the figures in the default coordinates; ``variants``: ``{name: figures}`` for ``"real"``,
        ``"angle"``, ``"unsorted"`` and ``"rotation-<i>"``; ``max_move``: per figure, the largest absolute
        difference from the default over the variants.
    """
    from schurjax.schur import ordered_schur
    from schurjax.studies import stats

    W = np.asarray(sf.reconstruct(), np.float64)
    kw = {"tau": tau, "eps": eps, "sides": sides}
    out: dict[str, Any] = {"default": headlines(model, sf, task, batch, **kw), "variants": {}}
    others = {o: (unsorted_schur(W) if o == "unsorted" else ordered_schur(W, order=o)) for o in ORDERS}
    rng = stats._rng(key)
    for i in range(int(rotations)):
        others[f"rotation-{i}"] = rotated_schur(sf, rng)
    for name, sf_o in others.items():
        out["variants"][name] = headlines(model, sf_o, task, batch, **kw)
    out["max_move"] = {
        h: float(np.nanmax([abs(v[h] - out["default"][h]) for v in out["variants"].values()])) for h in HEADLINES
    }
    return out
