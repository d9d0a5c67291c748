"""The unablated trajectory of a batch, in float64 on the host: what every variant's deviation is measured from.

The deviation rollout (the engine's default) carries ``D_k = h_k - h`` next to this base trajectory, which is
computed once per batch (not once per chunk) and reused by the float64 re-run of ill-conditioned loss changes.
"""

from __future__ import annotations

import numpy as np

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
    """The unablated trajectory of every model, in float64 on the host (once per batch).

    Returns (M models): a (M, T, B, n) pre-activations, h (M, T, B, n) states, y0 (M, T, B, o) outputs,
    z (M, T, B, n) = Q^T h_{t-1} (Schur coordinates of the previous state, h_0 = 0), and the per-model base loss
    numerator ``sum(mask (y0 - target)^2)`` (M,).
    """
    x = np.swapaxes(np.asarray(batch.inputs, dtype=np.float64), 0, 1)  # (T, B, i)
    W_in = np.stack([np.asarray(m.W_in, dtype=np.float64) for m in models])
    b = np.stack([np.asarray(m.b, dtype=np.float64) for m in models])
    W_out = np.stack([np.asarray(m.W_out, dtype=np.float64) for m in models])
    b_out = np.stack([np.asarray(m.b_out, dtype=np.float64) for m in models])
    W = np.stack(Ws)
    drive = (x[None] @ np.swapaxes(W_in, 1, 2)[:, None]) + b[:, None, None, :]  # (M, T, B, n), BLAS matmuls
    M, T, B, n = drive.shape
    a = np.empty_like(drive)
    h = np.empty_like(drive)
    prev = np.zeros((M, B, n))
    WT = np.swapaxes(W, 1, 2)
    for t in range(T):
        a[:, t] = prev @ WT + drive[:, t]
        prev = h[:, t] = np.tanh(a[:, t])
    y0 = (h @ np.swapaxes(W_out, 1, 2)[:, None]) + b_out[:, None, None, :]
    h_prev = np.concatenate([np.zeros((M, 1, B, n)), h[:, :-1]], axis=1)
    z = h_prev @ np.stack(Qs)[:, None]
    tgt = np.swapaxes(np.asarray(batch.targets, dtype=np.float64), 0, 1)
    sq_err = (mask[None] * (y0 - tgt[None]) ** 2).sum(axis=(1, 2, 3))
    return {"a": a, "h": h, "h_prev": h_prev, "z": z, "y0": y0, "r0": y0 - tgt[None], "sq_error": sq_err}


def _sech2(a: np.ndarray) -> np.ndarray:
    """``sech^2(a) = 1 - tanh^2(a)`` without cancellation (float64)."""
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / (1.0 + e) ** 2
