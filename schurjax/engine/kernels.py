"""Compiled rollout kernels of the evaluation engine (internal; the public entry point is ``schurjax.evaluate``).

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

One compiled program rolls out one *chunk*: ``k`` weight variants of ``M`` models on the same ``B`` trials (common
random numbers), with a ``lax.scan`` over the ``T`` time steps, and reduces the per-variant metrics in the same
program. Two rollout forms:

* *deviation* (default, :func:`chunk_dev`): the base (unablated) trajectory ``h`` is computed once per batch, in
  float64 (:func:`base_rollout`), and every slot carries its deviation ``D_k = h_k - h``, updated with the exact
  identity ``D_k <- tanh(a + delta_k) - tanh(a)`` (``a`` the base pre-activation, ``delta_k`` the pre-activation
  change, :func:`_tanh_diff`). Rounding errors are then relative to the effect of an edit, not to the states, so the
  smallest effects keep their digits. The output deviations ``W_out D_k`` are reduced after the scan against the
  base residual ``y0 - target`` (float64, rounded once).
* *plain* (:func:`chunk`, opt-out): every slot carries its state ``h_k``; slot 0 is the unablated model (its edit is
  exactly zero) and the metrics difference each slot's outputs against it.

Both come in two layouts:

* ``shared`` (sparse edits, ``dW_k = Q dT_k Q^T = U_k V_k^T`` of rank ``r``): the states of all slots and trials
  are one ``(k * B, n)`` matrix, so the base matrix ``W`` is applied with one large GEMM per step; the edit is a
  rank-``r`` correction ``(H V_k) U_k^T`` fused into the elementwise update.
* ``dense`` (arbitrary edits): ``W_k = W + Q dT_k Q^T`` per slot, states laid out ``(k, n, B)`` and advanced with
  the batched matmul ``W_k @ H_k`` (on the CPU this layout runs about twice as fast as ``(k, B, n)``).

Per step the scan emits only the outputs (or output deviations) ``(k, B, n_out)``; the per-step metric sums
``(k, T)`` are taken after the scan with fixed-order pairwise sums, so every slot's result is bitwise the same
whatever the number of slots in the chunk. No ``(k, B, T, n)`` trajectory is ever materialised.

``valid`` (optional, (T, B)): steps past a trial's end. Distances then average over valid steps only and the final
state is each trial's last valid one (``last`` (T, B) marks it).
"""

from __future__ import annotations

import collections
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__: list[str] = []

TRACES: collections.Counter = collections.Counter()
"""Number of times each chunk kernel was traced (one per compiled shape); tests use it to catch recompiles."""

_SMALL_RANK = 4
"""Up to this rank the shared-base correction is written elementwise (fused into the update), else as dots."""

# The deviation update evaluates tanh in float32 by two approximations:
# - of the pre-activation change, |x| < 0.5: tanh(x) = x + x u P(u), u = x^2, P a degree-4 polynomial (weighted
#   least-squares fit of (tanh(x) / x - 1) / u on [0, 0.25]): max error 1.2 ulp and no bias. XLA's float32 tanh has
#   tanh(x) / x = 1 - 1.3e-7 for small x, a relative error that a deviation carried over many steps accumulates;
# - of a + delta, where only absolute accuracy matters (|delta| >= 0.5): tanh(z) ~ z p(z^2) / q(z^2) on
#   |z| <= _TANH_CLAMP and +-1 beyond (Eigen's rational approximation, the one XLA's CPU backend uses).
_TANH_SMALL = (
    -0.333333283662796,
    0.13332971930503845,
    -0.05390011519193649,
    0.02130209468305111,
    -0.006653830409049988,
)
_TANH_P = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
_TANH_CLAMP = 7.90531110763549805
_SMALL_DELTA = 0.5
"""Below this ``|delta|`` the deviation update uses the tanh addition formula, above it the plain difference."""


def _horner(coeffs, x):
    r = jnp.asarray(coeffs[0], x.dtype)
    for c in coeffs[1:]:
        r = r * x + c
    return r


