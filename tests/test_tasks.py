"""Task statistics and rules checked against their definitions with independent NumPy code."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from schurjax import tasks
from schurjax.tasks import TaskBatch


@eqx.filter_jit
def sample(task, key, batch_size):
    """Jitted sampling (the task and batch_size are static); eager sampling compiles op by op and is slow."""
    return task.sample(key, batch_size)


@eqx.filter_jit
def loss_and_score(task, y, batch):
    return task.loss(y, batch), task.score(y, batch)


def np_batch(batch):
    return TaskBatch(*(np.asarray(a, np.float64) for a in batch[:3]), batch.valid)


@pytest.mark.parametrize("name", tasks.names())
def test_sample_rejects_non_keys(name):
    task = tasks.get(name)
    for bad in (0, np.zeros(3, np.uint32), "k"):
        with pytest.raises(TypeError, match=rf"{name}\.sample: key must be a PRNG key from jax\.random\.key"):
            task.sample(bad, 2)
    legacy = jax.random.PRNGKey(0)  # raw uint32 keys still work
    assert task.sample(legacy, 2).inputs.shape[0] == 2


def test_registry():
    assert tasks.names() == ["context", "copy", "flipflop", "sine"]
    assert set(tasks.REGISTRY) == set(tasks.names())
    for name in tasks.names():
        assert tasks.get(name).name == name
    with pytest.raises(ValueError, match=r"unknown task name 'nope', expected one of \['context', 'copy'"):
        tasks.get("nope")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['bits'\] for task 'sine'"):
        tasks.get("sine", bits=3)


@pytest.mark.parametrize("name", sorted(tasks.REGISTRY))
def test_common_contract(name):
    task = tasks.get(name)
    key = jax.random.key(3)
    b = sample(task, key, 16)
    assert isinstance(b, TaskBatch)
    assert b.inputs.shape == (16, task.steps, task.n_in)
    assert b.targets.shape == b.mask.shape == (16, task.steps, task.n_out)
    assert all(a.dtype == jnp.float32 for a in b[:3]) and b.valid is None  # built-in trials share one length
    assert set(np.unique(np.asarray(b.mask))) <= {0.0, 1.0} and float(b.mask.sum()) > 0
    # deterministic per key, jit-able, different keys give different trials
    b_again = sample(task, jax.random.key(3), 16)
    b_jit = jax.jit(task.sample, static_argnums=1)(key, 16)  # plain jax.jit works too
    for x, y, z in zip(b[:3], b_again[:3], b_jit[:3], strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        np.testing.assert_allclose(np.asarray(x), np.asarray(z), atol=1e-6)  # XLA may fuse differently (1 ulp)
    b_other = sample(task, jax.random.key(4), 16)
    assert not np.array_equal(np.asarray(b.inputs), np.asarray(b_other.inputs))
    # loss = masked MSE (NumPy reference), score in [0, 1], perfect output scores 1
    rng = np.random.default_rng(0)
    y = rng.normal(size=b.targets.shape).astype(np.float32)
    nb = np_batch(b)
    ref = np.sum(nb.mask * (y - nb.targets) ** 2) / np.sum(nb.mask)
    loss, s = loss_and_score(task, jnp.asarray(y), b)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    assert 0.0 <= float(s) < 1.0
    loss, s = loss_and_score(task, b.targets, b)
    assert float(loss) == 0.0 and float(s) == pytest.approx(1.0)
    # params round trip through the registry
    again = tasks.get(name, **task.params())
    assert again.params() == task.params()
    np.testing.assert_array_equal(np.asarray(sample(again, key, 16).inputs), np.asarray(b.inputs))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        task.sample(key, 0)
    with pytest.raises(ValueError, match="y must have the shape of batch.targets"):
        task.loss(jnp.zeros((16, task.steps), jnp.float32), b)


def np_r2(y, batch):
    m, t = batch.mask, batch.targets
    mean = (m * t).sum() / m.sum()
    return max(0.0, 1 - (m * (y - t) ** 2).sum() / (m * (t - mean) ** 2).sum())


def test_copy_rules():
    task = tasks.get("copy")
    assert (task.n_in, task.n_out, task.steps) == (3, 2, 17)
    b = np_batch(sample(task, jax.random.key(0), 2000))
    L, D = 6, 4
    vals = b.inputs[:, :L, :2]
    assert vals.min() >= -1 and vals.max() <= 1
    assert abs(vals.mean()) < 0.01 and abs(vals.var() - 1 / 3) < 0.01  # uniform on [-1, 1]
    assert np.all(b.inputs[:, L:, :2] == 0)
    cue = np.zeros(17)
    cue[L + D] = 1
    assert np.all(b.inputs[:, :, 2] == cue)
    for k in range(L):  # replay target equals the presented value, in order
        np.testing.assert_array_equal(b.targets[:, L + D + 1 + k], vals[:, k])
    expected_mask = np.zeros((17, 2))
    expected_mask[L + D + 1 :] = 1
    assert np.all(b.mask == expected_mask)
    assert np.all(b.targets[:, : L + D + 1] == 0)
    y = b.targets + 0.3 * np.random.default_rng(1).normal(size=b.targets.shape)
    _, r2 = loss_and_score(task, jnp.asarray(y, jnp.float32), sample(task, jax.random.key(0), 2000))
    np.testing.assert_allclose(float(r2), np_r2(y, b), atol=1e-4)
    assert tasks.get("copy", length=3, delay=0, channels=1).steps == 7


def test_flipflop_rules():
    task = tasks.get("flipflop")
    b = np_batch(sample(task, jax.random.key(1), 400))
    x = b.inputs
    on = x != 0
    assert set(np.unique(x)) <= {-1.0, 0.0, 1.0}
    n = on.size
    rate = on.mean()
    assert abs(rate - 0.05) < 4 * np.sqrt(0.05 * 0.95 / n)  # binomial, ~4 sigma
    assert abs((x[on] > 0).mean() - 0.5) < 4 * np.sqrt(0.25 / on.sum())
    # target rule, by an explicit loop
    tgt = np.zeros_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[2]):
            state = 0.0
            for t in range(x.shape[1]):
                if x[i, t, c] != 0:
                    state = x[i, t, c]
                tgt[i, t, c] = state
    np.testing.assert_array_equal(b.targets, tgt)
    assert np.all(b.mask == 1)
    # score = accuracy after the first pulse only
    rng = np.random.default_rng(2)
    y = rng.normal(size=x.shape)
    after = tgt != 0
    ref = (np.sign(y)[after] == tgt[after]).mean()
    got = float(loss_and_score(task, jnp.asarray(y, jnp.float32), sample(task, jax.random.key(1), 400))[1])
    assert got == pytest.approx(ref, abs=1e-6)
    # p_pulse parameter is honoured
    b2 = np.asarray(sample(tasks.get("flipflop", p_pulse=0.2, bits=2, steps=50), jax.random.key(2), 200).inputs)
    assert b2.shape == (200, 50, 2) and abs((b2 != 0).mean() - 0.2) < 0.02


def test_sine_rules():
    task = tasks.get("sine")
    b = np_batch(sample(task, jax.random.key(5), 3000))
    level = b.inputs[:, 0, 0]
    assert np.all(b.inputs == level[:, None, None])  # static input
    j = np.rint((level - 0.25) * 51).astype(int)
    np.testing.assert_allclose(j / 51 + 0.25, level, atol=1e-6)
    assert j.min() == 0 and j.max() == 50 and len(np.unique(j)) == 51  # all frequencies drawn
    w = 0.1 + j * (0.5 / 50)
    t = np.arange(1, 101)
    np.testing.assert_allclose(b.targets[:, :, 0], np.sin(w[:, None] * t[None]), atol=2e-5)
    assert np.all(b.mask == 1)
    np.testing.assert_allclose(task.frequencies, np.linspace(0.1, 0.6, 51))
    all_f = np_batch(eqx.filter_jit(task.batch_for)(jnp.arange(51)))
    np.testing.assert_allclose(all_f.targets[:, :, 0], np.sin(task.frequencies[:, None] * t[None]), atol=2e-5)


def test_context_rules():
    task = tasks.get("context")
    key = jax.random.key(11)
    B = 4000
    b = np_batch(sample(task, key, B))
    clean = np_batch(sample(tasks.get("context", noise=0.0), key, B))  # same key: same means, no noise
    Te = 80
    ctx = b.inputs[:, :, 2:]
    assert np.all(ctx == ctx[:, :1]) and np.all(ctx.sum(-1) == 1)  # one-hot, held all trial
    cued = ctx[:, 0].argmax(-1)
    assert abs(cued.mean() - 0.5) < 0.03
    means = clean.inputs[:, 0, :2]
    assert np.all(clean.inputs[:, :Te, :2] == means[:, None, :])
    assert set(np.round(np.abs(means), 6).ravel()) == {0.25, 0.5, 1.0}
    noise = b.inputs[:, :Te, :2] - means[:, None, :]
    assert abs(noise.std() - 1.0) < 0.005 and abs(noise.mean()) < 0.005
    assert np.all(b.inputs[:, Te:, :2] == 0)  # no evidence in the response window
    window = np.zeros((100, 1))
    window[Te:] = 1
    assert np.all(b.mask == window)
    cued_mean = means[np.arange(B), cued]
    np.testing.assert_array_equal(b.targets[:, :, 0], np.sign(cued_mean)[:, None] * window[:, 0])
    # ideal observer: sign of the cued channel's sample mean, NumPy reference
    io = np.sign(b.inputs[np.arange(B), :Te, cued].mean(-1))
    io_ref = (io == np.sign(cued_mean)).mean()
    batch = sample(task, key, B)
    assert float(eqx.filter_jit(task.ideal_observer_score)(batch)) == pytest.approx(io_ref, abs=1e-6)
    assert io_ref >= 0.97
    # theory: mean over coherences of Phi(c sqrt(80) / noise)
    from math import erf, sqrt

    theory = np.mean([0.5 * (1 + erf(c * sqrt(Te) / 1.0 / sqrt(2))) for c in (0.25, 0.5, 1.0)])
    assert abs(io_ref - theory) < 0.01
    with pytest.raises(ValueError, match="response must be a fraction"):
        tasks.get("context", response=1.5)
