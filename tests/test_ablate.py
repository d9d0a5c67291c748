"""Tests for schurjax.ablate against independent float64 NumPy references built from the Schur factors."""

from __future__ import annotations

import json
import pickle

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from schurjax import ablate
from schurjax.ablate import Variants
from schurjax.schur import ordered_schur


def schur_of(W):
    return ordered_schur(W)


# --------------------------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------------------------


def block_of(sf):
    """Block number of each row, from sf.blocks."""
    out = np.empty(sf.T.shape[0], dtype=int)
    for b, (s, z) in enumerate(sf.blocks):
        out[s : s + z] = b
    return out


def coupling_positions(sf):
    """Bool (n, n): strictly above the block diagonal, by an explicit double loop."""
    bi = block_of(sf)
    n = bi.size
    C = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            C[i, j] = bi[i] < bi[j]
    return C


def classes(sf, thr):
    out = []
    for s, z in sf.blocks:
        lam = sf.eigvals[s]
        out.append(("slow" if abs(lam) >= thr else "fast") + ("-osc" if z == 2 else "-real"))
    return out


def ref_mask(sf, lab):
    """Expected multiplier mask of a family variant, from its label and the Schur form only."""
    T = sf.T
    n = T.shape[0]
    C = coupling_positions(sf)
    bi = block_of(sf)
    M = np.ones((n, n))
    fam = lab["family"]
    if fam == "single":
        M[lab["row"], lab["col"]] = 0.0
    elif fam == "block":
        M[np.ix_(bi == lab["target_block"], bi == lab["source_block"])] = 0.0
    elif fam == "band":
        M[C & ((bi[None, :] - bi[:, None]) == lab["band"])] = 0.0
    elif fam == "all_nonnormal":
        M[C] = 0.0
    elif fam == "eigen_groups":
        cl = np.array(classes(sf, lab["threshold"]))
        M[C & (cl[bi][:, None] == lab["target_class"]) & (cl[bi][None, :] == lab["source_class"])] = 0.0
    elif fam == "top_k":
        ii, jj = np.nonzero(C)
        order = sorted(range(ii.size), key=lambda p: (-abs(T[ii[p], jj[p]]), p))[: lab["k"]]
        M[ii[order], jj[order]] = 0.0
    elif fam == "scaling":
        M[C] = lab["alpha"]
    else:
        raise AssertionError(fam)
    return M


def spectrum_close(a, b, tol):
    a, b = np.asarray(a), np.asarray(b)
    if a.size != b.size:
        return False
    if a.size == 0:
        return True
    cost = np.abs(a[:, None] - b[None, :])
    r, c = linear_sum_assignment(cost)
    return bool(cost[r, c].max() <= tol)


def rand_W(seed, n, kind="gauss"):
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        return rng.normal(size=(n, n)) / np.sqrt(n)
    if kind == "triangular":  # T = W up to signs: exact zero couplings and tied magnitudes
        d = np.sort(rng.uniform(0.1, 1.0, n))[::-1] * rng.choice([-1.0, 1.0], n)
        upper = rng.choice([0.0, 0.0, 0.25, -0.25, 0.5], size=(n, n))
        return np.triu(upper, 1) + np.diag(d)
    if kind == "normal":  # symmetric -> normal, N = 0
        A = rng.normal(size=(n, n))
        return (A + A.T) / (2 * np.sqrt(n))
    raise AssertionError(kind)