def _tanh_diff(a, t0, s0, delta):
    """``tanh(a + delta) - tanh(a)`` elementwise, with full relative accuracy for small ``delta``.

    Args: the base pre-activation ``a``, ``t0 = tanh(a)`` and ``s0 = sech^2(a)`` (from float64: ``1 - t0^2`` in
    float32 loses its relative accuracy as a unit saturates), broadcastable against ``delta``.

    For ``|delta| < 0.5``: ``tanh(delta) s0 / (1 + t0 tanh(delta))`` (the denominator is >= 0.53); else the plain
    difference ``tanh(a + delta) - t0``, which has no cancellation problem at that size. In float32 the two
    branches share one division (tanh approximations above). Against float64: relative error < 4e-7 (and no bias)
    for ``|delta| < 0.5``, absolute error < 7e-7 ``|delta|`` everywhere (``tests/test_precision.py``).
    """
    small = jnp.abs(delta) < _SMALL_DELTA
    if delta.dtype != jnp.float32:  # float64 verification runs: the library tanh
        tz = jnp.tanh(jnp.where(small, delta, a + delta))
        return jnp.where(small, tz * s0 / (1.0 + t0 * tz), tz - t0)
    ts = delta + delta * (delta * delta) * _horner(_TANH_SMALL[::-1], delta * delta)  # tanh(delta), |delta| < 0.5
    z = a + delta
    zc = jnp.clip(z, -_TANH_CLAMP, _TANH_CLAMP)
    z2 = zc * zc
    q = _horner(_TANH_Q, z2)
    p = jnp.where(zc == z, zc * _horner(_TANH_P, z2), jnp.sign(z) * q)  # p / q = tanh(a + delta)
    return jnp.where(small, ts * s0, p - t0 * q) / jnp.where(small, 1.0 + t0 * ts, q)


def _apply_u(c, U):
    """``c U_k`` of every slot: c (k, B, r), U (k, r, n) -> (k, B, n); elementwise for small r (so that it fuses
    into the update), else as a dot."""
    if U.shape[1] <= _SMALL_RANK:
        return sum(c[:, :, e, None] * U[:, None, e, :] for e in range(U.shape[1]))
    return jnp.einsum("kbe,ken->kbn", c, U)


def _pairwise_sum(x: Array) -> Array:
    """Sum over the last axis by pairwise halving: a fixed order (every slot's result is the same whatever the
    leading shape, unlike an XLA reduction, which may vectorise by shape) with an error growing as log2(length)."""
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = jnp.concatenate([x, jnp.zeros_like(x[..., :1])], axis=-1)
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def _scan(step, H0, xs, last, b_axis: int, unroll: int):
    """``lax.scan`` of ``step`` from the state ``H0``; returns (the state at each trial's last valid step, or the
    final state when ``last`` (T, B) is None; the stacked per-step outputs). ``b_axis``: the trial axis of the state.
    """
    if last is None:
        return jax.lax.scan(step, H0, xs, unroll=unroll)

    def step_last(carry, xs_t):
        H, H_last = carry
        H, out = step(H, xs_t[0])
        is_last = jnp.expand_dims(xs_t[1], [a for a in range(H.ndim) if a != b_axis])
        return (H, jnp.where(is_last, H, H_last)), out

    (_, H_last), out = jax.lax.scan(step_last, (H0, H0), (xs, last), unroll=unroll)
    return H_last, out


def _trial_change(yd, r0, mask):
    """Per-trial change of the masked squared error, summed over steps and outputs: yd (T, k, B, o), r0 (T, B, o)
    or (T, k, B, o), mask (T, B, o) -> (k, B) (a fixed summation order, as :func:`_metrics`)."""
    r0 = r0 if r0.ndim == 4 else r0[:, None]
    change = jnp.sum(mask[:, None] * yd * (2.0 * r0 + yd), axis=-1)  # (T, k, B)
    return _pairwise_sum(jnp.moveaxis(change, 0, -1))


