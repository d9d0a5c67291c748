"""Compiled rollout kernels of the evaluation engine (internal; the public entry point is ``schurjax.evaluate``).

One compiled program rolls out one *chunk*: ``k`` weight variants of ``M`` models on the same ``B`` trials (common
random numbers), with a ``lax.scan`` over the ``T`` time steps, and reduces the per-variant metrics in the same
program. Every network form of :mod:`schurjax.rnn` runs (``dyn = (alpha, nonlinearity, form)``, static; a leaky
``alpha`` is a traced per-model argument, so every alpha shares one program; an initial state ``h0`` is the base's
and every variant's). Two rollout forms:

* *deviation* (default, :func:`chunk_dev`): the base (unablated) trajectory ``h`` is computed once per batch, in
  float64 (:func:`base_rollout`), and every slot carries its deviation ``D_k = h_k - h``, updated with exact
  identities (``a`` the base's argument of ``phi``, ``delta_k`` the change of the recurrent product
  ``W_k X_k + dW_k x``, ``x`` what W multiplies, ``dphi(a, d) = phi(a + d) - phi(a)`` without cancellation,
  :func:`phi_diff`)::

      rate     D' = (1 - alpha) D + alpha dphi(a, delta)                    a = W h + u, X = D
      post     D' = dphi(a, (1 - alpha) D + alpha delta)                    a = (1 - alpha) h + alpha (W h + u)
      current  D' = (1 - alpha) D + alpha delta,  Dr' = dphi(h', D')        X = Dr (the rates' deviation), x = phi(h)

  Rounding errors are then relative to the effect of an edit, not to the states, so the smallest effects keep their
  digits. The output deviations ``W_out D_k`` (``W_out Dr_k``) are reduced after the scan against the float64
  base: the residual ``y0 - target`` (squared error) or the softmax of ``y0`` (cross-entropy, :func:`_ce_change`).
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

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__: list[str] = []

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

_TANH = (1.0, "tanh", "rate")
"""The paper's step (``alpha = 1``, tanh, rate form): the default ``dyn`` (alpha, nonlinearity, form) of the
kernels. ``alpha`` in ``dyn`` is static: ``1.0`` (no leak, the step without the leak's arithmetic) or ``None``
(leaky: each model's ``(alpha, 1 - alpha)`` is a traced (m, 2) argument, so that every ``alpha`` shares one
compiled program)."""


def _leak(alpha, old, new):
    """``(1 - alpha) old + alpha new``: ``alpha`` the static 1.0 (then ``new``) or a traced ``(alpha, 1 - alpha)``
    pair (both from float64)."""
    if isinstance(alpha, float):
        return new if alpha == 1.0 else (1.0 - alpha) * old + alpha * new
    return alpha[1] * old + alpha[0] * new


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


_EXPM1_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(10, 1, -1))
"""Taylor coefficients 1/10! ... 1/2! of ``(expm1(x) - x) / x^2`` (truncation < 1e-9 relative for |x| <= 0.5)."""


def _expm1(x):
    """``expm1`` with full relative accuracy and no bias for ``|x| <= 0.5`` (``x + x^2 P(x)``, P the Taylor
    polynomial: ~1 ulp), the library's beyond. XLA's float32 ``expm1`` errs by up to 6 ulp there, with a bias of
    -9e-8 relative (a deviation carried over many steps would accumulate it)."""
    small = jnp.abs(x) <= 0.5
    xs = jnp.where(small, x, 0.0)
    return jnp.where(small, xs + xs * xs * _horner(_EXPM1_TAYLOR, xs), jnp.expm1(x))


def _relu_diff(a, delta):
    """``relu(a + delta) - relu(a)`` exactly piecewise: ``delta`` where both sides are positive, 0 where both are
    ``<= 0``, else the plain difference (``a + delta`` or ``-a``, no cancellation there)."""
    z = a + delta
    return jnp.where(a > 0, jnp.where(z > 0, delta, -a), jnp.maximum(z, 0.0))


_SOFTPLUS_EXPM1_MAX = 80.0
"""Above this ``delta`` the softplus difference is the plain one (``expm1`` would overflow in float32)."""


def _softplus_diff(a, sp0, sig0, delta):
    """``softplus(a + delta) - softplus(a)`` elementwise, without cancellation.

    Args: the base argument ``a``, ``sp0 = softplus(a)`` and ``sig0 = sigmoid(a)`` (both from float64),
    broadcastable against ``delta``.

    ``log1p(sigmoid(a) expm1(delta))`` (exact: ``(1 + e^(a+d)) / (1 + e^a) = 1 + sigmoid(a) (e^d - 1)``) wherever
    its argument is ``> -0.5`` (every ``delta >= 0``; ``delta < 0`` unless the unit is on and drops by more than
    ~0.7): relative error a few ulp. A larger drop that leaves the unit on (``a + delta >= 0``): the mirrored
    identity ``delta + log1p(sigmoid(-a) expm1(-delta))`` (``sigmoid(-a) = sigmoid(a) e^-a``); one that turns it
    off, or ``delta > 80``: the plain difference ``softplus(a + delta) - sp0`` (the result is then at least ~0.7
    and about ``-sp0`` or ``delta`` in size: no cancellation). Measured against float64 in
    ``tests/test_precision.py``.
    """
    x = sig0 * _expm1(jnp.minimum(delta, _SOFTPLUS_EXPM1_MAX))
    direct = (x > -0.5) & (delta <= _SOFTPLUS_EXPM1_MAX)
    mirror = ~direct & (a + delta >= 0.0) & (delta < 0.0)
    am = jnp.where(mirror, a, 0.0)
    xm = sig0 * jnp.exp(-am) * _expm1(jnp.where(mirror, -delta, 0.0))  # sigmoid(-a) expm1(-delta) >= 0
    plain = jax.nn.softplus(a + delta) - sp0
    out = jnp.where(mirror, delta + jnp.log1p(xm), plain)
    return jnp.where(direct, jnp.log1p(jnp.where(direct, x, 0.0)), out)


AUX = {"tanh": ("t0", "s0"), "softplus": ("t0", "s0"), "relu": ()}
"""Per nonlinearity: the base quantities (float64, rounded once) that :func:`phi_diff` needs besides ``a``:
tanh ``t0 = tanh(a)``, ``s0 = sech^2(a)``; softplus ``t0 = softplus(a)``, ``s0 = sigmoid(a)``; relu none."""


def phi_diff(nonlinearity: str, a, aux, delta):
    """``phi(a + delta) - phi(a)`` without cancellation (``aux``: the base quantities :data:`AUX` names)."""
    if nonlinearity == "tanh":
        return _tanh_diff(a, aux[0], aux[1], delta)
    if nonlinearity == "relu":
        return _relu_diff(a, delta)
    return _softplus_diff(a, aux[0], aux[1], delta)


def _phi(nonlinearity: str, x):
    return {"tanh": jnp.tanh, "relu": jax.nn.relu, "softplus": jax.nn.softplus}[nonlinearity](x)


def _dev_init(dyn, shape, dtype):
    """The deviation carry at ``t = 0`` (every variant starts from the base's ``h_0``): D, and for the current
    form (D, Dr) with Dr the deviation of the rates ``phi(h)``."""
    zero = jnp.zeros(shape, dtype)
    return (zero, zero) if dyn[2] == "current" else zero


def _dev_advance(dyn, carry, delta, a, aux):
    """One deviation step of the form ``dyn = (alpha, nonlinearity, form)``.

    ``delta``: the change of the product with the recurrent matrix, ``W_k X_k + dW_k x_{t-1}`` (``X_k`` the
    deviation :func:`_dev_input` returns, ``x`` the base's state, or rates for the current form). ``a``, ``aux``:
    the base argument of ``phi`` at this step (the pre-activation; the state ``h_t`` for the current form).
    Returns (the new carry, the deviation the readout reads).
    """
    alpha, nl, form = dyn
    if form == "rate":  # h' = (1-a) h + a phi(W h + u): D' = (1-a) D + a dphi(pre, delta)
        D = _leak(alpha, carry, phi_diff(nl, a, aux, delta))
        return D, D
    if form == "post":  # h' = phi((1-a) h + a (W h + u)): D' = dphi(pre, (1-a) D + a delta)
        D = phi_diff(nl, a, aux, _leak(alpha, carry, delta))
        return D, D
    D, _ = carry  # current: x' = (1-a) x + a (W phi(x) + u): D' = (1-a) D + a delta; Dr' = dphi(x', D')
    D = _leak(alpha, D, delta)
    Dr = phi_diff(nl, a, aux, D)
    return (D, Dr), Dr


def _dev_input(dyn, carry):
    """The deviation the recurrent matrix multiplies: D, or the rate deviation Dr for the current form."""
    return carry[1] if dyn[2] == "current" else carry


def _dev_state(dyn, carry):
    """The state deviation D (of h; of the current x for the current form)."""
    return carry[0] if dyn[2] == "current" else carry


def _plain_input(dyn, H):
    """What the recurrent matrix multiplies in the plain rollout: the state, or its rates for the current form."""
    return _phi(dyn[1], H) if dyn[2] == "current" else H


def _plain_update(dyn, H, p):
    """The plain step from state ``H`` given ``p = W x + u`` (``x`` from :func:`_plain_input`)."""
    alpha, nl, form = dyn
    if form == "rate":
        return _leak(alpha, H, _phi(nl, p))
    if form == "post":
        return _phi(nl, _leak(alpha, H, p))
    return _leak(alpha, H, p)


def _plain_rates(dyn, H):
    """What the readout reads: the state, or its rates for the current form."""
    return _phi(dyn[1], H) if dyn[2] == "current" else H


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
    """``lax.scan`` of ``step`` from the state ``H0`` (an array or a tuple of arrays); returns (the state at each
    trial's last valid step, or the final state when ``last`` (T, B) is None; the stacked per-step outputs).
    ``b_axis``: the trial axis of the state."""
    if last is None:
        return jax.lax.scan(step, H0, xs, unroll=unroll)

    def step_last(carry, xs_t):
        H, H_last = carry
        H, out = step(H, xs_t[0])

        def keep(h, h_last):
            return jnp.where(jnp.expand_dims(xs_t[1], [a for a in range(h.ndim) if a != b_axis]), h, h_last)

        return (H, jax.tree.map(keep, H, H_last)), out

    (_, H_last), out = jax.lax.scan(step_last, (H0, H0), (xs, last), unroll=unroll)
    return H_last, out


def _expand(x, ndim: int):
    """A per-model base array (T, B, ...) against the slots' (T, k, B, ...): insert the slot axis."""
    return x if x.ndim == ndim else x[:, None]


def _ce_change(yd, p0, lp0, wt):
    """Change of the cross-entropy sums, without cancellation: yd (T, k, B, o) logit changes; p0, lp0 the base's
    softmax and log-softmax (T, B, o) (or (T, k, B, o)); wt (T, B, o) the targets times the step weight.

    Per (step, trial): ``(sum_o wt) log(sum_o p0_o e^yd_o) - sum_o wt_o yd_o``, the log as
    ``log1p(S)``, ``S = sum_o p0_o expm1(yd_o)``, wherever ``S > -0.5`` (its error is then a few ulp of
    ``sum_o p0_o |expm1(yd_o)|``), else the log-sum-exp of ``lp0 + yd`` (a drop of the log-partition by more than
    ``log 2``: no cancellation; in log space, so that a ``p0`` below float32's range stays finite).
    Returns the change and the sum of the absolute values of its terms, ``(sum_o wt) sum_o p0_o |expm1(yd_o)| +
    sum_o |wt_o yd_o|`` (what the float64 re-run is keyed on), each (T, k, B).
    """
    p0, lp0, wt = _expand(p0, 4), _expand(lp0, 4), wt[:, None]
    e = _expm1(jnp.minimum(yd, _SOFTPLUS_EXPM1_MAX))
    S = _pairwise_sum(p0 * e)
    small = (S > -0.5) & (jnp.max(yd, axis=-1) <= _SOFTPLUS_EXPM1_MAX)
    log_small = jnp.log1p(jnp.where(small, S, 0.0))
    tsum = _pairwise_sum(wt)
    first = tsum * jnp.where(small, log_small, _logsumexp(lp0 + yd))
    lin = _pairwise_sum(wt * yd)
    return first - lin, tsum * _pairwise_sum(p0 * jnp.abs(e)) + _pairwise_sum(jnp.abs(wt * yd))


def _logsumexp(x):
    """``log(sum(exp(x)))`` over the last axis, summed in a fixed order (:func:`_pairwise_sum`)."""
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    return m[..., 0] + jnp.log(_pairwise_sum(jnp.exp(x - m)))


def _ce(y, wt):
    """Cross-entropy sums per (step, slot, trial): y (T, k, B, o) logits, wt (T, B, o) -> (T, k, B)."""
    return _pairwise_sum(wt[:, None]) * _logsumexp(y) - _pairwise_sum(wt[:, None] * y)


def _change_terms(yd, ref, mask, loss: str):
    """The loss change's terms and their absolute values: (T, k, B, o) for ``"mse"`` (``ref = (r0,)``, the base
    residual), (T, k, B) for ``"ce"`` (``ref = (p0, lp0)``, ``mask`` the weighted targets)."""
    if loss == "ce":
        return _ce_change(yd, ref[0], ref[1], mask)
    r0 = _expand(ref[0], 4)
    change = mask[:, None] * yd * (2.0 * r0 + yd)
    return change, jnp.abs(change)


def _trial_change(yd, ref, mask, loss: str = "mse"):
    """Per-trial change of the loss sums, summed over steps (and outputs): yd (T, k, B, o) -> (k, B) (a fixed
    summation order, as :func:`_metrics`)."""
    if loss == "ce":
        change = _ce_change(yd, ref[0], ref[1], mask)[0]  # (T, k, B)
    else:
        r0 = _expand(ref[0], 4)
        change = jnp.sum(mask[:, None] * yd * (2.0 * r0 + yd), axis=-1)  # (T, k, B)
    return _pairwise_sum(jnp.moveaxis(change, 0, -1))


def _metrics(yd, ref, mask, valid, loss: str = "mse"):
    """Per-step, per-slot sums over trials and outputs, from output deviations yd (T, k, B, o).

    ref: the base's loss data: ``(r0,)`` with ``r0 = y0 - target`` (T, B, o) (or (T, k, B, o)) for ``"mse"``,
    ``(p0, lp0)`` for ``"ce"``; mask (T, B, o): the mask (``"mse"``) or the targets times the step weight
    (``"ce"``), zero on invalid steps; valid (T, B) or None. Returns, each (k, T): the change of the loss sum
    (``mask yd (2 r0 + yd)`` for the squared error, :func:`_ce_change` for the cross-entropy), so that small
    changes do not cancel; the sum of the absolute values of its terms (their ratio tells how much the change
    cancels); the squared output distance ``yd^2`` over the valid steps.
    """
    T, k, B, o = yd.shape
    change, change_abs = _change_terms(yd, ref, mask, loss)
    sq = yd * yd if valid is None else yd * yd * valid[:, None, :, None]
    return tuple(_pairwise_sum(v.reshape(T, k, -1)).T for v in (change, change_abs, sq))


def _loss_ref(base, loss: str):
    return (base["p0"], base["lp0"]) if loss == "ce" else (base["r0"],)


# ---------------------------------------------------------------------------------------------------------------
# deviation form (default)
# ---------------------------------------------------------------------------------------------------------------


def _rollout_shared_dev(W, U, V, cols, base, W_out, last, unroll, dyn):
    """Shared-base rollout of the deviations ``D_k = h_k - h``.

    ``delta_k = W X_k + (V_k^T x_k) U_k`` with ``V_k^T x_k = V_k^T X_k + z[cols_k]``, where ``X_k`` is the deviation
    of what W multiplies (D_k, or the rate deviation for the current form) and ``z = Q^T x_{t-1}`` the base's, in
    Schur coordinates, from float64: the edit acts on the base without rounding the product first. W (n, n); U, V
    (k, r, n) (``V_k = Q[:, cols_k]``); cols (k, r); base: a, the :data:`AUX` quantities and z (T, B, n).
    Returns the state deviations at the last (valid) step (k, B, n) and yd (T, k, B, o).
    """
    k, _, n = U.shape
    B = base["a"].shape[1]
    WT = W.T
    hi = jax.lax.Precision.HIGHEST
    aux_names = AUX[dyn[1]]

    Vt = jnp.swapaxes(V, 1, 2)  # (k, n, r): the layout of the batched matrix-vector product, formed once
    zc = jnp.moveaxis(base["z"][:, :, cols], 2, 1)  # (T, k, B, r): z[cols_k] of every step, gathered once

    def step(carry, xs):
        a, aux, z = xs
        X = _dev_input(dyn, carry)
        c = jnp.einsum("kbn,kne->kbe", X, Vt, precision=hi) + z
        delta = (X.reshape(k * B, n) @ WT).reshape(k, B, n) + _apply_u(c, U)
        carry, R = _dev_advance(dyn, carry, delta, a[None], tuple(v[None] for v in aux))
        return carry, jnp.einsum("kbn,on->kbo", R, W_out, precision=hi)

    xs = (base["a"], tuple(base[name] for name in aux_names), zc)
    carry, yd = _scan(step, _dev_init(dyn, (k, B, n), W.dtype), xs, last, 1, unroll)
    return _dev_state(dyn, carry), yd


def _rollout_dense_dev(W, Q, dT, base, W_out, last, unroll, dyn):
    """Dense rollout of the deviations: ``delta_k = W_k X_k + dW_k x_{t-1}``, ``dW_k = Q dT_k Q^T`` (formed and
    applied to the base's ``x`` at HIGHEST precision; ``W_k X_k`` at the context's precision).

    W, Q (n, n); dT (k, n, n); base: a, the :data:`AUX` quantities and h (the base's previous ``x``: its state,
    or its rates for the current form), (T, n, B). Returns the state deviations at the last (valid) step (k, B, n)
    and yd (T, k, B, o).
    """
    k = dT.shape[0]
    n, B = base["a"].shape[1], base["a"].shape[2]
    hi = jax.lax.Precision.HIGHEST
    aux_names = AUX[dyn[1]]
    dW = jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q, precision=hi), precision=hi)
    Wk = W[None] + dW

    def step(carry, xs):
        a, aux, h = xs
        X = _dev_input(dyn, carry)
        delta = jnp.einsum("kij,kjb->kib", Wk, X) + jnp.dot(dW.reshape(k * n, n), h, precision=hi).reshape(k, n, B)
        carry, R = _dev_advance(dyn, carry, delta, a[None], tuple(v[None] for v in aux))
        return carry, jnp.einsum("on,knb->kbo", W_out, R, precision=hi)

    xs = (base["a"], tuple(base[name] for name in aux_names), base["h"])
    carry, yd = _scan(step, _dev_init(dyn, (k, n, B), W.dtype), xs, last, 2, unroll)
    return jnp.swapaxes(_dev_state(dyn, carry), 1, 2), yd


def _one_model_dev(
    W,
    W_out,
    base,
    e1,
    e2,
    mask,
    valid,
    last,
    alpha=None,
    *,
    path,
    unroll,
    outputs,
    per_trial=False,
    dyn=_TANH,
    loss="mse",
):
    dyn = dyn if alpha is None else (alpha, *dyn[1:])
    if path == "shared":  # e1 = Q^T (n, n), e2 = (rows, cols, vals) (k, r): U_k = vals * Q[:, rows], V_k = Q[:, cols]
        rows, cols, vals = e2
        DT, yd = _rollout_shared_dev(W, e1[rows] * vals[..., None], e1[cols], cols, base, W_out, last, unroll, dyn)
    else:
        DT, yd = _rollout_dense_dev(W, e1, e2, base, W_out, last, unroll, dyn)
    ref = _loss_ref(base, loss)
    change, change_abs, sq = _metrics(yd, ref, mask, valid, loss)
    # per-trial squared final-state distance (k, B); sqrt and the mean over trials are taken on the host in float64
    out = {
        "loss_change": change,
        "loss_change_abs": change_abs,
        "sq_distance": sq,
        "hidden_sq_distance": _pairwise_sum(DT * DT),
    }
    if outputs:
        out["outputs"] = jnp.transpose(base["y0"][:, None] + yd, (1, 2, 0, 3))  # (k, B, T, o)
    if per_trial:
        out["trial_loss_change"] = _trial_change(yd, ref, mask, loss)  # (k, B)
    return out


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=None)  # counts traces (eqx.debug.get_num_traces): one per compiled shape
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
    dyn: tuple = _TANH,
    loss: str = "mse",
    alphas: Float[Array, "m 2"] | None = None,
) -> dict[str, Array]:
    """Roll out the deviations of one chunk of ``k`` variants and reduce their metrics (compiled once per shape).

    Args (every model-specific array has a leading model axis ``m``; ``m > 1`` is vmapped):
        W: base recurrent matrix ``Q T Q^T``.  W_out: readout (its bias cancels in the deviations).
        base: the base trajectory, computed in float64 and rounded to the rollout dtype: ``a`` (the argument of
            ``phi`` at each step: the pre-activation, or the state for the current form), the :data:`AUX`
            quantities of the nonlinearity, and ``z = Q^T x_{t-1}`` (``shared``) or ``h = x_{t-1}`` (``dense``)
            with ``x`` what W multiplies (the state, or the rates for the current form), each (m, T, B, n)
            (``shared``) or (m, T, n, B) (``dense``); ``y0`` (m, T, B, o); the loss data (m, T, B, o):
            ``r0 = y0 - target`` (``"mse"``) or ``p0``, ``lp0`` (softmax and log-softmax of ``y0``, ``"ce"``).
        e1, e2: the edits: ``Q^T`` (n, n) and ``(rows, cols, vals)`` (k, r) each (``dT_k[rows, cols] = vals``,
            zero padded) for ``shared``; ``Q`` (n, n) and ``dT`` (k, n, n) for ``dense``.
        mask: (T, B, o), zero on invalid steps: the mask (``"mse"``), or the targets times the step weight
            ``max_o mask`` (``"ce"``).  valid, last: (T, B) or None (see the module docstring).
        precision: matmul precision of ``W D_k`` (the edit and the readout run at HIGHEST).
        unroll: ``lax.scan`` unroll factor.  outputs: also return the full outputs ``y0 + yd`` (for task scores).
        per_trial: also return trial_loss_change (k, B), the change of the loss sum per trial.
        dyn: ``(alpha, nonlinearity, form)`` of the models, alpha 1.0 or None (see :data:`_TANH`).
        loss: ``"mse"`` (masked squared error) or ``"ce"`` (cross-entropy of the logits).
        alphas: (m, 2) each model's ``(alpha, 1 - alpha)`` when ``dyn``'s alpha is None.

    Returns:
        dict of per-slot arrays, all with the leading model axis: loss_change (k, T) (change of the loss sum
        over trials and outputs per step), loss_change_abs (k, T) (the same sum of the absolute values of its
        terms), sq_distance (k, T) (squared output distance to the base, summed the same way over valid steps),
        hidden_sq_distance (k, B) (squared distance of the last valid state to the base's, per trial), and outputs
        (k, B, T, o) when ``outputs``.
    """
    fn = functools.partial(
        _one_model_dev, path=path, unroll=unroll, outputs=outputs, per_trial=per_trial, dyn=tuple(dyn), loss=loss
    )
    with jax.default_matmul_precision(precision):
        if W.shape[0] > 1:
            axes = (0, 0, 0, 0, 0, None, None, None, None if alphas is None else 0)
            return jax.vmap(fn, in_axes=axes)(W, W_out, base, e1, e2, mask, valid, last, alphas)
        first = functools.partial(jax.tree.map, lambda a: a[0])
        out = fn(W[0], W_out[0], first(base), e1[0], first(e2), mask, valid, last, first(alphas))
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


