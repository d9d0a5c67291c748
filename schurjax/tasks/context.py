"""Context-dependent integration (Mante et al. 2013), one of the tasks of arXiv:2606.18457.

Inputs (``n_in = 4``): two noisy evidence channels and two one-hot context channels. Per trial, each evidence
channel has a mean ``±c`` with ``c`` drawn uniformly from ``coherences`` and the sign uniform, plus Gaussian noise of
standard deviation ``noise`` per step. Evidence is shown during the first ``steps - response_steps`` steps; the
context is held for the whole trial. The target (``n_out = 1``) is the sign of the cued channel's mean over the
response window, the last ``response_steps = round(response * steps)`` (default 20 % of 100) steps, and the mask
covers that window. Score: sign accuracy there.

Defaults ``noise = 1.0`` and ``coherences = (0.25, 0.5, 1.0)``: the ideal observer (sign of the cued channel's
sample mean over the 80 evidence steps) is correct with probability Φ(c √80 / noise) ≈ 0.987, 1.000, 1.000, i.e.
≈ 0.996 on average (the brief asks ≥ 0.97), while the weakest coherence still needs integration over many steps
(one sample is right only 60 % of the time). Only the ratio c / noise sets the difficulty; the absolute scale is
set to order 1 because with the same ratios at noise 0.4 Adam training was slow and seed-dependent (one seed in
four stayed below 0.95 accuracy after 4000-6000 steps), while at noise 1.0 all four zoo seeds pass. Evidence is
withheld during the response window so that the network and the ideal observer see the same samples.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.errors import InputError
from schurjax.tasks.base import Task, TaskBatch, as_tuple, check_batch_size, check_int, check_key, check_y

__all__ = ["ContextTask"]


class ContextTask(Task):
    """Context-dependent integration of one of two noisy evidence streams.

    Args:
        steps: trial length. Default 100.
        response: fraction of ``steps`` at the end that forms the response window. Default 0.2.
        noise: per-step Gaussian noise std of the evidence. Default 1.0.
        coherences: absolute per-trial means to draw from. Default (0.25, 0.5, 1.0).

    Example::

        task = ContextTask()
        batch = task.sample(jax.random.key(0), 64)
        task.ideal_observer_score(batch)   # ≈ 0.99
    """

    name: ClassVar[str] = "context"
    steps: int = eqx.field(default=100, static=True)
    response: float = eqx.field(default=0.2, static=True)
    noise: float = eqx.field(default=1.0, static=True)
    coherences: tuple[float, ...] = eqx.field(default=(0.25, 0.5, 1.0), static=True, converter=as_tuple)

    def __check_init__(self):
        check_int("context", "steps", self.steps, minimum=2)
        if not isinstance(self.response, int | float) or not 0.0 < self.response < 1.0:
            raise InputError("context", None, f"response must be a fraction in (0, 1), got {self.response!r}")
        if not 1 <= self.response_steps < self.steps:
            raise InputError(
                "context",
                None,
                f"response={self.response!r} gives {self.response_steps} response steps, expected 1..{self.steps - 1}",
            )
        if isinstance(self.noise, bool) or not isinstance(self.noise, int | float) or not self.noise >= 0:
            raise InputError("context", None, f"noise must be a float >= 0, got {self.noise!r}")
        coh = self.coherences
        if (
            not isinstance(coh, tuple)
            or not coh
            or any(isinstance(c, bool) or not isinstance(c, int | float) or not c > 0 for c in coh)
        ):
            raise InputError(
                "context", None, f"coherences must be a non-empty sequence of floats > 0, got {self.coherences!r}"
            )

    @property
    def n_in(self) -> int:
        return 4

    @property
    def n_out(self) -> int:
        return 1

    @property
    def response_steps(self) -> int:
        """Length of the response window (the last steps of the trial)."""
        return int(round(self.response * self.steps))

    @property
    def evidence_steps(self) -> int:
        """Evidence is shown during ``[0, evidence_steps)``."""
        return self.steps - self.response_steps

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch:
        """Draw ``batch_size`` trials (jit-able with ``batch_size`` static; deterministic per key)."""
        B = check_batch_size("context.sample", batch_size)
        check_key("context.sample", key)
        T, Te = self.steps, self.evidence_steps
        k_coh, k_sign, k_ctx, k_noise = jax.random.split(key, 4)
        coh = jnp.asarray(self.coherences, jnp.float32)[jax.random.randint(k_coh, (B, 2), 0, len(self.coherences))]
        means = coh * jnp.where(jax.random.bernoulli(k_sign, 0.5, (B, 2)), 1.0, -1.0)
        ctx = jax.random.randint(k_ctx, (B,), 0, 2)
        evid = means[:, None, :] + self.noise * jax.random.normal(k_noise, (B, T, 2), jnp.float32)
        evid = jnp.where((jnp.arange(T) < Te)[None, :, None], evid, 0.0)
        ctx_in = jnp.broadcast_to(jax.nn.one_hot(ctx, 2, dtype=jnp.float32)[:, None, :], (B, T, 2))
        inputs = jnp.concatenate([evid, ctx_in], axis=-1).astype(jnp.float32)
        cued = jnp.take_along_axis(means, ctx[:, None], axis=1)  # (B, 1)
        in_window = (jnp.arange(T) >= Te).astype(jnp.float32)[None, :, None]
        targets = (jnp.sign(cued)[:, None, :] * in_window).astype(jnp.float32)
        mask = jnp.broadcast_to(in_window, (B, T, 1)).astype(jnp.float32)
        return TaskBatch(inputs, targets, mask)

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
        """Sign accuracy over the masked response window."""
        check_y("context.score", y, batch)
        hit = (jnp.sign(y) == batch.targets).astype(jnp.float32)
        return jnp.sum(batch.mask * hit) / jnp.maximum(jnp.sum(batch.mask), 1.0)

    def ideal_observer(self, batch: TaskBatch) -> Float[Array, " B"]:
        """Ideal observer's choice per trial: sign of the cued channel's sample mean over the evidence window."""
        x = batch.inputs
        ctx = jnp.argmax(x[:, 0, 2:4], axis=-1)
        mean = jnp.mean(x[:, : self.evidence_steps, 0:2], axis=1)  # (B, 2)
        return jnp.sign(jnp.take_along_axis(mean, ctx[:, None], axis=1)[:, 0])

    def ideal_observer_score(self, batch: TaskBatch) -> Float[Array, ""]:
        """Accuracy of :meth:`ideal_observer` on the batch's targets (same trials as the network's score).

        Example::

            task.ideal_observer_score(task.sample(jax.random.key(1), 4096))
        """
        choice = self.ideal_observer(batch)
        y = jnp.broadcast_to(choice[:, None, None], batch.targets.shape)
        return self.score(y, batch)
