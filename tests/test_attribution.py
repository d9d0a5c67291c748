"""Tests of schurjax.attribution against float64 NumPy rollouts and finite differences along Schur couplings."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax import attribution
from schurjax.tasks import TaskBatch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "attribution.py"


def np_outputs(model, W: np.ndarray, batch) -> np.ndarray:
    """Independent float64 NumPy rollout: y (B, T, n_out) with recurrent matrix W."""
    return rollout(model, batch.inputs, W)[0]


def np_loss(model, W, batch) -> float:
    y = np_outputs(model, W, batch)
    m = np.asarray(batch.mask, np.float64)
    return float(np.sum(m * (y - np.asarray(batch.targets, np.float64)) ** 2) / max(m.sum(), 1.0))


def direction(sf, i: int, j: int) -> np.ndarray:
    return np.outer(sf.Q[:, i], sf.Q[:, j])  # d W / d T_ij


@pytest.fixture(scope="module")
def flipflop():
    model = sj.zoo.load("flipflop", seed=1)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    batch = sj.zoo.task("flipflop").sample(jax.random.key(11), 8)
    return model, sf, batch


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-3), (jnp.float64, 1e-6)])
def test_first_order_equals_minus_T_times_central_difference(flipflop, dtype, rtol):
    model, sf, batch = flipflop
    pred = sj.attribute(model, sf, batch, dtype=dtype)
    assert pred.shape == (sf.couplings.shape[0],) and pred.dtype == np.float64
    rng = np.random.default_rng(0)
    big = np.argsort(-np.abs(pred))[:40]  # couplings whose gradient is well above float32 rounding
    W0 = sf.reconstruct()
    eps = 1e-6
    for q in rng.choice(big, 4, replace=False):
        i, j = sf.couplings[q]
        E = direction(sf, i, j)
        fd = (np_loss(model, W0 + eps * E, batch) - np_loss(model, W0 - eps * E, batch)) / (2 * eps)
        np.testing.assert_allclose(pred[q], -sf.T[i, j] * fd, rtol=rtol)


def test_attribution_of_zero_couplings_is_zero_and_it_follows_sf_couplings(flipflop):
    model, sf, batch = flipflop
    pred = sj.attribute(model, sf, batch)
    tvals = sf.T[sf.couplings[:, 0], sf.couplings[:, 1]]
    assert np.all(pred[tvals == 0] == 0)
    g = attribution.coupling_gradient(model, sf, batch)
    np.testing.assert_allclose(pred, -tvals * g)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(5)
    n, n_in, n_out, B, T = 8, 2, 2, 3, 6
    W_rec = rng.normal(size=(n, n)) * 1.2 / np.sqrt(n)
    model = sj.TanhRNN.from_arrays(
        rng.normal(size=(n, n_in)), W_rec, rng.normal(size=n) * 0.1, rng.normal(size=(n_out, n)), rng.normal(size=n_out)
    )
    batch = TaskBatch(
        jnp.asarray(rng.normal(size=(B, T, n_in)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, T, n_out)), jnp.float32),
        jnp.asarray(rng.random((B, T, n_out)) < 0.7, jnp.float32),
    )
    return model, sj.ordered_schur(np.asarray(model.W_rec, np.float64)), batch


def test_exact_gauss_newton_diagonal_matches_output_finite_differences(small):
    model, sf, batch = small
    G = attribution.coupling_curvature(model, sf, batch, probes=None, dtype=jnp.float64)
    W0 = sf.reconstruct()
    m = np.asarray(batch.mask, np.float64)
    eps = 1e-6
    for q in range(0, sf.couplings.shape[0], 3):
        i, j = sf.couplings[q]
        E = direction(sf, i, j)
        dy = (np_outputs(model, W0 + eps * E, batch) - np_outputs(model, W0 - eps * E, batch)) / (2 * eps)
        ref = 2.0 / m.sum() * np.sum(m * dy**2)
        np.testing.assert_allclose(G[q], ref, rtol=1e-6, atol=1e-12)


def test_probe_estimate_of_the_curvature_is_unbiased(small):
    model, sf, batch = small
    exact = attribution.coupling_curvature(model, sf, batch, probes=None)
    est = attribution.coupling_curvature(model, sf, batch, key=jax.random.key(3), probes=500)
    keep = exact > 1e-3 * exact.max()
    ratio = est[keep] / exact[keep]
    assert keep.sum() >= 10
    # relative error per coupling sqrt(2/500) = 6.3 %; the couplings share the probes, so their mean errs nearly
    # as much (0.01-0.04 over five keys); a wrong scale (a factor 2) is far outside both bounds
    assert abs(ratio.mean() - 1) < 0.1
    assert np.all(np.abs(ratio - 1) < 0.35)


def test_second_order_adds_the_curvature_term_and_improves_on_a_trained_network(flipflop):
    model, sf, batch = flipflop
    v = sj.ablate.single_couplings(sf)
    rows = np.array([lab["row"] for lab in v.labels])
    cols = np.array([lab["col"] for lab in v.labels])
    index = {(int(i), int(j)): q for q, (i, j) in enumerate(sf.couplings)}
    sel = np.array([index[(i, j)] for i, j in zip(rows, cols, strict=True)])
    exact = sj.evaluate(model, sf, v, batch).delta_loss
    p1 = sj.attribute(model, sf, batch)[sel]
    p2 = sj.attribute(model, sf, batch, order=2, key=jax.random.key(0))[sel]
    a1, a2 = attribution.agreement(p1, exact), attribution.agreement(p2, exact)
    assert a2["spearman"] > a1["spearman"] and a2["spearman"] > 0.9
    assert np.all(p2 >= p1)  # the Gauss-Newton term is >= 0


def test_agreement_metrics_on_known_rankings():
    rng = np.random.default_rng(1)
    exact = rng.normal(size=500)
    same = attribution.agreement(exact * 3.0, exact)
    assert same["spearman"] == pytest.approx(1) and same["sign_agreement"] == 1 and same["top_1%"] == 1
    opposite = attribution.agreement(-exact, exact)
    assert opposite["spearman"] == pytest.approx(-1) and opposite["sign_agreement"] == 0 and opposite["top_5%"] == 0
    shifted = exact.copy()
    top5 = np.argsort(-exact)[:5]
    shifted[top5] = -10.0  # the exact top 1 % (5 of 500) predicted last
    assert attribution.agreement(shifted, exact)["top_1%"] == 0


def _fake_evaluate(table: np.ndarray, calls: list):
    def evaluate(model, sf, variants, batch, **kw):
        idx = np.array([table["index"][(lab["row"], lab["col"])] for lab in variants.labels])
        calls.append(len(idx))
        return types.SimpleNamespace(delta_loss=table["values"][idx])

    return evaluate


def test_screen_stops_when_the_top_k_is_stable_and_finds_it(small):
    model, sf, batch = small
    v = sj.ablate.single_couplings(sf)
    K = len(v)
    rng = np.random.default_rng(2)
    exact = rng.normal(size=K)
    vindex = {(lab["row"], lab["col"]): q for q, lab in enumerate(v.labels)}
    calls: list[int] = []
    ev = _fake_evaluate({"index": vindex, "values": exact}, calls)
    cindex = {(int(i), int(j)): q for q, (i, j) in enumerate(sf.couplings)}
    to_couplings = np.array([cindex[(lab["row"], lab["col"])] for lab in v.labels])

    perfect = np.zeros(sf.couplings.shape[0])
    perfect[to_couplings] = exact
    r = attribution.screen(model, sf, batch, pred=perfect, k=2, start=4, evaluate=ev)
    assert set(r.top.tolist()) == set(np.argsort(-exact)[:2].tolist())
    assert r.rounds == [(4, True), (8, False)] and r.n_evaluated == 8 and calls == [4, 4]
    np.testing.assert_array_equal(r.delta_loss, exact[r.evaluated])

    calls.clear()
    worst = np.zeros(sf.couplings.shape[0])
    worst[to_couplings] = -exact  # attribution ranks the true top last: screening must run to the end
    r = attribution.screen(model, sf, batch, pred=worst, k=2, start=4, evaluate=ev)
    assert r.n_evaluated == K and sum(calls) == K
    assert set(r.top.tolist()) == set(np.argsort(-exact)[:2].tolist())


def test_errors_name_the_argument(flipflop, small):
    model, sf, batch = flipflop
    with pytest.raises(ValueError, match="attribute: dtype must be jnp.float32 or jnp.float64"):
        sj.attribute(model, sf, batch, dtype=jnp.int32)
    with pytest.raises(ValueError, match="attribute: order must be 1 or 2, got 3"):
        sj.attribute(model, sf, batch, order=3)
    with pytest.raises(ValueError, match="attribute: key must be a PRNG key"):
        sj.attribute(model, sf, batch, order=2)
    with pytest.raises(ValueError, match="attribute: sf is not the Schur form of model.W_rec"):
        sj.attribute(model, sj.ordered_schur(np.asarray(sj.zoo.load("flipflop", seed=2).W_rec, np.float64)), batch)
    with pytest.raises(ValueError, match=r"attribute: batch must be a TaskBatch with inputs \(B, T, n_in=3\)"):
        sj.attribute(model, sf, small[2])
    with pytest.raises(ValueError, match="coupling_curvature: probes=None .exact. needs one backward pass per masked"):
        attribution.coupling_curvature(model, sf, sj.zoo.task("flipflop").sample(jax.random.key(0), 64), probes=None)
    with pytest.raises(ValueError, match="screen: k must be an int in"):
        attribution.screen(model, sf, batch, key=jax.random.key(0), k=0)


def test_benchmark_smoke(flipflop):
    """benchmarks/attribution.py's per-model analysis on the fixture (exact sweep, both orders, real screening)."""
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("attribution_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, sf, batch = flipflop
    r = bench.analyse(model, sf, batch)
    assert r["K"] == len(sj.ablate.single_couplings(sf)) and r["k"] == int(np.ceil(0.01 * r["K"]))
    assert 0 < r["screen"]["n_evaluated"] <= r["K"] and 0 <= r["screen"]["recall_of_exhaustive_top"] <= 1
    assert r["k"] <= r["oracle"]["second"] <= r["K"]
    r.update(task="flipflop", seed=1)
    assert "| flipflop 1 (n=64) |" in bench.format_markdown({"zoo": [r]})
