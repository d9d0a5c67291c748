"""The study's tables and its Markdown report, computed from the parts and the config only."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from schurjax.ablate import WORST_KINDS
from schurjax.studies import coordinates, profiles, replay, stats, versus
from schurjax.studies.protocol import HEADLINE, OFF_CONDITIONS, StudyConfig, keeps_loss, keeps_score, study_key

__all__ = ["profile_comparisons", "tables", "markdown", "summary_rows", "across_seeds", "agreement"]


def profile_comparisons(
    config: StudyConfig, models: Sequence[dict[str, Any]], parts: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Cross-seed (and cross-size, cross-task) profile similarity with its null, for each cell kind."""
    have = [m for m in models if "heldout" in parts.get(m["id"], {})]
    comps = profiles.jobs(have)
    held = {m["id"]: parts[m["id"]]["heldout"] for m in have}
    out = {}
    for kind in profiles.CELL_KINDS:
        out[kind] = profiles.compare(
            study_key(config.seed, "profiles", kind), held, comps, kind=kind, bins=config.bins, draws=config.null_draws
        )
        labels = profiles.task_null(
            study_key(config.seed, "profiles-tasks", kind),
            held,
            have,
            kind=kind,
            bins=config.bins,
            draws=config.null_draws,
        )
        for name, d in labels.items():
            if name in out[kind]:
                out[kind][name].update(d)
    return out


