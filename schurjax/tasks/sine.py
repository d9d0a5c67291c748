"""Sine generation cued by frequency, one of the tasks of arXiv:2606.18457.

Trial j (drawn uniformly from ``n_freqs`` frequencies ω_j evenly spaced in [``w_min``, ``w_max``] rad/step) has
one static input ``j / n_freqs + 0.25`` held for the whole trial, and target ``sin(ω_j t)`` at step t = 1..steps
(t counts updates from h_0 = 0, so ``targets[:, k] = sin(ω (k + 1))``). The mask covers the whole trial.
Score: R².
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from schurjax.errors import InputError
from schurjax.tasks.base import Task, TaskBatch, check_batch_size, check_int, check_key, check_y, masked_r2

__all__ = ["SineTask"]


class SineTask(Task):
    """Generate ``sin(ω_j t)`` from a static frequency cue.

    Args:
        n_freqs: number of frequencies. Default 51.
        w_min, w_max: frequency range in rad/step. Default [0.1, 0.6].
        steps: trial length. Default 100.

    Example:
        >>> batch = SineTask().sample(jax.random.key(0), 8)   # inputs (8, 100, 1), targets (8, 100, 1)
    """

    name: ClassVar[str] = "sine"
    n_freqs: int = eqx.field(default=51, static=True)
    w_min: float = eqx.field(default=0.1, static=True)
    w_max: float = eqx.field(default=0.6, static=True)
    steps: int = eqx.field(default=100, static=True)

    def __check_init__(self):
        check_int("sine", "n_freqs", self.n_freqs)
        check_int("sine", "steps", self.steps)
        if not (isinstance(self.w_min, int | float) and isinstance(self.w_max, int | float)) or not (
            0 < self.w_min <= self.w_max
        ):
            raise InputError("sine", None, f"need 0 < w_min <= w_max, got w_min={self.w_min!r}, w_max={self.w_max!r}")

    @property
    def n_in(self) -> int:
        return 1

    @property
    def n_out(self) -> int:
        return 1

    @property
    def frequencies(self) -> np.ndarray:
        """ω_j, shape (n_freqs,), rad/step."""
        return np.linspace(self.w_min, self.w_max, self.n_freqs)

    def batch_for(self, j: Int[Array, " B"]) -> TaskBatch:
        """Trials for the given frequency indices ``j (B,)`` (e.g. ``jnp.arange(n_freqs)`` for all of them)."""
        j = jnp.asarray(j)
        B, T = j.shape[0], self.steps
        w = jnp.asarray(self.frequencies, jnp.float32)[j]
        level = (j.astype(jnp.float32) / self.n_freqs + 0.25)[:, None, None]
        inputs = jnp.broadcast_to(level, (B, T, 1)).astype(jnp.float32)
        t = jnp.arange(1, T + 1, dtype=jnp.float32)
        targets = jnp.sin(w[:, None] * t[None, :])[..., None].astype(jnp.float32)
        mask = jnp.ones((B, T, 1), jnp.float32)
        return TaskBatch(inputs, targets, mask)

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch:
        """Draw ``batch_size`` trials with uniformly random frequency indices (jit-able, deterministic per key)."""
        B = check_batch_size("sine.sample", batch_size)
        check_key("sine.sample", key)
        j = jax.random.randint(key, (B,), 0, self.n_freqs)
        return self.batch_for(j)

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
        """R² over the masked entries, clipped to [0, 1]."""
        check_y("sine.score", y, batch)
        return masked_r2(y, batch)
