"""RateRNN (every form, nonlinearity, alpha and h0) against the independent float64 NumPy rollout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from tests.numpy_reference import rollout as np_rollout

FORMS = ("rate", "post", "current")
PHIS = ("tanh", "relu", "softplus")
ALPHAS = (1.0, 0.5, 0.2, 0.05)


def random_rate_model(rng, n_in, n, n_out, *, alpha, nonlinearity, form, h0=True):
    return sj.RateRNN.from_arrays(
        W_in=rng.normal(size=(n, n_in)),
        W_rec=rng.normal(size=(n, n)) * 0.9 / np.sqrt(n),
        b=0.2 * rng.normal(size=n),
        W_out=rng.normal(size=(n_out, n)) / np.sqrt(n),
        b_out=rng.normal(size=n_out),
        alpha=alpha,
        nonlinearity=nonlinearity,
        form=form,
        h0=0.3 * rng.normal(size=n) if h0 else None,
    )


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("nonlinearity", PHIS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_rollout_matches_numpy_float64(form, nonlinearity, alpha):
    rng = np.random.default_rng(abs(hash((form, nonlinearity, alpha))) % 2**32)
    model = random_rate_model(rng, 3, 24, 2, alpha=alpha, nonlinearity=nonlinearity, form=form)
    x = rng.normal(size=(4, 30, 3))
    y_ref, h_ref, hs_ref = np_rollout(model, x, states=True)
    hs, y = jax.vmap(model.rollout)(jnp.asarray(x, jnp.float32))
    scale = 1.0 + np.abs(y_ref).max()
    assert np.abs(np.asarray(y) - y_ref).max() < 2e-5 * scale
    assert np.abs(np.asarray(hs) - hs_ref).max() < 2e-5 * (1.0 + np.abs(hs_ref).max())


def test_tanh_rnn_is_rate_rnn_alpha_one():
    m = sj.TanhRNN(2, 16, 1, key=jax.random.key(3))
    r = sj.RateRNN(2, 16, 1, key=jax.random.key(3))  # same draws for the same key
    assert isinstance(m, sj.RateRNN) and m.dynamics == (1.0, "tanh", "rate") and m.h0 is None
    for f in ("W_in", "W_rec", "b", "W_out", "b_out"):
        assert np.array_equal(getattr(m, f), getattr(r, f))
    # the serialised leaves are exactly those of the paper's model: existing .eqx files still load
    assert len(jax.tree_util.tree_leaves(m)) == 5
    x = jax.random.normal(jax.random.key(1), (12, 2))
    np.testing.assert_array_equal(m(x), r(x))


def test_alpha_one_rate_equals_post():
    rng = np.random.default_rng(0)
    kw = dict(W_in=rng.normal(size=(8, 2)), W_rec=rng.normal(size=(8, 8)) / 3, W_out=rng.normal(size=(1, 8)))
    x = jnp.asarray(rng.normal(size=(10, 2)), jnp.float32)
    a = sj.RateRNN.from_arrays(**kw, form="rate", nonlinearity="relu")(x)
    b = sj.RateRNN.from_arrays(**kw, form="post", nonlinearity="relu")(x)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_learned_h0_is_a_leaf_and_trains():
    m = sj.RateRNN(1, 4, 1, alpha=0.2, learn_h0=True, key=jax.random.key(0))
    assert m.h0 is not None and len(jax.tree_util.tree_leaves(m)) == 6
    g = jax.grad(lambda mm: jnp.sum((mm(jnp.zeros((3, 1))) - 1.0) ** 2))(m)
    assert g.h0 is not None and np.any(np.asarray(g.h0) != 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(alpha=0.0), "alpha must be a real number in \\(0, 1\\]"),
        (dict(alpha=1.5), "alpha must be"),
        (dict(alpha=float("nan")), "alpha must be"),
        (dict(nonlinearity="sigmoid"), "nonlinearity must be one of"),
        (dict(form="gru"), "form must be one of"),
        (dict(gain=float("nan")), "gain must be a finite"),
    ],
)
def test_bad_arguments_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sj.RateRNN(1, 4, 1, key=jax.random.key(0), **kwargs)


def test_tanh_rnn_gain_nan_refused():
    with pytest.raises(ValueError, match="gain must be a finite"):
        sj.TanhRNN(1, 4, 1, key=jax.random.key(0), gain=float("nan"))


@pytest.mark.parametrize("bad", ["W_rec", "h0", "b"])
def test_from_arrays_refuses_non_finite_and_bad_shapes(bad):
    rng = np.random.default_rng(1)
    kw = dict(
        W_in=rng.normal(size=(4, 2)),
        W_rec=rng.normal(size=(4, 4)),
        b=np.zeros(4),
        W_out=np.ones((1, 4)),
        h0=np.zeros(4),
    )
    kw[bad] = kw[bad].copy()
    kw[bad].flat[0] = np.nan
    with pytest.raises(ValueError, match=f"{bad} must be finite"):
        sj.RateRNN.from_arrays(**kw)
    kw[bad] = np.zeros(3)
    with pytest.raises(ValueError, match=f"{bad} must have shape"):
        sj.RateRNN.from_arrays(**kw)


def test_step_decay_orders_leaky_modes():
    # alpha = 0.1: lam = 0.9 decays per step by 0.99, lam = -0.95 by 0.805
    np.testing.assert_allclose(sj.rnn.step_decay([0.9, -0.95], 0.1), [0.99, 0.805])
    np.testing.assert_allclose(sj.rnn.step_decay([0.3 + 0.4j], 1.0), [0.5])