def family_sets(sf):
    m = int(coupling_positions(sf).sum())
    return {
        "single": ablate.single_couplings(sf),
        "block": ablate.block_couplings(sf),
        "band": ablate.bands(sf),
        "all_nonnormal": ablate.all_nonnormal(sf),
        "eigen_groups": ablate.eigen_groups(sf, threshold=0.5),
        "top_k": ablate.top_k(sf, sorted({0, min(1, m), m // 2, m})),
        "scaling": ablate.scaling(sf, [0.0, 0.5, 1.0, -1.5]),
    }


# --------------------------------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------------------------------

wide = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@wide
@given(n=st.integers(1, 10), seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["gauss", "triangular", "normal"]))
def test_families_match_reference_masks_norms_and_spectrum(n, seed, kind):
    W = rand_W(seed, n, kind)
    sf = schur_of(W)
    Q, T = sf.Q, sf.T
    base = Q @ T @ Q.T
    lam = np.linalg.eigvals(W)
    C = coupling_positions(sf)
    for name, v in family_sets(sf).items():
        dT = v.delta_T()
        assert dT.shape == (len(v), n, n) and dT.dtype == np.float64
        for k, lab in enumerate(v.labels):
            M = ref_mask(sf, lab)
            np.testing.assert_allclose(dT[k], T * (M - 1.0), rtol=0, atol=1e-15, err_msg=f"{name} {lab}")
            # only couplings change (the diagonal blocks and the zero part below stay)
            assert not np.any(dT[k][~C]), (name, lab)
            WM = Q @ (T * M) @ Q.T
            ref = np.linalg.norm(base - WM)
            assert abs(v.delta_norm[k] - ref) <= 1e-9 * ref + 1e-13 * np.linalg.norm(T), (name, lab)
            assert lab["delta_norm"] == pytest.approx(v.delta_norm[k], rel=1e-15, abs=1e-300)
            nz = int(np.count_nonzero(T * (M - 1.0)))
            assert lab["n_changed"] == nz
            assert lab["n_removed"] == int(np.count_nonzero((M == 0) & (T != 0)))
            # spectrum of the edited weight equals the spectrum of W
            Wk = Q @ (T + dT[k]) @ Q.T
            assert spectrum_close(np.linalg.eigvals(Wk), lam, 1e-6), (name, lab)
        json.dumps([dict(lab) for lab in v.labels])


@wide
@given(n=st.integers(2, 12), seed=st.integers(0, 2**31 - 1))
def test_single_couplings_one_per_nonzero_entry_with_block_labels(n, seed):
    W = rand_W(seed, n, "triangular")
    sf = schur_of(W)
    C = coupling_positions(sf)
    ii, jj = np.nonzero(C & (sf.T != 0))
    v = ablate.single_couplings(sf)
    assert [lab["entries"] for lab in v.labels] == [((int(i), int(j)),) for i, j in zip(ii, jj, strict=True)]
    bi = block_of(sf)
    for lab in v.labels:
        i, j = lab["row"], lab["col"]
        assert lab["target_block"] == bi[i] and lab["source_block"] == bi[j]
        t = sf.eigvals[sf.blocks[bi[i]][0]]
        s = sf.eigvals[sf.blocks[bi[j]][0]]
        assert lab["target_eig"] == (t.real, t.imag) and lab["source_eig"] == (s.real, s.imag)
        assert lab["value"] == sf.T[i, j]
    vz = ablate.single_couplings(sf, include_zeros=True)
    assert len(vz) == C.sum()
    big = ablate.single_couplings(sf, threshold=0.3)
    assert len(big) == int((C & (np.abs(sf.T) > 0.3)).sum())


def test_block_couplings_cover_pairs_and_direction():
    sf = schur_of(rand_W(3, 9))
    nb = len(sf.blocks)
    v = ablate.block_couplings(sf)
    pairs = [(lab["target_block"], lab["source_block"]) for lab in v.labels]
    assert pairs == [(a, b) for a in range(nb) for b in range(a + 1, nb)]
    # T[i, j] with i in the target block a, j in the source block b: entries lie in rows of a, cols of b
    bi = block_of(sf)
    for lab in v.labels:
        assert all(bi[i] == lab["target_block"] and bi[j] == lab["source_block"] for i, j in lab["entries"])


def test_eigen_groups_classes():
    sf = schur_of(rand_W(5, 10))
    thr = float(np.median(np.abs(sf.eigvals)))
    v = ablate.eigen_groups(sf, threshold=thr)
    cl = classes(sf, thr)
    bi = block_of(sf)
    ii, jj = np.nonzero(coupling_positions(sf) & (sf.T != 0))
    expect = sorted({(cl[bi[i]], cl[bi[j]]) for i, j in zip(ii, jj, strict=True)})
    got = sorted((lab["target_class"], lab["source_class"]) for lab in v.labels)
    assert got == expect
    assert sum(lab["n_removed"] for lab in v.labels) == ii.size


def test_normal_matrix_has_no_couplings():
    sf = schur_of(rand_W(0, 7, "normal"))  # couplings are rounding noise only
    assert len(ablate.single_couplings(sf, threshold=1e-12)) == 0
    v = ablate.all_nonnormal(sf)
    assert len(v) == 1 and v.delta_norm[0] < 1e-13 and np.abs(v.delta_T()).max() < 1e-13
    # an exactly normal T: nothing to remove
    sf0 = schur_of(np.diag([0.9, -0.5, 0.3, 0.1]))
    assert len(ablate.single_couplings(sf0)) == 0 and len(ablate.bands(sf0)) == 0
    v0 = ablate.all_nonnormal(sf0)
    assert len(v0) == 1 and v0.delta_norm[0] == 0.0 and v0.max_nnz == 0
    rows, cols, vals = v0.sparse()
    assert rows.shape == (1, 1) and not vals.any()


def test_top_k_and_cumulative_against_sorting():
    sf = schur_of(rand_W(11, 8))
    T = sf.T
    ii, jj = np.nonzero(coupling_positions(sf))
    mags = np.abs(T[ii, jj])
    v = ablate.top_k(sf, [1, 3, ii.size])
    for k, dT in zip([1, 3, ii.size], v.delta_T(), strict=True):
        removed = np.abs(T[np.nonzero(dT)])
        assert removed.size == k and np.allclose(np.sort(removed), np.sort(mags)[::-1][:k][::-1])
    # cumulative, given as [i, j] entries and as coupling indices: the same variants
    rng = np.random.default_rng(0)
    perm = rng.permutation(ii.size)
    entries = np.stack([ii[perm], jj[perm]], axis=1)
    a = ablate.cumulative(sf, entries)
    b = ablate.cumulative(sf, perm)
    assert len(a) == ii.size
    np.testing.assert_array_equal(a.delta_T(), b.delta_T())
    ref = np.zeros((ii.size, *T.shape))
    for k in range(ii.size):
        for i, j in entries[: k + 1]:
            ref[k, i, j] = -T[i, j]
    np.testing.assert_array_equal(a.delta_T(), ref)
    np.testing.assert_allclose(a.delta_norm, np.linalg.norm(ref.reshape(ii.size, -1), axis=1), rtol=1e-12)
    c = ablate.cumulative(sf, entries, ks=[0, 2])
    np.testing.assert_array_equal(c.delta_T(), np.stack([np.zeros_like(T), ref[1]]))


def test_scaling_subset():
    sf = schur_of(rand_W(2, 8))
    ii, jj = np.nonzero(coupling_positions(sf))
    which = np.stack([ii[:3], jj[:3]], axis=1)
    v = ablate.scaling(sf, [0.0, 2.0], which=which)
    for alpha, dT in zip([0.0, 2.0], v.delta_T(), strict=True):
        ref = np.zeros_like(sf.T)
        ref[ii[:3], jj[:3]] = (alpha - 1.0) * sf.T[ii[:3], jj[:3]]
        np.testing.assert_allclose(dT, ref, atol=1e-15)
    np.testing.assert_allclose(v.masks()[1][ii[:3], jj[:3]], 2.0)
    mask = np.zeros(sf.T.shape, bool)
    mask[ii[:3], jj[:3]] = True
    np.testing.assert_array_equal(ablate.scaling(sf, [0.0, 2.0], which=mask).delta_T(), v.delta_T())


def test_from_masks_norms_and_binding():
    sf = schur_of(rand_W(4, 8))
    rng = np.random.default_rng(1)
    C = coupling_positions(sf)
    M = np.ones((5, 8, 8))
    M[:, C] = rng.random((5, C.sum())) < 0.6
    M[4, C] = rng.normal(size=C.sum())
    v = ablate.from_masks(M, sf=sf)
    Q, T = sf.Q, sf.T
    for k in range(5):
        ref = np.linalg.norm(Q @ T @ Q.T - Q @ (T * M[k]) @ Q.T)
        assert v.delta_norm[k] == pytest.approx(ref, rel=1e-9)
        assert spectrum_close(np.linalg.eigvals(Q @ (T + v.delta_T(k)[0]) @ Q.T), np.linalg.eigvals(Q @ T @ Q.T), 1e-6)
    np.testing.assert_array_equal(v.masks(), M)
    # without sf: delta_norm unknown until bound; delta_T needs T
    u = ablate.from_masks(M)
    assert np.all(np.isnan(u.delta_norm))
    with pytest.raises(ValueError, match="bind"):
        u.delta_T(0)
    np.testing.assert_array_equal(u.delta_T(slice(None), T=T), v.delta_T())
    b = u.bind(sf)
    np.testing.assert_array_equal(b.delta_norm, v.delta_norm)
    json.dumps([dict(lab) for lab in b.labels])


def test_from_masks_bad_input():
    sf = schur_of(rand_W(4, 6))
    with pytest.raises(ValueError, match=r"from_masks: masks must have shape \(K, n, n\), got \(3, 6\)"):
        ablate.from_masks(np.ones((3, 6)))
    with pytest.raises(ValueError, match="K > 0"):
        ablate.from_masks(np.ones((0, 6, 6)))
    with pytest.raises(ValueError, match="finite"):
        ablate.from_masks(np.full((1, 6, 6), np.nan))
    with pytest.raises(ValueError, match="n = 6"):
        ablate.from_masks(np.ones((2, 5, 5)), sf=sf)
    M = np.ones((2, 6, 6))
    M[1, 0, 0] = 0.0
    with pytest.raises(ValueError, match="diagonal blocks"):
        ablate.from_masks(M, sf=sf)
    v = ablate.from_masks(M, sf=sf, allow_diagonal=True)
    assert v.delta_norm[1] == pytest.approx(abs(sf.T[0, 0]))


def test_bad_family_input():
    sf = schur_of(rand_W(4, 6))
    m = int(coupling_positions(sf).sum())
    with pytest.raises(ValueError, match="alphas"):
        ablate.scaling(sf, [1.0, np.inf])
    with pytest.raises(ValueError, match="ks"):
        ablate.top_k(sf, m + 1)
    with pytest.raises(ValueError, match="ks"):
        ablate.top_k(sf, [0.5])
    with pytest.raises(ValueError, match="not a coupling"):
        ablate.cumulative(sf, [[1, 0]])
    with pytest.raises(ValueError, match="repeat"):
        ablate.cumulative(sf, [0, 0])
    with pytest.raises(ValueError, match="threshold"):
        ablate.eigen_groups(sf, threshold=float("nan"))
    with pytest.raises(TypeError, match="SchurForm"):
        ablate.single_couplings(np.eye(3))
    with pytest.raises(ValueError, match="unknown control kind 'bogus'"):
        ablate.controls(0, sf, ablate.all_nonnormal(sf), kinds=["bogus"])
    with pytest.raises(ValueError, match="n_per"):
        ablate.matched_norm(0, sf, ablate.all_nonnormal(sf), n_per=0)


# --------------------------------------------------------------------------------------------------------------
# the Variants protocol
# --------------------------------------------------------------------------------------------------------------


def mixed_set(sf, key=0):
    fam = ablate.Variants.concat(ablate.single_couplings(sf), ablate.block_couplings(sf), ablate.top_k(sf, [1, 2]))
    M = np.ones((2, *sf.T.shape))
    M[:, coupling_positions(sf)] = 0.5
    fam = Variants.concat(fam, ablate.from_masks(M, sf=sf), ablate.scaling(sf, [0.0, 3.0]))
    return Variants.concat(fam, ablate.controls(key, sf, fam[:4], n_per=2))


@wide
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(3, 9))
def test_slicing_is_consistent(seed, n):
    sf = schur_of(rand_W(seed, n))
    v = mixed_set(sf, key=seed)
    full = v.delta_T()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(v))[: max(1, len(v) // 2)]
    np.testing.assert_array_equal(v.delta_T(idx), full[idx])
    np.testing.assert_array_equal(v[idx].delta_T(), full[idx])
    np.testing.assert_array_equal(v[3:11:2].delta_T(), full[3:11:2])
    np.testing.assert_array_equal(v[idx].delta_norm, v.delta_norm[idx])
    assert v[idx].labels == tuple(v.labels[i] for i in idx)
    # sparse coordinates rebuild delta_T
    rows, cols, vals = v.sparse(idx)
    assert rows.shape == cols.shape == vals.shape == (idx.size, max(1, int(v.nnz[idx].max())))
    rebuilt = np.zeros((idx.size, n, n))
    for k in range(idx.size):
        np.add.at(rebuilt[k], (rows[k], cols[k]), vals[k])
    np.testing.assert_array_equal(rebuilt, full[idx])
    # delta_norm is the Frobenius norm of dT
    np.testing.assert_allclose(v.delta_norm, np.linalg.norm(full.reshape(len(v), -1), axis=1), rtol=1e-12)


def test_sparse_flags_and_masks():
    sf = schur_of(rand_W(8, 8))
    single = ablate.single_couplings(sf)
    assert single.is_sparse(1) and single.max_nnz == 1
    blocks = ablate.block_couplings(sf)
    assert blocks.max_nnz == max(len(lab["entries"]) for lab in blocks.labels)
    dense = ablate.matched_norm(0, sf, single[:2])
    assert dense.max_nnz == 64 and not dense.is_sparse(63)
    with pytest.raises(ValueError, match="not a mask"):
        dense.masks()
    # masks of removal families: zeros at removed entries, T * M == T + dT
    v = Variants.concat(single, blocks, ablate.matched_count(1, sf, blocks))
    np.testing.assert_allclose(sf.T[None] * v.masks(), sf.T[None] + v.delta_T(), atol=1e-15)
    # empty and bad indices
    assert len(v[[]]) == 0 and v[[]].delta_T().shape == (0, 8, 8)
    with pytest.raises(IndexError):
        v[len(v)]
    with pytest.raises(ValueError, match="idx"):
        v.delta_T(np.array([0.5]))
    with pytest.raises(ValueError, match="same n"):
        Variants.concat(single, ablate.single_couplings(schur_of(rand_W(0, 5))))


# --------------------------------------------------------------------------------------------------------------
# controls
# --------------------------------------------------------------------------------------------------------------


@wide
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(3, 10), n_per=st.integers(1, 3))
def test_controls_norms_counts_support(seed, n, n_per):
    sf = schur_of(rand_W(seed, n))
    T = sf.T
    base = Variants.concat(
        ablate.single_couplings(sf)[:5], ablate.block_couplings(sf), ablate.top_k(sf, [min(3, sf.T.shape[0] - 1)])
    )
    C = coupling_positions(sf)
    key = jax.random.key(seed)
    for kind in ablate.CONTROL_KINDS:
        ctrl = getattr(ablate, kind)(key, sf, base, n_per=n_per)
        assert len(ctrl) == len(base) * n_per
        co = [lab["control_of"] for lab in ctrl.labels]
        assert co == list(np.repeat(np.arange(len(base)), n_per))
        assert all(lab["control_kind"] == kind for lab in ctrl.labels)
        dT = ctrl.delta_T()
        norms = np.linalg.norm(dT.reshape(len(ctrl), -1), axis=1)
        if kind == "matched_count":
            for k, c in enumerate(co):
                sup = dT[k] != 0
                assert sup.sum() == base.labels[c]["n_changed"] and not np.any(sup & ~C)
                np.testing.assert_array_equal(dT[k][sup], -T[sup])
            np.testing.assert_allclose(ctrl.delta_norm, norms, rtol=1e-12)
        else:
            want = np.array([np.linalg.norm(Variants.delta_T(base, c)[0]) for c in co])
            np.testing.assert_allclose(norms, want, rtol=1e-12)
            np.testing.assert_allclose(ctrl.delta_norm, want, rtol=1e-12)
            if kind == "schur_rank1":  # a coupling's control stays on the couplings of its block pair
                pair = np.array(["target_block" in base.labels[c] for c in co], bool)
                assert not np.any(dT[pair][:, ~C])
            if kind == "coupling_noise":
                assert not np.any(dT[:, ~C])
                Q = sf.Q
                for k in range(len(ctrl)):
                    lam = np.linalg.eigvals(Q @ T @ Q.T)
                    assert spectrum_close(np.linalg.eigvals(Q @ (T + dT[k]) @ Q.T), lam, 1e-6)
            elif kind != "schur_rank1":  # dense: nonzero almost everywhere
                assert np.all(dT[norms > 0] != 0)
        json.dumps([dict(lab) for lab in ctrl.labels])


def test_controls_reproducible_from_key():
    sf = schur_of(rand_W(1, 8))
    v = ablate.block_couplings(sf)
    for kind in ablate.CONTROL_KINDS:
        f = getattr(ablate, kind)
        a = f(jax.random.key(7), sf, v, n_per=2).delta_T()
        b = f(jax.random.key(7), sf, v, n_per=2).delta_T()
        c = f(7, sf, v, n_per=2).delta_T()  # an int seed means jax.random.key(seed)
        d = f(jax.random.PRNGKey(7), sf, v, n_per=2).delta_T()
        e = f(jax.random.key(8), sf, v, n_per=2).delta_T()
        one = f(jax.random.key(7), sf, v, n_per=1).delta_T()
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)
        np.testing.assert_array_equal(a[::2], one)  # rep 0 does not depend on n_per
        assert not np.array_equal(a, e)
        if kind != "schur_rank1":  # between two 1x1 blocks schur_rank1 is the entry with a random sign
            assert not np.array_equal(a[0], a[1])  # two reps of one variant differ
    # kinds draw different streams from the same key
    n1 = ablate.matched_norm(3, sf, v).delta_T()
    n2 = ablate.coupling_noise(3, sf, v).delta_T()
    C = coupling_positions(sf)
    assert not np.allclose(n1[:, C], n2[:, C])


