"""schurjax.store._json: plain JSON types, standard JSON only, atomic files."""

from __future__ import annotations

import json
import os
from types import MappingProxyType

import numpy as np
import pytest

from schurjax.store import _json


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "x.json"
    _json.atomic_write_bytes(p, b"old")
    _json.atomic_write_bytes(p, b"new content")
    assert p.read_bytes() == b"new content"
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.bin"
    _json.atomic_write_bytes(p, b"old")

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(_json.os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        _json.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]  # the temp file was removed


def test_to_jsonable_handles_numpy_complex_and_read_only_mappings():
    obj = {
        "a": np.float32(1.5),
        "b": np.arange(3),
        "c": 1 + 2j,
        "d": (np.int64(4), [np.bool_(True)]),
        "e": MappingProxyType({"x": np.int32(2)}),
    }
    out = _json.to_jsonable(obj)
    assert json.loads(json.dumps(out)) == {
        "a": 1.5,
        "b": [0, 1, 2],
        "c": {"re": 1.0, "im": 2.0},
        "d": [4, [True]],
        "e": {"x": 2},
    }


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
def test_dumps_refuses_non_finite_numbers_and_names_where(bad):
    with pytest.raises(ValueError, match=r"models\[1\]\.task_params\.noise is not finite"):
        _json.dumps({"models": [{}, {"task_params": {"noise": bad}}]})
    text = _json.dumps({"x": [1.0, 2]})
    assert json.loads(text) == {"x": [1.0, 2]}  # what is written parses as standard JSON


def test_atomic_write_json_writes_standard_json(tmp_path):
    p = _json.atomic_write_json(tmp_path / "m.json", {"a": np.arange(2)})
    assert json.loads(p.read_text()) == {"a": [0, 1]}
    with pytest.raises(ValueError, match="not finite"):
        _json.atomic_write_json(tmp_path / "n.json", {"a": float("nan")})
    assert not (tmp_path / "n.json").exists()
