"""The sweep package: config validation, chunk plans, model resolution and the sj.sweep entry point."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schurjax as sj
from schurjax.sweeps import config as sweep_config
from schurjax.sweeps import plan_chunks, resolve_models


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=6), st.integers(1, 17))
def test_plan_chunks_cover_in_order_without_crossing_segments(segments, size):
    chunks = plan_chunks(segments, size)
    flat = [k for a, b in chunks for k in range(a, b)]
    assert flat == list(range(sum(segments)))
    bounds = np.cumsum([0, *segments])
    for a, b in chunks:
        assert 0 < b - a <= size
        seg = np.searchsorted(bounds, a, side="right") - 1
        assert b <= bounds[seg + 1]  # never crosses into the next segment


def test_family_and_control_names():
    assert sweep_config.parse_families("single, block,band,all_nonnormal,single") == [
        "single",
        "block",
        "band",
        "all_nonnormal",
    ]
    with pytest.raises(sj.InputError, match="families: unknown name 'diagonal'") as e:
        sweep_config.parse_families("single,diagonal")
    assert e.value.arg == "families"
    with pytest.raises(sj.InputError, match="no family given"):
        sweep_config.parse_families(" , ")
    assert sweep_config.parse_control_kinds("none") == []
    with pytest.raises(sj.InputError, match="control_kinds: unknown name 'fancy'"):
        sweep_config.parse_control_kinds("matched_norm,fancy")
    # every name a sweep accepts makes rows whose family is that name
    sf = sj.ordered_schur(np.random.default_rng(0).normal(size=(6, 6)))
    for name in sweep_config.SWEEP_FAMILIES:
        v = sj.ablate.FAMILIES[name](sf)
        assert {lab["family"] for lab in v.labels} <= {name}


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"trials": 0}, "trials"),
        ({"trials": True}, "trials"),
        ({"chunk_size": 2.5}, "chunk_size"),
        ({"seed": -1}, "seed"),
        ({"control_max": -2}, "control_max"),
        ({"order": "size"}, "order"),
        ({"precision": "fast"}, "precision"),
        ({"dtype": "float16"}, "dtype"),
        ({"deviation": "yes"}, "deviation"),
    ],
)
def test_config_errors_name_the_argument(kwargs, arg):
    with pytest.raises(sj.InputError) as e:
        sweep_config.SweepConfig(**kwargs)
    assert e.value.arg == arg and str(e.value).startswith(f"sweep: {arg}: must be ")
    assert repr(next(iter(kwargs.values()))) in str(e.value)


def test_resolve_models_ids_and_errors(tmp_path):
    specs = resolve_models(["zoo:flipflop/0", "zoo:flipflop/0"])
    assert [s.id for s in specs] == ["flipflop-0", "flipflop-0~1"]
    model = sj.zoo.load("sine", seed=1)
    (spec,) = resolve_models([(model, sj.tasks.get("sine"))])
    assert spec.id == "sine-m0" and spec.source == "object"
    with pytest.raises(sj.InputError, match=r"models: .*no such file"):
        resolve_models([str(tmp_path / "nope.eqx")])
    with pytest.raises(sj.InputError, match="don't fit task 'copy'"):
        resolve_models([(model, sj.tasks.get("copy"))])
    with pytest.raises(sj.InputError, match=r"models: \[0\] must be a path"):
        resolve_models([42])


def _loss64(W_rec, model, batch):
    """Independent float64 NumPy reference: masked MSE of the tanh RNN with recurrent matrix W_rec."""
    x = np.asarray(batch.inputs, np.float64)
    W_in, b = np.asarray(model.W_in, np.float64), np.asarray(model.b, np.float64)
    W_out, b_out = np.asarray(model.W_out, np.float64), np.asarray(model.b_out, np.float64)
    h = np.zeros((x.shape[0], W_rec.shape[0]))
    err = 0.0
    m, tgt = np.asarray(batch.mask, np.float64), np.asarray(batch.targets, np.float64)
    for t in range(x.shape[1]):
        h = np.tanh(h @ W_rec.T + x[:, t] @ W_in.T + b)
        err += np.sum(m[:, t] * (h @ W_out.T + b_out - tgt[:, t]) ** 2)
    return err / m.sum()


def test_sweep_of_a_model_object_matches_float64_and_calls_back(tmp_path):
    task = sj.tasks.get("flipflop")
    model = sj.zoo.load("flipflop", seed=2)
    seen = []
    run = sj.sweep(
        [(model, task, "ff")],
        out=tmp_path / "run",
        families="block,all_nonnormal",
        controls=0,
        trials=8,
        chunk_size=16,
        progress=False,
        log=lambda s: None,
        on_chunk=lambda mid, c, a, b: seen.append((mid, c, a, b)),
    )
    df = run.table
    assert run.complete and set(df.family) == {"block", "all_nonnormal"}
    assert seen and seen[0] == ("ff", 0, 0, 16) and seen[-1][3] == len(df)
    assert [c for _, c, _, _ in seen] == list(range(len(seen)))
    batch = task.sample(sweep_config.batch_key(0, "flipflop", task.params()), 8)
    sf = run.schurs["ff"]
    row = df[df.family == "all_nonnormal"].iloc[0]
    D = np.where(sf.coupling_mask, 0.0, sf.T)
    assert row.loss == pytest.approx(_loss64(sf.Q @ D @ sf.Q.T, model, batch), rel=1e-4)
    assert row.base_loss == pytest.approx(_loss64(np.asarray(model.W_rec, np.float64), model, batch), rel=1e-4)
    # calling again with the same arguments resumes: nothing is recomputed
    again = sj.sweep(
        [(model, task, "ff")],
        out=tmp_path / "run",
        families="block,all_nonnormal",
        controls=0,
        trials=8,
        chunk_size=16,
        progress=False,
        log=lambda s: None,
        on_chunk=lambda *a: pytest.fail("a finished chunk was recomputed"),
    )
    assert again.table.equals(df)
    with pytest.raises(sj.InputError, match=r"out: .*holds a different sweep \(trials: 8 != 9\)"):
        sj.sweep(
            [(model, task, "ff")],
            out=tmp_path / "run",
            families="block,all_nonnormal",
            controls=0,
            trials=9,
            chunk_size=16,
            progress=False,
            log=lambda s: None,
        )


def test_fixed_point_columns_in_the_table(tmp_path):
    """--fixed-points: the columns equal sj.dynamics.fixed_point_columns on the same variants and key."""
    from schurjax.sweeps.config import FIXED_POINT_COLUMNS, fixed_point_key

    task = sj.tasks.get("flipflop")
    model = sj.zoo.load("flipflop", seed=0)
    run = sj.sweep(
        [(model, task, "ff")],
        out=tmp_path / "run",
        families="all_nonnormal",
        controls=0,
        trials=8,
        fixed_points=True,
        progress=False,
        log=lambda s: None,
    )
    row = run.table.iloc[0]
    assert row.n_stable == 8 and row.lost == 0  # the flip-flop's 2^3 attractors survive removing every coupling
    sf = run.schurs["ff"]
    batch = task.sample(sweep_config.batch_key(0, "flipflop", task.params()), 8)
    cols = sj.dynamics.fixed_point_columns(
        model, sf, sj.ablate.all_nonnormal(sf), key=fixed_point_key(0, "ff"), batch=batch
    )
    for name in FIXED_POINT_COLUMNS:
        assert row[name] == pytest.approx(float(cols[name][0]), nan_ok=True), name


def test_sweep_takes_the_rank_matched_and_schur_rank1_controls(tmp_path):
    task = sj.tasks.get("flipflop", bits=1, steps=8)
    model = sj.TanhRNN(1, 6, 1, key=jax.random.key(0))
    assert sweep_config.parse_control_kinds("rank-matched,schur-rank1") == ["rank_matched", "schur_rank1"]
    sj.sweep(
        [(model, task)],
        families=["single"],
        controls=2,
        control_kinds=["rank_matched", "schur_rank1"],
        trials=8,
        out=tmp_path / "r",
        progress=False,
    )
    t = sj.results.load(tmp_path / "r").table
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    m = len(sj.ablate.single_couplings(sf))
    for kind in ("rank_matched", "schur_rank1"):
        rows = t[t.control_kind == kind]
        assert len(rows) == 2 * m
        # each control's ||dW||_F is its removal's (the removals' rows come first, in order)
        norms = np.asarray(t[t.family == "single"].delta_norm, np.float64)
        np.testing.assert_allclose(np.asarray(rows.delta_norm, np.float64), np.repeat(norms, 2), rtol=1e-6)
