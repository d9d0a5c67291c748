"""Tests for schurjax.schur: ordered real Schur form against independent NumPy/SciPy float64 references."""

from __future__ import annotations

import hashlib
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

import schurjax as sj
from schurjax import _schur_reorder as R

ORDERS = ["modulus", "real", "angle", "custom"]


def neg_imag_key(z: complex) -> float:
    """A custom key: descending imaginary part (ties: modulus rule)."""
    return -z.imag


def order_arg(name):
    return neg_imag_key if name == "custom" else name


def primary(name, lam, zero=0.0, alpha=None):
    """Independent primary key per the documented rules (ascending), as (group, value) pairs.

    zero: |lam| <= zero is numerically zero; for "angle" its angle counts as pi. alpha: of the "decay" order.
    """
    lam = np.asarray(lam)
    if name == "decay":
        return np.zeros(len(lam)), -np.abs(1 - alpha + alpha * lam)
    if name == "modulus":
        return np.zeros(len(lam)), -np.abs(lam)
    if name == "real":
        return np.zeros(len(lam)), -lam.real
    if name == "angle":
        ang = np.where(np.abs(lam) <= zero, np.pi, np.abs(np.arctan2(lam.imag, lam.real)))
        return (lam.imag != 0).astype(float), ang
    return np.zeros(len(lam)), np.array([neg_imag_key(complex(z)) for z in lam])


def rng_for(seed):
    return np.random.default_rng(seed)


def random_orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------------------------------------
# structural checks (independent of the implementation's own helpers)
# ------------------------------------------------------------------------------------------------------------


def blocks_from_T(T):
    n = T.shape[0]
    out, i = [], 0
    while i < n:
        if i + 1 < n and T[i + 1, i] != 0:
            out.append((i, 2))
            i += 2
        else:
            out.append((i, 1))
            i += 1
    return tuple(out)


def check_form(sf, W, order_name, *, rtol=1e-12, order_tol=1e-9, alpha=None):
    n = W.shape[0]
    Q, T = sf.Q, sf.T
    assert Q.dtype == np.float64 and T.dtype == np.float64
    assert Q.shape == T.shape == (n, n)
    wmax = np.abs(W).max()
    if wmax == 0:
        assert np.all(T == 0)
    else:  # relative residual, computed on W / max|W| so that extreme scales neither overflow nor underflow
        assert np.linalg.norm(Q @ (T / wmax) @ Q.T - W / wmax) <= rtol * np.linalg.norm(W / wmax)
    assert np.linalg.norm(Q.T @ Q - np.eye(n)) <= 1e-12
    assert sf.blocks == blocks_from_T(T)
    # nothing nonzero below the block subdiagonal (and 1x1 neighbours have an exact 0 sub-diagonal)
    bidx = np.concatenate([[k] * s for k, (_, s) in enumerate(sf.blocks)])
    assert np.all(T[bidx[:, None] > bidx[None, :]] == 0)
    assert np.all(np.tril(T, -2) == 0)
    # standardized 2x2 blocks, canonical b > 0 > c, |b| >= |c|
    for i, s in sf.blocks:
        if s == 2:
            a, b, c, d = T[i, i], T[i, i + 1], T[i + 1, i], T[i + 1, i + 1]
            assert a == d and b > 0 > c and abs(b) >= abs(c)
            ev = np.linalg.eigvals(T[i : i + 2, i : i + 2])
            ev = ev[np.argsort(-ev.imag)]
            np.testing.assert_allclose(sf.eigvals[i : i + 2], ev, rtol=1e-12, atol=1e-14 * max(1, abs(ev[0])))
            assert sf.eigvals[i].imag > 0 and sf.eigvals[i + 1] == np.conj(sf.eigvals[i])
        else:
            assert sf.eigvals[i] == T[i, i]
    # canonical signs: largest-magnitude entry of the first Schur vector of each block is positive
    for i, _ in sf.blocks:
        q = Q[:, i]
        m = np.abs(q)
        j = int(np.argmax(m >= m.max() * (1 - 1e-10)))
        assert q[j] > 0
    # order: the primary key is non-decreasing along the diagonal (up to rounding)
    lam = sf.block_eigvals
    zero = 1e-12 * wmax * np.linalg.norm(W / wmax) if wmax > 0 else 0.0
    grp, key = primary(order_name, lam, zero=zero, alpha=alpha)
    assert np.all(np.diff(grp) >= 0)
    same = grp[1:] == grp[:-1]
    scale = np.abs(lam).max() if order_name in ("modulus", "real") else 1.0
    if order_name == "decay":
        scale = np.abs(key).max()
    if order_name == "custom":
        scale = max(np.abs(key).max(), 1e-300)
    assert np.all(np.diff(key)[same] >= -order_tol * scale)
    assert sf.order == order_name


def match_eigs(a, b):
    """Max distance between two multisets of eigenvalues (optimal matching)."""
    C = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])
    r, c = linear_sum_assignment(C)
    return C[r, c].max()


# ------------------------------------------------------------------------------------------------------------
# basic properties
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n", [2, 7, 33])
def test_random_all_orders(order, n):
    rng = rng_for(n + 100 * ORDERS.index(order))
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    sf = sj.ordered_schur(W, order=order_arg(order))
    check_form(sf, W, order)
    ref = np.linalg.eigvals(W)
    assert match_eigs(sf.eigvals, ref) <= 1e-8 * np.abs(ref).max()