def _nan(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def adjust_table(df: Any, cols: Sequence[str]) -> Any:
    """Add ``<col>_adj`` beside each p-value column of a table: the p-values adjusted within the table (one family of
    tests per column: Holm up to :data:`schurjax.studies.stats.BH_ABOVE` tests, Benjamini-Hochberg above), and
    ``<col>_method`` naming the adjustment and the family size."""
    for col in cols:
        if col not in getattr(df, "columns", ()):
            continue
        p = np.asarray(df[col], np.float64)
        m = int(np.isfinite(p).sum())
        method = stats.family_method(m)
        df[f"{col}_adj"] = stats.adjust_p(p, method)
        df[f"{col}_method"] = f"{method} ({m} tests)"
    return df


def tables(
    config: StudyConfig, models: Sequence[dict[str, Any]], parts: dict[str, dict[str, Any]], prof: dict[str, Any]
) -> dict[str, Any]:
    """The study's tables as pandas DataFrames: ``keep``, ``nonnormal``, ``versus``, ``compression``,
    ``restriction``, ``replay``, ``profiles`` and ``across_seeds``."""
    import pandas as pd

    keep_rows, nn_rows, vs_rows, comp_rows, res_rows, rep_rows = [], [], [], [], [], []
    frag_rows, radius_rows, coord_rows = [], [], []
    for m in models:
        p = parts[m["id"]]
        base = {"model": m["id"], "task": m["task"], "seed": m["seed"], "n_hidden": m["n_hidden"]}
        h, sel = p["heldout"], p["selection"]
        for fam in ("single", "block"):
            k = h[fam].get("keep")
            if k is None:
                continue
            rel_s, drop_s = np.asarray(sel[fam]["rel"]), np.asarray(sel[fam]["drop"])
            rel_h, drop_h = np.asarray(h[fam]["rel"]), np.asarray(h[fam]["drop"])
            for crit in ("loss", "score"):
                if crit == "loss":
                    ks = keeps_loss(rel_s, config.tau, config.loss_sides)
                    kh = keeps_loss(rel_h, config.tau, config.loss_sides)
                else:
                    ks, kh = drop_s <= config.eps, drop_h <= config.eps
                keep_rows.append(
                    {
                        **base,
                        "family": fam,
                        "criterion": crit,
                        "n": k[crit]["n"],
                        "share": k[crit]["share"],
                        "lo": k[crit]["lo"],
                        "hi": k[crit]["hi"],
                        "selection_share": float(ks.mean()) if ks.size else math.nan,
                        "replicated": float(kh[ks].mean()) if ks.any() else math.nan,
                    }
                )
        nn = h["all_nonnormal"]
        nn_rows.append(
            {
                **base,
                "base_loss": h["base_loss"],
                "base_score": h["base_score"],
                **{k: nn[k] for k in ("rel", "rel_lo", "rel_hi", "score", "drop", "drop_lo", "drop_hi", "delta_norm")},
                "base_n_eff": h.get("n_eff", math.nan),
                "n_eff": nn.get("n_eff", math.nan),
                "few_trials": bool(min(_nan(h.get("n_eff")), _nan(nn.get("n_eff"))) < stats.FEW_TRIALS),
            }
        )
        for fam in ("single", "block", "band", "all_nonnormal", "cumulative"):
            for kind in config.control_kinds:
                d = p["controls"].get(fam, {}).get(kind)
                if d is None or (fam, kind) in versus.SAME_EDIT:
                    continue
                vs_rows.append(
                    {
                        **base,
                        "family": fam,
                        "kind": kind,
                        **{
                            k: d[k]
                            for k in (
                                "pairs",
                                "share_more",
                                "share_lo",
                                "share_hi",
                                "median_ratio",
                                "ratio_lo",
                                "ratio_hi",
                                "median_abl",
                                "median_ctrl",
                            )
                        },
                        "removals": d.get("removals", d["pairs"]),
                        "draws": d.get("draws", 1),
                        "test": d.get("test", "paired signed-rank"),
                        "wilcoxon_p": d["wilcoxon"]["p"],
                        "rank_biserial": d["wilcoxon"]["rank_biserial"],
                    }
                )
        for crit in ("loss", "score"):
            c = p.get(f"compression-{crit}")
            if c is None:
                continue
            hv = c["heldout"]
            comp_rows.append(
                {
                    **base,
                    "criterion": crit,
                    "tol": c["tol"],
                    "couplings": c["couplings"],
                    "removed": len(c["removed"]),
                    "share_removed": len(c["removed"]) / max(c["couplings"], 1),
                    "prefix": c["prefix"],
                    "greedy_added": sum(c["greedy_added"]),
                    "selection_rel": c["selection"]["rel"],
                    "selection_drop": c["selection"]["drop"],
                    "heldout_rel": hv["rel"],
                    "heldout_rel_lo": hv["rel_lo"],
                    "heldout_rel_hi": hv["rel_hi"],
                    "heldout_drop": hv["drop"],
                    "heldout_drop_lo": hv["drop_lo"],
                    "heldout_drop_hi": hv["drop_hi"],
                    "heldout_score": hv["score"],
                    "base_score": hv["base_score"],
                    "delta_norm": hv["delta_norm"],
                    "count_ctrl_rel": hv.get("controls", {}).get("matched_count", {}).get("rel", math.nan),
                    "count_ctrl_score": hv.get("controls", {}).get("matched_count", {}).get("score", math.nan),
                    "norm_ctrl_rel": hv.get("controls", {}).get("matched_norm", {}).get("rel", math.nan),
                    "norm_ctrl_score": hv.get("controls", {}).get("matched_norm", {}).get("score", math.nan),
                    "evaluations": c["evaluations"],
                    **_decision_columns(c, crit, config),
                }
            )
        r = p.get("restriction", {})
        for cond in r.get("conditions", []):
            d = r.get(cond, {})
            res_rows.append(
                {
                    **base,
                    "condition": cond,
                    "n": r["n"],
                    "keep": d.get("keep", math.nan),
                    "control": d.get("control", math.nan),
                    "compressed": d.get("compressed", math.nan),
                    "amp_keep": d.get("amp_keep", math.nan),
                    "amp_control": d.get("amp_control", math.nan),
                    "amp_compressed": d.get("amp_compressed", math.nan),
                    "share_amp_more": d.get("share_amp_more", math.nan),
                    "wilcoxon_p": d.get("wilcoxon", {}).get("p", math.nan),
                    "n_subset": r.get("n_subset", r["n"]),
                    "n_removal_filtered": r.get("n_removal_filtered", r["n"]),
                    **{
                        f"{k}{sfx}": d.get(f"{k}{sfx}", math.nan)
                        for sfx in ("_unfiltered", "_removal_filtered")
                        for k in ("keep", "control", "amp_keep", "amp_control", "share_amp_more")
                    },
                    "wilcoxon_p_unfiltered": d.get("wilcoxon_unfiltered", {}).get("p", math.nan),
                }
            )
        fr = p.get("fragility")
        if fr is not None:
            for size, d in fr["sizes"].items():
                for kind in WORST_KINDS:
                    if kind in d:
                        frag_rows.append(
                            {
                                **base,
                                "size": size,
                                "radius": d["radius"],
                                "removal_rel": d["removal_rel"],
                                "kind": kind,
                                "worst_rel": d[kind]["worst_rel"],
                                "median_worst_rel": d[kind]["median_rel"],
                                "selection_worst_rel": d[kind]["selection_worst_rel"],
                            }
                        )
            rr = fr["radius"]
            radius_rows.append(
                {
                    **base,
                    "radius": rr["radius"],
                    "failing": rr["failing"],
                    "henrici": rr["henrici"],
                    "radius_over_henrici": rr["radius_over_henrici"],
                }
            )
        co = p.get("coordinates")
        if co is not None:
            for name, fig in {"default": co["default"], **co["variants"]}.items():
                coord_rows.append(
                    {
                        **base,
                        "coordinates": name,
                        **{h: fig[h] for h in coordinates.HEADLINES},
                        **{f"{h}_move": fig[h] - co["default"][h] for h in coordinates.HEADLINES},
                    }
                )
        rp = p.get("replay")
        if rp is not None:
            ind = rp["individually"]
            hb = h["block"]
            pairs = np.stack([np.asarray(hb["target_block"]), np.asarray(hb["source_block"])], axis=1)
            null_d = replay.chain_null_matched(
                study_key(config.seed, "replay-null-distance", m["id"]),
                pairs,
                rp["links"],
                rp["n_blocks"],
                draws=config.null_draws,
            )
            rep_rows.append(
                {
                    **base,
                    "base_score": rp["base_score"],
                    "couplings": rp["couplings"],
                    "needed_single": ind["single"],
                    "needed_block": ind["block"],
                    "block_pairs": len(h["block"]["rel"]),
                    "needed_bands": " ".join(map(str, ind["band"])),
                    "min_single_score": ind["min_single_score"],
                    "min_block_score": ind["min_block_score"],
                    "core_size": rp["core_size"],
                    "core_score": rp["core_score"],
                    "rest_score": rp["rest_score"],
                    "random_score": rp["random_score"],
                    "links": len(rp["links"]),
                    "chain_links": rp["chain_links"],
                    "chain": "->".join(map(str, rp["chain"])),
                    "null_median": rp["null_median"],
                    "null_p95": rp["null_p95"],
                    "p_null": rp["p"],
                    "null_dist_median": float(np.median(null_d)),
                    "null_dist_p95": float(np.percentile(null_d, 95)),
                    "p_null_dist": float((1 + np.sum(null_d >= rp["chain_links"])) / (1 + null_d.size))
                    if rp["links"]
                    else math.nan,
                    "median_distance": rp["median_distance"],
                    "median_distance_all": rp["median_distance_all"],
                }
            )
    prof_rows = []
    for kind, comps in prof.items():
        for name, d in comps.items():
            prof_rows.append(
                {
                    "cells": kind,
                    "comparison": name,
                    "pairs": d["pairs"],
                    "spearman": d["observed"],
                    "null_mean": d["null_mean"],
                    "null_lo": d["null_lo"],
                    "null_hi": d["null_hi"],
                    "p_null": d["p"],
                    "task_mean": d.get("task_mean", math.nan),
                    "task_lo": d.get("task_lo", math.nan),
                    "task_hi": d.get("task_hi", math.nan),
                    "p_task": d.get("p_task", math.nan),
                }
            )
    out = {
        "keep": pd.DataFrame(keep_rows),
        "nonnormal": pd.DataFrame(nn_rows),
        "versus": adjust_table(pd.DataFrame(vs_rows), ["wilcoxon_p"]),
        "compression": pd.DataFrame(comp_rows),
        "restriction": adjust_table(pd.DataFrame(res_rows), ["wilcoxon_p", "wilcoxon_p_unfiltered"]),
        "replay": adjust_table(pd.DataFrame(rep_rows), ["p_null", "p_null_dist"]),
        "profiles": adjust_table(pd.DataFrame(prof_rows), ["p_null", "p_task"]),
        "fragility": pd.DataFrame(frag_rows),
        "robustness": pd.DataFrame(radius_rows),
        "coordinates": pd.DataFrame(coord_rows),
    }
    out["across_seeds"] = across_seeds(out)
    out.update({k: v for k, v in finetune_tables(models, parts).items() if len(v)})
    return out


def _decision_columns(c: dict[str, Any], crit: str, config: StudyConfig) -> dict[str, Any]:
    """The validated selection's columns of the compression table (NaN / point rule for parts without them)."""
    hv = c["heldout"]
    d = c.get("decision")
    if d is None:  # a part written before the decision existed: the point rule
        ok = keeps_loss(hv["rel"], config.tau) if crit == "loss" else keeps_score(hv["drop"], config.eps)
        return {"holds": bool(ok), "exported": True}
    f = d.get("found") or {}
    return {
        "found": d["found_size"],
        "margin": c.get("margin", {}).get("value", math.nan),
        "validation_rel": c.get("validation", {}).get("rel", math.nan),
        "validation_drop": c.get("validation", {}).get("drop", math.nan),
        "found_rel": f.get("rel", math.nan),
        "found_rel_ucb": f.get("rel_ucb", math.nan),
        "found_drop": f.get("drop", math.nan),
        "found_drop_ucb": f.get("drop_ucb", math.nan),
        "heldout_rel_ucb": hv.get("rel_ucb", math.nan),
        "heldout_drop_ucb": hv.get("drop_ucb", math.nan),
        "loss_ratio": hv.get("loss_ratio", math.nan),
        "decision_trials": d["trials"],
        "holds": bool(d["holds"]),
        "exported": bool(c.get("exported", d["holds"])),
    }


def finetune_tables(models: Sequence[dict[str, Any]], parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``finetune_curve`` (share removed vs held-out figures per method and round) and ``finetune`` (per network:
    the largest accepted set of each method, and the baselines at the one-shot set's count and norm)."""
    import pandas as pd

    curve, side = [], []
    for m in models:
        ft = parts[m["id"]].get("finetune")
        if ft is None:
            continue
        base = {"model": m["id"], "task": m["task"], "seed": m["seed"], "n_hidden": m["n_hidden"]}
        for r in ft["curve"]:
            curve.append(
                {
                    **base,
                    **{k: r.get(k) for k in ("method", "removed", "share", "val", "val_passes")},
                    **{k: r.get(k) for k in ("rel", "rel_ucb", "score", "drop", "drop_ucb", "holds")},
                }
            )
        best: dict[str, dict[str, Any]] = {}
        for r in ft["curve"]:
            ok = r["holds"] and (r["val_passes"] or r.get("search"))  # the given one-shot set: decided alone
            if ok and r["removed"] >= best.get(r["method"], {}).get("removed", -1):
                best[r["method"]] = r
        for method in ("fine-tuned", "one-shot", "magnitude-ft", "magnitude"):
            r = best.get(method)
            side.append(
                {
                    **base,
                    "method": method,
                    "match": "largest accepted",
                    "removed": r["removed"] if r else 0,
                    "share": r["share"] if r else 0.0,
                    "delta_norm": math.nan,
                    "rel": r["rel"] if r else math.nan,
                    "rel_ucb": r["rel_ucb"] if r else math.nan,
                    "score": r["score"] if r else math.nan,
                    "holds": bool(r),
                }
            )
        for r in ft["baselines"]:
            side.append(
                {
                    **base,
                    "method": r["method"],
                    "match": f"one-shot set's {r['match']}" + (f" (rank {r['rank']})" if "rank" in r else ""),
                    "removed": r["removed"],
                    "share": r["share"],
                    "delta_norm": r.get("delta_norm", math.nan),
                    "rel": r["rel"],
                    "rel_ucb": r["rel_ucb"],
                    "score": r["score"],
                    "holds": bool(r["holds"]),
                }
            )
    return {"finetune_curve": pd.DataFrame(curve), "finetune": pd.DataFrame(side)}


def across_seeds(t: dict[str, Any]) -> Any:
    """Per task and size: the median and the range over seeds of the headline figures (never a pooled share)."""
    import pandas as pd

    rows = []
    keep, vs, comp, nn = t["keep"], t["versus"], t["compression"], t["nonnormal"]
    for (task, n), g in nn.groupby(["task", "n_hidden"], sort=False):

        def stat(name: str, x: Any) -> dict[str, float]:
            x = np.asarray(x, np.float64)
            x = x[np.isfinite(x)]
            if not x.size:
                return {f"{name}_median": math.nan, f"{name}_min": math.nan, f"{name}_max": math.nan}
            return {f"{name}_median": float(np.median(x)), f"{name}_min": float(x.min()), f"{name}_max": float(x.max())}

        row: dict[str, Any] = {"task": task, "n_hidden": n, "seeds": len(g)}
        for fam in ("single", "block"):
            for crit in ("score", "loss"):
                sel = keep[(keep.task == task) & (keep.n_hidden == n) & (keep.family == fam) & (keep.criterion == crit)]
                row.update(stat(f"{fam}_keep_{crit}", sel.share))
        row.update(stat("nonnormal_drop", g["drop"]))
        row.update(stat("nonnormal_rel", g["rel"]))
        if len(vs):
            for kind in sorted(set(vs.kind)):
                sel = vs[(vs.task == task) & (vs.n_hidden == n) & (vs.family == "single") & (vs.kind == kind)]
                row.update(stat(f"single_vs_{kind}_share", sel.share_more))
                row.update(stat(f"single_vs_{kind}_ratio", sel.median_ratio))
        for crit in ("loss", "score"):
            sel = comp[(comp.task == task) & (comp.n_hidden == n) & (comp.criterion == crit)] if len(comp) else comp
            if len(sel):
                row.update(stat(f"compressed_{crit}_share", sel.share_removed))
                row.update(stat(f"compressed_{crit}_heldout_drop", sel.heldout_drop))
                row.update(stat(f"compressed_{crit}_heldout_rel", sel.heldout_rel))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_rows(
    config: StudyConfig, models: Sequence[dict[str, Any]], parts: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per model for ``table.csv``: the headline figures."""
    rows = []
    for m in models:
        p = parts[m["id"]]
        h = p["heldout"]
        row: dict[str, Any] = {
            "model": m["id"],
            "task": m["task"],
            "seed": m["seed"],
            "n_hidden": m["n_hidden"],
            "base_loss": h["base_loss"],
            "base_score": h["base_score"],
        }
        for fam in ("single", "block"):
            for crit in ("score", "loss"):
                k = h[fam].get("keep", {}).get(crit, {})
                for f in ("share", "lo", "hi"):
                    row[f"{fam}_keep_{crit}_{f}"] = _nan(k.get(f))
        nn = h["all_nonnormal"]
        row.update(nonnormal_rel=nn["rel"], nonnormal_score=nn["score"])
        for kind, d in p["controls"].get("single", {}).items():
            row[f"single_vs_{kind}_share"] = d["share_more"]
            row[f"single_vs_{kind}_ratio"] = d["median_ratio"]
            row[f"single_vs_{kind}_p"] = d["wilcoxon"]["p"]
        for crit in ("loss", "score"):
            c = p.get(f"compression-{crit}")
            if c is not None:
                row[f"compressed_{crit}_removed"] = len(c["removed"])
                row[f"compressed_{crit}_heldout_rel"] = c["heldout"]["rel"]
                row[f"compressed_{crit}_heldout_score"] = c["heldout"]["score"]
        rp = p.get("replay")
        row["replay_needed_single"] = rp["individually"]["single"] if rp else math.nan
        row["replay_core_size"] = rp["core_size"] if rp else math.nan
        row["replay_chain_links"] = rp["chain_links"] if rp else math.nan
        rows.append(row)
    return rows


def agreement(pr: Any, *, alpha: float = 0.05) -> list[str]:
    """One plain sentence per within-task comparison (seeds of one size, or sizes): do the profiles agree beyond
    the shuffled null, and beyond groups of networks drawn from every task (the task-label test, ``p_task``)? The
    adjusted p-values (``p_null_adj``, ``p_task_adj``, :func:`adjust_table`) are used where the table has them."""
    out = []
    adj = "p_null_adj" in getattr(pr, "columns", ())
    pw = "adjusted p" if adj else "p"
    for cells in sorted(set(pr.cells)):
        sub = pr[pr.cells == cells].set_index("comparison")
        for name, r in sub.iterrows():
            if name.startswith("between tasks"):
                continue
            rho = _nan(r.spearman)
            p = _nan(getattr(r, "p_null_adj", r.p_null))
            pt = _nan(getattr(r, "p_task_adj", getattr(r, "p_task", math.nan)))
            if not math.isfinite(rho):
                continue
            ref = _nan(getattr(r, "task_mean", math.nan))
            if not p < alpha:
                verdict = "no agreement beyond the shuffled null"
            elif not math.isfinite(pt):
                verdict = "agree beyond the shuffled null"
            elif pt < alpha:
                verdict = (
                    f"agree beyond the null and beyond networks of any task (random groups: ρ {ref:.2f}, {pw} {_p(pt)})"
                )
            else:
                verdict = (
                    f"agree beyond the null, but no more than networks of any task do (random groups: "
                    f"ρ {ref:.2f}, {pw} {_p(pt)})"
                )
            out.append(f"{_md(name)}, {cells} cells: ρ {rho:.2f} ({pw} {_p(p)}): {verdict}.")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------


def _pct(x: Any, digits: int = 0) -> str:
    v = _nan(x)
    return "–" if not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def _ci(x: Any, lo: Any, hi: Any, digits: int = 0) -> str:
    v, a, b = _nan(x), _nan(lo), _nan(hi)
    if not math.isfinite(v):
        return "–"
    if not (math.isfinite(a) and math.isfinite(b)):
        return _pct(v, digits)
    return f"{100 * v:.{digits}f}% [{100 * a:.{digits}f}, {100 * b:.{digits}f}]"


def _g(x: Any, fmt: str = ".3g") -> str:
    v = _nan(x)
    return "–" if not math.isfinite(v) else format(v, fmt)


def _rel(x: Any) -> str:
    v = _nan(x)
    if not math.isfinite(v):
        return "–"
    if abs(v) >= 10:
        return f"x{1 + v:.3g}"
    return f"{100 * v:+.1f}%"


def _p(x: Any) -> str:
    v = _nan(x)
    if not math.isfinite(v):
        return "–"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.3f}"


def _range(row: Any, name: str, fmt: Any = _pct) -> str:
    med, lo, hi = row.get(f"{name}_median"), row.get(f"{name}_min"), row.get(f"{name}_max")
    if not math.isfinite(_nan(med)):
        return "–"
    return f"{fmt(med)} ({fmt(lo)}–{fmt(hi)})"


def _text(x: Any) -> str:
    return x if isinstance(x, str) and x else "–"


def _finetune_section(t: dict[str, Any]) -> list[str]:
    """Section 4b: prune-and-fine-tune against one-shot, magnitude pruning, random couplings and low rank."""
    ft, curve = t.get("finetune"), t.get("finetune_curve")
    if ft is None or not len(ft):
        return []
    L = [
        "### 4b. Prune and fine-tune in Schur coordinates, against magnitude pruning and low rank",
        "",
        "Loss criterion, decided as above on the held-out batch. *one-shot*: the loss-criterion set of the search "
        "above (then prefixes of the importance order beyond it); *fine-tuned*: from that set, rounds that prune "
        "the least important kept couplings, then Adam on fresh trials with the removed couplings pinned at zero, "
        "Q fixed, the spectrum and the input/readout maps frozen (`schurjax.compress`); *magnitude(-ft)*: the "
        "smallest entries of W zeroed (one-shot / with the same fine-tuning) at the same counts; *random "
        "couplings*, *low rank* (rank-r truncation of W, counted as "
        "n² - 2nr numbers saved): at the count and at the ‖ΔW‖_F of the one-shot set.",
        "",
    ]
    rows = [
        [
            r.model,
            r.method,
            r.match,
            str(int(r.removed)),
            _g(r.delta_norm, ".3g"),
            f"{_rel(r.rel)} (≤ {_rel(r.rel_ucb)})",
            _g(r.score, ".3f"),
            "yes" if r.holds else "no",
        ]
        for r in ft.itertuples()
    ]
    L += [_table(["model", "method", "at", "removed", "‖ΔW‖_F", "held-out Δloss/loss", "score", "holds"], rows), ""]
    for mid in dict.fromkeys(ft.model):
        sub = ft[(ft.model == mid) & (ft.match == "largest accepted")].set_index("method")
        a, b = int(sub.loc["fine-tuned", "removed"]), int(sub.loc["one-shot", "removed"])
        verdict = "more than" if a > b else ("as many as" if a == b else "fewer than")
        L += [
            f"- {_md(mid)}: fine-tuned removes {a} couplings, {verdict} one-shot ({b}), at the same held-out criterion."
        ]
    if curve is not None and len(curve):
        L += ["", "Curve (share removed → held-out Δloss/loss, per method):", ""]
        for (mid, method), g in curve.groupby(["model", "method"], sort=False):
            pts = ", ".join(f"{_pct(r.share)} → {_rel(r.rel)}" for r in g.itertuples())
            L += [f"- {_md(mid)} {method}: {pts}"]
    return L + [""]


def _md(x: Any) -> str:
    """A value from the study's inputs (a model id, a task name) as Markdown text: nothing in it opens an HTML tag
    (``<img ...>`` is written ``&lt;img ...>``; ``< 0.5`` stays) or splits a table cell (``|`` is ``\\|``)."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(x)).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(map(_md, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


class ReportData(NamedTuple):
    """What every section of the report reads: the config, the model records, their parts, the cross-seed profile
    comparisons and the tables."""

    config: StudyConfig
    models: Sequence[dict[str, Any]]
    parts: dict[str, dict[str, Any]]
    prof: dict[str, Any]
    t: dict[str, Any]


def _section_setup(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    tau, eps = config.tau, config.eps
    L: list[str] = []
    sizes = sorted({int(m["n_hidden"]) for m in models})
    tasks = list(dict.fromkeys(_md(m["task"]) for m in models))
    L += [
        "# Schur-coupling study",
        "",
        "Which directed nonnormal Schur couplings of trained tanh RNNs can be removed without hurting the task, "
        "how that compares with random edits of the same size, how much can go at once, what the copy replay "
        "needs, whether the invariance holds off the task distribution, and whether seeds agree "
        "(method: S. Dräger, *Task-Restricted Symmetries in Recurrent Weight Space*, arXiv:2606.18457).",
        "",
        f"Models: {len(models)} ({', '.join(tasks)}; seeds {', '.join(map(str, config.seeds))}; "
        f"n = {', '.join(map(str, sizes))}). Trials: {config.trials} in the selection batch and {config.trials} in "
        f"a held-out batch drawn from another key; every figure below is on the held-out batch. Intervals: 95 % "
        f"BCa intervals from {config.bootstrap} bootstrap resamples of the held-out trials and, where removals are "
        f"compared with controls, of the removals with their {config.control_draws} control draws each (so they "
        "cover trials, control draws and the subset of removals). Every p-value in a sentence is adjusted "
        "within its table's family of tests (Holm for up to "
        f"{stats.BH_ABOVE} tests, Benjamini-Hochberg above; the tables hold raw and adjusted p). Root seed "
        f"{config.seed}{' (quick preset)' if config.quick else ''}.",
        "",
        "**Criteria.** A removal *keeps the score* when the task score (accuracy for flip-flop and context, R² "
        f"for copy and sine) drops by at most ε = {eps:g}; it *keeps the loss* when "
        + (
            f"Δloss / loss ≤ τ = {tau:g} (one-sided: a removal that lowers the loss keeps it). "
            if config.loss_sides == "one"
            else f"|Δloss| / loss ≤ τ = {tau:g} (two-sided). "
        )
        + "**Headlines use the score criterion**: it is in the task's own units, so "
        "it means the same for every network of a task, while the loss criterion is relative to each network's "
        "base loss and is therefore far stricter for networks with a near-zero loss (copy, sine) than for "
        "networks whose loss is mostly irreducible trial noise (context). Both are reported everywhere.",
        "",
    ]
    assert HEADLINE == "score"
    return L


def _section_headline(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    a = t["across_seeds"]
    L += ["## Headline (median over seeds, range in parentheses)", ""]
    kinds = [k for k in config.control_kinds]
    head = [
        "task",
        "n",
        "seeds",
        "single keep (score)",
        "single keep (loss)",
        "block keep (score)",
        "all-nonnormal score drop",
        *[f"single > {k}" for k in kinds],
        "compressed (loss)",
        "compressed (score)",
    ]
    rows = []
    for _, r in a.iterrows():
        rows.append(
            [
                r["task"],
                r["n_hidden"],
                r["seeds"],
                _range(r, "single_keep_score"),
                _range(r, "single_keep_loss"),
                _range(r, "block_keep_score"),
                _range(r, "nonnormal_drop", lambda x: _g(x, ".3f")),
                *[_range(r, f"single_vs_{k}_share") for k in kinds],
                _range(r, "compressed_loss_share"),
                _range(r, "compressed_score_share"),
            ]
        )
    L += [
        _table(head, rows),
        "",
        "*single > kind*: share of (single-coupling removal, random control of that kind at equal ‖ΔW‖_F) pairs "
        "in which the removal changes the loss more. *compressed*: share of the couplings removed together by "
        "the compression search under that criterion.",
        "",
    ]

    return L


def _section_keep(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    k = t["keep"]
    L += [
        "## 1. Loss-preserving shares per network",
        "",
        "Share of single-coupling and block-coupling removals that keep the score / the loss on the held-out "
        "batch, with the bootstrap interval; *replicated*: of the removals that kept the criterion on the "
        "selection batch, the share that keep it on the held-out batch.",
        "",
    ]
    rows = []
    for m in models:
        sel = k[k.model == m["id"]]
        cells = []
        for fam in ("single", "block"):
            for crit in ("score", "loss"):
                r = sel[(sel.family == fam) & (sel.criterion == crit)]
                cells.append(_ci(r.share.iloc[0], r.lo.iloc[0], r.hi.iloc[0]) if len(r) else "–")
        rs = sel[(sel.family == "single") & (sel.criterion == "score")]
        rl = sel[(sel.family == "single") & (sel.criterion == "loss")]
        rep = [_pct(r.replicated.iloc[0]) if len(r) else "–" for r in (rs, rl)]
        cells.append(" / ".join(rep))
        n_single = int(sel[(sel.family == "single")].n.iloc[0]) if len(sel[sel.family == "single"]) else 0
        rows.append([m["id"], n_single, *cells])
    L += [
        _table(
            [
                "model",
                "couplings",
                "single (score)",
                "single (loss)",
                "block (score)",
                "block (loss)",
                "replicated (score / loss)",
            ],
            rows,
        ),
        "",
    ]

    return L


def _section_nonnormal(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    nn = t["nonnormal"]
    L += ["## 2. Removing every nonnormal coupling (T → D)", ""]
    rows = [
        [
            r.model,
            _g(r.base_loss, ".3g"),
            f"{_g(r.base_score, '.3f')} → {_g(r.score, '.3f')}",
            f"{_g(r.drop, '.3f')} [{_g(r.drop_lo, '.3f')}, {_g(r.drop_hi, '.3f')}]",
            f"{_rel(r.rel)} [{_rel(r.rel_lo)}, {_rel(r.rel_hi)}]",
            _g(r.delta_norm, ".3g"),
            f"{_g(getattr(r, 'base_n_eff', math.nan), '.0f')} / {_g(getattr(r, 'n_eff', math.nan), '.0f')}"
            + (" ⚠" if getattr(r, "few_trials", False) else ""),
        ]
        for r in nn.itertuples()
    ]
    L += [
        _table(["model", "base loss", "score", "score drop", "Δloss / loss", "‖ΔW‖_F", "effective trials"], rows),
        "",
        "*effective trials*: (Σ w)² / Σ w² of the per-trial base losses / of the per-trial loss changes, i.e. how "
        f"many trials the loss figure rests on; ⚠ below {stats.FEW_TRIALS} (a few trials carry the loss, so its "
        "interval is less reliable).",
        "",
    ]

    return L


def _section_versus(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    vs = t["versus"]
    L += [
        "## 3. Schur removals vs random edits of equal ‖ΔW‖_F",
        "",
        f"Per family and control kind (at most {config.control_max} removals per family, a random subset; "
        f"{config.control_draws} control draws per removal): *more*: share of (removal, control) pairs in which the "
        "Schur removal changes the loss more than its control [BCa interval over trials, removals and control "
        "draws]; *ratio*: median of |Δloss(removal)| / |Δloss(control)| [interval]; *p*: signed-rank test of "
        "|Δloss(removal)| against the mean |Δloss| of its controls, paired over removals (for the single "
        "all-nonnormal removal: a *one-sample* signed-rank test of |Δloss(T → D)| − |Δloss(control)| over its 16 "
        "controls); *p adj*: adjusted within the table. matched_norm: dense Gaussian edit of W; "
        "rank_matched: a random edit of W of the removal's rank and singular values (rank 1 for a single "
        "coupling), so that low rank alone cannot make a removal look gentle; schur_rank1: a random rank-1 edit "
        "u vᵀ with u and v inside the removal's target and source invariant subspaces (for a single coupling "
        "between two real modes this is the coupling's own entry with a random sign); "
        "matched_count: as many random couplings removed; coupling_noise: Gaussian noise on the coupling entries "
        "only (spectrum kept). The all-nonnormal removal is paired with 16 controls of each kind (not with "
        "matched_count, which would remove every coupling too: the same edit); *cumulative*: prefixes of the "
        "couplings ordered by importance on the selection batch (least important first). For single couplings, "
        "matched_count removes one other coupling drawn at random, so about 50 % *more* is expected by "
        "construction; it says something for the families that pick structured sets (block, band, cumulative).",
        "",
    ]
    for fam in ("single", "block", "band", "all_nonnormal", "cumulative"):
        sub = vs[vs.family == fam] if len(vs) else vs
        if not len(sub):
            continue
        rows = [
            [
                r.model,
                r.kind,
                r.pairs,
                _ci(r.share_more, r.share_lo, r.share_hi),
                f"{_g(r.median_ratio)} [{_g(r.ratio_lo)}, {_g(r.ratio_hi)}]",
                _p(r.wilcoxon_p),
                _p(getattr(r, "wilcoxon_p_adj", math.nan)),
            ]
            for r in sub.itertuples()
        ]
        L += [f"**{fam}**", "", _table(["model", "control", "pairs", "more", "ratio", "p", "p adj"], rows), ""]
    if len(vs):
        L += [f"Adjustment: {vs.wilcoxon_p_method.iloc[0]} over this table.", ""]
        for kind in dict.fromkeys(vs.kind):
            sub = vs[(vs.family == "single") & (vs.kind == kind)]
            if len(sub):
                sig = sub[(sub.wilcoxon_p_adj < 0.05) & (sub.share_more < 0.5)]
                L += [
                    f"- single vs {kind}: the removal changes the loss less than its control (adjusted p < 0.05) in "
                    f"{len(sig)} of {len(sub)} networks."
                ]
        L += [""]

    return L


def _section_compression(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    c = t["compression"]
    margin = (
        f"at {1 - config.margin:g} times each criterion's threshold (margin {config.margin:g}, given)"
        if config.margin is not None
        else "at a margin set from the measured gap between the selection and a validation batch (when the found "
        "set fails on the validation batch, the search reruns at (1 - gap/threshold) times the threshold)"
    )
    L += [
        "## 4. Compression: couplings removed together",
        "",
        f"The search (on the selection batch, {margin}): couplings ordered by single-removal importance (least "
        f"first); the longest prefix whose joint removal keeps the criterion, by batched bisection ({16} prefix "
        f"lengths per round); then up to {config.greedy_passes} greedy passes, each trying the next "
        f"{config.greedy_candidates} untried couplings one by one on top of the set and adding the longest "
        "passing prefix of those that pass. The decision rests on a third, held-out batch of "
        f"{config.decision_size} trials from its own key: a set is *accepted* when the one-sided 95 % upper "
        "bound (bootstrap over trials) of its Δloss/loss is within tau (loss criterion), or that of its score "
        "drop within eps (score criterion: the lower bound of the score within eps of the base score). A set that "
        "fails is shrunk (the couplings of largest single-removal importance put back first) to the longest "
        "prefix that holds. The accepted set is shown next to random removals of as many couplings (*count "
        "ctrl*, median of 8) and dense edits of the same norm (*norm ctrl*). *holds*: the bound holds for a "
        "non-empty set; only those are exported, to `compressed/<model>-<criterion>.eqx` (and `.pt`), with the "
        "criterion, the held-out figures and bound, the trials and keys, the loss ratio and the removed couplings "
        "in the metadata. Score-criterion sets may raise the loss: their loss ratio is in the table.",
        "",
    ]
    if len(c):
        for crit in ("loss", "score"):
            hs = list(c.holds[c.criterion == crit])
            if hs:
                L += [
                    f"- {crit} criterion: the found set holds on the held-out batch in {sum(hs)} of {len(hs)} networks."
                ]
        L += [""]
    get = lambda r, k: getattr(r, k, math.nan)  # noqa: E731
    rows = [
        [
            r.model,
            r.criterion,
            f"{r.removed}/{r.couplings} ({_pct(r.share_removed)})",
            f"{_g(get(r, 'found'), '.0f')} (margin {_g(get(r, 'margin'), '.2f')})",
            f"{_rel(r.selection_rel)} / {_g(r.selection_drop, '.3f')}",
            f"{_rel(get(r, 'validation_rel'))} / {_g(get(r, 'validation_drop'), '.3f')}",
            f"{_rel(r.heldout_rel)} (≤ {_rel(get(r, 'heldout_rel_ucb'))})",
            f"{_g(r.base_score, '.3f')} → {_g(r.heldout_score, '.3f')} (drop {_g(r.heldout_drop, '.3f')} "
            f"≤ {_g(get(r, 'heldout_drop_ucb'), '.3f')})",
            _g(get(r, "loss_ratio"), ".3f"),
            f"{_rel(r.count_ctrl_rel)} / {_g(r.count_ctrl_score, '.3f')}",
            f"{_rel(r.norm_ctrl_rel)} / {_g(r.norm_ctrl_score, '.3f')}",
            "yes" if r.holds else "no",
        ]
        for r in c.itertuples()
    ]
    L += [
        _table(
            [
                "model",
                "criterion",
                "accepted",
                "found (margin)",
                "selection Δloss/loss / drop",
                "validation",
                "held-out Δloss/loss (95 % bound)",
                "held-out score",
                "loss ratio",
                "count ctrl Δloss / score",
                "norm ctrl Δloss / score",
                "holds",
            ],
            rows,
        ),
        "",
    ]
    failed = [r for r in c.itertuples() if not r.holds] if len(c) else []
    if failed:
        L += ["Not exported (no non-empty set holds by the bound; the found set's held-out figures):", ""]
        for r in failed:
            L += [
                f"- {r.model} ({r.criterion}): found {_g(get(r, 'found'), '.0f')} couplings, Δloss/loss "
                f"{_rel(get(r, 'found_rel'))} (bound {_rel(get(r, 'found_rel_ucb'))}), score drop "
                f"{_g(get(r, 'found_drop'), '.3f')} (bound {_g(get(r, 'found_drop_ucb'), '.3f')})"
            ]
        L += [""]
    L += _finetune_section(t)

    return L


def _section_replay(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    rp = t["replay"]
    if len(rp):
        L += [
            "## 5. What the copy replay needs",
            "",
            f"A removal *breaks* the replay when the replay's R² on the held-out batch falls below "
            f"{config.replay_r2:g}. *alone*: single couplings / block pairs whose removal alone breaks it (lowest "
            "R² among them in parentheses) and the bands (block distances) that do. *core*: the shortest prefix of "
            "the couplings ordered by importance on the selection batch (most important first) whose joint "
            "removal breaks the replay there; held-out R² after removing the core, after removing every coupling "
            "but the core, and (median of 8) after removing as many random couplings. *line*: the longest "
            "feed-forward line (directed path b → a through the core's block links, blocks numbered by "
            f"descending |λ|) against a null of as many links drawn among all coupled block pairs "
            f"({config.null_draws} draws; median / 95th percentile; *p*: share at least as long, adjusted within "
            "the table); *matched*: the "
            "same null with each drawn link at the block distance of one of the core's links (the core's links "
            "are shorter than average, and short links chain more easily); *distance*: median block distance of "
            "the core's links (of all coupled pairs).",
            "",
        ]
        rows = [
            [
                r.model,
                _g(r.base_score, ".4f"),
                f"{r.needed_single} ({_g(r.min_single_score, '.2f')}) / {r.needed_block} "
                f"({_g(r.min_block_score, '.2f')}); bands {_text(r.needed_bands)}",
                f"{r.core_size}/{r.couplings}",
                f"{_g(r.core_score, '.3f')} / {_g(r.rest_score, '.3f')} / {_g(r.random_score, '.3f')}",
                f"{r.links}; {r.chain_links} ({r.chain})",
                f"{_g(r.null_median)} / {_g(r.null_p95)}",
                _p(getattr(r, "p_null_adj", r.p_null)),
                f"{_g(r.null_dist_median)} / {_g(r.null_dist_p95)}",
                _p(getattr(r, "p_null_dist_adj", r.p_null_dist)),
                f"{_g(r.median_distance)} ({_g(r.median_distance_all)})",
            ]
            for r in rp.itertuples()
        ]
        L += [
            _table(
                [
                    "model",
                    "R²",
                    "alone: single / block; bands",
                    "core",
                    "R² without core / with only core / random",
                    "links; line (blocks)",
                    "null",
                    "p",
                    "matched null",
                    "p (matched)",
                    "distance",
                ],
                rows,
            ),
            "",
        ]

    return L


def _section_restriction(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    rs = t["restriction"]
    if len(rs):
        L += [
            "## 6. Task restriction: output changes off the task distribution",
            "",
            f"For a random subset of at most {config.restriction_max} single removals and their matched-norm "
            "controls, filtered alike: the headline columns use the pairs in which *both* the removal and its "
            "control keep the loss on the held-out batch (*removals*: their number); the same comparison over every "
            "pair of the subset is in the last column (*unfiltered*). The figures: the median output change "
            "relative to the unablated network's own output (mean squared difference / mean squared output) on the "
            "held-out trials (*task*) and off the distribution (*long*: trials twice as long; *amplitude*: inputs "
            "x1.5; *noise*: white noise of the task's input variance). *amp*: median of off-distribution over "
            "on-task output change per removal (removal / control); *more*: share of pairs where the removal's "
            "amplification exceeds its control's; *p*: paired Wilcoxon test of the log amplifications, adjusted "
            "within the table.",
            "",
        ]
        rows = []
        for mid in rs.model.unique():
            sub = rs[rs.model == mid].set_index("condition")
            if "task" not in sub.index:
                continue
            row = [mid, int(sub.n.iloc[0]), f"{_g(sub.loc['task', 'keep'])} / {_g(sub.loc['task', 'control'])}"]
            for cond in OFF_CONDITIONS:
                if cond in sub.index:
                    s = sub.loc[cond]
                    row.append(
                        f"{_g(s.keep)} / {_g(s.control)}; amp {_g(s.amp_keep)} / {_g(s.amp_control)}; "
                        f"more {_pct(s.share_amp_more)}, p {_p(getattr(s, 'wilcoxon_p_adj', s.wilcoxon_p))}"
                    )
                else:
                    row.append("–")
            unf = [
                f"{cond}: amp {_g(sub.loc[cond].get('amp_keep_unfiltered'))} / "
                f"{_g(sub.loc[cond].get('amp_control_unfiltered'))}"
                for cond in OFF_CONDITIONS
                if cond in sub.index
            ]
            comp = sub.loc["task", "compressed"]
            row.append(
                " / ".join(_g(sub.loc[cc, "compressed"]) for cc in ("task", *OFF_CONDITIONS) if cc in sub.index)
                if math.isfinite(_nan(comp))
                else "–"
            )
            row.append(f"{int(_nan(sub.n_subset.iloc[0]))} pairs; " + "; ".join(unf) if "n_subset" in sub else "–")
            rows.append(row)
        L += [
            _table(
                [
                    "model",
                    "removals",
                    "task: removal / control",
                    *OFF_CONDITIONS,
                    "compressed (task / long / amplitude / noise)",
                    "unfiltered",
                ],
                rows,
            ),
            "",
        ]

    return L


def _section_profiles(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    pr = t["profiles"]
    if len(pr):
        L += [
            "## 7. Do seeds need the same couplings? Basis-free profiles",
            "",
            f"Each coupling is placed in a cell by its spectral context: *modulus*: the |λ| quantile bins "
            f"({config.bins} per axis, per network) of its source and target blocks; *distance*: its block "
            f"distance relative to the number of blocks ({2 * config.bins} bins). A network's profile is the mean "
            "importance rank (0 least, 1 most important, by held-out |Δloss| / loss) of its couplings per cell. "
            "*ρ*: mean Spearman correlation of profiles over the pairs compared; *null*: the same with importance "
            f"shuffled among each network's couplings ({config.null_draws} draws; mean and 95 % range); *p*: "
            "share of null draws at least as large, adjusted within the table; *any task*: the same mean over "
            "groups of as many networks "
            "drawn at random from every task of the same sizes (a permutation test of the task labels; mean, 95 % "
            "range and *p*). Profiles of any two trained networks share some structure, so only the second test "
            "says that seeds of one task agree *more* than networks in general.",
            "",
        ]
        rows = [
            [
                r.comparison,
                r.cells,
                r.pairs,
                _g(r.spearman, ".2f"),
                f"{_g(r.null_mean, '.2f')} [{_g(r.null_lo, '.2f')}, {_g(r.null_hi, '.2f')}]",
                _p(getattr(r, "p_null_adj", r.p_null)),
                (
                    f"{_g(r.task_mean, '.2f')} [{_g(r.task_lo, '.2f')}, {_g(r.task_hi, '.2f')}]"
                    if math.isfinite(_nan(r.task_mean))
                    else "–"
                ),
                _p(getattr(r, "p_task_adj", r.p_task)),
            ]
            for r in pr.sort_values(["comparison", "cells"]).itertuples()
        ]
        L += [_table(["comparison", "cells", "pairs", "ρ", "null", "p", "any task", "p (any task)"], rows), ""]
        L += ["In words (adjusted p < 0.05):", ""]
        L += [f"- {line}" for line in agreement(pr)] + [""]
    return L


def _section_fragility(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    fr, rob = t.get("fragility"), t.get("robustness")
    if fr is not None and len(fr):
        L += [
            "## 8. The worst edit of the same size",
            "",
            "Random controls sample directions; here the edit of the same ‖ΔW‖_F that raises the loss most, found "
            f"by projected gradient ascent ({config.worst_starts} starts, {config.worst_steps} steps) on the "
            "selection batch and judged on the held-out batch: at the size of T → D (*dense*: any edit; "
            "*coupling*: edits of the coupling entries only, spectrum kept; *rank1*: u vᵀ) and at the median size "
            "of a single-coupling removal (rank-1 edits, the removal's rank). *removal*: the Schur removal's "
            "Δloss / loss at that size (median over single removals). *radius*: the largest ‖ΔW‖_F at which the "
            "worst dense edit still keeps the loss criterion on the selection batch (bisection, "
            f"{config.radius_iters} searches; *< r*: every radius tried failed, the smallest being r), and as a "
            "fraction of ‖N‖_F (the size of T → D).",
            "",
        ]
        rows = []
        for mid in dict.fromkeys(fr.model):
            sub = fr[fr.model == mid]
            cells = [mid]
            for size in ("all_nonnormal", "single_median"):
                s = sub[sub["size"] == size]
                if not len(s):
                    cells.append("–")
                    continue
                worst = "; ".join(f"{r.kind} {_rel(r.worst_rel)}" for r in s.itertuples())
                cells.append(f"‖ΔW‖ {_g(s.radius.iloc[0])}: removal {_rel(s.removal_rel.iloc[0])}; worst {worst}")
            if rob is not None and len(rob[rob.model == mid]):
                r = rob[rob.model == mid].iloc[0]
                if r.radius > 0:
                    cells.append(f"{_g(r.radius)} ({_g(r.radius_over_henrici)} × ‖N‖_F)")
                else:  # every radius tried failed: the radius lies below the smallest one
                    cells.append(f"< {_g(r.failing)} (< {_g(_nan(r.failing) / _nan(r.henrici))} × ‖N‖_F)")
            else:
                cells.append("–")
            rows.append(cells)
        L += [_table(["model", "size of T → D", "median size of a single removal", "robustness radius"], rows), ""]
    return L


def _section_coordinates(d: ReportData) -> list[str]:
    config, models, parts, prof, t = d
    L: list[str] = []
    co = t.get("coordinates")
    if co is not None and len(co):
        L += [
            "## 9. Sensitivity to the coordinates",
            "",
            f"The headline figures rerun on {min(config.trials, config.coordinate_trials)} held-out trials (the "
            "default coordinates too, on the same trials) in other real Schur bases of the same W: the other "
            "mode orders (*real*: descending Re λ; *angle*; *unsorted*: LAPACK's own order) and "
            f"{config.rotations} random rotation(s) inside every 2×2 block (the basis of a complex pair is fixed "
            "only up to a rotation). *move*: the largest change from the default coordinates over those bases, "
            "per network; a claim survives when its figure moves less than its own interval's half-width.",
            "",
        ]
        rows = []
        for mid in dict.fromkeys(co.model):
            sub = co[(co.model == mid) & (co.coordinates != "default")]
            d = co[(co.model == mid) & (co.coordinates == "default")].iloc[0]
            cells = [mid]
            for h in coordinates.HEADLINES:
                mv = np.nanmax(np.abs(sub[f"{h}_move"].astype(float))) if len(sub) else math.nan
                fmt = _pct if "keep" in h else (_rel if h == "nonnormal_rel" else (lambda x: _g(x, ".3f")))
                cells.append(f"{fmt(d[h])} (move {fmt(mv)})")
            rows.append(cells)
        L += [_table(["model", *coordinates.HEADLINES], rows), ""]
        k = t["keep"]
        for fam, crit in (("single", "score"), ("single", "loss"), ("block", "score")):
            h = f"{fam}_keep_{crit}"
            moves, halfw = [], []
            for mid in dict.fromkeys(co.model):
                sub = co[(co.model == mid) & (co.coordinates != "default")]
                kk = k[(k.model == mid) & (k.family == fam) & (k.criterion == crit)]
                if len(sub) and len(kk):
                    moves.append(float(np.nanmax(np.abs(sub[f"{h}_move"].astype(float)))))
                    halfw.append(float(kk.hi.iloc[0] - kk.lo.iloc[0]) / 2)
            if moves:
                inside = sum(m <= w for m, w in zip(moves, halfw, strict=True))
                L += [
                    f"- {fam} keep share ({crit}): moves by at most {_pct(max(moves), 1)} (median "
                    f"{_pct(float(np.median(moves)), 1)}) across bases; within its interval's half-width in "
                    f"{inside} of {len(moves)} networks."
                ]
        L += [""]
    L += ["Tables as CSV: `tables/`; per-model summary: `table.csv`; figure: `figure.png`.", ""]
    return L


_SECTIONS = (
    _section_setup,
    _section_headline,
    _section_keep,
    _section_nonnormal,
    _section_versus,
    _section_compression,
    _section_replay,
    _section_restriction,
    _section_profiles,
    _section_fragility,
    _section_coordinates,
)
"""The report's sections, in order: each ``(ReportData) -> lines``."""


def markdown(
    config: StudyConfig,
    models: Sequence[dict[str, Any]],
    parts: dict[str, dict[str, Any]],
    prof: dict[str, Any],
    t: dict[str, Any],
) -> str:
    """The report: setup and criteria, the across-seed headline, then one section per question."""
    d = ReportData(config, models, parts, prof, t)
    return "\n".join(line for section in _SECTIONS for line in section(d))
