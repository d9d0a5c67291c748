"""sj.compress (schurjax.pruning): masked fine-tuning in Schur coordinates keeps the removed couplings exactly zero
and (spectrum frozen) the block diagonal bitwise; an exported model keeps its criterion on fresh trials (float64
NumPy rollout against the base model); a set that fails the bound is not exported; the baselines remove what they
say; the command."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax import cli, pruning
from schurjax.models import task_params

FAST = {"trials": 24, "decision_trials": 128, "rank_trials": 16, "bootstrap": 100, "batch_size": 16}
FRESH = 4096
FRESH_KEY = 987_654_321  # never used by the code under test


def _task():
    return sj.tasks.get("flipflop", bits=2, steps=10)


def _model(kind: str = "tanh"):
    k = jax.random.key(3)
    if kind == "tanh":
        return sj.TanhRNN(2, 8, 2, key=k, gain=1.2)
    return sj.RateRNN(2, 8, 2, alpha=0.5, nonlinearity="relu", form="current", learn_h0=True, key=k, gain=1.2)


def _blocks_mask(sf):
    d = np.zeros((sf.n, sf.n), bool)
    for s, size in sf.blocks:
        d[s : s + size, s : s + size] = True
    return d


@pytest.mark.parametrize(
    "kind,spectrum,maps", [("tanh", "frozen", "frozen"), ("tanh", "free", "free"), ("current", "frozen", "frozen")]
)
def test_masked_fine_tuning_pins_removed_couplings_and_spectrum(kind, spectrum, maps):
    model = _model(kind)
    res = sj.compress(
        model,
        _task(),
        key=jax.random.key(0),
        tol=10.0,  # every round passes: the test is about the constraints
        schedule=[0.3, 0.6],
        start="none",
        steps=15,
        lr=1e-2,
        spectrum=spectrum,
        maps=maps,
        baselines=False,
        magnitude_finetune=False,
        **FAST,
    )
    assert res.accepted and res.T is not None
    sf = sj.schur.schur_of(model)  # the coordinates sj.compress uses: the model's own order
    T0, T = np.asarray(sf.T, np.float32), res.T
    r = res.removed
    assert len(r) == round(0.6 * len(sf.couplings))
    assert np.all(T[r[:, 0], r[:, 1]] == 0.0)  # exactly zero
    below = np.tril(np.ones_like(T, bool), -1) & ~_blocks_mask(sf)
    assert np.all(T[below] == 0.0)  # still quasi-triangular
    kept = np.ones(len(sf.couplings), bool)
    kept[[list(map(tuple, sf.couplings)).index(tuple(x)) for x in r]] = False
    kc = sf.couplings[kept]
    assert np.any(T[kc[:, 0], kc[:, 1]] != T0[kc[:, 0], kc[:, 1]])  # fine-tuning moved the kept couplings
    d = _blocks_mask(sf)
    if spectrum == "frozen":
        np.testing.assert_array_equal(T[d], T0[d])  # bitwise: the eigenvalues are kept exactly
        ev0 = np.sort_complex(np.linalg.eigvals(np.asarray(model.W_rec, np.float64)))
        ev = np.sort_complex(np.linalg.eigvals(np.asarray(res.model.W_rec, np.float64)))
        np.testing.assert_allclose(ev, ev0, atol=1e-4)
    else:
        assert np.any(T[d] != T0[d])
    # the exported W is Q T Q^T (float64 product, stored in float32)
    np.testing.assert_allclose(np.asarray(res.model.W_rec), sf.Q @ T.astype(np.float64) @ sf.Q.T, atol=2e-6)
    names = ["W_in", "b", "W_out", "b_out"] + (["h0"] if kind != "tanh" else [])
    same = [np.array_equal(np.asarray(getattr(res.model, k)), np.asarray(getattr(model, k))) for k in names]
    assert all(same) if maps == "frozen" else not all(same)
    assert (res.model.alpha, res.model.nonlinearity, res.model.form) == (model.alpha, model.nonlinearity, model.form)


def _fresh_check(base, compressed, task, criterion, tol):
    """The criterion on FRESH trials from an unused key, by the float64 NumPy rollout."""
    b = task.sample(jax.random.key(FRESH_KEY), FRESH)
    x, t, m = (np.asarray(a, np.float64) for a in (b.inputs, b.targets, b.mask))
    y0, y1 = rollout(base, x)[0], rollout(compressed, x)[0]
    l0, l1 = (np.sum(m * (y - t) ** 2) / m.sum() for y in (y0, y1))
    score = [float(task.score(jax.numpy.asarray(y, jax.numpy.float32), b)) for y in (y0, y1)]
    rel, drop = (l1 - l0) / l0, score[0] - score[1]
    return (rel <= tol) if criterion == "loss" else (drop <= tol), rel, drop


@pytest.mark.parametrize("kind,criterion", [("tanh", "loss"), ("tanh", "score"), ("current", "loss")])
def test_exported_model_keeps_its_criterion_on_fresh_trials(tmp_path, kind, criterion):
    model, task = _model(kind), _task()
    res = sj.compress(model, task, key=jax.random.key(1), criterion=criterion, schedule=0.25, steps=10, **FAST)
    assert res.accepted, res.decision
    spec = sj.sweeps.resolve_models([(model, task, "ff")])[0]
    written = pruning.write_folder(tmp_path, res, spec)
    loaded, meta = sj.load_model(written["model"])  # every form: the leaky ones in the RateRNN format
    assert loaded.dynamics == model.dynamics
    c = meta["compression"]
    assert c["criterion"] == criterion and c["heldout"]["holds"] and c["trials"] == FAST["decision_trials"]
    assert c["keys"]["heldout"] != c["keys"]["selection"] != c["keys"]["validation"]
    assert meta["removed_couplings"] == res.removed.tolist() and meta["task"]["params"] == task_params(task)
    bound = c["heldout"]["rel_ucb"] if criterion == "loss" else c["heldout"]["drop_ucb"]
    assert bound <= c["tol"] and c["loss_ratio"] == pytest.approx(1 + c["heldout"]["rel"], rel=1e-9)
    ok, rel, drop = _fresh_check(model, loaded, task, criterion, c["tol"])
    assert ok, (rel, drop)
    if kind == "tanh":
        torch = pytest.importorskip("torch")
        pt = torch.load(tmp_path / f"ff-{criterion}.pt", weights_only=True)
        rnn, lin = loaded.to_torch()
        rnn.load_state_dict(pt["rnn"])
        lin.load_state_dict(pt["readout"])
        x = np.asarray(task.sample(jax.random.key(5), 3).inputs)
        with torch.no_grad():
            y = lin(rnn(torch.as_tensor(x))[0]).numpy()
        np.testing.assert_allclose(y, np.asarray(jax.vmap(loaded)(x)), atol=1e-5)
    elif (tmp_path / f"ff-{criterion}.pt").exists():  # torch installed: the form's own torch module
        torch = pytest.importorskip("torch")
        from schurjax.store.torch_io import to_torch

        net = to_torch(loaded)
        net.load_state_dict(torch.load(tmp_path / f"ff-{criterion}.pt", weights_only=True)["model"])


def test_a_failing_set_is_not_exported(tmp_path, monkeypatch, capsys):
    real = pruning.decision_figures

    def never(*a, **k):
        return {**real(*a, **k), "holds": False}

    monkeypatch.setattr(pruning, "decision_figures", never)
    model, task = _model(), _task()
    res = sj.compress(model, task, key=jax.random.key(2), schedule=0.5, steps=2, baselines=False, **FAST)
    assert not res.accepted and res.model is None and len(res.removed) == 0
    assert res.decision and not res.decision["holds"]  # the failing candidate's figures are reported
    spec = sj.sweeps.resolve_models([(model, task, "ff")])[0]
    (tmp_path / "ff-loss.eqx").write_text("stale")
    pruning.write_folder(tmp_path, res, spec)
    assert not list(tmp_path.glob("*.eqx")) and "Nothing exported" in (tmp_path / "report.md").read_text()
    path = sj.save_model(tmp_path / "m" / "ff.eqx", model, {"task": {"name": task.name, "params": task_params(task)}})
    flags = ["--steps", "2", "--schedule", "0.5", "--trials", "24", "--decision-trials", "64", "--bootstrap", "20"]
    rc = cli.main(["compress", str(path), "--out", str(tmp_path / "c"), "--no-baselines", *flags])
    assert rc == 0 and "nothing exported" in capsys.readouterr().out
    assert not list((tmp_path / "c").glob("*.eqx")) and (tmp_path / "c" / "result.json").is_file()


def test_baselines_remove_the_stated_counts_and_norms():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(9, 9))
    sf = sj.ordered_schur(W)
    for k in (0, 5, 81):
        m = pruning.magnitude_mask(W, count=k)
        assert int((m == 0).sum()) == k
        if 0 < k < 81:
            assert np.abs(W[m == 0]).max() <= np.abs(W[m == 1]).min()
    nu = 1.3
    m = pruning.magnitude_mask(W, norm=nu)
    gone = np.sort(np.abs(W[m == 0]))
    assert np.linalg.norm(gone) <= nu < np.sqrt(np.sum(gone**2) + np.abs(W[m == 1]).min() ** 2)
    rc = pruning.random_couplings(jax.random.key(0), sf, count=7)
    assert rc.shape == (7, 2) and len({tuple(x) for x in rc}) == 7
    assert {tuple(x) for x in rc} <= {tuple(x) for x in sf.couplings}
    rc = pruning.random_couplings(jax.random.key(1), sf, norm=nu)
    assert np.linalg.norm(sf.T[rc[:, 0], rc[:, 1]]) <= nu
    r, Wr = pruning.low_rank_for_norm(W, 2.0)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.linalg.matrix_rank(Wr) == r and np.linalg.norm(W - Wr) <= 2.0 < np.sqrt(np.sum(s[r - 1 :] ** 2))
    # in a result: the rows say what they removed
    model, task = _model(), _task()
    res = sj.compress(model, task, key=jax.random.key(4), schedule=0.25, steps=0, magnitude_finetune=False, **FAST)
    W0 = np.asarray(model.W_rec, np.float64)
    best = next(r for r in res.curve if r.get("search"))  # the one-shot set: the baselines' reference
    assert best["holds"] and best["val_passes"] and res.one_shot == best["decision"]
    k = best["removed"]
    rows = {(r["method"], r["match"]): r for r in res.baselines}
    assert rows[("magnitude", "count")]["removed"] == k == rows[("random couplings", "count")]["removed"]
    mm = pruning.magnitude_mask(W0, count=k)
    assert rows[("magnitude", "count")]["delta_norm"] == pytest.approx(np.linalg.norm(W0 * (1 - mm)), rel=1e-5)
    nu = next(r["delta_norm"] for r in res.curve if r["method"] == "one-shot" and r["removed"] == k)
    for (method, match), r in rows.items():
        if match == "norm":  # matched to the one-shot set's ||dW||_F: never more (float32 storage aside)
            assert r["delta_norm"] <= nu * (1 + 1e-5), (method, r["delta_norm"], nu)
    assert rows[("low rank", "norm")]["rank"] == pruning.low_rank_for_norm(W0, nu)[0]


def test_command_exports_with_the_evidence(tmp_path, capsys):
    model, task = _model(), _task()
    path = sj.save_model(tmp_path / "m" / "ff.eqx", model, {"task": {"name": task.name, "params": task_params(task)}})
    flags = ["--steps", "3", "--schedule", "0.5", "--trials", "24", "--decision-trials", "128", "--bootstrap", "50"]
    rc = cli.main(["compress", str(path), "--out", str(tmp_path / "c"), "--no-baselines", *flags])
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "c" / "result.json").read_text())
    assert rc == 0 and res["accepted"] and "couplings removed; held-out (128 trials)" in out
    small, meta = sj.load_model(tmp_path / "c" / "ff-loss.eqx")
    assert meta["removed_couplings"] == res["removed"] and meta["command"][:2] == ["schurjax", "compress"]
    assert meta["compression"]["heldout"]["rel_ucb"] <= 0.05 and (tmp_path / "c" / "curve.csv").is_file()
    assert cli.main(["compress", str(path), "--out", str(tmp_path / "d"), "--schedule", "2"]) == 2
    assert "--schedule: a share per round must lie in (0, 1]" in capsys.readouterr().err
