"""Recurrent rate networks as ``equinox.Module``s: the paper's tanh RNN and the leaky forms the field trains.

Every model acts on one trial ``x (T, n_in)``; batches come from ``jax.vmap``. With the drive
``u_t = W_in x_t + b``, ``alpha = dt / tau`` in (0, 1] and the nonlinearity ``phi`` (tanh, relu or softplus), the
three forms (``form=``) are::

    "rate"     h_t = (1 - alpha) h_{t-1} + alpha phi(W_rec h_{t-1} + u_t)          y_t = W_out h_t + b_out
    "post"     h_t = phi((1 - alpha) h_{t-1} + alpha (W_rec h_{t-1} + u_t))        y_t = W_out h_t + b_out
    "current"  h_t = (1 - alpha) h_{t-1} + alpha (W_rec phi(h_{t-1}) + u_t)       y_t = W_out phi(h_t) + b_out

from ``h_0 = h0`` (zero unless the model has a learned initial state). ``"rate"`` is the Yang-lab rate network,
``"post"`` NeuroGym's example ``CTRNN`` and ``"current"`` the PsychRNN / low-rank-RNN convention (the state is the
synaptic current, the readout reads the rates ``phi(h)``). :class:`TanhRNN` is the paper's model,
``RateRNN(alpha=1, nonlinearity="tanh", form="rate")`` from ``h_0 = 0``:

    h_t = tanh(W_rec h_{t-1} + W_in x_t + b)        y_t = W_out h_t + b_out

In every form the linear part of the step is ``A = (1 - alpha) I + alpha W_rec``, which has the Schur vectors of
``W_rec``: an edit of ``W_rec``'s Schur couplings is the same structured edit of ``A`` and keeps its spectrum; the
per-step decay of a mode with eigenvalue ``lam`` is ``|1 - alpha + alpha lam|`` (:func:`step_decay`).

Matmuls use ``precision=HIGHEST`` so that float32 results do not depend on the backend's default (TF32 on GPUs).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.errors import InputError

__all__ = ["RateRNN", "TanhRNN", "Dynamics", "DEFAULT_GAIN", "FORMS", "NONLINEARITIES", "dynamics_of", "step_decay"]

DEFAULT_GAIN = 1.0
"""Default recurrent gain g: ``W_rec`` entries are drawn from N(0, g²/n) (spectral radius ≈ g)."""

FORMS = ("rate", "post", "current")
"""Accepted ``form`` values (see the module docstring)."""

NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu, "softplus": jax.nn.softplus}
"""Accepted ``nonlinearity`` values and their JAX functions."""

_HIGHEST = jax.lax.Precision.HIGHEST


class Dynamics(NamedTuple):
    """What a model's step does besides its weights: ``alpha``, ``nonlinearity``, ``form`` (module docstring)."""

    alpha: float
    nonlinearity: str
    form: str

    @property
    def leaky(self) -> bool:
        """True unless ``alpha == 1`` (then ``"rate"`` and ``"post"`` are the same step)."""
        return self.alpha != 1.0

    def describe(self) -> str:
        """One-line description, e.g. ``'rate form, tanh, alpha=0.2'``."""
        return f"{self.form} form, {self.nonlinearity}, alpha={self.alpha:g}"


def dynamics_of(model: Any) -> Dynamics:
    """The :class:`Dynamics` of a :class:`RateRNN` (or :class:`TanhRNN`).

    Example:
        >>> dynamics_of(TanhRNN(1, 4, 1, key=jax.random.key(0)))
        Dynamics(alpha=1.0, nonlinearity='tanh', form='rate')
    """
    return Dynamics(float(model.alpha), str(model.nonlinearity), str(model.form))


def step_decay(eigvals: Any, alpha: float) -> np.ndarray:
    """Per-step decay ``|1 - alpha + alpha lam|`` of modes with eigenvalues ``lam`` of ``W_rec``.

    The slowest modes of a leaky network are those with the largest value (for ``alpha = 1``: ``|lam|``).

    Example:
        >>> step_decay(np.array([0.9, -0.95]), 0.1).round(3)
        array([0.99 , 0.805])
    """
    a = check_alpha("step_decay", alpha)
    return np.abs(1.0 - a + a * np.asarray(eigvals, dtype=np.complex128))


