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

Only outputs ``(k1, B, T, n_out)`` (``n_out`` is small) and the final states ``(k1, B, n)`` are ever held; no
``(k1, B, T, n)`` trajectory is materialised.
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
    """Per-step, per-slot sums over trials and outputs: squared error (masked) and squared distance to slot 0.

    y (k1, B, o); tgt, msk (B, o). Returns two (k1,) arrays. Reducing one small (B, o) block per slot and step
    keeps the summation order independent of the chunk size (the sums over time are done on the host, in
    float64), so results are bitwise identical across chunk sizes.
    """
    k1 = y.shape[0]
    err = (msk[None] * (y - tgt[None]) ** 2).reshape(k1, -1)
    dist = ((y - y[:1]) ** 2).reshape(k1, -1)
    return jnp.sum(err, axis=-1), jnp.sum(dist, axis=-1)


def _rollout_shared(W, U, V, drive, W_out, b_out, targets, mask, unroll: int, outputs: bool):
    """Shared-base rollout. W (n, n); U, V (k1, r, n); drive (T, B, n) -> per-step metrics, hT (k1, B, n)."""
    k1, r, n = U.shape
    B = drive.shape[1]
    WT = W.T

    def step(H, xs):
        d, tgt, msk = xs
        pre = (H.reshape(k1 * B, n) @ WT).reshape(k1, B, n)
        if r <= _SMALL_RANK:
            for e in range(r):
                c = jnp.sum(H * V[:, None, e, :], axis=-1, keepdims=True)
                pre = pre + c * U[:, None, e, :]
        else:
            c = jnp.einsum("kbn,ken->kbe", H, V)
            pre = pre + jnp.einsum("kbe,ken->kbn", c, U)
        H = jnp.tanh(pre + d[None])
        y = jnp.einsum("kbn,on->kbo", H, W_out) + b_out
        return H, (*_step_metrics(y, tgt, msk), y if outputs else None)

    H0 = jnp.zeros((k1, B, n), drive.dtype)
    hT, per_step = jax.lax.scan(step, H0, (drive, targets, mask), unroll=unroll)
    return per_step, hT


def _rollout_dense(W, Q, dT, drive, W_out, b_out, targets, mask, unroll: int, outputs: bool):
    """Dense rollout. W, Q (n, n); dT (k1, n, n); drive (T, n, B) -> per-step metrics, hT (k1, B, n)."""
    k1 = dT.shape[0]
    n, B = drive.shape[1], drive.shape[2]
    Wk = W[None] + jnp.einsum("ij,kjl->kil", Q, jnp.einsum("kjl,ml->kjm", dT, Q))

    def step(H, xs):
        d, tgt, msk = xs
        H = jnp.tanh(jnp.einsum("kij,kjb->kib", Wk, H) + d[None])
        y = jnp.einsum("on,knb->kbo", W_out, H) + b_out
        return H, (*_step_metrics(y, tgt, msk), y if outputs else None)

    H0 = jnp.zeros((k1, n, B), drive.dtype)
    hT, per_step = jax.lax.scan(step, H0, (drive, targets, mask), unroll=unroll)
    return per_step, jnp.swapaxes(hT, 1, 2)


def _one_model(W, W_out, b_out, drive, e1, e2, targets, mask, *, path, unroll, outputs):
    rollout = _rollout_shared if path == "shared" else _rollout_dense
    (err, dist, ys), hT = rollout(W, e1, e2, drive, W_out, b_out, targets, mask, unroll, outputs)
    out = {
        "sq_error": err.T,  # (k1, T)
        "sq_distance": dist.T,  # (k1, T)
        "hidden_distance": jnp.mean(jnp.sqrt(jnp.sum((hT - hT[:1]) ** 2, axis=-1)), axis=-1),
    }
    if outputs:
        out["outputs"] = jnp.transpose(ys, (1, 2, 0, 3))  # (k1, B, T, o)
    return out


@functools.partial(jax.jit, static_argnames=("path", "precision", "unroll", "outputs"))
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
    precision: str,
    unroll: int,
    outputs: bool,
) -> dict[str, Array]:
    """Roll out one chunk and reduce its metrics (compiled once per shape and static config).

    Args (every model-specific array has a leading model axis ``m``; ``m > 1`` is vmapped):
        W: base recurrent matrix ``Q T Q^T``.  W_out, b_out: readout.
        drive: ``W_in x_t + b``, (T, B, n) for ``shared`` and (T, n, B) for ``dense``.
        e1, e2: the edits: ``U, V`` (k1, r, n) for ``shared``; ``Q`` (n, n) and ``dT`` (k1, n, n) for ``dense``.
        targets, mask: (T, B, o), shared by all models.
        unroll: ``lax.scan`` unroll factor.  outputs: also return the full outputs (for task scores).

    Returns:
        dict of per-slot arrays, all with the leading model axis: sq_error (k1, T) (masked squared error summed
        over trials and outputs per step), sq_distance (k1, T) (squared output distance to slot 0, summed the same
        way), hidden_distance (k1,) (mean over trials of the final-state distance to slot 0), and outputs
        (k1, B, T, o) when ``outputs``.
    """
    TRACES[path] += 1
    fn = functools.partial(_one_model, path=path, unroll=unroll, outputs=outputs)
    with jax.default_matmul_precision(precision):
        if W.shape[0] > 1:
            return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, 0, None, None))(W, W_out, b_out, drive, e1, e2, targets, mask)
        out = fn(W[0], W_out[0], b_out[0], drive[0], e1[0], e2[0], targets, mask)
        return {name: value[None] for name, value in out.items()}


@functools.partial(jax.jit, static_argnames=("layout", "precision"))
def drive(inputs: Float[Array, "B T i"], W_in: Float[Array, "*m n i"], b: Float[Array, "*m n"], *, layout: str,
          precision: str) -> Array:  # fmt: skip
    """Input drive ``W_in x_t + b`` of every model, (m, T, B, n) (``layout="TBn"``) or (m, T, n, B) (``"TnB"``)."""
    with jax.default_matmul_precision(precision):
        d = jnp.einsum("bti,mni->mtbn", inputs, W_in) + b[:, None, None, :]
    return d if layout == "TBn" else jnp.swapaxes(d, 2, 3)


@eqx.filter_jit
def scores(task, outputs: Float[Array, "m k B T o"], batch) -> Float[Array, "m k"]:
    """``task.score`` of every slot of every model on the shared batch."""
    return jax.vmap(jax.vmap(lambda y: task.score(y, batch)))(outputs)