def test_order_changes_with_key():
    rng = rng_for(1)
    W = rng.standard_normal((20, 20)) / np.sqrt(20)
    forms = {o: sj.ordered_schur(W, order=order_arg(o)) for o in ORDERS}
    lam = {o: forms[o].block_eigvals for o in ORDERS}
    # the same multiset, different sequences
    for o in ORDERS:
        assert match_eigs(lam[o], lam["modulus"]) < 1e-10
    assert not np.allclose(lam["modulus"], lam["real"])
    assert not np.allclose(lam["modulus"], lam["angle"])
    # independent full sort on the (well separated) spectrum for modulus and real
    ref = np.linalg.eigvals(W)
    ref = ref[ref.imag >= 0]
    np.testing.assert_allclose(np.abs(lam["modulus"]), np.sort(np.abs(ref))[::-1], rtol=1e-9)
    np.testing.assert_allclose(lam["real"].real, np.sort(ref.real)[::-1], rtol=1e-9, atol=1e-12)


def test_modulus_ties_secondary_rule():
    # moduli tied to 1e-14: 1 - 1e-14 (real), 0.6 +- 0.8i, -1, 0.8 +- 0.6i: ties -> descending Re, then ascending Im
    rng = rng_for(2)
    blocks = [
        np.array([[-1.0]]),
        np.array([[0.6, 0.8], [-0.8, 0.6]]),
        np.array([[1.0 - 1e-14]]),
        np.array([[0.8, 0.6], [-0.6, 0.8]]),
        np.array([[0.3]]),
    ]
    A = scipy.linalg.block_diag(*blocks) + np.triu(rng.standard_normal((7, 7)), 2) * 0.1
    U = random_orthogonal(rng, 7)
    W = U @ A @ U.T
    sf = sj.ordered_schur(W)
    check_form(sf, W, "modulus")
    want = np.array([1.0, 0.8 + 0.6j, 0.6 + 0.8j, -1.0, 0.3])
    np.testing.assert_allclose(sf.block_eigvals, want, atol=1e-12)
    # and "real": descending Re, ties by ascending Im
    sf = sj.ordered_schur(W, order="real")
    np.testing.assert_allclose(sf.block_eigvals, [1.0, 0.8 + 0.6j, 0.6 + 0.8j, 0.3, -1.0], atol=1e-12)
    sf = sj.ordered_schur(W, order="angle")
    np.testing.assert_allclose(sf.block_eigvals, [1.0, 0.3, -1.0, 0.8 + 0.6j, 0.6 + 0.8j], atol=1e-12)


def test_custom_key_ties_fall_back_to_modulus_rule():
    W = np.diag([0.1, -2.0, 0.5, 3.0, -0.5])
    sf = sj.ordered_schur(W, order=lambda z: 0.0)
    np.testing.assert_array_equal(sf.block_eigvals.real, [3.0, -2.0, 0.5, -0.5, 0.1])
    assert sf.order == "custom"
    sf = sj.ordered_schur(W, order=lambda z: z.real)  # ascending real part
    np.testing.assert_array_equal(sf.block_eigvals.real, [-2.0, -0.5, 0.1, 0.5, 3.0])
    np.testing.assert_array_equal(np.abs(sf.Q), np.eye(5)[:, [1, 4, 0, 2, 3]])


def test_custom_key_sees_unscaled_eigenvalues():
    # a key that is not scale-equivariant: distance to 2.0; W has max |W| far from 1 (internal power-of-2 scaling)
    rng = rng_for(19)
    lam = np.array([5.0, 2.2, -1.5, 1.7, 2.05, 0.1])
    A = np.diag(lam) + np.triu(rng.standard_normal((6, 6)), 1)
    U = random_orthogonal(rng, 6)
    W = U @ A @ U.T
    seen = []

    def key(z):
        seen.append(z)
        return abs(z - 2.0)

    sf = sj.ordered_schur(W, order=key)
    np.testing.assert_allclose(sf.block_eigvals.real, [2.05, 2.2, 1.7, 0.1, 5.0, -1.5], rtol=1e-10)
    assert match_eigs(np.array(seen[:6]), lam) < 1e-10


# ------------------------------------------------------------------------------------------------------------
# determinism and input types
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_determinism_bitwise(order):
    rng = rng_for(3)
    W = rng.standard_normal((40, 40))
    a = sj.ordered_schur(W, order=order_arg(order))
    b = sj.ordered_schur(W, order=order_arg(order))
    c = sj.ordered_schur(np.array(W, order="F"), order=order_arg(order))
    for x in (b, c):
        assert np.array_equal(a.Q, x.Q) and np.array_equal(a.T, x.T)
        assert np.array_equal(a.eigvals, x.eigvals) and a.blocks == x.blocks


