"""Summary statistics of a sweep table, shared by the text summary and the HTML report.

Per model: the share of single (and block) couplings whose removal *keeps* the behaviour by a :class:`Criterion`
(the task score drops by at most ``eps``, the default for tasks with a score; or the loss grows by at most ``tau``
relative), the relative loss change and task score after removing all nonnormal couplings, the couplings whose
single removal costs the most by the same criterion, and, per random control kind (never pooled), how the Schur
ablations compare with their controls. Every headline names its criterion.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from schurjax.ablate import CONTROL_KINDS
from schurjax.errors import InputError
from schurjax.store.table import records

__all__ = [
    "KEEP_TOL",
    "KEEP_EPS",
    "CRITERIA",
    "Criterion",
    "criterion_for",
    "summarize",
    "format_summary",
    "changes_more",
    "control_kinds_in",
    "fmt_rel",
    "fmt_share",
]

KEEP_TOL = 0.05
"""Loss criterion: a removal keeps the loss when its relative loss change is at most this (5 %), one-sided."""
KEEP_EPS = 0.01
"""Score criterion: a removal keeps the behaviour when the task score drops by at most this (0.01)."""
CRITERIA = ("auto", "score", "loss")
"""Accepted criterion names: ``"auto"`` is the score where the table has task scores, else the loss."""


@dataclasses.dataclass(frozen=True)
class Criterion:
    """What "keeps" means: ``kind="score"`` (score drop <= ``eps``) or ``"loss"`` (``dloss / loss <= tau``).

    ``two_sided=True`` makes the loss criterion ``|dloss| / loss <= tau`` (a removal that lowers the loss by more
    than ``tau`` then fails too).

    Example:
        >>> c = Criterion("loss", tau=0.05)
        >>> c.keeps(rel_delta_loss=np.array([0.01, -0.2, 0.08]), score=None, base_score=None).tolist()
        [True, True, False]
        >>> c.describe()
        'keep = Δloss/loss ≤ 5%'
    """

    kind: str
    tau: float = KEEP_TOL
    eps: float = KEEP_EPS
    two_sided: bool = False

    def __post_init__(self):
        if self.kind not in ("score", "loss"):
            raise InputError("Criterion", None, f"kind must be 'score' or 'loss', got {self.kind!r}")
        for name in ("tau", "eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise InputError("Criterion", None, f"{name} must be a finite number >= 0, got {v!r}")

    def keeps(self, *, rel_delta_loss: Any, score: Any, base_score: Any) -> np.ndarray:
        """Boolean array: which removals keep the behaviour (NaN figures never keep)."""
        if self.kind == "score":
            drop = np.asarray(base_score, dtype=np.float64) - np.asarray(score, dtype=np.float64)
            return np.asarray(drop <= self.eps)
        rel = np.asarray(rel_delta_loss, dtype=np.float64)
        return np.asarray((np.abs(rel) if self.two_sided else rel) <= self.tau)

    def cost(self, *, rel_delta_loss: Any, score: Any, base_score: Any) -> np.ndarray:
        """How much each removal costs in the criterion's units (score drop, or relative loss change)."""
        if self.kind == "score":
            return np.asarray(base_score, dtype=np.float64) - np.asarray(score, dtype=np.float64)
        return np.asarray(rel_delta_loss, dtype=np.float64)

    def describe(self) -> str:
        """The criterion in one phrase, for every headline."""
        if self.kind == "score":
            return f"keep = task score drops by ≤ {self.eps:g}"
        rel = "|Δloss|/loss" if self.two_sided else "Δloss/loss"
        return f"keep = {rel} ≤ {100 * self.tau:g}%"


def criterion_for(
    table: Any, criterion: str | Criterion = "auto", *, tau: float = KEEP_TOL, eps: float = KEEP_EPS
) -> Criterion:
    """Resolve ``criterion`` for a table: ``"auto"`` is the score when any row has a finite task score, else the loss.

    Example:
        >>> criterion_for([{"score": 0.9}]).kind, criterion_for([{"score": None}]).kind
        ('score', 'loss')
    """
    if isinstance(criterion, Criterion):
        return criterion
    if criterion not in CRITERIA:
        raise InputError(
            "summarize", None, f"criterion must be one of {', '.join(map(repr, CRITERIA))}, got {criterion!r}"
        )
    if criterion == "auto":
        has_score = any(not _missing(_float(r.get("score"))) for r in records(table))
        criterion = "score" if has_score else "loss"
    return Criterion(criterion, tau=tau, eps=eps)


def _kind_of(row: dict[str, Any]) -> str:
    return str(row.get("control_kind") or "control")


def control_kinds_in(table: Any) -> list[str]:
    """The control kinds present in a table (rows or DataFrame), in ``ablate.CONTROL_KINDS`` order, then others."""
    present = {_kind_of(r) for r in records(table) if r.get("control_of") is not None}
    return [k for k in CONTROL_KINDS if k in present] + sorted(present - set(CONTROL_KINDS))


