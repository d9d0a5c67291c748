"""Small trained tanh RNNs shipped with schurjax: the four tasks of arXiv:2606.18457 × seeds 0..3, n = 64 and 128.

Files live in ``schurjax/zoo/models/<task>_seed<seed>.eqx`` (n = 64, the default size) and
``<task>_n<n>_seed<seed>.eqx`` (other sizes), each with a JSON sidecar (task name and parameters, training config,
held-out loss and score, the ideal observer's score for "context", package version). They are built by
``python -m schurjax.zoo build`` (see :mod:`schurjax.zoo.build`), reproducibly from the seeds.

A zoo model is named by a spec ``zoo:TASK[/SEED][@N]``: ``zoo:flipflop/0`` is the n = 64 model of seed 0,
``zoo:flipflop/0@128`` its n = 128 sibling, ``zoo:flipflop`` every seed (see :func:`parse_spec`).

Example:
    >>> import schurjax
    >>> model = schurjax.zoo.load("flipflop", seed=0)                 # n = 64
    >>> big = schurjax.zoo.load("flipflop", seed=0, n_hidden=128)
    >>> model.n_hidden, big.n_hidden, schurjax.zoo.task("flipflop").name
    (64, 128, 'flipflop')
    >>> [(e.task, e.seed, e.n_hidden) for e in schurjax.zoo.entries()][:2]
    [('context', 0, 64), ('context', 1, 64)]
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import functools
import json
import numbers
import re
from pathlib import Path
from typing import Any

from schurjax.rnn import TanhRNN
from schurjax.tasks.base import Task

__all__ = [
    "MODELS_DIR",
    "DEFAULT_N_HIDDEN",
    "ZooEntry",
    "entries",
    "sizes",
    "load",
    "metadata",
    "task",
    "path_for",
    "parse_spec",
    "format_spec",
]

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_N_HIDDEN = 64
"""The size that ``load``, ``metadata`` and a spec without ``@N`` mean."""

_NAME = re.compile(r"^(?P<task>[a-z0-9]+(?:_[a-z0-9]+)*?)(?:_n(?P<n>\d+))?_seed(?P<seed>\d+)\.json$")
_SPEC = re.compile(r"^zoo:(?P<task>[a-z0-9_]+)(?:/(?P<seed>\d+))?(?:@(?P<n>\d+))?$")


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One shipped model: its task name, seed, hidden size, ``.eqx`` path and metadata (the JSON sidecar)."""

    task: str
    seed: int
    n_hidden: int
    path: Path
    metadata: dict[str, Any] = dataclasses.field(repr=False, compare=False)


def path_for(task: str, seed: int, root: Path | None = None, n_hidden: int = DEFAULT_N_HIDDEN) -> Path:
    """Path of the ``.eqx`` file of ``(task, seed, n_hidden)`` under ``root`` (default: the shipped models).

    Example:
        >>> path_for("copy", 1).name, path_for("copy", 1, n_hidden=128).name
        ('copy_seed1.eqx', 'copy_n128_seed1.eqx')
    """
    size = "" if int(n_hidden) == DEFAULT_N_HIDDEN else f"_n{int(n_hidden)}"
    return (MODELS_DIR if root is None else Path(root)) / f"{task}{size}_seed{int(seed)}.eqx"


@functools.lru_cache(maxsize=1)
def _scan() -> tuple[ZooEntry, ...]:
    out = []
    for side in sorted(MODELS_DIR.glob("*.json")):
        m = _NAME.match(side.name)
        if m is None or not side.with_suffix(".eqx").is_file():
            continue
        n = DEFAULT_N_HIDDEN if m["n"] is None else int(m["n"])
        out.append(ZooEntry(m["task"], int(m["seed"]), n, side.with_suffix(".eqx"), json.loads(side.read_text())))
    return tuple(sorted(out, key=lambda e: (e.n_hidden, e.task, e.seed)))


def entries(n_hidden: int | None = None) -> list[ZooEntry]:
    """The shipped models, sorted by size, task name and seed (all sizes, or only ``n_hidden``).

    Example:
        >>> sorted({e.task for e in entries()})
        ['context', 'copy', 'flipflop', 'sine']
        >>> sorted({e.n_hidden for e in entries()})
        [64, 128]
    """
    if n_hidden is None:
        return list(_scan())
    return [e for e in _scan() if e.n_hidden == n_hidden]