def test_float32_and_int_and_jax_inputs():
    rng = rng_for(4)
    W32 = rng.standard_normal((16, 16)).astype(np.float32)
    a = sj.ordered_schur(W32)
    b = sj.ordered_schur(W32.copy())
    assert a.Q.dtype == np.float64 and np.array_equal(a.Q, b.Q) and np.array_equal(a.T, b.T)
    W64 = W32.astype(np.float64)
    check_form(a, W64, "modulus")
    c = sj.ordered_schur(W64)
    assert np.array_equal(a.T, c.T)  # exactly the float64 value of the float32 input
    j = sj.ordered_schur(jnp.asarray(W32))
    assert isinstance(j.Q, np.ndarray) and np.array_equal(j.T, a.T) and np.array_equal(j.Q, a.Q)
    Wi = rng.integers(-3, 4, size=(9, 9))
    check_form(sj.ordered_schur(Wi), Wi.astype(float), "modulus")
    check_form(sj.ordered_schur(jnp.asarray(Wi, dtype=jnp.bfloat16)), np.asarray(Wi, float), "modulus")


def test_exact_power_of_two_scale_invariance_and_extreme_scales():
    rng = rng_for(18)
    W = rng.standard_normal((12, 12))
    ref = sj.ordered_schur(W)
    for k in (-1000, -37, 5, 900):
        sf = sj.ordered_schur(np.ldexp(W, k))
        assert np.array_equal(sf.Q, ref.Q) and np.array_equal(sf.T, np.ldexp(ref.T, k))
    for scale in (1e-300, 1e-150, 1e150, 1e300):
        sf = sj.ordered_schur(W * scale, order="angle")
        check_form(sf, W * scale, "angle")
        np.testing.assert_allclose(
            sf.block_eigvals / scale, sj.ordered_schur(W, order="angle").block_eigvals, rtol=1e-12
        )


def test_outputs_are_read_only_and_frozen():
    sf = sj.ordered_schur(np.arange(9.0).reshape(3, 3))
    with pytest.raises(ValueError):
        sf.T[0, 0] = 1.0
    with pytest.raises(AttributeError):
        sf.Q = np.eye(3)


# ------------------------------------------------------------------------------------------------------------
# hard cases
# ------------------------------------------------------------------------------------------------------------


def test_n1_zero_identity():
    sf = sj.ordered_schur([[-2.5]])
    assert sf.n == 1 and sf.blocks == ((0, 1),) and sf.Q[0, 0] == 1.0 and sf.T[0, 0] == -2.5
    assert len(sf.couplings) == 0 and sf.henrici == 0.0
    z = sj.ordered_schur(np.zeros((6, 6)))
    assert np.all(z.T == 0) and np.array_equal(z.Q, np.eye(6)) and z.henrici_relative == 0.0
    assert z.blocks == tuple((i, 1) for i in range(6))
    eye = sj.ordered_schur(np.eye(5) * 0.7)
    assert np.array_equal(eye.T, np.eye(5) * 0.7) and np.array_equal(eye.Q, np.eye(5))


@pytest.mark.parametrize("order", ORDERS)
def test_defective_jordan_block(order):
    rng = rng_for(5)
    J = 0.9 * np.eye(6) + np.diag(np.ones(5), 1)
    A = scipy.linalg.block_diag(J, np.diag([2.0, -0.3]))
    U = random_orthogonal(rng, 8)
    W = U @ A @ U.T
    sf = sj.ordered_schur(W, order=order_arg(order))
    check_form(sf, W, order)
    assert np.all(np.abs(sf.eigvals - 0.9)[np.abs(sf.eigvals - 0.9) < 0.5] < 1e-2)
    # Henrici's departure of W (sqrt 5 for this Jordan block; eigenvalues perturbed by ~eps**(1/6)): the real-Schur
    # couplings carry part of it, the 2x2 blocks the rest
    assert sf.departure == pytest.approx(np.sqrt(5.0), rel=1e-2)
    assert 0.5 < sf.henrici <= sf.departure


def test_normal_matrix_has_no_couplings():
    rng = rng_for(6)
    blocks = [
        np.array([[r * np.cos(t), r * np.sin(t)], [-r * np.sin(t), r * np.cos(t)]]) for r, t in rng.random((5, 2))
    ]
    A = scipy.linalg.block_diag(*blocks, np.diag(rng.standard_normal(4)))
    U = random_orthogonal(rng, 14)
    W = U @ A @ U.T
    sf = sj.ordered_schur(W)
    check_form(sf, W, "modulus")
    assert sf.henrici < 1e-13 * np.linalg.norm(W)
    assert sf.henrici_relative < 1e-13
    assert np.abs(sf.N).max() < 1e-13
    ref = np.linalg.eigvals(W)
    assert match_eigs(sf.eigvals, ref) < 1e-12


def test_symmetric_matrix_is_diagonal():
    rng = rng_for(7)
    B = rng.standard_normal((12, 12))
    W = B + B.T
    sf = sj.ordered_schur(W)
    check_form(sf, W, "modulus")
    assert all(s == 1 for _, s in sf.blocks)
    ref = np.linalg.eigvalsh(W)
    np.testing.assert_allclose(sf.eigvals.real, ref[np.argsort(-np.abs(ref))], rtol=1e-12, atol=1e-12)
    assert sf.henrici < 1e-12 * np.linalg.norm(W)


