"""The study's figure panel (matplotlib, Agg): one PNG with six panels, one per question."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.store import _safe_io
from schurjax.studies.protocol import OFF_CONDITIONS, StudyConfig

__all__ = [
    "panel",
    "keep_panel",
    "versus_panel",
    "compression_panel",
    "replay_panel",
    "restriction_panel",
    "profiles_panel",
    "TASK_COLORS",
]

TASK_COLORS = {"copy": "#1f77b4", "flipflop": "#d62728", "sine": "#2ca02c", "context": "#9467bd"}
_KIND_MARK = {
    "matched_norm": "o",
    "matched_count": "s",
    "coupling_noise": "^",
    "rank_matched": "D",
    "schur_rank1": "v",
    "worst rank-1": "x",
}


def _color(task: str) -> str:
    return TASK_COLORS.get(task, "0.3")


def _groups(models: Sequence[dict[str, Any]]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for m in models:
        out.setdefault((m["task"], int(m["n_hidden"])), []).append(m)
    return [(t, n, ms) for (t, n), ms in out.items()]


def _xticks(ax: Any, groups: Sequence[tuple[str, int, Any]]) -> None:
    sizes = {n for _, n, _ in groups}
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([t if len(sizes) == 1 else f"{t}\nn={n}" for t, n, _ in groups], fontsize=8)


def keep_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any], fam: str = "single") -> None:
    """Keep shares per network (dots: seeds, bars: bootstrap intervals): filled = score, hollow = loss criterion."""
    groups = _groups(models)
    for gi, (task, _, ms) in enumerate(groups):
        for si, m in enumerate(ms):
            k = parts[m["id"]]["heldout"][fam].get("keep")
            if k is None:
                continue
            x = gi + (si - (len(ms) - 1) / 2) * 0.12
            for crit, face, dx in (("score", _color(task), -0.03), ("loss", "white", 0.03)):
                d = k[crit]
                ax.errorbar(
                    x + dx,
                    d["share"],
                    yerr=[[d["share"] - d["lo"]], [d["hi"] - d["share"]]] if np.isfinite(d["lo"]) else None,
                    fmt="o",
                    ms=4,
                    mfc=face,
                    mec=_color(task),
                    ecolor=_color(task),
                    elinewidth=0.8,
                    capsize=0,
                )
    _xticks(ax, groups)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"share of {fam} removals kept")
    ax.set_title(f"(a) {fam}-coupling removals kept: score (filled) / loss (hollow)", fontsize=9)
    ax.grid(alpha=0.3)


def versus_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any], kinds: Sequence[str]) -> None:
    """Median |Δloss| ratio of single removals to their controls, per kind, and to the worst rank-1 edit of the
    median single removal's size (fragility part), on a log scale."""
    groups = _groups(models)
    kinds = [*kinds, "worst rank-1"]
    for gi, (task, _, ms) in enumerate(groups):
        for ki, kind in enumerate(kinds):
            if kind == "worst rank-1":
                vals = []
                for m in ms:
                    d = parts[m["id"]].get("fragility", {}).get("sizes", {}).get("single_median", {})
                    w = d.get("rank1", {}).get("worst_rel", np.nan)
                    vals.append(abs(d.get("removal_rel", np.nan)) / abs(w) if w else np.nan)
            else:
                vals = [
                    parts[m["id"]]["controls"].get("single", {}).get(kind, {}).get("median_ratio", np.nan) for m in ms
                ]
            x = gi + (ki - (len(kinds) - 1) / 2) * (0.8 / max(len(kinds), 1))
            ax.scatter(
                np.full(len(vals), x),
                vals,
                marker=_KIND_MARK.get(kind, "o"),
                s=16,
                color=_color(task),
                alpha=0.8,
                label=kind if gi == 0 else None,
            )
    ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax.set_yscale("log")
    _xticks(ax, groups)
    ax.set_ylabel("median |Δloss| removal / control")
    ax.set_title("(b) single removals vs random and worst-case edits of equal ‖ΔW‖", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, which="both")


