"""Statistics of the study against SciPy/NumPy references; score parts and per-trial sums against independent
float64 computations; the combinatorial helpers (feed-forward lines, prefix search) against brute force."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import rollout
from scipy import stats as sps

import schurjax as sj
from schurjax.studies import compression, keep, profiles, replay, scoring, stats
from schurjax.studies.protocol import StudyConfig, keeps_loss, keeps_score


def test_bootstrap_counts_are_multinomial_resamples():
    c = stats.bootstrap_counts(jax.random.key(3), 50, 4000)
    assert c.shape == (4000, 50) and np.all(c.sum(axis=1) == 50) and np.all(c >= 0)
    # each trial's multiplicity is Binomial(50, 1/50): mean 1, variance 49/50
    assert abs(c.mean() - 1.0) < 0.01 and abs(c.var() - 49 / 50) < 0.03
    assert np.array_equal(c, stats.bootstrap_counts(jax.random.key(3), 50, 4000))
    assert not np.array_equal(c, stats.bootstrap_counts(jax.random.key(4), 50, 4000))


def test_bootstrap_interval_covers_a_known_mean():
    """Percentile intervals of a mean from per-trial sums cover the true mean ~95 % of the time."""
    rng = np.random.default_rng(0)
    hits, n_exp = 0, 300
    for e in range(n_exp):
        x = rng.exponential(2.0, size=80)  # skewed, true mean 2
        counts = stats.bootstrap_counts(jax.random.key(e), x.size, 400)
        lo, hi = stats.percentile_interval(counts @ x / x.size)
        hits += lo <= 2.0 <= hi
    assert 0.89 <= hits / n_exp <= 0.985


def test_rel_change_replicates_equal_direct_resampling():
    rng = np.random.default_rng(1)
    d, base = rng.normal(size=(5, 12)), rng.uniform(1, 2, size=12)
    counts = stats.bootstrap_counts(jax.random.key(0), 12, 7)
    got = stats.rel_change_replicates(counts, d, base)
    idx = [np.repeat(np.arange(12), c.astype(int)) for c in counts]  # the resampled trials themselves
    want = np.stack([[d[k, i].sum() / base[i].sum() for i in idx] for k in range(5)])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_wilcoxon_equals_scipy_and_effect_size_is_direct():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0.3, 1, size=40), rng.normal(0, 1, size=40)
    x[3], y[7] = np.nan, np.nan  # dropped pairs
    x[10] = y[10]  # a zero difference (dropped, Wilcoxon's convention)
    r = stats.wilcoxon_paired(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    d = (x - y)[ok]
    d = d[d != 0]
    ref = sps.wilcoxon(d)
    assert r["n"] == 38 and r["p"] == pytest.approx(ref.pvalue) and r["statistic"] == pytest.approx(ref.statistic)
    ranks = sps.rankdata(np.abs(d))
    rb = (ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum()
    assert r["rank_biserial"] == pytest.approx(rb)
    assert np.isnan(stats.wilcoxon_paired(np.ones(3), np.ones(3))["p"])


def test_spearman_equals_scipy_on_finite_entries():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=30), rng.normal(size=30)
    a[[1, 5]] = np.nan
    b[2] = np.nan
    ok = np.isfinite(a) & np.isfinite(b)
    assert stats.spearman(a, b) == pytest.approx(sps.spearmanr(a[ok], b[ok]).statistic)
    ties = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 4.0])
    assert stats.spearman(ties, ties[::-1]) == pytest.approx(sps.spearmanr(ties, ties[::-1]).statistic)


def test_spearman_rows_equals_scipy_row_by_row():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(50, 12)), rng.normal(size=(50, 12))
    a[:, 3] = np.nan  # an empty cell in every row
    b[7, 5] = np.nan  # one row with another empty cell
    a[9] = 1.0  # no spread
    b[11, :6] = b[11, 6:]  # ties
    got = stats.spearman_rows(a, b)
    for r in range(50):
        ok = np.isfinite(a[r]) & np.isfinite(b[r])
        if r == 9:
            assert np.isnan(got[r])
        else:
            assert got[r] == pytest.approx(sps.spearmanr(a[r, ok], b[r, ok]).statistic, abs=1e-12)


def test_spearman_null_equals_a_direct_loop():
    rng = np.random.default_rng(7)
    cells = [rng.integers(0, 6, size=n) for n in (40, 55, 61)]
    values = [rng.normal(size=c.size) + 0.3 * c for c in cells]
    pairs = [(0, 1), (0, 2), (1, 2)]
    r = stats.spearman_null(jax.random.key(3), cells, values, pairs, _profile, n_shuffles=60)
    draw = stats._rng(jax.random.key(3))  # the same draws, in the same order: per draw, one permutation per model
    ref = []
    for _ in range(60):
        prof = [_profile(c, v[draw.permutation(v.size)]) for c, v in zip(cells, values, strict=True)]
        ref.append(np.mean([sps.spearmanr(prof[i], prof[j]).statistic for i, j in pairs]))
    np.testing.assert_allclose(r["null"], ref, atol=1e-12)


def _profile(c, v, n=6):
    return profiles.profile(c, v, n)


def test_spearman_null_shape_and_power():
    rng = np.random.default_rng(4)
    cells = [rng.integers(0, 6, size=300) for _ in range(3)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    # shared structure: importance rises with the cell index in every model
    shared = [c + rng.normal(0, 1.0, size=c.size) for c in cells]
    r = stats.spearman_null(jax.random.key(0), cells, shared, pairs, _profile, n_shuffles=200)
    assert r["null"].shape == (200,) and len(r["per_pair"]) == 3
    assert r["observed"] > 0.8 and r["p"] < 0.02 and r["null_lo"] < r["null_mean"] < r["null_hi"]
    assert abs(r["null_mean"]) < 0.25  # shuffling destroys the cell structure
    # no shared structure: p is not small
    noise = [rng.normal(size=c.size) for c in cells]
    r0 = stats.spearman_null(jax.random.key(1), cells, noise, pairs, _profile, n_shuffles=200)
    assert r0["p"] > 0.02


@pytest.mark.parametrize("name", sj.tasks.names())
def test_score_parts_recombine_to_the_task_score(name):
    task = sj.tasks.get(name, **({} if name == "copy" else {"steps": 20}))
    batch = task.sample(jax.random.key(0), 24)
    y = batch.targets + 0.6 * jax.random.normal(jax.random.key(1), batch.targets.shape)
    parts = scoring.score_parts(task)
    score = jax.jit(task.score)
    p = np.asarray(jax.jit(parts.parts)(y, batch), np.float64)
    assert p.shape[0] == 24
    assert parts.combine(p.sum(0)) == pytest.approx(float(score(y, batch)), abs=2e-6)
    # a resample with multiplicities = the task's score on the resampled trials themselves
    counts = stats.bootstrap_counts(jax.random.key(2), 24, 2)
    for c in counts:
        idx = np.repeat(np.arange(24), c.astype(int))
        sub = sj.TaskBatch(*(jnp.asarray(np.asarray(a)[idx]) for a in (batch.inputs, batch.targets, batch.mask)))
        assert parts.combine(c @ p) == pytest.approx(float(score(y[idx], sub)), abs=2e-6)


@pytest.mark.parametrize("deviation", [False, True])
def test_per_trial_sums_match_a_float64_rollout(deviation):
    task = sj.tasks.get("flipflop", steps=30)
    model = sj.TanhRNN(3, 16, 3, key=jax.random.key(5), gain=1.3)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    v = sj.ablate.Variants.concat(sj.ablate.single_couplings(sf)[:3], sj.ablate.bands(sf)[:2])
    batch = task.sample(jax.random.key(6), 9)
    parts = scoring.score_parts(task)
    res = sj.evaluate(
        model, sf, v, batch, task=task, per_trial=True, trial_stats=parts.parts, deviation=deviation, dtype=jnp.float64
    )
    x, t, m = (np.asarray(a, np.float64) for a in (batch.inputs, batch.targets, batch.mask))
    y0 = rollout(model, x, sf.reconstruct())[0]
    err0 = (m * (y0 - t) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(res.trial_base_loss, err0 / m.sum(), rtol=1e-9)
    dT = v.delta_T()
    for k in range(len(v)):
        yk = rollout(model, x, sf.reconstruct(sf.T + dT[k]))[0]
        errk = (m * (yk - t) ** 2).sum(axis=(1, 2))
        np.testing.assert_allclose(res.trial_delta_loss[k], (errk - err0) / m.sum(), rtol=1e-6, atol=1e-13)
        hits = ((np.sign(yk) == t) * m * (t != 0)).sum(axis=(1, 2))
        np.testing.assert_array_equal(res.trial_stats[k][:, 0], hits)
    np.testing.assert_allclose(res.trial_delta_loss.sum(1), res.delta_loss, rtol=1e-9, atol=1e-15)


def test_criteria():
    assert keeps_loss([0.05, -0.05, 0.0500001, np.nan], 0.05).tolist() == [True, True, False, False]
    assert keeps_score([-0.2, 0.01, 0.011, np.nan], 0.01).tolist() == [True, True, False, False]


def test_longest_chain_is_the_longest_path_by_brute_force():
    rng = np.random.default_rng(6)
    for _ in range(30):
        nb = 7
        pairs = [(a, b) for a in range(nb) for b in range(a + 1, nb)]
        edges = [pairs[i] for i in rng.choice(len(pairs), size=rng.integers(0, 10), replace=False)]
        got = replay.longest_chain(edges, nb)
        best = 0
        for length in range(nb, 0, -1):  # every decreasing block sequence, longest first
            for seq in itertools.combinations(range(nb - 1, -1, -1), length):
                if all((seq[i + 1], seq[i]) in edges for i in range(length - 1)):
                    best = max(best, length - 1)
        assert max(len(got) - 1, 0) == best
        assert all((got[i + 1], got[i]) in edges for i in range(len(got) - 1))


def test_longest_prefix_finds_the_boundary_of_a_monotone_predicate():
    order = np.arange(1000)
    for boundary in (0, 1, 17, 500, 999, 1000):
        calls = []

        def evaluate(o, ks, b=boundary, calls=calls):
            calls.append(len(ks))
            return np.asarray(ks) <= b

        k, n = compression.longest_prefix(evaluate, order, 0, len(order))
        assert k == boundary and n == sum(calls) and len(calls) <= 4


def test_curve_ks_and_importance_order():
    ks = keep.curve_ks(1989)
    assert ks[0] == 1 and ks[-1] == 1989 and np.all(np.diff(ks) > 0) and 10 <= ks.size <= 20
    sel = {"single": {"rel": [0.3, -0.1, 0.1, 0.0], "drop": [0.0, 0.2, 0.0, 0.0]}}
    assert keep.importance_order(sel).tolist() == [3, 2, 1, 0]  # |rel| first, then the drop
    assert keep.importance_order(sel, most_first=True).tolist() == [0, 1, 2, 3]


def test_study_config_refuses_bad_settings_in_one_line():
    with pytest.raises(sj.InputError, match=r"study: tau: must be a finite number >= 0, got -1"):
        StudyConfig(tau=-1)
    with pytest.raises(sj.InputError, match="study: control_kinds: unknown kind 'bogus'"):
        StudyConfig(control_kinds="matched_norm,bogus")
    with pytest.raises(sj.InputError, match="study: seeds: must be ints >= 0"):
        StudyConfig(seeds="0,x")
    assert StudyConfig(seeds="3,1", tasks="copy").seeds == (3, 1)
    with pytest.raises(sj.InputError, match=r"study: margin: must be a number in \[0, 1\) or None, got 1.0"):
        StudyConfig(margin=1.0)


def test_margin_tightens_the_search_and_leaves_old_folders_valid():
    assert StudyConfig(margin=0.5, tau=0.06, eps=0.02).search_tol("loss") == pytest.approx(0.03)
    assert StudyConfig(margin=0.5, tau=0.06, eps=0.02).search_tol("score") == pytest.approx(0.01)
    assert StudyConfig().search_tol("loss") == 0.05
    assert "margin" not in StudyConfig().to_dict()  # a folder written before the option still resumes
    assert StudyConfig(margin=0.25).to_dict()["margin"] == 0.25
    assert StudyConfig(**StudyConfig(margin=0.25).to_dict()) == StudyConfig(margin=0.25)


def test_agreement_sentences_follow_both_tests():
    import pandas as pd

    from schurjax.studies.report import agreement

    pr = pd.DataFrame(
        {
            "cells": ["modulus"] * 4,
            "comparison": ["copy n=64", "sine n=64", "context n=64", "between tasks n=64"],
            "spearman": [0.8, 0.2, 0.6, 0.3],
            "p_null": [0.001, 0.001, 0.2, 0.001],
            "task_mean": [0.3, 0.3, 0.3, np.nan],
            "p_task": [0.004, 0.6, 0.01, np.nan],
        }
    )
    lines = agreement(pr)
    assert len(lines) == 3
    assert "copy n=64" in lines[0] and "beyond networks of any task (random groups: ρ 0.30, p 0.004)" in lines[0]
    assert "sine n=64" in lines[1] and "no more than networks of any task do" in lines[1]
    assert "context n=64" in lines[2] and "no agreement beyond the shuffled null" in lines[2]


def _held(rng, nb, shared):
    """A held-out part of nb 1x1 blocks: every coupling (a, b), a < b, importance = shared(distance) + noise."""
    a, b = np.triu_indices(nb, 1)
    rel = shared((b - a) / (nb - 1)) + rng.normal(0, 0.3, size=a.size)
    return {
        "single": {"target_block": a, "source_block": b, "rel": rel},
        "blocks": {"abs_eig": np.sort(rng.uniform(0.2, 1.0, nb))[::-1]},
    }


def test_task_null_is_a_permutation_test_of_the_task_labels():
    rng = np.random.default_rng(5)
    shapes = {"copy": lambda d: 3 * np.sin(6 * d), "sine": lambda d: 0 * d, "flipflop": lambda d: 0 * d}
    models, parts = [], {}
    for task, f in shapes.items():
        for seed in range(4):
            mid = f"{task}-{seed}"
            models.append({"id": mid, "task": task, "n_hidden": 64})
            parts[mid] = _held(rng, 16, f)
    res = profiles.task_null(jax.random.key(0), parts, models, kind="distance", bins=4, draws=3000)
    assert set(res) == {"copy n=64", "sine n=64", "flipflop n=64"}
    # exact reference: every group of 4 of the 12 networks
    prof = [
        profiles.profile(
            *profiles.cells(parts[m["id"]], "distance", 4)[:1],
            profiles.importance_ranks(parts[m["id"]]["single"]["rel"]),
            8,
        )
        for m in models
    ]
    S = np.array([[stats.spearman(x, y) for y in prof] for x in prof])

    def mean_rho(g):
        return np.mean([S[i, j] for i, j in itertools.combinations(g, 2)])

    groups = [mean_rho(g) for g in itertools.combinations(range(12), 4)]
    for t, task in enumerate(shapes):
        obs = mean_rho(range(4 * t, 4 * t + 4))
        exact = np.mean(np.asarray(groups) >= obs)
        assert res[f"{task} n=64"]["p_task"] == pytest.approx(exact, abs=0.02)
        assert res[f"{task} n=64"]["task_mean"] == pytest.approx(np.mean(groups), abs=0.02)
    assert res["copy n=64"]["p_task"] < 0.01 and res["sine n=64"]["p_task"] > 0.05


def test_distance_matched_chain_null_keeps_the_link_distances():
    pairs = np.array([(a, b) for a in range(12) for b in range(a + 1, 12)])
    links = [(0, 1), (1, 2), (2, 3), (5, 9)]  # distances 1, 1, 1, 4
    null = replay.chain_null_matched(jax.random.key(0), pairs, links, 12, draws=300)
    assert null.shape == (300,) and null.min() >= 1 and null.max() <= 4
    # by hand: three distance-1 links drawn among 11 and one distance-4 link among 8; a line of 4 links needs the
    # three distance-1 links to be consecutive and the distance-4 link to continue them, which is rare
    assert np.mean(null == 4) < 0.05

    # three distance-1 links among the 11 adjacent pairs: the longest line is the longest run of consecutive
    # targets; its exact distribution over all C(11, 3) choices, counted by hand
    def run(c):
        best = cur = 1
        for x, y in itertools.pairwise(sorted(c)):
            cur = cur + 1 if y == x + 1 else 1
            best = max(best, cur)
        return best

    exact = np.bincount([run(c) for c in itertools.combinations(range(11), 3)], minlength=4)[1:] / 165
    got = replay.chain_null_matched(jax.random.key(1), pairs, links[:3], 12, draws=3000)
    np.testing.assert_allclose(np.bincount(got, minlength=4)[1:] / 3000, exact, atol=0.03)