def _removal_dW(sf, v, k):
    """W - W_k of variant k, from the masks and the Schur factors (float64)."""
    M = v.masks(k)[0]
    return sf.Q @ (sf.T - sf.T * M) @ sf.Q.T


@pytest.mark.parametrize("n", [6, 9])
def test_rank_matched_has_the_removals_rank_and_singular_values(n):
    from scipy.linalg import svdvals

    sf = schur_of(rand_W(20 + n, n))
    base = Variants.concat(ablate.single_couplings(sf)[:4], ablate.block_couplings(sf), ablate.all_nonnormal(sf))
    ctrl = ablate.rank_matched(jax.random.key(n), sf, base, n_per=2)
    for k, lab in enumerate(ctrl.labels):
        dW_ctrl = sf.Q @ ctrl.delta_T(k)[0] @ sf.Q.T
        dW_abl = -_removal_dW(sf, base, lab["control_of"])
        s_abl, s_ctrl = svdvals(dW_abl), svdvals(dW_ctrl)
        r = int(np.sum(s_abl > 1e-10 * s_abl[0]))
        assert lab["rank"] == r == int(np.sum(s_ctrl > 1e-10 * max(s_ctrl[0], 1e-300)))
        np.testing.assert_allclose(s_ctrl[:r], s_abl[:r], rtol=1e-10, atol=1e-13)
        if base.labels[lab["control_of"]]["family"] == "single":
            assert r == 1
    np.testing.assert_allclose(ctrl.delta_norm, np.repeat(base.delta_norm, 2), rtol=1e-12)


