"""The four tasks of arXiv:2606.18457 and their registry.

Example:
    >>> task = schurjax.tasks.get("flipflop", p_pulse=0.1)
    >>> batch = task.sample(jax.random.key(0), 32)
    >>> schurjax.tasks.names()
    ['context', 'copy', 'flipflop', 'sine']
"""

from __future__ import annotations

from typing import Any

from schurjax.tasks.base import Task, TaskBatch
from schurjax.tasks.context import ContextTask
from schurjax.tasks.copy import CopyTask
from schurjax.tasks.flipflop import FlipFlopTask
from schurjax.tasks.sine import SineTask

__all__ = ["Task", "TaskBatch", "CopyTask", "FlipFlopTask", "SineTask", "ContextTask", "REGISTRY", "get", "names"]

REGISTRY: dict[str, type[Task]] = {
    "copy": CopyTask,
    "flipflop": FlipFlopTask,
    "sine": SineTask,
    "context": ContextTask,
}


def names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(REGISTRY)


def get(name: str, **params: Any) -> Task:
    """Build a task by name with keyword parameters (defaults otherwise).

    Args:
        name: one of :func:`names` ("context", "copy", "flipflop", "sine").
        **params: the task's parameters, e.g. ``bits=3`` for "flipflop".

    Returns:
        The task object.

    Example:
        >>> get("copy", length=4).steps
        13
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"tasks.get: unknown task name {name!r}, expected one of {names()}")
    cls = REGISTRY[name]
    import dataclasses

    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"tasks.get: unknown parameter(s) {unknown} for task {name!r}, expected some of {known}")
    return cls(**params)