@pytest.mark.parametrize("order", ORDERS)
def test_repeated_complex_pairs(order):
    rng = rng_for(8)
    R = np.array([[0.3, 0.9], [-0.9, 0.3]])
    A = scipy.linalg.block_diag(R, R, R, np.array([[1.2]]), R, np.array([[-0.1]]))
    A = A + np.triu(rng.standard_normal(A.shape), 2) * 0.3
    U = random_orthogonal(rng, A.shape[0])
    W = U @ A @ U.T
    sf = sj.ordered_schur(W, order=order_arg(order))
    check_form(sf, W, order)
    n_pairs = sum(s == 2 for _, s in sf.blocks)
    assert n_pairs == 4
    pairs = sf.block_eigvals[[s == 2 for _, s in sf.blocks]]
    assert np.abs(pairs - (0.3 + 0.9j)).max() < 1e-4  # repeated eigenvalue: only eps**(1/4)-ish accurate


def test_rank_one():
    rng = rng_for(9)
    u, v = rng.standard_normal((2, 10))
    W = np.outer(u, v)
    sf = sj.ordered_schur(W)
    check_form(sf, W, "modulus")
    np.testing.assert_allclose(sf.eigvals[0].real, u @ v, rtol=1e-12)
    assert np.abs(sf.eigvals[1:]).max() < 1e-13 * np.linalg.norm(W)


def test_permutation_matrix_unit_circle():
    # all |lam| = 1: many ties; eigenvalues are roots of unity
    P = np.roll(np.eye(7), 1, axis=0)
    sf = sj.ordered_schur(P)
    check_form(sf, P, "modulus")
    assert sf.blocks[0] == (0, 1) and abs(sf.T[0, 0] - 1) < 1e-14
    re = sf.block_eigvals.real
    assert np.all(np.diff(re) < 0)  # tied moduli -> descending real part


def test_large_random_512():
    rng = rng_for(10)
    W = rng.standard_normal((512, 512)) / np.sqrt(512)
    sf = sj.ordered_schur(W)
    check_form(sf, W, "modulus")
    ref = np.linalg.eigvals(W)
    assert match_eigs(sf.eigvals, ref) <= 1e-8 * np.abs(ref).max()


# ------------------------------------------------------------------------------------------------------------
# refused swaps (LAPACK info = 1), simulated by a wrapper that stops the move exactly like dtrexc does
# ------------------------------------------------------------------------------------------------------------


def refusing_dtrexc(real, W, is_blocker, is_mover):
    """dtrexc that refuses to move a block `is_mover(lam)` past a block `is_blocker(lam)` (partial move, info=1).

    ordered_schur works on W scaled by a power of 2 (max |W| in [0.5, 1)): lam is un-scaled before the predicates.
    """
    unit = np.ldexp(1.0, math.frexp(np.abs(W).max())[1])

    def wrapped(T, Q, ifst, ilst, **kw):
        starts, sizes = R._block_structure(T)
        lam = R._block_eigs(T, starts, sizes) * unit
        k = int(np.nonzero(starts == ifst - 1)[0][0])
        if ilst < ifst and is_mover(lam[k]):
            for j in range(k - 1, -1, -1):
                if starts[j] < ilst - 1:
                    break
                if is_blocker(lam[j]):
                    stop = int(starts[j] + sizes[j])
                    if stop != ifst - 1:
                        T, Q, _ = real(T, Q, ifst, stop + 1, **kw)
                    return T, Q, 1
        return real(T, Q, ifst, ilst, **kw)

    return wrapped


def test_refused_swap_between_near_ties_is_a_documented_tie(monkeypatch):
    rng = rng_for(11)
    lam = np.array([0.2, 0.9 * (1 + 5e-8), -0.5, 0.9, 1.5, 0.1])
    A = np.diag(lam) + np.triu(rng.standard_normal((6, 6)), 1) * 0.2
    U = random_orthogonal(rng, 6)
    W = U @ A @ U.T
    ref = sj.ordered_schur(W)
    i_big = int(np.argmin(np.abs(ref.block_eigvals - 0.9 * (1 + 5e-8))))
    i_small = int(np.argmin(np.abs(ref.block_eigvals - 0.9)))
    assert i_big < i_small  # without refusal: strict modulus order
    real = R.lapack.dtrexc
    calls = []

    def mover(z):
        return abs(z - 0.9 * (1 + 5e-8)) < 2e-8

    def blocker(z):
        calls.append(z)
        return abs(z - 0.9) < 2e-8

    monkeypatch.setattr(R.lapack, "dtrexc", refusing_dtrexc(real, W, blocker, mover))
    sf = sj.ordered_schur(W)
    assert calls  # the refusal path ran
    check_form(sf, W, "modulus", order_tol=1e-6)
    lam_sf = sf.block_eigvals.real
    # the refused pair is kept in the blocker-first order; everything else is in strict order
    assert abs(lam_sf[1] - 0.9) < 1e-8 and abs(lam_sf[2] - 0.9 * (1 + 5e-8)) < 1e-8 and lam_sf[1] < lam_sf[2]
    np.testing.assert_allclose(lam_sf[[0, 3, 4, 5]], [1.5, -0.5, 0.2, 0.1], rtol=1e-12)


