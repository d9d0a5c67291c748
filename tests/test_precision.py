"""The error bound of the default rollout: every variant of a trained zoo network against an independent float64
NumPy rollout of ``W_k = Q (T + dT_k) Q^T``, including the smallest effects."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax import engine
from schurjax.engine import evaluation
from schurjax.engine import kernels as _kernels

# The contract (benchmarks/RESULTS.md): relative error against float64, with the error of a metric x taken as
# |x - ref| / max(|ref|, 1e-5 * base_loss).
BOUND = {"delta_loss": 1e-3, "output_distance": 1e-4, "loss": 1e-5, "hidden_distance": 1e-4}


def reference(model, sf, variants, batch) -> dict[str, np.ndarray | float]:
    """The metrics of every variant (and the base) from float64 NumPy rollouts."""
    Q, T = np.asarray(sf.Q), np.asarray(sf.T)
    dT = variants.delta_T(T=T)
    W = np.concatenate([(Q @ T @ Q.T)[None], Q @ (T[None] + dT) @ Q.T])
    y, h = rollout(model, batch.inputs, W)
    tgt, msk = np.asarray(batch.targets, np.float64), np.asarray(batch.mask, np.float64)
    loss = (msk * (y - tgt) ** 2).sum(axis=(1, 2, 3)) / msk.sum()
    return {
        "base_loss": loss[0],
        "loss": loss[1:],
        "delta_loss": loss[1:] - loss[0],
        "output_distance": ((y[1:] - y[0]) ** 2).mean(axis=(1, 2, 3)),
        "hidden_distance": np.linalg.norm(h[1:] - h[0], axis=-1).mean(axis=1),
    }


def rel_error(got: np.ndarray, want: np.ndarray, base_loss: float) -> np.ndarray:
    return np.abs(got - want) / np.maximum(np.abs(want), 1e-5 * base_loss)


@pytest.fixture(scope="module")
def zoo_case():
    """flip-flop zoo network (n = 64), short trials; every single coupling, block coupling and band, all
    nonnormal, and each of the 8 largest couplings scaled by 1 - 1e-6 ... 0 (effects down to ~1e-9 relative)."""
    model = sj.zoo.load("flipflop", seed=0)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    batch = sj.tasks.get("flipflop", steps=50).sample(jax.random.key(7), 12)
    top = np.argsort(-np.abs(sf.T[sf.couplings[:, 0], sf.couplings[:, 1]]))[:8]
    scaled = [sj.ablate.scaling(sf, [1 - 1e-6, 1 - 1e-4, 0.99, 0.0], which=[int(c)]) for c in top]
    sparse = sj.ablate.Variants.concat(sj.ablate.single_couplings(sf), sj.ablate.block_couplings(sf), *scaled)
    dense = sj.ablate.Variants.concat(sj.ablate.bands(sf), sj.ablate.all_nonnormal(sf))
    variants = {"shared": sparse, "dense": dense}
    return model, sf, batch, variants, {path: reference(model, sf, v, batch) for path, v in variants.items()}


def take(ref: dict, idx) -> dict:
    return {name: value if np.ndim(value) == 0 else value[idx] for name, value in ref.items()}


@pytest.mark.parametrize("path", ["shared", "dense"])
def test_default_rollout_holds_the_error_bound_on_a_zoo_network(zoo_case, path):
    model, sf, batch, variants, refs = zoo_case
    v, ref = variants[path], refs[path]
    assert engine.choose_path(v.max_nnz, sf.n) == path  # the path "auto" takes for these variants
    res = sj.evaluate(model, sf, v, batch)
    assert res.base_loss == pytest.approx(ref["base_loss"], rel=1e-12)
    for name, bound in BOUND.items():
        err = rel_error(getattr(res, name), ref[name], ref["base_loss"])
        assert err.max() <= bound, f"{name}: max error {err.max():.2e} at {v.labels[int(err.argmax())]['label']}"
    if path == "shared":  # the smallest effects are in the set, and their sign is right
        rel = np.abs(ref["delta_loss"]) / ref["base_loss"]
        assert rel.min() < 1e-8
        sure = np.abs(ref["delta_loss"]) > 1e-5 * ref["base_loss"]
        assert np.array_equal(np.sign(res.delta_loss[sure]), np.sign(ref["delta_loss"][sure]))


def test_plain_rollout_loses_what_the_default_keeps(zoo_case):
    """The opt-out (``deviation=False``) differences two float32 trajectories: on the same variants its loss
    change misses the bound the default holds (the reason the deviation form is the default)."""
    model, sf, batch, variants, refs = zoo_case
    v, ref = variants["shared"], refs["shared"]
    plain = sj.evaluate(model, sf, v, batch, deviation=False)
    assert rel_error(plain.delta_loss, ref["delta_loss"], ref["base_loss"]).max() > 10 * BOUND["delta_loss"]
    np.testing.assert_allclose(plain.loss, ref["loss"], rtol=1e-5)  # the loss itself is fine either way


def test_refinement_reruns_ill_conditioned_variants_in_float64(zoo_case, monkeypatch):
    """With the threshold lowered so that most variants qualify, the refined results are float64-exact and
    still independent of the chunk size."""
    model, sf, batch, variants, refs = zoo_case
    v, ref = variants["shared"][::7], take(refs["shared"], slice(None, None, 7))
    monkeypatch.setattr(evaluation, "REFINE_CONDITION", 3.0)
    res = sj.evaluate(model, sf, v, batch, compiled_chunk=64)
    err = rel_error(res.delta_loss, ref["delta_loss"], ref["base_loss"])
    fine = err < 1e-9
    assert 0.5 < fine.mean() < 1.0  # most were refined, not all (the well-conditioned ones stay float32)
    other = sj.evaluate(model, sf, v, batch, compiled_chunk=24)
    for name in ("loss", "delta_loss", "output_distance", "hidden_distance"):
        np.testing.assert_array_equal(getattr(other, name), getattr(res, name), err_msg=name)


def test_tanh_difference_against_float64():
    """``tanh(a + d) - tanh(a)``: relative error <= 4e-7 for |d| < 0.5 (saturated units included) and no bias,
    absolute error <= 7e-7 |d| for any d."""
    rng = np.random.default_rng()
    N = 400_000
    a = np.concatenate([rng.normal(size=N) * 3, rng.uniform(-12, 12, N)]).astype(np.float32)
    d = (10 ** rng.uniform(-9, 1, 2 * N) * rng.choice([-1.0, 1.0], 2 * N)).astype(np.float32)
    a64, d64 = a.astype(np.float64), d.astype(np.float64)
    # float64 truth without cancellation: sinh(d) / (cosh(a + d) cosh(a))
    want = np.sinh(d64) / (np.cosh(a64 + d64) * np.cosh(a64))
    e = np.exp(-2 * np.abs(a64))
    s0 = (4 * e / (1 + e) ** 2).astype(np.float32)
    got = np.asarray(jax.jit(_kernels._tanh_diff)(a, np.tanh(a64).astype(np.float32), s0, d), np.float64)
    small = np.abs(d64) < 0.5
    keep = small & (want != 0)
    rel = (got - want)[keep] / want[keep]
    assert np.max(np.abs(rel)) < 4e-7
    assert abs(np.mean(rel)) < 2e-8  # errs both ways: no drift when carried over many steps
    assert np.max(np.abs(got - want) / np.abs(d64)) < 7e-7
    zero = jax.jit(_kernels._tanh_diff)(a, np.tanh(a), s0, np.zeros_like(a))
    assert np.all(np.asarray(zero) == 0.0)  # a zero change gives an exactly zero deviation


def test_float64_rollout_matches_numpy(zoo_case):
    model, sf, batch, variants, refs = zoo_case
    v, ref = variants["shared"][::40], take(refs["shared"], slice(None, None, 40))
    res = sj.evaluate(model, sf, v, batch, dtype=jnp.float64)
    for name in ("loss", "delta_loss", "output_distance", "hidden_distance"):
        assert rel_error(getattr(res, name), ref[name], ref["base_loss"]).max() < 1e-9, name


def _softplus_truth(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``softplus(a + d) - softplus(a)`` to ~1e-15 relative, checked against mpmath (50 digits) on a subset."""
    sig = np.exp(-np.logaddexp(0.0, -a))
    x = sig * np.expm1(np.minimum(d, 700.0))
    out = np.where(x > -0.5, np.log1p(np.maximum(x, -0.5)), np.logaddexp(0.0, a + d) - np.logaddexp(0.0, a))
    import mpmath

    mpmath.mp.dps = 50
    for i in np.random.default_rng().choice(a.size, 300, replace=False):
        ai, di = mpmath.mpf(float(a[i])), mpmath.mpf(float(d[i]))
        want = mpmath.log(1 + mpmath.exp(ai + di)) - mpmath.log(1 + mpmath.exp(ai))
        assert abs(out[i] - float(want)) <= 1e-13 * abs(float(want)) + 1e-300, (a[i], d[i])
    return out


