"""A sweep's config and the keys derived from it: everything that fixes a sweep's results.

Two runs with equal configs produce equal tables: the shared task batch, the random controls and the chunk
boundaries all derive from the config and its root seed (:func:`batch_key`, :func:`control_key`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import numpy as np

from schurjax import ablate
from schurjax._seeds import SEED_MAX, root_key
from schurjax.engine import PRECISIONS, EngineOptions
from schurjax.errors import InputError
from schurjax.models import model_fingerprint, task_identity, task_params
from schurjax.schur import ORDERS
from schurjax.store._json import canonical, to_jsonable
from schurjax.tasks.base import Task

SWEEP_ORDERS = (*ORDERS, "decay", "auto")
"""Accepted ``order`` values of a sweep (the CLI's ``--order`` choices)."""

__all__ = [
    "SWEEP_FAMILIES",
    "CONTROL_KINDS",
    "SweepConfig",
    "parse_families",
    "parse_control_kinds",
    "task_params",
    "task_identity",
    "batch_key",
    "control_key",
    "model_fingerprint",
    "TrialsFile",
]

SWEEP_FAMILIES: tuple[str, ...] = tuple(ablate.SF_ONLY_FAMILIES)
"""The families a sweep can run by name: those of ``ablate.FAMILIES`` that need nothing but the Schur form. Each
name is also the ``family`` field of the rows it makes."""
CONTROL_KINDS: tuple[str, ...] = (*ablate.CONTROL_KINDS, "worst")
"""The control kinds a sweep runs: the random ones of :data:`schurjax.ablate.CONTROL_KINDS` (each also the name of
its function in :mod:`schurjax.ablate`) and ``"worst"``, the edit of the removal's size that raises the loss most on
the sweep's batch (:func:`schurjax.ablate.worst_controls`; a gradient search per controlled removal, so use it with
``control_max``)."""


def _names(where: str, arg: str, text: str | Sequence[str], known: Sequence[str], *, none_ok: bool) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = str(raw).strip().lower().replace("-", "_")
        if not name or (none_ok and name == "none"):
            continue
        if name not in known:
            raise InputError(where, arg, f"unknown name {str(raw).strip()!r}; expected some of {', '.join(known)}")
        if name not in out:
            out.append(name)
    return out


def parse_families(text: str | Sequence[str]) -> list[str]:
    """``"single,block"`` or ``["single", "block"]`` -> canonical family names (order kept, duplicates dropped).

    Raises:
        InputError: an unknown family, or none at all.

    Example:
        >>> parse_families("single, band,single")
        ['single', 'band']
    """
    out = _names("sweep", "families", text, SWEEP_FAMILIES, none_ok=False)
    if not out:
        raise InputError("sweep", "families", f"no family given; expected some of {', '.join(SWEEP_FAMILIES)}")
    return out


def parse_control_kinds(text: str | Sequence[str]) -> list[str]:
    """``"matched_norm,coupling_noise"`` -> control kinds (``"none"`` or empty gives ``[]``).

    Example:
        >>> parse_control_kinds("matched-norm,none")
        ['matched_norm']
    """
    return _names("sweep", "control_kinds", text, CONTROL_KINDS, none_ok=True)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that fixes a sweep's results (two runs with equal configs produce equal tables).

    Attributes:
        families: family names (see :data:`SWEEP_FAMILIES`).
        controls: random controls per Schur ablation and control kind (0: none).
        control_kinds: kinds of controls (see :data:`CONTROL_KINDS`), default matched-norm only.
        control_max: at most this many ablations per family and model get controls (None: all); which ones is
            a seeded random choice.
        trials: batch size B of the shared task batch.
        order: Schur block order: one of ``schurjax.schur.ORDERS``, ``"decay"`` (descending per-step decay
            ``|1 - alpha + alpha lam|`` with each model's own alpha) or ``"auto"`` (``"modulus"`` for a network
            without leak, ``"decay"`` for a leaky one: :func:`schurjax.schur.order_for`).
        precision: matmul precision inside the rollouts (one of ``engine.PRECISIONS``).
        dtype: rollout dtype, "float32" (default) or "float64" (verification).
        chunk_size: variants per chunk file (and per engine call).
        seed: root seed in [0, 2**63); the batch and control keys derive from it (``_seeds.root_key``).
        deviation: carry the deviations ``h_k - h`` from the unablated trajectory in the rollouts
            (``engine.evaluate(deviation=...)``): small loss changes keep their digits (error bound vs float64 in
            benchmarks/RESULTS.md). False: the plain rollout, which differences two float32 trajectories and
            loses the smallest effects. (None, an older spelling of the default, is read as True.)
        trials_file_sha256: SHA-256 of the trial file every model is evaluated on instead of sampled trials
            (None: sampled); ``trials`` is then the file's trial count.
        fixed_points: also find every variant's fixed points at zero input and add their columns to the table
            (:data:`FIXED_POINT_COLUMNS`; ``sj.dynamics.fixed_point_columns``). Much slower than the rollouts.
    """

    families: tuple[str, ...] = ("single", "block", "band", "all_nonnormal")
    controls: int = 1
    control_kinds: tuple[str, ...] = ("matched_norm",)
    control_max: int | None = None
    trials: int = 256
    order: str = "modulus"
    precision: str = "highest"
    dtype: str = "float32"
    chunk_size: int = 512
    seed: int = 0
    deviation: bool = True
    trials_file_sha256: str | None = None
    fixed_points: bool = False

    def __post_init__(self):
        def bad(arg: str, expected: str) -> InputError:
            return InputError("sweep", arg, f"must be {expected}, got {getattr(self, arg)!r}")

        object.__setattr__(self, "families", tuple(parse_families(self.families)))
        object.__setattr__(self, "control_kinds", tuple(parse_control_kinds(self.control_kinds)))
        if not self.control_kinds and isinstance(self.controls, int):
            object.__setattr__(self, "controls", 0)  # no kind, no controls: one spelling of "none"
        if self.deviation is None:  # an older spelling of the default
            object.__setattr__(self, "deviation", True)
        if not isinstance(self.deviation, bool):
            raise bad("deviation", "True or False")
        for name in ("controls", "trials", "chunk_size", "seed"):
            v = getattr(self, name)
            lo = 0 if name in ("controls", "seed") else 1
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise bad(name, f"an int >= {lo}")
            if name in _MAX and v > _MAX[name]:
                raise bad(name, f"an int in [{lo}, {_MAX[name]:,}] ({_WHY[name]})")
            object.__setattr__(self, name, int(v))
        if self.control_max is not None and (
            isinstance(self.control_max, bool) or not isinstance(self.control_max, int) or self.control_max < 0
        ):
            raise bad("control_max", "None or an int >= 0")
        if self.order not in SWEEP_ORDERS:
            raise bad("order", f"one of {', '.join(SWEEP_ORDERS)}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {', '.join(PRECISIONS)}")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "'float32' or 'float64'")
        if not isinstance(self.fixed_points, bool):
            raise bad("fixed_points", "True or False")

    def engine_options(self, **fields: Any) -> EngineOptions:
        """The engine options this config fixes (precision, dtype, deviation), with ``fields`` added (path,
        devices, ...)."""
        return EngineOptions(precision=self.precision, dtype=self.dtype, deviation=self.deviation, **fields)

    def to_dict(self, models: Sequence[Any]) -> dict[str, Any]:
        """The JSON config stored in the manifest (and compared on resume): the settings, the model sources and
        weights, and the schurjax version and results schema (chunks of another version are never reused)."""
        import schurjax
        from schurjax.store.results import SCHEMA_VERSION

        d = {"schurjax_version": schurjax.__version__, "results_schema": SCHEMA_VERSION}
        d.update(dataclasses.asdict(self))
        d["families"] = list(self.families)
        d["control_kinds"] = list(self.control_kinds)
        # models are compared by content (weights and task), not by how their path was spelled
        d["models"] = []
        for m in models:
            entry = {
                "id": m.id,
                "task": m.task.name,
                "task_params": task_params(m.task),
                "weights_sha256": model_fingerprint(m.model),
            }
            order = order_of(self.order, m.model)
            if order != self.order:  # the order this model's Schur form used ("auto", "decay")
                entry["order"] = list(order) if isinstance(order, tuple) else order
            d["models"].append(entry)
        return to_jsonable(d)


class TrialsFileTask(Task):
    """The task of a model that names none, swept on a trial file: the file's sizes, the masked-MSE loss and no
    score (the score columns stay empty: nothing says what a correct output is beyond the targets)."""

    name: ClassVar[str] = "trials-file"
    inputs: int = eqx.field(static=True)
    outputs: int = eqx.field(static=True)
    length: int = eqx.field(static=True)

    @property
    def n_in(self) -> int:
        return self.inputs

    @property
    def n_out(self) -> int:
        return self.outputs

    @property
    def steps(self) -> int:
        return self.length

    def sample(self, key: Any, batch_size: int) -> Any:
        raise ValueError("trials-file: this task draws no trials; its trials are the --trials-file")

    def score(self, y: Any, batch: Any) -> Any:
        import jax.numpy as jnp

        return jnp.asarray(jnp.nan, jnp.float32)


@dataclasses.dataclass(frozen=True)
class TrialsFile:
    """Fixed trials from a file (``--trials-file``): its path, SHA-256 and the batch (see ``TaskBatch.from_npz``)."""

    path: str
    sha256: str
    batch: Any

    @staticmethod
    def declared(path: str | Any) -> tuple[int, int]:
        """``(trials, steps)`` that a trial file's ``inputs`` declares, from the ``.npy`` headers alone (nothing is
        loaded); one-line :class:`InputError` naming ``trials_file`` for a file that is not an ``.npz`` of arrays."""
        import os

        from schurjax.tasks.batch import _check_declared, npz_shapes

        where = "TaskBatch.from_npz"
        try:
            if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
                raise ValueError(f"no trial file at {str(path)!r}")
            shapes = npz_shapes(path, where)
            _check_declared(where, path, shapes)
        except ValueError as e:
            raise InputError("sweep", "trials_file", str(e).splitlines()[0]) from None
        shape = shapes.get("inputs", ((0, 0, 0), None))[0]
        if len(shape) != 3:
            raise InputError("sweep", "trials_file", f"{path}: inputs must be (B, T, n_in), declared {shape}")
        return int(shape[0]), int(shape[1])

    @staticmethod
    def task(path: str | Any) -> Any:
        """The task of a model whose metadata names none, evaluated on this file: sizes from the file's headers,
        the masked-MSE loss, no score (:class:`TrialsFileTask`)."""
        from schurjax.tasks.batch import npz_shapes

        try:
            shapes = npz_shapes(path, "TaskBatch.from_npz")
        except ValueError as e:
            raise InputError("sweep", "trials_file", str(e).splitlines()[0]) from None
        (_, T, n_in), (t_shape, _) = shapes["inputs"][0], shapes.get("targets", ((0, 0, 0), None))
        return TrialsFileTask(inputs=int(n_in), outputs=int(t_shape[-1]), length=int(T))

    @staticmethod
    def check_budget(path: str | Any, specs: Any, *, memory: int | None = None) -> None:
        """Refuse a trial file whose declared trials cannot be evaluated here, before it is loaded (one line)."""
        from schurjax.runtime.environment import available_memory
        from schurjax.sweeps.budget import bytes_per_trial

        B, T = TrialsFile.declared(path)
        memory = available_memory() if memory is None else int(memory)
        per = max(
            bytes_per_trial(int(s.model.W_rec.shape[0]), T, int(s.model.W_in.shape[1]), int(s.model.W_out.shape[0]))
            for s in specs
        )
        fit = max(memory // 2, 1) // per
        if B > fit:
            raise InputError(
                "sweep",
                "trials_file",
                f"{path} holds {B:,} trials of {T} steps; at most {fit:,} fit here ({per:,} bytes per trial; "
                f"{memory / 2**30:.1f} GiB available); expected a smaller file",
            )

    @classmethod
    def read(cls, path: str | Any) -> TrialsFile:
        """Read and check a trial file; one-line :class:`InputError` naming ``trials_file`` otherwise."""
        from schurjax.tasks import TaskBatch

        try:
            batch = TaskBatch.from_npz(path)
        except (ValueError, OSError) as e:
            raise InputError("sweep", "trials_file", str(e).splitlines()[0]) from None
        if not np.any(np.asarray(batch.mask) > 0):
            raise InputError(
                "sweep",
                "trials_file",
                f"{path}: the mask is all zero, so no step counts in the loss (every loss is 0 and every relative "
                "change undefined); expected a mask with some steps > 0",
            )
        return cls(str(path), cls.digest(path), batch)

    @staticmethod
    def digest(path: str | Any) -> str:
        """SHA-256 of the file, read in blocks (never whole into memory)."""
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as e:
            raise InputError("sweep", "trials_file", f"cannot read {path}: {e.strerror}") from None
        return h.hexdigest()

    def check_fits(self, spec: Any) -> None:
        """The model's task must fit the file's trials (n_in, n_out, steps)."""
        from schurjax.tasks import as_batch

        try:
            as_batch(self.batch, "trials_file", task=spec.task)
        except ValueError as e:
            raise InputError(
                "sweep", "trials_file", f"{self.path} does not fit model {spec.id} ({str(e).splitlines()[0]})"
            ) from None


def order_of(order: str, model: Any) -> Any:
    """The ``ordered_schur`` order of ``model`` under the sweep's ``order`` (``"auto"``/``"decay"`` use its alpha).

    Example:
        >>> import jax, schurjax as sj
        >>> order_of("auto", sj.RateRNN(1, 4, 1, alpha=0.2, key=jax.random.key(0)))
        ('decay', 0.2)
    """
    from schurjax.schur import order_for

    if order == "auto":
        return order_for(model)
    if order == "decay":
        return ("decay", float(getattr(model, "alpha", 1.0)))
    return order


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


_MAX = {"controls": 1_000, "seed": SEED_MAX}
"""Upper bounds of integer settings, checked before anything is allocated (``trials`` and ``chunk_size`` are
bounded by the device's memory in :mod:`schurjax.sweeps.budget`)."""
_WHY = {"controls": "random controls per ablation and kind", "seed": "seeds are 63-bit; each maps to its own key"}


def batch_key(seed: int, task_name: str, params: dict[str, Any]):
    """The key of the shared batch of one task: every model of that task (same name *and* params) sees the same
    trials, and tasks with different params (e.g. ``copy(length=8)`` vs ``copy(length=6)``) get different keys.

    Args:
        seed: the sweep's root seed.
        task_name: the task's name.
        params: the task's ``params()`` (folded in as canonical JSON).
    """
    import jax

    k = jax.random.fold_in(jax.random.fold_in(root_key(seed), 0), _stable_int(task_name))
    return jax.random.fold_in(k, _stable_int(canonical(params)))


FIXED_POINT_COLUMNS = (
    "n_fixed",
    "n_stable",
    "lost",
    "gained",
    "n_moved",
    "max_displacement",
    "leading_freq",
    "leading_radius",
    "max_residual",
)
"""The table columns a sweep with ``fixed_points=True`` adds (see ``sj.dynamics.fixed_point_columns``)."""
COUNT_COLUMNS = FIXED_POINT_COLUMNS[:5]
"""Those of them that count points (integers in the table)."""


def fixed_point_key(seed: int, model_id: str):
    """The key of one model's fixed-point search (its starts), the same for every chunk."""
    import jax

    return jax.random.fold_in(jax.random.fold_in(root_key(seed), 2), _stable_int(model_id))


def control_key(seed: int, model_id: str, kind: str):
    """The key of one model's controls of one kind."""
    import jax

    k = jax.random.fold_in(jax.random.fold_in(root_key(seed), 1), _stable_int(model_id))
    return jax.random.fold_in(k, _stable_int(kind))
