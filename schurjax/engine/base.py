"""The unablated trajectory of a batch, in float64 on the host: what every variant's deviation is measured from.

The deviation rollout (the engine's default) carries ``D_k = h_k - h`` next to this base trajectory, which is
computed once per batch (not once per chunk) and reused by the float64 re-run of ill-conditioned loss changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from schurjax.engine import kernels as _kernels

__all__: list[str] = []


def _valid_steps(batch, T: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``batch.valid`` as float (T, B) and the mask of each trial's last valid step (T, B) bool; (None, None) when
    every step is valid."""
    valid = getattr(batch, "valid", None)
    if valid is None:
        return None, None
    v = np.asarray(valid, dtype=bool).T  # (T, B)
    if v.all():
        return None, None
    last_idx = T - 1 - np.argmax(v[::-1], axis=0)  # trials padded at the end: the last True of each column
    last = np.zeros_like(v)
    last[last_idx, np.arange(v.shape[1])] = v.any(axis=0)
    return v.astype(np.float64), last


def loss_weights(batch, mask: np.ndarray, loss: str) -> np.ndarray:
    """The per-entry weights (T, B, o) of the loss sums, float64: the mask (``"mse"``, zero on invalid steps), or
    the targets times the step weight ``w_bt = max_o mask`` (``"ce"``)."""
    if loss != "ce":
        return mask
    tgt = np.swapaxes(np.asarray(batch.targets, dtype=np.float64), 0, 1)
    return tgt * mask.max(axis=-1, keepdims=True)


def loss_denominator(mask: np.ndarray, loss: str) -> float:
    """What the loss sums are divided by: ``sum(mask)`` (``"mse"``) or ``sum_bt w_bt`` (``"ce"``), at least 1 (as
    :func:`schurjax.tasks.masked_mse` and :func:`schurjax.tasks.masked_ce`)."""
    return max(float(mask.sum() if loss != "ce" else mask.max(axis=-1).sum()), 1.0)


def _log_softmax(y: np.ndarray) -> np.ndarray:
    m = y.max(axis=-1, keepdims=True)
    return y - m - np.log(np.exp(y - m).sum(axis=-1, keepdims=True))


def _base_rollout(
    models, Qs, Ws, batch, mask, dyn=_kernels._TANH, loss: str = "mse", alphas=None
) -> dict[str, np.ndarray]:
    """The unablated trajectory of every model, in float64 (once per batch).

    Args: the models (sharing ``dyn = (alpha, nonlinearity, form)``), their Schur vectors and ``W = Q T Q^T``, the
    batch, ``mask`` (T, B, o) the loss weights (:func:`loss_weights`), ``loss`` ``"mse"`` or ``"ce"``, ``alphas``
    (M, 2) each model's ``(alpha, 1 - alpha)`` when ``dyn``'s alpha is None (``kernels._TANH``).

    Returns (M models), as NumPy float64: a (M, T, B, n) the argument of ``phi`` at each step (pre-activations;
    the states for the current form), pa = phi(a), h_prev (M, T, B, n) what W multiplies at each step (the
    previous state, or its rates for the current form, from ``h_0``), z = Q^T h_prev (Schur coordinates), y0
    (M, T, B, o) outputs; the loss data ``r0 = y0 - target`` (``"mse"``) or ``p0``, ``lp0`` (softmax and
    log-softmax of y0, ``"ce"``); the per-model base loss sum ``loss_sum`` (M,) and per trial ``trial_loss_sum``
    (M, B).
    """
    stack = lambda arrs: jnp.asarray(np.stack([np.asarray(x, dtype=np.float64) for x in arrs]))  # noqa: E731
    h0s = [getattr(m, "h0", None) for m in models]
    n = np.shape(Ws[0])[0]
    with jax.enable_x64(True):
        out = _kernels.base_rollout(
            stack(Ws),
            stack([m.W_in for m in models]),
            stack([m.b for m in models]),
            stack([m.W_out for m in models]),
            stack([m.b_out for m in models]),
            stack(Qs),
            jnp.asarray(np.asarray(batch.inputs, dtype=np.float64)),
            None if all(h is None for h in h0s) else stack([np.zeros(n) if h is None else h for h in h0s]),
            None if alphas is None else jnp.asarray(np.asarray(alphas, np.float64)),
            dyn=tuple(dyn),
        )
        a, pa, h_prev, z, y0 = (np.asarray(x, dtype=np.float64) for x in out)
    tgt = np.swapaxes(np.asarray(batch.targets, dtype=np.float64), 0, 1)
    hb = {"a": a, "pa": pa, "h_prev": h_prev, "z": z, "y0": y0}
    if loss == "ce":  # per (step, trial): (sum_o wt) logsumexp(y0) - sum_o wt y0, wt = targets * step weight
        lp0 = _log_softmax(y0)
        hb["p0"], hb["lp0"] = np.exp(lp0), lp0
        terms = -(mask[None] * lp0).sum(axis=3)  # (M, T, B)
        trial_err = terms.sum(axis=1)
    else:
        r0 = y0 - tgt[None]
        hb["r0"] = r0
        trial_err = (mask[None] * r0**2).sum(axis=(1, 3))  # (M, B): each trial's share, for bootstraps
    hb["loss_sum"] = trial_err.sum(1)
    hb["trial_loss_sum"] = trial_err
    return hb


def aux(nonlinearity: str, hb: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The base quantities (float64) of the nonlinearity's difference (``kernels.AUX``): tanh ``t0 = tanh(a)``,
    ``s0 = sech^2(a)``; softplus ``t0 = softplus(a)``, ``s0 = sigmoid(a)``; relu none."""
    a = hb["a"]
    if nonlinearity == "tanh":
        return {"t0": hb["pa"], "s0": _sech2(a)}
    if nonlinearity == "softplus":
        return {"t0": hb["pa"], "s0": np.exp(-np.logaddexp(0.0, -a))}
    return {}


def _sech2(a: np.ndarray) -> np.ndarray:
    """``sech^2(a) = 1 - tanh^2(a)`` without cancellation (float64)."""
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / (1.0 + e) ** 2
