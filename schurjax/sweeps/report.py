"""The self-contained HTML report of a run: summary table, figures embedded as base64 PNGs, text summary.

``write_report(run)`` writes ``<run>/report.html`` (and each figure to ``<run>/figures/<name>.png``). Needs the
``plot`` extra (matplotlib).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.plot import to_png
from schurjax.store import _safe_io
from schurjax.store._json import atomic_write_bytes
from schurjax.store.table import records
from schurjax.sweeps.figures import model_figures, run_figures
from schurjax.sweeps.summary import fmt_rel, fmt_share, format_summary, summarize

__all__ = ["write_report"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:right} th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:.5em} .figs img{max-width:660px;width:48%;border:1px solid #eee}
.wide img{max-width:100%;width:auto} pre{background:#f8f8f8;padding:.6em;font-size:.8em;overflow-x:auto}
.note{color:#555;font-size:.9em}
"""


def _e(x: Any) -> str:
    """Any value from a manifest, table or file name, as HTML text (quotes too): nothing from data is markup."""
    return html.escape(str(x), quote=True)


def _list(xs: Any) -> str:
    return _e(", ".join(map(str, xs)) if isinstance(xs, list | tuple) else xs)


def _get(m: Any, *keys: str) -> Any:
    for k in keys:
        m = m.get(k) if isinstance(m, dict) else None
    return m


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _summary_table(summary: Sequence[dict[str, Any]]) -> str:
    def pct(x, signed=False):
        return fmt_rel(x, missing="–", times="×") if signed else fmt_share(x, missing="–")

    kinds = list(dict.fromkeys(k for s in summary for k in s.get("control_kinds", [])))
    head = [
        "model",
        "task",
        "seed",
        "base loss",
        "base score",
        "all-nonnormal score",
        "single keep",
        "block keep",
        "all-nonnormal Δ",
        "most needed (single)",
    ]
    for kind in kinds:
        name = kind.replace("_", "-")
        head += [f"ablation median Δ ({name})", f"{name} control median Δ", f"ablation > {name} control"]
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for s in summary:
        score, nn = (s.get(k) for k in ("base_score", "all_nonnormal_score"))
        score, nn = ("–" if x is None or x != x else f"{x:.3f}" for x in (score, nn))  # x != x: NaN
        cells = [
            s["model"],
            s["task"],
            "–" if s["seed"] is None else s["seed"],
            f"{s['base_loss']:.3g}",
            score,
            nn,
            pct(s["single_keep"]),
            pct(s["block_keep"]),
            pct(s["all_nonnormal_rel"], True),
            ", ".join(str(m["label"]) for m in s.get("most_needed", [])) or "–",
        ]
        for kind in kinds:
            k = s.get("by_kind", {}).get(kind, {})
            cells += [
                pct(k.get("ablation_median_rel"), True),
                pct(k.get("control_median_rel"), True),
                pct(k.get("frac_ablation_gt_control")),
            ]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _schur_note(sf: Any) -> str:
    """The mode order, and for a leaky network's form the per-step decay beside the eigenvalues."""
    alpha = getattr(sf, "alpha", None)
    lam = np.asarray(sf.eigvals)
    text = f"order: {_e(sf.order)}; spectral radius |λ| {np.abs(lam).max():.4g}"
    if alpha is not None and alpha != 1.0:
        decay = np.asarray(sf.step_decay(alpha))
        slow = int(np.argmax(decay))
        text += (
            f"; alpha = {alpha:g}: the step's linear part (1 − α) I + α W has per-step decay |1 − α + αλ| "
            f"from {decay.min():.4g} to {decay.max():.4g} (slowest mode λ = {_e(f'{lam[slow]:.4g}')})"
        )
    return f"<p class='note'>{text}</p>"


