"""A sweep's config and the keys derived from it: everything that fixes a sweep's results.

Two runs with equal configs produce equal tables: the shared task batch, the random controls and the chunk
boundaries all derive from the config and its root seed (:func:`batch_key`, :func:`control_key`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax._json import canonical, to_jsonable
from schurjax.engine import PRECISIONS
from schurjax.errors import InputError
from schurjax.schur import ORDERS

__all__ = [
    "FAMILIES",
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

FAMILIES: tuple[str, ...] = tuple(ablate.SF_ONLY_FAMILIES)
"""The families a sweep can run by name: those of ``ablate.FAMILIES`` that need nothing but the Schur form. Each
name is also the ``family`` field of the rows it makes."""
CONTROL_KINDS: tuple[str, ...] = tuple(ablate.CONTROL_KINDS)
"""The random control kinds (each is also the name of its function in :mod:`schurjax.ablate`)."""


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
    out = _names("sweep", "families", text, FAMILIES, none_ok=False)
    if not out:
        raise InputError("sweep", "families", f"no family given; expected some of {', '.join(FAMILIES)}")
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
        families: family names (see :data:`FAMILIES`).
        controls: random controls per Schur ablation and control kind (0: none).
        control_kinds: kinds of controls (see :data:`CONTROL_KINDS`), default matched-norm only.
        control_max: at most this many ablations per family and model get controls (None: all); which ones is
            a seeded random choice.
        trials: batch size B of the shared task batch.
        order: Schur block order (one of ``schurjax.schur.ORDERS``).
        precision: matmul precision inside the rollouts (one of ``engine.PRECISIONS``).
        dtype: rollout dtype, "float32" (default) or "float64" (verification).
        chunk_size: variants per chunk file (and per engine call).
        seed: root seed; the batch and control keys are derived from it.
        deviation: carry the deviations ``h_k - h`` from the unablated trajectory in the rollouts
            (``engine.evaluate(deviation=...)``): small loss changes keep their digits (error bound vs float64 in
            benchmarks/RESULTS.md). False: the plain rollout, which differences two float32 trajectories and
            loses the smallest effects. None (the default) resolves to the engine's default, True.
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
    deviation: bool | None = None
    trials_file_sha256: str | None = None
    fixed_points: bool = False

    def __post_init__(self):
        def bad(arg: str, expected: str) -> InputError:
            return InputError("sweep", arg, f"must be {expected}, got {getattr(self, arg)!r}")

        object.__setattr__(self, "families", tuple(parse_families(self.families)))
        object.__setattr__(self, "control_kinds", tuple(parse_control_kinds(self.control_kinds)))
        if not self.control_kinds and isinstance(self.controls, int):
            object.__setattr__(self, "controls", 0)  # no kind, no controls: one spelling of "none"
        if self.deviation is None:  # the engine's default, made explicit so the config records what ran
            object.__setattr__(self, "deviation", True)
        if not isinstance(self.deviation, bool):
            raise bad("deviation", "True, False or None")
        for name in ("controls", "trials", "chunk_size", "seed"):
            v = getattr(self, name)
            lo = 0 if name in ("controls", "seed") else 1
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise bad(name, f"an int >= {lo}")
            object.__setattr__(self, name, int(v))
        if self.control_max is not None and (
            isinstance(self.control_max, bool) or not isinstance(self.control_max, int) or self.control_max < 0
        ):
            raise bad("control_max", "None or an int >= 0")
        if self.order not in ORDERS:
            raise bad("order", f"one of {', '.join(ORDERS)}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {', '.join(PRECISIONS)}")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "'float32' or 'float64'")
        if not isinstance(self.fixed_points, bool):
            raise bad("fixed_points", "True or False")

    def to_dict(self, models: Sequence[Any]) -> dict[str, Any]:
        """The JSON config stored in the manifest (and compared on resume): the settings, the model sources and
        weights, and the schurjax version and results schema (chunks of another version are never reused)."""
        import schurjax
        from schurjax.results import SCHEMA_VERSION

        d = {"schurjax_version": schurjax.__version__, "results_schema": SCHEMA_VERSION}
        d.update(dataclasses.asdict(self))
        d["families"] = list(self.families)
        d["control_kinds"] = list(self.control_kinds)
        # models are compared by content (weights and task), not by how their path was spelled
        d["models"] = [
            {
                "id": m.id,
                "task": m.task.name,
                "task_params": task_params(m.task),
                "weights_sha256": model_fingerprint(m.model),
            }
            for m in models
        ]
        return to_jsonable(d)


@dataclasses.dataclass(frozen=True)
class TrialsFile:
    """Fixed trials from a file (``--trials-file``): its path, SHA-256 and the batch (see ``TaskBatch.from_npz``)."""

    path: str
    sha256: str
    batch: Any

    @classmethod
    def read(cls, path: str | Any) -> TrialsFile:
        """Read and check a trial file; one-line :class:`InputError` naming ``trials_file`` otherwise."""
        from schurjax.tasks import TaskBatch

        try:
            batch = TaskBatch.from_npz(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except (ValueError, OSError) as e:
            raise InputError("sweep", "trials_file", str(e).splitlines()[0]) from None
        return cls(str(path), digest, batch)

    def check_fits(self, spec: Any) -> None:
        """The model's task must fit the file's trials (n_in, n_out, steps)."""
        from schurjax.tasks import as_batch

        try:
            as_batch(self.batch, "trials_file", task=spec.task)
        except ValueError as e:
            raise InputError(
                "sweep", "trials_file", f"{self.path} does not fit model {spec.id} ({str(e).splitlines()[0]})"
            ) from None


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


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def task_identity(task: Any) -> tuple[str, str]:
    """``(name, canonical params JSON)`` of a task: models share a batch only when both are equal."""
    return str(task.name), canonical(task_params(task))


def batch_key(seed: int, task_name: str, params: dict[str, Any]):
    """The key of the shared batch of one task: every model of that task (same name *and* params) sees the same
    trials, and tasks with different params (e.g. ``copy(length=8)`` vs ``copy(length=6)``) get different keys.

    Args:
        seed: the sweep's root seed.
        task_name: the task's name.
        params: the task's ``params()`` (folded in as canonical JSON).
    """
    import jax

    k = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), _stable_int(task_name))
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

    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 2), _stable_int(model_id))


def control_key(seed: int, model_id: str, kind: str):
    """The key of one model's controls of one kind."""
    import jax

    k = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), _stable_int(model_id))
    return jax.random.fold_in(k, _stable_int(kind))
