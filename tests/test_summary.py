"""Summary statistics of a sweep table: per-model keep shares and the per-kind control comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from schurjax.sweeps import summary


def test_summarize_matches_hand_computation():
    # model a: 4 singles (rel 0.01, 0.2, -0.03, 1.0), all_nonnormal rel 2.0, one control per single
    rel = [0.01, 0.2, -0.03, 1.0]
    ctrl = [0.5, 0.1, 0.0, 0.2]
    rows = [
        {
            "row_id": k,
            "model": "a",
            "task": "copy",
            "model_seed": 0,
            "family": "single",
            "control_of": None,
            "rel_delta_loss": r,
            "delta_loss": r * 2,
            "base_loss": 2.0,
            "base_score": 1.0,
        }
        for k, r in enumerate(rel)
    ]
    rows.append(
        {
            "row_id": 4,
            "model": "a",
            "task": "copy",
            "model_seed": 0,
            "family": "all_nonnormal",
            "control_of": None,
            "rel_delta_loss": 2.0,
            "delta_loss": 4.0,
            "base_loss": 2.0,
            "base_score": 1.0,
            "score": 0.625,
        }
    )
    rows += [
        {
            "row_id": 5 + k,
            "model": "a",
            "task": "copy",
            "model_seed": 0,
            "family": "control",
            "control_of": k,
            "rel_delta_loss": c,
            "delta_loss": c * 2,
            "base_loss": 2.0,
            "base_score": 1.0,
        }
        for k, c in enumerate(ctrl)
    ]
    (s,) = summary.summarize(rows, criterion="loss")
    df = pd.DataFrame(rows).astype({"control_of": "Int64"})
    assert summary.summarize(df, criterion="loss") == [s]  # a DataFrame reads the same
    assert s["n_single"] == 4
    assert s["single_keep"] == pytest.approx(0.5)  # 0.01, -0.03 <= 0.05 (one-sided)
    assert [m["cost"] for m in s["most_needed"]] == [1.0, 0.2, 0.01]
    assert math.isnan(s["block_keep"])
    assert s["all_nonnormal_rel"] == 2.0
    assert s["ablation_median_rel"] == pytest.approx(np.median(rel))
    assert s["control_median_rel"] == pytest.approx(np.median(ctrl))
    assert s["frac_ablation_gt_control"] == pytest.approx(3 / 4)  # |0.2| > |0.1|, |-0.03| > |0.0|, |1.0| > |0.2|
    assert s["all_nonnormal_score"] == 0.625
    text = summary.format_summary([s])
    assert "task copy" in text and "50%" in text and "+200.0%" in text
    assert "criterion: keep = Δloss/loss ≤ 5%" in text
    assert "1.000→0.625" in [ln for ln in text.splitlines() if ln.startswith("a ")][0]
    assert max(len(line) for line in text.splitlines()) <= 110


def test_score_criterion_names_the_couplings_that_cost_the_most_accuracy():
    # a cross-entropy-style table: the loss barely moves for removal 0, but its accuracy falls most
    rel = [0.001, 0.30, 0.02, -0.2]
    score = [0.60, 0.98, 0.97, 0.99]
    rows = [
        {
            "row_id": k,
            "model": "m",
            "task": "neurogym:X",
            "model_seed": 0,
            "family": "single",
            "control_of": None,
            "label": f"T[0,{k + 1}]",
            "rel_delta_loss": r,
            "delta_loss": r,
            "base_loss": 1.0,
            "base_score": 0.99,
            "score": sc,
        }
        for k, (r, sc) in enumerate(zip(rel, score, strict=True))
    ]
    (s,) = summary.summarize(rows)  # auto: the table has scores, so the score criterion
    assert s["criterion"].kind == "score"
    # independent: drop = 0.99 - score; keeps when drop <= 0.01 -> removals 1? (0.01: yes), 2 (0.02: no), 3 (0: yes)
    drops = 0.99 - np.asarray(score)
    assert s["single_keep"] == pytest.approx(np.mean(drops <= 0.01))
    assert [m["label"] for m in s["most_needed"]] == ["T[0,1]", "T[0,3]", "T[0,2]"]
    (by_loss,) = summary.summarize(rows, criterion="loss")
    assert by_loss["most_needed"][0]["label"] == "T[0,2]" and by_loss["single_keep"] == pytest.approx(0.75)
    (two,) = summary.summarize(rows, criterion=summary.Criterion("loss", two_sided=True))
    assert two["single_keep"] == pytest.approx(0.5)  # -0.2 fails two-sided
    text = summary.format_summary([s])
    assert (
        "keep = task score drops by ≤ 0.01" in text
        and "most needed in m (score drop): T[0,1] (+0.390, loss +0.1%)" in text
    )
    with pytest.raises(ValueError, match="criterion must be one of"):
        summary.summarize(rows, criterion="accuracy")


def test_summarize_reports_each_control_kind_separately():
    # 3 singles; each has one matched_norm and one coupling_noise control
    rel = [0.1, 0.4, -0.2]
    norm = [0.3, 0.0, -0.1]  # |ablation| > |control|: 0.4 > 0.0, 0.2 > 0.1 -> 2/3
    noise = [0.01, 0.02, -0.5]  # |ablation| > |control|: 0.1 > 0.01, 0.4 > 0.02, not 0.2 > 0.5 -> 2/3
    base = {"model": "a", "task": "copy", "model_seed": 0, "base_loss": 1.0, "base_score": 1.0}
    rows = [
        {**base, "row_id": k, "family": "single", "control_of": None, "rel_delta_loss": r, "delta_loss": r}
        for k, r in enumerate(rel)
    ]
    for off, kind, vals in ((3, "matched_norm", norm), (6, "coupling_noise", noise)):
        rows += [
            {
                **base,
                "row_id": off + k,
                "family": "control",
                "control_of": k,
                "control_kind": kind,
                "rel_delta_loss": c,
                "delta_loss": c,
            }
            for k, c in enumerate(vals)
        ]
    (s,) = summary.summarize(rows)
    assert s["control_kinds"] == ["matched_norm", "coupling_noise"]
    assert s["by_kind"]["matched_norm"]["control_median_rel"] == pytest.approx(0.0)
    assert s["by_kind"]["coupling_noise"]["control_median_rel"] == pytest.approx(0.01)
    assert s["by_kind"]["matched_norm"]["frac_ablation_gt_control"] == pytest.approx(2 / 3)
    assert s["by_kind"]["coupling_noise"]["frac_ablation_gt_control"] == pytest.approx(2 / 3)
    assert s["by_kind"]["matched_norm"]["ablation_median_rel"] == pytest.approx(0.1)
    assert s["by_kind"]["coupling_noise"]["n_pairs"] == 3
    assert math.isnan(s["control_median_rel"]) and math.isnan(s["frac_ablation_gt_control"])  # never pooled
    text = summary.format_summary([s])
    kind_lines = [line for line in text.splitlines() if line.startswith("a ") and "_" in line]
    assert [line.split()[1] for line in kind_lines] == ["matched_norm", "coupling_noise"]
    assert "67%" in kind_lines[0] and "67%" in kind_lines[1]
    assert max(len(line) for line in text.splitlines()) <= 110
    # a single kind: the control columns are in the main table and the legend names the kind
    (one,) = summary.summarize([r for r in rows if r.get("control_kind") != "coupling_noise"])
    assert one["control_median_rel"] == pytest.approx(0.0) and one["n_pairs"] == 3
    text = summary.format_summary([one])
    assert (
        "controls: matched_norm" in text and "abl>ctrl" in [ln for ln in text.splitlines() if ln.startswith("model")][0]
    )
    assert max(len(line) for line in text.splitlines()) <= 110