def test_rank_matched_directions_are_isotropic():
    # E[u u^T] = I / n for a Haar-random unit vector: the left singular vectors of rank-1 controls average to I / n
    n, draws = 5, 4000
    sf = schur_of(rand_W(3, n))
    ctrl = ablate.rank_matched(0, sf, ablate.single_couplings(sf)[:1], n_per=draws)
    dW = np.einsum("ia,kab,jb->kij", sf.Q, ctrl.delta_T(), sf.Q)
    u = np.linalg.svd(dW)[0][:, :, 0]
    np.testing.assert_allclose(np.einsum("ki,kj->ij", u, u) / draws, np.eye(n) / n, atol=4 / np.sqrt(draws) / n)


def test_schur_rank1_lies_in_the_two_invariant_subspaces():
    from scipy.linalg import eigvals, svdvals

    sf = schur_of(rand_W(5, 10))
    two = [b for b, (_, z) in enumerate(sf.blocks) if z == 2]
    assert two, "the test matrix needs a complex pair"
    base = Variants.concat(ablate.single_couplings(sf), ablate.block_couplings(sf))
    ctrl = ablate.schur_rank1(jax.random.key(2), sf, base, n_per=3)
    W = sf.Q @ sf.T @ sf.Q.T
    lam = eigvals(W)
    for k, lab in enumerate(ctrl.labels):
        src = base.labels[lab["control_of"]]
        dW = sf.Q @ ctrl.delta_T(k)[0] @ sf.Q.T
        s = svdvals(dW)
        assert s[1] <= 1e-12 * s[0]  # rank 1
        np.testing.assert_allclose(s[0], np.linalg.norm(_removal_dW(sf, base, lab["control_of"])), rtol=1e-12)
        U, _, Vt = np.linalg.svd(dW)
        for vec, blk in ((U[:, 0], src["target_block"]), (Vt[0], src["source_block"])):
            st_, z = sf.blocks[blk]
            P = sf.Q[:, st_ : st_ + z]
            np.testing.assert_allclose(np.linalg.norm(P @ (P.T @ vec)), 1.0, rtol=1e-10)  # inside span(Q[:, block])
        assert spectrum_close(eigvals(W + dW), lam, 1e-6)
    # inside a 2x2 source block the direction is uniform: E[v v^T] = P P^T / 2
    blk = two[-1]
    j = next(k for k, lab in enumerate(base.labels) if lab["family"] == "block" and lab["source_block"] == blk)
    many = ablate.schur_rank1(9, sf, base[[j]], n_per=3000)
    dT = many.delta_T()
    st_, z = sf.blocks[blk]
    v = np.linalg.svd(dT)[2][:, 0, st_ : st_ + 2]
    np.testing.assert_allclose(np.einsum("ki,kj->ij", v, v) / 3000, np.eye(2) / 2, atol=0.04)


