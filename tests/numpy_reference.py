"""The tests' independent reference: a float64 NumPy rollout of every network form, written without schurjax code.

"rate"     h_t = (1 - a) h_{t-1} + a phi(W h_{t-1} + W_in x_t + b)       y_t = W_out h_t + b_out
"post"     h_t = phi((1 - a) h_{t-1} + a (W h_{t-1} + W_in x_t + b))     y_t = W_out h_t + b_out
"current"  h_t = (1 - a) h_{t-1} + a (W phi(h_{t-1}) + W_in x_t + b)    y_t = W_out phi(h_t) + b_out
"""

from __future__ import annotations

import numpy as np

PHI = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "softplus": lambda a: np.logaddexp(0.0, a),
}


def _step_spec(model):
    """(alpha, phi, form, h0) of a model, read from its attributes (the paper's tanh RNN when absent)."""
    alpha = float(getattr(model, "alpha", 1.0))
    phi = PHI[getattr(model, "nonlinearity", "tanh")]
    form = getattr(model, "form", "rate")
    h0 = getattr(model, "h0", None)
    return alpha, phi, form, None if h0 is None else np.asarray(h0, np.float64)


def rollout(model, x, W=None, *, states: bool = False):
    """Outputs and final states of the model's form (module docstring), in float64.

    Args:
        model: supplies ``W_in``, ``b``, ``W_out``, ``b_out`` (and ``W_rec`` when ``W`` is not given), and
            ``alpha``, ``nonlinearity``, ``form``, ``h0`` where it has them.
        x: (B, T, n_in) inputs.
        W: (n, n) or (K, n, n) recurrent matrices (default ``model.W_rec``).
        states: also return every state (..., B, T, n).

    Returns:
        y (..., B, T, n_out) and h (..., B, n) (the last state), with the leading K axis when W has one; and the
        states when ``states``.
    """
    W = np.asarray(model.W_rec if W is None else W, np.float64)
    W_in, b, W_out, b_out = (np.asarray(getattr(model, k), np.float64) for k in ("W_in", "b", "W_out", "b_out"))
    alpha, phi, form, h0 = _step_spec(model)
    x = np.asarray(x, np.float64)
    h = np.zeros((*W.shape[:-2], x.shape[0], W.shape[-1]))
    if h0 is not None:
        h = h + h0
    WT = np.swapaxes(W, -1, -2)
    ys, hs = [], []
    for t in range(x.shape[1]):
        u = x[:, t] @ W_in.T + b
        if form == "rate":
            h = (1 - alpha) * h + alpha * phi(h @ WT + u)
        elif form == "post":
            h = phi((1 - alpha) * h + alpha * (h @ WT + u))
        else:
            h = (1 - alpha) * h + alpha * (phi(h) @ WT + u)
        r = phi(h) if form == "current" else h
        ys.append(r @ W_out.T + b_out)
        hs.append(h)
    if states:
        return np.stack(ys, axis=-2), h, np.stack(hs, axis=-2)
    return np.stack(ys, axis=-2), h
