"""Tests of schurjax.engine.evaluate against an independent float64 NumPy rollout of W_k = Q (T + dT_k) Q^T."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from schurjax import engine
from schurjax.engine import kernels as _kernels
from schurjax.tasks import TaskBatch

N_IN, N_OUT = 3, 2


def make_model(seed: int, n: int, gain: float = 1.3) -> sj.TanhRNN:
    rng = np.random.default_rng(seed)
    return sj.TanhRNN.from_arrays(
        rng.normal(size=(n, N_IN)),
        rng.normal(size=(n, n)) * gain / np.sqrt(n),
        rng.normal(size=n) * 0.1,
        rng.normal(size=(N_OUT, n)) / np.sqrt(n),
        rng.normal(size=N_OUT) * 0.1,
    )


def make_batch(seed: int, B: int, T: int) -> TaskBatch:
    rng = np.random.default_rng(seed)
    return TaskBatch(
        jnp.asarray(rng.normal(size=(B, T, N_IN)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, T, N_OUT)), jnp.float32),
        jnp.asarray(rng.random((B, T, N_OUT)) < 0.7, jnp.float32),
    )


def random_model_for(task, n: int, seed: int) -> sj.TanhRNN:
    """A random n-unit TanhRNN whose input and output sizes fit ``task``."""
    rng = np.random.default_rng(seed)
    return sj.TanhRNN.from_arrays(
        rng.normal(size=(n, task.n_in)),
        rng.normal(size=(n, n)) / np.sqrt(n),
        np.zeros(n),
        rng.normal(size=(task.n_out, n)) / np.sqrt(n),
        np.zeros(task.n_out),
    )


def schur_of(model) -> sj.SchurForm:
    return sj.ordered_schur(np.asarray(model.W_rec, dtype=np.float64))


def reference(model, sf, dT: np.ndarray, batch, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Independent float64 NumPy rollouts of Q (T + dT_k) Q^T (k = 0 is the unablated model, dT = 0).

    ``valid`` (B, T) 0/1: trials padded at the end; the loss, distances and divergence count valid steps only and
    the final state is each trial's last valid one."""
    W_in, b = np.asarray(model.W_in, np.float64), np.asarray(model.b, np.float64)
    W_out, b_out = np.asarray(model.W_out, np.float64), np.asarray(model.b_out, np.float64)
    x = np.asarray(batch.inputs, np.float64)
    tgt, msk = np.asarray(batch.targets, np.float64), np.asarray(batch.mask, np.float64)
    B, T, _ = x.shape
    v = np.ones((B, T)) if valid is None else np.asarray(valid, np.float64)
    last = [int(np.flatnonzero(v[i]).max()) for i in range(B)]
    msk = msk * v[:, :, None]
    ys, hs = [], []
    for d in np.concatenate([np.zeros((1, sf.n, sf.n)), dT]):
        Wk = sf.Q @ (sf.T + d) @ sf.Q.T
        h = np.zeros((B, sf.n))
        y = np.zeros((B, T, N_OUT))
        h_last = np.zeros((B, sf.n))
        for t in range(T):
            h = np.tanh(h @ Wk.T + x[:, t] @ W_in.T + b)
            y[:, t] = h @ W_out.T + b_out
            for i in range(B):
                if t == last[i]:
                    h_last[i] = h[i]
        ys.append(y)
        hs.append(h_last)
    ys, hs = np.stack(ys), np.stack(hs)
    loss = (msk * (ys - tgt) ** 2).sum(axis=(1, 2, 3)) / msk.sum()
    sq = ((ys[1:] - ys[0]) ** 2).sum(axis=3) * v  # (K, B, T)
    return {
        "loss": loss[1:],
        "base_loss": loss[0],
        "output_distance": sq.sum(axis=(1, 2)) / (v.sum() * N_OUT),
        "hidden_distance": np.linalg.norm(hs[1:] - hs[0], axis=-1).mean(axis=1),
        "divergence": sq.sum(axis=1) / (np.maximum(v.sum(axis=0), 1) * N_OUT),
        "outputs": ys,
    }