def _initial(h0, shape, dtype, b_axis: int):
    """The plain rollout's initial states: zeros, or ``h0`` (n,) broadcast over slots and trials."""
    if h0 is None:
        return jnp.zeros(shape, dtype)
    return jnp.broadcast_to(h0[None, None, :] if b_axis == 1 else h0[None, :, None], shape).astype(dtype)


def _rollout_shared(W, U, V, drive, W_out, b_out, last, unroll, dyn=_TANH, h0=None):
    """Shared-base rollout. W (n, n); U, V (k1, r, n); drive (T, B, n) -> last states (k1, B, n), y (T, k1, B, o)."""
    k1, _, n = U.shape
    B = drive.shape[1]
    WT = W.T

    def step(H, d):
        X = _plain_input(dyn, H)
        pre = (X.reshape(k1 * B, n) @ WT).reshape(k1, B, n) + _correction(X, U, V)
        H = _plain_update(dyn, H, pre + d[None])
        return H, jnp.einsum("kbn,on->kbo", _plain_rates(dyn, H), W_out) + b_out

    return _scan(step, _initial(h0, (k1, B, n), drive.dtype, 1), drive, last, 1, unroll)


def _rollout_dense(W, Q, dT, drive, W_out, b_out, last, unroll, dyn=_TANH, h0=None):
    """Dense rollout. W, Q (n, n); dT (k1, n, n); drive (T, n, B) -> last states (k1, B, n), y (T, k1, B, o)."""
    k1 = dT.shape[0]
    n, B = drive.shape[1], drive.shape[2]
    Wk = W[None] + jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q))

    def step(H, d):
        H = _plain_update(dyn, H, jnp.einsum("kij,kjb->kib", Wk, _plain_input(dyn, H)) + d[None])
        return H, jnp.einsum("on,knb->kbo", W_out, _plain_rates(dyn, H)) + b_out

    hT, y = _scan(step, _initial(h0, (k1, n, B), drive.dtype, 2), drive, last, 2, unroll)
    return jnp.swapaxes(hT, 1, 2), y


