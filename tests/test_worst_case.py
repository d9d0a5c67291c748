"""The worst edit of a given size against random edits of that size, with losses from an independent float64 NumPy
rollout; the projection onto the sphere, the support and rank one holds exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj


@pytest.fixture(scope="module")
def setup():
    task = sj.tasks.get("flipflop", bits=1, steps=10)
    model = sj.TanhRNN(1, 8, 1, key=jax.random.key(4), gain=1.1)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    batch = task.sample(jax.random.key(5), 16)
    return task, model, sf, batch


def _loss64(model, batch, W):
    """Masked MSE of the model with recurrent matrices W (K, n, n), float64 NumPy reference."""
    y = rollout(model, batch.inputs, W)[0]
    m, t = np.asarray(batch.mask, np.float64), np.asarray(batch.targets, np.float64)
    return np.sum(m * (y - t) ** 2, axis=(-3, -2, -1)) / m.sum()


@pytest.mark.parametrize("kind", sj.ablate.WORST_KINDS)
def test_ascent_beats_random_edits_of_the_same_norm(setup, kind):
    task, model, sf, batch = setup
    r = 0.4
    wc = sj.ablate.worst_case(jax.random.key(0), model, sf, batch, radius=r, kind=kind, starts=6, steps=40, task=task)
    n = sf.n
    # the projection holds exactly: norm, support, rank
    np.testing.assert_allclose(np.linalg.norm(wc.dT, axis=(1, 2)), r, rtol=1e-13)
    if kind == "coupling":
        assert not np.any(wc.dT[:, ~sf.coupling_mask])
    if kind == "rank1":
        s = np.linalg.svd(wc.dT, compute_uv=False)
        assert np.all(s[:, 1] <= 1e-12 * s[:, 0])
    # the reported loss change is that of the returned edit (float64 reference, float32 ascent)
    W = sf.Q @ (sf.T + wc.dT) @ sf.Q.T
    base = _loss64(model, batch, np.asarray(model.W_rec, np.float64)[None])[0]
    d64 = _loss64(model, batch, W) - base
    np.testing.assert_allclose(wc.delta_loss, d64, rtol=2e-3, atol=1e-5 * base)
    # 500 random edits of the same norm in the same space (float64 reference) change the loss less
    rng = np.random.default_rng(1)
    if kind == "rank1":
        u, v = rng.normal(size=(500, n)), rng.normal(size=(500, n))
        E = np.einsum("ki,kj->kij", u, v)
    else:
        E = rng.normal(size=(500, n, n)) * (sf.coupling_mask if kind == "coupling" else 1.0)
    E *= r / np.linalg.norm(E, axis=(1, 2))[:, None, None]
    rand = _loss64(model, batch, sf.Q @ (sf.T + E) @ sf.Q.T) - base
    assert wc.worst >= rand.max()
    assert np.all(np.diff(np.maximum.accumulate(wc.trace, axis=1), axis=1) >= 0)


def test_robustness_radius_brackets_the_criterion(setup):
    task, model, sf, batch = setup
    rr = sj.ablate.robustness_radius(0, model, sf, batch, tau=0.05, iters=6, starts=4, steps=20, task=task)
    assert 0 < rr.radius < rr.failing < np.inf
    keeps = [w <= 0.05 for w in rr.worst_rel]
    assert max(r for r, k in zip(rr.radii, keeps, strict=True) if k) == rr.radius
    assert min(r for r, k in zip(rr.radii, keeps, strict=True) if not k) == rr.failing


def test_worst_case_refuses_bad_arguments(setup):
    task, model, sf, batch = setup
    with pytest.raises(ValueError, match="kind"):
        sj.ablate.worst_case(0, model, sf, batch, radius=1.0, kind="sparse")
    with pytest.raises(ValueError, match="radius"):
        sj.ablate.worst_case(0, model, sf, batch, radius=-1.0)
    with pytest.raises(ValueError, match="starts"):
        sj.ablate.worst_case(0, model, sf, batch, radius=1.0, starts=0)


def test_worst_is_a_sweep_control_kind(setup, tmp_path):
    """``control_kinds=("worst", "matched_norm")``: each controlled removal gets the worst edit of its own size,
    found on the sweep's batch; its norm is the removal's, its loss change (from the table) matches a float64 NumPy
    rollout of W + Q dT Q^T, and it beats the random edit of the same size."""
    task, model, sf, _ = setup
    run = sj.sweep(
        [(model, task, "ff")],
        out=tmp_path / "run",
        families="single",
        control_kinds=("worst", "matched_norm"),
        control_max=4,
        trials=16,
        progress=False,
        log=lambda s: None,
    )
    t = run.table
    worst = t[t["control_kind"] == "worst"].sort_values("control_of")
    rand = t[t["control_kind"] == "matched_norm"].sort_values("control_of")
    removals = t.set_index("row_id").loc[worst["control_of"].astype(int)]
    assert len(worst) == 4 and list(worst["control_of"]) == list(rand["control_of"])
    np.testing.assert_allclose(worst["delta_norm"].to_numpy(), removals["delta_norm"].to_numpy(), rtol=1e-12)
    # the same edits, planned again (what a resumed sweep does), and their losses in float64 NumPy
    from schurjax.models import resolve_models
    from schurjax.sweeps.loop import SharedBatches
    from schurjax.sweeps.plan import plan_model

    config = sj.sweeps.SweepConfig(
        families=("single",), control_kinds=("worst", "matched_norm"), control_max=4, trials=16, order="auto"
    )
    spec = resolve_models([(model, task, "ff")])[0]
    batches = SharedBatches(config)
    plan = plan_model(spec, config, batches)
    ctrl = plan.variants[np.arange(plan.n_ablations, plan.n_ablations + 4)]
    assert [lab["control_kind"] for lab in ctrl.labels] == ["worst"] * 4
    W = np.asarray(model.W_rec, np.float64)[None] + plan.sf.reconstruct(ctrl.delta_T())
    batch = batches(spec)
    base = _loss64(model, batch, np.asarray(model.W_rec, np.float64)[None])[0]
    np.testing.assert_allclose(worst["delta_loss"].to_numpy(), _loss64(model, batch, W) - base, rtol=1e-4, atol=1e-7)
    assert np.all(worst["delta_loss"].to_numpy() > rand["delta_loss"].to_numpy())
