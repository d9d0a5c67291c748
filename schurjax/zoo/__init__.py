"""Small trained RNNs shipped with schurjax: the four tasks of arXiv:2606.18457 × seeds 0..3.

Two families: the paper's tanh RNNs (``TanhRNN``, ``alpha = 1``) at n = 64 and 128, and leaky tanh rate networks
(``RateRNN(alpha=0.2, nonlinearity="tanh", form="rate")``, ``h_t = 0.8 h_{t-1} + 0.2 tanh(W h_{t-1} + W_in x_t +
b)``, from ``h_0 = 0``) at n = 64.

Files live in ``schurjax/zoo/models/<task>_seed<seed>.eqx`` (n = 64, the default size),
``<task>_n<n>_seed<seed>.eqx`` (other sizes) and ``<task>_alpha<alpha>_seed<seed>.eqx`` (leaky networks), each
with a JSON sidecar (task name and parameters, training config, held-out loss and score, the ideal observer's
score for "context", package version; for leaky networks a ``"dynamics"`` record ``{"alpha", "nonlinearity",
"form"}``). They are built by ``python -m schurjax.zoo build [--alpha 0.2]`` (see :mod:`schurjax.zoo.build`),
reproducibly from the seeds.

``load``, ``metadata`` and ``entries`` take ``alpha`` (default 1: the paper's networks, as before); ``entries(
alpha=None)`` lists both families. A leaky network's weights are stored in the same leaf layout as a
``TanhRNN`` (``h0`` is None), its step in the ``"dynamics"`` record: load it with :func:`load`, which returns the
``RateRNN`` (``schurjax.load_model`` alone would not know the step).

A zoo model is named by a spec ``zoo:TASK[/SEED][@N]``: ``zoo:flipflop/0`` is the n = 64 model of seed 0,
``zoo:flipflop/0@128`` its n = 128 sibling, ``zoo:flipflop`` every seed (see :func:`parse_spec`).

- :mod:`~schurjax.zoo.build`: build the zoo, one vmapped training program per task and size;
- :mod:`~schurjax.zoo.__main__`: ``python -m schurjax.zoo build|list``.

Example:
    >>> import schurjax
    >>> model = schurjax.zoo.load("flipflop", seed=0)                 # n = 64
    >>> big = schurjax.zoo.load("flipflop", seed=0, n_hidden=128)
    >>> model.n_hidden, big.n_hidden, schurjax.zoo.task("flipflop").name
    (64, 128, 'flipflop')
    >>> [(e.task, e.seed, e.n_hidden) for e in schurjax.zoo.entries()][:2]
    [('context', 0, 64), ('context', 1, 64)]
    >>> leaky = schurjax.zoo.load("copy", seed=0, alpha=0.2)          # RateRNN, alpha = 0.2
    >>> leaky.dynamics.describe(), schurjax.zoo.alphas()
    ('rate form, tanh, alpha=0.2', [0.2, 1.0])
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import functools
import numbers
import re
from pathlib import Path
from typing import Any, NamedTuple

from schurjax.rnn import RateRNN
from schurjax.store._json import loads
from schurjax.tasks.base import Task

__all__ = [
    "MODELS_DIR",
    "DEFAULT_N_HIDDEN",
    "ZooEntry",
    "entries",
    "sizes",
    "alphas",
    "load",
    "metadata",
    "task",
    "path_for",
    "parse_spec",
    "ZooSpec",
    "format_spec",
]

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_N_HIDDEN = 64
"""The size that ``load``, ``metadata`` and a spec without ``@N`` mean."""

DEFAULT_ALPHA = 1.0
"""The ``alpha`` that ``load``, ``metadata``, ``entries`` and a spec mean by default (the paper's networks)."""

_NAME = re.compile(
    r"^(?P<task>[a-z0-9]+(?:_[a-z0-9]+)*?)(?:_n(?P<n>\d+))?(?:_alpha(?P<alpha>\d+(?:\.\d+)?))?_seed(?P<seed>\d+)\.json$"
)
_SPEC = re.compile(r"^zoo:(?P<task>[a-z0-9_]+)(?:/(?P<seed>\d+))?(?:@(?P<n>\d+))?(?:@alpha(?P<alpha>\d+(?:\.\d+)?))?$")


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One shipped model: task name, seed, hidden size, ``.eqx`` path, metadata (the JSON sidecar) and ``alpha``."""

    task: str
    seed: int
    n_hidden: int
    path: Path
    metadata: dict[str, Any] = dataclasses.field(repr=False, compare=False)
    alpha: float = DEFAULT_ALPHA


def _alpha_tag(alpha: float) -> str:
    return "" if float(alpha) == DEFAULT_ALPHA else f"_alpha{float(alpha):g}"


def path_for(
    task: str, seed: int, root: Path | None = None, n_hidden: int = DEFAULT_N_HIDDEN, alpha: float = DEFAULT_ALPHA
) -> Path:
    """Path of the ``.eqx`` file of ``(task, seed, n_hidden, alpha)`` under ``root`` (default: the shipped models).

    Example:
        >>> path_for("copy", 1).name, path_for("copy", 1, n_hidden=128).name, path_for("copy", 1, alpha=0.2).name
        ('copy_seed1.eqx', 'copy_n128_seed1.eqx', 'copy_alpha0.2_seed1.eqx')
    """
    size = "" if int(n_hidden) == DEFAULT_N_HIDDEN else f"_n{int(n_hidden)}"
    return (MODELS_DIR if root is None else Path(root)) / f"{task}{size}{_alpha_tag(alpha)}_seed{int(seed)}.eqx"


def _dynamics(meta: dict[str, Any]) -> dict[str, Any]:
    """The step of a zoo model from its sidecar (absent: the paper's tanh RNN)."""
    d = meta.get("dynamics") or {}
    return {
        "alpha": float(d.get("alpha", DEFAULT_ALPHA)),
        "nonlinearity": str(d.get("nonlinearity", "tanh")),
        "form": str(d.get("form", "rate")),
    }


@functools.lru_cache(maxsize=1)
def _scan() -> tuple[ZooEntry, ...]:
    out = []
    for side in sorted(MODELS_DIR.glob("*.json")):
        m = _NAME.match(side.name)
        if m is None or not side.with_suffix(".eqx").is_file():
            continue
        n = DEFAULT_N_HIDDEN if m["n"] is None else int(m["n"])
        meta = loads(side.read_text())
        alpha = _dynamics(meta)["alpha"]
        if (m["alpha"] is None) != (alpha == DEFAULT_ALPHA):
            continue  # a name that does not say the step its sidecar records: not a zoo file
        out.append(ZooEntry(m["task"], int(m["seed"]), n, side.with_suffix(".eqx"), meta, alpha))
    # the paper's networks first, as before; then the leaky families by descending alpha
    return tuple(sorted(out, key=lambda e: (-e.alpha, e.n_hidden, e.task, e.seed)))


def _pick(alpha: float | None, n_hidden: int | None = None) -> list[ZooEntry]:
    return [
        e
        for e in _scan()
        if (alpha is None or e.alpha == float(alpha)) and (n_hidden is None or e.n_hidden == n_hidden)
    ]


def entries(n_hidden: int | None = None, alpha: float | None = DEFAULT_ALPHA) -> list[ZooEntry]:
    """The shipped models, sorted by size, task name and seed (all sizes, or only ``n_hidden``).

    Args:
        n_hidden: only this size (default: all sizes).
        alpha: only networks with this ``alpha`` (default 1: the paper's tanh RNNs, as before); ``0.2`` the leaky
            rate networks; None every family (the paper's first).

    Example:
        >>> sorted({e.task for e in entries()})
        ['context', 'copy', 'flipflop', 'sine']
        >>> sorted({e.n_hidden for e in entries()}), sorted({e.n_hidden for e in entries(alpha=0.2)})
        ([64, 128], [64])
    """
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)):
        raise ValueError(f"zoo.entries: alpha must be a real number or None, got {alpha!r}")
    return _pick(alpha, n_hidden)