def _one_model(
    W,
    W_out,
    b_out,
    h0,
    drive,
    e1,
    e2,
    targets,
    mask,
    valid,
    last,
    alpha=None,
    *,
    path,
    unroll,
    outputs,
    per_trial=False,
    dyn=_TANH,
    loss="mse",
):
    dyn = dyn if alpha is None else (alpha, *dyn[1:])
    if path == "shared":  # e1 = Q^T (n, n), e2 = (rows, cols, vals) (k1, r): U_k = vals * Q[:, rows], V_k = Q[:, cols]
        rows, cols, vals = e2
        hT, y = _rollout_shared(W, e1[rows] * vals[..., None], e1[cols], drive, W_out, b_out, last, unroll, dyn, h0)
    else:
        hT, y = _rollout_dense(W, e1, e2, drive, W_out, b_out, last, unroll, dyn, h0)
    T, k1, B, o = y.shape
    if loss == "ce":  # slot 0's softmax: the base of the change, by the same arithmetic
        ref = (jax.nn.softmax(y[:, 0], axis=-1), jax.nn.log_softmax(y[:, 0], axis=-1))
        terms = _ce(y, mask)  # (T, k1, B)
    else:
        ref = (y[:, :1] - targets[:, None],)  # slot 0: the unablated model, by the same arithmetic
        terms = mask[:, None] * jnp.square(y - targets[:, None])
    change, _, sq = _metrics(y - y[:, :1], ref, mask, valid, loss)
    out = {
        "loss_sum": _pairwise_sum(terms.reshape(T, k1, -1)).T,
        "loss_change": change,
        "sq_distance": sq,
        "hidden_sq_distance": _pairwise_sum(jnp.square(hT - hT[:1])),
    }
    if outputs:
        out["outputs"] = jnp.transpose(y, (1, 2, 0, 3))  # (k1, B, T, o)
    if per_trial:  # per trial, against slot 0; slot 0's own loss sum per trial
        out["trial_loss_change"] = _trial_change(y - y[:, :1], ref, mask, loss)  # (k1, B)
        trial0 = terms[:, 0] if loss == "ce" else jnp.sum(mask * jnp.square(ref[0][:, 0]), axis=-1)
        out["trial_loss_sum"] = _pairwise_sum(jnp.moveaxis(trial0, 0, -1))
    return out


