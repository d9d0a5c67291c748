"""Fixed-length copy task with autonomous replay (arXiv:2606.18457: a task whose replay needs nonnormal couplings).

Trial layout (``steps = 2*length + delay + 1``):

    t in [0, length)                      data channels carry values uniform in [-1, 1]
    t in [length, length + delay)         empty
    t = length + delay                    recall cue (last input channel = 1)
    t in [length + delay + 1, steps)      empty input; target = the presented sequence, in order

The mask covers the replay only. Score: R² of the replay.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.tasks.base import Task, TaskBatch, check_batch_size, check_int, check_key, check_y, masked_r2

__all__ = ["CopyTask"]


class CopyTask(Task):
    """Copy ``length`` steps of ``channels`` values after a ``delay`` and a one-step recall cue.

    Args:
        channels: data channels (inputs: ``channels`` + 1 cue; outputs: ``channels``). Default 2.
        length: presented (and replayed) steps. Default 6.
        delay: empty steps between the sequence and the cue. Default 4.

    Example:
        >>> task = CopyTask()
        >>> batch = task.sample(jax.random.key(0), 32)   # inputs (32, 17, 3), targets/mask (32, 17, 2)
    """

    name: ClassVar[str] = "copy"
    channels: int = eqx.field(default=2, static=True)
    length: int = eqx.field(default=6, static=True)
    delay: int = eqx.field(default=4, static=True)

    def __check_init__(self):
        check_int("copy", "channels", self.channels)
        check_int("copy", "length", self.length)
        check_int("copy", "delay", self.delay, minimum=0)

    @property
    def n_in(self) -> int:
        return self.channels + 1

    @property
    def n_out(self) -> int:
        return self.channels

    @property
    def steps(self) -> int:
        return 2 * self.length + self.delay + 1

    @property
    def cue_step(self) -> int:
        """Index of the recall cue; replay occupies ``[cue_step + 1, steps)``."""
        return self.length + self.delay

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch:
        """Draw ``batch_size`` trials (jit-able with ``batch_size`` static; deterministic per key)."""
        B = check_batch_size("copy.sample", batch_size)
        check_key("copy.sample", key)
        L, C, T, c0 = self.length, self.channels, self.steps, self.cue_step + 1
        values = jax.random.uniform(key, (B, L, C), jnp.float32, minval=-1.0, maxval=1.0)
        inputs = jnp.zeros((B, T, C + 1), jnp.float32)
        inputs = inputs.at[:, :L, :C].set(values)
        inputs = inputs.at[:, self.cue_step, C].set(1.0)
        targets = jnp.zeros((B, T, C), jnp.float32).at[:, c0:, :].set(values)
        mask = jnp.zeros((B, T, C), jnp.float32).at[:, c0:, :].set(1.0)
        return TaskBatch(inputs, targets, mask)

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
        """R² of the replay (masked entries), clipped to [0, 1]."""
        check_y("copy.score", y, batch)
        return masked_r2(y, batch)
