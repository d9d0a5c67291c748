"""TaskBatch.from_arrays / as_batch against NumPy, and sj.evaluate on time-major and padded trials."""

from __future__ import annotations

from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from schurjax.tasks import TaskBatch, as_batch

W = "TaskBatch.from_arrays"


def one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


def random_model(n_in: int, n: int, n_out: int, seed: int) -> sj.TanhRNN:
    rng = np.random.default_rng(seed)
    return sj.TanhRNN.from_arrays(
        rng.normal(size=(n, n_in)),
        rng.normal(size=(n, n)) * 1.3 / np.sqrt(n),
        0.1 * rng.normal(size=n),
        rng.normal(size=(n_out, n)) / np.sqrt(n),
        0.1 * rng.normal(size=n_out),
    )


def test_from_arrays_layouts_mask_and_padding():
    rng = np.random.default_rng(0)
    B, T, n_in, n_out = 4, 7, 3, 2
    x, y = rng.normal(size=(B, T, n_in)), rng.normal(size=(B, T, n_out))
    m2 = (rng.random((B, T)) < 0.6).astype(np.float64)
    b = TaskBatch.from_arrays(x, y, m2)
    assert isinstance(b, TaskBatch) and b.valid is None
    assert b.inputs.dtype == b.targets.dtype == b.mask.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(b.mask), np.repeat(m2[:, :, None], n_out, axis=2))
    np.testing.assert_array_equal(np.asarray(b.inputs), x.astype(np.float32))
    assert np.all(np.asarray(TaskBatch.from_arrays(x, y).mask) == 1)
    # time-major input is transposed; every field comes out (B, T, ...)
    bt = TaskBatch.from_arrays(x.swapaxes(0, 1), y.swapaxes(0, 1), m2.T, time_major=True)
    for f in ("inputs", "targets", "mask"):
        np.testing.assert_array_equal(np.asarray(getattr(bt, f)), np.asarray(getattr(b, f)))
    # padded trials: mask 0 (and inputs/targets 0) past each length, NaN allowed there only
    L = np.array([7, 3, 5, 1])
    valid = np.arange(T)[None, :] < L[:, None]
    xp = np.where(valid[:, :, None], x, np.nan)
    bp = TaskBatch.from_arrays(xp, y, valid=valid)
    np.testing.assert_array_equal(np.asarray(bp.valid), valid)
    np.testing.assert_array_equal(np.asarray(bp.lengths), L)
    np.testing.assert_array_equal(np.asarray(bp.mask), np.repeat(valid[:, :, None], n_out, axis=2).astype(float))
    np.testing.assert_array_equal(np.asarray(bp.inputs), np.where(valid[:, :, None], x, 0).astype(np.float32))
    bpt = TaskBatch.from_arrays(xp.swapaxes(0, 1), y.swapaxes(0, 1), valid=valid.T, time_major=True)
    np.testing.assert_array_equal(np.asarray(bpt.valid), valid)
    # torch tensors are accepted as arrays
    torch = pytest.importorskip("torch")
    bt2 = TaskBatch.from_arrays(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m2))
    np.testing.assert_array_equal(np.asarray(bt2.mask), np.asarray(b.mask))
    # a pytree: jit and tree.map see the fields, valid=None included
    assert len(jax.tree.leaves(b)) == 3 and len(jax.tree.leaves(bp)) == 4
    assert b.astype(jnp.float32).valid is None and bp.astype(jnp.float32).valid.dtype == jnp.bool_