# eqx.filter_jit (house style): the non-array arguments (path, precision, unroll, outputs, dyn, loss) are static.
@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=None)
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
    dyn: tuple = _TANH,
    loss: str = "mse",
    h0: Float[Array, "m n"] | None = None,
    alphas: Float[Array, "m 2"] | None = None,
) -> dict[str, Array]:
    """Roll out the states of one chunk (slot 0: the unablated model) and reduce its metrics (plain form).

    Args as :func:`chunk_dev`, except: b_out (m, o) the readout bias; drive: ``W_in x_t + b``, (m, T, B, n) for
    ``shared`` and (m, T, n, B) for ``dense``; targets (T, B, o); the edits have ``k1 = k + 1`` slots, slot 0 zero;
    h0 (m, n) the initial states (None: zero); alphas as :func:`chunk_dev`.

    Returns:
        as :func:`chunk_dev` (against slot 0, without loss_change_abs), plus loss_sum (k1, T) (the loss sum over
        trials and outputs per step) and, with ``per_trial``, trial_loss_sum (B,) (slot 0's loss sum per trial).
    """
    fn = functools.partial(
        _one_model, path=path, unroll=unroll, outputs=outputs, per_trial=per_trial, dyn=tuple(dyn), loss=loss
    )
    with jax.default_matmul_precision(precision):
        if W.shape[0] > 1:
            axes = (0, 0, 0, None if h0 is None else 0, 0, 0, 0, None, None, None, None, None if alphas is None else 0)
            return jax.vmap(fn, in_axes=axes)(W, W_out, b_out, h0, drive, e1, e2, targets, mask, valid, last, alphas)
        first = functools.partial(jax.tree.map, lambda a: a[0])
        out = fn(
            W[0], W_out[0], b_out[0], first(h0), drive[0], e1[0], first(e2), targets, mask, valid, last, first(alphas)
        )
        return {name: value[None] for name, value in out.items()}


