"""Smoke test of benchmarks/precision_forms.py at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "precision_forms.py"


def test_measure_tiny():
    spec = importlib.util.spec_from_file_location("precision_forms", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["precision_forms"] = mod
    spec.loader.exec_module(mod)
    rec = mod.measure(**mod.QUICK)
    assert [(r["path"], r["form"], r["nonlinearity"]) for r in rec["rows"]] == [
        ("shared", "current", "softplus"),
        ("dense", "current", "softplus"),
    ]
    for row in rec["rows"]:
        assert set(row["per_alpha"]) == {"1.0", "0.2"}
        assert row["delta_loss"] < 1e-3 and row["output_distance"] < 1e-4, row  # the bound of the default
    assert "| mse | current | softplus | shared |" in mod.format_table(rec)
    json.dumps(rec, default=float)
