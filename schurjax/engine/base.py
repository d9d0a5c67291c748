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


def _base_rollout(models, Qs, Ws, batch, mask) -> dict[str, np.ndarray]:
    """The unablated trajectory of every model, in float64 (once per batch).

    Returns (M models), as NumPy float64: a (M, T, B, n) pre-activations, h (M, T, B, n) states, h_prev (the state
    before each step, h_0 = 0), z (M, T, B, n) = Q^T h_prev (Schur coordinates), y0 (M, T, B, o) outputs,
    r0 = y0 - target, and the per-model base loss numerator ``sum(mask r0^2)`` (M,).
    """
    stack = lambda arrs: jnp.asarray(np.stack([np.asarray(x, dtype=np.float64) for x in arrs]))  # noqa: E731
    with jax.enable_x64(True):
        out = _kernels.base_rollout(
            stack(Ws),
            stack([m.W_in for m in models]),
            stack([m.b for m in models]),
            stack([m.W_out for m in models]),
            stack([m.b_out for m in models]),
            stack(Qs),
            jnp.asarray(np.asarray(batch.inputs, dtype=np.float64)),
        )
        a, h, z, y0 = (np.asarray(x, dtype=np.float64) for x in out)
    h_prev = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], axis=1)
    tgt = np.swapaxes(np.asarray(batch.targets, dtype=np.float64), 0, 1)
    r0 = y0 - tgt[None]
    trial_sq_err = (mask[None] * r0**2).sum(axis=(1, 3))  # (M, B): each trial's share, for bootstraps
    return {
        "a": a,
        "h": h,
        "h_prev": h_prev,
        "z": z,
        "y0": y0,
        "r0": r0,
        "sq_error": trial_sq_err.sum(1),
        "trial_sq_error": trial_sq_err,
    }


def _sech2(a: np.ndarray) -> np.ndarray:
    """``sech^2(a) = 1 - tanh^2(a)`` without cancellation (float64)."""
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / (1.0 + e) ** 2