def summarize(
    table: Any, *, criterion: str | Criterion = "auto", tol: float = KEEP_TOL, eps: float = KEEP_EPS, most: int = 3
) -> list[dict[str, Any]]:
    """Per-model summary of a sweep table, with the random controls reported per control kind (never pooled).

    For each model: its base loss and score, and its score after all-nonnormal removal (``all_nonnormal_score``:
    the task score shows what a loss change means where the base loss is mostly irreducible noise, as in the
    context task); the share of single couplings whose removal keeps the behaviour by the criterion (``criterion``,
    the :class:`Criterion` used, is in every summary); the same for block couplings; the ``most`` single couplings
    whose removal costs the most by that criterion (``most_needed``: labels and costs); the relative loss change
    under all-nonnormal removal; and,
    for each control kind present, the median relative loss change of the Schur ablations that have controls of
    that kind and of those controls, and the fraction of (ablation, control) pairs in which the ablation changes
    the loss more than its control (``by_kind[kind]``). When the table holds exactly one control kind, its figures
    are also the top-level ``ablation_median_rel``, ``control_median_rel``, ``frac_ablation_gt_control`` and
    ``n_pairs`` (NaN / 0 when there are none or several kinds, which are not pooled).

    Args:
        table: the tidy table (a DataFrame from :func:`schurjax.store.results.load`, or a list of row dicts).
        criterion: ``"auto"`` (the score where the table has task scores, else the loss), ``"score"``, ``"loss"``
            or a :class:`Criterion`.
        tol: the loss criterion's ``tau`` (one-sided relative loss change).  eps: the score criterion's drop.
        most: how many most-needed single couplings to name.

    Returns:
        One dict per model, in table order.
    """
    table = records(table)
    crit = criterion_for(table, criterion, tau=tol, eps=eps)
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

        def keeps(rs):
            return crit.keeps(
                rel_delta_loss=rel(rs),
                score=[_float(r.get("score")) for r in rs],
                base_score=[_float(r.get("base_score")) for r in rs],
            )

        single_rows = [r for r in abl if r.get("family") == "single"]
        block_rows = [r for r in abl if r.get("family") == "block"]
        singles, blocks = keeps(single_rows), keeps(block_rows)
        cost = crit.cost(
            rel_delta_loss=rel(single_rows),
            score=[_float(r.get("score")) for r in single_rows],
            base_score=[_float(r.get("base_score")) for r in single_rows],
        )
        # by the criterion's cost, ties (e.g. score drops of 0 where the score saturates) by the loss change
        rel1 = rel(single_rows)
        fill = lambda x: np.where(np.isnan(x), -np.inf, x)  # noqa: E731
        order = np.lexsort((-fill(rel1), -fill(cost)))[:most] if cost.size else []
        most_needed = [
            {
                "label": single_rows[i].get("label") or f"row {single_rows[i].get('row_id')}",
                "cost": float(cost[i]),
                "rel": float(rel1[i]),
            }
            for i in order
        ]
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
                "frac_ablation_gt_control": float(np.mean(changes_more(pairs_a, pairs_c)))
                if pairs_c.size
                else math.nan,
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
                "criterion": crit,
                "single_keep": float(np.mean(singles)) if singles.size else math.nan,
                "block_keep": float(np.mean(blocks)) if blocks.size else math.nan,
                "most_needed": most_needed,
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
    if x is None or (isinstance(x, str) and not x):
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _coupling(label: Any) -> str:
    """``T[i,j]`` for a single-coupling label (a dict with ``entries`` or the table's flattened cells)."""
    if isinstance(label, dict):
        e = label.get("entries")
        if isinstance(e, list | tuple) and e and isinstance(e[0], list | tuple) and len(e[0]) == 2:
            return f"T[{e[0][0]},{e[0][1]}]"
    return str(label)


def _fmt_cost(x: float, unit: str) -> str:
    return fmt_rel(x) if unit == "Δloss/loss" else f"{x:+.3f}"


def _fmt_needed(m: dict[str, Any], unit: str) -> str:
    """``T[0,1] (+0.390)``; under the score criterion with the loss change beside it: ``T[0,1] (+0.390, loss
    +0.1%)`` (a score that saturates says nothing on its own)."""
    cost = _fmt_cost(m["cost"], unit)
    if unit == "Δloss/loss" or "rel" not in m:
        return f"{_coupling(m['label'])} ({cost})"
    return f"{_coupling(m['label'])} ({cost}, loss {fmt_rel(m['rel'])})"


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


def changes_more(abl: Any, ctrl: Any) -> np.ndarray:
    """Whether each ablation changes the loss more than its control: ``|Δ_abl| > |Δ_ctrl|`` (the one definition,
    also of the study's ``share_more``; a removal that lowers the loss by much changes it too).

    Example:
        >>> changes_more([0.1, -0.3, 0.0], [0.2, 0.1, 0.0]).tolist()
        [False, True, False]
    """
    return np.abs(np.asarray(abl, np.float64)) > np.abs(np.asarray(ctrl, np.float64))


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """The per-task, per-seed summary as a plain-text table (one block per task, at most ~110 characters wide).

    Columns: seed, base loss, share of single (and block) couplings whose removal keeps the behaviour by each
    summary's criterion (named in the legend),
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
    crits = list(dict.fromkeys(s["criterion"].describe() for s in summary if s.get("criterion") is not None))
    lines = [
        f"criterion: {'; '.join(crits) or Criterion('loss').describe()} (keep: share of removals that keep)",
        "Δ = relative loss change (xK: loss multiplied by K)",
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
        for s in items:
            if s.get("most_needed"):
                unit = "score drop" if s["criterion"].kind == "score" else "Δloss/loss"
                named = ", ".join(_fmt_needed(m, unit) for m in s["most_needed"])
                lines.append(f"  most needed in {s['model']} ({unit}): {named}")
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