def sizes(alpha: float | None = DEFAULT_ALPHA) -> list[int]:
    """The hidden sizes the zoo ships for ``alpha`` (default 1), ascending (``[64, 128]``)."""
    return sorted({e.n_hidden for e in _pick(alpha)})


def alphas() -> list[float]:
    """The ``alpha`` values of the shipped families, ascending (``[0.2, 1.0]``)."""
    return sorted({e.alpha for e in _scan()})


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _entry(name: str, seed: int, n_hidden: int, where: str, alpha: float = DEFAULT_ALPHA) -> ZooEntry:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or float(alpha) not in alphas():
        raise ValueError(f"zoo.{where}: no models with alpha={alpha!r}, the zoo has alpha in {alphas()}")
    alpha = float(alpha)
    es = _pick(alpha)
    tag = "" if alpha == DEFAULT_ALPHA else f" (alpha={alpha:g})"
    tasks_here = sorted({e.task for e in es})
    if name not in tasks_here:
        raise ValueError(f"zoo.{where}: unknown task {name!r}{tag}, expected one of {tasks_here}")
    have = sorted({e.n_hidden for e in es if e.task == name})
    if not _is_int(n_hidden) or int(n_hidden) not in have:
        raise ValueError(f"zoo.{where}: no {name!r} models with n_hidden={n_hidden!r}{tag}, available sizes are {have}")
    seeds = [e.seed for e in es if e.task == name and e.n_hidden == int(n_hidden)]
    if not _is_int(seed) or int(seed) not in seeds:
        size = "" if int(n_hidden) == DEFAULT_N_HIDDEN else f" (n_hidden={int(n_hidden)})"
        raise ValueError(f"zoo.{where}: no {name!r} model for seed {seed!r}{size}{tag}, expected one of {seeds}")
    return next(e for e in es if e.task == name and e.seed == int(seed) and e.n_hidden == int(n_hidden))