def test_from_arrays_errors_are_one_line():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 2))
    nan_x = x.copy()
    nan_x[2, 4, 1] = np.nan
    cases = [
        (dict(inputs=x[0], targets=y), r"inputs must be a 3-D array \(B, T, n_in\), got shape \(6, 3\)"),
        (dict(inputs=x, targets=y[..., 0]), r"targets must be a 3-D array \(B, T, n_out\), got shape \(4, 6\)"),
        (dict(inputs=x, targets=y.swapaxes(0, 1)), r"targets must have shape \(B=4, T=6, n_out\).*swapped"),
        (dict(inputs=x, targets=y, mask=np.ones((4, 6, 5))), r"mask must have shape \(B=4, T=6\) or"),
        (dict(inputs=x, targets=y, mask=-np.ones((4, 6))), r"mask must be >= 0"),
        (dict(inputs=nan_x, targets=y), r"inputs holds 1 NaN/inf entries on real steps \(first: trial 2, step 4\)"),
        (dict(inputs=x, targets=y, valid=np.ones((6, 4))), r"valid must have shape \(B=4, T=6\).*swapped"),
        (dict(inputs=x, targets=y, valid=np.array([[1, 0, 1, 0, 0, 0]] * 4)), r"valid row 0 is not ones then zeros"),
        (dict(inputs=x, targets=y, valid=np.zeros((4, 6))), r"valid marks no real step in trial 0"),
        (dict(inputs=x, targets=y, valid=np.full((4, 6), 2)), r"valid must hold only 0/1"),
        (dict(inputs={"a": 1}, targets=y), r"inputs must be an array, got a dict"),
        (dict(inputs=np.full((4, 6, 3), "a"), targets=y), r"inputs must be a real numeric array, got dtype <U1"),
        (dict(inputs=[[[1.0]], [[1.0, 2.0]]], targets=y), r"inputs must be a rectangular numeric array"),
        (dict(inputs=x, targets=y, time_major=1), r"time_major must be True or False"),
        (dict(inputs=x[:, :0], targets=y[:, :0]), r"B >= 1 trials of T >= 1 steps"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            TaskBatch.from_arrays(**kw)
        assert one_line(info).startswith(W + ": ")


def test_as_batch_refuses_what_is_not_a_taskbatch():
    task = sj.tasks.get("copy", length=2, delay=1)
    b = task.sample(jax.random.key(0), 3)
    assert as_batch(b, "w", task=task) is b
    d = {"inputs": b.inputs, "targets": b.targets}
    msg = r"w: batch must be a TaskBatch, got a dict with keys \['inputs', 'targets'\] \(missing field 'mask'\); build"
    with pytest.raises(ValueError, match=msg):
        as_batch(d, "w")
    with pytest.raises(ValueError, match=r"got a dict with keys .*a dict's layout is unknown"):
        as_batch(b._asdict(), "w")
    with pytest.raises(ValueError, match=r"batch must be a TaskBatch, got SimpleNamespace;"):
        as_batch(SimpleNamespace(inputs=b.inputs, targets=b.targets, mask=b.mask), "w")
    with pytest.raises(ValueError, match=r"got tuple \(missing field 'inputs'\)"):
        as_batch(tuple(b[:3]), "w")
    with pytest.raises(ValueError, match=r"batch\.mask must be 0 on padded steps"):
        as_batch(b._replace(valid=jnp.arange(b.inputs.shape[1])[None, :] < 3 + jnp.zeros((3, 1), int)), "w")
    with pytest.raises(ValueError, match=r"batch\.inputs holds 1 NaN/inf"):
        as_batch(b._replace(inputs=b.inputs.at[1, 2, 0].set(jnp.inf)), "w")
    with pytest.raises(ValueError, match=r"batch\.valid must be None or have shape \(B=3, T=6\), got \(3,\)"):
        as_batch(b._replace(valid=jnp.ones(3, bool)), "w")


def test_evaluate_time_major_and_refusals():
    task = sj.tasks.get("copy", length=3, delay=2)  # T = 9
    model = random_model(task.n_in, 8, task.n_out, 0)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    v = sj.ablate.single_couplings(sf)[np.arange(6)]
    b = task.sample(jax.random.key(1), 5)
    tm = [np.asarray(a).swapaxes(0, 1) for a in b[:3]]  # NeuroGym / PyTorch layout (T, B, ...)
    res = sj.evaluate(model, sf, v, b, task=task)
    res_tm = sj.evaluate(model, sf, v, TaskBatch.from_arrays(*tm, time_major=True), task=task)
    for f in ("loss", "delta_loss", "output_distance", "hidden_distance", "score"):
        np.testing.assert_array_equal(getattr(res_tm, f), getattr(res, f))
    assert res_tm.base_loss == res.base_loss and res_tm.base_score == res.base_score
    # the same arrays passed as if batch-major: refused where the trial length is known
    msg = r"evaluate: task 'copy' has .*batch axes look time-major \(T=9, B=5\): build it with sj\.TaskBatch\.from_arr"
    with pytest.raises(ValueError, match=msg + r"ays\(\.\.\., time_major=True\)") as info:
        sj.evaluate(model, sf, v, TaskBatch.from_arrays(*tm), task=task)
    one_line(info)
    with pytest.raises(ValueError, match=r"evaluate: batch must be a TaskBatch, got a dict .*missing field 'mask'"):
        sj.evaluate(model, sf, v, {"inputs": b.inputs, "targets": b.targets})
    with pytest.raises(ValueError, match=r"evaluate: batch must be a TaskBatch, got SimpleNamespace"):
        sj.evaluate(model, sf, v, SimpleNamespace(inputs=b.inputs, targets=b.targets, mask=b.mask))


class SignTask(sj.tasks.Task):
    """Test task: sign accuracy over the mask (padding has mask 0, so it never counts)."""

    name = "sign-test"
    steps: int = eqx.field(default=9, static=True)
    n_in, n_out = 2, 2

    def sample(self, key, batch_size):  # pragma: no cover - not used
        raise NotImplementedError

    def score(self, y, batch):
        hit = (jnp.sign(y) == jnp.sign(batch.targets)).astype(jnp.float32)
        return jnp.sum(batch.mask * hit) / jnp.maximum(jnp.sum(batch.mask), 1.0)


@pytest.fixture(scope="module")
def padded_case():
    rng = np.random.default_rng(3)
    L = np.array([9, 4, 6])
    B, T = len(L), int(L.max())
    valid = np.arange(T)[None, :] < L[:, None]
    x, y = rng.normal(size=(B, T, 2)), rng.normal(size=(B, T, 2))
    m = (rng.random((B, T, 2)) < 0.8).astype(float)
    model = random_model(2, 8, 2, 4)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    v = sj.ablate.single_couplings(sf)[np.arange(5)]
    batch = TaskBatch.from_arrays(x, y, m, valid=valid)
    alone = []
    for i, n in enumerate(L):
        bi = TaskBatch.from_arrays(x[i : i + 1, :n], y[i : i + 1, :n], m[i : i + 1, :n])
        alone.append(sj.evaluate(model, sf, v, bi, task=SignTask(steps=int(n))))
    res = sj.evaluate(model, sf, v, batch, task=SignTask())
    w = np.array([m[i, :n].sum() for i, n in enumerate(L)])  # loss and score are mask-weighted over trials
    return res, alone, w, L


def test_padded_trials_loss_and_score_match_each_trial_alone(padded_case):
    res, alone, w, _ = padded_case
    for f in ("loss", "delta_loss", "score"):
        want = sum(wi * getattr(r, f) for wi, r in zip(w, alone, strict=True)) / w.sum()
        np.testing.assert_allclose(getattr(res, f), want, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(
        res.base_loss, sum(wi * r.base_loss for wi, r in zip(w, alone, strict=True)) / w.sum(), rtol=2e-6
    )
    assert np.ptp([r.base_loss for r in alone]) > 0.1  # the trials differ: a wrong weighting would show


def test_padded_trials_distances_match_each_trial_alone(padded_case):
    res, alone, _, L = padded_case
    # output_distance: mean over real steps; hidden_distance: at each trial's last real step, mean over trials
    want_od = sum(n * r.output_distance for n, r in zip(L, alone, strict=True)) / L.sum()
    np.testing.assert_allclose(res.output_distance, want_od, rtol=2e-5)
    np.testing.assert_allclose(res.hidden_distance, np.mean([r.hidden_distance for r in alone], axis=0), rtol=2e-5)


def test_from_npz(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5, 1))
    valid = np.arange(5)[None, :] < np.array([[5], [2], [4]])
    np.savez(tmp_path / "t.npz", inputs=x, targets=y, valid=valid)
    b = TaskBatch.from_npz(tmp_path / "t.npz")
    ref = TaskBatch.from_arrays(x, y, valid=valid)
    for f in ("inputs", "targets", "mask", "valid"):
        np.testing.assert_array_equal(np.asarray(getattr(b, f)), np.asarray(getattr(ref, f)))
    np.savez(tmp_path / "tm.npz", inputs=x.swapaxes(0, 1), targets=y.swapaxes(0, 1))
    np.testing.assert_array_equal(
        np.asarray(TaskBatch.from_npz(tmp_path / "tm.npz", time_major=True).inputs), x.astype(np.float32)
    )
    np.savez(tmp_path / "bad.npz", inputs=x, target=y)
    np.save(tmp_path / "one.npy", x)
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "nan.npz", inputs=np.full_like(x, np.nan), targets=y)
    cases = [
        ("none.npz", r"no trial file at"),
        (
            "bad.npz",
            r"holds arrays \['inputs', 'target'\]; expected inputs, targets\[, mask, valid\] \(missing "
            r"\['targets'\], unknown \['target'\]\)",
        ),
        ("one.npy", r"is not an \.npz archive of arrays"),
        ("text.npz", r"is not an \.npz archive of arrays"),
        ("nan.npz", r"nan\.npz': inputs holds 30 NaN/inf entries on real steps"),
    ]
    for name, msg in cases:
        with pytest.raises(ValueError, match=r"TaskBatch\.from_npz: .*" + msg) as info:
            TaskBatch.from_npz(tmp_path / name)
        one_line(info)