def test_controls_refuse_mismatch():
    sf = schur_of(rand_W(1, 6))
    other = schur_of(rand_W(1, 5))
    v = ablate.single_couplings(sf)
    with pytest.raises(ValueError, match="n = 6"):
        ablate.matched_norm(0, other, v)
    with pytest.raises(ValueError, match="empty"):
        ablate.matched_norm(0, sf, v[[]])
    with pytest.raises(TypeError, match="key"):
        ablate.matched_norm("0", sf, v)
    big = ablate.from_masks(np.zeros((1, 6, 6)), sf=sf, allow_diagonal=True)
    with pytest.raises(ValueError, match="nonzero couplings"):
        ablate.matched_count(0, sf, big)


# --------------------------------------------------------------------------------------------------------------
# variants are tied to the SchurForm they were built from
# --------------------------------------------------------------------------------------------------------------


def test_fingerprint_identifies_the_schur_form(tmp_path):
    W = rand_W(7, 7)
    sf = schur_of(W)
    again = schur_of(W.copy())
    real = ordered_schur(W, order="real")
    loaded = type(sf).from_npz(sf.to_npz(tmp_path / "sf.npz"))
    assert np.array_equal(again.T, sf.T) and np.array_equal(loaded.T, sf.T)
    assert again.fingerprint == sf.fingerprint == loaded.fingerprint
    assert real.order != sf.order
    assert real.fingerprint != sf.fingerprint
    fp = sf.fingerprint
    sets = {**family_sets(sf), "cumulative": ablate.cumulative(sf, [0, 1], ks=[1, 2])}
    sets["mask"] = ablate.from_masks(np.ones((1, 7, 7)), sf=sf)
    sets["controls"] = ablate.controls(0, sf, sets["single"][:3])
    for name, v in sets.items():
        assert v.fingerprint == fp, name
        assert v[:1].fingerprint == fp, name
    assert Variants.concat(*sets.values()).fingerprint == fp
    # unbound from_masks: no fingerprint until bound; a concat with bound parts takes theirs
    u = ablate.from_masks(np.ones((2, 7, 7)))
    assert u.fingerprint is None
    assert u.bind(sf).fingerprint == fp
    assert Variants.concat(u, sets["single"]).fingerprint == fp
    # parts from different SchurForms: mixed, refused
    mixed = Variants.concat(sets["single"], ablate.single_couplings(real))
    assert mixed.fingerprint == "mixed"
    with pytest.raises(ValueError, match="mix variants built from different SchurForms"):
        mixed.bind(sf)
    with pytest.raises(ValueError, match="mix variants"):
        ablate.matched_norm(0, sf, mixed)


