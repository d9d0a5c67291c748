"""Tests of schurjax.dynamics: fixed points against SciPy (float64, same starts) and against analytic networks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import optimize

import schurjax as sj
from schurjax import dynamics

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "fixed_points.py"

TOL = 1e-6


def residual(W: np.ndarray, u: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.tanh(h @ W.T + u) - h, axis=-1)


def scipy_points(W: np.ndarray, u: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Independent reference: SciPy's hybrid Powell root finder (MINPACK) in float64 from every start, deduped."""
    n = W.shape[0]

    def F(h):
        return np.tanh(W @ h + u) - h

    def J(h):
        return (1.0 - np.tanh(W @ h + u) ** 2)[:, None] * W - np.eye(n)

    found = []
    for s in starts:
        sol = optimize.root(F, s, jac=J, method="hybr", options={"xtol": 1e-13})
        if np.linalg.norm(F(sol.x)) <= TOL and not any(np.linalg.norm(sol.x - f) < 1e-5 for f in found):
            found.append(sol.x)
    return np.array(found).reshape(-1, n)


def model_from(W: np.ndarray, b: np.ndarray) -> sj.TanhRNN:
    n = W.shape[0]
    return sj.TanhRNN.from_arrays(np.zeros((n, 1)), W, b, np.ones((1, n)), np.zeros(1))


@pytest.fixture(scope="module")
def flipflop():
    model = sj.zoo.load("flipflop", seed=0)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    single = sj.ablate.single_couplings(sf)
    rng = np.random.default_rng(0)
    t_to_d = sj.ablate.all_nonnormal(sf)
    control = sj.ablate.matched_norm(jax.random.key(1), sf, t_to_d)
    variants = sj.ablate.Variants.concat(t_to_d, single[rng.choice(len(single), 3)], control)
    fp = dynamics.fixed_points(model, sf, variants, key=jax.random.key(0), task=sj.zoo.task("flipflop"), n_starts=24)
    return model, sf, variants, fp


def test_points_agree_with_scipy_from_the_same_starts(flipflop):
    model, sf, variants, fp = flipflop
    u = np.asarray(model.b, np.float64)
    dT = variants.delta_T()
    A = fp.base.points[fp.base.stable]
    for k in range(len(variants)):
        W = sf.Q @ (sf.T + dT[k]) @ sf.Q.T
        relaxed = A.copy()
        for _ in range(fp.relax_steps):  # the base attractors iterated under the variant's own map
            relaxed = np.tanh(relaxed @ W.T + u)
        starts = np.concatenate([fp.base.points, relaxed, fp.starts])
        ref = scipy_points(W, u, starts)
        ours = fp.points[k]
        assert ours.dtype == np.float64 and ours.shape[1] == sf.n
        d = np.linalg.norm(ours[:, None] - ref[None], axis=-1)  # (ours, ref)
        assert ref.shape[0] == ours.shape[0], (k, ref.shape, ours.shape)
        assert np.all(d.min(axis=1) <= 1e-6) and np.all(d.min(axis=0) <= 1e-6), k


def test_every_reported_point_is_a_fixed_point_in_float64(flipflop):
    model, sf, variants, fp = flipflop
    u = np.asarray(model.b, np.float64)
    dT = variants.delta_T()
    for k in range(len(variants)):
        W = sf.Q @ (sf.T + dT[k]) @ sf.Q.T
        assert np.all(residual(W, u, fp.points[k]) <= TOL)
        # points are distinct and their stability is that of diag(1 - h²) W (NumPy eigenvalues here)
        P = fp.points[k]
        if len(P) > 1:
            D = np.linalg.norm(P[:, None] - P[None], axis=-1) + np.eye(len(P))
            assert D.min() > 1e-5
        rho = np.array([np.abs(np.linalg.eigvals((1 - h**2)[:, None] * W)).max() for h in P])
        np.testing.assert_array_equal(fp.stable[k], rho < 1)


