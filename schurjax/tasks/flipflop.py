"""N-bit flip-flop (Sussillo & Barak 2013), one of the tasks of arXiv:2606.18457.

Each of ``bits`` channels receives a pulse of ±1 (equally likely) with probability ``p_pulse`` per step. The
target of a channel is the sign of its most recent pulse (including the current step), and 0 before its first
pulse. The mask covers the whole trial. Score: sign accuracy on the entries after each channel's first pulse.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.errors import InputError
from schurjax.tasks.base import Task, TaskBatch, check_batch_size, check_int, check_key, check_y

__all__ = ["FlipFlopTask"]


class FlipFlopTask(Task):
    """N-bit flip-flop memory.

    Args:
        bits: number of channels (inputs = outputs = ``bits``). Default 3.
        steps: trial length. Default 100.
        p_pulse: pulse probability per channel and step. Default 0.05.

    Example:
        >>> batch = FlipFlopTask().sample(jax.random.key(0), 16)   # inputs/targets/mask (16, 100, 3)
    """

    name: ClassVar[str] = "flipflop"
    bits: int = eqx.field(default=3, static=True)
    steps: int = eqx.field(default=100, static=True)
    p_pulse: float = eqx.field(default=0.05, static=True)

    def __check_init__(self):
        check_int("flipflop", "bits", self.bits)
        check_int("flipflop", "steps", self.steps)
        if not isinstance(self.p_pulse, int | float) or not 0.0 < float(self.p_pulse) <= 1.0:
            raise InputError("flipflop", None, f"p_pulse must be a float in (0, 1], got {self.p_pulse!r}")

    @property
    def n_in(self) -> int:
        return self.bits

    @property
    def n_out(self) -> int:
        return self.bits

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch:
        """Draw ``batch_size`` trials (jit-able with ``batch_size`` static; deterministic per key)."""
        B = check_batch_size("flipflop.sample", batch_size)
        check_key("flipflop.sample", key)
        T, N = self.steps, self.bits
        k_on, k_sign = jax.random.split(key)
        on = jax.random.bernoulli(k_on, self.p_pulse, (B, T, N))
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (B, T, N)), 1.0, -1.0)
        inputs = jnp.where(on, sign, 0.0).astype(jnp.float32)
        # index of the most recent pulse at or before t (-1 before the first one)
        t_idx = jnp.arange(T)[None, :, None]
        last = jax.lax.cummax(jnp.where(on, t_idx, -1), axis=1)
        held = jnp.take_along_axis(inputs, jnp.maximum(last, 0), axis=1)
        targets = jnp.where(last >= 0, held, 0.0).astype(jnp.float32)
        mask = jnp.ones((B, T, N), jnp.float32)
        return TaskBatch(inputs, targets, mask)

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
        """Sign accuracy over masked entries after each channel's first pulse (target != 0)."""
        check_y("flipflop.score", y, batch)
        w = batch.mask * (batch.targets != 0)
        hit = (jnp.sign(y) == batch.targets).astype(jnp.float32)
        return jnp.sum(w * hit) / jnp.maximum(jnp.sum(w), 1.0)
