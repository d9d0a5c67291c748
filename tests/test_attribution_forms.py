"""Attribution for every RateRNN form, against float64 finite differences of the NumPy reference loss; input checks."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax import attribution
from schurjax.tasks import TaskBatch

CASES = [
    ("rate", "tanh", 0.2),
    ("post", "tanh", 0.2),
    ("post", "relu", 0.5),
    ("current", "tanh", 0.05),
    ("current", "softplus", 0.2),
]


def random_case(form, name, alpha, *, n=10, seed=0, h0=False):
    rng = np.random.default_rng(seed)
    model = sj.RateRNN.from_arrays(
        W_in=rng.standard_normal((n, 2)),
        W_rec=rng.standard_normal((n, n)) * 1.2 / np.sqrt(n),
        b=0.2 * rng.standard_normal(n),
        W_out=rng.standard_normal((2, n)) / np.sqrt(n),
        b_out=0.1 * rng.standard_normal(2),
        alpha=alpha,
        nonlinearity=name,
        form=form,
        h0=0.3 * rng.standard_normal(n) if h0 else None,
    )
    B, T = 4, 15
    mask = (rng.random((B, T, 2)) < 0.7).astype(np.float32)
    batch = TaskBatch.from_arrays(
        rng.standard_normal((B, T, 2)).astype(np.float32), rng.standard_normal((B, T, 2)).astype(np.float32), mask
    )
    return model, sj.ordered_schur(np.asarray(model.W_rec, np.float64)), batch


def np_loss(model, W, batch):
    y = rollout(model, batch.inputs, W)[0]
    m = np.asarray(batch.mask, np.float64)
    return float(np.sum(m * (y - np.asarray(batch.targets, np.float64)) ** 2) / m.sum())


@pytest.mark.parametrize(("form", "name", "alpha"), CASES)
def test_first_order_matches_float64_finite_differences(form, name, alpha):
    model, sf, batch = random_case(form, name, alpha, seed=len(form) + int(100 * alpha), h0=form == "post")
    pred = sj.attribute(model, sf, batch, dtype=jnp.float64)
    assert pred.shape == (len(sf.couplings),)
    W0 = sf.reconstruct()
    eps = 1e-6
    big = np.argsort(-np.abs(pred))[:6]
    for q in big:
        i, j = sf.couplings[q]
        E = np.outer(sf.Q[:, i], sf.Q[:, j])
        fd = (np_loss(model, W0 + eps * E, batch) - np_loss(model, W0 - eps * E, batch)) / (2 * eps)
        np.testing.assert_allclose(pred[q], -sf.T[i, j] * fd, rtol=1e-5, atol=1e-10)
    # float32 agrees to float32 accuracy
    p32 = sj.attribute(model, sf, batch)
    np.testing.assert_allclose(p32[big], pred[big], rtol=2e-3, atol=1e-6 * np.abs(pred).max())


def test_the_task_loss_is_the_one_differentiated():
    model, sf, batch = random_case("rate", "tanh", 0.2)

    class Abs:  # a task whose loss is a masked mean absolute error (not the MSE)
        name, n_in, n_out, steps, loss_type = "abs", 2, 2, 15, "mae"

        def loss(self, y, b):
            return jnp.sum(b.mask * jnp.abs(y - b.targets)) / jnp.sum(b.mask)

    pred = sj.attribute(model, sf, batch, task=Abs(), dtype=jnp.float64)
    W0, eps = sf.reconstruct(), 1e-6
    m, t = np.asarray(batch.mask, np.float64), np.asarray(batch.targets, np.float64)

    def loss(W):
        return float(np.sum(m * np.abs(rollout(model, batch.inputs, W)[0] - t)) / m.sum())

    q = int(np.argmax(np.abs(pred)))
    i, j = sf.couplings[q]
    E = np.outer(sf.Q[:, i], sf.Q[:, j])
    np.testing.assert_allclose(pred[q], -sf.T[i, j] * (loss(W0 + eps * E) - loss(W0 - eps * E)) / (2 * eps), rtol=1e-5)
    with pytest.raises(ValueError, match=r"^attribute: order=2 adds the Gauss-Newton curvature of the masked MSE"):
        sj.attribute(model, sf, batch, task=Abs(), order=2, key=jax.random.key(0))


def test_refuses_nan_weights_inputs_and_another_tasks_batch():
    model, sf, batch = random_case("current", "relu", 0.2)
    bad_W = np.asarray(model.W_rec).copy()
    bad_W[0, 0] = np.nan
    nan_model = eqx.tree_at(lambda m: m.W_rec, model, jnp.asarray(bad_W))
    with pytest.raises(ValueError, match=r"^attribute: model.W_rec must be finite") as e:
        sj.attribute(nan_model, sf, batch)
    assert "\n" not in str(e.value)
    nan_in = batch._replace(inputs=jnp.asarray(batch.inputs).at[0, 0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"^attribute: .*inputs.*(finite|NaN)") as e:
        sj.attribute(model, sf, nan_in)
    assert "\n" not in str(e.value)
    # a batch of another task: one line naming the task
    ff = sj.tasks.get("flipflop")
    tanh = sj.zoo.load("flipflop", seed=0)
    copy_batch = sj.tasks.get("copy").sample(jax.random.key(0), 2)
    with pytest.raises(ValueError) as e:
        sj.attribute(tanh, sj.ordered_schur(np.asarray(tanh.W_rec, np.float64)), copy_batch, task=ff)
    assert str(e.value).startswith("attribute: ") and "\n" not in str(e.value)
    T = np.array(sf.T)
    T[0, -1] = np.nan
    nan_sf = sj.SchurForm(Q=sf.Q, T=T, blocks=sf.blocks, eigvals=sf.eigvals, order=sf.order)
    with pytest.raises(ValueError, match=r"^attribute: sf must be finite"):
        sj.attribute(model, nan_sf, batch)


def test_probes_are_bounded():
    model, sf, batch = random_case("rate", "tanh", 0.2)
    cap = attribution.max_probes(model.n_hidden, tuple(np.shape(batch.targets)))
    assert cap == 2**30 // (8 * (4 * 15 * 2 + 100))
    with pytest.raises(ValueError, match=rf"probes must be None \(exact\) or an int in \[1, {cap}\]") as e:
        sj.attribute(model, sf, batch, order=2, key=jax.random.key(0), probes=10**9)
    assert "\n" not in str(e.value)
    out = sj.attribute(model, sf, batch, order=2, key=jax.random.key(0), probes=4)
    assert np.all(np.isfinite(out))
