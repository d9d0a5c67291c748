"""The shipped zoo: completeness, metadata, quality on fresh held-out keys, specs, and reproducible builds."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

import schurjax as sj
from schurjax import zoo
from schurjax.store.checkpoint import FORMAT, FORMAT_RATE
from schurjax.zoo.build import CONFIGS, CONFIGS_BY_SIZE, CONFIGS_LEAKY, LEAKY_ALPHA, SIZES, build

SEEDS = [0, 1, 2, 3]
FRESH = 7_777_777  # never used by training (fold_in of the seed keys) nor by the build's held-out keys
BATCH = {"flipflop": 512, "copy": 2048, "sine": 512, "context": 4096}
BARS = {"flipflop": 0.98, "copy": 0.90, "sine": 0.90, "context": 0.95}


def test_entries_complete():
    es = zoo.entries()
    want = sorted((t, s, n) for t in sj.tasks.names() for s in SEEDS for n in SIZES)
    assert sorted((e.task, e.seed, e.n_hidden) for e in es) == want
    assert zoo.sizes() == [64, 128]
    assert [e for e in es if e.n_hidden == 64] == zoo.entries(n_hidden=64) == es[:16]  # n = 64 first, as before
    assert len(zoo.entries(n_hidden=128)) == 16 and zoo.entries(n_hidden=999) == []
    for e in es:
        m = e.metadata
        # format compatibility (not the package version: a version bump must not force a rebuild)
        assert m["format"] == FORMAT and isinstance(m["schurjax_version"], str)
        model, meta = sj.load_model(e.path)
        assert meta == m and model.n_hidden == e.n_hidden
        assert e.path == zoo.path_for(e.task, e.seed, n_hidden=e.n_hidden)
        assert m["task"]["name"] == e.task and m["seed"] == e.seed
        assert m["task"]["params"] == sj.tasks.get(e.task).params() == zoo.task(e.task).params()
        assert m["sizes"]["n_hidden"] == e.n_hidden and m["train"]["n_hidden"] == e.n_hidden
        cfg = CONFIGS_BY_SIZE[e.n_hidden][e.task]["train"]
        assert {k: m["train"][k] for k in cfg} == cfg  # shipped with the build's configuration
        assert {"steps", "batch_size", "learning_rate", "clip", "gain", "optimizer"} <= set(m["train"])
        assert {"heldout_loss", "heldout_score", "heldout_key"} <= set(m["metrics"])
        assert ("ideal_observer_score" in m["metrics"]) == (e.task == "context")
    assert zoo.metadata("sine", 1) == next(e.metadata for e in es if (e.task, e.seed, e.n_hidden) == ("sine", 1, 64))
    assert zoo.metadata("sine", 1, n_hidden=128)["sizes"]["n_hidden"] == 128


def test_load_and_errors():
    m = zoo.load("copy", seed=2)
    assert isinstance(m, sj.TanhRNN) and (m.n_in, m.n_hidden, m.n_out) == (3, 64, 2)
    assert zoo.load("copy", 2) is m  # cached
    assert zoo.load("copy", np.int64(2)) is m  # any integral seed
    assert zoo.load("copy", 2, n_hidden=64) is m  # the default size is 64
    big = zoo.load("copy", seed=2, n_hidden=128)
    assert (big.n_in, big.n_hidden, big.n_out) == (3, 128, 2) and zoo.load("copy", 2, n_hidden=np.int64(128)) is big
    model, meta = sj.load_model(zoo.entries()[0].path)
    assert meta == zoo.entries()[0].metadata
    with pytest.raises(ValueError, match=r"unknown task 'nope', expected one of \['context', 'copy'"):
        zoo.load("nope")
    with pytest.raises(ValueError, match=r"no 'copy' model for seed 9, expected one of \[0, 1, 2, 3\]"):
        zoo.load("copy", 9)
    with pytest.raises(ValueError, match=r"no 'copy' model for seed 9 \(n_hidden=128\), expected one of"):
        zoo.load("copy", 9, n_hidden=128)
    for bad in (999, True, 128.0):
        with pytest.raises(ValueError, match=r"no 'copy' models with n_hidden=.*, available sizes are \[64, 128\]$"):
            zoo.load("copy", 0, n_hidden=bad)
    with pytest.raises(ValueError) as info:
        zoo.metadata("copy", 0, n_hidden=999)
    assert "\n" not in str(info.value)
    meta = zoo.metadata("flipflop")
    meta["seed"] = -1  # a copy: the zoo is not modified
    assert zoo.metadata("flipflop")["seed"] == 0


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("zoo:flipflop/0", ("flipflop", 0, 64, 1.0)),
        ("zoo:flipflop/0@128", ("flipflop", 0, 128, 1.0)),
        ("zoo:flipflop/3@64", ("flipflop", 3, 64, 1.0)),
        ("zoo:copy", ("copy", None, 64, 1.0)),
        ("zoo:copy@128", ("copy", None, 128, 1.0)),
        ("zoo:copy/2@alpha0.2", ("copy", 2, 64, 0.2)),
        ("zoo:sine@64@alpha0.2", ("sine", None, 64, 0.2)),
    ],
)
def test_parse_spec(spec, parsed):
    assert zoo.parse_spec(spec) == parsed
    canonical = zoo.format_spec(*parsed)
    assert zoo.parse_spec(canonical) == parsed and canonical == spec.replace("@64", "")


@pytest.mark.parametrize(
    "spec",
    [
        "zoo:",
        "zoo:flipflop/",
        "zoo:flipflop/x",
        "zoo:flipflop/-1",
        "zoo:flipflop/0@",
        "zoo:flipflop/0@0",
        "zoo:flipflop@128/0",
        "flipflop/0",
        "zoo:flipflop/0@128 ",
        "zoo:flipflop/0@alpha0",
        "zoo:flipflop/0@alpha1.5",
        "zoo:flipflop/0@alpha0.2@128",
        3,
    ],
)
def test_parse_spec_errors(spec):
    with pytest.raises(ValueError, match=r"^zoo.parse_spec: expected zoo:TASK, .* got "):
        zoo.parse_spec(spec)


def test_specs_name_every_entry():
    for e in zoo.entries(alpha=None):
        task, seed, n, alpha = zoo.parse_spec(zoo.format_spec(e.task, e.seed, e.n_hidden, e.alpha))
        assert zoo.load(task, seed, n, alpha) is zoo.load(e.task, e.seed, n_hidden=e.n_hidden, alpha=e.alpha)


def test_sweep_zoo_specs_mean_n64_unless_sized():
    from schurjax.sweeps import resolve_models

    specs = resolve_models(["zoo:flipflop", "zoo:copy/1"])
    assert [(s.id, s.model.n_hidden) for s in specs] == [(f"flipflop-{s}", 64) for s in SEEDS] + [("copy-1", 64)]
    specs = resolve_models(["zoo:sine/2@128", "zoo:sine/2"])
    assert [(s.id, s.source, s.model.n_hidden) for s in specs] == [
        ("sine-2-n128", "zoo:sine/2@128", 128),
        ("sine-2", "zoo:sine/2", 64),
    ]
    with pytest.raises(ValueError, match="the zoo has no n = 96 models"):
        resolve_models(["zoo:sine/2@96"])


@eqx.filter_jit
def _evaluate(task, stacked, key, batch_size):
    batch = task.sample(key, batch_size)

    def one(model):
        y = jax.vmap(model)(batch.inputs)
        return task.loss(y, batch), task.score(y, batch)

    return eqx.filter_vmap(one)(stacked), batch


def _stacked(models):
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *models)


@pytest.mark.parametrize("n_hidden", SIZES)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_quality_on_fresh_keys(name, n_hidden):
    task = zoo.task(name)
    stacked = _stacked([zoo.load(name, s, n_hidden=n_hidden) for s in SEEDS])
    trials = BATCH[name] if n_hidden == 64 else BATCH[name] // 2  # n = 128 passes with margin, keep the test fast
    (loss, score), batch = _evaluate(task, stacked, jax.random.key(FRESH), trials)
    score = np.asarray(score)
    assert np.all(score >= BARS[name]), (name, n_hidden, score)
    if name == "context":
        io = float(eqx.filter_jit(task.ideal_observer_score)(batch))
        assert io >= 0.97, io
    # the recorded held-out metrics of seed 0 are reproduced from their recorded key
    m = zoo.metadata(name, 0, n_hidden=n_hidden)["metrics"]
    seed0 = _stacked([zoo.load(name, 0, n_hidden=n_hidden)])
    (l_rec, s_rec), _ = _evaluate(task, seed0, jax.random.key(m["heldout_key"]), m["heldout_batch"])
    np.testing.assert_allclose(float(l_rec[0]), m["heldout_loss"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(float(s_rec[0]), m["heldout_score"], atol=1e-4)


def test_build_is_reproducible(tmp_path):
    a = build(tmp_path / "a", ["flipflop"], seeds=[0, 1], progress=False, steps_scale=0.01)
    b = build(tmp_path / "b", ["flipflop"], seeds=[0, 1], progress=False, steps_scale=0.01)
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
        assert json.loads(pa.with_suffix(".json").read_text()) == json.loads(pb.with_suffix(".json").read_text())
    assert a[0].read_bytes() != a[1].read_bytes()  # seeds differ
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        build(tmp_path / "c", ["nope"])
    with pytest.raises(ValueError, match=r"no configuration for n_hidden=999, expected one of \[64, 128\]"):
        build(tmp_path / "c", ["flipflop"], n_hidden=999)


@pytest.mark.slow
def test_leaky_build_rebuilds_the_shipped_files_bit_for_bit(tmp_path):
    paths = build(tmp_path, ["copy"], seeds=SEEDS, progress=False, alpha=LEAKY_ALPHA)
    for p in paths:
        shipped = zoo.path_for("copy", int(p.stem.split("seed")[1]), alpha=LEAKY_ALPHA)
        assert p.name == shipped.name and p.read_bytes() == shipped.read_bytes()
        got, want = (json.loads(q.with_suffix(".json").read_text()) for q in (p, shipped))
        for k in ("schurjax_version",):
            got.pop(k), want.pop(k)
        assert got == want


def test_build_n128(tmp_path):
    (p,) = build(tmp_path, ["copy"], seeds=[0], n_hidden=128, progress=False, steps_scale=0.005)
    assert p == zoo.path_for("copy", 0, tmp_path, n_hidden=128)
    model, meta = sj.load_model(p)
    assert model.n_hidden == 128 and meta["train"]["n_hidden"] == 128 and meta["train"]["steps"] == 15


def test_cli_list(capsys):
    from schurjax.zoo.__main__ import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.count("seed") == 48 and out.count("n=128") == 16 and "ideal" in out
    assert out.count("alpha=0.2") == 16  # the leaky family is listed too


# ------------------------------------------------------------------------------------------------------------
# the leaky family: alpha = 0.2 tanh rate networks, n = 64
# ------------------------------------------------------------------------------------------------------------


def test_leaky_entries_complete_and_loadable():
    es = zoo.entries(alpha=LEAKY_ALPHA)
    want = sorted((t, s, 64) for t in sj.tasks.names() for s in SEEDS)
    assert sorted((e.task, e.seed, e.n_hidden) for e in es) == want
    assert all(e.alpha == LEAKY_ALPHA for e in es) and zoo.alphas() == [LEAKY_ALPHA, 1.0]
    assert zoo.entries(alpha=None) == zoo.entries() + es  # the paper's first, as before
    assert zoo.sizes(alpha=LEAKY_ALPHA) == [64]
    for e in es:
        m = e.metadata
        assert m["format"] == FORMAT_RATE
        assert m["dynamics"] == {"alpha": 0.2, "nonlinearity": "tanh", "form": "rate", "h0": False}
        assert e.path == zoo.path_for(e.task, e.seed, alpha=LEAKY_ALPHA) and e.path.name.endswith(
            f"_alpha0.2_seed{e.seed}.eqx"
        )
        cfg = CONFIGS_LEAKY[e.task]["train"]
        assert {k: m["train"][k] for k in cfg} == cfg and m["train"]["alpha"] == 0.2
        assert m["task"]["params"] == sj.tasks.get(e.task).params()
        model = zoo.load(e.task, e.seed, alpha=LEAKY_ALPHA)
        assert type(model) is sj.RateRNN and model.dynamics == sj.rnn.Dynamics(0.2, "tanh", "rate") and model.h0 is None
        raw, _ = sj.load_model(e.path)  # a RateRNN file: load_model gives the same network
        assert type(raw) is sj.RateRNN and raw.dynamics == model.dynamics
        for f in ("W_in", "W_rec", "b", "W_out", "b_out"):
            np.testing.assert_array_equal(np.asarray(getattr(model, f)), np.asarray(getattr(raw, f)))
    assert zoo.load("copy", 1, alpha=0.2) is zoo.load("copy", 1, alpha=LEAKY_ALPHA)
    assert zoo.metadata("copy", 1, alpha=0.2)["dynamics"]["alpha"] == 0.2
    assert zoo.load("copy", 1) is not zoo.load("copy", 1, alpha=0.2) and zoo.load("copy", 1).alpha == 1.0
    with pytest.raises(ValueError, match=r"^zoo.load: no models with alpha=0.5, the zoo has alpha in \[0.2, 1.0\]$"):
        zoo.load("copy", 0, alpha=0.5)
    with pytest.raises(
        ValueError, match=r"no 'copy' models with n_hidden=128 \(alpha=0.2\), available sizes are \[64\]$"
    ):
        zoo.load("copy", 0, n_hidden=128, alpha=0.2)
    with pytest.raises(ValueError, match=r"no 'copy' model for seed 9 \(alpha=0.2\), expected one of \[0, 1, 2, 3\]$"):
        zoo.load("copy", 9, alpha=0.2)


@pytest.mark.parametrize("name", sorted(CONFIGS_LEAKY))
def test_leaky_quality_on_fresh_keys(name):
    task = zoo.task(name)
    models = [zoo.load(name, s, alpha=LEAKY_ALPHA) for s in SEEDS]
    stacked = _stacked(models)
    (loss, score), batch = _evaluate(task, stacked, jax.random.key(FRESH), BATCH[name] // 2)
    score = np.asarray(score)
    assert np.all(score >= BARS[name]), (name, score)
    if name == "context":
        assert float(eqx.filter_jit(task.ideal_observer_score)(batch)) >= 0.97
    m = zoo.metadata(name, 0, alpha=LEAKY_ALPHA)["metrics"]
    (l_rec, s_rec), _ = _evaluate(task, _stacked(models[:1]), jax.random.key(m["heldout_key"]), m["heldout_batch"])
    np.testing.assert_allclose(float(l_rec[0]), m["heldout_loss"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(float(s_rec[0]), m["heldout_score"], atol=1e-4)


def test_leaky_build_is_reproducible(tmp_path):
    a = build(tmp_path / "a", ["flipflop"], seeds=[0], progress=False, steps_scale=0.004, alpha=LEAKY_ALPHA)
    b = build(tmp_path / "b", ["flipflop"], seeds=[0], progress=False, steps_scale=0.004, alpha=LEAKY_ALPHA)
    assert a[0].name == "flipflop_alpha0.2_seed0.eqx" and a[0].read_bytes() == b[0].read_bytes()
    meta = json.loads(a[0].with_suffix(".json").read_text())
    assert meta == json.loads(b[0].with_suffix(".json").read_text())
    assert meta["dynamics"]["alpha"] == 0.2 and meta["train"]["steps"] == 18 and meta["train"]["form"] == "rate"
    with pytest.raises(ValueError, match=r"no configuration for alpha=0.5, expected one of \[1.0, 0.2\]"):
        build(tmp_path / "c", ["flipflop"], alpha=0.5)
    with pytest.raises(ValueError, match=r"no configuration for n_hidden=128 at alpha=0.2, expected one of \[64\]"):
        build(tmp_path / "c", ["flipflop"], n_hidden=128, alpha=LEAKY_ALPHA)
