"""save_model / load_model: exact round trip, metadata, and one-line errors on corrupt or mismatched files."""

import hashlib
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from schurjax.rnn import TanhRNN
from schurjax.store.checkpoint import FORMAT, load_model, save_model


@pytest.fixture
def saved(tmp_path):
    model = TanhRNN(3, 12, 2, key=jax.random.key(5), gain=0.7)
    model = TanhRNN.from_arrays(model.W_in, model.W_rec, np.linspace(-1, 1, 12), model.W_out, [0.5, -0.25])
    meta = {"task": {"name": "copy", "params": {"length": 6}}, "metrics": {"loss": 0.01, "score": 0.99}}
    path = save_model(tmp_path / "sub" / "m.eqx", model, meta)
    return model, meta, path


def test_round_trip(saved):
    model, meta, path = saved
    assert path.suffix == ".eqx" and path.with_suffix(".json").is_file()
    loaded, got = load_model(path)
    for f in ("W_in", "W_rec", "b", "W_out", "b_out"):
        np.testing.assert_array_equal(np.asarray(getattr(loaded, f)), np.asarray(getattr(model, f)))
    assert (loaded.n_in, loaded.n_hidden, loaded.n_out) == (3, 12, 2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(9, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert got["task"] == meta["task"] and got["metrics"] == meta["metrics"]
    assert got["format"] == FORMAT and got["sizes"] == {"n_in": 3, "n_hidden": 12, "n_out": 2}
    assert got["schurjax_version"] == sj.__version__
    side = json.loads(path.with_suffix(".json").read_text())  # plain JSON, no pickle
    assert side["sizes"]["n_hidden"] == 12


def _write_pair(src, dest, edit, data=None):
    """Copy model ``src`` (weights, or ``data`` instead) to ``dest`` with its JSON sidecar changed by ``edit``."""
    dest.write_bytes(src.read_bytes() if data is None else data)
    side = json.loads(src.with_suffix(".json").read_text())
    edit(side)
    dest.with_suffix(".json").write_text(json.dumps(side))


def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_corrupt_bytes(saved, tmp_path):
    _, _, path = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.eqx"
    bad.write_bytes(bytes(data))
    shutil.copy(path.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(ValueError, match="corrupt") as err:
        load_model(bad)
    assert "bad.eqx" in _one_line(err)


def test_truncated_with_forged_checksum(saved, tmp_path):
    _, _, path = saved
    bad = tmp_path / "trunc.eqx"
    truncated = path.read_bytes()[:100]
    _write_pair(path, bad, lambda side: side.update(sha256=hashlib.sha256(truncated).hexdigest()), data=truncated)
    with pytest.raises(ValueError, match="does not hold a TanhRNN") as err:
        load_model(bad)
    _one_line(err)


def test_missing_checksum(saved, tmp_path):
    _, _, path = saved
    bad = tmp_path / "nosum.eqx"
    _write_pair(path, bad, lambda side: side.pop("sha256"))
    with pytest.raises(ValueError, match="no sha256 checksum") as err:
        load_model(bad)
    _one_line(err)


def test_nonfinite_metadata_is_strict_json(tmp_path):
    model = TanhRNN(1, 4, 1, key=jax.random.key(0))
    path = save_model(tmp_path / "nan.eqx", model, {"metrics": {"loss": float("nan"), "score": 0.5}})
    side = path.with_suffix(".json").read_text()
    assert "NaN" not in side
    _, meta = load_model(path)
    assert meta["metrics"] == {"loss": None, "score": 0.5}


def test_size_mismatch(saved, tmp_path):
    _, _, path = saved
    bad = tmp_path / "mis.eqx"
    _write_pair(path, bad, lambda side: side["sizes"].update(n_hidden=8))
    with pytest.raises(ValueError, match="n_hidden=8") as err:
        load_model(bad)
    _one_line(err)


def test_bad_sidecars(saved, tmp_path):
    _, _, path = saved
    bad = tmp_path / "x.eqx"
    shutil.copy(path, bad)
    with pytest.raises(ValueError, match="sidecar .* is missing"):
        load_model(bad)
    bad.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(bad)
    bad.with_suffix(".json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(ValueError, match=r"has format 'other/9', expected 'schurjax.TanhRNN/1'"):
        load_model(bad)
    with pytest.raises(ValueError, match="no model file"):
        load_model(tmp_path / "missing.eqx")
    with pytest.raises(ValueError, match=r"path must end with '.eqx', got '.*m.pkl'"):
        load_model(tmp_path / "m.pkl")


def test_save_errors(tmp_path):
    model = TanhRNN(1, 4, 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="reserved"):
        save_model(tmp_path / "a.eqx", model, {"format": "x"})
    with pytest.raises(ValueError, match="'sizes' is reserved"):
        save_model(tmp_path / "a.eqx", model, {"sizes": {"n_in": 9, "n_hidden": 4, "n_out": 1}})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_model(tmp_path / "b.eqx", model, {"obj": object()})
    with pytest.raises(TypeError, match="model must be a TanhRNN"):
        save_model(tmp_path / "c.eqx", {"W": 1})


def test_resave_loaded_model(saved, tmp_path):
    _, _, path = saved
    model, meta = load_model(path)
    again = save_model(tmp_path / "again.eqx", model, meta)
    model2, meta2 = load_model(again)
    assert again.read_bytes() == path.read_bytes()
    assert meta2 == meta
    np.testing.assert_array_equal(np.asarray(model2.W_rec), np.asarray(model.W_rec))