def _metrics(yd, r0, mask, valid):
    """Per-step, per-slot sums over trials and outputs, from output deviations yd (T, k, B, o).

    r0 (T, B, o) (or (T, k, B, o)): the base residual ``y0 - target``; mask (T, B, o) (zero on invalid steps);
    valid (T, B) or None. Returns, each (k, T): the change of the masked squared error, summed as
    ``mask yd (2 r0 + yd)`` so that small changes do not cancel; the sum of the absolute values of those terms
    (their ratio tells how much the change cancels); the squared output distance ``yd^2`` over the valid steps.
    """
    T, k, B, o = yd.shape
    r0 = r0 if r0.ndim == 4 else r0[:, None]
    change = mask[:, None] * yd * (2.0 * r0 + yd)
    sq = yd * yd if valid is None else yd * yd * valid[:, None, :, None]
    return tuple(_pairwise_sum(v.reshape(T, k, B * o)).T for v in (change, jnp.abs(change), sq))


# ---------------------------------------------------------------------------------------------------------------
# deviation form (default)
# ---------------------------------------------------------------------------------------------------------------


def _rollout_shared_dev(W, U, V, cols, base, W_out, last, unroll):
    """Shared-base rollout of the deviations ``D_k = h_k - h``.

    ``delta_k = W D_k + (V_k^T h_k) U_k`` with ``V_k^T h_k = V_k^T D_k + z[cols_k]``, where ``z = Q^T h_{t-1}`` is
    the base's previous state in Schur coordinates, from float64: the edit acts on the base state without
    rounding the product first. W (n, n); U, V (k, r, n) (``V_k = Q[:, cols_k]``); cols (k, r); base: a, t0, s0, z
    (T, B, n). Returns the deviations at the last (valid) step (k, B, n) and yd (T, k, B, o).
    """
    k, _, n = U.shape
    B = base["a"].shape[1]
    WT = W.T
    hi = jax.lax.Precision.HIGHEST

    Vt = jnp.swapaxes(V, 1, 2)  # (k, n, r): the layout of the batched matrix-vector product, formed once
    zc = jnp.moveaxis(base["z"][:, :, cols], 2, 1)  # (T, k, B, r): z[cols_k] of every step, gathered once

    def step(D, xs):
        a, t0, s0, z = xs
        c = jnp.einsum("kbn,kne->kbe", D, Vt, precision=hi) + z
        delta = (D.reshape(k * B, n) @ WT).reshape(k, B, n) + _apply_u(c, U)
        D = _tanh_diff(a[None], t0[None], s0[None], delta)
        return D, jnp.einsum("kbn,on->kbo", D, W_out, precision=hi)

    xs = (base["a"], base["t0"], base["s0"], zc)
    return _scan(step, jnp.zeros((k, B, n), W.dtype), xs, last, 1, unroll)


def _rollout_dense_dev(W, Q, dT, base, W_out, last, unroll):
    """Dense rollout of the deviations: ``delta_k = W_k D_k + dW_k h_{t-1}``, ``dW_k = Q dT_k Q^T`` (formed and
    applied to the base state at HIGHEST precision; ``W_k D_k`` at the context's precision).

    W, Q (n, n); dT (k, n, n); base: a, t0, s0 and h (the previous base state), (T, n, B).
    Returns the deviations at the last (valid) step (k, B, n) and yd (T, k, B, o).
    """
    k = dT.shape[0]
    n, B = base["a"].shape[1], base["a"].shape[2]
    hi = jax.lax.Precision.HIGHEST
    dW = jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q, precision=hi), precision=hi)
    Wk = W[None] + dW

    def step(D, xs):
        a, t0, s0, h = xs
        delta = jnp.einsum("kij,kjb->kib", Wk, D) + jnp.dot(dW.reshape(k * n, n), h, precision=hi).reshape(k, n, B)
        D = _tanh_diff(a[None], t0[None], s0[None], delta)
        return D, jnp.einsum("on,knb->kbo", W_out, D, precision=hi)

    xs = (base["a"], base["t0"], base["s0"], base["h"])
    DT, yd = _scan(step, jnp.zeros((k, n, B), W.dtype), xs, last, 2, unroll)
    return jnp.swapaxes(DT, 1, 2), yd