def check_alpha(where: str, alpha: Any) -> float:
    """``alpha`` as float in (0, 1], or a one-line ValueError."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0.0 < float(alpha) <= 1.0):
        raise InputError(where, None, f"alpha must be a real number in (0, 1] (alpha = dt / tau), got {alpha!r}")
    return float(alpha)


def _check_choice(where: str, arg: str, value: Any, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(where, None, f"{arg} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _to_numpy(value: Any) -> np.ndarray:
    """NumPy view of an array-like or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _as_f32(where: str, name: str, value: Any, shape: tuple[int, ...]) -> Array:
    """Convert ``value`` to a float32 array of ``shape`` (finite, when concrete) or raise a one-line ValueError."""
    arr = value if isinstance(value, jax.Array) else _to_numpy(value)
    if tuple(arr.shape) != tuple(shape):
        raise InputError(where, None, f"{name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")
    if not isinstance(arr, jax.core.Tracer):
        kind = np.asarray(arr).dtype.kind
        if kind not in "biuf":
            raise InputError(where, None, f"{name} must be a real numeric array, got dtype {np.asarray(arr).dtype}")
        if not np.all(np.isfinite(np.asarray(arr, dtype=np.float64))):
            raise InputError(where, None, f"{name} must be finite, got NaN or inf entries")
    return jnp.asarray(arr, dtype=jnp.float32)


