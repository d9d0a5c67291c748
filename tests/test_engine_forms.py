"""The engine on every network form: each form x nonlinearity x alpha, with a learned initial state, against the
independent float64 NumPy rollout of the form's own equations (``numpy_reference.rollout``), on both paths and
both rollout forms; and the cross-entropy loss against an independent float64 NumPy cross-entropy."""

from __future__ import annotations

import itertools

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax.tasks import TaskBatch

N, N_IN, N_OUT, B, T = 12, 3, 3, 8, 20
ALPHAS = (1.0, 0.5, 0.2, 0.05)
FORMS = ("rate", "post", "current")
NONLINEARITIES = ("tanh", "relu", "softplus")
# the error of a metric x: |x - ref| / max(|ref|, 1e-5 base_loss) (as tests/test_precision.py)
BOUND = {"delta_loss": 1e-3, "output_distance": 1e-4, "loss": 1e-5, "hidden_distance": 1e-4}
# the plain rollout differences two float32 trajectories: its small effects are only as good as that
PLAIN_BOUND = {"delta_loss": 1e-1, "output_distance": 1e-1, "loss": 1e-5, "hidden_distance": 1e-1}


def make_model(rng, alpha: float, nonlinearity: str, form: str) -> sj.RateRNN:
    gain = 1.3 if nonlinearity == "tanh" else 0.9
    return sj.RateRNN.from_arrays(
        W_in=rng.normal(size=(N, N_IN)),
        W_rec=rng.normal(size=(N, N)) * gain / np.sqrt(N),
        b=rng.normal(size=N) * 0.3,
        W_out=rng.normal(size=(N_OUT, N)) / np.sqrt(N),
        b_out=rng.normal(size=N_OUT) * 0.1,
        alpha=alpha,
        nonlinearity=nonlinearity,
        form=form,
        h0=rng.normal(size=N) * 0.5,
    )


def make_batch(rng, classes: bool = False) -> TaskBatch:
    x = rng.normal(size=(B, T, N_IN))
    if classes:  # one-hot targets, decision steps only (mask equal across outputs within a step)
        tgt = np.eye(N_OUT)[rng.integers(0, N_OUT, size=(B, T))]
        mask = np.repeat((rng.random((B, T, 1)) < 0.4) * rng.uniform(0.5, 2.0, (B, T, 1)), N_OUT, axis=2)
    else:
        tgt, mask = rng.normal(size=(B, T, N_OUT)), (rng.random((B, T, N_OUT)) < 0.7) * 1.0
    return TaskBatch(*(jnp.asarray(a, jnp.float32) for a in (x, tgt, mask)))


def variants_of(sf, dense: bool):
    """Sparse edits (every third single coupling, two scaled by 1 - 1e-5: tiny effects) or dense ones (bands, all
    nonnormal)."""
    if dense:
        return sj.ablate.Variants.concat(sj.ablate.bands(sf), sj.ablate.all_nonnormal(sf))
    top = np.argsort(-np.abs(sf.T[sf.couplings[:, 0], sf.couplings[:, 1]]))[:2]
    scaled = sj.ablate.scaling(sf, [1 - 1e-5, 0.5], which=[int(c) for c in top])
    return sj.ablate.Variants.concat(sj.ablate.single_couplings(sf)[::3], scaled)


def np_loss(y, batch, loss: str) -> np.ndarray:
    """The loss of outputs y (..., B, T, o) in float64: masked MSE, or the step-weighted cross-entropy."""
    tgt, msk = np.asarray(batch.targets, np.float64), np.asarray(batch.mask, np.float64)
    if loss == "mse":
        return (msk * (y - tgt) ** 2).sum(axis=(-3, -2, -1)) / msk.sum()
    m = y.max(axis=-1, keepdims=True)
    log_softmax = y - m - np.log(np.exp(y - m).sum(axis=-1, keepdims=True))
    w = msk.max(axis=-1)
    return (w * -(tgt * log_softmax).sum(axis=-1)).sum(axis=(-2, -1)) / w.sum()


def reference(model, sf, variants, batch, loss: str = "mse") -> dict:
    Q, Tm = np.asarray(sf.Q), np.asarray(sf.T)
    W = np.concatenate([(Q @ Tm @ Q.T)[None], Q @ (Tm[None] + variants.delta_T(T=Tm)) @ Q.T])
    y, h = rollout(model, batch.inputs, W)
    value = np_loss(y, batch, loss)
    return {
        "base_loss": value[0],
        "loss": value[1:],
        "delta_loss": value[1:] - value[0],
        "output_distance": ((y[1:] - y[0]) ** 2).mean(axis=(1, 2, 3)),
        "hidden_distance": np.linalg.norm(h[1:] - h[0], axis=-1).mean(axis=1),
    }