def compression_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any]) -> None:
    """Share of couplings removed together (dots: seeds) and the held-out score drop of the compressed model."""
    groups = _groups(models)
    for gi, (task, _, ms) in enumerate(groups):
        for ci, (crit, face) in enumerate((("loss", "white"), ("score", _color(task)))):
            xs, ys, held = [], [], []
            for si, m in enumerate(ms):
                c = parts[m["id"]].get(f"compression-{crit}")
                if c is None:
                    continue
                xs.append(gi + (ci - 0.5) * 0.3 + (si - (len(ms) - 1) / 2) * 0.05)
                ys.append(len(c["removed"]) / max(c["couplings"], 1))
                held.append(c["heldout"]["rel"] if crit == "loss" else c["heldout"]["drop"])
            ax.scatter(xs, ys, s=18, facecolor=face, edgecolor=_color(task), label=None)
            if held:
                med = np.nanmedian(held)
                text = f"{100 * med:+.0f}%" if crit == "loss" else f"{med:.3f}"
                ax.annotate(
                    text,
                    (gi + (ci - 0.5) * 0.3, max(ys) + 0.03 + 0.04 * ci),
                    ha="center",
                    fontsize=6,
                    color=_color(task),
                )
    _xticks(ax, groups)
    ax.set_ylim(-0.02, 1.1)
    ax.set_ylabel("share of couplings removed together")
    ax.set_title(
        "(c) compression: loss (hollow) / score (filled) sets;\nabove: median held-out Δloss/loss or score drop",
        fontsize=9,
    )
    ax.grid(alpha=0.3)


