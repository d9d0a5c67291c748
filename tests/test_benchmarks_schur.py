"""Smoke test of benchmarks/schur_order.py at tiny sizes (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("schur_order_bench", ROOT / "benchmarks" / "schur_order.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_schur_order_benchmark_smoke(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "res" / "schur_order.json"
    rec = bench.main(["--sizes", "8,24", "--repeats", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(rec))
    assert [r["n"] for r in data["results"]] == [8, 24]
    for r in data["results"]:
        assert len(r["ordered_s"]) == len(r["unordered_s"]) == 2
        assert r["ratio_median"] > 0 and r["residual"] < 1e-12
    assert data["machine"]["numpy"]
    assert data["target_met"] is None  # no n = 512 in this run
    text = capsys.readouterr().out
    assert "ratio" in text and "wrote" in text
    with pytest.raises(ValueError, match="bench_size: n and repeats must be >= 1"):
        bench.bench_size(0)
