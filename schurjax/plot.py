"""Figures of a Schur form (matplotlib, Agg backend).

Each function draws one figure that reads by itself (title, axis labels, colour bar or legend) and returns the
``matplotlib.figure.Figure``:

- :func:`schur_heatmap`: ``|T|`` with the block grid and the eigenvalue moduli along the diagonal;
- :func:`eigenvalues`: eigenvalues in the complex plane with the unit circle;
- :func:`to_png`: a figure as PNG bytes.

The figures of a sweep (importance maps, loss against ``||ΔW||_F``, families, keep profiles) are in
:mod:`schurjax.sweeps.figures`. Needs the ``plot`` extra (matplotlib); not imported by ``import schurjax``.
"""

from __future__ import annotations

import io
import os
from typing import Any

import matplotlib

if os.environ.get("MPLBACKEND") is None and not matplotlib.get_backend().lower().startswith(("module://", "agg")):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

__all__ = ["schur_heatmap", "eigenvalues", "to_png"]


def _block_edges(sf: Any) -> list[int]:
    return [int(s) for s, _ in sf.blocks] + [int(sf.n)]


def _draw_block_grid(ax: Any, sf: Any, color: str = "0.55", lw: float | None = None) -> None:
    """Thin lines at the block boundaries, plus outlines of the diagonal blocks."""
    n = sf.n
    edges = _block_edges(sf)
    lw = lw if lw is not None else (0.5 if n <= 32 else 0.25)
    for e in edges[1:-1]:  # a staircase grid over the coupling region only (below the blocks T is zero)
        ax.plot([e - 0.5, n - 0.5], [e - 0.5, e - 0.5], color=color, lw=lw, zorder=3)
        ax.plot([e - 0.5, e - 0.5], [-0.5, e - 0.5], color=color, lw=lw, zorder=3)
    for s, z in sf.blocks:
        ax.add_patch(Rectangle((s - 0.5, s - 0.5), z, z, fill=False, ec="k", lw=max(0.6, 2 * lw), zorder=4))


def _eig_strip(ax: Any, sf: Any) -> None:
    """|λ| of each diagonal position, aligned with the columns of T (filled: real, open: complex pair)."""
    ev = np.asarray(sf.eigvals)
    idx = np.arange(sf.n)
    mod = np.abs(ev)
    real = np.abs(ev.imag) < 1e-12
    ms = 5 if sf.n <= 64 else 3
    ax.vlines(idx, 0, mod, color="0.75", lw=0.8)
    ax.plot(idx[real], mod[real], "o", ms=ms, color="#1f77b4", label="real λ")
    ax.plot(idx[~real], mod[~real], "o", ms=ms, mfc="white", color="#d62728", label="complex pair")
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    ax.set_ylabel("|λ|")
    ax.set_ylim(0, 1.4 * max(1.0, float(mod.max()) if mod.size else 1.0))  # headroom for the legend
    ax.legend(loc="upper right", fontsize=7, ncol=2, frameon=False)
    ax.tick_params(labelbottom=False)


