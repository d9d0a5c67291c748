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

from schurjax.errors import InputError
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
        raise InputError(
            where,
            None,
            f"a task must have {', '.join(_MEMBERS)}; {kind} is missing {', '.join(missing)} "
            "(subclass sj.tasks.Task to inherit loss and params)",
        )
    if not isinstance(task.name, str) or not task.name:
        raise InputError(where, None, f"task.name must be a non-empty str, got {task.name!r} ({kind})")
    for attr in ("n_in", "n_out", "steps"):
        v = getattr(task, attr)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise InputError(where, None, f"task.{attr} must be an int >= 1, got {v!r} ({kind} {task.name!r})")
    for attr in ("sample", "score", "loss", "params"):
        if not callable(getattr(task, attr)):
            raise InputError(where, None, f"task.{attr} must be callable ({kind} {task.name!r})")
    if loss_type(task) not in ("mse", "ce", "custom"):
        raise InputError(
            where,
            None,
            f"task.loss_type must be 'mse', 'ce' or 'custom', got {loss_type(task)!r} ({kind} {task.name!r})",
        )
    if loss_type(task) == "custom" and not callable(getattr(task, "trial_loss", None)):
        raise InputError(
            where, None, f"task.loss_type is 'custom' but {kind} {task.name!r} has no trial_loss(y, batch)"
        )
    params = task.params()
    if not isinstance(params, dict):
        raise InputError(where, None, f"task.params() must return a dict, got {type(params).__name__} ({task.name!r})")
    if not isinstance(task, eqx.Module):
        try:
            hash(task)
        except TypeError:
            raise InputError(
                where,
                None,
                f"task {task.name!r} ({kind}) must be hashable: make it an eqx.Module with "
                "static fields or a frozen dataclass",
            ) from None
    return task


def _is_user_task(task: Any) -> bool:
    return not type(task).__module__.startswith("schurjax.")


def _user_failure(task: Any, method: str, where: str, err: BaseException) -> Exception:

    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    cls = type(task).__qualname__
    return InputError(
        where, "task", f"your task {cls} ({task.name!r}): {method} failed: {type(err).__name__}: {text}"[:400]
    )


def checked_sample(task: Any, key: Any, batch_size: int, where: str) -> TaskBatch:
    """``task.sample(key, batch_size)``, checked: a TaskBatch of exactly ``batch_size`` trials of the task's sizes,
    finite, with at least one step that counts in the loss. A user task's failure (an exception, a wrong shape or
    length, NaN, a dict or tuple) is an :class:`~schurjax.errors.InputError` naming its class and method.

    Example::

        batch = checked_sample(task, jax.random.key(0), 8, "sweep")
    """
    import numpy as np

    from schurjax.tasks.batch import as_batch

    user = _is_user_task(task)
    try:
        batch = task.sample(key, batch_size)
    except Exception as err:  # noqa: BLE001 - a user's sample that raises is the user's error
        if not user:
            raise
        raise _user_failure(task, f"sample(key, {batch_size})", where, err) from None
    try:
        as_batch(batch, f"{type(task).__qualname__}.sample", task=task)
    except ValueError as err:
        if not user:
            raise
        raise _user_failure(task, f"sample(key, {batch_size})", where, err) from None
    got = int(np.shape(batch.inputs)[0])
    if got != batch_size:
        raise InputError(
            where,
            "task",
            f"task {task.name!r} ({type(task).__qualname__}): sample(key, {batch_size}) returned {got} trials; "
            f"expected exactly {batch_size}",
        )
    if not np.any(np.asarray(batch.mask) > 0):
        raise InputError(
            where,
            "task",
            f"task {task.name!r} ({type(task).__qualname__}): the mask of its batch is all zero, so no step counts "
            "in the loss (every loss is 0 and every relative change undefined); expected a mask with some steps > 0",
        )
    return batch


def check_outputs(task: Any, model: Any, batch: TaskBatch, where: str) -> None:
    """Run a user task's ``loss`` and ``score`` once on the unablated model's outputs: each must return one finite
    number (a user task is checked here, so that its failure is named as its own, never as schurjax's)."""
    import jax
    import numpy as np

    if not _is_user_task(task):
        return
    y = jax.vmap(model)(batch.inputs)
    for method in ("loss", "score"):
        try:
            v = np.asarray(getattr(task, method)(y, batch))
        except Exception as err:  # noqa: BLE001 - the user's code failed
            raise _user_failure(task, f"{method}(y, batch)", where, err) from None
        if v.shape != () or not np.issubdtype(v.dtype, np.number):
            raise InputError(
                where,
                "task",
                f"your task {type(task).__qualname__} ({task.name!r}): {method}(y, batch) returned "
                f"{'shape ' + str(v.shape) if v.shape else v.dtype}; expected one number",
            )
        if not np.isfinite(v):
            raise InputError(
                where,
                "task",
                f"your task {type(task).__qualname__} ({task.name!r}): {method}(y, batch) of the unablated model "
                f"is {float(v)!r}; expected a finite number",
            )
