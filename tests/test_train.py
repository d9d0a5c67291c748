"""Training lowers the loss on every task at tiny sizes; seeds are trained in one program, deterministically."""

import jax
import numpy as np
import pytest

import schurjax as sj
from schurjax import tasks
from schurjax.train import TrainResult, evaluate_models, init_models, train

TINY = {
    "copy": dict(length=3, delay=1),
    "flipflop": dict(steps=30, p_pulse=0.1),
    "sine": dict(steps=30, n_freqs=5),
    "context": dict(steps=30, noise=0.2),
}


@pytest.mark.parametrize("name", sorted(tasks.REGISTRY))
def test_training_lowers_loss(name):
    task = tasks.get(name, **TINY[name])
    res = train(task, [0, 1], n_hidden=16, steps=150, batch_size=32, learning_rate=1e-2, log_every=50, progress=False)
    assert isinstance(res, TrainResult)
    assert res.history.shape == res.scores.shape == (2, 3)
    assert list(res.log_steps) == [50, 100, 150]
    key = jax.random.key(123)  # held-out trials
    init = jax.tree_util.tree_map(lambda x: x[0], init_models(task, [0], n_hidden=16))
    l0, _ = evaluate_models(task, [init, init], key, 256)
    l1, s1 = evaluate_models(task, res.models, key, 256)
    assert np.all(l1 < 0.8 * l0), (l0, l1)
    assert np.all(res.history[:, -1] < res.history[:, 0])
    assert np.all((s1 >= 0) & (s1 <= 1))
    assert res.models[0].n_hidden == 16 and res.models[0].n_in == task.n_in


def test_deterministic_and_seed_independent(capsys):
    task = tasks.get("flipflop", steps=20)
    kw = dict(n_hidden=8, steps=30, batch_size=8, log_every=10)
    calls = []
    a = train(task, [3, 4], progress=True, callback=lambda s, l, sc: calls.append((s, l.shape, sc.shape)), **kw)
    err = capsys.readouterr().err
    assert "train[flipflop] step 30/30" in err and "steps/s" in err and "score" in err
    assert calls == [(10, (2,), (2,)), (20, (2,), (2,)), (30, (2,), (2,))]
    b = train(task, [3, 4], progress=False, **kw)
    assert capsys.readouterr().err == ""
    for ma, mb in zip(a.models, b.models, strict=True):
        np.testing.assert_array_equal(np.asarray(ma.W_rec), np.asarray(mb.W_rec))
    # a seed's result does not depend on the other seeds, or on vmap vs loop (one compiled program for both)
    c = train(task, [4], progress=False, **kw)
    np.testing.assert_allclose(np.asarray(c.models[0].W_rec), np.asarray(a.models[1].W_rec), atol=1e-5)
    d = train(task, [3, 4], progress=False, parallel=False, **kw)
    np.testing.assert_allclose(np.asarray(d.models[0].W_out), np.asarray(a.models[0].W_out), atol=1e-5)
    np.testing.assert_allclose(d.history, a.history, rtol=1e-4)
    e = train(task, [3, 4], progress=False, seed_chunk=1, **kw)  # lax.map over seeds in one program
    np.testing.assert_allclose(np.asarray(e.models[1].W_rec), np.asarray(a.models[1].W_rec), atol=1e-5)
    # different seeds differ
    assert not np.allclose(np.asarray(a.models[0].W_rec), np.asarray(a.models[1].W_rec))
    cfg = a.config
    assert cfg["task"] == {"name": "flipflop", "params": task.params()} and cfg["seeds"] == [3, 4]
    assert cfg["steps"] == 30 and cfg["n_hidden"] == 8 and "optimizer" in cfg
    assert a.history.shape == (2, 3) and a.scores.shape == (2, 3) and a.log_steps.tolist() == [10, 20, 30]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown task name 'nope'"):
        train("nope", [0])
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        train("copy", [0], steps=0)
    with pytest.raises(ValueError, match="learning_rate must be a positive float, got -1"):
        train("copy", [0], learning_rate=-1)
    with pytest.raises(ValueError, match="seeds must be a non-empty"):
        train("copy", [])
    with pytest.raises(ValueError, match="schedule must be 'constant' or 'cosine'"):
        train("copy", [0], schedule="linear")


@pytest.mark.parametrize(
    ("alpha", "nonlinearity", "form", "learn_h0"),
    [(0.2, "tanh", "rate", False), (0.5, "relu", "post", True), (0.3, "softplus", "current", False)],
)
def test_any_rate_rnn_trains(alpha, nonlinearity, form, learn_h0):
    task = tasks.get("flipflop", steps=20, p_pulse=0.1)
    step = dict(alpha=alpha, nonlinearity=nonlinearity, form=form, learn_h0=learn_h0)
    res = train(task, [0], n_hidden=16, steps=60, batch_size=16, learning_rate=1e-2, progress=False, **step)
    m = res.models[0]
    assert type(m) is sj.RateRNN and m.dynamics == sj.rnn.Dynamics(alpha, nonlinearity, form)
    assert (m.h0 is not None) == learn_h0
    if learn_h0:
        assert np.any(np.asarray(m.h0) != 0)  # trained like the weights
    assert {k: res.config[k] for k in step} == step
    init = jax.tree_util.tree_map(lambda x: x[0], init_models(task, [0], n_hidden=16, **step))
    assert type(init) is sj.RateRNN and init.dynamics == m.dynamics
    # same draws as the default initialisation for the same seed
    plain = jax.tree_util.tree_map(lambda x: x[0], init_models(task, [0], n_hidden=16))
    np.testing.assert_array_equal(np.asarray(init.W_rec), np.asarray(plain.W_rec))
    key = jax.random.key(5)
    (l0,), _ = evaluate_models(task, [init], key, 128)
    (l1,), _ = evaluate_models(task, [m], key, 128)
    assert l1 < 0.8 * l0


def test_default_step_trains_a_tanh_rnn_with_todays_config():
    task = tasks.get("flipflop", steps=10)
    res = train(task, [0], n_hidden=4, steps=2, batch_size=2, progress=False)
    assert type(res.models[0]) is sj.TanhRNN
    assert not {"alpha", "nonlinearity", "form", "learn_h0"} & set(res.config)  # the record is what it was
    with pytest.raises(ValueError, match=r"^train: alpha must be a real number in \(0, 1\]"):
        train(task, [0], alpha=0.0)
    with pytest.raises(ValueError, match=r"^train: form must be one of 'rate', 'post', 'current', got 'x'"):
        train(task, [0], form="x")
    with pytest.raises(ValueError, match=r"^init_models: nonlinearity must be one of"):
        init_models(task, [0], nonlinearity="gelu")
    with pytest.raises(ValueError, match=r"^train: learn_h0 must be True or False"):
        train(task, [0], learn_h0=1)