def test_controls_and_bind_refuse_another_schur_form():
    W = rand_W(8, 6)
    sf, real = schur_of(W), ordered_schur(W, order="real")
    other = schur_of(rand_W(9, 6))  # same n, other matrix
    v = ablate.single_couplings(sf)
    for bad in (real, other):
        with pytest.raises(ValueError, match=r"Variants\.bind: variants were built from a different SchurForm than sf"):
            v.bind(bad)
        for kind in ablate.CONTROL_KINDS:
            with pytest.raises(ValueError, match=rf"{kind}: variants were built from a different SchurForm than sf"):
                ablate.controls(0, bad, v, kinds=kind)


def test_bind_checks_diagonal_blocks_and_recounts_from_T():
    sf = schur_of(rand_W(10, 8, kind="triangular"))  # exact zero couplings: counts must skip them
    T = sf.T
    C = coupling_positions(sf)
    rng = np.random.default_rng(3)
    zero = np.zeros((8, 8))  # removes everything, diagonal included
    part = np.ones((8, 8))
    part[C] = rng.random(C.sum()) < 0.5
    # unbound: the diagonal-block check runs at bind time (honouring allow_diagonal)
    u = ablate.from_masks(np.stack([part, zero]))
    assert u.fingerprint is None
    with pytest.raises(ValueError, match=r"Variants\.bind: variants \[1\] .*change the diagonal blocks"):
        u.bind(sf)
    good = u[:1].bind(sf)  # the offending mask sliced away
    assert good.labels[0]["n_removed"] == good.labels[0]["n_changed"] == int(((part == 0) & (T != 0)).sum())
    assert good.delta_norm[0] == pytest.approx(np.linalg.norm(T[(part == 0)]), rel=1e-12)
    a = ablate.from_masks(np.stack([part, zero]), allow_diagonal=True).bind(sf)
    nz = int(np.count_nonzero(T))
    assert a.labels[1]["n_changed"] == a.labels[1]["n_removed"] == nz < 64
    assert a.nnz[1] == nz
    assert a.delta_norm[1] == pytest.approx(np.linalg.norm(T), rel=1e-12)
    assert a.labels[1]["delta_norm"] == pytest.approx(np.linalg.norm(T), rel=1e-12)
    # the same labels as when sf is given up front
    up_front = ablate.from_masks(np.stack([part, zero]), sf=sf, allow_diagonal=True)
    for k in range(2):
        for f in ("n_changed", "n_removed"):
            assert a.labels[k][f] == up_front.labels[k][f]
    # matched_count draws as many couplings as the bound counts say
    ctrl = ablate.matched_count(0, sf, ablate.from_masks(part))
    assert ctrl.labels[0]["n_removed"] == int(((part == 0) & (T != 0)).sum())
    with pytest.raises(ValueError, match=r"matched_count: variants \[0\] .*diagonal blocks"):
        ablate.matched_count(0, sf, ablate.from_masks(zero))


