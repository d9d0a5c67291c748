"""Run folders on disk: atomic writes, the tidy table round trip, manifests, load(), chunk plans and summaries."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schurjax as sj
from schurjax import results, runs


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


# ------------------------------------------------------------------------------------------------ atomic writes


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "x.json"
    results.atomic_write_bytes(p, b"old")
    results.atomic_write_bytes(p, b"new content")
    assert p.read_bytes() == b"new content"
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.bin"
    results.atomic_write_bytes(p, b"old")

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        results.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]  # the temp file was removed


def test_to_jsonable_handles_numpy_and_complex():
    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": 1 + 2j, "d": (np.int64(4), [np.bool_(True)])}
    out = results.to_jsonable(obj)
    assert json.loads(json.dumps(out)) == {"a": 1.5, "b": [0, 1, 2], "c": {"re": 1.0, "im": 2.0}, "d": [4, [True]]}


# ------------------------------------------------------------------------------------------------ table


def test_flatten_label():
    lab = {"family": "single", "entries": [[0, 3]], "row": np.int64(0), "target_eig": [0.5, -0.25],
           "z": 1 - 2j, "value": np.float64(0.125), "flag": None}  # fmt: skip
    out = results.flatten_label(lab)
    assert out == {"family": "single", "entries": "[[0,3]]", "row": 0, "target_eig_re": 0.5, "target_eig_im": -0.25,
                   "z_re": 1.0, "z_im": -2.0, "value": 0.125, "flag": None}  # fmt: skip
    assert type(out["row"]) is int


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(allow_nan=True, width=64), st.integers(-5, 5)), min_size=1, max_size=6))
def test_table_round_trip_exact(tmp_path_factory, data):
    rows = [{"row_id": k, "model": 'm,1 "q"', "loss": f, "n_removed": i} for k, (f, i) in enumerate(data)]
    path = tmp_path_factory.mktemp("t") / "table.csv"
    results.write_table(rows, path)
    back = results.read_table(path)
    assert len(back) == len(rows)
    for a, b in zip(rows, back, strict=True):
        assert set(a) == set(b)
        for key in a:
            assert _same(a[key], b[key]), (key, a[key], b[key])
    # the CSV is plain: Python's csv module reads the same header and cell count
    with open(path, newline="") as f:
        raw = list(csv.reader(f))
    assert raw[0] == ["row_id", "model", "n_removed", "loss"]  # leading columns in COLUMNS order
    assert all(len(r) == 4 for r in raw)


def test_table_mixed_column_types_and_none(tmp_path):
    rows = [{"row_id": 0, "control_of": None, "label": "T[0,1]", "x": 1.0},
            {"row_id": 1, "control_of": 0, "label": "7", "x": float("nan")}]  # fmt: skip
    results.write_table(rows, tmp_path / "t.csv")
    back = results.read_table(tmp_path / "t.csv")
    assert back[0]["control_of"] is None and back[1]["control_of"] == 0
    assert back[0]["label"] == "T[0,1]" and back[1]["label"] == "7"  # a column with any text stays text
    cols = back.to_columns()
    assert cols["row_id"].dtype == np.int64
    assert np.isnan(cols["control_of"][0]) and cols["control_of"][1] == 0
    assert cols["x"].dtype == np.float64 and np.isnan(cols["x"][1])
    assert back.where(row_id=1)[0]["label"] == "7"
    with pytest.raises(KeyError, match="no column 'nope'"):
        back.column("nope")


# ------------------------------------------------------------------------------------------------ run folder


def _manifest(**cfg):
    base = {"families": ["single"], "trials": 8, "seed": 0}
    base.update(cfg)
    return {"config": base, "models": []}


def test_run_folder_start_resume_and_mismatch(tmp_path):
    rf = results.RunFolder(tmp_path / "run")
    assert rf.start(_manifest()) is False
    assert rf.start(_manifest()) is True  # same config: resume
    with pytest.raises(ValueError, match=r"holds a different sweep \(trials: 8 != 16\)"):
        rf.start(_manifest(trials=16))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty and holds no manifest.json"):
        results.RunFolder(tmp_path / "other").start(_manifest())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{torn")
    with pytest.raises(ValueError, match="not a schurjax manifest"):
        results.RunFolder(tmp_path / "bad").start(_manifest())


def test_chunks_round_trip_floats_exactly(tmp_path):
    rf = results.RunFolder(tmp_path)
    rf.start(_manifest())
    vals = np.random.default_rng(1).normal(size=50) * 10.0 ** np.random.default_rng(2).integers(-30, 30, 50)
    vals[3] = np.nan
    assert not rf.has_chunk(0, 2)
    rf.write_chunk(0, 2, {"start": 0, "stop": 50, "loss": vals.tolist()})
    assert rf.has_chunk(0, 2)
    back = np.asarray(rf.read_chunk(0, 2)["loss"])
    np.testing.assert_array_equal(back, vals)  # bitwise (NaN == NaN for assert_array_equal)


def test_load_round_trip_with_schur_forms(tmp_path):
    rng = np.random.default_rng(3)
    sf = sj.ordered_schur(rng.normal(size=(6, 6)))
    rf = results.RunFolder(tmp_path / "run")
    m = _manifest()
    m["models"] = [{"id": "m0"}]
    rf.start(m)
    with pytest.raises(FileNotFoundError, match="no table.csv yet"):
        results.load(tmp_path / "run")
    rf.save_schur("m0", sf)
    rows = [{"row_id": 0, "model": "m0", "family": "single", "loss": 0.5, "control_of": None}]
    rf.finish(rows)
    run = results.load(tmp_path / "run" / "manifest.json")
    assert run.complete and run.models == ["m0"]
    assert run.table == rows
    np.testing.assert_array_equal(run.schurs["m0"].T, sf.T)
    np.testing.assert_array_equal(run.schurs["m0"].Q, sf.Q)
    with pytest.raises(FileNotFoundError, match="missing manifest.json"):
        results.load(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ plans, parsing


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=6), st.integers(1, 17))
def test_plan_chunks_cover_in_order_without_crossing_segments(segments, size):
    chunks = runs.plan_chunks(segments, size)
    flat = [k for a, b in chunks for k in range(a, b)]
    assert flat == list(range(sum(segments)))
    bounds = np.cumsum([0, *segments])
    for a, b in chunks:
        assert 0 < b - a <= size
        seg = np.searchsorted(bounds, a, side="right") - 1
        assert b <= bounds[seg + 1]  # never crosses into the next segment


def test_parse_seeds_and_families():
    assert runs.parse_seeds("0-3") == [0, 1, 2, 3]
    assert runs.parse_seeds("5,0-1,1") == [0, 1, 5]
    for bad in ("3-1", "a", "-2", "1,,2"):
        with pytest.raises(ValueError, match="--seeds"):
            runs.parse_seeds(bad)
    assert runs.parse_families("single, blocks,band,all_nonnormal,single") == ["single", "block", "band",
                                                                              "all_nonnormal"]  # fmt: skip
    with pytest.raises(ValueError, match="unknown family 'diagonal'"):
        runs.parse_families("single,diagonal")
    assert runs.parse_control_kinds("none") == []
    with pytest.raises(ValueError, match="unknown control kind 'fancy'"):
        runs.parse_control_kinds("matched_norm,fancy")
    # --families names come from ablate's registry and make rows whose family is that name
    assert runs.parse_families("eigen_group") == ["eigen_groups"]
    sf = sj.ordered_schur(np.random.default_rng(0).normal(size=(6, 6)))
    for name in runs.FAMILIES:
        assert name in sj.ablate.FAMILIES
        v = runs._family_variants(sf, name)
        assert {lab["family"] for lab in v.labels} <= {name}
    assert runs.parse_control_kinds(",".join(sj.ablate.CONTROL_KINDS)) == list(sj.ablate.CONTROL_KINDS)
    assert set(runs.PRECISIONS) == set(sj.engine.PRECISIONS)


def test_summarize_matches_hand_computation():
    # model a: 4 singles (rel 0.01, 0.2, -0.03, 1.0), all_nonnormal rel 2.0, one control per single
    rel = [0.01, 0.2, -0.03, 1.0]
    ctrl = [0.5, 0.1, 0.0, 0.2]
    rows = [{"row_id": k, "model": "a", "task": "copy", "model_seed": 0, "family": "single", "control_of": None,
             "rel_delta_loss": r, "delta_loss": r * 2, "base_loss": 2.0, "base_score": 1.0}
            for k, r in enumerate(rel)]  # fmt: skip
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
    rows += [{"row_id": 5 + k, "model": "a", "task": "copy", "model_seed": 0, "family": "control", "control_of": k,
              "rel_delta_loss": c, "delta_loss": c * 2, "base_loss": 2.0, "base_score": 1.0}
             for k, c in enumerate(ctrl)]  # fmt: skip
    (s,) = runs.summarize(rows)
    assert s["n_single"] == 4
    assert s["single_keep"] == pytest.approx(0.5)  # |0.01|, |-0.03| <= 0.05
    assert math.isnan(s["block_keep"])
    assert s["all_nonnormal_rel"] == 2.0
    assert s["ablation_median_rel"] == pytest.approx(np.median(rel))
    assert s["control_median_rel"] == pytest.approx(np.median(ctrl))
    assert s["frac_ablation_gt_control"] == pytest.approx(2 / 4)  # 0.2 > 0.1 and 1.0 > 0.2
    assert s["all_nonnormal_score"] == 0.625
    text = runs.format_summary([s])
    assert "task copy" in text and "50%" in text and "+200.0%" in text
    assert "1.000→0.625" in text.splitlines()[-1]
    assert max(len(line) for line in text.splitlines()) <= 110


def test_summarize_reports_each_control_kind_separately():
    # 3 singles; each has one matched_norm and one coupling_noise control
    rel = [0.1, 0.4, -0.2]
    norm = [0.3, 0.0, -0.1]  # ablation > control: 0.4 > 0.0 only -> 1/3
    noise = [0.01, 0.02, -0.5]  # ablation > control: 0.1 > 0.01, 0.4 > 0.02, -0.2 > -0.5 -> 3/3
    base = {"model": "a", "task": "copy", "model_seed": 0, "base_loss": 1.0, "base_score": 1.0}
    rows = [{**base, "row_id": k, "family": "single", "control_of": None, "rel_delta_loss": r, "delta_loss": r}
            for k, r in enumerate(rel)]  # fmt: skip
    for off, kind, vals in ((3, "matched_norm", norm), (6, "coupling_noise", noise)):
        rows += [{**base, "row_id": off + k, "family": "control", "control_of": k, "control_kind": kind,
                  "rel_delta_loss": c, "delta_loss": c} for k, c in enumerate(vals)]  # fmt: skip
    (s,) = runs.summarize(rows)
    assert s["control_kinds"] == ["matched_norm", "coupling_noise"]
    assert s["by_kind"]["matched_norm"]["control_median_rel"] == pytest.approx(0.0)
    assert s["by_kind"]["coupling_noise"]["control_median_rel"] == pytest.approx(0.01)
    assert s["by_kind"]["matched_norm"]["frac_ablation_gt_control"] == pytest.approx(1 / 3)
    assert s["by_kind"]["coupling_noise"]["frac_ablation_gt_control"] == pytest.approx(1.0)
    assert s["by_kind"]["matched_norm"]["ablation_median_rel"] == pytest.approx(0.1)
    assert s["by_kind"]["coupling_noise"]["n_pairs"] == 3
    assert math.isnan(s["control_median_rel"]) and math.isnan(s["frac_ablation_gt_control"])  # never pooled
    text = runs.format_summary([s])
    kind_lines = [line for line in text.splitlines() if line.startswith("a ") and "_" in line]
    assert [line.split()[1] for line in kind_lines] == ["matched_norm", "coupling_noise"]
    assert "33%" in kind_lines[0] and "100%" in kind_lines[1]
    assert max(len(line) for line in text.splitlines()) <= 110
    # a single kind: the control columns are in the main table and the legend names the kind
    (one,) = runs.summarize([r for r in rows if r.get("control_kind") != "coupling_noise"])
    assert one["control_median_rel"] == pytest.approx(0.0) and one["n_pairs"] == 3
    text = runs.format_summary([one])
    assert "controls: matched_norm" in text and "abl>ctrl" in text.splitlines()[-2]
    assert max(len(line) for line in text.splitlines()) <= 110