@functools.lru_cache(maxsize=64)
def _load(name: str, seed: int, n_hidden: int, alpha: float = DEFAULT_ALPHA) -> RateRNN:
    from schurjax.store.checkpoint import load_model

    entry = _entry(name, seed, n_hidden, "load", alpha)
    model, meta = load_model(entry.path)
    if "dynamics" not in meta:
        return model
    m = model
    return RateRNN.from_arrays(
        W_in=m.W_in, W_rec=m.W_rec, b=m.b, W_out=m.W_out, b_out=m.b_out, h0=None, **_dynamics(meta)
    )


def load(task: str, seed: int = 0, n_hidden: int = DEFAULT_N_HIDDEN, alpha: float = DEFAULT_ALPHA) -> RateRNN:
    """The shipped model trained on ``task`` with ``seed``, hidden size ``n_hidden`` and ``alpha`` (cached; immutable).

    ``alpha=1`` (default) gives the paper's ``TanhRNN``; ``alpha=0.2`` the leaky tanh rate network
    (``RateRNN(alpha=0.2, nonlinearity="tanh", form="rate")``, n = 64 only).

    Raises:
        ValueError: unknown task, size, seed or alpha (one line, listing what the zoo has).

    Example:
        >>> model = load("copy", seed=2)                  # TanhRNN(n_in=3, n_hidden=64, n_out=2)
        >>> model = load("copy", seed=2, n_hidden=128)    # TanhRNN(n_in=3, n_hidden=128, n_out=2)
        >>> load("copy", seed=2, alpha=0.2).alpha         # RateRNN, the leaky family
        0.2
    """
    _entry(task, seed, n_hidden, "load", alpha)
    return _load(task, int(seed), int(n_hidden), float(alpha))