@pytest.fixture(scope="module")
def setup():
    model = make_model(0, 16)
    sf = schur_of(model)
    batch = make_batch(1, 6, 15)
    rng = np.random.default_rng(2)
    single = sj.ablate.single_couplings(sf)
    single = single[rng.choice(len(single), size=20, replace=False)]
    masks = np.ones((7, sf.n, sf.n))
    for m in masks:
        m[sf.coupling_mask & (rng.random((sf.n, sf.n)) < 0.3)] = 0.0
    variants = sj.ablate.Variants.concat(single, sj.ablate.block_couplings(sf)[:6], sj.ablate.from_masks(masks, sf=sf))
    ref = reference(model, sf, variants.delta_T(), batch)
    return model, sf, batch, variants, ref


@pytest.mark.parametrize("deviation", [True, False])
@pytest.mark.parametrize("path", ["shared", "dense"])
def test_matches_float64_reference(setup, path, deviation):
    model, sf, batch, variants, ref = setup
    if path == "shared":  # the shared path needs sparse variants: single + block couplings (rank 1 to 4)
        variants, keep = variants[:26], slice(0, 26)
    else:
        keep = slice(None)
    res = sj.evaluate(model, sf, variants, batch, path=path, compiled_chunk=8, divergence=True, deviation=deviation)
    np.testing.assert_allclose(res.loss, ref["loss"][keep], rtol=1e-5)
    np.testing.assert_allclose(res.base_loss, ref["base_loss"], rtol=1e-5)
    np.testing.assert_allclose(res.delta_loss, ref["loss"][keep] - ref["base_loss"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(res.output_distance, ref["output_distance"][keep], rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(res.hidden_distance, ref["hidden_distance"][keep], rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(res.divergence, ref["divergence"][keep], rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(res.divergence.mean(axis=1), res.output_distance, rtol=1e-5)
    np.testing.assert_allclose(res.delta_norm, np.linalg.norm(variants.delta_T(), axis=(1, 2)), rtol=1e-12)
    assert np.all(np.isnan(res.score)) and np.isnan(res.base_score)
    assert [lab["label"] for lab in res.labels] == [lab["label"] for lab in variants.labels]


@pytest.mark.parametrize("path", ["shared", "dense"])
def test_deviation_mode_matches_reference(setup, path):
    """Carrying h_k - h (the default) gives the small differences (distances, delta_loss) to ~1e-5 relative."""
    model, sf, batch, variants, ref = setup
    keep = slice(0, 26) if path == "shared" else slice(None)
    res = sj.evaluate(model, sf, variants[keep], batch, path=path, compiled_chunk=16, divergence=True)
    np.testing.assert_allclose(res.loss, ref["loss"][keep], rtol=1e-6)
    np.testing.assert_allclose(res.delta_loss, ref["loss"][keep] - ref["base_loss"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(res.output_distance, ref["output_distance"][keep], rtol=2e-5)
    np.testing.assert_allclose(res.hidden_distance, ref["hidden_distance"][keep], rtol=2e-5)
    np.testing.assert_allclose(res.divergence, ref["divergence"][keep], rtol=1e-4, atol=1e-12)
    assert res.base_loss == pytest.approx(ref["base_loss"], rel=1e-12)  # the base trajectory runs in float64
    fast = sj.evaluate(model, sf, variants[keep], batch, path=path, precision="tf32", compiled_chunk=16)
    np.testing.assert_allclose(fast.loss, ref["loss"][keep], rtol=1e-5)  # CPU: f32 dots whatever the precision


@pytest.mark.parametrize("deviation", [True, False])
@pytest.mark.parametrize("path", ["shared", "dense"])
def test_valid_steps(setup, path, deviation):
    """Trials of unequal length: loss, distances and divergence over valid steps, final state at the last one."""
    model, sf, batch, variants, _ = setup
    v = variants[:26] if path == "shared" else variants[20:]
    B, T = batch.inputs.shape[:2]
    lengths = np.random.default_rng().integers(1, T + 1, size=B)
    lengths[0] = T
    valid = np.arange(T)[None, :] < lengths[:, None]
    vb = batch._replace(mask=batch.mask * valid[:, :, None], valid=jnp.asarray(valid))
    ref = reference(model, sf, v.delta_T(), batch, valid=valid)
    res = sj.evaluate(model, sf, v, vb, path=path, deviation=deviation, compiled_chunk=8, divergence=True)
    np.testing.assert_allclose(res.base_loss, ref["base_loss"], rtol=1e-5)
    np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)
    tol = dict(rtol=1e-4, atol=1e-12) if deviation else dict(rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(res.output_distance, ref["output_distance"], **tol)
    np.testing.assert_allclose(res.divergence, ref["divergence"], **tol)
    np.testing.assert_allclose(res.hidden_distance, ref["hidden_distance"], rtol=tol["rtol"], atol=1e-6)
    # every step valid is the same as no valid field at all
    full = sj.evaluate(
        model, sf, v, batch._replace(valid=jnp.ones((B, T), bool)), path=path, deviation=deviation, compiled_chunk=8
    )
    plain = sj.evaluate(model, sf, v, batch, path=path, deviation=deviation, compiled_chunk=8)
    np.testing.assert_array_equal(full.delta_loss, plain.delta_loss)
    bad = batch._replace(valid=jnp.ones((B, T + 1)))
    with pytest.raises(ValueError, match=r"^evaluate: batch\.valid must "):
        sj.evaluate(model, sf, v, bad)


def test_wide_sparse_edits_use_dot_correction(setup):
    """top-k edits of rank > 4 take the einsum branch of the shared path."""
    model, sf, batch, _, _ = setup
    variants = sj.ablate.top_k(sf, [5, 9, 12])
    assert variants.max_nnz > _kernels._SMALL_RANK
    ref = reference(model, sf, variants.delta_T(), batch)
    res = sj.evaluate(model, sf, variants, batch, path="shared")
    np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)
    assert engine.choose_path(12, 16) == "dense" and engine.choose_path(32, 128) == "shared"


def test_float64_path(setup):
    model, sf, batch, variants, ref = setup
    res = sj.evaluate(model, sf, variants, batch, dtype=jnp.float64, compiled_chunk=16)
    np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-11)
    np.testing.assert_allclose(res.output_distance, ref["output_distance"], rtol=1e-8, atol=1e-20)
    assert not jax.config.jax_enable_x64  # the engine's x64 context does not leak


def test_paths_agree(setup):
    model, sf, batch, variants, _ = setup
    sparse = variants[:26]
    a = sj.evaluate(model, sf, sparse, batch, path="shared")
    b = sj.evaluate(model, sf, sparse, batch, path="dense")
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    np.testing.assert_allclose(a.output_distance, b.output_distance, rtol=2e-3, atol=1e-9)
    assert engine.choose_path(sparse.max_nnz, sf.n) == "shared"
    assert engine.choose_path(variants.max_nnz, sf.n) == "dense"


@pytest.mark.parametrize("path", ["shared", "dense"])
def test_chunk_sizes_identical(setup, path):
    model, sf, batch, variants, _ = setup
    variants = variants[:26] if path == "shared" else variants
    full = sj.evaluate(model, sf, variants, batch, path=path, compiled_chunk=len(variants))
    for cs in (3, 7):
        part = sj.evaluate(model, sf, variants, batch, path=path, compiled_chunk=cs)
        for name in ("loss", "delta_loss", "output_distance", "hidden_distance"):
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name), err_msg=f"{name}, chunk {cs}")
        assert part.base_loss == full.base_loss


@pytest.mark.parametrize("deviation", [False, True])
@pytest.mark.parametrize("path", ["shared", "dense"])
def test_zero_edits_are_exact(setup, path, deviation):
    """All-ones masks and masks that only remove zero entries of T give delta_loss == 0 exactly."""
    model, sf, batch, _, _ = setup
    n = sf.n
    rng = np.random.default_rng(3)
    zero_below = (np.tril(np.ones((n, n)), -1) > 0) & (sf.T == 0.0)
    masks = np.ones((5, n, n))
    for m in masks[1:]:
        m[zero_below & (rng.random((n, n)) < 0.5)] = 0.0
    assert zero_below.sum() > 0 and (masks[1:] == 0).sum() > 0
    v = sj.ablate.from_masks(masks, sf=sf, allow_diagonal=True)
    v = sj.ablate.Variants.concat(sj.ablate.single_couplings(sf)[:3], v)  # real edits in the same chunks
    res = sj.evaluate(model, sf, v, batch, path=path, compiled_chunk=4, deviation=deviation)
    assert np.all(res.delta_loss[3:] == 0.0) and np.all(res.loss[3:] == res.base_loss)
    assert np.all(res.output_distance[3:] == 0.0) and np.all(res.hidden_distance[3:] == 0.0)
    assert np.all(res.delta_norm[3:] == 0.0)
    assert np.all(res.output_distance[:3] > 0.0)


def test_normal_matrix_all_nonnormal_changes_nothing():
    rng = np.random.default_rng(4)
    n = 12
    Q0, _ = np.linalg.qr(rng.normal(size=(n, n)))
    D = np.zeros((n, n))
    for i in range(0, n, 2):
        r, th = rng.uniform(0.5, 1.1), rng.uniform(0, np.pi)
        D[i : i + 2, i : i + 2] = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    base = make_model(5, n)
    model = sj.TanhRNN.from_arrays(base.W_in, Q0 @ D @ Q0.T, base.b, base.W_out, base.b_out)
    sf = schur_of(model)
    batch = make_batch(6, 4, 20)
    res = sj.evaluate(model, sf, sj.ablate.all_nonnormal(sf), batch)
    assert abs(res.delta_loss[0]) <= 1e-6 * res.base_loss
    assert res.output_distance[0] < 1e-12
    # control: a nonnormal W does change
    m2 = make_model(7, n)
    sf2 = schur_of(m2)
    assert sj.evaluate(m2, sf2, sj.ablate.all_nonnormal(sf2), batch).output_distance[0] > 1e-6


def test_no_recompile_across_chunks(setup):
    model, sf, _, variants, _ = setup
    batch = make_batch(8, 7, 9)  # a shape no other test uses
    traces = lambda: eqx.debug.get_num_traces(_kernels.chunk_dev)  # noqa: E731 - one per compiled chunk shape
    before = traces()
    calls = []
    sj.evaluate(model, sf, variants, batch, path="dense", compiled_chunk=5, progress=lambda d, t: calls.append((d, t)))
    assert traces() == before + 1  # 7 chunks (last one padded), one trace
    assert calls == [(min(5 * (i + 1), len(variants)), len(variants)) for i in range(len(calls))]
    assert calls[-1] == (len(variants), len(variants))
    sj.evaluate(model, sf, variants[:12], batch, path="dense", compiled_chunk=5)  # other K, same chunk shape
    assert traces() == before + 1
    sj.evaluate(model, sf, variants[:3], batch, path="dense", compiled_chunk=5)  # K < chunk: padded to 4 slots
    sj.evaluate(model, sf, variants[:4], batch, path="dense", compiled_chunk=5)
    assert traces() == before + 2


def test_multi_model_equals_per_model():
    n = 12
    models = [make_model(s, n) for s in (10, 11, 12)]
    sfs = [schur_of(m) for m in models]
    vs = [sj.ablate.single_couplings(sf)[:9] for sf in sfs]
    batch = make_batch(9, 5, 11)
    both = sj.engine.evaluate_many(models, sfs, vs, batch, compiled_chunk=4)
    assert isinstance(both, list) and len(both) == 3
    for m, sf, v, res in zip(models, sfs, vs, both, strict=True):
        one = sj.evaluate(m, sf, v, batch, compiled_chunk=4)
        np.testing.assert_allclose(res.loss, one.loss, rtol=1e-6)
        np.testing.assert_allclose(res.output_distance, one.output_distance, rtol=1e-4, atol=1e-12)
        ref = reference(m, sf, v.delta_T(), batch)
        np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)


def test_score_with_task():
    task = sj.tasks.get("sine", steps=12)
    model = random_model_for(task, n=10, seed=13)
    sf = schur_of(model)
    batch = task.sample(jax.random.key(0), 6)
    v = sj.ablate.single_couplings(sf)[:5]
    res = sj.evaluate(model, sf, v, batch, task=task)
    global N_OUT
    saved, N_OUT = N_OUT, task.n_out
    try:
        ref = reference(model, sf, v.delta_T(), batch)
    finally:
        N_OUT = saved
    want = [float(task.score(jnp.asarray(y, jnp.float32), batch)) for y in ref["outputs"]]
    np.testing.assert_allclose(res.base_score, want[0], atol=1e-4)
    np.testing.assert_allclose(res.score, want[1:], atol=1e-4)
    np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)


OPTION_NAMES = ("path", "precision", "compiled_chunk", "chunk_size", "paht")


def test_bad_inputs(setup):
    model, sf, batch, variants, _ = setup
    other = make_model(20, 8)
    sf8 = schur_of(other)
    cases = [
        (dict(variants=sj.ablate.single_couplings(sf8)), r"variants\.n = 8 does not match the model's hidden size"),
        (dict(sf=sf8), r"sf has n = 8 but model has n = 16"),
        (dict(sf=schur_of(make_model(21, 16))), r"sf is not the Schur form of model\.W_rec"),
        (dict(batch=make_batch(0, 2, 3)._replace(inputs=jnp.zeros((2, 3, 5)))), r"model\.n_in = 3 but batch\.inputs"),
        (dict(variants=variants[np.array([], dtype=int)]), r"K = 0"),
        (dict(path="fast"), r"^evaluate: path: must be one of 'auto', 'shared', 'dense', got 'fast'$"),
        (dict(precision="float16"), r"^evaluate: precision: must be one of"),
        (dict(compiled_chunk=0), r"^evaluate: compiled_chunk: must be 'auto' or an int >= 1, got 0$"),
        (dict(chunk_size=8), r"^evaluate: chunk_size: is now compiled_chunk"),
        (dict(paht="dense"), r"^evaluate: paht: is not an option; expected some of path, precision"),
        (
            dict(
                # from_arrays refuses NaN itself: a model edited afterwards must still be refused by evaluate
                model=eqx.tree_at(lambda m: m.W_rec, model, model.W_rec.at[0, 0].set(jnp.nan))
            ),
            r"model\.W_rec holds 1 NaN/inf",
        ),
    ]
    base = dict(model=model, sf=sf, variants=variants, batch=batch)
    for change, msg in cases:
        kw = {**base, **change}
        with pytest.raises(ValueError, match=msg) as info:
            sj.evaluate(
                kw["model"],
                kw["sf"],
                kw["variants"],
                kw["batch"],
                **{k: v for k, v in change.items() if k in OPTION_NAMES},
            )
        assert "\n" not in str(info.value) and str(info.value).startswith("evaluate: ")
    with pytest.raises(ValueError, match="for several models use evaluate_many"):
        sj.evaluate([model, model], [sf, sf], variants, batch)
    with pytest.raises(ValueError, match="variants must be a list"):
        sj.engine.evaluate_many([model, model], [sf, sf], variants, batch)


def test_auto_chunk_size():
    cpu = jax.devices("cpu")[0]
    assert engine.auto_chunk_size("shared", n=128, B=32, T=60, n_out=3, device=cpu) == 128
    assert engine.auto_chunk_size("dense", n=128, B=32, T=60, n_out=3, device=cpu) == 16
    assert engine.auto_chunk_size("shared", n=256, B=16, T=20, n_out=3, device=cpu) == 128


def test_variants_tied_to_their_schur_form():
    n = 12
    m0, m1 = make_model(10, n), make_model(11, n)
    sf0, sf1 = schur_of(m0), schur_of(m1)
    batch = make_batch(9, 5, 11)
    v0, v1 = sj.ablate.all_nonnormal(sf0), sj.ablate.all_nonnormal(sf1)
    # the reviewer's case: m1 evaluated with variants built from m0's Schur form
    with pytest.raises(
        ValueError,
        match=r"^evaluate: variants\[1\] were built from a different SchurForm than "
        r"sf\[1\] \(",
    ) as info:
        sj.engine.evaluate_many([m0, m1], [sf0, sf1], [v0, v0], batch)
    assert "\n" not in str(info.value)
    # the same W, another block order: the edits index other entries of another T
    real = sj.ordered_schur(np.asarray(m0.W_rec, np.float64), order="real")
    with pytest.raises(ValueError, match=r"^evaluate: variants were built from a different SchurForm than sf \("):
        sj.evaluate(m0, real, sj.ablate.single_couplings(sf0)[:4], batch)
    with pytest.raises(ValueError, match=r"^evaluate: variants mix variants built from different SchurForms"):
        sj.evaluate(m0, sf0, sj.ablate.Variants.concat(v0, v1), batch)
    # the matching pairs (and a recomputed, bitwise equal SchurForm) are accepted and right
    both = sj.engine.evaluate_many([m0, m1], [sf0, schur_of(m1)], [v0, v1], batch)
    for m, sf, v, res in zip((m0, m1), (sf0, sf1), (v0, v1), both, strict=True):
        ref = reference(m, sf, v.delta_T(), batch)
        np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)
        assert res.delta_norm[0] == pytest.approx(np.linalg.norm(sf.N), rel=1e-9)


