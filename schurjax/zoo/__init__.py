"""Small trained tanh RNNs shipped with schurjax: the four tasks of arXiv:2606.18457 × seeds 0..3, n = 64.

Files live in ``schurjax/zoo/models/<task>_seed<seed>.eqx`` with a JSON sidecar (task name and parameters, training
config, held-out loss and score, the ideal observer's score for "context", package version). They are built by
``python -m schurjax.zoo build`` (see :mod:`schurjax.zoo.build`), reproducibly from the seeds.

Example:
    >>> model = schurjax.zoo.load("flipflop", seed=0)
    >>> task = schurjax.zoo.task("flipflop")
    >>> [(e.task, e.seed) for e in schurjax.zoo.entries()][:2]
    [('context', 0), ('context', 1)]
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

__all__ = ["MODELS_DIR", "ZooEntry", "entries", "load", "metadata", "task", "path_for"]

MODELS_DIR = Path(__file__).parent / "models"
_NAME = re.compile(r"^(?P<task>[a-z0-9_]+)_seed(?P<seed>\d+)\.json$")


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One shipped model: its task name, seed, ``.eqx`` path and metadata (the JSON sidecar)."""

    task: str
    seed: int
    path: Path
    metadata: dict[str, Any] = dataclasses.field(repr=False, compare=False)


def path_for(task: str, seed: int, root: Path | None = None) -> Path:
    """Path of the ``.eqx`` file of ``(task, seed)`` under ``root`` (default: the shipped models)."""
    return (MODELS_DIR if root is None else Path(root)) / f"{task}_seed{int(seed)}.eqx"


@functools.lru_cache(maxsize=1)
def _scan() -> tuple[ZooEntry, ...]:
    out = []
    for side in sorted(MODELS_DIR.glob("*.json")):
        m = _NAME.match(side.name)
        if m is None or not side.with_suffix(".eqx").is_file():
            continue
        out.append(ZooEntry(m["task"], int(m["seed"]), side.with_suffix(".eqx"), json.loads(side.read_text())))
    return tuple(sorted(out, key=lambda e: (e.task, e.seed)))


def entries() -> list[ZooEntry]:
    """All shipped models, sorted by task name and seed.

    Example:
        >>> {e.task for e in entries()}
        {'context', 'copy', 'flipflop', 'sine'}
    """
    return list(_scan())


def _entry(name: str, seed: int, where: str) -> ZooEntry:
    es = _scan()
    tasks_here = sorted({e.task for e in es})
    if name not in tasks_here:
        raise ValueError(f"zoo.{where}: unknown task {name!r}, expected one of {tasks_here}")
    seeds = [e.seed for e in es if e.task == name]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) not in seeds:
        raise ValueError(f"zoo.{where}: no {name!r} model for seed {seed!r}, expected one of {seeds}")
    return next(e for e in es if e.task == name and e.seed == int(seed))


@functools.lru_cache(maxsize=64)
def _load(name: str, seed: int) -> TanhRNN:
    from schurjax.checkpoint import load_model

    return load_model(_entry(name, seed, "load").path)[0]


def load(task: str, seed: int = 0) -> TanhRNN:
    """The shipped model trained on ``task`` with ``seed`` (cached; models are immutable).

    Example:
        >>> model = load("copy", seed=2)      # TanhRNN(n_in=3, n_hidden=64, n_out=2)
    """
    _entry(task, seed, "load")
    return _load(task, int(seed))


def metadata(task: str, seed: int = 0) -> dict[str, Any]:
    """The JSON metadata of a shipped model (a copy): ``task``, ``train``, ``metrics``, ``schurjax_version``, ...

    Example:
        >>> metadata("context")["metrics"]["ideal_observer_score"]
    """
    return _copy.deepcopy(_entry(task, seed, "metadata").metadata)


def task(name: str) -> Task:
    """The task object with the parameters the zoo models were trained on.

    Example:
        >>> batch = task("sine").sample(jax.random.key(0), 64)
    """
    from schurjax import tasks as _tasks

    seeds = [e.seed for e in _scan() if e.task == name]
    meta = _entry(name, seeds[0] if seeds else 0, "task").metadata
    return _tasks.get(meta["task"]["name"], **meta["task"]["params"])
