"""Figures of the mechanism of an ablation (matplotlib; needs the ``plot`` extra, not imported by ``import schurjax``).

- :func:`fixed_point_plane`: the unablated network's fixed points and those of one variant in the top principal
  components of the unablated trajectories, with the attractors that moved or vanished marked;
- :func:`attribution_scatter`: predicted vs exact loss change per coupling (symmetric-log axes).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import matplotlib

if os.environ.get("MPLBACKEND") is None and not matplotlib.get_backend().lower().startswith(("module://", "agg")):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jaxtyping import Float  # noqa: E402
from scipy import stats  # noqa: E402

from schurjax.errors import InputError

if TYPE_CHECKING:
    from schurjax.dynamics.finder import FixedPoints

__all__ = ["fixed_point_plane", "attribution_scatter", "principal_axes"]

_MARKERS = {"stable": "o", "saddle": "X", "rotational": "^"}
_BASE, _VARIANT, _LOST = "0.15", "#d62728", "#ff7f0e"


def principal_axes(
    states: Float[np.ndarray, "N n"], dims: int = 2
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, "n d"], Float[np.ndarray, " d"]]:
    """Mean, top ``dims`` principal axes and their explained-variance shares of a cloud of states.

    Example::

        mean, axes, share = principal_axes(fp.trajectories.reshape(-1, n))
    """
    X = np.asarray(states, np.float64).reshape(-1, np.shape(states)[-1])
    mean = X.mean(axis=0)
    _, s, Vt = np.linalg.svd(X - mean, full_matrices=False)
    var = s**2
    return mean, Vt[:dims].T, var[:dims] / max(var.sum(), 1e-300)


def fixed_point_plane(
    fp: FixedPoints,
    k: int,
    *,
    dims: int = 2,
    trials: int = 6,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Base fixed points (black) and variant ``k``'s (red) in the top principal components of the trajectories.

    Markers: circle stable, cross saddle, triangle rotational. A thin line joins each base attractor to its match;
    an orange ring marks a base attractor that vanished. Grey: ``trials`` trajectories of the unablated network.

    Args:
        fp: :class:`~schurjax.dynamics.FixedPoints`.
        k: the variant to show.
        dims: 2 or 3 principal components.
        trials: number of trajectories drawn.
        ax: an existing axes (3-D axes for ``dims=3``); a new figure when None.
        title: figure title (default: the variant's label).

    Returns:
        matplotlib Figure.

    Example::

        fig = fixed_point_plane(fp, int(np.argmax(fp.lost)))
        fig.savefig("mechanism.png")
    """
    if dims not in (2, 3):
        raise InputError("fixed_point_plane", None, f"dims must be 2 or 3, got {dims!r}")
    K = len(fp.sets)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not -K <= int(k) < K:
        raise InputError("fixed_point_plane", None, f"k must be an int in [{-K}, {K}), got {k!r}")
    k = int(k) % K
    traj = np.asarray(fp.trajectories, np.float64)
    n = traj.shape[-1]
    mean, axes, share = principal_axes(traj.reshape(-1, n), dims)

    def proj(X):
        return (np.asarray(X, np.float64).reshape(-1, n) - mean) @ axes

    if ax is None:
        fig = plt.figure(figsize=(6.4, 5.2))
        ax = fig.add_subplot(111, projection="3d" if dims == 3 else None)
    else:
        fig = ax.figure
    for tr in traj[:trials]:
        ax.plot(*proj(tr).T, color="0.75", lw=0.6, zorder=1)
    base, var = fp.base, fp.sets[k]
    for who, ps, color, filled in (("base", base, _BASE, True), ("variant", var, _VARIANT, False)):
        for kind, marker in _MARKERS.items():
            sel = ps.kind == kind
            if not sel.any():
                continue
            P = proj(ps.points[sel])
            face = color if (filled or kind != "stable") else "none"
            big = who == "variant"
            ax.scatter(
                *P.T,
                marker=marker,
                s=90 if big else 60,
                facecolors=face,
                edgecolors=color,
                linewidths=1.4,
                label=f"{who}: {kind} ({int(sel.sum())})",
                zorder=4 if big else 3,
            )
    A = base.points[base.stable]
    for a, j in enumerate(fp.match[k]):
        if j >= 0:
            ax.plot(*np.concatenate([proj(A[a]), proj(var.points[j])]).T, color=_VARIANT, lw=0.8, zorder=2)
    lost = fp.match[k] < 0
    if lost.any():
        ax.scatter(
            *proj(A[lost]).T,
            s=320,
            facecolors="none",
            edgecolors=_LOST,
            linewidths=2.0,
            label=f"vanished ({int(lost.sum())})",
            zorder=5,
        )
    labels = [f"PC{i + 1} ({100 * s:.0f} %)" for i, s in enumerate(share)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if dims == 3:
        ax.set_zlabel(labels[2])
    lab = fp.labels[k].get("label", f"variant {k}") if fp.labels else f"variant {k}"
    ax.set_title(
        title
        if title is not None
        else f"{lab}: {int(fp.n_stable[k])} stable (base {int(base.stable.sum())}), "
        f"lost {int(fp.lost[k])}, gained {int(fp.gained[k])}",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout()
    return fig


def attribution_scatter(
    pred: Float[np.ndarray, " K"],
    exact: Float[np.ndarray, " K"],
    *,
    pred2: Float[np.ndarray, " K"] | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Predicted vs exact loss change per removed coupling, symmetric-log axes, with the diagonal and Spearman ρ.

    Args:
        pred: (K,) first-order prediction.  exact: (K,) exact ``delta_loss`` (same variants, same order).
        pred2: optional (K,) second-order prediction, drawn in a second colour.
        ax: existing axes, or None for a new figure.  title: figure title.

    Returns:
        matplotlib Figure.

    Example::

        fig = attribution_scatter(pred[sel], res.delta_loss)
    """
    exact = np.asarray(exact, np.float64)
    series = [("first order", np.asarray(pred, np.float64), "#1f77b4")]
    if pred2 is not None:
        series.append(("second order", np.asarray(pred2, np.float64), "#d62728"))
    for name, p, _ in series:
        if p.shape != exact.shape:
            raise InputError(
                "attribution_scatter",
                None,
                f"{name} prediction must have the shape of exact {exact.shape}, got {p.shape}",
            )
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 5.0))
    else:
        fig = ax.figure
    allv = np.concatenate([exact] + [p for _, p, _ in series])
    nz = np.abs(allv[allv != 0])
    lin = float(np.quantile(nz, 0.2)) if nz.size else 1e-6
    for name, p, color in series:
        rho = stats.spearmanr(p, exact).statistic
        ax.scatter(exact, p, s=7, alpha=0.5, color=color, label=f"{name} (Spearman {rho:.2f})", edgecolors="none")
    lo = min(float(allv.min()) * 1.5, -lin) if allv.size else -1.0
    hi = max(float(allv.max()) * 1.5, lin) if allv.size else 1.0
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--", zorder=0)
    ax.set_xscale("symlog", linthresh=lin)
    ax.set_yscale("symlog", linthresh=lin)
    first = math.ceil(math.log10(lin)) + 1  # whole decades clear of the linear band, every other one if many

    def decades(end):
        d = 10.0 ** np.arange(first, math.floor(math.log10(end)) + 1) if end > 10**first else np.zeros(0)
        return d[(d.size - 1) % 2 :: 2] if d.size > 4 else d

    ticks = np.concatenate([-decades(-lo)[::-1], [0.0], decades(hi)])
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.axvline(0, color="0.8", lw=0.6, zorder=0)
    ax.set_xlabel("exact Δloss (removal, sj.evaluate)")
    ax.set_ylabel("predicted Δloss (sj.attribute)")
    ax.set_title(title or "attribution vs exact ablation, one point per coupling", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
