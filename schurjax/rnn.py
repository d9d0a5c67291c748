"""One-layer tanh RNN as an ``equinox.Module``, with PyTorch import/export.

The model of arXiv:2606.18457 (S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", 2026):

    h_0 = 0
    h_t = tanh(W_rec h_{t-1} + W_in x_t + b)        t = 1..T
    y_t = W_out h_t + b_out

The module acts on one trial ``x (T, n_in)``; batches come from ``jax.vmap``. Matmuls use
``precision=HIGHEST`` so that float32 results do not depend on the backend's default (TF32 on GPUs).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["TanhRNN", "DEFAULT_GAIN"]

DEFAULT_GAIN = 1.0
"""Default recurrent gain g: ``W_rec`` entries are drawn from N(0, g²/n) (spectral radius ≈ g)."""

_HIGHEST = jax.lax.Precision.HIGHEST


def _as_f32(name: str, value: Any, shape: tuple[int, ...]) -> Array:
    """Convert ``value`` to a float32 array of ``shape`` or raise a one-line ValueError."""
    arr = value if isinstance(value, jax.Array) else _to_numpy(value)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"TanhRNN: {name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")
    return jnp.asarray(arr, dtype=jnp.float32)


def _to_numpy(value: Any) -> np.ndarray:
    """NumPy view of an array-like or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class TanhRNN(eqx.Module):
    """One-layer tanh RNN acting on a single trial.

    Args:
        n_in: number of input channels.
        n_hidden: number of recurrent units n.
        n_out: number of readout channels.
        key: PRNG key (``jax.random.key(seed)``).
        gain: recurrent gain g; ``W_rec ~ N(0, g²/n)`` (default ``DEFAULT_GAIN`` = 1.0, the edge of chaos).

    Initialisation: ``W_in ~ N(0, 1/n_in)``, ``W_out ~ N(0, 1/n)``, biases zero.

    Example:
        >>> model = TanhRNN(3, 64, 2, key=jax.random.key(0))
        >>> h, y = model.rollout(jnp.zeros((17, 3)))   # h (17, 64), y (17, 2)
    """

    W_in: Float[Array, "n n_in"]
    W_rec: Float[Array, "n n"]
    b: Float[Array, " n"]
    W_out: Float[Array, "n_out n"]
    b_out: Float[Array, " n_out"]
    n_in: int = eqx.field(static=True)
    n_hidden: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, key: PRNGKeyArray, gain: float = DEFAULT_GAIN):
        for arg, val in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
            if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
                raise ValueError(f"TanhRNN: {arg} must be a positive int, got {val!r}")
        k_in, k_rec, k_out = jax.random.split(key, 3)
        n = int(n_hidden)
        self.n_in, self.n_hidden, self.n_out = int(n_in), n, int(n_out)
        self.W_in = jax.random.normal(k_in, (n, self.n_in), jnp.float32) / np.sqrt(self.n_in)
        self.W_rec = jax.random.normal(k_rec, (n, n), jnp.float32) * (gain / np.sqrt(n))
        self.b = jnp.zeros((n,), jnp.float32)
        self.W_out = jax.random.normal(k_out, (self.n_out, n), jnp.float32) / np.sqrt(n)
        self.b_out = jnp.zeros((self.n_out,), jnp.float32)

    @classmethod
    def from_arrays(cls, W_in: Any, W_rec: Any, b: Any, W_out: Any, b_out: Any) -> TanhRNN:
        """Build a model from weight arrays (any array-like; stored as float32).

        Args:
            W_in: (n, n_in).  W_rec: (n, n).  b: (n,).  W_out: (n_out, n).  b_out: (n_out,).

        Returns:
            TanhRNN with those weights.

        Example:
            >>> m = TanhRNN.from_arrays(np.zeros((4, 1)), np.eye(4), np.zeros(4), np.ones((1, 4)), np.zeros(1))
        """
        W_in_np = W_in if isinstance(W_in, jax.Array) else _to_numpy(W_in)  # jax arrays (and tracers) stay
        if W_in_np.ndim != 2:
            raise ValueError(f"TanhRNN.from_arrays: W_in must be 2-D (n, n_in), got shape {W_in_np.shape}")
        n, n_in = W_in_np.shape
        W_out_np = W_out if isinstance(W_out, jax.Array) else _to_numpy(W_out)
        if W_out_np.ndim != 2:
            raise ValueError(f"TanhRNN.from_arrays: W_out must be 2-D (n_out, n), got shape {W_out_np.shape}")
        n_out = W_out_np.shape[0]
        self = object.__new__(cls)
        object.__setattr__(self, "n_in", int(n_in))
        object.__setattr__(self, "n_hidden", int(n))
        object.__setattr__(self, "n_out", int(n_out))
        object.__setattr__(self, "W_in", _as_f32("W_in", W_in_np, (n, n_in)))
        object.__setattr__(self, "W_rec", _as_f32("W_rec", W_rec, (n, n)))
        object.__setattr__(self, "b", _as_f32("b", b, (n,)))
        object.__setattr__(self, "W_out", _as_f32("W_out", W_out_np, (n_out, n)))
        object.__setattr__(self, "b_out", _as_f32("b_out", b_out, (n_out,)))
        return self

    def _check_x(self, x: Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(
                f"TanhRNN: x must have shape (T, n_in={self.n_in}) for one trial (vmap for batches), "
                f"got shape {tuple(x.shape)}"
            )

    def drive(self, x: Float[Array, "T n_in"]) -> Float[Array, "T n"]:
        """Input drive ``x_t W_in^T + b`` of one trial (shared by all recurrent edits).

        Example::

            u = model.drive(x)   # (T, n)
        """
        self._check_x(x)
        return jnp.matmul(x, self.W_in.T, precision=_HIGHEST) + self.b

    def rollout(self, x: Float[Array, "T n_in"]) -> tuple[Float[Array, "T n"], Float[Array, "T n_out"]]:
        """Run one trial from h_0 = 0 with ``lax.scan``.

        Args:
            x: inputs (T, n_in).

        Returns:
            ``(h, y)``: hidden states (T, n) for t = 1..T and outputs (T, n_out).

        Example::

            h, y = model.rollout(batch.inputs[0])
            ys = jax.vmap(model)(batch.inputs)        # (B, T, n_out)
        """
        u = self.drive(x)
        W_rec = self.W_rec

        def step(h, u_t):
            h = jnp.tanh(jnp.matmul(W_rec, h, precision=_HIGHEST) + u_t)
            return h, h

        h0 = jnp.zeros((self.n_hidden,), dtype=u.dtype)
        _, hs = jax.lax.scan(step, h0, u)
        y = jnp.matmul(hs, self.W_out.T, precision=_HIGHEST) + self.b_out
        return hs, y

    def __call__(self, x: Float[Array, "T n_in"]) -> Float[Array, "T n_out"]:
        """Outputs ``y (T, n_out)`` of one trial (see :meth:`rollout`)."""
        return self.rollout(x)[1]

    def with_recurrent(self, W: Any) -> TanhRNN:
        """Copy of the model with recurrent matrix ``W (n, n)``; all other weights unchanged.

        Example::

            edited = model.with_recurrent(sf.reconstruct(T_edit))
        """
        W = _as_f32("W", W if isinstance(W, jax.Array) else _to_numpy(W), (self.n_hidden, self.n_hidden))
        return eqx.tree_at(lambda m: m.W_rec, self, W)

    # ----------------------------------------------------------------- PyTorch interop (schurjax.torch_io)
    @classmethod
    def from_torch(cls, rnn: Any, readout: Any = None, *, prefix: str | None = None,
                   readout_prefix: str | None = None) -> TanhRNN:  # fmt: skip
        """Import a one-layer tanh ``torch.nn.RNN`` + ``torch.nn.Linear`` (see :func:`schurjax.torch_io.from_torch`).

        Args:
            rnn: an ``nn.RNN`` module or its state dict (then ``readout`` is the ``nn.Linear`` or its state dict),
                or a whole model / its ``state_dict()`` / a checkpoint path (then ``readout=None``).
            readout: the readout for the first forms, else None.
            prefix, readout_prefix: key prefixes in a whole state dict when there are several candidates.

        Returns:
            TanhRNN with ``b = bias_ih_l0 + bias_hh_l0``.

        Example::

            model = TanhRNN.from_torch(rnn, linear)                # modules or their state dicts
            model = TanhRNN.from_torch("model.pt")                 # torch.load(weights_only=True)
        """
        from schurjax.torch_io import from_torch

        return from_torch(rnn, readout, prefix=prefix, readout_prefix=readout_prefix)

    def to_torch(self, *, batch_first: bool = True) -> tuple[Any, Any]:
        """Export as ``(torch.nn.RNN(nonlinearity="tanh"), torch.nn.Linear)`` (float32; torch is optional).

        The bias goes to ``bias_ih_l0``; ``bias_hh_l0`` is zero; ``TanhRNN.from_torch(*model.to_torch())`` is
        bitwise ``model``.

        Example::

            rnn, lin = model.to_torch()
            h, _ = rnn(torch.as_tensor(x)[None]); y = lin(h)
        """
        from schurjax.torch_io import to_torch

        return to_torch(self, batch_first=batch_first)