def write_report(
    run: Any,
    *,
    path: str | os.PathLike | None = None,
    save_pngs: bool = True,
    dpi: int = 100,
    criterion: str = "auto",
) -> Path:
    """Write a self-contained HTML report of a run (figures embedded as base64 PNGs).

    Args:
        run: a :class:`schurjax.store.results.Run` (from :func:`schurjax.store.results.load`).
        path: the HTML file (default ``<run>/report.html``).
        save_pngs: also write each figure to ``<run>/figures/<name>.png``.
        dpi: PNG resolution.
        criterion: what "keeps" means in the summary (``"auto"``: the task score where the table has one, else
            the one-sided loss change; see :class:`schurjax.sweeps.summary.Criterion`).

    Returns:
        The report path.

    Example::

        from schurjax.sweeps.report import write_report
        write_report(sj.results.load("runs/demo"))
    """
    root = Path(run.path)
    if save_pngs:  # a symlinked figures/ is refused, never followed
        _safe_io.mkdirs(root, "figures", where="report")
    summary = summarize(run.table, criterion=criterion)
    crit = summary[0]["criterion"].describe() if summary else ""

    def render(fig, name):
        png = to_png(fig, dpi=dpi)
        if save_pngs:
            file = _safe_io.check_name("report", None, f"{name}.png")
            _safe_io.write_bytes(root, ("figures", file), png, where="report")
        return png

    m = run.manifest
    table = records(run.table)
    cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>schurjax report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>schurjax sweep report: {_e(run.path)}</h1>",
        "<p class='note'>Directed nonnormal couplings of each trained recurrent matrix, written in ordered real "
        "Schur coordinates W = Q T Q<sup>T</sup>, are removed one family at a time; every edit keeps the spectrum. "
        "Random controls, reported per kind: matched-norm (a dense Gaussian edit of W with the same Frobenius "
        "norm), matched-count (as many random couplings removed), coupling-noise (a Gaussian edit on the coupling "
        "positions with the same norm), rank-matched (a random edit of the removal's rank and singular values), "
        "Schur-rank-1 (a random rank-1 edit inside the same two invariant subspaces). Method: S. Dräger, "
        "<i>Task-Restricted Symmetries in Recurrent Weight Space</i>, arXiv:2606.18457 (2026).</p>",
        f"<p class='note'>families: {_list(cfg.get('families'))}; controls per ablation: "
        f"{_e(cfg.get('controls'))} ({_list(cfg.get('control_kinds'))}, at most "
        f"{_e(cfg.get('control_max') or 'all')} ablations per family and model); trials: {_e(cfg.get('trials'))}; "
        f"order: {_e(cfg.get('order'))}; precision: {_e(cfg.get('precision'))}; seed: {_e(cfg.get('seed'))}; "
        f"rows: {len(run.table)}; complete: {_e(run.complete)}; JAX {_e(_get(m, 'versions', 'jax'))} on "
        f"{_e(_get(m, 'device', 'backend'))}.</p>",
        "<h2>Summary</h2>",
        f"<p class='note'><b>criterion: {_e(crit)}</b> (single/block keep = share of removals that keep; most "
        "needed = the single couplings whose removal costs the most by it); Δ = relative change of the loss the task "
        "declares (masked MSE, or cross-entropy for decision tasks); "
        "all-nonnormal score = task score after removing all nonnormal couplings (where the base loss is mostly "
        "irreducible noise, as in the context task, the score says more than the relative loss change); "
        "ablation &gt; control = share of (ablation, control) pairs in which the Schur ablation changes the loss more "
        "than its random control, reported separately for each control kind.</p>",
        _summary_table(summary),
        "<h2>Across tasks and seeds</h2><div class='figs wide'>",
    ]
    for name, fig in run_figures(run).items():
        parts.append(_img(render(fig, name), name))
    parts.append("</div>")
    for model in m.get("models", []):
        mid = model["id"]
        sf = run.schurs.get(mid)
        rows = [r for r in table if r["model"] == mid]
        if sf is None:
            continue
        parts.append(
            f"<h2>{_e(mid)} <span class='note'>({_e(model.get('source', ''))}, "
            f"n = {_e(sf.n)}, {len(sf.blocks)} blocks)</span></h2>"
        )
        parts.append(_schur_note(sf))
        parts.append("<div class='figs'>")
        for name, fig in model_figures(sf, rows, model_id=mid).items():
            parts.append(_img(render(fig, f"{mid}_{name}"), f"{mid} {name}"))
        parts.append("</div>")
    parts.append(f"<h2>Text summary</h2><pre>{_e(format_summary(summary))}</pre></body></html>")
    data = "\n".join(parts).encode()
    if path is None:
        return _safe_io.write_bytes(root, "report.html", data, where="report")
    return atomic_write_bytes(Path(path), data)