def schur_heatmap(sf: Any, *, title: str | None = None, annotate: bool | None = None) -> Any:
    """``|T|`` (log colour scale) with the block grid, and the eigenvalue moduli along the diagonal on top.

    Args:
        sf: a SchurForm (n x n).
        title: figure title (default mentions n, the blocks and Henrici's departure from normality).
        annotate: write each block's eigenvalue in its diagonal cell (default: only for n <= 12).

    Returns:
        The matplotlib Figure.

    Example::

        fig = sj.plot.schur_heatmap(sj.ordered_schur(W)); fig.savefig("T.png")
    """
    n = sf.n
    T = np.asarray(sf.T, dtype=np.float64)
    A = np.abs(T)
    pos = A[A > 0]
    vmin = max(float(pos.min()) if pos.size else 1e-6, float(A.max()) * 1e-4 if A.size else 1e-6)
    vmax = float(A.max()) if A.max() > 0 else 1.0
    fig = plt.figure(figsize=(6.6, 7.2), layout="constrained")
    gs = fig.add_gridspec(2, 2, height_ratios=(1, 4.6), width_ratios=(30, 1))
    ax_e = fig.add_subplot(gs[0, 0])
    ax = fig.add_subplot(gs[1, 0], sharex=ax_e)
    cax = fig.add_subplot(gs[1, 1])
    im = ax.imshow(
        np.ma.masked_where(A == 0, A),
        cmap="viridis",
        norm=mcolors.LogNorm(vmin=vmin, vmax=vmax),
        interpolation="nearest",
    )
    ax.set_facecolor("white")
    _draw_block_grid(ax, sf)
    if annotate if annotate is not None else n <= 12:
        for s, z in sf.blocks:
            lam = sf.eigvals[s]
            txt = f"{lam.real:.2f}" if z == 1 else f"{lam.real:.2f}\n±{abs(lam.imag):.2f}i"
            ax.text(s + (z - 1) / 2, s + (z - 1) / 2, txt, ha="center", va="center", fontsize=7, color="w", zorder=5)
    ax.set_xlabel("column j of T (source)")
    ax.set_ylabel("row i of T (target)")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    fig.colorbar(im, cax=cax, label="|T[i, j]|  (blank: 0)")
    _eig_strip(ax_e, sf)
    h = getattr(sf, "henrici_relative", None)
    hs = f", ||N||/||T|| = {h:.2f}" if h is not None else ""
    fig.suptitle(title or f"Ordered real Schur form |T| (n = {n}, {len(sf.blocks)} blocks{hs})", fontsize=11)
    how = {"modulus": "descending |λ|", "decay": "descending per-step decay |1 - α + αλ|"}.get(
        sf.order, f"{sf.order!r}"
    )
    ax_e.set_title(f"eigenvalue modulus along the diagonal (blocks ordered by {how})", fontsize=8)
    return fig


def eigenvalues(sf: Any, *, title: str | None = None, alpha: float | None = None) -> Any:
    """Eigenvalues in the complex plane, coloured by their position along T's diagonal, with the boundary of the
    step's stability: the unit circle for ``alpha = 1``; for a leaky step ``(1 - alpha) I + alpha W`` the circle
    ``|1 - alpha + alpha λ| = 1`` (centre ``1 - 1/alpha``, radius ``1/alpha``).

    Args:
        sf: a SchurForm.
        title: figure title.
        alpha: the model's ``dt / tau`` (default: ``sf.alpha`` of a form in ``"decay"`` order, else 1).

    Returns:
        The Figure.
    """
    ev = np.asarray(sf.eigvals)
    a = float(alpha if alpha is not None else (getattr(sf, "alpha", None) or 1.0))
    fig, ax = plt.subplots(figsize=(5.6, 5.0), layout="constrained")
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="k", lw=0.8, ls="--", label="unit circle")
    if a != 1.0:
        c, rad = 1.0 - 1.0 / a, 1.0 / a
        ax.plot(c + rad * np.cos(t), rad * np.sin(t), color="#b2182b", lw=1.0, label=f"|1 − α + αλ| = 1 (α = {a:g})")
    sc = ax.scatter(ev.real, ev.imag, c=np.arange(ev.size), cmap="plasma", s=28, edgecolors="k", lw=0.3, zorder=3)
    cb = fig.colorbar(sc, ax=ax, shrink=0.85)
    cb.set_label("position along the diagonal of T")
    ax.axhline(0, color="0.7", lw=0.5)
    ax.axvline(0, color="0.7", lw=0.5)
    r = max(1.1, float(np.max(np.abs(ev))) * 1.1 if ev.size else 1.1)
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.legend(loc="lower left", fontsize=8)
    if a == 1.0:
        n_out = int(np.sum(np.abs(ev) > 1))
        what = f"{n_out} outside the unit circle"
    else:
        n_out = int(np.sum(np.abs(1.0 - a + a * ev) > 1))
        what = f"{n_out} with per-step decay |1 − α + αλ| > 1"
    ax.set_title(title or f"Eigenvalues of W (n = {ev.size}; {what})", fontsize=10)
    return fig


def to_png(fig: Any, *, dpi: int = 110) -> bytes:
    """Render a Figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
