"""Smoke test of benchmarks/train_throughput.py at tiny sizes (no timing asserts)."""

import importlib.util
import json
from pathlib import Path

PATH = Path(__file__).parents[1] / "benchmarks" / "train_throughput.py"


def _module():
    spec = importlib.util.spec_from_file_location("train_throughput", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_throughput_smoke(tmp_path, capsys):
    mod = _module()
    out = tmp_path / "tt.json"
    assert (
        mod.main(
            [
                "--task",
                "copy",
                "--seeds",
                "2",
                "--steps",
                "4",
                "--n",
                "8",
                "--B",
                "4",
                "--repeats",
                "1",
                "--task-params",
                '{"length": 2, "delay": 0}',
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"vmap", "map", "loop"} and res["n_seeds"] == 2
    assert "vmap / loop speedup" in capsys.readouterr().out
