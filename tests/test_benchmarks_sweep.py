"""Smoke test of benchmarks/sweep_throughput.py at tiny sizes (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sweep_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sweep_throughput"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("case", ["C1", "C1dense"])
def test_run_case_tiny(bench, case):
    res = bench.run_case(case, n=10, K=12, B=3, T=5, repeats=1, loop_subset=4)
    figs = res["figures"]
    expected = {"loop", "vmap", "engine", "engine_leaky", "bare"}
    expected |= {"torch_bmm"} if bench.torch_available() else set()
    assert set(figs) == expected
    for name, f in figs.items():
        assert f["var_per_s"] > 0 and np.isfinite(f["var_per_s"])
        if name not in ("bare", "engine_leaky"):  # the bare kernel computes no metrics; the leaky network others
            assert f["max_rel_loss_diff_vs_engine"] < 1e-4, name  # every method computes the same losses
    assert "max_rel_loss_diff_vs_engine" not in figs["bare"] and "engine/bare" in res["ratios"]
    assert res["ratios"]["engine_leaky/engine"] > 0 and res["leaky_alpha"] == 0.2
    assert figs["loop"]["variants_timed"] == 4
    assert res["engine"]["path"] == ("shared" if case == "C1" else "dense")
    if "torch_bmm" in figs:
        assert res["ratios"]["torch_bmm/torch_bmm"] == pytest.approx(1.0)
    assert "case C1" in bench.format_table(res)
    json.dumps(res, default=float)


def test_engine_at_a_fixed_chunk_size(bench):
    res = bench.run_case("C1dense", n=10, K=12, B=3, T=5, methods=["engine", "engine@4"], repeats=1)
    assert set(res["figures"]) == {"engine", "engine@4"}
    # the results do not depend on the chunk size (bitwise, by design); the auto chunk here covers all 12 variants
    assert res["figures"]["engine@4"]["max_rel_loss_diff_vs_engine"] == 0.0
    with pytest.raises(ValueError, match="unknown method 'engine@x'"):
        bench.run_case("C1", n=10, K=4, B=2, T=3, methods=["engine@x"], repeats=1)


def test_cli_writes_json(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        bench.main(
            [
                "--case",
                "G1",
                "--n",
                "8",
                "--K",
                "6",
                "--B",
                "2",
                "--T",
                "4",
                "--methods",
                "engine,vmap",
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["case"] == "G1" and data["config"]["K"] == 6 and set(data["figures"]) == {"engine", "vmap"}
    assert "var/s" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown method"):
        bench.run_case("C1", n=8, K=4, B=2, T=3, methods=["nope"], repeats=1)


def test_memory_sweep_tiny(bench):
    res = bench.memory_sweep(n=12, B=2, T=3)
    assert res["config"]["K"] > 10 and res["all_finite"]


def test_precision_check_tiny(bench):
    res = bench.precision_check("C1", n=10, K=8, B=2, T=6, precisions=("highest", "tf32"))
    (rows,) = res["problems"].values()
    assert [r["form"] for r in rows] == list(bench.FORMS)  # CPU: "highest" only (every precision is the same)
    for row in rows:
        assert row["loss_rel_err_max"] < 1e-4
    assert "precision check" in bench.format_precision(res)
