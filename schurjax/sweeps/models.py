"""The models of a sweep: what the user named (a zoo entry, a saved file, or a model object with its task),
resolved into :class:`ModelSpec` s that carry the model, its task and its metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax._json import nonfinite_path, to_jsonable
from schurjax.errors import InputError

__all__ = ["ModelSpec", "resolve_models"]

_WEIGHTS = ("W_in", "W_rec", "b", "W_out", "b_out")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model to sweep: where it came from, the model itself and its task.

    Attributes:
        id: short unique id used in the table and file names (e.g. ``flipflop-0``).
        source: what the user gave (``zoo:flipflop/0``, a path, or ``object`` for a model passed in memory).
        model: the TanhRNN.
        task: the Task the model is evaluated on.
        metadata: the model's saved metadata (may be empty).
    """

    id: str
    source: str
    model: Any
    task: Any
    metadata: dict[str, Any]

    @property
    def seed(self) -> int | None:
        """The training seed from the metadata, when known."""
        s = self.metadata.get("seed")
        return int(s) if isinstance(s, int | np.integer) else None


def _get_task(name: str, params: dict[str, Any]) -> Any:
    """A built-in or registered task, ``neurogym:<env_id>`` or ``module:Name`` (see :func:`schurjax.tasks.get`)."""
    from schurjax import tasks

    try:
        return tasks.get(name, **params)
    except (ValueError, TypeError, ImportError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError("sweep", "task", detail.removeprefix("tasks.get: ")) from None


def _task_from_metadata(meta: dict[str, Any], where: str, task_override: str | None) -> Any:
    saved = meta.get("task") or meta.get("task_name")
    if isinstance(saved, dict):  # {"name": ..., "params": ...} as written by `schurjax train`
        params = dict(saved.get("params") or {})
        saved = saved.get("name")
    else:
        params = dict(meta.get("task_params") or {})
    name = task_override or saved
    if task_override and task_override != saved:
        params = {}
    if not name:
        raise InputError("sweep", "task", f"the metadata of {where} names no task; pass a task")
    return _get_task(name, params)


def check_fit(spec: ModelSpec) -> None:
    """Refuse a model with non-finite weights or task parameters, or whose sizes don't fit its task (one line)."""
    if not all(hasattr(spec.model, a) for a in _WEIGHTS):
        raise InputError(
            "sweep",
            "models",
            f"{spec.source}: a {type(spec.model).__name__} is not a model; expected an sj.RateRNN "
            "(or sj.TanhRNN): build one with sj.RateRNN.from_arrays(...) or sj.TanhRNN.from_torch(...)",
        )
    for attr in _WEIGHTS + (("h0",) if getattr(spec.model, "h0", None) is not None else ()):
        bad = int((~np.isfinite(np.asarray(getattr(spec.model, attr), dtype=np.float64))).sum())
        if bad:
            raise InputError(
                "sweep", "models", f"{spec.source}: {attr} holds {bad} NaN/inf entries; expected finite weights"
            )
    task = spec.task
    bad = nonfinite_path(to_jsonable(dict(task.params())))
    if bad is not None:
        raise InputError(
            "sweep",
            "models",
            f"{spec.source}: task {task.name!r} parameter {bad} is not finite; expected finite task parameters",
        )
    n_in, n_out = int(spec.model.W_in.shape[1]), int(spec.model.W_out.shape[0])
    if (n_in, n_out) != (int(task.n_in), int(task.n_out)):
        raise InputError(
            "sweep",
            "models",
            f"{spec.source}: sizes n_in={n_in}, n_out={n_out} don't fit task "
            f"{task.name!r} (n_in={task.n_in}, n_out={task.n_out})",
        )


def resolve_models(
    models: Sequence[Any], *, task: str | None = None, task_params: dict[str, Any] | None = None
) -> list[ModelSpec]:
    """Turn what the user named into :class:`ModelSpec` s (ids unique).

    Args:
        models: each a saved model path (``.eqx``, with its ``.json`` sidecar), ``"zoo:TASK/SEED"``, ``"zoo:TASK"``
            (every shipped seed of that task), a ``(TanhRNN, Task)`` pair (id ``<task>-m<i>``), a
            ``(TanhRNN, Task, id)`` triple, or a :class:`ModelSpec`.
        task: evaluate every model named by a string on this task (default: the task in its metadata).
        task_params: parameters of ``task`` (e.g. NeuroGym env arguments ``{"dt": 20, "timing": {"delay": 200}}``).

    Returns:
        One spec per model.

    Raises:
        InputError: a missing file, an unknown zoo task or seed, an unknown task, a model that doesn't fit its task.

    Example:
        >>> [s.id for s in resolve_models(["zoo:flipflop/0", "zoo:sine/1"])]
        ['flipflop-0', 'sine-1']
    """
    if isinstance(models, str | Path) or not isinstance(models, Sequence):
        models = [models]
    out: list[ModelSpec] = []
    for i, raw in enumerate(models):
        if isinstance(raw, ModelSpec):
            out.append(raw)
        elif isinstance(raw, tuple) and len(raw) in (2, 3):
            model, task_obj = raw[0], raw[1]
            mid = str(raw[2]) if len(raw) == 3 else f"{task_obj.name}-m{i}"
            out.append(ModelSpec(mid, "object", model, task_obj, {}))
        elif isinstance(raw, str | Path) and str(raw).startswith("zoo:"):
            out.extend(_resolve_zoo(str(raw), task))
        elif isinstance(raw, str | Path):
            out.append(_resolve_path(str(raw), task))
        else:
            raise InputError(
                "sweep",
                "models",
                f"[{i}] must be a path, 'zoo:TASK/SEED', a (TanhRNN, Task) pair or a "
                f"ModelSpec, got {type(raw).__name__}",
            )
    if not out:
        raise InputError("sweep", "models", "no model given; expected at least one")
    if task_params:
        if task is None:
            raise InputError("sweep", "task_params", f"{task_params!r} needs task= (the task they are parameters of)")
        override = _get_task(task, dict(task_params))
        out = [s if s.source == "object" else dataclasses.replace(s, task=override) for s in out]
    seen: dict[str, int] = {}
    unique = []
    for spec in out:
        if spec.id in seen:
            seen[spec.id] += 1
            spec = dataclasses.replace(spec, id=f"{spec.id}~{seen[spec.id]}")
        else:
            seen[spec.id] = 0
        check_fit(spec)
        unique.append(spec)
    return unique


def _resolve_zoo(raw: str, task_override: str | None) -> list[ModelSpec]:
    """``zoo:TASK[/SEED][@N][@alphaA]``: ids ``flipflop-0`` (n = 64, the default), ``flipflop-0-n128`` and
    ``flipflop-0-a0.2`` (the leaky family)."""
    from schurjax import zoo

    try:
        task_name, seed, n_hidden, alpha = zoo.parse_spec(raw)
    except ValueError as e:
        raise InputError("sweep", "models", str(e).splitlines()[0]) from None
    if alpha not in zoo.alphas():
        have = ", ".join(f"{a:g}" for a in zoo.alphas())
        raise InputError("sweep", "models", f"{raw!r}: the zoo has no models with alpha={alpha:g}; it has {have}")
    entries = [e for e in zoo.entries(n_hidden=n_hidden, alpha=alpha) if e.task == task_name]
    if not entries:
        known = sorted({e.task for e in zoo.entries(alpha=alpha)})
        if task_name in known:
            sizes = ", ".join(map(str, zoo.sizes(alpha=alpha)))
            raise InputError("sweep", "models", f"{raw!r}: the zoo has no n = {n_hidden} models; sizes are {sizes}")
        raise InputError("sweep", "models", f"{raw!r}: unknown zoo task {task_name!r}; the zoo has {', '.join(known)}")
    chosen = sorted(entries, key=lambda e: int(e.seed)) if seed is None else [e for e in entries if e.seed == seed]
    if not chosen:
        have = ", ".join(str(e.seed) for e in entries)
        raise InputError("sweep", "models", f"{raw!r} is not in the zoo; seeds of {task_name!r} are {have}")
    specs = []
    for e in chosen:
        meta = dict(zoo.metadata(e.task, seed=int(e.seed), n_hidden=n_hidden, alpha=alpha))
        meta.setdefault("seed", int(e.seed))
        meta.setdefault("task", e.task)
        task = _get_task(task_override, {}) if task_override and task_override != e.task else zoo.task(e.task)
        model = zoo.load(e.task, seed=int(e.seed), n_hidden=n_hidden, alpha=alpha)
        suffix = "" if n_hidden == zoo.DEFAULT_N_HIDDEN else f"-n{n_hidden}"
        suffix += "" if alpha == zoo.DEFAULT_ALPHA else f"-a{alpha:g}"
        source = zoo.format_spec(e.task, int(e.seed), n_hidden, alpha)
        specs.append(ModelSpec(f"{e.task}-{int(e.seed)}{suffix}", source, model, task, meta))
    return specs


def _resolve_path(raw: str, task_override: str | None) -> ModelSpec:
    from schurjax import checkpoint

    path = Path(raw)
    if path.is_dir():
        raise InputError("sweep", "models", f"{raw} is a folder; pass the model files in it (e.g. {raw}/*.eqx)")
    if not path.exists() and path.suffix != ".eqx" and path.with_suffix(".eqx").exists():
        path = path.with_suffix(".eqx")
    if not path.exists():
        raise InputError("sweep", "models", f"no such file: {raw}")
    try:
        model, meta = checkpoint.load_model(path)
    except (ValueError, TypeError) as e:
        raise InputError("sweep", "models", str(e).splitlines()[0]) from e
    meta = dict(meta or {})
    task = _task_from_metadata(meta, raw, task_override)
    return ModelSpec(path.stem, str(path), model, task, meta)
