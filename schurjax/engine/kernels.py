"""Compiled rollout kernels of the evaluation engine (internal; the public entry point is ``schurjax.evaluate``).

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

One compiled program rolls out one *chunk*: ``k1`` weight variants of ``M`` models on the same ``B`` trials
(common random numbers), with a ``lax.scan`` over the ``T`` time steps, and reduces the per-variant metrics in
the same program. Slot 0 of every chunk is the unablated model (its edit is exactly zero), so that the reference
trajectory is computed by the very same arithmetic as the variants: a variant whose edit is zero reproduces it
bit for bit, and ``delta_loss`` is then exactly 0.

Two kernels:

* ``shared`` (sparse edits, ``dW_k = Q dT_k Q^T = U_k V_k^T`` of rank ``r``): the states of all variants and
  trials are one ``(k1 * B, n)`` matrix, so the base matrix ``W`` is applied with one large GEMM per step; the
  edit is a rank-``r`` correction ``(H V_k) U_k^T`` fused into the ``tanh`` loop.
* ``dense`` (arbitrary edits): ``W_k = W + Q dT_k Q^T`` per variant, states laid out ``(k1, n, B)`` and advanced
  with the batched matmul ``W_k @ H_k`` (on the CPU this layout is ~2x faster than ``(k1, B, n)``, DESIGN §6).

Each has a ``deviation`` twin (DESIGN §7) that carries ``D_k = h_k - h`` next to the base state ``h`` (advanced
at HIGHEST precision), for low-precision matmuls.

Metrics are reduced inside the scan to per-step sums ``(k1, T)``; the full outputs ``(k1, B, T, n_out)``
(``n_out`` is small) are kept only when a task score needs them, and the final states ``(k1, B, n)``. No
``(k1, B, T, n)`` trajectory is ever materialised.
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
"""Up to this rank the shared-base correction is written elementwise (fused into the tanh loop), else as dots."""


def _step_metrics(y, tgt, msk):
    """Per-step, per-slot sums over trials and outputs, for outputs y (k1, B, o) and tgt, msk (B, o).

    Returns three (k1,) arrays: the masked squared error, the squared distance to slot 0 (the unablated model),
    and the change of the masked squared error against slot 0, summed as ``diff * (2 (y_0 - tgt) + diff)`` so that
    small changes do not cancel. Reducing one small (B, o) block per slot and step keeps the summation order
    independent of the chunk size (the sums over time are done on the host, in float64): results are bitwise
    identical across chunk sizes.
    """
    return _step_metrics_dev(y[0], y - y[:1], tgt, msk)


def _trial_metrics(y0, yd, tgt, msk):
    """Per-trial sums over outputs for one step: the change of the masked squared error of every slot against the
    unablated outputs ``y0`` (B, o) (deviations ``yd`` (k1, B, o)), and the unablated masked squared error (B,)."""
    r0 = y0 - tgt
    return jnp.sum(msk[None] * yd * (2.0 * r0[None] + yd), axis=-1), jnp.sum(msk * r0 * r0, axis=-1)


def _correction(H, U, V):
    """The rank-r edit ``(H V_k) U_k^T`` of every slot: H (k1, B, n); U, V (k1, r, n) -> (k1, B, n).

    ``H V_k`` is a batched matrix-vector product (on the CPU ~14 % faster for the whole step than the same product
    written as a fused multiply-reduce); for small r it is applied elementwise, so it fuses into the tanh loop.
    """
    c = jnp.einsum("kbn,ken->kbe", H, V)
    if U.shape[1] <= _SMALL_RANK:
        return sum(c[:, :, e, None] * U[:, None, e, :] for e in range(U.shape[1]))
    return jnp.einsum("kbe,ken->kbn", c, U)


def _rollout_shared(W, U, V, drive, W_out, b_out, targets, mask, unroll: int, outputs: bool, per_trial: bool):
    """Shared-base rollout. W (n, n); U, V (k1, r, n); drive (T, B, n) -> per-step metrics, hT (k1, B, n)."""
    k1, _, n = U.shape
    B = drive.shape[1]
    WT = W.T

    def step(H, xs):
        d, tgt, msk = xs
        pre = (H.reshape(k1 * B, n) @ WT).reshape(k1, B, n) + _correction(H, U, V)
        H = jnp.tanh(pre + d[None])
        y = jnp.einsum("kbn,on->kbo", H, W_out) + b_out
        trial = _trial_metrics(y[0], y - y[:1], tgt, msk) if per_trial else None
        return H, (*_step_metrics(y, tgt, msk), y if outputs else None, trial)

    H0 = jnp.zeros((k1, B, n), drive.dtype)
    hT, per_step = jax.lax.scan(step, H0, (drive, targets, mask), unroll=unroll)
    return per_step, hT


def _rollout_dense(W, Q, dT, drive, W_out, b_out, targets, mask, unroll: int, outputs: bool, per_trial: bool):
    """Dense rollout. W, Q (n, n); dT (k1, n, n); drive (T, n, B) -> per-step metrics, hT (k1, B, n)."""
    k1 = dT.shape[0]
    n, B = drive.shape[1], drive.shape[2]
    Wk = W[None] + jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q))

    def step(H, xs):
        d, tgt, msk = xs
        H = jnp.tanh(jnp.einsum("kij,kjb->kib", Wk, H) + d[None])
        y = jnp.einsum("on,knb->kbo", W_out, H) + b_out
        trial = _trial_metrics(y[0], y - y[:1], tgt, msk) if per_trial else None
        return H, (*_step_metrics(y, tgt, msk), y if outputs else None, trial)

    H0 = jnp.zeros((k1, n, B), drive.dtype)
    hT, per_step = jax.lax.scan(step, H0, (drive, targets, mask), unroll=unroll)
    return per_step, jnp.swapaxes(hT, 1, 2)


def _tanh_diff(a, t0, delta):
    """``tanh(a + delta) - tanh(a)`` (``t0 = tanh(a)``) with full relative accuracy for small ``delta``.

    Uses ``tanh(a+x) - tanh(a) = tanh(x) sech^2(a) / (1 + tanh(a) tanh(x))`` for ``|delta| < 0.5`` (denominator
    >= 0.53) and the plain difference otherwise (no cancellation problem there).
    """
    e = jnp.exp(-2.0 * jnp.abs(a))
    sech2 = 4.0 * e / (1.0 + e) ** 2
    td = jnp.tanh(delta)
    return jnp.where(jnp.abs(delta) < 0.5, td * sech2 / (1.0 + t0 * td), jnp.tanh(a + delta) - t0)


def _step_metrics_dev(y0, yd, tgt, msk):
    """As :func:`_step_metrics` for outputs ``y0 + yd`` (base y0 (B, o), deviations yd (k1, B, o))."""
    k1 = yd.shape[0]
    r0 = (y0 - tgt)[None]
    err = (msk[None] * (r0 + yd) ** 2).reshape(k1, -1)
    derr = (msk[None] * yd * (2.0 * r0 + yd)).reshape(k1, -1)
    return jnp.sum(err, axis=-1), jnp.sum((yd * yd).reshape(k1, -1), axis=-1), jnp.sum(derr, axis=-1)


def _rollout_shared_dev(W, U, V, drive, W_out, b_out, targets, mask, unroll: int, outputs: bool,
                        per_trial: bool):  # fmt: skip
    """Shared-base rollout carrying the deviations ``D_k = h_k - h`` (DESIGN §7) instead of the states.

    The base state is advanced with HIGHEST-precision dots; the deviations with the context's matmul precision,
    so a low-precision mode (TF32) makes a *relative* error on the effect of an edit rather than an absolute one.
    """
    k1, _, n = U.shape
    B = drive.shape[1]
    WT = W.T
    hi = jax.lax.Precision.HIGHEST

    def step(carry, xs):
        h0, D = carry
        d, tgt, msk = xs
        a = jnp.dot(h0, WT, precision=hi) + d
        t0 = jnp.tanh(a)
        delta = (D.reshape(k1 * B, n) @ WT).reshape(k1, B, n) + _correction(h0[None] + D, U, V)
        D = _tanh_diff(a[None], t0[None], delta)
        y0 = jnp.dot(t0, W_out.T, precision=hi) + b_out
        yd = jnp.einsum("kbn,on->kbo", D, W_out, precision=hi)
        trial = _trial_metrics(y0, yd, tgt, msk) if per_trial else None
        return (t0, D), (*_step_metrics_dev(y0, yd, tgt, msk), y0[None] + yd if outputs else None, trial)

    init = (jnp.zeros((B, n), drive.dtype), jnp.zeros((k1, B, n), drive.dtype))
    (_, DT), per_step = jax.lax.scan(step, init, (drive, targets, mask), unroll=unroll)
    return per_step, DT


def _rollout_dense_dev(W, Q, dT, drive, W_out, b_out, targets, mask, unroll: int, outputs: bool,
                       per_trial: bool):  # fmt: skip
    """Dense rollout carrying the deviations ``D_k = h_k - h``: ``delta = W_k D_k + dW_k h`` (see shared_dev)."""
    k1 = dT.shape[0]
    n, B = drive.shape[1], drive.shape[2]
    hi = jax.lax.Precision.HIGHEST
    dW = jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q, precision=hi), precision=hi)
    Wk = W[None] + dW

    def step(carry, xs):
        h0, D = carry  # (n, B), (k1, n, B)
        d, tgt, msk = xs
        a = jnp.dot(W, h0, precision=hi) + d
        t0 = jnp.tanh(a)
        delta = jnp.einsum("kij,kjb->kib", Wk, D) + (dW.reshape(k1 * n, n) @ h0).reshape(k1, n, B)
        D = _tanh_diff(a[None], t0[None], delta)
        y0 = jnp.dot(W_out, t0, precision=hi).T + b_out
        yd = jnp.einsum("on,knb->kbo", W_out, D, precision=hi)
        trial = _trial_metrics(y0, yd, tgt, msk) if per_trial else None
        return (t0, D), (*_step_metrics_dev(y0, yd, tgt, msk), y0[None] + yd if outputs else None, trial)

    init = (jnp.zeros((n, B), drive.dtype), jnp.zeros((k1, n, B), drive.dtype))
    (_, DT), per_step = jax.lax.scan(step, init, (drive, targets, mask), unroll=unroll)
    return per_step, jnp.swapaxes(DT, 1, 2)


_ROLLOUTS = {
    ("shared", False): _rollout_shared,
    ("dense", False): _rollout_dense,
    ("shared", True): _rollout_shared_dev,
    ("dense", True): _rollout_dense_dev,
}


def _sum_last(x: Array) -> Array:
    """Sum over the last axis in a fixed sequential order, so the result of every slot is bitwise the same whatever
    the number of slots (an XLA reduction may vectorise by shape). Written as a chain of elementwise adds, which
    XLA fuses into one loop; a ``lax.scan`` over the axis gave the same bits but cost ~6 ms per chunk on the CPU."""
    return functools.reduce(jnp.add, [x[..., i] for i in range(x.shape[-1])])


def _one_model(W, W_out, b_out, drive, e1, e2, targets, mask, *, path, deviation, unroll, outputs, per_trial):
    if path == "shared":  # e1 = Q^T (n, n), e2 = (rows, cols, vals) (k1, r): U_k = vals * Q[:, rows], V_k = Q[:, cols]
        rows, cols, vals = e2
        e1, e2 = e1[rows] * vals[..., None], e1[cols]
    rollout = _ROLLOUTS[path, deviation]
    (err, dist, derr, ys, trial), hT = rollout(W, e1, e2, drive, W_out, b_out, targets, mask, unroll, outputs,
                                               per_trial)  # fmt: skip
    # with ``deviation`` hT holds the final deviations (slot 0 exactly zero): hT - hT[:1] is still h_k - h
    out = {
        "sq_error": err.T,  # (k1, T)
        "sq_distance": dist.T,  # (k1, T)
        "sq_error_change": derr.T,  # (k1, T)
        # per-trial squared final-state distance (k1, B); sqrt and the mean over trials are taken on the host in
        # float64, so the value does not depend on how many slots the compiled chunk has
        "hidden_sq_distance": _sum_last(jnp.square(hT - hT[:1])),
    }
    if outputs:
        out["outputs"] = jnp.transpose(ys, (1, 2, 0, 3))  # (k1, B, T, o)
    if per_trial:  # per step and trial; summed over time on the host in float64
        out["trial_sq_error_change"] = jnp.transpose(trial[0], (1, 2, 0))  # (k1, B, T)
        out["trial_sq_error_base"] = trial[1].T  # (B, T)
    return out


# eqx.filter_jit (house style): the non-array arguments (path, deviation, precision, unroll, outputs) are static.
# Checked against jax.jit with static_argnames: bitwise identical results and the same trace counts; it adds
# ~0.2 ms of Python dispatch per chunk call on the CPU, within noise for whole sweeps (chunks take milliseconds).
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
    *,
    path: str,
    deviation: bool,
    precision: str,
    unroll: int,
    outputs: bool,
    per_trial: bool = False,
) -> dict[str, Array]:
    """Roll out one chunk and reduce its metrics (compiled once per shape and static config).

    Args (every model-specific array has a leading model axis ``m``; ``m > 1`` is vmapped):
        W: base recurrent matrix ``Q T Q^T``.  W_out, b_out: readout.
        drive: ``W_in x_t + b``, (T, B, n) for ``shared`` and (T, n, B) for ``dense``.
        e1, e2: the edits: ``Q^T`` (n, n) and ``(rows, cols, vals)`` (k1, r) each (``dT_k[rows, cols] = vals``,
            zero padded) for ``shared``; ``Q`` (n, n) and ``dT`` (k1, n, n) for ``dense``.
        targets, mask: (T, B, o), shared by all models.
        deviation: carry ``h_k - h`` instead of ``h_k`` (DESIGN §7; for low matmul precision).
        unroll: ``lax.scan`` unroll factor.  outputs: also return the full outputs (for task scores).
        per_trial: also return the per-trial, per-step change of the masked squared error of every slot
            (``trial_sq_error_change`` (k1, B, T)) and the unablated per-trial squared error
            (``trial_sq_error_base`` (B, T)).

    Returns:
        dict of per-slot arrays, all with the leading model axis: sq_error (k1, T) (masked squared error summed
        over trials and outputs per step), sq_distance (k1, T) (squared output distance to slot 0, summed the same
        way), sq_error_change (k1, T) (change of sq_error against slot 0, without cancellation), hidden_sq_distance
        (k1, B) (squared final-state distance to slot 0 per trial), and outputs
        (k1, B, T, o) when ``outputs``.
    """
    TRACES[path] += 1
    TRACES[path, deviation] += 1
    fn = functools.partial(_one_model, path=path, deviation=deviation, unroll=unroll, outputs=outputs,
                           per_trial=per_trial)  # fmt: skip
    with jax.default_matmul_precision(precision):
        if W.shape[0] > 1:
            return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, 0, None, None))(W, W_out, b_out, drive, e1, e2, targets, mask)
        first = functools.partial(jax.tree.map, lambda a: a[0])
        out = fn(W[0], W_out[0], b_out[0], drive[0], e1[0], first(e2), targets, mask)
        return {name: value[None] for name, value in out.items()}


@eqx.filter_jit  # layout and precision are static
def drive(inputs: Float[Array, "B T i"], W_in: Float[Array, "*m n i"], b: Float[Array, "*m n"], *, layout: str,
          precision: str) -> Array:  # fmt: skip
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
