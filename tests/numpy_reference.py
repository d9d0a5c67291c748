"""The tests' independent reference: a float64 NumPy rollout of the tanh RNN, written without schurjax code."""

from __future__ import annotations

import numpy as np


def rollout(model, x, W=None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and final states of ``h_t = tanh(W h_{t-1} + W_in x_t + b)``, ``y_t = W_out h_t + b_out``, h_0 = 0.

    Args:
        model: supplies ``W_in``, ``b``, ``W_out``, ``b_out`` (and ``W_rec`` when ``W`` is not given).
        x: (B, T, n_in) inputs.
        W: (n, n) or (K, n, n) recurrent matrices (default ``model.W_rec``).

    Returns:
        y (..., B, T, n_out) and h (..., B, n), in float64, with the leading K axis when W has one.
    """
    W = np.asarray(model.W_rec if W is None else W, np.float64)
    W_in, b, W_out, b_out = (np.asarray(getattr(model, k), np.float64) for k in ("W_in", "b", "W_out", "b_out"))
    x = np.asarray(x, np.float64)
    h = np.zeros((*W.shape[:-2], x.shape[0], W.shape[-1]))
    WT = np.swapaxes(W, -1, -2)
    ys = []
    for t in range(x.shape[1]):
        h = np.tanh(h @ WT + x[:, t] @ W_in.T + b)
        ys.append(h @ W_out.T + b_out)
    return np.stack(ys, axis=-2), h