REGISTRY_ARGS = {"top_k": ([1, 2],), "cumulative": ([0, 1],), "scaling": ([0.5],)}


@pytest.mark.parametrize("name", sorted(ablate.FAMILIES))
def test_family_registry_key_is_the_family_label(name):
    sf = schur_of(rand_W(11, 6))
    assert set(ablate.FAMILIES) == {*ablate.SF_ONLY_FAMILIES, *REGISTRY_ARGS}
    v = ablate.FAMILIES[name](sf, *REGISTRY_ARGS.get(name, ()))
    assert len(v) and {lab["family"] for lab in v.labels} == {name}
    if name not in ablate.SF_ONLY_FAMILIES:  # SF_ONLY_FAMILIES lists exactly those callable with sf alone
        with pytest.raises(TypeError):
            ablate.FAMILIES[name](sf)
    else:
        assert name not in REGISTRY_ARGS


def test_options_are_keyword_only():
    """Every public function of ablate: parameters after the required ones are keyword-only."""
    import inspect

    for name in ablate.__all__:
        fn = getattr(ablate, name)
        if not inspect.isfunction(fn):
            continue
        for p in inspect.signature(fn).parameters.values():
            if p.default is not inspect.Parameter.empty:
                assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
    sf = schur_of(rand_W(3, 6))
    with pytest.raises(TypeError):
        ablate.eigen_groups(sf, 0.5)
    with pytest.raises(TypeError):
        ablate.from_masks(np.ones((1, 6, 6)), sf)


