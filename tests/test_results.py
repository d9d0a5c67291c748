"""Run folders on disk: start, resume or refuse, chunk files, the finished table and load()."""

from __future__ import annotations

import json

import numpy as np
import pytest

import schurjax as sj
from schurjax.store import results


def _manifest(**cfg):
    base = {"families": ["single"], "trials": 8, "seed": 0}
    base.update(cfg)
    return {"config": base, "models": []}


def test_run_folder_start_resume_and_mismatch(tmp_path):
    rf = results.RunFolder(tmp_path / "run")
    assert rf.start(_manifest()) is False
    assert rf.start(_manifest()) is True  # same config: resume
    assert rf.start(_manifest(trials=16)) is False  # no chunk yet: another config may take the folder over
    rf.write_chunk(0, 0, {"start": 0, "stop": 1, "loss": [0.5]}, ["loss"])
    with pytest.raises(sj.InputError, match=r"out: .* holds a different sweep \(trials: 16 != 8\)") as e:
        rf.start(_manifest(trials=8))
    assert e.value.arg == "out"  # library errors name the Python argument; the CLI maps it to --out
    rf.close()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(sj.InputError, match="not empty and holds no manifest.json"):
        results.RunFolder(tmp_path / "other").start(_manifest())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{torn")
    with pytest.raises(sj.InputError, match="manifest.json is not a readable schurjax manifest"):
        results.RunFolder(tmp_path / "bad").start(_manifest())


def test_chunks_round_trip_floats_exactly(tmp_path):
    rf = results.RunFolder(tmp_path)
    rf.start(_manifest())
    vals = np.random.default_rng(1).normal(size=50) * 10.0 ** np.random.default_rng(2).integers(-30, 30, 50)
    vals[3] = np.nan
    assert rf.chunk_problem(0, 2, 0, 50, ["loss"]) == "missing"
    rf.write_chunk(0, 2, {"start": 0, "stop": 50, "loss": vals.tolist()}, ["loss"])
    assert rf.chunk_problem(0, 2, 0, 50, ["loss"]) is None
    assert rf.chunk_problem(0, 2, 0, 51, ["loss"]).startswith("damaged: covers 0:50")
    json.loads(rf.chunk_path(0, 2).read_text())  # standard JSON (NaN stored as a string)
    back = np.asarray(rf.read_chunk(0, 2, ["loss"])["loss"])
    np.testing.assert_array_equal(back, vals)  # bitwise (NaN == NaN for assert_array_equal)
    rf.close()


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
    rf.close()
    run = results.load(tmp_path / "run" / "manifest.json")
    assert run.complete and run.models == ["m0"]
    assert sj.table.records(run.table) == [
        {"row_id": 0, "model": "m0", "family": "single", "control_of": None, "loss": 0.5}
    ]
    np.testing.assert_array_equal(run.schurs["m0"].T, sf.T)
    np.testing.assert_array_equal(run.schurs["m0"].Q, sf.Q)
    with pytest.raises(FileNotFoundError, match="missing manifest.json"):
        results.load(tmp_path / "nothing")