def replay_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any], replay_table: Any = None) -> None:
    """Per copy network: the longest feed-forward line through the replay core's block links (dot; filled when
    longer than the null at p < 0.05) against the null of as many random links (grey bar: median to 95th
    percentile) and, with ``replay_table`` (the study's ``replay`` table), the null of links at the core's own block
    distances (blue bar); filled then means longer than both."""
    copy = [m for m in models if "replay" in parts[m["id"]]]
    if not copy:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no copy network", ha="center", va="center")
        return
    have = replay_table is not None and len(replay_table) and "p_null_dist" in replay_table
    matched = replay_table.set_index("model").to_dict("index") if have else {}
    top = 1.0
    for i, m in enumerate(copy):
        r = parts[m["id"]]["replay"]
        ax.plot(
            [i - 0.08, i - 0.08],
            [r["null_median"], r["null_p95"]],
            "-",
            color="0.6",
            lw=4,
            solid_capstyle="butt",
            label="null: random links" if i == 0 else None,
        )
        ps = [r["p"]]
        d = matched.get(m["id"])
        if d is not None and np.isfinite(d.get("p_null_dist", np.nan)):
            ax.plot(
                [i + 0.08, i + 0.08],
                [d["null_dist_median"], d["null_dist_p95"]],
                "-",
                color=_color("copy"),
                alpha=0.4,
                lw=4,
                solid_capstyle="butt",
                label="null: links at the core's distances" if i == 0 else None,
            )
            ps.append(d["p_null_dist"])
            top = max(top, d["null_dist_p95"])
        sig = all(np.isfinite(p) and p < 0.05 for p in ps)
        ax.plot(i, r["chain_links"], "o", ms=6, mec=_color("copy"), mfc=_color("copy") if sig else "white")
        ax.annotate(
            f"core {r['core_size']}\np {' / '.join(f'{p:.2g}' for p in ps)}",
            (i, r["chain_links"]),
            textcoords="offset points",
            xytext=(9, 4),
            ha="left",
            fontsize=7,
        )
        top = max(top, r["chain_links"], r["null_p95"])
    ax.set_xticks(range(len(copy)))
    ax.set_xticklabels([m["id"].replace("copy-", "") for m in copy], fontsize=7, rotation=30)
    ax.set_ylabel("links on the longest feed-forward line")
    ax.set_ylim(0, top * 1.3 + 1)
    ax.set_title(
        "(d) copy replay: its core's longest line through the Schur modes\n"
        "vs random links (bars: median to 95th pct; filled: longer, p < 0.05)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)


def restriction_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any]) -> None:
    """Median relative output change on the task and off it, median over seeds per task and size: loss-keeping
    removals (solid) vs their matched-norm controls (dotted); the larger size drawn thicker."""
    conds = ["task", *OFF_CONDITIONS]
    groups = _groups(models)
    sizes = sorted({n for _, n, _ in groups})
    for task, n, ms in groups:
        rs = [parts[m["id"]].get("restriction", {}) for m in ms]
        rs = [r for r in rs if r.get("n")]
        if not rs:
            continue
        keep = np.nanmedian([[r.get(c, {}).get("keep", np.nan) for c in conds] for r in rs], axis=0)
        ctrl = np.nanmedian([[r.get(c, {}).get("control", np.nan) for c in conds] for r in rs], axis=0)
        lw = 1.0 + 1.2 * sizes.index(n)
        ax.plot(range(len(conds)), keep, "-o", ms=3, lw=lw, color=_color(task), label=f"{task} n={n}")
        ax.plot(range(len(conds)), ctrl, ":", lw=lw, color=_color(task), alpha=0.7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels(conds, fontsize=8)
    ax.set_ylabel("output change / output power (median)")
    ax.set_title("(e) restriction: loss-keeping removals (solid)\nvs matched-norm controls (dotted)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3, which="both")


def profiles_panel(ax: Any, prof: dict[str, Any]) -> None:
    """Per within-task comparison and cell kind: the observed profile similarity (dot; filled when above both the
    shuffled null and random groups of networks of any task, p < 0.05 each), the shuffled null's 95 % range (grey)
    and that of random groups of any task (coloured)."""
    names = sorted({n for comps in prof.values() for n in comps if not n.startswith("between tasks")})
    marks = {"modulus": ("o", -0.17), "distance": ("s", 0.17)}
    for i, name in enumerate(names):
        task = name.split(" ")[0]
        col = _color(task)
        for kind, (mk, dy) in marks.items():
            d = prof.get(kind, {}).get(name)
            if d is None:
                continue
            y = i + dy
            ax.plot([d["null_lo"], d["null_hi"]], [y - 0.05, y - 0.05], "-", color="0.75", lw=2, solid_capstyle="butt")
            if np.isfinite(d.get("task_lo", np.nan)):
                ax.plot(
                    [d["task_lo"], d["task_hi"]],
                    [y + 0.05, y + 0.05],
                    "-",
                    color=col,
                    alpha=0.35,
                    lw=2,
                    solid_capstyle="butt",
                )
            sig = d["p"] < 0.05 and np.isfinite(d.get("p_task", np.nan)) and d["p_task"] < 0.05
            ax.plot(d["observed"], y, mk, ms=5, mec=col, mfc=col if sig else "white")
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("mean Spearman ρ of importance profiles")
    ax.set_title(
        "(f) seeds agree? ○ |λ| cells, □ distance cells; 95 % bars: shuffled\nnull (grey), random "
        "groups of any task (coloured); filled: above both",
        fontsize=9,
    )
    ax.grid(alpha=0.3)


def panel(
    config: StudyConfig,
    models: Sequence[dict[str, Any]],
    parts: dict[str, Any],
    prof: dict[str, Any],
    path: str | Path,
    *,
    dpi: int = 110,
    tables: dict[str, Any] | None = None,
) -> Path:
    """Draw the six panels into one PNG at ``path`` (a pyplot-free figure: the caller's backend is left alone);
    ``tables`` (:func:`schurjax.studies.report.tables`) adds the distance-matched null to panel (d)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 9.5))
    axes = fig.subplots(2, 3)
    keep_panel(axes[0, 0], models, parts)
    versus_panel(axes[0, 1], models, parts, config.control_kinds)
    compression_panel(axes[0, 2], models, parts)
    replay_panel(axes[1, 0], models, parts, None if tables is None else tables.get("replay"))
    restriction_panel(axes[1, 1], models, parts)
    profiles_panel(axes[1, 2], prof)
    fig.suptitle(
        f"Schur-coupling study: {len(models)} networks, held-out batch of {config.trials} trials "
        f"(score criterion ε = {config.eps:g}, loss criterion τ = {config.tau:g})",
        fontsize=11,
    )
    fig.tight_layout()
    path = Path(path)
    # atomic and never through a symlink: figure.png is written next to the folder's other files
    _safe_io.write_with(path.parent, path.name, lambda f: fig.savefig(f, dpi=dpi, format="png"), where="study")
    return path
