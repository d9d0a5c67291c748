"""The tidy table: label flattening, CSV written exactly, read back as a pandas DataFrame."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from schurjax.store import table


def test_flatten_label():
    lab = {
        "family": "single",
        "entries": [[0, 3]],
        "row": np.int64(0),
        "target_eig": [0.5, -0.25],
        "z": 1 - 2j,
        "value": np.float64(0.125),
        "flag": None,
    }
    out = table.flatten_label(lab)
    assert out == {
        "family": "single",
        "entries": "[[0,3]]",
        "row": 0,
        "target_eig_re": 0.5,
        "target_eig_im": -0.25,
        "z_re": 1.0,
        "z_im": -2.0,
        "value": 0.125,
        "flag": None,
    }
    assert type(out["row"]) is int


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(allow_nan=True, width=64), st.integers(-5, 5)), min_size=1, max_size=6))
def test_table_round_trip_exact(tmp_path_factory, data):
    rows = [{"row_id": k, "model": 'm,1 "q"', "loss": f, "n_removed": i} for k, (f, i) in enumerate(data)]
    path = tmp_path_factory.mktemp("t") / "table.csv"
    table.write_table(rows, path)
    back = table.read_table(path)
    assert isinstance(back, pd.DataFrame) and len(back) == len(rows)
    assert list(back.columns) == ["row_id", "model", "n_removed", "loss"]  # leading columns in COLUMNS order
    for k, (f, i) in enumerate(data):
        got = back.loc[k, "loss"]
        assert (math.isnan(f) and math.isnan(got)) or got == f  # bit-exact floats (shortest round-trip text)
        assert back.loc[k, "n_removed"] == i and back.loc[k, "model"] == 'm,1 "q"'
    # the CSV is plain: Python's csv module reads the same header and cell count
    with open(path, newline="") as f:
        raw = list(csv.reader(f))
    assert raw[0] == ["row_id", "model", "n_removed", "loss"]
    assert all(len(r) == 4 for r in raw)


def test_table_mixed_column_types_and_missing_cells(tmp_path):
    rows = [
        {"row_id": 0, "control_of": None, "label": "T[0,1]", "x": 1.0},
        {"row_id": 1, "control_of": 0, "label": "7", "x": float("nan")},
    ]
    table.write_table(rows, tmp_path / "t.csv")
    back = table.read_table(tmp_path / "t.csv")
    assert str(back["control_of"].dtype) == "Int64"  # integers with a missing cell stay integers
    assert back["control_of"].isna().tolist() == [True, False] and back.loc[1, "control_of"] == 0
    assert back["label"].tolist() == ["T[0,1]", "7"]  # a column with any text stays text
    assert back["x"].dtype == np.float64 and np.isnan(back.loc[1, "x"])
    recs = table.records(back)
    assert recs[0]["control_of"] is None and recs[1]["control_of"] == 0 and recs[1]["label"] == "7"