def test_unbound_masks_are_checked_and_counted_by_evaluate(setup):
    model, sf, batch, _, _ = setup
    T = sf.T
    rng = np.random.default_rng(5)
    masks = np.ones((3, sf.n, sf.n))
    for m in masks:
        m[sf.coupling_mask & (rng.random((sf.n, sf.n)) < 0.4)] = 0.0
    res = sj.evaluate(model, sf, sj.ablate.from_masks(masks), batch, path="dense")
    ref = reference(model, sf, T[None] * (masks - 1.0), batch)
    np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(res.delta_norm, [np.linalg.norm(T[m == 0]) for m in masks], rtol=1e-12)
    for lab, m in zip(res.labels, masks, strict=True):
        assert lab["n_removed"] == lab["n_changed"] == int(((m == 0) & (T != 0)).sum())
    # a mask that changes the diagonal blocks (here: all zeros) is refused, unless allowed explicitly
    zero = np.concatenate([masks[:2], np.zeros((1, sf.n, sf.n))])
    with pytest.raises(ValueError, match=r"^evaluate: variants \[2\] \(from_masks without sf\) change the diagonal"):
        sj.evaluate(model, sf, sj.ablate.from_masks(zero), batch, path="dense")
    res = sj.evaluate(model, sf, sj.ablate.from_masks(zero, allow_diagonal=True), batch, path="dense")
    assert res.labels[2]["n_changed"] == int(np.count_nonzero(T))
    np.testing.assert_allclose(res.loss, reference(model, sf, T[None] * (zero - 1.0), batch)["loss"], rtol=1e-5)


