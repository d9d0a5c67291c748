"""The models a sweep, a study or the command works on: what the user named (a zoo entry, a saved file, or a
model object with its task) resolved into :class:`ModelSpec` s that carry the model, its task and its metadata;
and the identities that results are keyed by (:func:`model_fingerprint`, :func:`task_params`,
:func:`task_identity`)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax.errors import InputError
from schurjax.store._json import canonical, loads, nonfinite_path, to_jsonable

__all__ = ["ModelSpec", "resolve_models", "model_fingerprint", "task_params", "task_identity"]

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


def _task_from_metadata(meta: dict[str, Any], where: str, task_override: str | None, fallback: Any = None) -> Any:
    saved = meta.get("task") or meta.get("task_name")
    source = None
    if isinstance(saved, dict):  # {"name": ..., "params": ...[, "source": "module:Name"]} (train, import)
        params = dict(saved.get("params") or {})
        saved, source = saved.get("name"), saved.get("source")
    else:
        params = dict(meta.get("task_params") or {})
    if task_override:
        # named by the user in this call: may import their code (module:Name); the recorded params of that task
        same = task_override == saved or (isinstance(source, str) and task_override == source)
        return _get_task(task_override, params if same else {})
    if not saved and fallback is not None:
        return fallback  # a trial file's trials: the loss needs no task, the score columns stay empty
    if not saved:
        raise InputError("sweep", "task", f"the metadata of {where} names no task; pass a task (or --trials-file)")
    from schurjax import tasks

    try:  # named inside a file: registered tasks and NeuroGym ids only, never an import
        return tasks.from_record(saved, params, where=f"{where}: its metadata", source=source)
    except ValueError as e:
        raise InputError("sweep", "models", str(e).splitlines()[0]) from None


def _pair_task(i: int, task: Any) -> Any:
    """The task of a ``(model, task)`` pair: a task object, or a name given here (resolved like ``task=``)."""
    from schurjax import tasks

    if isinstance(task, str):
        return _get_task(task, {})
    try:
        return tasks.check_task(task, "sweep")
    except ValueError as e:
        detail = str(e).splitlines()[0].removeprefix("sweep: ")
        raise InputError("sweep", "models", f"[{i}] needs a task object or name as its second item: {detail}") from None


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
    models: Sequence[Any],
    *,
    task: str | None = None,
    task_params: dict[str, Any] | None = None,
    fallback_task: Any = None,
) -> list[ModelSpec]:
    """Turn what the user named into :class:`ModelSpec` s (ids unique).

    Args:
        models: each a saved model path (``.eqx``, with its ``.json`` sidecar), ``"zoo:TASK/SEED"``, ``"zoo:TASK"``
            (every shipped seed of that task), a ``(TanhRNN, Task)`` pair (id ``<task>-m<i>``), a
            ``(TanhRNN, Task, id)`` triple, or a :class:`ModelSpec`.
        task: evaluate every model named by a string on this task (default: the task in its metadata).
        task_params: parameters of ``task`` (e.g. NeuroGym env arguments ``{"dt": 20, "timing": {"delay": 200}}``);
            without ``task``, they change the parameters of each saved model's own task.
        fallback_task: the task of a saved model whose metadata names none (a trial file's task), else an error.

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
            model, task_obj = raw[0], _pair_task(i, raw[1])
            if not all(hasattr(model, a) for a in _WEIGHTS) or not hasattr(model, "with_recurrent"):
                raise InputError(
                    "sweep",
                    "models",
                    f"[{i}] holds a {type(model).__name__} where a TanhRNN or RateRNN belongs (convert a torch "
                    "module with sj.TanhRNN.from_torch)",
                )
            mid = raw[2] if len(raw) == 3 else f"{task_obj.name}-m{i}"
            if not isinstance(mid, str):
                raise InputError("sweep", "models", f"[{i}]: the id must be a str, got {type(mid).__name__}")
            out.append(ModelSpec(mid, "object", model, task_obj, {}))
        elif isinstance(raw, str | Path) and str(raw).startswith("zoo:"):
            out.extend(_resolve_zoo(str(raw), task))
        elif isinstance(raw, str | Path):
            out.append(_resolve_path(str(raw), task, fallback_task))
        else:
            raise InputError(
                "sweep",
                "models",
                f"[{i}] must be a path, 'zoo:TASK/SEED', a (TanhRNN, Task) pair or a "
                f"ModelSpec, got {type(raw).__name__}",
            )
    if not out:
        raise InputError("sweep", "models", "no model given; expected at least one")
    if task_params and task is not None:
        override = _get_task(task, dict(task_params))
        out = [s if s.source == "object" else dataclasses.replace(s, task=override) for s in out]
    elif task_params:  # each model's own recorded task, with these parameters changed
        out = [
            s
            if s.source == "object"
            else dataclasses.replace(s, task=_get_task(s.task.name, {**s.task.params(), **dict(task_params)}))
            for s in out
        ]
    seen: dict[str, int] = {}
    unique = []
    for spec in out:
        from schurjax.store._safe_io import check_name

        check_name("sweep", "models", spec.id)  # ids name files (schur/<id>.npz, figures/<id>_*.png)
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


def _resolve_path(raw: str, task_override: str | None, fallback: Any = None) -> ModelSpec:
    from schurjax.store import checkpoint

    path = Path(raw)
    if path.is_dir():
        raise InputError("sweep", "models", f"{raw} is a folder; pass the model files in it (e.g. {raw}/*.eqx)")
    if not path.exists() and path.suffix != ".eqx" and path.with_suffix(".eqx").exists():
        path = path.with_suffix(".eqx")
    if not path.exists():
        raise InputError("sweep", "models", f"no such file: {raw}")
    _check_declared_sizes(path)
    try:
        model, meta = checkpoint.load_model(path)
    except (ValueError, TypeError) as e:
        raise InputError("sweep", "models", str(e).splitlines()[0]) from e
    meta = dict(meta or {})
    task = _task_from_metadata(meta, raw, task_override, fallback)
    return ModelSpec(path.stem, str(path), model, task, meta)


def _check_declared_sizes(path: Path) -> None:
    """Refuse a sidecar whose sizes the ``.eqx`` cannot hold, or that cannot fit in memory, before anything is
    allocated (an edited ``n_hidden = 1e6`` in a 1 KB sidecar)."""
    import numbers

    from schurjax.runtime.environment import available_memory

    side = path.with_suffix(".json")
    try:
        sizes = loads(side.read_bytes()).get("sizes")
        dims = [sizes[k] for k in ("n_in", "n_hidden", "n_out")]
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return  # load_model says what is wrong with the sidecar
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and 0 <= d < 2**31 for d in dims):
        raise InputError("sweep", "models", f"{side}: sizes must be non-negative ints, got {sizes!r}")
    n_in, n, n_out = (int(d) for d in dims)
    values = n * n + n * (n_in + 1) + n_out * (n + 1)
    if 4 * values > path.stat().st_size:
        raise InputError(
            "sweep",
            "models",
            f"{side}: sizes n_in={n_in}, n_hidden={n}, n_out={n_out} declare {4 * values:,} bytes of weights but "
            f"{path.name} holds {path.stat().st_size:,}; expected the sidecar written with the model",
        )
    need, have = 8 * 24 * n * n, available_memory()
    if need > have // 2:
        raise InputError(
            "sweep",
            "models",
            f"{path}: n_hidden={n} needs ~{need / 2**30:.1f} GiB to analyse, more than the "
            f"{have / 2**31:.1f} GiB this machine can spare",
        )


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a model's weights and step, to tell models apart.

    The float32 bytes of W_in, W_rec, b, W_out, b_out; for a model that is not the paper's tanh RNN also its
    ``alpha``, ``nonlinearity``, ``form`` and learned ``h0``, so that two networks with equal weights but another
    step never share results (a TanhRNN's fingerprint is what it always was).
    """
    h = hashlib.sha256()
    for name in ("W_in", "W_rec", "b", "W_out", "b_out"):
        a = np.ascontiguousarray(np.asarray(getattr(model, name), dtype=np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    step = (float(getattr(model, "alpha", 1.0)), getattr(model, "nonlinearity", "tanh"), getattr(model, "form", "rate"))
    h0 = getattr(model, "h0", None)
    if step != (1.0, "tanh", "rate") or h0 is not None:
        h.update(f"step alpha={step[0]!r} nonlinearity={step[1]} form={step[2]}".encode())
        if h0 is not None:
            h.update(b"h0" + np.ascontiguousarray(np.asarray(h0, dtype=np.float32)).tobytes())
    return h.hexdigest()


def task_params(task: Any) -> dict[str, Any]:
    """The task's parameters as JSON-able values (they are part of its identity: never guessed or dropped)."""
    return to_jsonable(dict(task.params()))


def task_identity(task: Any) -> tuple[str, str]:
    """``(name, canonical params JSON)`` of a task: models share a batch only when both are equal."""
    return str(task.name), canonical(task_params(task))