def _check_size(where: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(where, None, f"{arg} must be a positive int, got {value!r}")
    return int(value)


class RateRNN(eqx.Module):
    """One-layer recurrent rate network acting on a single trial (forms: see the module docstring).

    Args:
        n_in: number of input channels.
        n_hidden: number of recurrent units n.
        n_out: number of readout channels.
        alpha: ``dt / tau`` in (0, 1] (1: no leak).
        nonlinearity: ``"tanh"``, ``"relu"`` or ``"softplus"``.
        form: ``"rate"``, ``"post"`` or ``"current"``.
        learn_h0: give the model an initial state ``h0`` (zeros at init, trained like the weights); else
            ``h_0 = 0`` and ``h0`` is None.
        key: PRNG key (``jax.random.key(seed)``).
        gain: recurrent gain g; ``W_rec ~ N(0, g²/n)``.

    Initialisation: ``W_in ~ N(0, 1/n_in)``, ``W_out ~ N(0, 1/n)``, biases zero (the same draws as
    :class:`TanhRNN` for the same key).

    Example:
        >>> model = RateRNN(3, 64, 2, alpha=0.2, nonlinearity="relu", form="post", key=jax.random.key(0))
        >>> h, y = model.rollout(jnp.zeros((17, 3)))
        >>> h.shape, y.shape
        ((17, 64), (17, 2))
    """

    W_in: Float[Array, "n n_in"]
    W_rec: Float[Array, "n n"]
    b: Float[Array, " n"]
    W_out: Float[Array, "n_out n"]
    b_out: Float[Array, " n_out"]
    h0: Float[Array, " n"] | None
    n_in: int = eqx.field(static=True)
    n_hidden: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    nonlinearity: str = eqx.field(static=True)
    form: str = eqx.field(static=True)

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        *,
        alpha: float = 1.0,
        nonlinearity: str = "tanh",
        form: str = "rate",
        learn_h0: bool = False,
        key: PRNGKeyArray,
        gain: float = DEFAULT_GAIN,
    ):
        where = type(self).__name__
        n_in, n, n_out = (
            _check_size(where, a, v) for a, v in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out))
        )
        if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not math.isfinite(gain) or gain < 0:
            raise InputError(where, None, f"gain must be a finite real number >= 0, got {gain!r}")
        if not isinstance(learn_h0, bool):
            raise InputError(where, None, f"learn_h0 must be True or False, got {learn_h0!r}")
        self.alpha = check_alpha(where, alpha)
        self.nonlinearity = _check_choice(where, "nonlinearity", nonlinearity, tuple(NONLINEARITIES))
        self.form = _check_choice(where, "form", form, FORMS)
        k_in, k_rec, k_out = jax.random.split(key, 3)
        self.n_in, self.n_hidden, self.n_out = n_in, n, n_out
        self.W_in = jax.random.normal(k_in, (n, n_in), jnp.float32) / np.sqrt(n_in)
        self.W_rec = jax.random.normal(k_rec, (n, n), jnp.float32) * (float(gain) / np.sqrt(n))
        self.b = jnp.zeros((n,), jnp.float32)
        self.W_out = jax.random.normal(k_out, (n_out, n), jnp.float32) / np.sqrt(n)
        self.b_out = jnp.zeros((n_out,), jnp.float32)
        self.h0 = jnp.zeros((n,), jnp.float32) if learn_h0 else None

    @classmethod
    def from_arrays(
        cls,
        *,
        W_in: Any,
        W_rec: Any,
        b: Any = None,
        W_out: Any,
        b_out: Any = None,
        alpha: float = 1.0,
        nonlinearity: str = "tanh",
        form: str = "rate",
        h0: Any = None,
    ) -> RateRNN:
        """Build a model from weight arrays in the (output, input) layout (any array-like; stored as float32).

        Args:
            W_in: (n, n_in).  W_rec: (n, n).  b: (n,) or None (zeros).  W_out: (n_out, n).  b_out: (n_out,) or
            None (zeros).  h0: (n,) initial state or None (``h_0 = 0``).  alpha, nonlinearity, form: the step.

        Returns:
            RateRNN with those weights; shapes and finiteness are checked (one-line ValueError naming the array).

        Example:
            >>> m = RateRNN.from_arrays(W_in=np.ones((4, 1)), W_rec=np.eye(4), W_out=np.ones((1, 4)), alpha=0.2)
            >>> m.b.shape, m.h0 is None
            ((4,), True)
        """
        where = f"{cls.__name__}.from_arrays"
        return _build(
            cls,
            where,
            W_in,
            W_rec,
            b,
            W_out,
            b_out,
            h0,
            check_alpha(where, alpha),
            _check_choice(where, "nonlinearity", nonlinearity, tuple(NONLINEARITIES)),
            _check_choice(where, "form", form, FORMS),
        )

    # ------------------------------------------------------------------------------------------- the step
    @property
    def dynamics(self) -> Dynamics:
        """The model's :class:`Dynamics` (alpha, nonlinearity, form)."""
        return dynamics_of(self)

    def phi(self, a: Array) -> Array:
        """The nonlinearity applied elementwise."""
        return NONLINEARITIES[self.nonlinearity](a)

    def initial_state(self, dtype: Any = jnp.float32) -> Float[Array, " n"]:
        """``h_0``: the learned ``h0``, or zeros."""
        return jnp.zeros((self.n_hidden,), dtype) if self.h0 is None else jnp.asarray(self.h0, dtype)

    def _check_x(self, x: Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(
                f"{type(self).__name__}: x must have shape (T, n_in={self.n_in}) for one trial (vmap for batches), "
                f"got shape {tuple(x.shape)}"
            )

    def drive(self, x: Float[Array, "T n_in"]) -> Float[Array, "T n"]:
        """Input drive ``u_t = W_in x_t + b`` of one trial (shared by all recurrent edits)."""
        self._check_x(x)
        return jnp.matmul(x, self.W_in.T, precision=_HIGHEST) + self.b

    def step(self, h: Float[Array, " n"], u: Float[Array, " n"], W_rec: Array | None = None) -> Float[Array, " n"]:
        """One step of the form's update from state ``h`` with drive ``u`` (``W_rec`` overrides the model's)."""
        W = self.W_rec if W_rec is None else W_rec
        a, phi = self.alpha, self.phi
        if self.form == "rate":
            new = phi(jnp.matmul(W, h, precision=_HIGHEST) + u)
            return new if a == 1.0 else (1.0 - a) * h + a * new
        if self.form == "post":
            pre = jnp.matmul(W, h, precision=_HIGHEST) + u
            return phi(pre if a == 1.0 else (1.0 - a) * h + a * pre)
        new = jnp.matmul(W, phi(h), precision=_HIGHEST) + u
        return new if a == 1.0 else (1.0 - a) * h + a * new

    def readout_rates(self, h: Array) -> Array:
        """What the readout reads from the state: ``phi(h)`` for the current form, else ``h``."""
        return self.phi(h) if self.form == "current" else h

    def rollout(self, x: Float[Array, "T n_in"]) -> tuple[Float[Array, "T n"], Float[Array, "T n_out"]]:
        """Run one trial from ``h_0`` with ``lax.scan``, by the form's own equations (module docstring).

        Args:
            x: inputs (T, n_in).

        Returns:
            ``(h, y)``: states (T, n) for t = 1..T and outputs (T, n_out).

        Example:
            >>> m = RateRNN(2, 8, 1, alpha=0.5, form="current", key=jax.random.key(1))
            >>> [a.shape for a in m.rollout(jnp.ones((5, 2)))]
            [(5, 8), (5, 1)]
        """
        u = self.drive(x)

        def step(h, u_t):
            h = self.step(h, u_t)
            return h, h

        _, hs = jax.lax.scan(step, self.initial_state(u.dtype), u)
        y = jnp.matmul(self.readout_rates(hs), self.W_out.T, precision=_HIGHEST) + self.b_out
        return hs, y

    def __call__(self, x: Float[Array, "T n_in"]) -> Float[Array, "T n_out"]:
        """Outputs ``y (T, n_out)`` of one trial (see :meth:`rollout`)."""
        return self.rollout(x)[1]

    def with_recurrent(self, W: Any) -> RateRNN:
        """Copy of the model with recurrent matrix ``W (n, n)``; all other weights and the step unchanged.

        Example:
            >>> m = TanhRNN(1, 3, 1, key=jax.random.key(0)).with_recurrent(np.eye(3))
        """
        W = _as_f32(f"{type(self).__name__}.with_recurrent", "W", W, (self.n_hidden, self.n_hidden))
        return eqx.tree_at(lambda m: m.W_rec, self, W)

    def as_rate_rnn(self) -> RateRNN:
        """The same network as a plain :class:`RateRNN` (a TanhRNN becomes ``RateRNN(alpha=1, tanh, rate)``)."""
        return _build(
            RateRNN, "as_rate_rnn", self.W_in, self.W_rec, self.b, self.W_out, self.b_out, self.h0, *self.dynamics
        )

    # ----------------------------------------------------------------- PyTorch interop (schurjax.store.torch_io)
    @classmethod
    def from_torch(
        cls,
        rnn: Any,
        readout: Any = None,
        *,
        prefix: str | None = None,
        readout_prefix: str | None = None,
        nonlinearity: str | None = None,
        alpha: float | None = None,
    ) -> RateRNN:
        """Import a PyTorch network (see :func:`schurjax.store.torch_io.from_torch`).

        ``TanhRNN.from_torch`` takes a one-layer tanh ``torch.nn.RNN`` + ``torch.nn.Linear``. ``RateRNN.from_torch``
        also takes a ReLU ``nn.RNN`` (``nonlinearity="relu"`` for a state dict), NeuroGym's ``CTRNN`` network
        (``"post"`` form; ``alpha`` from the module or given), a low-rank RNN state dict (``"current"`` form) and
        what :meth:`to_torch` exports, told apart by their keys.

        Args:
            rnn: an ``nn.RNN`` module or its state dict (then ``readout`` is the ``nn.Linear`` or its state dict),
                or a whole model / its ``state_dict()`` / a checkpoint path (then ``readout=None``).
            readout: the readout for the first forms, else None.
            prefix, readout_prefix: key prefixes in a whole state dict when there are several candidates.
            nonlinearity: for state dicts, which do not record it (``nn.RNN``: default "tanh").
            alpha: ``dt / tau`` for sources that do not store it.

        Returns:
            A model with ``b = bias_ih_l0 + bias_hh_l0`` for an ``nn.RNN`` (a TanhRNN when it is tanh).

        Example::

            model = TanhRNN.from_torch(rnn, linear)                # modules or their state dicts
            model = TanhRNN.from_torch("model.pt")                 # torch.load(weights_only=True)
            model = RateRNN.from_torch(neurogym_net)               # CTRNN + fc, alpha from the module
        """
        from schurjax.store.torch_io import from_torch

        return from_torch(
            rnn,
            readout,
            prefix=prefix,
            readout_prefix=readout_prefix,
            nonlinearity=nonlinearity,
            alpha=alpha,
            cls=cls,
        )

    def to_torch(self, *, batch_first: bool = True) -> Any:
        """Export to PyTorch (float32; torch is optional; see :func:`schurjax.store.torch_io.to_torch`).

        A ``TanhRNN`` exports as ``(torch.nn.RNN(nonlinearity="tanh"), torch.nn.Linear)``: the bias goes to
        ``bias_ih_l0``, ``bias_hh_l0`` is zero, and ``TanhRNN.from_torch(*model.to_torch())`` is bitwise ``model``.
        Any other model exports as one ``torch.nn.Module`` with the same step, ``net(x) -> (y, h)``, and
        ``RateRNN.from_torch(model.to_torch())`` is bitwise ``model``.

        Example::

            rnn, lin = model.to_torch()
            h, _ = rnn(torch.as_tensor(x)[None]); y = lin(h)
        """
        from schurjax.store.torch_io import to_torch

        return to_torch(self, batch_first=batch_first)


def _build(cls, where, W_in, W_rec, b, W_out, b_out, h0, alpha, nonlinearity, form) -> Any:
    """A ``cls`` instance from checked arrays (jax arrays and tracers pass through without a copy)."""
    W_in_np = W_in if isinstance(W_in, jax.Array) else _to_numpy(W_in)
    if W_in_np.ndim != 2:
        raise InputError(where, None, f"W_in must be 2-D (n, n_in), got shape {tuple(W_in_np.shape)}")
    n, n_in = W_in_np.shape
    W_out_np = W_out if isinstance(W_out, jax.Array) else _to_numpy(W_out)
    if W_out_np.ndim != 2:
        raise InputError(where, None, f"W_out must be 2-D (n_out, n), got shape {tuple(W_out_np.shape)}")
    n_out = W_out_np.shape[0]
    if n < 1 or n_in < 1 or n_out < 1:
        raise InputError(
            where,
            None,
            f"the model needs n >= 1 hidden, n_in >= 1 input and n_out >= 1 output units, "
            f"got n={n}, n_in={n_in}, n_out={n_out}",
        )
    self = object.__new__(cls)
    fields = {
        "n_in": int(n_in),
        "n_hidden": int(n),
        "n_out": int(n_out),
        "alpha": float(alpha),
        "nonlinearity": nonlinearity,
        "form": form,
        "W_in": _as_f32(where, "W_in", W_in_np, (n, n_in)),
        "W_rec": _as_f32(where, "W_rec", W_rec, (n, n)),
        "b": jnp.zeros((n,), jnp.float32) if b is None else _as_f32(where, "b", b, (n,)),
        "W_out": _as_f32(where, "W_out", W_out_np, (n_out, n)),
        "b_out": jnp.zeros((n_out,), jnp.float32) if b_out is None else _as_f32(where, "b_out", b_out, (n_out,)),
        "h0": None if h0 is None else _as_f32(where, "h0", h0, (n,)),
    }
    for name, value in fields.items():
        object.__setattr__(self, name, value)
    return self


class TanhRNN(RateRNN):
    """The paper's one-layer tanh RNN: ``RateRNN(alpha=1, nonlinearity="tanh", form="rate")`` from ``h_0 = 0``.

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
        >>> model.dynamics.describe()
        'rate form, tanh, alpha=1'
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, key: PRNGKeyArray, gain: float = DEFAULT_GAIN):
        super().__init__(n_in, n_hidden, n_out, key=key, gain=gain)

    @classmethod
    def from_arrays(cls, W_in: Any, W_rec: Any, b: Any, W_out: Any, b_out: Any) -> TanhRNN:  # type: ignore[override]
        """Build a model from weight arrays (any array-like; stored as float32; shapes and finiteness checked).

        Args:
            W_in: (n, n_in).  W_rec: (n, n).  b: (n,).  W_out: (n_out, n).  b_out: (n_out,).

        Returns:
            TanhRNN with those weights.

        Example:
            >>> m = TanhRNN.from_arrays(np.zeros((4, 1)), np.eye(4), np.zeros(4), np.ones((1, 4)), np.zeros(1))
        """
        where = "TanhRNN.from_arrays"
        if b is None or b_out is None:
            raise InputError(where, None, "b and b_out must be arrays (use RateRNN.from_arrays for optional biases)")
        return _build(cls, where, W_in, W_rec, b, W_out, b_out, None, 1.0, "tanh", "rate")
