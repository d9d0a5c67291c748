"""Task base: the ``TaskBatch`` container, the masked MSE loss and shared score helpers.

Tasks follow arXiv:2606.18457 (S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", 2026): copy,
flip-flop, sine generation and context-dependent integration. Every task is a small immutable ``eqx.Module``
whose fields are static (no array leaves), so it can be closed over or passed through ``eqx.filter_jit``.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["TaskBatch", "Task", "masked_mse", "masked_r2", "check_batch_size", "check_int", "check_key", "check_y"]


class TaskBatch(NamedTuple):
    """A batch of trials (float32; ``mask`` is 0/1 and marks the entries that count in loss and score).

    Attributes:
        inputs: (B, T, n_in).
        targets: (B, T, n_out).
        mask: (B, T, n_out).
    """

    inputs: Float[Array, "B T n_in"]
    targets: Float[Array, "B T n_out"]
    mask: Float[Array, "B T n_out"]


def masked_mse(y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
    """``sum(mask * (y - targets)^2) / sum(mask)``.

    Example:
        >>> masked_mse(jax.vmap(model)(batch.inputs), batch)
    """
    err = batch.mask * (y - batch.targets) ** 2
    return jnp.sum(err) / jnp.maximum(jnp.sum(batch.mask), 1.0)


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
        raise ValueError(f"{where}: {arg} must be an int >= {minimum}, got {value!r}")
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
        raise ValueError(
            f"{where}: y must have the shape of batch.targets {tuple(batch.targets.shape)} (B, T, n_out), "
            f"got {tuple(y.shape)}"
        )


class Task(eqx.Module):
    """Base class of the tasks. Subclasses set ``name``, the static parameter fields, ``n_in``, ``n_out``,
    ``steps``, and implement ``sample`` and ``score``.
    """

    name: ClassVar[str] = "task"

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
        """Masked mean squared error ``sum(mask*(y-targets)^2)/sum(mask)``.

        Example:
            >>> task.loss(jax.vmap(model)(batch.inputs), batch)
        """
        check_y(f"{self.name}.loss", y, batch)
        return masked_mse(y, batch)

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
