"""The four tasks of arXiv:2606.18457, NeuroGym tasks, your own tasks, and their registry.

Names resolve in this order: a registered name (the built-ins ``"context"``, ``"copy"``, ``"flipflop"``,
``"sine"`` and whatever :func:`register` added); ``"neurogym:<env_id>"`` (:func:`neurogym`); ``"module:Name"``
(:func:`load_spec`: your own task class or factory, registered under its ``name`` on first use). A task follows
the protocol of :class:`Task` (``name``, ``n_in``, ``n_out``, ``steps``, ``sample(key, B)``, ``score(y, batch)``,
``loss``, ``params()``).

- :mod:`~schurjax.tasks.protocol`: what schurjax needs from a task, and the check that a custom task provides it;
- :mod:`~schurjax.tasks.base`: the :class:`Task` base class, the masked MSE loss and shared helpers;
- :mod:`~schurjax.tasks.batch`: :class:`TaskBatch`, built from arrays or a file, and the check ``sj.evaluate`` runs;
- :mod:`~schurjax.tasks.copy`: fixed-length copy with autonomous replay;
- :mod:`~schurjax.tasks.flipflop`: N-bit flip-flop (Sussillo & Barak 2013);
- :mod:`~schurjax.tasks.sine`: sine generation cued by frequency;
- :mod:`~schurjax.tasks.context`: context-dependent integration (Mante et al. 2013);
- :mod:`~schurjax.tasks.ngym`: NeuroGym environments as schurjax tasks (whole trials, decision-period accuracy).

Example::

    task = schurjax.tasks.get("flipflop", p_pulse=0.1)
    batch = task.sample(jax.random.key(0), 32)
    schurjax.tasks.names()
    schurjax.tasks.register("ramp", Ramp)           # then tasks.get("ramp", steps=40)
    schurjax.tasks.get("mytasks:Ramp", steps=40)     # import from a module, or "path/to/file.py:Ramp"
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schurjax.errors import InputError
from schurjax.tasks.base import Task, TaskBatch, as_batch, masked_ce, masked_mse, masked_r2
from schurjax.tasks.context import ContextTask
from schurjax.tasks.copy import CopyTask
from schurjax.tasks.flipflop import FlipFlopTask
from schurjax.tasks.ngym import NeuroGymTask, neurogym
from schurjax.tasks.protocol import TaskLike, check_task
from schurjax.tasks.sine import SineTask

__all__ = [
    "Task",
    "TaskBatch",
    "TaskLike",
    "CopyTask",
    "FlipFlopTask",
    "SineTask",
    "ContextTask",
    "NeuroGymTask",
    "REGISTRY",
    "BUILTIN",
    "get",
    "names",
    "register",
    "load_spec",
    "from_record",
    "source_of",
    "neurogym",
    "as_batch",
    "check_task",
    "masked_mse",
    "masked_ce",
    "masked_r2",
]

REGISTRY: dict[str, Callable[..., Any]] = {
    "copy": CopyTask,
    "flipflop": FlipFlopTask,
    "sine": SineTask,
    "context": ContextTask,
}
"""Task name -> factory (a class or a function taking the task's keyword parameters)."""

BUILTIN = ("context", "copy", "flipflop", "sine")
"""The paper's tasks; :func:`register` does not replace them."""


def names() -> list[str]:
    """Registered task names, sorted (the built-ins and those added by :func:`register`)."""
    return sorted(REGISTRY)


def register(name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> Callable[..., Any]:
    """Make ``tasks.get(name, **params)`` build ``factory(**params)``: sweeps, the CLI and reports then accept it.

    Args:
        name: the task's name (no ``":"``; it should equal the built task's ``name``).
        factory: a :class:`Task` subclass or any callable returning an object that follows the task protocol.
        overwrite: replace an earlier registration of ``name`` (never a built-in task).

    Returns:
        ``factory``.

    Example::

        sj.tasks.register("ramp", Ramp)
        sj.tasks.get("ramp", steps=40).steps
    """
    if not isinstance(name, str) or not name.strip() or ":" in name or name != name.strip():
        raise InputError(
            "tasks.register", None, f"name must be a non-empty str without ':' or outer spaces, got {name!r}"
        )
    if not callable(factory):
        raise InputError(
            "tasks.register", None, f"factory must be a Task class or a callable, got {type(factory).__name__}"
        )
    if name in BUILTIN and REGISTRY.get(name) is not factory:
        raise InputError("tasks.register", None, f"{name!r} is a built-in task; expected another name")
    if name in REGISTRY and REGISTRY[name] is not factory and not overwrite:
        raise InputError(
            "tasks.register",
            None,
            f"{name!r} is already registered to {_describe(REGISTRY[name])}; pass overwrite=True to replace it",
        )
    REGISTRY[name] = factory
    return factory


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def load_spec(spec: str) -> Callable[..., Any]:
    """Import a task class or factory from ``"module:Name"`` (or ``"path/to/file.py:Name"``), as ``--task`` does.

    The module is imported from ``sys.path``, then from the current folder. ``Name`` may be dotted
    (``"pkg.tasks:Suite.Ramp"``). A task *instance* is accepted too: it becomes a factory that returns it.

    Args:
        spec: ``"module:Name"``.

    Returns:
        The factory (call it with the task's keyword parameters).

    Raises:
        ValueError: one line: a malformed spec, a module that cannot be imported (with the reason), a missing
            attribute, or one that is neither callable nor a task.

    Example::

        Ramp = sj.tasks.load_spec("mytasks:Ramp"); task = Ramp(steps=40)
    """
    w = "tasks.load_spec"
    if not isinstance(spec, str) or spec.count(":") < 1 or not all(spec.rpartition(":")[::2]):
        raise InputError(w, None, f"spec must be 'module:Name' (e.g. 'mytasks:Ramp' or 'tasks.py:Ramp'), got {spec!r}")
    mod_name, _, attr = spec.rpartition(":")
    module = _import(w, spec, mod_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(
                k
                for k, v in vars(module).items()
                if isinstance(v, type) and issubclass(v, Task) and v.__module__ == module.__name__
            )
            raise InputError(
                w, None, f"{mod_name!r} has no attribute {attr!r} (from {spec!r}); its Task classes: {found or 'none'}"
            )
        obj = getattr(obj, part)
    if isinstance(obj, type):
        if issubclass(obj, Task) or all(hasattr(obj, m) for m in _PROTOCOL):
            return obj
        raise InputError(
            w,
            None,
            f"{spec!r} is the class {obj.__qualname__}, which is not a Task (no {_missing(obj)}); "
            "expected a Task class",
        )
    if _is_task(obj):
        return _instance_factory(obj)
    raise InputError(
        w,
        None,
        f"{spec!r} is a {type(obj).__name__}; expected a Task class (a subclass of sj.tasks.Task or a class "
        "with the task protocol), never a function",
    )


_PROTOCOL = ("name", "n_in", "n_out", "steps", "sample", "score", "loss", "params")


def _missing(cls: type) -> str:
    return ", ".join(m for m in _PROTOCOL if not hasattr(cls, m))


def _is_task(obj: Any) -> bool:
    return not isinstance(obj, type) and all(hasattr(obj, m) for m in ("name", "n_in", "sample", "score"))


_SOURCE = re.compile(r"[A-Za-z0-9_./-]{1,200}:[A-Za-z_][A-Za-z0-9_.]{0,100}")
"""What a recorded task source may look like to be quoted back (``mytasks:Hold``, ``tasks/hold.py:Hold``)."""


def source_of(task: Any, spec: str | None = None) -> str | None:
    """Where your own task's code is, as ``--task`` names it (``"mytasks:Hold"``), for a file to record.

    A file records it as text only: :func:`from_record` never imports it, it tells the user which ``--task`` to
    pass. None for the built-in and NeuroGym tasks (they resolve by name) and where the code cannot be named
    (a class defined in ``__main__``).

    Args:
        task: the task object.
        spec: the ``"module:Name"`` or ``"file.py:Name"`` the user named it by (preferred when given).

    Example::

        source_of(get("copy"))                       # None
        source_of(hold, "mytasks:Hold")              # "mytasks:Hold"
    """
    if isinstance(spec, str) and ":" in spec and not spec.startswith("neurogym:") and _SOURCE.fullmatch(spec):
        return spec
    cls = type(task)
    mod, qual = getattr(cls, "__module__", ""), getattr(cls, "__qualname__", "")
    if isinstance(task, NeuroGymTask) or mod.startswith("schurjax") or mod == "__main__" or "<" in qual:
        return None
    text = f"{mod}:{qual}"
    return text if _SOURCE.fullmatch(text) else None


def from_record(name: Any, params: Any = None, *, where: str = "tasks.from_record", source: Any = None) -> Any:
    """Build a task named inside a file (a model's sidecar, a run manifest, a study config): never imports code.

    Only registered names (:func:`names`) and ``"neurogym:<env_id>"`` resolve. A ``"module:Name"`` or
    ``"file.py:Name"`` read from a file is refused: user code is imported only when the user names it in this
    call (``tasks.get``, ``--task``), after which the task is registered under its name and resolves here too.

    Args:
        name: the recorded task name.
        params: its recorded keyword parameters (a dict, or None).
        where: the file or record the name came from (for the error message).
        source: the recorded ``module:Name`` of your own task (:func:`source_of`): never imported, only quoted
            in the refusal as the ``--task`` to pass.

    Returns:
        The task.

    Raises:
        ValueError: one line: a name that would import code, an unknown name, bad parameters.

    Example::

        from_record("copy", {"length": 4}).steps
    """
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise InputError(where, None, f"task params must be a JSON object, got {type(params).__name__}")
    if not isinstance(name, str) or not name:
        raise InputError(where, None, f"task name must be a non-empty str, got {name!r}")
    if name not in REGISTRY and not name.startswith("neurogym:"):
        if ":" in name:
            raise InputError(
                where,
                None,
                f"task {name!r} names code to import; a task named in a file resolves only to a "
                f"registered task ({', '.join(names())}) or 'neurogym:<env_id>'; to use your own task, name it "
                "yourself (--task module:Name, or pass the task object)",
            )
        if isinstance(source, str) and _SOURCE.fullmatch(source) and not source.startswith("neurogym:"):
            raise InputError(
                where,
                None,
                f"task {name!r} is your own task from {source!r}, whose code a file never imports; pass "
                f"--task {source} to import it (or register it first in Python: sj.tasks.register)",
            )
        raise InputError(
            where,
            None,
            f"unknown task name {name!r}, expected one of {names()} or 'neurogym:<env_id>' "
            "(register your own task first, or pass --task module:Name)",
        )
    try:
        return get(name, **params)
    except (ValueError, TypeError, ImportError) as err:
        raise InputError(where, None, f"{_first(err).removeprefix('tasks.get: ')}") from None


def _instance_factory(task: Any) -> Callable[..., Any]:
    def factory(**params: Any) -> Any:
        if params and params != task.params():
            raise InputError(
                "tasks.get",
                None,
                f"{task.name!r} was imported as a task instance; it takes no other "
                f"parameters than its own {task.params()}, got {params}",
            )
        return task

    factory.__qualname__ = f"<instance {task.name}>"
    return factory


def _import(w: str, spec: str, mod_name: str):
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise InputError(w, None, f"no file {mod_name!r} (from {spec!r})")
        key = f"schurjax_user_task_{abs(hash(str(path.resolve())))}"
        if key in sys.modules:
            return sys.modules[key]
        loader_spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[key] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - any failure in the user's file, said in one line
            del sys.modules[key]
            raise InputError(w, None, f"importing {mod_name!r} failed: {type(err).__name__}: {_first(err)}") from None
        return module
    try:
        try:
            return importlib.import_module(mod_name)
        except ModuleNotFoundError as err:
            top = mod_name.split(".")[0]
            if err.name != top or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())  # `schurjax --task mytasks:Ramp` run next to mytasks.py
            try:
                return importlib.import_module(mod_name)
            finally:
                sys.path.remove(os.getcwd())
    except ModuleNotFoundError as err:
        raise InputError(
            w,
            None,
            f"cannot import {mod_name!r} (from {spec!r}): {_first(err)}; expected a module on "
            "sys.path or in the current folder",
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure in the user's module, said in one line
        raise InputError(w, None, f"importing {mod_name!r} failed: {type(err).__name__}: {_first(err)}") from None


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def get(name: str, **params: Any) -> Any:
    """Build a task by name with keyword parameters (defaults otherwise).

    Args:
        name: a registered name (:func:`names`), ``"neurogym:<env_id>"`` or ``"module:Name"`` (imported with
            :func:`load_spec` and registered under the built task's ``name``, so that ``get(task.name,
            **task.params())`` rebuilds it later in the process).
        **params: the task's parameters, e.g. ``bits=3`` for "flipflop"; finite.

    Returns:
        The task (checked against the task protocol).

    Raises:
        ValueError: one line naming the unknown task, the unknown or non-finite parameter, or the missing member.

    Example::

        get("copy", length=4).steps
        get("neurogym:GoNogo-v0").n_out
    """
    w = "tasks.get"
    if not isinstance(name, str) or not name:
        raise InputError(w, None, f"name must be a task name, 'neurogym:<env_id>' or 'module:Name', got {name!r}")
    for k, v in params.items():
        _check_param(w, name, k, v)
    spec = None
    if name in REGISTRY:
        factory = REGISTRY[name]
    elif name.startswith("neurogym:"):
        factory = neurogym
        params = {"env_id": name[len("neurogym:") :], **params}
    elif ":" in name:
        spec, factory = name, load_spec(name)
    else:
        raise InputError(
            w, None, f"unknown task name {name!r}, expected one of {names()}, 'neurogym:<env_id>' or 'module:Name'"
        )
    accepted = _accepted(factory)
    if accepted is not None:
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            label = name if spec is None else spec
            raise InputError(w, None, f"unknown parameter(s) {unknown} for task {label!r}, expected some of {accepted}")
    try:
        task = factory(**params)
    except TypeError as err:
        raise InputError(w, None, f"building task {name!r} with {params} failed: {_first(err)}") from None
    task = check_task(task, w)
    if spec is not None:
        if REGISTRY.get(task.name, factory) is not factory and not _rebuilds(REGISTRY[task.name], task):
            raise InputError(
                w,
                None,
                f"the task from {spec!r} is named {task.name!r}, which is already registered to "
                f"{_describe(REGISTRY[task.name])}; expected another name",
            )
        if ":" not in task.name:
            REGISTRY.setdefault(task.name, factory)
    return task


def _rebuilds(factory: Callable[..., Any], task: Any) -> bool:
    """Whether ``factory(**task.params())`` gives back ``task`` (then a second spec of the same task is no clash)."""
    try:
        return bool(factory(**task.params()) == task)
    except Exception:  # noqa: BLE001 - any failure means "not the same task"
        return False


def _accepted(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword parameters ``factory`` accepts, or None when it takes ``**kwargs``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            out.append(p.name)
    return out


def _check_param(w: str, task: str, key: str, value: Any, path: str | None = None) -> None:
    import math
    import numbers

    path = path or key
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(float(value)):
        raise InputError(w, None, f"parameter {path} of task {task!r} must be finite, got {value!r}")
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_param(w, task, key, v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_param(w, task, key, v, f"{path}[{k!r}]")