def test_refused_swap_between_distinct_keys_raises(monkeypatch):
    rng = rng_for(12)
    W = np.diag([0.2, 0.3, -0.5, 0.9]) + np.triu(rng.standard_normal((4, 4)), 1)  # dgees keeps a triangular W
    real = R.lapack.dtrexc
    calls = []

    def blocker(z):
        calls.append(z)
        return abs(z - 0.2) < 1e-9

    monkeypatch.setattr(R.lapack, "dtrexc", refusing_dtrexc(real, W, blocker, lambda z: abs(z - 0.9) < 1e-9))
    with pytest.raises(ValueError, match=r"refused to swap .* eigenvalues 0\.2 and 0\.9"):
        sj.ordered_schur(W)
    assert calls


# ------------------------------------------------------------------------------------------------------------
# 2x2 standardization safety net (NumPy port of dlanv2's rotation)
# ------------------------------------------------------------------------------------------------------------


def test_standardize_nonstandard_pair():
    rng = rng_for(13)
    n = 5
    T = np.triu(rng.standard_normal((n, n)))
    B = np.array([[0.3, 2.0], [-0.5, -0.1]])  # complex eigenvalues, unequal diagonal
    T[1:3, 1:3] = B
    Q = random_orthogonal(rng, n)
    W = Q @ T @ Q.T
    T2, Q2 = np.asfortranarray(T.copy()), np.asfortranarray(Q.copy())
    split = R._standardize_pairs(T2, Q2)
    assert not split
    assert T2[1, 1] == T2[2, 2] and T2[1, 2] * T2[2, 1] < 0
    np.testing.assert_allclose(Q2 @ T2 @ Q2.T, W, atol=1e-13)
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(T2[1:3, 1:3])), np.sort_complex(np.linalg.eigvals(B)))
    # real eigenvalues in a 2x2 block: split into two 1x1 blocks
    T[1:3, 1:3] = np.array([[0.3, 2.0], [0.5, -0.1]])
    W = Q @ T @ Q.T
    T3, Q3 = np.asfortranarray(T.copy()), np.asfortranarray(Q.copy())
    assert R._standardize_pairs(T3, Q3)
    assert T3[2, 1] == 0
    np.testing.assert_allclose(Q3 @ T3 @ Q3.T, W, atol=1e-13)


# ------------------------------------------------------------------------------------------------------------
# SchurForm attributes against independent loops
# ------------------------------------------------------------------------------------------------------------


def test_schurform_attributes():
    rng = rng_for(14)
    n = 11
    W = rng.standard_normal((n, n))
    sf = sj.ordered_schur(W)
    T = sf.T
    blocks = sf.blocks
    nb = len(blocks)
    bi = np.empty(n, dtype=int)
    for k, (s, z) in enumerate(blocks):
        bi[s : s + z] = k
    np.testing.assert_array_equal(sf.block_index, bi)
    assert sf.block_index.dtype == np.int64 and sf.couplings.dtype == np.int64
    ref = [(i, j) for i in range(n) for j in range(n) if bi[i] < bi[j]]
    np.testing.assert_array_equal(sf.couplings, np.array(ref))
    mask = np.zeros((n, n), bool)
    for i, j in ref:
        mask[i, j] = True
    np.testing.assert_array_equal(sf.coupling_mask, mask)
    np.testing.assert_array_equal(sf.N, np.where(mask, T, 0))
    np.testing.assert_array_equal(sf.D + sf.N, T)
    for a in range(nb):
        for b in range(nb):
            (sa, za), (sb, zb) = blocks[a], blocks[b]
            want = np.sqrt(np.sum(T[sa : sa + za, sb : sb + zb] ** 2)) if a < b else 0.0
            assert sf.block_coupling_norms()[a, b] == pytest.approx(want, rel=1e-13, abs=0)
    np.testing.assert_array_equal(sf.block_eigvals, [sf.eigvals[s] for s, _ in blocks])
    assert np.all(sf.block_eigvals.imag >= 0)
    assert sf.henrici == pytest.approx(np.sqrt(sum(T[i, j] ** 2 for i, j in ref)), rel=1e-13)
    assert sf.henrici_relative == pytest.approx(sf.henrici / np.linalg.norm(W), rel=1e-12)
    np.testing.assert_allclose(sf.reconstruct(), W, atol=1e-12 * np.linalg.norm(W))
    # spectrum-preserving edit: removing couplings keeps W's eigenvalues
    Wd = sf.reconstruct(sf.D)
    assert match_eigs(np.linalg.eigvals(Wd), np.linalg.eigvals(W)) < 1e-8
    stack = sf.reconstruct(np.stack([sf.T, sf.D]))
    assert stack.shape == (2, n, n)
    with pytest.raises(ValueError, match=r"SchurForm.reconstruct: T must have shape"):
        sf.reconstruct(np.eye(n + 1))