def _one_model_dev(W, W_out, base, e1, e2, mask, valid, last, *, path, unroll, outputs, per_trial=False):
    if path == "shared":  # e1 = Q^T (n, n), e2 = (rows, cols, vals) (k, r): U_k = vals * Q[:, rows], V_k = Q[:, cols]
        rows, cols, vals = e2
        DT, yd = _rollout_shared_dev(W, e1[rows] * vals[..., None], e1[cols], cols, base, W_out, last, unroll)
    else:
        DT, yd = _rollout_dense_dev(W, e1, e2, base, W_out, last, unroll)
    change, change_abs, sq = _metrics(yd, base["r0"], mask, valid)
    # per-trial squared final-state distance (k, B); sqrt and the mean over trials are taken on the host in float64
    out = {
        "sq_error_change": change,
        "sq_error_change_abs": change_abs,
        "sq_distance": sq,
        "hidden_sq_distance": _pairwise_sum(DT * DT),
    }
    if outputs:
        out["outputs"] = jnp.transpose(base["y0"][:, None] + yd, (1, 2, 0, 3))  # (k, B, T, o)
    if per_trial:
        out["trial_sq_error_change"] = _trial_change(yd, base["r0"], mask)  # (k, B)
    return out


@eqx.filter_jit
def chunk_dev(
    W: Float[Array, "m n n"],
    W_out: Float[Array, "m o n"],
    base: dict[str, Array],
    e1: Array,
    e2: Array,
    mask: Float[Array, "T B o"],
    valid: Float[Array, "T B"] | None,
    last: Array | None,
    *,
    path: str,
    precision: str,
    unroll: int,
    outputs: bool,
    per_trial: bool = False,
) -> dict[str, Array]:
    """Roll out the deviations of one chunk of ``k`` variants and reduce their metrics (compiled once per shape).

    Args (every model-specific array has a leading model axis ``m``; ``m > 1`` is vmapped):
        W: base recurrent matrix ``Q T Q^T``.  W_out: readout (its bias cancels in the deviations).
        base: the base trajectory, computed in float64 and rounded to the rollout dtype: ``a`` (pre-activation),
            ``t0 = tanh(a)``, ``s0 = sech^2(a)``, and ``z = Q^T h_{t-1}`` (``shared``) or ``h = h_{t-1}``
            (``dense``), each (m, T, B, n) (``shared``) or (m, T, n, B) (``dense``); ``r0 = y0 - target`` and
            ``y0`` (m, T, B, o).
        e1, e2: the edits: ``Q^T`` (n, n) and ``(rows, cols, vals)`` (k, r) each (``dT_k[rows, cols] = vals``,
            zero padded) for ``shared``; ``Q`` (n, n) and ``dT`` (k, n, n) for ``dense``.
        mask: (T, B, o), zero on invalid steps.  valid, last: (T, B) or None (see the module docstring).
        precision: matmul precision of ``W D_k`` (the edit and the readout run at HIGHEST).
        unroll: ``lax.scan`` unroll factor.  outputs: also return the full outputs ``y0 + yd`` (for task scores).
        per_trial: also return trial_sq_error_change (k, B), the change of the masked squared error per trial.

    Returns:
        dict of per-slot arrays, all with the leading model axis: sq_error_change (k, T) (change of the masked
        squared error, summed over trials and outputs per step), sq_error_change_abs (k, T) (the same sum of
        absolute values), sq_distance (k, T) (squared output distance to
        the base, summed the same way over valid steps), hidden_sq_distance (k, B) (squared distance of the last
        valid state to the base's, per trial), and outputs (k, B, T, o) when ``outputs``.
    """
    TRACES[path] += 1
    TRACES[path, True] += 1
    fn = functools.partial(_one_model_dev, path=path, unroll=unroll, outputs=outputs, per_trial=per_trial)
    with jax.default_matmul_precision(precision):
        if W.shape[0] > 1:
            return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, None, None, None))(W, W_out, base, e1, e2, mask, valid, last)
        first = functools.partial(jax.tree.map, lambda a: a[0])
        out = fn(W[0], W_out[0], first(base), e1[0], first(e2), mask, valid, last)
        return {name: value[None] for name, value in out.items()}


# ---------------------------------------------------------------------------------------------------------------
# plain form (opt-out): slot 0 is the unablated model
# ---------------------------------------------------------------------------------------------------------------