def metadata(
    task: str, seed: int = 0, n_hidden: int = DEFAULT_N_HIDDEN, alpha: float = DEFAULT_ALPHA
) -> dict[str, Any]:
    """The JSON metadata of a shipped model (a copy): ``task``, ``train``, ``metrics``, ``schurjax_version``, ...

    Example::

        metadata("context")["metrics"]["ideal_observer_score"]
        metadata("copy", alpha=0.2)["dynamics"]        # {"alpha": 0.2, "nonlinearity": "tanh", "form": "rate"}
    """
    return _copy.deepcopy(_entry(task, seed, n_hidden, "metadata", alpha).metadata)


def task(name: str) -> Task:
    """The task object with the parameters the zoo models were trained on (the same for every size and seed).

    Example::

        batch = task("sine").sample(jax.random.key(0), 64)
    """
    from schurjax import tasks as _tasks

    here = [e for e in _scan() if e.task == name]
    meta = _entry(name, here[0].seed if here else 0, here[0].n_hidden if here else DEFAULT_N_HIDDEN, "task").metadata
    return _tasks.from_record(meta["task"]["name"], meta["task"]["params"], where=f"zoo.task({name!r})")


class ZooSpec(NamedTuple):
    """A parsed zoo spec: task, seed (None: every seed), hidden size and ``alpha`` (1: the paper's networks)."""

    task: str
    seed: int | None
    n_hidden: int
    alpha: float = DEFAULT_ALPHA


def parse_spec(spec: str) -> ZooSpec:
    """Split a zoo spec ``zoo:TASK[/SEED][@N][@alphaA]`` into :class:`ZooSpec` ``(task, seed, n_hidden, alpha)``.

    ``seed`` is None when the spec names every seed (``zoo:flipflop``); ``n_hidden`` is
    :data:`DEFAULT_N_HIDDEN` (64) without ``@N``; ``alpha`` is 1 (the paper's networks) without ``@alphaA``
    (``zoo:flipflop/0@alpha0.2`` is the leaky family's seed 0). Only the syntax is checked here; whether the zoo has
    the model is checked by :func:`load` / :func:`entries`.

    Raises:
        ValueError: a spec that is not of that form (one line).

    Example:
        >>> parse_spec("zoo:flipflop/0")
        ZooSpec(task='flipflop', seed=0, n_hidden=64, alpha=1.0)
        >>> tuple(parse_spec("zoo:flipflop/0@128")), tuple(parse_spec("zoo:copy@alpha0.2"))
        (('flipflop', 0, 128, 1.0), ('copy', None, 64, 0.2))
    """
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    alpha = DEFAULT_ALPHA if m is None or m["alpha"] is None else float(m["alpha"])
    if m is None or (m["n"] is not None and int(m["n"]) < 1) or not 0.0 < alpha <= 1.0:
        raise ValueError(
            f"zoo.parse_spec: expected zoo:TASK, zoo:TASK/SEED, zoo:TASK@N or zoo:TASK/SEED@N, each optionally "
            f"followed by @alphaA (SEED and N non-negative ints, N >= 1, 0 < A <= 1), got {spec!r}"
        )
    seed = None if m["seed"] is None else int(m["seed"])
    return ZooSpec(m["task"], seed, DEFAULT_N_HIDDEN if m["n"] is None else int(m["n"]), alpha)


def format_spec(
    task: str, seed: int | None = None, n_hidden: int = DEFAULT_N_HIDDEN, alpha: float = DEFAULT_ALPHA
) -> str:
    """The canonical spec of a zoo model (the inverse of :func:`parse_spec`; ``@N`` only for non-default sizes,
    ``@alphaA`` only for leaky families).

    Example:
        >>> format_spec("flipflop", 0), format_spec("flipflop", 0, 128), format_spec("copy", 1, alpha=0.2)
        ('zoo:flipflop/0', 'zoo:flipflop/0@128', 'zoo:copy/1@alpha0.2')
    """
    seed_part = "" if seed is None else f"/{int(seed)}"
    size_part = "" if int(n_hidden) == DEFAULT_N_HIDDEN else f"@{int(n_hidden)}"
    alpha_part = "" if float(alpha) == DEFAULT_ALPHA else f"@alpha{float(alpha):g}"
    return f"zoo:{task}{seed_part}{size_part}{alpha_part}"
