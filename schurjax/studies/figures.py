"""The study's figure panel (matplotlib, Agg): one PNG with six panels, one per question.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.studies.protocol import OFF_CONDITIONS, StudyConfig

__all__ = ["panel", "keep_panel", "versus_panel", "compression_panel", "replay_panel", "restriction_panel",
           "profiles_panel", "TASK_COLORS"]  # fmt: skip

TASK_COLORS = {"copy": "#1f77b4", "flipflop": "#d62728", "sine": "#2ca02c", "context": "#9467bd"}
_KIND_MARK = {"matched_norm": "o", "matched_count": "s", "coupling_noise": "^"}


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
                ax.errorbar(x + dx, d["share"], yerr=[[d["share"] - d["lo"]], [d["hi"] - d["share"]]]
                            if np.isfinite(d["lo"]) else None, fmt="o", ms=4, mfc=face, mec=_color(task),
                            ecolor=_color(task), elinewidth=0.8, capsize=0)  # fmt: skip
    _xticks(ax, groups)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"share of {fam} removals kept")
    ax.set_title("(a) keep share: score (filled) / loss (hollow)", fontsize=9)
    ax.grid(alpha=0.3)


def versus_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any], kinds: Sequence[str]) -> None:
    """Median |Δloss| ratio of single removals to their controls, per kind (log scale)."""
    groups = _groups(models)
    for gi, (task, _, ms) in enumerate(groups):
        for ki, kind in enumerate(kinds):
            vals = [parts[m["id"]]["controls"].get("single", {}).get(kind, {}).get("median_ratio", np.nan)
                    for m in ms]  # fmt: skip
            x = gi + (ki - (len(kinds) - 1) / 2) * 0.22
            ax.scatter(np.full(len(vals), x), vals, marker=_KIND_MARK.get(kind, "o"), s=16, color=_color(task),
                       alpha=0.8, label=kind if gi == 0 else None)  # fmt: skip
    ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax.set_yscale("log")
    _xticks(ax, groups)
    ax.set_ylabel("median |Δloss| removal / control")
    ax.set_title("(b) single removals vs random edits of equal ‖ΔW‖", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, which="both")


def compression_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any]) -> None:
    """Share of couplings removed together (dots: seeds) and the held-out score drop of the compressed model."""
    groups = _groups(models)
    for gi, (task, _, ms) in enumerate(groups):
        for ci, (crit, face) in enumerate((("loss", "white"), ("score", _color(task)))):
            xs, ys, drops = [], [], []
            for si, m in enumerate(ms):
                c = parts[m["id"]].get(f"compression-{crit}")
                if c is None:
                    continue
                xs.append(gi + (ci - 0.5) * 0.3 + (si - (len(ms) - 1) / 2) * 0.05)
                ys.append(len(c["removed"]) / max(c["couplings"], 1))
                drops.append(c["heldout"]["drop"])
            ax.scatter(xs, ys, s=18, facecolor=face, edgecolor=_color(task), label=None)
            if drops:
                ax.annotate(f"{np.nanmedian(drops):+.3f}", (gi + (ci - 0.5) * 0.3, max(ys) + 0.03), ha="center",
                            fontsize=6, color=_color(task))  # fmt: skip
    _xticks(ax, groups)
    ax.set_ylim(-0.02, 1.1)
    ax.set_ylabel("share of couplings removed together")
    ax.set_title("(c) compression: loss (hollow) / score (filled);\nmedian held-out score drop above", fontsize=9)
    ax.grid(alpha=0.3)


def replay_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any]) -> None:
    """Block links the copy replay needs (first copy network), with the longest feed-forward line."""
    copy = [m for m in models if "replay" in parts[m["id"]]]
    if not copy:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no copy network", ha="center", va="center")
        return
    m = copy[0]
    r = parts[m["id"]]["replay"]
    h = parts[m["id"]]["heldout"]
    nb = r["n_blocks"]
    tb, sb = np.asarray(h["block"]["target_block"]), np.asarray(h["block"]["source_block"])
    ax.scatter(sb, tb, s=2, color="0.85", label="coupled block pairs")
    if r["links"]:
        lk = np.asarray(r["links"])
        ax.scatter(lk[:, 1], lk[:, 0], s=10, color=_color("copy"), label="block links of the core")
    ch = r["chain"]
    if len(ch) > 1:
        ax.plot(ch[:-1], ch[1:], "-", color="k", lw=1.2, label=f"longest line ({r['chain_links']} links)")
    ax.set_xlim(-0.5, nb - 0.5)
    ax.set_ylim(nb - 0.5, -0.5)
    ax.set_xlabel("source block b (Schur order, descending |λ|)")
    ax.set_ylabel("target block a")
    ax.set_title(f"(d) {m['id']}: the replay's core ({r['core_size']} couplings)\nlongest line "
                 f"{r['chain_links']} links, null p = {r['p']:.3g}", fontsize=9)  # fmt: skip
    ax.legend(fontsize=6, loc="lower left")


def restriction_panel(ax: Any, models: Sequence[dict[str, Any]], parts: dict[str, Any]) -> None:
    """Median relative output change on the task and off it: loss-keeping removals (solid) vs controls (dotted)."""
    conds = ["task", *OFF_CONDITIONS]
    seen = set()
    for m in models:
        r = parts[m["id"]].get("restriction", {})
        if not r.get("n"):
            continue
        keep = [r.get(c, {}).get("keep", np.nan) for c in conds]
        ctrl = [r.get(c, {}).get("control", np.nan) for c in conds]
        lab = m["task"] not in seen
        seen.add(m["task"])
        ax.plot(range(len(conds)), keep, "-o", ms=3, lw=1, color=_color(m["task"]), alpha=0.8,
                label=m["task"] if lab else None)  # fmt: skip
        ax.plot(range(len(conds)), ctrl, ":", lw=1, color=_color(m["task"]), alpha=0.6)
    ax.set_yscale("log")
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels(conds, fontsize=8)
    ax.set_ylabel("output change / output power (median)")
    ax.set_title("(e) restriction: loss-keeping removals (solid)\nvs matched-norm controls (dotted)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def profiles_panel(ax: Any, prof: dict[str, Any], kind: str = "modulus") -> None:
    """Observed profile similarity (dots) against the shuffled null's 95 % range (bars), per comparison."""
    comps = prof.get(kind, {})
    names = sorted(comps)
    for i, name in enumerate(names):
        d = comps[name]
        task = name.split(" ")[0]
        ax.plot([d["null_lo"], d["null_hi"]], [i, i], "-", color="0.6", lw=3, solid_capstyle="butt")
        ax.plot(d["observed"], i, "o", color=_color(task) if task in TASK_COLORS else "k", ms=5)
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel(f"mean Spearman ρ of {kind}-cell profiles")
    ax.set_title("(f) do seeds agree? observed (dot) vs null 95 % (bar)", fontsize=9)
    ax.grid(alpha=0.3)


def panel(config: StudyConfig, models: Sequence[dict[str, Any]], parts: dict[str, Any], prof: dict[str, Any],
          path: str | Path, *, dpi: int = 110) -> Path:  # fmt: skip
    """Draw the six panels into one PNG at ``path`` (a pyplot-free figure: the caller's backend is left alone)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 9.5))
    axes = fig.subplots(2, 3)
    keep_panel(axes[0, 0], models, parts)
    versus_panel(axes[0, 1], models, parts, config.control_kinds)
    compression_panel(axes[0, 2], models, parts)
    replay_panel(axes[1, 0], models, parts)
    restriction_panel(axes[1, 1], models, parts)
    profiles_panel(axes[1, 2], prof)
    fig.suptitle(f"Schur-coupling study: {len(models)} networks, held-out batch of {config.trials} trials "
                 f"(score criterion ε = {config.eps:g}, loss criterion τ = {config.tau:g})", fontsize=11)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
