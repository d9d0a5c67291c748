"""TanhRNN against an independent float64 NumPy rollout, torch golden files and a live torch round trip."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from schurjax.rnn import TanhRNN

GOLDEN = Path(__file__).parent / "golden" / "torch_rnn_n16.npz"


def numpy_rollout(W_in, W_rec, b, W_out, b_out, x):
    """float64 reference of h_t = tanh(W_rec h_{t-1} + W_in x_t + b), y_t = W_out h_t + b_out for one trial."""
    W_in, W_rec, b, W_out, b_out, x = (np.asarray(a, np.float64) for a in (W_in, W_rec, b, W_out, b_out, x))
    h = np.zeros(W_rec.shape[0])
    hs = []
    for t in range(x.shape[0]):
        h = np.tanh(W_rec @ h + W_in @ x[t] + b)
        hs.append(h)
    hs = np.array(hs)
    return hs, hs @ W_out.T + b_out


def random_model(rng, n_in, n, n_out):
    return TanhRNN.from_arrays(
        rng.normal(size=(n, n_in)),
        rng.normal(size=(n, n)) * 1.2 / np.sqrt(n),
        0.2 * rng.normal(size=n),
        rng.normal(size=(n_out, n)) / np.sqrt(n),
        rng.normal(size=n_out),
    )


@pytest.mark.parametrize("n_in,n,n_out,T", [(1, 8, 1, 30), (3, 32, 2, 50), (4, 64, 3, 20)])
def test_rollout_matches_numpy(n_in, n, n_out, T):
    rng = np.random.default_rng(n * 7 + T)
    m = random_model(rng, n_in, n, n_out)
    x = rng.normal(size=(T, n_in)).astype(np.float32)
    h, y = m.rollout(jnp.asarray(x))
    h_ref, y_ref = numpy_rollout(m.W_in, m.W_rec, m.b, m.W_out, m.b_out, x)
    assert h.shape == (T, n) and y.shape == (T, n_out)
    np.testing.assert_allclose(np.asarray(h), h_ref, atol=2e-5)
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=2e-5)
    np.testing.assert_allclose(np.asarray(m(jnp.asarray(x))), y_ref, atol=2e-5)
    np.testing.assert_allclose(
        np.asarray(m.drive(jnp.asarray(x))), x @ np.asarray(m.W_in, np.float64).T + m.b, atol=1e-5
    )


def test_vmap_batch_matches_per_trial():
    rng = np.random.default_rng(0)
    m = random_model(rng, 2, 16, 2)
    xs = rng.normal(size=(5, 12, 2)).astype(np.float32)
    ys = jax.vmap(m)(jnp.asarray(xs))
    for i in range(5):
        np.testing.assert_allclose(
            np.asarray(ys[i]), numpy_rollout(m.W_in, m.W_rec, m.b, m.W_out, m.b_out, xs[i])[1], atol=2e-5
        )


def test_init_statistics_and_gain():
    n = 256
    m = TanhRNN(3, n, 2, key=jax.random.key(0), gain=0.8)
    W = np.asarray(m.W_rec, np.float64)
    assert abs(W.std() * np.sqrt(n) - 0.8) < 0.02
    assert abs(W.mean()) < 0.01
    assert abs(np.max(np.abs(np.linalg.eigvals(W))) - 0.8) < 0.1  # circular law
    assert abs(np.asarray(m.W_in).std() * np.sqrt(3) - 1.0) < 0.1
    assert np.all(np.asarray(m.b) == 0) and np.all(np.asarray(m.b_out) == 0)
    assert (m.n_in, m.n_hidden, m.n_out) == (3, n, 2)
    assert m.W_rec.dtype == jnp.float32
    # same key -> same model, different key -> different
    m2 = TanhRNN(3, n, 2, key=jax.random.key(0), gain=0.8)
    assert np.array_equal(np.asarray(m2.W_rec), W)
    assert not np.array_equal(np.asarray(TanhRNN(3, n, 2, key=jax.random.key(1)).W_rec), W)


def test_with_recurrent():
    rng = np.random.default_rng(1)
    m = random_model(rng, 2, 8, 1)
    W = rng.normal(size=(8, 8))
    m2 = m.with_recurrent(W)
    np.testing.assert_allclose(np.asarray(m2.W_rec), W.astype(np.float32))
    assert np.array_equal(np.asarray(m2.W_in), np.asarray(m.W_in))
    assert not np.array_equal(np.asarray(m2.W_rec), np.asarray(m.W_rec))  # original untouched
    with pytest.raises(ValueError, match=r"W must have shape \(8, 8\)"):
        m.with_recurrent(np.zeros((8, 7)))


def test_bad_inputs():
    m = TanhRNN(3, 8, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"x must have shape \(T, n_in=3\).*got shape \(5, 2\)"):
        m.rollout(jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"got shape \(4, 5, 3\)"):
        m(jnp.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="n_hidden must be a positive int"):
        TanhRNN(3, 0, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"W_rec must have shape \(4, 4\)"):
        TanhRNN.from_arrays(np.zeros((4, 1)), np.zeros((4, 3)), np.zeros(4), np.zeros((1, 4)), np.zeros(1))
    with pytest.raises(ValueError, match="rnn must be the state dict of a one-layer torch.nn.RNN"):
        TanhRNN.from_torch({"weight": np.zeros((2, 2))}, {"weight": np.zeros((1, 2))})


def test_torch_golden_file():
    g = np.load(GOLDEN)
    rnn_state = {k[4:]: g[k] for k in g.files if k.startswith("rnn.")}
    readout_state = {k[8:]: g[k] for k in g.files if k.startswith("readout.")}
    m = TanhRNN.from_torch(rnn_state, readout_state)
    np.testing.assert_allclose(np.asarray(m.b), g["rnn.bias_ih_l0"] + g["rnn.bias_hh_l0"], atol=1e-7)
    h, y = jax.vmap(m.rollout)(jnp.asarray(g["inputs"]))
    assert np.abs(np.asarray(h) - g["hidden"]).max() < 1e-5
    assert np.abs(np.asarray(y) - g["outputs"]).max() < 1e-5
    # the golden outputs are not trivial (a test that cannot fail is a defect)
    assert np.abs(g["outputs"]).max() > 0.1 and np.abs(np.diff(g["hidden"], axis=1)).max() > 0.1


@pytest.mark.parametrize("batch_first", [True, False])
def test_torch_live_round_trip(batch_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(7)
    n_in, n, n_out, B, T = 2, 24, 3, 3, 40
    rnn = torch.nn.RNN(n_in, n, nonlinearity="tanh", batch_first=batch_first)
    lin = torch.nn.Linear(n, n_out)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(1.6)  # radius ~0.9: the recurrence matters, dynamics not chaotic
    x = torch.randn(B, T, n_in)
    with torch.no_grad():
        h_t, _ = rnn(x if batch_first else x.transpose(0, 1))
        y_t = lin(h_t if batch_first else h_t.transpose(0, 1)).numpy()
    m = TanhRNN.from_torch(rnn.state_dict(), lin.state_dict())  # tensors accepted
    y = np.asarray(jax.vmap(m)(jnp.asarray(x.numpy())))
    assert np.abs(y - y_t).max() < 1e-5
    # export and re-run in torch
    rnn2, lin2 = m.to_torch(batch_first=True)
    with torch.no_grad():
        y2 = lin2(rnn2(x)[0]).numpy()
    assert np.abs(y2 - y).max() < 1e-5
    m3 = TanhRNN.from_torch(rnn2.state_dict(), lin2.state_dict())
    for f in ("W_in", "W_rec", "b", "W_out", "b_out"):
        assert np.array_equal(np.asarray(getattr(m3, f)), np.asarray(getattr(m, f)))


def test_from_arrays_and_with_recurrent_under_jit():
    rng = np.random.default_rng(3)
    m = random_model(rng, 2, 6, 1)
    x = jnp.asarray(rng.normal(size=(7, 2)), jnp.float32)

    @jax.jit
    def f(W_in, W_rec, W):
        return TanhRNN.from_arrays(W_in, W_rec, m.b, m.W_out, m.b_out).with_recurrent(W)(x)

    W = rng.normal(size=(6, 6)) / 3
    ref = numpy_rollout(m.W_in, W, m.b, m.W_out, m.b_out, np.asarray(x))[1]
    np.testing.assert_allclose(np.asarray(f(m.W_in, m.W_rec, jnp.asarray(W, jnp.float32))), ref, atol=2e-5)