def test_softplus_difference_against_float64():
    """``softplus(a + d) - softplus(a)``: relative error <= 4e-7 for |d| < 0.5 (units deep off and far on
    included) and no bias, absolute error <= 4e-7 |d| for any d."""
    rng = np.random.default_rng()
    N = 200_000
    a = np.concatenate([rng.normal(size=N) * 3, rng.uniform(-30, 30, N)]).astype(np.float32)
    d = (10 ** rng.uniform(-9, 1.5, 2 * N) * rng.choice([-1.0, 1.0], 2 * N)).astype(np.float32)
    a64, d64 = a.astype(np.float64), d.astype(np.float64)
    want = _softplus_truth(a64, d64)
    sp0 = np.logaddexp(0.0, a64).astype(np.float32)
    sig0 = np.exp(-np.logaddexp(0.0, -a64)).astype(np.float32)
    got = np.asarray(jax.jit(_kernels._softplus_diff)(a, sp0, sig0, d), np.float64)
    keep = (np.abs(d64) < 0.5) & (np.abs(want) > 1e-30)  # (softplus of units far off is below float32's range)
    rel = (got - want)[keep] / want[keep]
    assert np.max(np.abs(rel)) < 4e-7
    assert abs(np.mean(rel)) < 2e-8
    assert np.max(np.abs(got - want) / np.abs(d64)) < 4e-7
    zero = jax.jit(_kernels._softplus_diff)(a, sp0, sig0, np.zeros_like(a))
    assert np.all(np.asarray(zero) == 0.0)


