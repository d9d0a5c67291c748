"""Summary statistics of a sweep table, shared by the text summary and the HTML report.

Per model: the share of single (and block) couplings whose removal keeps the loss (relative change within
:data:`KEEP_TOL`), the relative loss change and task score after removing all nonnormal couplings, and, per random
control kind (never pooled), how the Schur ablations compare with their controls.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from schurjax.ablate import CONTROL_KINDS
from schurjax.table import records

__all__ = ["KEEP_TOL", "summarize", "format_summary", "control_kinds_in", "fmt_rel", "fmt_share"]

KEEP_TOL = 0.05
"""A removal is loss-preserving when its relative loss change is at most this (5 %)."""


def _kind_of(row: dict[str, Any]) -> str:
    return str(row.get("control_kind") or "control")


def control_kinds_in(table: Any) -> list[str]:
    """The control kinds present in a table (rows or DataFrame), in ``ablate.CONTROL_KINDS`` order, then others."""
    present = {_kind_of(r) for r in records(table) if r.get("control_of") is not None}
    return [k for k in CONTROL_KINDS if k in present] + sorted(present - set(CONTROL_KINDS))


def summarize(table: Any, *, tol: float = KEEP_TOL) -> list[dict[str, Any]]:
    """Per-model summary of a sweep table, with the random controls reported per control kind (never pooled).

    For each model: its base loss and score, and its score after all-nonnormal removal (``all_nonnormal_score``:
    the task score shows what a loss change means where the base loss is mostly irreducible noise, as in the
    context task); the share of single couplings whose removal keeps the loss within
    ``tol`` (relative); the same for block couplings; the relative loss change under all-nonnormal removal; and,
    for each control kind present, the median relative loss change of the Schur ablations that have controls of
    that kind and of those controls, and the fraction of (ablation, control) pairs in which the ablation changes
    the loss more than its control (``by_kind[kind]``). When the table holds exactly one control kind, its figures
    are also the top-level ``ablation_median_rel``, ``control_median_rel``, ``frac_ablation_gt_control`` and
    ``n_pairs`` (NaN / 0 when there are none or several kinds, which are not pooled).

    Args:
        table: the tidy table (a DataFrame from :func:`schurjax.results.load`, or a list of row dicts).
        tol: relative loss change that still counts as loss-preserving.

    Returns:
        One dict per model, in table order.
    """
    table = records(table)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in table:
        by_model.setdefault(row["model"], []).append(row)
    kinds = control_kinds_in(table)
    out = []
    for model, rows in by_model.items():
        by_id = {r["row_id"]: r for r in rows}
        abl = [r for r in rows if r.get("control_of") is None]

        def rel(rs):
            return np.asarray([r["rel_delta_loss"] for r in rs], dtype=np.float64)

        singles = rel([r for r in abl if r.get("family") == "single"])
        blocks = rel([r for r in abl if r.get("family") == "block"])
        allnn_rows = [r for r in abl if r.get("family") == "all_nonnormal"]
        allnn = rel(allnn_rows)
        by_kind: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            ctrl = [r for r in rows if r.get("control_of") is not None and _kind_of(r) == kind]
            paired = [r for r in ctrl if r["control_of"] in by_id]
            controlled_ids = sorted({r["control_of"] for r in paired})
            pairs_a = np.asarray([by_id[r["control_of"]]["delta_loss"] for r in paired], dtype=np.float64)
            pairs_c = np.asarray([r["delta_loss"] for r in paired], dtype=np.float64)
            by_kind[kind] = {
                "ablation_median_rel": float(np.median(rel([by_id[i] for i in controlled_ids])))
                if controlled_ids
                else math.nan,
                "control_median_rel": float(np.median(rel(ctrl))) if ctrl else math.nan,
                "frac_ablation_gt_control": float(np.mean(pairs_a > pairs_c)) if pairs_c.size else math.nan,
                "n_pairs": int(pairs_c.size),
            }
        only = by_kind[kinds[0]] if len(kinds) == 1 else None
        first = rows[0]
        out.append(
            {
                "model": model,
                "task": first.get("task"),
                "seed": first.get("model_seed"),
                "base_loss": first.get("base_loss"),
                "base_score": first.get("base_score"),
                "n_single": int(singles.size),
                "single_keep": float(np.mean(np.abs(singles) <= tol)) if singles.size else math.nan,
                "block_keep": float(np.mean(np.abs(blocks) <= tol)) if blocks.size else math.nan,
                "all_nonnormal_rel": float(allnn[0]) if allnn.size else math.nan,
                "all_nonnormal_score": _float(allnn_rows[0].get("score")) if allnn_rows else math.nan,
                "control_kinds": list(kinds),
                "by_kind": by_kind,
                "ablation_median_rel": only["ablation_median_rel"] if only else math.nan,
                "control_median_rel": only["control_median_rel"] if only else math.nan,
                "frac_ablation_gt_control": only["frac_ablation_gt_control"] if only else math.nan,
                "n_pairs": only["n_pairs"] if only else 0,
            }
        )
    return out


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _fmt_score(base: Any, after: Any) -> str:
    """``0.983→0.512`` (task score before -> after all-nonnormal removal), or just the base score."""
    ok = [not _missing(x) for x in (base, after)]
    if ok[0] and ok[1]:
        return f"{base:.3f}→{after:.3f}"
    return f"{base:.3f}" if ok[0] else "-"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_share(x: Any, *, missing: str = "-") -> str:
    """A share as a whole percentage (``0.337`` -> ``"34%"``); ``missing`` for None/NaN."""
    return missing if _missing(x) else f"{100 * x:.0f}%"


def fmt_rel(x: Any, *, missing: str = "-", times: str = "x") -> str:
    """A relative change as a signed percentage (``"+1.2%"``); a loss that grew more than 10-fold as a factor
    (``"x12.3"``, ``times`` is the sign); ``missing`` for None/NaN."""
    if _missing(x):
        return missing
    return f"{100 * x:+.1f}%" if abs(x) < 9.5 else f"{times}{1 + x:.3g}"


def _fmt(x: Any, kind: str = "g") -> str:
    if kind == "%":
        return fmt_share(x)
    if kind == "+%":
        return fmt_rel(x)
    return "-" if _missing(x) else f"{x:.3g}"


def format_summary(summary: Sequence[dict[str, Any]], *, tol: float = KEEP_TOL) -> str:
    """The per-task, per-seed summary as a plain-text table (one block per task, at most ~110 characters wide).

    Columns: seed, base loss, share of single (and block) couplings whose removal keeps the loss within ``tol``,
    relative loss change under all-nonnormal removal; then, per control kind, the median relative loss change of
    the Schur ablations vs of their random controls of that kind, and the fraction of ablations that change the
    loss more than their control. With one control kind these are columns of the main table (named in the legend);
    with several, each task gets a second table with one row per (model, control kind).
    """
    kinds = list(dict.fromkeys(k for s in summary for k in s.get("control_kinds", [])))
    single_kind = len(kinds) == 1
    head = (
        f"{'model':<16}{'seed':>5}{'base loss':>10}{'score base→NN':>14}{'single keep':>12}{'block keep':>11}"
        f"{'all-NN Δ':>10}"
    )
    if single_kind:
        head += f"{'abl med Δ':>10}{'ctrl med Δ':>11}{'abl>ctrl':>9}"
    lines = [
        f"keep = share of removals with |Δloss|/loss <= {100 * tol:.0f}%; Δ = relative loss change (xK: loss "
        "multiplied by K)",
        "score base→NN = task score (0-1) of the unablated model → after removing all nonnormal couplings (all-NN)",
    ]
    if kinds:
        lines += [
            "abl med / ctrl med = median Δ of the Schur ablations that have random controls / of those controls;",
            "abl>ctrl = share of (ablation, control) pairs where the ablation changes the loss more;",
            f"controls: {kinds[0]}" if single_kind else f"controls per kind, never pooled: {', '.join(kinds)}",
        ]
    tasks_seen: dict[str, list[dict[str, Any]]] = {}
    for s in summary:
        tasks_seen.setdefault(str(s["task"]), []).append(s)
    for task, items in tasks_seen.items():
        lines.append("")
        lines.append(f"task {task}")
        lines.append(head)
        for s in items:
            score = _fmt_score(s.get("base_score"), s.get("all_nonnormal_score"))
            line = (
                f"{s['model']:<16}{_fmt(s['seed']):>5}{_fmt(s['base_loss']):>10}{score:>14}"
                f"{_fmt(s['single_keep'], '%'):>12}{_fmt(s['block_keep'], '%'):>11}"
                f"{_fmt(s['all_nonnormal_rel'], '+%'):>10}"
            )
            if single_kind:
                k = s.get("by_kind", {}).get(kinds[0], {})
                line += (
                    f"{_fmt(k.get('ablation_median_rel'), '+%'):>10}{_fmt(k.get('control_median_rel'), '+%'):>11}"
                    f"{_fmt(k.get('frac_ablation_gt_control'), '%'):>9}"
                )
            lines.append(line)
        if not single_kind and kinds:
            lines.append(
                f"{'model':<16}{'control kind':<16}{'abl med Δ':>11}{'ctrl med Δ':>12}{'abl>ctrl':>10}{'pairs':>8}"
            )
            for s in items:
                for kind in kinds:
                    k = s.get("by_kind", {}).get(kind)
                    if not k:
                        continue
                    lines.append(
                        f"{s['model']:<16}{kind:<16}{_fmt(k['ablation_median_rel'], '+%'):>11}"
                        f"{_fmt(k['control_median_rel'], '+%'):>12}{_fmt(k['frac_ablation_gt_control'], '%'):>10}"
                        f"{k['n_pairs']:>8}"
                    )
    return "\n".join(lines)
