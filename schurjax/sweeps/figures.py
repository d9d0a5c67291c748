"""Figures of an ablation sweep (matplotlib, Agg backend; the ``plot`` extra).

Each function draws one figure that reads by itself and returns the ``matplotlib.figure.Figure``:

- :func:`importance_map`: relative loss change per removed coupling, in T's own layout;
- :func:`loss_vs_norm`: loss change vs ``||ΔW||_F`` for Schur ablations and their random controls (per kind);
- :func:`family_distributions`: relative loss change per family (and controls), across seeds and tasks;
- :func:`keep_profile`: the loss-preserving profile across seeds and tasks;
- :func:`model_figures` / :func:`run_figures`: the figures of :mod:`schurjax.sweeps.report`, by name.

Tables may be DataFrames (``run.table``) or lists of row dicts. The Schur-form figures are in :mod:`schurjax.plot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker as _ticker
from matplotlib.patches import Rectangle

from schurjax.plot import _draw_block_grid, eigenvalues, plt, schur_heatmap
from schurjax.store.table import records
from schurjax.sweeps.summary import KEEP_TOL, control_kinds_in

__all__ = ["importance_map", "loss_vs_norm", "family_distributions", "keep_profile", "model_figures", "run_figures"]


FAMILY_COLORS = {
    "single": "#1f77b4",
    "block": "#ff7f0e",
    "band": "#2ca02c",
    "all_nonnormal": "#d62728",
    "eigen_groups": "#9467bd",
    "control": "#7f7f7f",
}


FAMILY_ORDER = ("single", "block", "band", "eigen_groups", "all_nonnormal")


# Each random-control kind has its own marker, grey and median line style, in schurjax.ablate.CONTROL_KINDS order.
# ls: median line in loss_vs_norm; pls: thin profile line in keep_profile (the models' own lines use -, --, -., :).
CONTROL_STYLES = {
    "matched_norm": {"marker": "x", "color": "0.45", "ls": "--", "pls": ":", "box": "#7f7f7f", "short": "norm"},
    "matched_count": {
        "marker": "+",
        "color": "0.25",
        "ls": ":",
        "pls": (0, (1, 4)),
        "box": "#4d4d4d",
        "short": "count",
    },
    "coupling_noise": {
        "marker": "1",
        "color": "0.5",
        "ls": "-.",
        "pls": (0, (4, 2, 1, 2, 1, 2)),
        "box": "#a6a6a6",
        "short": "noise",
    },
}


CONTROL_STYLES["worst"] = {"marker": "v", "color": "#b2182b", "ls": "-", "pls": "-", "box": "#d6604d", "short": "worst"}
_OTHER_CONTROL = {"marker": "x", "color": "0.45", "ls": "--", "pls": ":", "box": "#7f7f7f", "short": "ctrl"}


TASK_COLORS = {"copy": "#1f77b4", "flipflop": "#d62728", "sine": "#2ca02c", "context": "#9467bd"}


def _is_control(row: dict[str, Any]) -> bool:
    return row.get("control_of") is not None


def _kind(row: dict[str, Any]) -> str:
    return str(row.get("control_kind") or "control")


_kinds = control_kinds_in


def _style(kind: str) -> dict[str, Any]:
    return CONTROL_STYLES.get(kind, _OTHER_CONTROL)


def _kind_name(kind: str) -> str:
    return kind.replace("_", "-")


def _arr(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.asarray([np.nan if r.get(key) is None else r[key] for r in rows], dtype=np.float64)


def _single_matrix(sf: Any, rows: Sequence[dict[str, Any]], key: str = "rel_delta_loss") -> np.ndarray:
    M = np.full((sf.n, sf.n), np.nan)
    for r in rows:
        if r.get("family") == "single" and not _is_control(r) and r.get("row") is not None:
            M[int(r["row"]), int(r["col"])] = r[key]
    return M


def _block_matrix(sf: Any, rows: Sequence[dict[str, Any]], key: str = "rel_delta_loss") -> np.ndarray:
    M = np.full((sf.n, sf.n), np.nan)
    for r in rows:
        if r.get("family") == "block" and not _is_control(r) and r.get("target_block") is not None:
            a, b = int(r["target_block"]), int(r["source_block"])
            sa, za = sf.blocks[a]
            sb, zb = sf.blocks[b]
            M[sa : sa + za, sb : sb + zb] = r[key]
    return M


def importance_map(sf: Any, rows: Any, *, title: str | None = None, family: str = "auto", model_id: str = "") -> Any:
    """Relative loss change for each removed coupling, drawn where the coupling sits in T.

    Args:
        sf: the model's SchurForm.
        rows: that model's table rows (single-coupling rows carry ``row``/``col``; block rows carry
            ``target_block``/``source_block``).
        title: figure title.
        family: ``"single"``, ``"block"`` or ``"auto"`` (single when present, else block).
        model_id: prefix of the default title.

    Returns:
        The Figure. Diverging symmetric-log colours: red = the loss rises when the coupling is removed, blue = it
        falls; grey squares are the diagonal blocks (never removed); blank cells are zero couplings or not swept.
    """
    rows = records(rows)
    if family == "auto":
        family = "single" if any(r.get("family") == "single" and not _is_control(r) for r in rows) else "block"
    M = _single_matrix(sf, rows) if family == "single" else _block_matrix(sf, rows)
    finite = M[np.isfinite(M)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = max(vmax, 1e-3)
    lin = min(KEEP_TOL, vmax / 10)  # the linear zone is the loss-preserving band when the data reach beyond it
    fig, ax = plt.subplots(figsize=(6.6, 5.8), layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    im = ax.imshow(
        np.ma.masked_invalid(M),
        cmap=cmap,
        norm=mcolors.SymLogNorm(linthresh=lin, vmin=-vmax, vmax=vmax, base=10),
        interpolation="nearest",
    )
    for s, z in sf.blocks:
        ax.add_patch(Rectangle((s - 0.5, s - 0.5), z, z, color="0.8", zorder=2))
    _draw_block_grid(ax, sf, color="0.8")
    ax.set_xlim(-0.5, sf.n - 0.5)
    ax.set_ylim(sf.n - 0.5, -0.5)
    ax.set_xlabel("column j of T (source mode)")
    ax.set_ylabel("row i of T (target mode)")
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    # a loss can fall by at most 100 %: the colour bar shows only the negative range the data reach
    neg = float(-np.min(finite)) if finite.size and np.min(finite) < 0 else 0.0
    vneg = min(vmax, max(lin * 2, neg * 1.05))
    decades = [10.0**e for e in range(-6, 7) if lin < 10.0**e <= vmax]
    ticks = [-t for t in decades[::-1] if t <= vneg] + [-lin, 0.0, lin] + decades
    cb.ax.set_ylim(-vneg, vmax)
    cb.set_ticks(ticks)
    cb.set_ticklabels([_pct(t) for t in ticks])
    cb.minorticks_off()
    cb.set_label("relative loss change  Δloss / loss")
    n_keep = int(np.sum(finite <= KEEP_TOL)) if finite.size else 0  # the loss criterion, one-sided
    what = "single coupling T[i, j]" if family == "single" else "block coupling"
    ax.set_title(
        title
        or f"{model_id + ': ' if model_id else ''}loss change when each {what} is removed\n"
        f"{n_keep}/{finite.size} removals raise the loss by ≤ {100 * KEEP_TOL:.0f}% (loss criterion); "
        "grey: spectral blocks",
        fontsize=9.5,
    )
    return fig


def _pct(x: float) -> str:
    """A relative change as a short percentage label (0.05 -> '+5%', 10 -> '+1000%')."""
    if x == 0:
        return "0"
    v = 100 * x
    return f"{v:+.0f}%" if abs(v) >= 1 else f"{v:+.2g}%"


def loss_vs_norm(rows: Any, *, title: str | None = None) -> Any:
    """Relative loss change vs ``||ΔW||_F`` for Schur ablations (by family) and their random controls (log-log).

    Args:
        rows: one model's table rows (ablations and control rows).
        title: figure title.

    Returns:
        The Figure. Filled markers: the loss rose; open markers: it fell (|Δ| is plotted). Exact zeros are drawn
        at the bottom edge.
    """
    rows = records(rows)
    fig, ax = plt.subplots(figsize=(6.6, 5.0), layout="constrained")
    abl = [r for r in rows if not _is_control(r) and (r.get("delta_norm") or 0) > 0]
    ctrl = [r for r in rows if _is_control(r) and (r.get("delta_norm") or 0) > 0]
    y_all = np.abs(_arr(abl + ctrl, "rel_delta_loss"))
    y_all = y_all[np.isfinite(y_all) & (y_all > 0)]
    floor = max(float(y_all.min()) / 2 if y_all.size else 1e-6, 1e-9)

    def draw(rs, color, marker, label, size, alpha, z):
        x = _arr(rs, "delta_norm")
        y = _arr(rs, "rel_delta_loss")
        ya = np.maximum(np.abs(y), floor)
        up = y >= 0
        if marker in ("x", "+", "1", "2", "3", "4"):  # line markers can't be open: the loss-fell ones drawn lighter
            ax.scatter(x[up], ya[up], s=size, marker=marker, color=color, alpha=alpha, lw=0.9, label=label, zorder=z)
            ax.scatter(x[~up], ya[~up], s=size, marker=marker, color=color, alpha=alpha * 0.4, lw=0.9, zorder=z)
            return
        if up.any():
            ax.scatter(x[up], ya[up], s=size, marker=marker, color=color, alpha=alpha, lw=0, label=label, zorder=z)
        if (~up).any():
            ax.scatter(
                x[~up],
                ya[~up],
                s=size,
                marker=marker,
                facecolors="none",
                edgecolors=color,
                alpha=alpha,
                lw=0.8,
                label=None if up.any() else label,
                zorder=z,
            )

    kinds = _kinds(ctrl)
    for kind in kinds:
        st = _style(kind)
        draw(
            [r for r in ctrl if _kind(r) == kind],
            st["color"],
            st["marker"],
            f"random control: {_kind_name(kind)}",
            14,
            0.55,
            4,
        )
    fams = [f for f in FAMILY_ORDER if any(r.get("family") == f for r in abl)]
    fams += sorted({str(r.get("family")) for r in abl} - set(fams))
    for fam in fams:
        rs = [r for r in abl if r.get("family") == fam]
        size = 10 if fam == "single" else 40 if fam in ("block", "eigen_groups") else 70
        draw(
            rs,
            FAMILY_COLORS.get(fam, "k"),
            "o" if fam != "all_nonnormal" else "*",
            f"Schur ablation: {fam}",
            size * (2.5 if fam == "all_nonnormal" else 1),
            0.75 if fam == "single" else 0.9,
            3,
        )
    _binned_median(ax, abl, "k", "-", "median, Schur ablations", floor)
    for kind in kinds:
        st = _style(kind)
        _binned_median(
            ax, [r for r in ctrl if _kind(r) == kind], "0.35", st["ls"], f"median, {_kind_name(kind)} controls", floor
        )
    ax.axhline(KEEP_TOL, color="k", ls="--", lw=0.8)
    ax.text(
        0.99,
        KEEP_TOL,
        f"{100 * KEEP_TOL:.0f}% ",
        transform=ax.get_yaxis_transform(),
        va="bottom",
        ha="right",
        fontsize=8,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size of the weight change  ||ΔW||_F = ||ΔT||_F")
    ax.set_ylabel("|relative loss change|  |Δloss| / loss")
    ax.legend(fontsize=7.5, loc="upper left", framealpha=0.9)
    ax.grid(True, which="major", alpha=0.3)
    model = rows[0].get("model") if rows else ""
    if len(kinds) == 1:
        head = f"{model}: Schur-coupling removals vs {_kind_name(kinds[0])} random controls"
    elif kinds:
        head = f"{model}: Schur-coupling removals vs random controls\n({', '.join(map(_kind_name, kinds))})"
    else:
        head = f"{model}: Schur-coupling removals"
    ax.set_title(title or f"{head}\n(filled: loss rose; open or faint: loss fell)", fontsize=10)
    return fig


def _binned_median(ax: Any, rows: Sequence[dict[str, Any]], color: str, ls: str, label: str, floor: float) -> None:
    """Median |relative loss change| in log-spaced bins of ||ΔW||_F (bins with at least 5 points)."""
    x = _arr(rows, "delta_norm")
    y = np.maximum(np.abs(_arr(rows, "rel_delta_loss")), floor)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    if x.size < 10:
        return
    edges = np.logspace(np.log10(x.min()), np.log10(x.max()) + 1e-9, 13)
    idx = np.digitize(x, edges) - 1
    cx, cy = [], []
    for b in range(len(edges) - 1):
        sel = idx == b
        if sel.sum() >= 5:
            cx.append(np.sqrt(edges[b] * edges[b + 1]))
            cy.append(np.median(y[sel]))
    if len(cx) >= 2:
        ax.plot(cx, cy, color=color, ls=ls, lw=2.0, label=label, zorder=6)


def _models_in(table: Any) -> list[tuple[str, str, Any]]:
    seen: dict[str, tuple[str, str, Any]] = {}
    for r in table:
        if r["model"] not in seen:
            seen[r["model"]] = (r["model"], str(r.get("task")), r.get("model_seed"))
    return list(seen.values())


def family_distributions(table: Any, *, title: str | None = None) -> Any:
    """Distributions of the relative loss change per ablation family, each next to its own random controls, per task.

    Args:
        table: the run's tidy table (all models).
        title: figure title.

    Returns:
        The Figure: one panel per task; within it, for each family a coloured box (the Schur ablations, all seeds
        pooled, each seed's points in its own shade) and right of it one grey box per control kind (the random
        controls of exactly those ablations, each kind in its own shade), on a symmetric-log axis.
    """
    table = records(table)
    models = _models_in(table)
    tasks = list(dict.fromkeys(m[1] for m in models))
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(max(6.6, 3.6 * len(tasks)), 4.8), layout="constrained", sharey=True, squeeze=False
    )
    rel_all = np.abs(_arr(table, "rel_delta_loss"))
    rel_all = rel_all[np.isfinite(rel_all)]
    pos = rel_all[rel_all > 0]
    lin = max(min(1e-3, float(np.percentile(pos, 5)) if pos.size else 1e-3), 1e-7)
    rng = np.random.default_rng(0)
    fam_of = {r["row_id"]: r.get("family") for r in table if not _is_control(r)}
    kinds = _kinds(table)

    def draw(ax, sel, x, color, seeds, small, width):
        y = _arr(sel, "rel_delta_loss")
        y = y[np.isfinite(y)]
        if y.size > 1:
            bp = ax.boxplot([y], positions=[x], widths=width, showfliers=False, patch_artist=True)
            for b in bp["boxes"]:
                b.set(facecolor=mcolors.to_rgba(color, 0.18), edgecolor=color)
            for part in ("whiskers", "caps", "medians"):
                for line in bp[part]:
                    line.set(color=color)
        for s_i, mid in enumerate(seeds):
            ys = _arr([r for r in sel if r["model"] == mid], "rel_delta_loss")
            if ys.size > 300:  # thin the point cloud, keep the box exact
                ys = rng.choice(ys, 300, replace=False)
            xs = x + (s_i - (len(seeds) - 1) / 2) * width / max(2, len(seeds)) + rng.uniform(-0.03, 0.03, ys.size)
            ax.scatter(xs, ys, s=4 if small else 14, color=color, alpha=0.3 + 0.5 * (s_i % 2), lw=0, zorder=3)

    for ax, task in zip(axes[0], tasks, strict=True):
        rows = [r for r in table if str(r.get("task")) == task]
        cats = [f for f in FAMILY_ORDER if any(r.get("family") == f and not _is_control(r) for r in rows)]
        seeds = list(dict.fromkeys(m[0] for m in models if m[1] == task))
        for x, cat in enumerate(cats):
            abl = [r for r in rows if r.get("family") == cat and not _is_control(r)]
            ctrl = [r for r in rows if _is_control(r) and fam_of.get(r["control_of"]) == cat]
            ks = [k for k in kinds if any(_kind(r) == k for r in ctrl)]
            width = 0.72 / (1 + len(ks))
            pos = x - 0.36 + width / 2 + width * np.arange(1 + len(ks))
            draw(ax, abl, pos[0], FAMILY_COLORS.get(cat, "k"), seeds, cat == "single", 0.9 * width if ks else 0.6)
            for j, kind in enumerate(ks):
                sel = [r for r in ctrl if _kind(r) == kind]
                draw(ax, sel, pos[1 + j], _style(kind)["box"], seeds, len(sel) > 50, 0.9 * width)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c.replace("_", "\n") for c in cats], fontsize=8)
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.set_yscale("symlog", linthresh=lin)
        _symlog_ticks(ax, lin, rel_all)
        ax.axhspan(-KEEP_TOL, KEEP_TOL, color="#2ca02c", alpha=0.08, lw=0)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(f"{task}  ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("relative loss change  Δloss / loss  (symlog)")
    for kind in kinds:
        axes[0, -1].scatter([], [], color=_style(kind)["box"], marker="s", label=f"random controls: {_kind_name(kind)}")
    if kinds:
        axes[0, -1].legend(loc="lower right", fontsize=7.5)
    if len(kinds) == 1:
        versus = f" vs their {_kind_name(kinds[0])} controls (grey)"
    else:
        versus = " vs controls (grey, one box per kind)" if kinds else ""
    fig.suptitle(
        title
        or f"Loss change of Schur ablations by family (colour){versus}\n"
        f"boxes pool the seeds; points: one shade per seed; green band: within ±{100 * KEEP_TOL:.0f}%",
        fontsize=9.5,
    )
    return fig


def _symlog_ticks(ax: Any, lin: float, values: np.ndarray) -> None:
    """Decade ticks on a symlog axis, none inside the linear zone but 0, at most ~6 per sign."""
    top = float(np.max(values)) if values.size else 1.0
    lo = int(np.floor(np.log10(lin))) + 1
    hi = max(lo, int(np.ceil(np.log10(max(top, lin * 10)))))
    step = max(1, int(np.ceil((hi - lo + 1) / 6)))
    dec = [10.0**e for e in range(hi, lo - 1, -step)][::-1]
    ax.set_yticks([-d for d in dec[::-1]] + [0.0] + dec)
    ax.yaxis.set_minor_locator(_ticker.NullLocator())


def keep_profile(table: Any, *, title: str | None = None) -> Any:
    """The loss-preserving profile across seeds and tasks.

    Left: for each model, the share of single-coupling removals whose |relative loss change| stays below a
    threshold, as a function of the threshold (solid), and the same for their random controls (one line style
    per control kind).
    Right: the share of removals within 5 % per family and model (annotated heat map), each family followed by its
    own random controls, one column per control kind (``norm``/``count``/``noise`` ctrl: matched-norm,
    matched-count, coupling-noise).

    Args:
        table: the run's tidy table.
        title: figure title.

    Returns:
        The Figure.
    """
    table = records(table)
    models = _models_in(table)
    fams = [f for f in FAMILY_ORDER if any(r.get("family") == f and not _is_control(r) for r in table)]
    kinds = _kinds(table)
    n_cols = len(fams) * (1 + len(kinds))  # at most; the heat map widens with its columns
    fig, (ax, axh) = plt.subplots(
        1,
        2,
        figsize=(12.0 + max(0, 0.5 * (n_cols - 8)), 0.9 + max(3.6, 0.42 * len(models) + 1.4)),
        layout="constrained",
        gridspec_kw={"width_ratios": (1.25, max(1.0, n_cols / 8))},
    )
    grid = np.logspace(-5, 2, 200)
    styles = ["-", "--", "-.", ":"]
    by_task: dict[str, int] = {}
    for mid, task, _seed in models:
        rows = [r for r in table if r["model"] == mid]
        k = by_task.get(task, 0)
        by_task[task] = k + 1
        color = TASK_COLORS.get(task, f"C{len(by_task) % 10}")
        singles = np.abs(
            _arr([r for r in rows if r.get("family") == "single" and not _is_control(r)], "rel_delta_loss")
        )
        if singles.size:
            ax.plot(grid, [np.mean(singles <= g) for g in grid], color=color, ls=styles[k % 4], lw=1.6, label=mid)
        single_ids = {r["row_id"] for r in rows if r.get("family") == "single" and not _is_control(r)}
        for kind in kinds:
            ctrl = np.abs(
                _arr(
                    [r for r in rows if _is_control(r) and _kind(r) == kind and r["control_of"] in single_ids],
                    "rel_delta_loss",
                )
            )
            if ctrl.size:
                ax.plot(
                    grid, [np.mean(ctrl <= g) for g in grid], color=color, ls=_style(kind)["pls"], lw=1.0, alpha=0.8
                )
    for kind in kinds:
        ax.plot([], [], color="0.4", ls=_style(kind)["pls"], lw=1.0, label=f"their {_kind_name(kind)} controls")
    ax.axvline(KEEP_TOL, color="k", lw=0.7, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("threshold τ on |Δloss| / loss")
    ax.set_ylabel("share of single-coupling removals with |Δloss|/loss ≤ τ")
    ax.set_title("Loss-preserving profile of single couplings", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper left", ncol=1 if len(models) <= 8 else 2)
    ax.grid(True, alpha=0.3)
    # one column per family, each followed by its own controls, one column per control kind present
    fam_of = {r["row_id"]: r.get("family") for r in table if not _is_control(r)}
    cols: list[tuple[str, str | None]] = []
    for f in fams:
        cols.append((f, None))
        cols += [
            (f, k)
            for k in kinds
            if any(_is_control(r) and _kind(r) == k and fam_of.get(r["control_of"]) == f for r in table)
        ]
    H = np.full((len(models), len(cols)), np.nan)
    for i, (mid, _task, _seed) in enumerate(models):
        rows = [r for r in table if r["model"] == mid]
        for j, (f, k) in enumerate(cols):
            if k is None:
                sel = [r for r in rows if r.get("family") == f and not _is_control(r)]
            else:
                sel = [r for r in rows if _is_control(r) and _kind(r) == k and fam_of.get(r["control_of"]) == f]
            y = np.abs(_arr(sel, "rel_delta_loss"))
            if y.size:
                H[i, j] = np.mean(y <= KEEP_TOL)
    im = axh.imshow(np.ma.masked_invalid(H), cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for i in range(H.shape[0]):
        for j in range(H.shape[1]):
            if np.isfinite(H[i, j]):
                axh.text(
                    j,
                    i,
                    f"{100 * H[i, j]:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if H[i, j] > 0.6 else "black",
                )
    axh.set_xticks(range(len(cols)))
    axh.set_xticklabels(
        [f.replace("_", "\n") if k is None else f"{_style(k)['short']}\nctrl" for f, k in cols], fontsize=8
    )
    for j, (_f, k) in enumerate(cols):
        if k is not None:
            axh.get_xticklabels()[j].set_color("0.4")
    axh.set_yticks(range(len(models)))
    axh.set_yticklabels([m[0] for m in models], fontsize=8)
    axh.set_title(f"share of removals keeping the loss within {100 * KEEP_TOL:.0f}%", fontsize=10)
    fig.colorbar(im, ax=axh, shrink=0.8, label="share loss-preserving")
    fig.suptitle(title or "Which couplings can go? Loss-preserving ablations across tasks and seeds", fontsize=11)
    return fig


def model_figures(sf: Any, rows: Any, *, model_id: str = "") -> dict[str, Any]:
    """The per-model figures: ``schur``, ``importance``, ``loss_vs_norm``, ``eigenvalues`` (name -> Figure)."""
    rows = records(rows)
    figs = {
        "schur": schur_heatmap(sf, title=f"{model_id}: ordered real Schur form |T| (n = {sf.n})" if model_id else None)
    }
    if any(r.get("family") in ("single", "block") and not _is_control(r) for r in rows):
        figs["importance"] = importance_map(sf, rows, model_id=model_id)
    if rows:
        figs["loss_vs_norm"] = loss_vs_norm(rows)
    figs["eigenvalues"] = eigenvalues(sf, title=f"{model_id}: eigenvalues of W (n = {sf.n})" if model_id else None)
    return figs


def run_figures(run: Any) -> dict[str, Any]:
    """The cross-model figures of a run: ``families`` and ``profile`` (name -> Figure)."""
    return {"families": family_distributions(run.table), "profile": keep_profile(run.table)}