def _correction(H, U, V):
    """The rank-r edit ``(H V_k) U_k^T`` of every slot: H (k1, B, n); U, V (k1, r, n) -> (k1, B, n).

    ``H V_k`` is a batched matrix-vector product (on the CPU faster for the whole step than the same product
    written as a fused multiply-reduce); for small r it is applied elementwise, so it fuses into the tanh loop.
    """
    return _apply_u(jnp.einsum("kbn,ken->kbe", H, V), U)


def _rollout_shared(W, U, V, drive, W_out, b_out, last, unroll):
    """Shared-base rollout. W (n, n); U, V (k1, r, n); drive (T, B, n) -> last states (k1, B, n), y (T, k1, B, o)."""
    k1, _, n = U.shape
    B = drive.shape[1]
    WT = W.T

    def step(H, d):
        pre = (H.reshape(k1 * B, n) @ WT).reshape(k1, B, n) + _correction(H, U, V)
        H = jnp.tanh(pre + d[None])
        return H, jnp.einsum("kbn,on->kbo", H, W_out) + b_out

    return _scan(step, jnp.zeros((k1, B, n), drive.dtype), drive, last, 1, unroll)


def _rollout_dense(W, Q, dT, drive, W_out, b_out, last, unroll):
    """Dense rollout. W, Q (n, n); dT (k1, n, n); drive (T, n, B) -> last states (k1, B, n), y (T, k1, B, o)."""
    k1 = dT.shape[0]
    n, B = drive.shape[1], drive.shape[2]
    Wk = W[None] + jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q))

    def step(H, d):
        H = jnp.tanh(jnp.einsum("kij,kjb->kib", Wk, H) + d[None])
        return H, jnp.einsum("on,knb->kbo", W_out, H) + b_out

    hT, y = _scan(step, jnp.zeros((k1, n, B), drive.dtype), drive, last, 2, unroll)
    return jnp.swapaxes(hT, 1, 2), y


def _one_model(W, W_out, b_out, drive, e1, e2, targets, mask, valid, last, *, path, unroll, outputs, per_trial=False):
    if path == "shared":  # e1 = Q^T (n, n), e2 = (rows, cols, vals) (k1, r): U_k = vals * Q[:, rows], V_k = Q[:, cols]
        rows, cols, vals = e2
        hT, y = _rollout_shared(W, e1[rows] * vals[..., None], e1[cols], drive, W_out, b_out, last, unroll)
    else:
        hT, y = _rollout_dense(W, e1, e2, drive, W_out, b_out, last, unroll)
    T, k1, B, o = y.shape
    r0 = y[:, :1] - targets[:, None]  # slot 0: the unablated model, by the same arithmetic
    change, _, sq = _metrics(y - y[:, :1], r0, mask, valid)
    err = _pairwise_sum((mask[:, None] * jnp.square(y - targets[:, None])).reshape(T, k1, B * o)).T
    out = {
        "sq_error": err,
        "sq_error_change": change,
        "sq_distance": sq,
        "hidden_sq_distance": _pairwise_sum(jnp.square(hT - hT[:1])),
    }
    if outputs:
        out["outputs"] = jnp.transpose(y, (1, 2, 0, 3))  # (k1, B, T, o)
    if per_trial:  # per trial, against slot 0; slot 0's own squared error per trial
        out["trial_sq_error_change"] = _trial_change(y - y[:, :1], r0, mask)  # (k1, B)
        out["trial_sq_error"] = _pairwise_sum(jnp.moveaxis(jnp.sum(mask * jnp.square(r0[:, 0]), axis=-1), 0, -1))
    return out