def test_task_must_fit_the_batch():
    task = sj.tasks.get("sine", steps=12)
    model = random_model_for(task, n=8, seed=14)
    sf = schur_of(model)
    batch = task.sample(jax.random.key(0), 4)
    v = sj.ablate.single_couplings(sf)[:3]
    flip = sj.tasks.get("flipflop")
    for other in (flip, sj.tasks.get("sine", steps=13)):
        with pytest.raises(
            ValueError,
            match=rf"task '{other.name}' has \(n_in, n_out, steps\) = "
            rf"\({other.n_in}, {other.n_out}, {other.steps}\)",
        ) as info:
            sj.evaluate(model, sf, v, batch, task=other)
        assert "\n" not in str(info.value) and str(info.value).startswith("evaluate: ")
        assert f"batch has ({task.n_in}, {task.n_out}, 12)" in str(info.value)


@pytest.mark.parametrize("dtype", ["foo", object(), jnp.int32, "float16"])
def test_bad_dtype_is_one_line(setup, dtype):
    model, sf, batch, variants, _ = setup
    expected = r"^evaluate: dtype: must be 'float32' or 'float64' \(or jnp\.float32, jnp\.float64\), got "
    with pytest.raises(ValueError, match=expected) as info:
        sj.evaluate(model, sf, variants, batch, dtype=dtype)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("path", ["shared", "dense"])