def check(res, ref, bound: dict, what: str) -> None:
    assert res.base_loss == pytest.approx(ref["base_loss"], rel=1e-6), what
    for name, b in bound.items():
        err = np.abs(getattr(res, name) - ref[name]) / np.maximum(np.abs(ref[name]), 1e-5 * ref["base_loss"])
        assert err.max() <= b, f"{what} {name}: max error {err.max():.2e} at {res.labels[int(err.argmax())]['label']}"


CASES = list(itertools.product(FORMS, NONLINEARITIES))


@pytest.mark.parametrize("form, nonlinearity", CASES)
def test_every_alpha_matches_the_float64_reference(form, nonlinearity):
    """One call per path and rollout form evaluates the four alphas together (one compiled program for all).
    The deviation form runs on both paths; the plain form on one, alternating over the cases (both are covered)."""
    rng = np.random.default_rng()
    models = [make_model(rng, a, nonlinearity, form) for a in ALPHAS]
    sfs = [sj.ordered_schur(np.asarray(m.W_rec, np.float64)) for m in models]
    batch = make_batch(rng)
    plain_path = ("shared", "dense")[CASES.index((form, nonlinearity)) % 2]
    for path in ("shared", "dense"):
        vsets = [variants_of(sf, path == "dense") for sf in sfs]
        refs = [reference(m, sf, v, batch) for m, sf, v in zip(models, sfs, vsets, strict=True)]
        for deviation in (True, False) if path == plain_path else (True,):
            out = sj.engine.evaluate_many(models, sfs, vsets, batch, path=path, deviation=deviation)
            for a, res, ref in zip(ALPHAS, out, refs, strict=True):
                assert res.loss_type == "mse"
                bound = BOUND if deviation else PLAIN_BOUND
                check(res, ref, bound, f"{form}/{nonlinearity} alpha={a} {path} deviation={deviation}")


class Decide(sj.tasks.Task):
    """A classification task declaring the cross-entropy loss (batches made by the tests)."""

    name = "decide"
    loss_type = "ce"
    n_in, n_out, steps = N_IN, N_OUT, T

    def sample(self, key, batch_size):  # pragma: no cover - the tests build the batches
        raise NotImplementedError

    def score(self, y, batch):
        w = jnp.max(batch.mask, axis=-1)
        hit = jnp.argmax(y, axis=-1) == jnp.argmax(batch.targets, axis=-1)
        return jnp.sum(w * hit) / jnp.maximum(jnp.sum(w), 1.0)


def test_masked_ce_and_task_loss_against_numpy():
    rng = np.random.default_rng()
    batch = make_batch(rng, classes=True)
    y = rng.normal(size=(B, T, N_OUT)) * 3
    want = np_loss(y, batch, "ce")
    assert float(sj.tasks.masked_ce(jnp.asarray(y, jnp.float32), batch)) == pytest.approx(want, rel=1e-5)
    assert float(Decide().loss(jnp.asarray(y, jnp.float32), batch)) == pytest.approx(want, rel=1e-5)
    assert sj.tasks.get("flipflop").loss_type == "mse"  # the built-in regression tasks keep the masked MSE
    with pytest.raises(ValueError, match="loss_type must be 'mse', 'ce' or 'custom'"):
        sj.tasks.check_task(type("Odd", (Decide,), {"loss_type": "hinge"})(), "tests")