def test_henrici_identity():
    # ||W||_F^2 - sum |lam|^2 = ||N||_F^2 + sum over 2x2 blocks of (b + c)^2 (real Schur form; true identity)
    rng = rng_for(15)
    for n in (3, 10, 25):
        W = rng.standard_normal((n, n))
        sf = sj.ordered_schur(W)
        lam = np.linalg.eigvals(W)
        lhs = np.linalg.norm(W) ** 2 - np.sum(np.abs(lam) ** 2)
        extra = sum((sf.T[i, i + 1] + sf.T[i + 1, i]) ** 2 for i, s in sf.blocks if s == 2)
        assert lhs == pytest.approx(sf.henrici**2 + extra, rel=1e-9, abs=1e-10 * np.linalg.norm(W) ** 2)
        assert sf.departure**2 == pytest.approx(lhs, rel=1e-9, abs=1e-10 * np.linalg.norm(W) ** 2)
        # complex Schur form (independent): its strictly upper part is Henrici's departure
        Tc, _ = scipy.linalg.schur(W.astype(complex), output="complex")
        assert sf.departure == pytest.approx(np.linalg.norm(np.triu(Tc, 1)), rel=1e-8)


def test_summary_and_dict():
    rng = rng_for(16)
    W = rng.standard_normal((30, 30)) / np.sqrt(30)
    sf = sj.ordered_schur(W)
    d = sf.summary_dict()
    json.dumps(d)
    assert d["n"] == 30 and d["n_blocks"] == len(sf.blocks)
    assert d["n_real"] + 2 * d["n_complex_pairs"] == 30
    assert d["spectral_radius"] == pytest.approx(np.abs(np.linalg.eigvals(W)).max(), rel=1e-10)
    np.testing.assert_array_equal(np.array(d["eigvals"]["re"]) + 1j * np.array(d["eigvals"]["im"]), sf.eigvals)
    text = sf.summary()
    assert "n=30" in text and "Henrici" in text and f"{d['spectral_radius']:.6g}" in text
    assert len(text.splitlines()) <= 24 and max(map(len, text.splitlines())) <= 120
    assert "SchurForm(n=30" in repr(sf)


def test_npz_round_trip(tmp_path):
    rng = rng_for(17)
    sf = sj.ordered_schur(rng.standard_normal((13, 13)), order="angle")
    p = sf.to_npz(tmp_path / "schur")
    assert p.name == "schur.npz" and p.exists()
    back = sj.SchurForm.from_npz(p)
    for f in ("Q", "T", "eigvals"):
        a, b = getattr(sf, f), getattr(back, f)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back.blocks == sf.blocks and back.order == "angle"
    np.testing.assert_array_equal(back.couplings, sf.couplings)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"SchurForm.from_npz: path must be a SchurForm .npz file"):
        sj.SchurForm.from_npz(tmp_path / "bad.npz")


def reference_fingerprint(T, blocks, order):
    """The run-folder digest, computed independently: blake2b-128 of (shape, blocks, order) and T's float64 bytes."""
    T = np.ascontiguousarray(np.asarray(T, dtype=np.float64))
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((T.shape, tuple((int(s), int(z)) for s, z in blocks), str(order))).encode())
    h.update(T.tobytes())
    return h.hexdigest()


def test_fingerprint(tmp_path):
    rng = rng_for(18)
    W = rng.standard_normal((9, 9))
    sf = sj.ordered_schur(W)
    assert sf.fingerprint == reference_fingerprint(sf.T, sf.blocks, sf.order)
    assert len(sf.fingerprint) == 32 and int(sf.fingerprint, 16) >= 0
    # the same form computed again, or round-tripped through npz: the same digest
    assert sj.ordered_schur(W.copy()).fingerprint == sf.fingerprint
    assert sj.SchurForm.from_npz(sf.to_npz(tmp_path / "sf.npz")).fingerprint == sf.fingerprint
    # one T entry changed by one ulp, or another order: another digest
    T = np.array(sf.T)
    T[0, -1] = np.nextafter(T[0, -1], np.inf)
    edited = sj.SchurForm(Q=sf.Q, T=T, blocks=sf.blocks, eigvals=sf.eigvals, order=sf.order)
    assert edited.fingerprint == reference_fingerprint(T, sf.blocks, sf.order) != sf.fingerprint
    real = sj.ordered_schur(W, order="real")
    assert real.fingerprint == reference_fingerprint(real.T, real.blocks, "real") != sf.fingerprint


def test_diag_mask():
    sf = sj.ordered_schur(rng_for(19).standard_normal((10, 10)))
    ref = np.zeros((10, 10), bool)
    for s, z in sf.blocks:
        ref[s : s + z, s : s + z] = True
    np.testing.assert_array_equal(sf.diag_mask, ref)
    np.testing.assert_array_equal(sf.D, np.where(ref, sf.T, 0.0))
    assert not sf.diag_mask.flags.writeable


# ------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "W, msg",
    [
        (np.ones((3, 4)), "ordered_schur: W must be a square 2-D real matrix, got shape (3, 4)"),
        (np.ones(5), "ordered_schur: W must be a square 2-D real matrix, got shape (5,)"),
        (np.ones((2, 2, 2)), "ordered_schur: W must be a square 2-D real matrix, got shape (2, 2, 2)"),
        (np.ones((0, 0)), "ordered_schur: W must be a non-empty square 2-D real matrix, got shape (0, 0)"),
        (np.eye(2) * 1j, "ordered_schur: W must be a square 2-D real matrix, got complex dtype complex128"),
        (
            np.array([[1.0, np.nan], [np.inf, 0.0]]),
            "ordered_schur: W must be finite, got 2 NaN/Inf entries in a matrix of shape (2, 2)",
        ),
        (np.array([["a", "b"], ["c", "d"]]), "ordered_schur: W must be a square 2-D real matrix, got dtype <U1"),
    ],
)
def test_bad_input_messages(W, msg):
    with pytest.raises(ValueError) as e:
        sj.ordered_schur(W)
    assert str(e.value) == msg
    assert "\n" not in str(e.value)