def test_relu_difference_is_exact_piecewise():
    """``relu(a + d) - relu(a)``: exactly ``d`` when both sides are positive, exactly 0 when both are <= 0, and the
    float32 rounding of the plain difference (<= 2^-24 relative) where the unit crosses zero."""
    rng = np.random.default_rng()
    N = 200_000
    a = (rng.normal(size=N) * 3).astype(np.float32)
    d = (10 ** rng.uniform(-9, 1, N) * rng.choice([-1.0, 1.0], N)).astype(np.float32)
    a64, d64 = a.astype(np.float64), d.astype(np.float64)
    want = np.maximum(a64 + d64, 0.0) - np.maximum(a64, 0.0)  # exact in float64 (a sum of two float32)
    got = np.asarray(jax.jit(_kernels._relu_diff)(a, d), np.float64)
    on, off = (a64 > 0) & (a64 + d64 > 0), (a64 <= 0) & (a64 + d64 <= 0)
    assert np.array_equal(got[on], d64[on]) and np.all(got[off] == 0.0)
    cross = ~(on | off)
    assert cross.sum() > 100
    assert np.max(np.abs(got - want)[cross] / np.abs(want[cross])) <= 2.0**-24


def test_cross_entropy_change_against_float64():
    """The change of a step's cross-entropy from logit changes yd (|yd| from 1e-8 to ~30), without cancellation:
    error <= 1e-6 of the sum of the absolute values of its terms (the quantity the float64 re-run is keyed on)."""
    rng = np.random.default_rng()
    T_, K, B_, o = 4, 64, 32, 5
    y0 = rng.normal(size=(T_, B_, o)) * 4
    yd = rng.normal(size=(T_, K, B_, o)) * 10 ** rng.uniform(-8, 1, (T_, K, B_, 1))
    wt = np.eye(o)[rng.integers(0, o, (T_, B_))] * (rng.random((T_, B_, 1)) < 0.7)
    lse = lambda y: np.log(np.exp(y - y.max(-1, keepdims=True)).sum(-1)) + y.max(-1)  # noqa: E731
    lp0 = y0 - lse(y0)[..., None]
    p0 = np.exp(lp0)
    ce = lambda y: wt.sum(-1)[:, None] * lse(y) - (wt[:, None] * y).sum(-1)  # noqa: E731
    # float64 truth: (sum wt) log(sum p0 e^yd) - sum wt yd, the log by log1p(sum p0 expm1(yd)) unless that sum
    # is near -1 (then the plain difference of two float64 cross-entropies, accurate for a change that large)
    S = (p0[:, None] * np.expm1(yd)).sum(-1)
    want = wt.sum(-1)[:, None] * np.log1p(np.maximum(S, -0.5)) - (wt[:, None] * yd).sum(-1)
    want = np.where(S > -0.5, want, ce(y0[:, None] + yd) - ce(y0[:, None]))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    change, size = jax.jit(_kernels._ce_change)(f32(yd), f32(p0), f32(lp0), f32(wt))
    change, size = np.asarray(change, np.float64), np.asarray(size, np.float64)
    keep = size > 0
    assert np.max(np.abs(change - want)[keep] / size[keep]) < 1e-6
    # and the log1p form against the plain difference of two float64 cross-entropies where that one is accurate
    big = keep & (np.abs(want) > 1e-3)
    np.testing.assert_allclose(want[big], (ce(y0[:, None] + yd) - ce(y0[:, None]))[big], rtol=1e-9)


def test_cross_entropy_change_of_a_confident_classifier_is_finite():
    """Base probabilities below float32's range (log p0 ~ -200) and a change that moves the mass onto such a class:
    the change stays finite and right (log space), and a step of weight zero contributes exactly zero."""
    lp0 = np.array([[[0.0, -200.0, -300.0]]])  # (T=1, B=1, o=3): class 0 certain
    yd = np.array([[[[-250.0, 0.0, 0.0]], [[-1.0, 2.0, 0.0]]]])  # (T, k=2, B, o)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    for w in (1.0, 0.0):
        wt = np.array([[[w, 0.0, 0.0]]])
        change, size = jax.jit(_kernels._ce_change)(f32(yd), f32(np.exp(lp0)), f32(lp0), f32(wt))
        change = np.asarray(change, np.float64)[0, :, 0]
        assert np.all(np.isfinite(change)) and np.all(np.isfinite(np.asarray(size)))
        # (sum wt) logsumexp(lp0 + yd) - wt . yd, in float64: 50.0 and 1.0 for w = 1
        exact = w * (np.logaddexp.reduce(lp0[0, 0] + yd[0, :, 0], axis=-1) - yd[0, :, 0, 0])
        np.testing.assert_allclose(change, exact, rtol=1e-6, atol=1e-6)
        assert np.all(change[exact == 0.0] == 0.0)