def test_cross_entropy_matches_float64(monkeypatch):
    """loss="ce" (and a task declaring it): the engine's cross-entropy and its change against float64 NumPy, on
    both paths and both rollout forms, per trial, in float64, and for the variants the float64 re-run refines
    (a leaky relu network of the NeuroGym form beside one without leak, in one call)."""
    rng = np.random.default_rng()
    models = [make_model(rng, a, "relu", "post") for a in (1.0, 0.2)]
    models = [eqx.tree_at(lambda m: m.W_out, m, m.W_out * 4.0) for m in models]  # larger logits: confident
    sfs = [sj.ordered_schur(np.asarray(m.W_rec, np.float64)) for m in models]
    batch = make_batch(rng, classes=True)
    for path in ("shared", "dense"):
        vsets = [variants_of(sf, path == "dense") for sf in sfs]
        refs = [reference(m, sf, v, batch, "ce") for m, sf, v in zip(models, sfs, vsets, strict=True)]
        for deviation in (True, False):
            out = sj.engine.evaluate_many(models, sfs, vsets, batch, path=path, deviation=deviation, loss="ce")
            for res, ref in zip(out, refs, strict=True):
                assert res.loss_type == "ce"
                check(res, ref, BOUND if deviation else PLAIN_BOUND, f"ce {path} deviation={deviation}")
    # the dense edits of the last loop, the leaky model, through a task that declares "ce"
    m, sf, v, ref = models[1], sfs[1], vsets[1], refs[1]
    res = sj.engine.evaluate_many(models, sfs, vsets, batch, task=Decide(), per_trial=True)[1]
    assert res.loss_type == "ce"
    check(res, ref, BOUND, "ce from the task")  # the task's loss type is the keyword's
    np.testing.assert_allclose(res.trial_delta_loss.sum(axis=1), res.delta_loss, rtol=1e-5, atol=1e-7)
    assert res.trial_base_loss.sum() == pytest.approx(res.base_loss, rel=1e-12)
    y, _ = rollout(m, batch.inputs, sf.Q @ (sf.T + v.delta_T(T=sf.T)) @ sf.Q.T)
    acc = [Decide().score(jnp.asarray(yk), batch) for yk in y]
    np.testing.assert_allclose(res.score, acc, atol=1.5 / (B * T))
    f64 = sj.evaluate(m, sf, v, batch, loss="ce", dtype=jnp.float64)
    check(f64, ref, dict.fromkeys(BOUND, 1e-9), "ce float64")
    assert sj.evaluate(m, sf, v, batch, dtype=jnp.float64).loss_type == "mse"  # no task, no keyword: the MSE
    monkeypatch.setattr(sj.engine.evaluation, "REFINE_CONDITION", 0.0)  # every variant qualifies for the re-run
    fine = sj.engine.evaluate_many(models, sfs, vsets, batch, loss="ce")[1]
    err = np.abs(fine.delta_loss - ref["delta_loss"]) / np.maximum(np.abs(ref["delta_loss"]), 1e-5 * ref["base_loss"])
    assert err.max() < 1e-9  # all were re-run, in float64, with the cross-entropy


def test_models_of_one_call_share_nonlinearity_and_form():
    """Alphas may differ within a call (tested above); nonlinearity or form may not: a one-line error."""
    rng = np.random.default_rng()
    a, b = make_model(rng, 0.2, "tanh", "rate"), make_model(rng, 0.2, "relu", "rate")
    sfs = [sj.ordered_schur(np.asarray(m.W_rec, np.float64)) for m in (a, b)]
    vsets = [sj.ablate.all_nonnormal(sf) for sf in sfs]
    with pytest.raises(ValueError, match=r"share their nonlinearity and form.*model\[1\]") as info:
        sj.engine.evaluate_many([a, b], sfs, vsets, make_batch(rng))
    assert "\n" not in str(info.value) and str(info.value).startswith("evaluate: ")
    with pytest.raises(ValueError, match="loss must be None or one of 'mse', 'ce', 'custom', got 'nll'"):
        sj.evaluate(a, sfs[0], vsets[0], make_batch(rng), loss="nll")


class Absolute(Decide):
    """A task with its own per-trial loss (``loss_type = "custom"``): the masked absolute error per trial."""

    name = "absolute"
    loss_type = "custom"

    def trial_loss(self, y, batch):
        return jnp.sum(batch.mask * jnp.abs(y - batch.targets), axis=(1, 2)) / self.steps


def test_custom_trial_loss_of_a_task():
    rng = np.random.default_rng()
    m = make_model(rng, 0.2, "softplus", "current")
    sf = sj.ordered_schur(np.asarray(m.W_rec, np.float64))
    v = variants_of(sf, dense=False)[:12]
    batch = make_batch(rng)
    Q, Tm = np.asarray(sf.Q), np.asarray(sf.T)
    y, _ = rollout(m, batch.inputs, np.concatenate([(Q @ Tm @ Q.T)[None], Q @ (Tm + v.delta_T(T=Tm)) @ Q.T]))
    tgt, msk = np.asarray(batch.targets, np.float64), np.asarray(batch.mask, np.float64)
    trial = (msk * np.abs(y - tgt)).sum(axis=(2, 3)) / T  # (1 + K, B)
    assert float(Absolute().loss(jnp.asarray(y[0], jnp.float32), batch)) == pytest.approx(trial[0].mean(), rel=1e-5)
    for deviation in (True, False):
        res = sj.evaluate(m, sf, v, batch, task=Absolute(), per_trial=True, deviation=deviation)
        assert res.loss_type == "custom"
        assert res.base_loss == pytest.approx(trial[0].mean(), rel=1e-5)
        np.testing.assert_allclose(res.loss, trial[1:].mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(res.delta_loss, (trial[1:] - trial[0]).mean(axis=1), atol=1e-5 * res.base_loss)
        np.testing.assert_allclose(res.trial_delta_loss.sum(axis=1), res.delta_loss, rtol=1e-9, atol=1e-12)
        assert res.trial_base_loss.sum() == pytest.approx(res.base_loss, rel=1e-9)
    with pytest.raises(ValueError, match="needs a task with a trial_loss"):
        sj.evaluate(m, sf, v, batch, loss="custom")
