"""The task protocol: what schurjax needs from a task, and the check that a custom task provides it.

Any object with these members works wherever a built-in task does (``sj.evaluate(..., task=)``, the sweep, the
CLI's ``--task module:Name``, the report); subclassing :class:`schurjax.tasks.Task` gives ``loss``, ``params`` and
the finite-parameter check for free.

Example::

    check_task(sj.tasks.get("copy"), "mine").steps
"""

from __future__ import annotations

import numbers
from typing import Any, Protocol, runtime_checkable

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.tasks.base import TaskBatch

__all__ = ["TaskLike", "check_task", "loss_type"]


@runtime_checkable
class TaskLike(Protocol):
    """Structural type of a task (see :class:`schurjax.tasks.Task` for the meaning of each member)."""

    name: str
    n_in: int
    n_out: int
    steps: int

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch: ...

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]: ...

    def loss(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]: ...

    def params(self) -> dict[str, Any]: ...


def loss_type(task: Any) -> str:
    """A task's declared loss type: its ``loss_type`` (``"mse"``, ``"ce"`` or ``"custom"``), ``"mse"`` when it has
    none.

    Example::

        loss_type(sj.tasks.get("copy"))     # 'mse'
    """
    return getattr(task, "loss_type", "mse")


_MEMBERS = ("name", "n_in", "n_out", "steps", "sample", "score", "loss", "params")


def check_task(task: Any, where: str) -> Any:
    """Return ``task`` if it follows the task protocol, else raise a one-line ValueError naming the member.

    Checked: every member of :class:`TaskLike` exists; ``name`` is a non-empty str; ``n_in``, ``n_out``, ``steps``
    are ints >= 1; ``sample``, ``score``, ``loss``, ``params`` are callable; ``params()`` is a dict; ``loss_type``,
    where the task has one, is ``"mse"``, ``"ce"`` or ``"custom"`` (which needs a callable ``trial_loss``; a task
    without it counts as ``"mse"``); the task is
    hashable (``sj.evaluate`` passes it to a compiled function as a static argument) unless it is an
    ``eqx.Module``.

    Example::

        task = check_task(factory(**params), "tasks.get")
    """
    kind = type(task).__name__
    missing = [m for m in _MEMBERS if not hasattr(task, m)]
    if missing:
        raise ValueError(
            f"{where}: a task must have {', '.join(_MEMBERS)}; {kind} is missing {', '.join(missing)} "
            "(subclass sj.tasks.Task to inherit loss and params)"
        )
    if not isinstance(task.name, str) or not task.name:
        raise ValueError(f"{where}: task.name must be a non-empty str, got {task.name!r} ({kind})")
    for attr in ("n_in", "n_out", "steps"):
        v = getattr(task, attr)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{where}: task.{attr} must be an int >= 1, got {v!r} ({kind} {task.name!r})")
    for attr in ("sample", "score", "loss", "params"):
        if not callable(getattr(task, attr)):
            raise ValueError(f"{where}: task.{attr} must be callable ({kind} {task.name!r})")
    if loss_type(task) not in ("mse", "ce", "custom"):
        raise ValueError(
            f"{where}: task.loss_type must be 'mse', 'ce' or 'custom', got {loss_type(task)!r} ({kind} {task.name!r})"
        )
    if loss_type(task) == "custom" and not callable(getattr(task, "trial_loss", None)):
        raise ValueError(f"{where}: task.loss_type is 'custom' but {kind} {task.name!r} has no trial_loss(y, batch)")
    params = task.params()
    if not isinstance(params, dict):
        raise ValueError(f"{where}: task.params() must return a dict, got {type(params).__name__} ({task.name!r})")
    if not isinstance(task, eqx.Module):
        try:
            hash(task)
        except TypeError:
            raise ValueError(
                f"{where}: task {task.name!r} ({kind}) must be hashable: make it an eqx.Module with "
                "static fields or a frozen dataclass"
            ) from None
    return task