# eqx.filter_jit (house style): the non-array arguments (path, precision, unroll, outputs) are static.
@eqx.filter_jit
def chunk(
    W: Float[Array, "m n n"],
    W_out: Float[Array, "m o n"],
    b_out: Float[Array, "m o"],
    drive: Float[Array, "m T ..."],
    e1: Array,
    e2: Array,
    targets: Float[Array, "T B o"],
    mask: Float[Array, "T B o"],
    valid: Float[Array, "T B"] | None,
    last: Array | None,
    *,
    path: str,
    precision: str,
    unroll: int,
    outputs: bool,
    per_trial: bool = False,
) -> dict[str, Array]:
    """Roll out the states of one chunk (slot 0: the unablated model) and reduce its metrics (plain form).

    Args as :func:`chunk_dev`, except: b_out (m, o) the readout bias; drive: ``W_in x_t + b``, (m, T, B, n) for
    ``shared`` and (m, T, n, B) for ``dense``; targets (T, B, o); the edits have ``k1 = k + 1`` slots, slot 0 zero.

    Returns:
        as :func:`chunk_dev` (against slot 0, without sq_error_change_abs), plus sq_error (k1, T) (masked squared
        error summed over trials and outputs per step) and, with ``per_trial``, trial_sq_error (B,) (slot 0's
        masked squared error per trial).
    """
    TRACES[path] += 1
    TRACES[path, False] += 1
    fn = functools.partial(_one_model, path=path, unroll=unroll, outputs=outputs, per_trial=per_trial)
    with jax.default_matmul_precision(precision):
        if W.shape[0] > 1:
            axes = (0, 0, 0, 0, 0, 0, None, None, None, None)
            return jax.vmap(fn, in_axes=axes)(W, W_out, b_out, drive, e1, e2, targets, mask, valid, last)
        first = functools.partial(jax.tree.map, lambda a: a[0])
        out = fn(W[0], W_out[0], b_out[0], drive[0], e1[0], first(e2), targets, mask, valid, last)
        return {name: value[None] for name, value in out.items()}


@jax.jit
def base_rollout(W, W_in, b, W_out, b_out, Q, inputs):
    """The unablated trajectory of every model, at the dtype of the inputs (float64 in the engine).

    Args: W (m, n, n), W_in (m, n, i), b (m, n), W_out (m, o, n), b_out (m, o), Q (m, n, n); inputs (B, T, i).
    Returns: a (pre-activations), h (states), z = Q^T h_{t-1} (Schur coordinates of the previous state, h_0 = 0),
    each (m, T, B, n), and y0 (outputs) (m, T, B, o). Run by XLA rather than host BLAS, whose idle threads would
    compete with the chunk programs for the cores.
    """
    hi = jax.lax.Precision.HIGHEST

    def one(W, W_in, b, W_out, b_out, Q):
        drive = jnp.einsum("bti,ni->tbn", inputs, W_in, precision=hi) + b

        def step(h, d):
            a = jnp.dot(h, W.T, precision=hi) + d
            return jnp.tanh(a), (a, h)

        _, (a, h_prev) = jax.lax.scan(step, jnp.zeros((inputs.shape[0], W.shape[0]), W.dtype), drive)
        h = jnp.tanh(a)
        return a, h, jnp.dot(h_prev, Q, precision=hi), jnp.dot(h, W_out.T, precision=hi) + b_out

    return jax.vmap(one)(W, W_in, b, W_out, b_out, Q)


@eqx.filter_jit  # layout and precision are static
def drive(
    inputs: Float[Array, "B T i"], W_in: Float[Array, "*m n i"], b: Float[Array, "*m n"], *, layout: str, precision: str
) -> Array:
    """Input drive ``W_in x_t + b`` of every model, (m, T, B, n) (``layout="TBn"``) or (m, T, n, B) (``"TnB"``)."""
    with jax.default_matmul_precision(precision):
        d = jnp.einsum("bti,mni->mtbn", inputs, W_in) + b[:, None, None, :]
    return d if layout == "TBn" else jnp.swapaxes(d, 2, 3)


@eqx.filter_jit
def trial_stats(fn, outputs: Float[Array, "m k B T o"], batch) -> Float[Array, "m k B p"]:
    """``fn(y, batch) -> (B, p)`` per-trial statistics of every slot of every model on the shared batch."""
    return jax.vmap(jax.vmap(lambda y: fn(y, batch)))(outputs)


@eqx.filter_jit
def scores(task, outputs: Float[Array, "m k B T o"], batch) -> Float[Array, "m k"]:
    """``task.score`` of every slot of every model on the shared batch."""
    return jax.vmap(jax.vmap(lambda y: task.score(y, batch)))(outputs)