def test_bad_order_messages():
    with pytest.raises(ValueError) as e:
        sj.ordered_schur(np.eye(2), order="size")
    assert str(e.value) == (
        "ordered_schur: order must be one of 'modulus', 'real', 'angle', 'decay' (with alpha), ('decay', alpha) or "
        "a callable, got 'size'"
    )
    with pytest.raises(ValueError, match=r"order key must return a finite number, got nan"):
        sj.ordered_schur(np.diag([1.0, 2.0]), order=lambda z: float("nan"))
    with pytest.raises(ValueError, match=r"order key must return a real number"):
        sj.ordered_schur(np.diag([1.0, 2.0]), order=lambda z: "x")


# ------------------------------------------------------------------------------------------------------------
# the decay order of leaky models
# ------------------------------------------------------------------------------------------------------------


def reference_decay_order(W, alpha):
    """Block eigenvalues (Im >= 0 member of each pair) sorted independently from scipy's eigenvalues: descending
    |1 - alpha + alpha lam|, ties (relative 1e-9) by descending |lam|, then descending Re lam."""
    ev = scipy.linalg.eigvals(W)
    ev = ev[ev.imag >= -1e-12 * np.abs(ev).max()]
    ev = np.where(np.abs(ev.imag) <= 1e-12 * np.abs(ev).max(), ev.real + 0j, ev)
    dec = np.abs(1 - alpha + alpha * ev)
    return ev[np.lexsort((-ev.real, -np.abs(ev), -np.round(dec, 9)))], dec


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("n", [7, 24, 64])
def test_decay_order_against_scipy(alpha, n):
    rng = rng_for(700 + n + int(100 * alpha))
    W = rng.standard_normal((n, n)) * (1.3 / np.sqrt(n))
    sf = sj.ordered_schur(W, order="decay", alpha=alpha)
    assert sf.order == "decay" and sf.alpha == alpha
    check_form(sf, W, "decay", alpha=alpha)
    ref, _ = reference_decay_order(W, alpha)
    np.testing.assert_allclose(sf.block_eigvals, ref, rtol=1e-9, atol=1e-9)
    dec = sf.step_decay()
    np.testing.assert_allclose(dec, np.abs(1 - alpha + alpha * sf.eigvals), rtol=1e-15)
    assert np.all(np.diff(dec[sf.block_starts]) <= 1e-12)  # descending along the diagonal
    # the same form from the tuple order, bitwise; it differs from the modulus order for these spectra
    tup = sj.ordered_schur(W, order=("decay", alpha))
    assert np.array_equal(tup.T, sf.T) and np.array_equal(tup.Q, sf.Q) and tup.fingerprint == sf.fingerprint
    mod = sj.ordered_schur(W)
    if alpha <= 0.5 and n >= 24:
        assert not np.allclose(mod.block_eigvals, sf.block_eigvals)
    assert sf.fingerprint != sj.ordered_schur(W, order="decay", alpha=alpha / 2).fingerprint


def test_decay_order_issue_example_and_alpha_one():
    # the issue's example: with alpha = 0.1, lam = 0.9 (decay 0.99) is slower than lam = -0.95 (decay 0.805)
    W = np.diag([-0.95, 0.9, 0.3])
    assert np.allclose(sj.ordered_schur(W).block_eigvals, [-0.95, 0.9, 0.3])
    sf = sj.ordered_schur(W, order="decay", alpha=0.1)
    np.testing.assert_allclose(sf.block_eigvals, [0.9, 0.3, -0.95])
    np.testing.assert_allclose(sf.step_decay(), [0.99, 0.93, 0.805])
    np.testing.assert_allclose(sf.step_decay(1.0), [0.9, 0.3, 0.95])
    # alpha = 1: bitwise the modulus form (recorded as decay with alpha 1)
    W = rng_for(31).standard_normal((20, 20))
    a, b = sj.ordered_schur(W, order="decay", alpha=1.0), sj.ordered_schur(W)
    assert np.array_equal(a.T, b.T) and np.array_equal(a.Q, b.Q) and (a.order, a.alpha) == ("decay", 1.0)
    np.testing.assert_array_equal(a.step_decay(), np.abs(b.eigvals))


def test_order_for_models_and_schur_of():
    import jax

    from schurjax.schur import order_for, schur_of

    key = jax.random.key(0)
    tanh = sj.TanhRNN(2, 12, 1, key=key)
    assert order_for(tanh) == "modulus" and order_for(sj.RateRNN(2, 12, 1, key=key)) == "modulus"
    leaky = sj.RateRNN(2, 12, 1, alpha=0.2, nonlinearity="relu", form="current", key=key)
    assert order_for(leaky) == ("decay", 0.2)
    sf = schur_of(leaky)
    ref = sj.ordered_schur(np.asarray(leaky.W_rec, np.float64), order="decay", alpha=0.2)
    assert np.array_equal(sf.T, ref.T) and sf.alpha == 0.2
    base = schur_of(tanh)
    assert base.order == "modulus" and base.alpha is None
    assert np.array_equal(base.T, sj.ordered_schur(np.asarray(tanh.W_rec, np.float64)).T)
    assert schur_of(leaky, order="real").order == "real"