def test_multi_model_with_unequal_K(path):
    n = 12
    models = [make_model(s, n) for s in (30, 31, 32)]
    sfs = [schur_of(m) for m in models]
    vs = [sj.ablate.single_couplings(sf)[:k] for sf, k in zip(sfs, (9, 4, 13), strict=True)]
    batch = make_batch(8, 5, 11)
    both = sj.engine.evaluate_many(models, sfs, vs, batch, compiled_chunk=4, path=path)
    for m, sf, v, res in zip(models, sfs, vs, both, strict=True):
        assert len(res.loss) == len(v) and len(res.labels) == len(v) and len(res.delta_norm) == len(v)
        one = sj.evaluate(m, sf, v, batch, compiled_chunk=4, path=path)
        for name in ("loss", "delta_loss", "output_distance", "hidden_distance"):
            np.testing.assert_allclose(getattr(res, name), getattr(one, name), rtol=1e-5, atol=1e-9, err_msg=name)
        assert res.base_loss == pytest.approx(one.base_loss, rel=1e-6)
        ref = reference(m, sf, v.delta_T(), batch)
        np.testing.assert_allclose(res.loss, ref["loss"], rtol=1e-5)
        np.testing.assert_allclose(res.hidden_distance, ref["hidden_distance"], rtol=1e-3, atol=1e-6)