def sizes() -> list[int]:
    """The hidden sizes the zoo ships, ascending (``[64, 128]``)."""
    return sorted({e.n_hidden for e in _scan()})


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _entry(name: str, seed: int, n_hidden: int, where: str) -> ZooEntry:
    es = _scan()
    tasks_here = sorted({e.task for e in es})
    if name not in tasks_here:
        raise ValueError(f"zoo.{where}: unknown task {name!r}, expected one of {tasks_here}")
    have = sorted({e.n_hidden for e in es if e.task == name})
    if not _is_int(n_hidden) or int(n_hidden) not in have:
        raise ValueError(f"zoo.{where}: no {name!r} models with n_hidden={n_hidden!r}, available sizes are {have}")
    seeds = [e.seed for e in es if e.task == name and e.n_hidden == int(n_hidden)]
    if not _is_int(seed) or int(seed) not in seeds:
        size = "" if int(n_hidden) == DEFAULT_N_HIDDEN else f" (n_hidden={int(n_hidden)})"
        raise ValueError(f"zoo.{where}: no {name!r} model for seed {seed!r}{size}, expected one of {seeds}")
    return next(e for e in es if e.task == name and e.seed == int(seed) and e.n_hidden == int(n_hidden))


@functools.lru_cache(maxsize=64)
def _load(name: str, seed: int, n_hidden: int) -> TanhRNN:
    from schurjax.checkpoint import load_model

    return load_model(_entry(name, seed, n_hidden, "load").path)[0]


def load(task: str, seed: int = 0, n_hidden: int = DEFAULT_N_HIDDEN) -> TanhRNN:
    """The shipped model trained on ``task`` with ``seed`` and hidden size ``n_hidden`` (cached; immutable).

    Raises:
        ValueError: unknown task, size or seed (one line, listing what the zoo has).

    Example:
        >>> model = load("copy", seed=2)                  # TanhRNN(n_in=3, n_hidden=64, n_out=2)
        >>> model = load("copy", seed=2, n_hidden=128)    # TanhRNN(n_in=3, n_hidden=128, n_out=2)
    """
    _entry(task, seed, n_hidden, "load")
    return _load(task, int(seed), int(n_hidden))


def metadata(task: str, seed: int = 0, n_hidden: int = DEFAULT_N_HIDDEN) -> dict[str, Any]:
    """The JSON metadata of a shipped model (a copy): ``task``, ``train``, ``metrics``, ``schurjax_version``, ...

    Example::

        metadata("context")["metrics"]["ideal_observer_score"]
    """
    return _copy.deepcopy(_entry(task, seed, n_hidden, "metadata").metadata)


def task(name: str) -> Task:
    """The task object with the parameters the zoo models were trained on (the same for every size and seed).

    Example::

        batch = task("sine").sample(jax.random.key(0), 64)
    """
    from schurjax import tasks as _tasks

    here = [e for e in _scan() if e.task == name]
    meta = _entry(name, here[0].seed if here else 0, here[0].n_hidden if here else DEFAULT_N_HIDDEN, "task").metadata
    return _tasks.from_record(meta["task"]["name"], meta["task"]["params"], where=f"zoo.task({name!r})")


def parse_spec(spec: str) -> tuple[str, int | None, int]:
    """Split a zoo spec ``zoo:TASK[/SEED][@N]`` into ``(task, seed, n_hidden)``.

    ``seed`` is None when the spec names every seed (``zoo:flipflop``); ``n_hidden`` is
    :data:`DEFAULT_N_HIDDEN` (64) without ``@N``. Only the syntax is checked here; whether the zoo has the model
    is checked by :func:`load` / :func:`entries`.

    Raises:
        ValueError: a spec that is not of that form (one line).

    Example:
        >>> parse_spec("zoo:flipflop/0"), parse_spec("zoo:flipflop/0@128"), parse_spec("zoo:copy@128")
        (('flipflop', 0, 64), ('flipflop', 0, 128), ('copy', None, 128))
    """
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if m is None or (m["n"] is not None and int(m["n"]) < 1):
        raise ValueError(
            f"zoo.parse_spec: expected zoo:TASK, zoo:TASK/SEED, zoo:TASK@N or zoo:TASK/SEED@N (SEED and N "
            f"non-negative ints, N >= 1), got {spec!r}"
        )
    seed = None if m["seed"] is None else int(m["seed"])
    return m["task"], seed, DEFAULT_N_HIDDEN if m["n"] is None else int(m["n"])


def format_spec(task: str, seed: int | None = None, n_hidden: int = DEFAULT_N_HIDDEN) -> str:
    """The canonical spec of a zoo model (the inverse of :func:`parse_spec`; ``@N`` only for non-default sizes).

    Example:
        >>> format_spec("flipflop", 0), format_spec("flipflop", 0, 128)
        ('zoo:flipflop/0', 'zoo:flipflop/0@128')
    """
    seed_part = "" if seed is None else f"/{int(seed)}"
    size_part = "" if int(n_hidden) == DEFAULT_N_HIDDEN else f"@{int(n_hidden)}"
    return f"zoo:{task}{seed_part}{size_part}"