def test_decay_form_records_round_trip_and_errors(tmp_path):
    W = rng_for(32).standard_normal((10, 10))
    sf = sj.ordered_schur(W, order="decay", alpha=0.25)
    back = sj.SchurForm.from_npz(sf.to_npz(tmp_path / "d.npz"))
    assert (back.order, back.alpha) == ("decay", 0.25) and back.fingerprint == sf.fingerprint
    assert sf.order_spec == ("decay", 0.25) and sj.ordered_schur(W, order=sf.order_spec).fingerprint == sf.fingerprint
    assert sj.ordered_schur(W, order="real").order_spec == "real"
    assert np.array_equal(back.T, sf.T)
    d = sf.summary_dict()
    assert d["alpha"] == 0.25 and np.allclose(d["step_decay"], sf.step_decay())
    assert "per-step decay" in sf.summary() and "alpha=0.25" in repr(sf)
    plain = sj.ordered_schur(W)
    assert "alpha" not in plain.summary_dict() and "per-step decay" not in plain.summary()
    # an old-style npz (no alpha key) still loads
    assert sj.SchurForm.from_npz(plain.to_npz(tmp_path / "p.npz")).alpha is None
    with pytest.raises(ValueError, match=r"^ordered_schur: order='decay' needs alpha"):
        sj.ordered_schur(W, order="decay")
    with pytest.raises(ValueError, match=r"^ordered_schur: alpha applies to order='decay' only"):
        sj.ordered_schur(W, order="modulus", alpha=0.2)
    for bad in (0.0, 1.5, True, "0.2", float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be a real number in \(0, 1\]"):
            sj.ordered_schur(W, order="decay", alpha=bad)
    with pytest.raises(ValueError, match=r"disagree"):
        sj.ordered_schur(W, order=("decay", 0.2), alpha=0.3)
    with pytest.raises(ValueError, match=r"a tuple order must be \('decay', alpha\)"):
        sj.ordered_schur(W, order=("modulus", 0.2))
    with pytest.raises(ValueError, match=r"pass alpha"):
        plain.step_decay()
    with pytest.raises(ValueError, match=r"order 'decay' needs its alpha"):
        sj.SchurForm(Q=sf.Q, T=sf.T, blocks=sf.blocks, eigvals=sf.eigvals, order="decay")
    with pytest.raises(ValueError, match=r"alpha belongs to order 'decay' only"):
        sj.SchurForm(Q=sf.Q, T=sf.T, blocks=sf.blocks, eigvals=sf.eigvals, order="modulus", alpha=0.3)


# ------------------------------------------------------------------------------------------------------------
# property-based
# ------------------------------------------------------------------------------------------------------------


def _matrix(kind, n, seed, scale):
    rng = rng_for(seed)
    if kind == "gauss":
        W = rng.standard_normal((n, n))
    elif kind == "int":  # many exact ties, repeated and defective eigenvalues
        W = rng.integers(-1, 2, size=(n, n)).astype(float)
    elif kind == "lowrank":
        r = max(1, n // 4)
        W = rng.standard_normal((n, r)) @ rng.standard_normal((r, n))
    elif kind == "orthogonal":  # all |lam| = 1
        W = random_orthogonal(rng, n)
    elif kind == "skew":
        B = rng.standard_normal((n, n))
        W = B - B.T
    else:  # triangular with repeated diagonal
        W = np.triu(rng.standard_normal((n, n))) + np.diag(rng.choice([-0.5, 0.5, 1.0], size=n))
        U = random_orthogonal(rng, n)
        W = U @ W @ U.T
    return W * scale


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-3, 3),
    kind=st.sampled_from(["gauss", "int", "lowrank", "orthogonal", "skew", "triangular"]),
    order=st.sampled_from(ORDERS),
)
def test_property_random_shapes_and_scales(n, seed, log_scale, kind, order):
    W = _matrix(kind, n, seed, 10.0**log_scale)
    sf = sj.ordered_schur(W, order=order_arg(order))
    check_form(sf, W, order)
    again = sj.ordered_schur(W.copy(), order=order_arg(order))
    assert np.array_equal(sf.Q, again.Q) and np.array_equal(sf.T, again.T)
    if kind == "gauss":
        ref = np.linalg.eigvals(W)
        assert match_eigs(sf.eigvals, ref) <= 1e-6 * np.abs(ref).max()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-2, 2),
    alpha=st.floats(0.01, 1.0),
    kind=st.sampled_from(["gauss", "int", "lowrank", "orthogonal", "skew", "triangular"]),
)
def test_property_decay_order(n, seed, log_scale, alpha, kind):
    W = _matrix(kind, n, seed, 10.0**log_scale)
    sf = sj.ordered_schur(W, order="decay", alpha=alpha)
    check_form(sf, W, "decay", alpha=alpha)
    again = sj.ordered_schur(W.copy(), order=("decay", alpha))
    assert np.array_equal(sf.Q, again.Q) and np.array_equal(sf.T, again.T) and sf.fingerprint == again.fingerprint