def test_engine_options_object_and_shorthand(setup):
    """``options=EngineOptions(...)`` and the keyword shorthand run the same engine; host threads on the dense CPU
    path change nothing (also in float64, whose x64 context is thread-local); both match the NumPy reference."""
    model, sf, batch, variants, ref = setup
    opts = engine.EngineOptions(path="dense", compiled_chunk=4, host_workers=1)
    one = sj.evaluate(model, sf, variants, batch, options=opts)
    np.testing.assert_allclose(one.loss, ref["loss"], rtol=1e-5)
    short = sj.evaluate(model, sf, variants, batch, path="dense", compiled_chunk=4, host_workers=1)
    np.testing.assert_array_equal(short.delta_loss, one.delta_loss)
    for dtype in ("float32", "float64"):
        serial = sj.evaluate(model, sf, variants, batch, options=opts.replace(dtype=dtype))
        threads = sj.evaluate(model, sf, variants, batch, options=opts, host_workers=2, dtype=dtype)  # 9 chunks
        np.testing.assert_array_equal(threads.delta_loss, serial.delta_loss)
        np.testing.assert_array_equal(threads.hidden_distance, serial.hidden_distance)
    f64 = sj.evaluate(model, sf, variants, batch, options=opts, dtype=jnp.float64)
    np.testing.assert_allclose(f64.loss, ref["loss"], rtol=1e-10)