def test_flipflop_base_has_eight_attractors_and_schur_ablation_keeps_them(flipflop):
    _, _, variants, fp = flipflop
    assert fp.base.stable.sum() == 8  # 2^3 memory states at zero input
    assert len(fp.base) == 27 and sorted(np.bincount(fp.base.n_unstable).tolist()) == [1, 6, 8, 12]
    assert fp.n_stable[0] == 8 and fp.lost[0] == 0 and fp.gained[0] == 0  # T -> D keeps all eight
    assert fp.lost[-1] == 8  # a random edit of the same Frobenius norm loses them all
    cols = fp.columns()
    assert set(cols) >= {"n_stable", "lost", "gained", "max_displacement", "leading_freq"}
    assert all(v.shape == (len(variants),) for v in cols.values())


def test_analytic_decoupled_network():
    """W = diag(1.5, 1.5, 0.5), u = 0: h_i = ±h* or 0 per bistable unit; 9 fixed points, 4 stable."""
    a = np.array([1.5, 1.5, 0.5])
    model = model_from(np.diag(a), np.zeros(3))
    sf = sj.ordered_schur(np.diag(a))
    v = sj.ablate.from_masks(np.ones((1, 3, 3)))  # an edit that changes nothing
    fp = dynamics.fixed_points(
        model, sf, v, key=jax.random.key(2), n_starts=16, base_starts=512, n_trials=64, noise=0.3
    )
    hstar = optimize.brentq(lambda h: np.tanh(1.5 * h) - h, 0.1, 1.0)
    expected = np.array([[s1, s2, 0.0] for s1 in (-hstar, 0, hstar) for s2 in (-hstar, 0, hstar)])
    got = fp.base.points
    assert got.shape == (9, 3)
    d = np.linalg.norm(got[:, None] - expected[None], axis=-1)
    assert np.all(d.min(axis=1) < 1e-9) and np.all(d.min(axis=0) < 1e-9)
    n_nonzero = (np.abs(got[:, :2]) > 0.1).sum(axis=1)
    np.testing.assert_array_equal(fp.base.stable, n_nonzero == 2)
    np.testing.assert_array_equal(fp.base.n_unstable, 2 - n_nonzero)
    assert set(fp.base.kind) == {"stable", "saddle"}
    assert fp.lost[0] == 0 and fp.gained[0] == 0 and fp.max_displacement[0] < 1e-12
    assert (fp.status == 0).all()


def test_an_optimistix_solver_object_finds_the_analytic_points():
    """``solver=`` takes the optimistix object itself: here a least-squares solver of ½||F||² (the branch that also
    searches in float64)."""
    import optimistix as optx

    solver = optx.Dogleg(rtol=1e-8, atol=1e-8)
    a = np.array([1.5, 0.5])
    model = model_from(np.diag(a), np.zeros(2))
    sf = sj.ordered_schur(np.diag(a))
    fp = dynamics.fixed_points(
        model,
        sf,
        sj.ablate.from_masks(np.ones((1, 2, 2))),
        key=jax.random.key(2),
        n_starts=8,
        base_starts=64,
        n_trials=16,
        noise=0.3,
        solver=solver,
    )
    hstar = optimize.brentq(lambda h: np.tanh(1.5 * h) - h, 0.1, 1.0)
    expected = np.array([[-hstar, 0.0], [0.0, 0.0], [hstar, 0.0]])
    d = np.linalg.norm(fp.base.points[:, None] - expected[None], axis=-1)
    assert fp.base.points.shape == (3, 2) and np.all(d.min(axis=1) < 1e-9) and np.all(d.min(axis=0) < 1e-9)