@eqx.filter_jit  # dyn is static
def base_rollout(W, W_in, b, W_out, b_out, Q, inputs, h0=None, alphas=None, *, dyn=_TANH):
    """The unablated trajectory of every model, at the dtype of the inputs (float64 in the engine).

    Args: W (m, n, n), W_in (m, n, i), b (m, n), W_out (m, o, n), b_out (m, o), Q (m, n, n); inputs (B, T, i);
    h0 (m, n) initial states (None: zero); dyn ``(alpha, nonlinearity, form)``; alphas (m, 2) each model's
    ``(alpha, 1 - alpha)`` when ``dyn``'s alpha is None (see :data:`_TANH`).
    Returns, each (m, T, B, n): a (the argument of ``phi`` at each step: the pre-activation; the state for the
    current form), pa = phi(a), x_prev (what W multiplies at each step: the previous state, or its rates for the
    current form; from ``h_0``), z = Q^T x_prev (its Schur coordinates); and y0 (outputs) (m, T, B, o). Run by
    XLA rather than host BLAS, whose idle threads would compete with the chunk programs for the cores.
    """
    hi = jax.lax.Precision.HIGHEST
    _, nl, form = dyn

    def one(W, W_in, b, W_out, b_out, Q, h0, alpha):
        alpha = dyn[0] if alpha is None else alpha
        drive = jnp.einsum("bti,ni->tbn", inputs, W_in, precision=hi) + b
        shape = (inputs.shape[0], W.shape[0])
        h_init = jnp.zeros(shape, W.dtype) if h0 is None else jnp.broadcast_to(h0, shape).astype(W.dtype)

        def step(h, d):
            x = _phi(nl, h) if form == "current" else h  # what W multiplies
            p = jnp.dot(x, W.T, precision=hi) + d
            if form == "rate":
                a = p
                h_new = _leak(alpha, h, _phi(nl, a))
            elif form == "post":
                a = _leak(alpha, h, p)
                h_new = _phi(nl, a)
            else:
                h_new = _leak(alpha, h, p)
                a = h_new
            return h_new, (a, x, h_new)

        _, (a, x_prev, h) = jax.lax.scan(step, h_init, drive)
        pa = _phi(nl, a)
        leaky_rate = form == "rate" and not (isinstance(alpha, float) and alpha == 1.0)
        r = h if leaky_rate else pa  # what the readout reads (phi(a), except the leaky rate form's states)
        return a, pa, x_prev, jnp.dot(x_prev, Q, precision=hi), jnp.dot(r, W_out.T, precision=hi) + b_out

    axes = (0, 0, 0, 0, 0, 0, None if h0 is None else 0, None if alphas is None else 0)
    return jax.vmap(one, in_axes=axes)(W, W_in, b, W_out, b_out, Q, h0, alphas)


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
def trial_losses(task, outputs: Float[Array, "m k B T o"], batch) -> Float[Array, "m k B"]:
    """``task.trial_loss(y, batch)`` (B,) of every slot of every model on the shared batch."""
    return jax.vmap(jax.vmap(lambda y: task.trial_loss(y, batch)))(outputs)


@eqx.filter_jit
def scores(task, outputs: Float[Array, "m k B T o"], batch) -> Float[Array, "m k"]:
    """``task.score`` of every slot of every model on the shared batch."""
    return jax.vmap(jax.vmap(lambda y: task.score(y, batch)))(outputs)