def test_engine_options_checks():
    o = engine.EngineOptions(dtype=jnp.float64, precision="tensorfloat32", devices=jax.local_devices()[:1])
    assert (o.dtype, o.precision, o.matmul_precision, o.jax_dtype) == ("float64", "tf32", "tensorfloat32", jnp.float64)
    assert isinstance(o.devices, tuple) and hash(o) == hash(engine.EngineOptions(**vars(o)))  # frozen, hashable
    assert o.mesh() is None  # one device
    with pytest.raises(AttributeError):
        o.path = "dense"
    cases = [
        (dict(host_workers=0), r"^evaluate: host_workers: must be None or an int >= 1, got 0$"),
        (dict(devices="gpu"), r"^evaluate: devices: must be 'all', an int or a list of jax\.Device, got 'gpu'$"),
        (dict(deviation="yes"), r"^evaluate: deviation: must be True or False, got 'yes'$"),
        (dict(compiled_chunk=True), r"^evaluate: compiled_chunk: must be 'auto' or an int >= 1, got True$"),
    ]
    for kw, msg in cases:
        with pytest.raises(sj.InputError, match=msg):
            engine.EngineOptions(**kw)
    n = len(jax.local_devices())
    with pytest.raises(sj.InputError, match=rf"^evaluate: devices: must be 'all' or an int in 1\.\.{n} "):
        engine.EngineOptions(devices=n + 1).mesh()
    with pytest.raises(sj.InputError, match=r"^EngineOptions: chunk: is not an option"):
        o.replace(chunk=4)
    with pytest.raises(sj.InputError, match=r"^evaluate: options: must be None or an EngineOptions, got dict$"):
        engine.engine_options({"path": "dense"})


def test_warns_when_the_loss_or_the_order_is_probably_not_what_was_meant(setup):
    """No task, no loss, one-hot targets: a cross-entropy network measured by MSE is said; a leaky model with a
    form in modulus order (not the CLI's decay order) is said; the right call says nothing."""
    import warnings

    model, sf, batch, variants, _ = setup
    onehot = jnp.zeros_like(batch.targets).at[..., 0].set(1.0)
    cls = batch._replace(targets=onehot)
    with pytest.warns(UserWarning, match=r"^evaluate: no task and no loss given, so the loss is the masked MSE"):
        sj.evaluate(model, sf, variants[:2], cls)
    leaky = sj.RateRNN(N_IN, 16, N_OUT, alpha=0.2, key=jax.random.key(3))
    with pytest.warns(UserWarning, match=r"^evaluate: the model is leaky \(alpha=0.2\) but sf is in 'modulus'"):
        sf_mod = sj.ordered_schur(leaky.W_rec)
        sj.evaluate(leaky, sf_mod, sj.ablate.single_couplings(sf_mod)[:2], batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sj.evaluate(model, sf, variants[:2], cls, loss="ce")
        sf_decay = sj.schur.schur_of(leaky)
        sj.evaluate(leaky, sf_decay, sj.ablate.single_couplings(sf_decay)[:2], batch)