def test_removing_a_coupling_loses_an_attractor():
    """T = [[1.5, 1], [0, 0.2]]: unit 2 sits at v = 0.5 and feeds unit 1 the bias that cancels u_1 = -0.5, so unit 1
    is bistable; without the coupling its bias is -0.5, beyond the saddle-node at |b| ≈ 0.208: one attractor."""
    W = np.array([[1.5, 1.0], [0.0, 0.2]])
    b = np.array([-0.5, np.arctanh(0.5) - 0.1])
    model = model_from(W, b)
    sf = sj.ordered_schur(W)
    v = sj.ablate.single_couplings(sf)
    assert len(v) == 1
    fp = dynamics.fixed_points(model, sf, v, key=jax.random.key(3), n_starts=16, base_starts=64, noise=0.5)
    assert fp.base.stable.sum() == 2 and len(fp.base) == 3
    assert fp.n_stable[0] == 1 and fp.lost[0] == 1 and fp.gained[0] == 0 and len(fp.sets[0]) == 1
    h1 = optimize.brentq(lambda h: np.tanh(1.5 * h - 0.5) - h, -1.0, 0.0)  # the surviving attractor, analytic
    np.testing.assert_allclose(fp.points[0][0], [h1, 0.5], atol=1e-9)
    survivor = fp.base.points[fp.base.stable][fp.match[0] >= 0][0]
    assert survivor[0] < 0
    np.testing.assert_allclose(fp.max_displacement[0], np.linalg.norm(survivor - [h1, 0.5]), rtol=1e-9)


def test_rotational_point_and_its_frequency():
    """W = r R(θ) with r = 1.2: the origin is an unstable focus with leading eigenvalue r e^{iθ}."""
    r, th = 1.2, 0.3
    W = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    model = model_from(W, np.zeros(2))
    sf = sj.ordered_schur(W)
    # the sizes of the test above, so that both share one compiled program
    fp = dynamics.fixed_points(
        model, sf, sj.ablate.from_masks(np.ones((1, 2, 2))), key=jax.random.key(4), n_starts=16, base_starts=64
    )
    (i,) = np.nonzero(np.linalg.norm(fp.base.points, axis=1) < 1e-9)[0]
    assert fp.base.kind[i] == "rotational" and not fp.base.stable[i]
    np.testing.assert_allclose(fp.base.leading[i], r * np.exp(1j * th), rtol=1e-12)
    np.testing.assert_allclose(fp.leading_freq[0], th, rtol=1e-12)


def test_errors_name_the_argument(flipflop):
    model, sf, variants, _ = flipflop
    other = sj.ordered_schur(np.asarray(sj.zoo.load("flipflop", seed=1).W_rec, np.float64))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="sf is not the Schur form of model.W_rec"):
        dynamics.fixed_points(model, other, variants, key=key)
    with pytest.raises(ValueError, match="variants were built from a different SchurForm"):
        dynamics.fixed_points(sj.zoo.load("flipflop", seed=1), other, variants, key=key)
    with pytest.raises(ValueError, match=r"x must be a finite constant input of shape \(n_in=3,\)"):
        dynamics.fixed_points(model, sf, variants, key=key, x=np.zeros(2))
    with pytest.raises(ValueError, match="tol must be a positive finite float, got -1"):
        dynamics.fixed_points(model, sf, variants, key=key, tol=-1)
    with pytest.raises(ValueError, match="solver must be one of"):
        dynamics.fixed_points(model, sf, variants, key=key, solver="bfgs")
    with pytest.raises(ValueError, match="or an optimistix root finder or least-squares solver, got"):
        dynamics.fixed_points(model, sf, variants, key=key, solver=object())
    with pytest.raises(ValueError, match="search_dtype must be jnp.float32 or jnp.float64, got 'int8'"):
        dynamics.fixed_points(model, sf, variants, key=key, search_dtype="int8")
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        dynamics.fixed_points(model, sf, variants, key=0)


def test_benchmark_smoke(flipflop, tmp_path, capsys):
    """benchmarks/fixed_points.py at the fixture's sizes (its compiled program is reused): single + SciPy parts."""
    spec = importlib.util.spec_from_file_location("fixed_points_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["fixed_points_bench"] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "fp.json"
    rec = bench.main(
        ["--parts", "single,scipy", "--limit", "6", "--n-starts", "24", "--scipy-sample", "2", "--out", str(out)]
    )
    assert json.loads(out.read_text())["single"]["K"] == 6 == rec["single"]["K"]
    assert rec["single"]["var_per_s"] > 0 and rec["single"]["max_residual"] <= TOL
    assert rec["scipy"]["agree_1e-6"] and rec["single"]["base"]["n_stable"] == 8
    assert "var/s" in capsys.readouterr().out
