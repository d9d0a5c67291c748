"""Task scores as sums over trials, so that a score can be recomputed on any resample of the trials.

A task score is a function of a few sums over trials: the R² of copy and sine generation needs each trial's squared
error and its target moments; the accuracy of flip-flop and context integration needs each trial's hits and the
entries that count. :class:`ScoreParts` holds the per-trial parts ``parts(y, batch) -> (B, p)`` (traced inside the
engine, ``evaluate(..., trial_stats=parts)``) and ``combine(sums) -> score`` (NumPy), with
``combine(parts(y, batch).sum(0)) == task.score(y, batch)``. A resample with trial multiplicities ``c`` gives
``combine(c @ parts)``. Tasks without parts get no interval on the score criterion (the point values stay).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from schurjax.tasks import ContextTask, CopyTask, FlipFlopTask, SineTask

__all__ = ["ScoreParts", "score_parts", "register", "PARTS"]


@dataclasses.dataclass(frozen=True)
class ScoreParts:
    """The per-trial parts of a task score and how they combine.

    Attributes:
        parts: ``(y (B, T, o), batch) -> (B, p)`` (JAX, traceable).
        combine: ``sums (..., p) -> score (...)`` (NumPy, vectorised over leading axes).
    """

    parts: Callable[[Any, Any], Any]
    combine: Callable[[np.ndarray], np.ndarray]


def _r2_parts(y, batch):
    m, t = batch.mask, batch.targets
    return jnp.stack(
        [
            jnp.sum(m * (y - t) ** 2, axis=(1, 2)),
            jnp.sum(m, axis=(1, 2)),
            jnp.sum(m * t, axis=(1, 2)),
            jnp.sum(m * t * t, axis=(1, 2)),
        ],
        axis=-1,
    )


def _r2_combine(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    n = np.maximum(s[..., 1], 1.0)
    sst = s[..., 3] - s[..., 2] ** 2 / n
    return np.clip(1.0 - s[..., 0] / np.maximum(sst, 1e-12), 0.0, 1.0)


def _hits_combine(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    return s[..., 0] / np.maximum(s[..., 1], 1.0)


def _flipflop_parts(y, batch):
    w = batch.mask * (batch.targets != 0)
    hit = (jnp.sign(y) == batch.targets).astype(y.dtype)
    return jnp.stack([jnp.sum(w * hit, axis=(1, 2)), jnp.sum(w, axis=(1, 2))], axis=-1)


def _context_parts(y, batch):
    hit = (jnp.sign(y) == batch.targets).astype(y.dtype)
    return jnp.stack([jnp.sum(batch.mask * hit, axis=(1, 2)), jnp.sum(batch.mask, axis=(1, 2))], axis=-1)


PARTS: dict[type, ScoreParts] = {
    CopyTask: ScoreParts(_r2_parts, _r2_combine),
    SineTask: ScoreParts(_r2_parts, _r2_combine),
    FlipFlopTask: ScoreParts(_flipflop_parts, _hits_combine),
    ContextTask: ScoreParts(_context_parts, _hits_combine),
}
"""Task class -> its score parts (the four built-in tasks)."""


def register(task_type: type, parts: ScoreParts) -> None:
    """Give a task class score parts, so that studies of its models get intervals on the score criterion.

    Example::

        register(MyTask, ScoreParts(my_parts, my_combine))
    """
    if not isinstance(task_type, type) or not isinstance(parts, ScoreParts):
        raise TypeError(f"register: expected a task class and a ScoreParts, got {task_type!r}, {parts!r}")
    PARTS[task_type] = parts


def score_parts(task: Any) -> ScoreParts | None:
    """The score parts of ``task`` (looked up by its class and its bases), or None.

    Example:
        >>> from schurjax import tasks
        >>> score_parts(tasks.get("copy")) is PARTS[CopyTask]
        True
    """
    for cls in type(task).__mro__:
        if cls in PARTS:
            return PARTS[cls]
    return None
