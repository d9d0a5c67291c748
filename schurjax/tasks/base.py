"""Task base: the ``Task`` base class (the task protocol), the masked MSE and cross-entropy losses, helpers.

Tasks follow arXiv:2606.18457 (S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", 2026): copy,
flip-flop, sine generation and context-dependent integration. Every task is a small immutable ``eqx.Module``
whose fields are static (no array leaves), so it can be closed over or passed through ``eqx.filter_jit``.

The batch container lives in :mod:`schurjax.tasks.batch` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.errors import InputError
from schurjax.tasks.batch import TaskBatch, as_batch

__all__ = [
    "TaskBatch",
    "Task",
    "as_batch",
    "masked_mse",
    "masked_ce",
    "masked_r2",
    "LOSS_TYPES",
    "check_batch_size",
    "check_int",
    "check_key",
    "check_y",
    "as_tuple",
]


def masked_mse(y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
    """``sum(mask * (y - targets)^2) / sum(mask)``.

    Example::

        masked_mse(jax.vmap(model)(batch.inputs), batch)
    """
    err = batch.mask * (y - batch.targets) ** 2
    return jnp.sum(err) / jnp.maximum(jnp.sum(batch.mask), 1.0)


def masked_ce(y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
    """Cross-entropy of the logits ``y`` against the targets as class probabilities, on the steps that count.

    Per step ``ce_bt = -sum_o targets[b, t, o] log_softmax(y[b, t])_o``, weighted by ``w_bt = max_o mask[b, t, o]``;
    the loss is ``sum(w ce) / max(sum(w), 1)``.

    Example::

        masked_ce(jax.vmap(model)(batch.inputs), batch)    # targets one-hot (B, T, n_classes)
    """
    w = jnp.max(batch.mask, axis=-1)
    ce = -jnp.sum(batch.targets * jax.nn.log_softmax(y, axis=-1), axis=-1)
    return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1.0)


LOSS_TYPES = {"mse": masked_mse, "ce": masked_ce}
"""The losses a task can declare (``Task.loss_type``): masked mean squared error, cross-entropy of the logits."""


def masked_r2(y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
    """Coefficient of determination over the masked entries, ``1 - SSE/SST``, clipped to [0, 1].

    SST is taken around the masked mean of the targets.
    """
    m = batch.mask
    n = jnp.maximum(jnp.sum(m), 1.0)
    mean = jnp.sum(m * batch.targets) / n
    sse = jnp.sum(m * (y - batch.targets) ** 2)
    sst = jnp.sum(m * (batch.targets - mean) ** 2)
    return jnp.clip(1.0 - sse / jnp.maximum(sst, 1e-12), 0.0, 1.0)


def check_int(where: str, arg: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as int or raise a one-line ValueError naming ``arg``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(where, None, f"{arg} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_batch_size(where: str, batch_size: Any) -> int:
    """Return ``batch_size`` as int or raise a one-line ValueError."""
    return check_int(where, "batch_size", batch_size)


def check_key(where: str, key: Any) -> None:
    """Raise a one-line TypeError unless ``key`` is a JAX PRNG key (typed ``jax.random.key`` or legacy uint32)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return
    raise TypeError(f"{where}: key must be a PRNG key from jax.random.key(seed), got {key!r}")


def check_y(where: str, y: Array, batch: TaskBatch) -> None:
    if tuple(y.shape) != tuple(batch.targets.shape):
        raise InputError(
            where,
            None,
            f"y must have the shape of batch.targets {tuple(batch.targets.shape)} (B, T, n_out), got {tuple(y.shape)}",
        )


def as_tuple(value: Any) -> Any:
    """Field converter: a list/tuple/array becomes a tuple; anything else is left for the task's check to name."""
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(value.tolist() if isinstance(value, np.ndarray) else value)
    return value


def _non_finite(value: Any) -> bool:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return not math.isfinite(float(value))
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


class Task(eqx.Module):
    """Base class of the tasks, and the protocol every task follows (built-in, registered or NeuroGym).

    A task is an immutable, hashable object with:

    * ``name`` (str): its registry name; ``tasks.get(task.name, **task.params())`` rebuilds it.
    * ``n_in``, ``n_out``, ``steps`` (ints): sizes of its batches, inputs ``(B, steps, n_in)``.
    * ``sample(key, batch_size) -> TaskBatch``: deterministic per key (keys first; jit-able for built-ins).
    * ``score(y, batch) -> scalar``: pure JAX (it runs inside ``sj.evaluate``'s compiled program), ``y (B, T, n_out)``.
    * ``loss_type`` (class attribute or static field): ``"mse"`` (default), ``"ce"`` or ``"custom"``, the loss the
      network is trained with; ``sj.evaluate(..., task=task)`` sums that loss (a task without it counts as
      ``"mse"``). ``"custom"``: the task defines ``trial_loss(y, batch) -> (B,)`` (pure JAX), the loss is its
      mean over trials.
    * ``loss(y, batch)``: here :func:`masked_mse`, :func:`masked_ce` or the mean of ``trial_loss``, as
      ``loss_type`` says.
    * ``params() -> dict``: JSON-able parameters, its identity next to ``name``; here: the dataclass fields.

    Subclass it as an ``eqx.Module`` with static fields (``name`` a class attribute); ``__check_init__`` refuses
    NaN/inf parameters. Register the class with ``sj.tasks.register(name, cls)``.

    Example::

        class Hold(sj.tasks.Task):
            name = "hold"
            steps: int = eqx.field(default=20, static=True)
            n_in, n_out = 1, 1
            def sample(self, key, batch_size):          # jit-able: build the TaskBatch from JAX arrays
                a = jax.random.normal(key, (batch_size, 1, 1))
                x = jnp.zeros((batch_size, self.steps, 1)).at[:, :1].set(a)
                return sj.TaskBatch(x, jnp.broadcast_to(a, x.shape), jnp.ones_like(x))
            def score(self, y, batch):                  # pure JAX
                return 1.0 - sj.tasks.masked_mse(y, batch) / jnp.mean(batch.targets**2)
        sj.tasks.register("hold", Hold)
    """

    name: ClassVar[str] = "task"
    loss_type: ClassVar[str] = "mse"

    def __check_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name, None)
            if _non_finite(v):
                raise ValueError(f"{self.name}: {f.name} must be finite, got {v!r}")

    @property
    def n_in(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def n_out(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def steps(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The task's parameters as a JSON-able dict (``tasks.get(task.name, **task.params())`` rebuilds it)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
        """The task's loss, by ``loss_type``: masked mean squared error ``sum(mask*(y-targets)^2)/sum(mask)``
        (``"mse"``), :func:`masked_ce` (``"ce"``) or the mean over trials of ``self.trial_loss`` (``"custom"``).

        Example::

            task.loss(jax.vmap(model)(batch.inputs), batch)
        """
        check_y(f"{self.name}.loss", y, batch)
        if self.loss_type == "custom":
            return jnp.mean(self.trial_loss(y, batch))
        if self.loss_type not in LOSS_TYPES:  # (a task built around the checks)
            raise ValueError(
                f"{self.name}: loss_type must be one of {', '.join(map(repr, LOSS_TYPES))}, got {self.loss_type!r}"
            )
        return LOSS_TYPES[self.loss_type](y, batch)

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
