"""Smoke test of benchmarks/scaling.py at tiny sizes (no timing asserts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


def _load():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("scaling", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scaling"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_scaling_parts_tiny():
    bench = _load()
    dev = bench.device_scaling((1, 2), n=10, K=16, B=3, T=5, repeats=1)
    assert [r["devices"] for r in dev["rows"]] == [1, 2] and dev["rows"][0]["efficiency"] == 1.0
    cost = bench.cost_model(((10, 3, 5), (12, 3, 5), (16, 4, 5)), K=16, repeats=1)
    assert len(cost["rows"]) == 3 and cost["predict_n512"]["K"] == 512 * 511 // 2