# --------------------------------------------------------------------------------------------------------------
# Variants are immutable; new sets come only from the explicit constructors
# --------------------------------------------------------------------------------------------------------------


def test_variants_are_immutable():
    sf = schur_of(rand_W(12, 7))
    v = mixed_set(sf)
    before = [dict(lab) for lab in v.labels]
    norms, nnz = v.delta_norm.copy(), v.nnz.copy()
    lab = v.labels[0]
    with pytest.raises(TypeError):
        lab["label"] = "edited"
    with pytest.raises(TypeError):
        del lab["family"]
    with pytest.raises(AttributeError):
        lab["entries"].append((0, 1))  # nested values are tuples
    for name, value in (("labels", ()), ("n", 3), ("fingerprint", "x"), ("delta_norm", norms), ("extra", 1)):
        with pytest.raises(AttributeError, match=rf"immutable \(cannot set '{name}'\): derive a new set with v\[idx\]"):
            setattr(v, name, value)
    with pytest.raises(AttributeError, match="immutable"):
        del v.n
    for arr in (v.delta_norm, v.nnz, v[2:5].delta_norm, Variants.concat(v, v).nnz):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    with pytest.raises(TypeError, match="not directly"):
        Variants(7, [], [], [], [])
    # derived sets leave the original untouched and share nothing mutable with it
    user = [{**dict(lab), "note": ["a"]} for lab in v.labels]
    w = v.with_labels(user)
    user[0]["note"].append("b")
    user[1]["label"] = "changed"
    assert w.labels[0]["note"] == ("a",) and w.labels[1]["label"] == v.labels[1]["label"]
    assert [dict(lab) for lab in v.labels] == before and "note" not in v.labels[0]
    np.testing.assert_array_equal(v.delta_norm, norms)
    np.testing.assert_array_equal(v.nnz, nnz)
    np.testing.assert_array_equal(w.delta_T(), v.delta_T())
    # dict(lab), lab.get, lab[key] and a pickle round trip keep working
    assert dict(lab)["family"] == lab.get("family") == lab["family"] == "single"
    again = pickle.loads(pickle.dumps(v))
    assert again.labels == v.labels and again.fingerprint == v.fingerprint
    np.testing.assert_array_equal(again.delta_T(), v.delta_T())
    with pytest.raises(TypeError):
        again.labels[0]["label"] = "x"
