"""Resumable sweeps into run folders: model specs, the chunk plan, the sweep loop and the run summary.

A sweep takes trained models, writes each recurrent matrix in ordered real Schur coordinates, builds the
requested ablation families plus their random controls, and evaluates them chunk by chunk on one shared task
batch (common random numbers). Every chunk's metrics are written atomically into the run folder
(:class:`schurjax.results.RunFolder`), so a crashed or killed sweep resumes where it stopped, and the final table
equals that of an uninterrupted run: the batch, the variants and the chunk boundaries are all fixed by the
config and the seed.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schurjax import ablate as _ablate
from schurjax import engine as _engine
from schurjax import results as _results
from schurjax.schur import ORDERS

__all__ = [
    "UsageError",
    "user_errors",
    "FAMILIES",
    "CONTROL_KINDS",
    "PRECISIONS",
    "ModelSpec",
    "SweepConfig",
    "resolve_models",
    "parse_families",
    "parse_control_kinds",
    "parse_seeds",
    "ModelPlan",
    "plan_model",
    "plan_chunks",
    "batch_key",
    "task_identity",
    "task_params_json",
    "control_key",
    "model_fingerprint",
    "run_sweep",
    "build_rows",
    "summarize",
    "control_kinds_in",
    "format_summary",
    "Progress",
    "versions",
    "device_info",
    "KEEP_TOL",
]

# --families names: the families of the schurjax.ablate.FAMILIES registry that need nothing but the Schur form
# (ablate.SF_ONLY_FAMILIES); each name is also the ``family`` field of the rows it makes.
FAMILIES: tuple[str, ...] = tuple(_ablate.SF_ONLY_FAMILIES)
_FAMILY_ALIASES = {
    "singles": "single",
    "single_couplings": "single",
    "blocks": "block",
    "block_couplings": "block",
    "bands": "band",
    "all": "all_nonnormal",
    "nonnormal": "all_nonnormal",
    "eigen_group": "eigen_groups",
}
# Control kinds: those of schurjax.ablate (each is also the name of its function there).
CONTROL_KINDS: tuple[str, ...] = tuple(_ablate.CONTROL_KINDS)
PRECISIONS: tuple[str, ...] = tuple(_engine.PRECISIONS)  # accepted --precision values (the engine's registry)
_METRICS = _results.METRICS
KEEP_TOL = 0.05  # "loss-preserving": relative loss change <= 5 %


class UsageError(ValueError):
    """Bad user input (a missing model, an unknown family, a folder holding another sweep): one line, exit 2."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Treat the one-line ``ValueError`` / ``TypeError`` of argument validation inside as :class:`UsageError`.

    Wrap only the validation of user input (parsing, model loading, the config, the run folder), never the
    computation, so that a bug further in still surfaces as an internal error with its traceback.
    """
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(text) from e


# ----------------------------------------------------------------------------------------------------------------
# Parsing helpers
# ----------------------------------------------------------------------------------------------------------------


def parse_families(text: str | Sequence[str]) -> list[str]:
    """Parse ``"single,block,band,all_nonnormal"`` into canonical family names (order kept, duplicates dropped).

    Raises:
        ValueError: an unknown family name.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        name = _FAMILY_ALIASES.get(name, name)
        if name not in FAMILIES:
            raise ValueError(f"--families: unknown family {raw.strip()!r}; expected some of {', '.join(FAMILIES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"--families: no family given; expected some of {', '.join(FAMILIES)}")
    return out


def parse_control_kinds(text: str | Sequence[str]) -> list[str]:
    """Parse ``"matched_norm,coupling_noise"`` into control kinds (``"none"`` or empty gives ``[]``).

    Raises:
        ValueError: an unknown kind.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower().replace("-", "_")
        if not name or name == "none":
            continue
        if name not in CONTROL_KINDS:
            raise ValueError(
                f"--control-kinds: unknown control kind {raw.strip()!r}; expected some of {', '.join(CONTROL_KINDS)}"
            )
        if name not in out:
            out.append(name)
    return out


def parse_seeds(text: str) -> list[int]:
    """Parse ``"0-3"``, ``"0,2,5"`` or ``"0-3,7"`` into a sorted list of distinct non-negative ints.

    Raises:
        ValueError: anything else.
    """
    seeds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if a > b or a < 0:
                    raise ValueError
                seeds.update(range(a, b + 1))
            else:
                s = int(part)
                if s < 0:
                    raise ValueError
                seeds.add(s)
        except ValueError:
            raise ValueError(f"--seeds: expected e.g. '0-3' or '0,2,5' (non-negative ints), got {text!r}") from None
    return sorted(seeds)


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModelSpec:
    """A model to sweep: where it came from, the model itself and its task.

    Attributes:
        id: short unique id used in the table and file names (e.g. ``flipflop-0``).
        source: what the user gave (``zoo:flipflop/0`` or a path).
        model: the TanhRNN.
        task: the Task object the model is evaluated on.
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


def _task_from_metadata(meta: dict[str, Any], where: str, task_override: str | None) -> Any:
    from schurjax import tasks

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
        raise ValueError(f"{where}: the model's metadata names no task; pass --task NAME")
    if name not in tasks.names():
        raise ValueError(f"--task: unknown task {name!r}; expected one of {', '.join(tasks.names())}")
    return tasks.get(name, **params)


def _check_fit(spec_id: str, model: Any, task: Any) -> None:
    for attr in ("W_in", "W_rec", "b", "W_out", "b_out"):  # before any run folder is written
        bad = int((~np.isfinite(np.asarray(getattr(model, attr), dtype=np.float64))).sum())
        if bad:
            raise UsageError(f"MODEL {spec_id}: {attr} holds {bad} NaN/inf entries; expected finite weights")
    n_in, n_out = int(model.W_in.shape[1]), int(model.W_out.shape[0])
    if (n_in, n_out) != (int(task.n_in), int(task.n_out)):
        raise ValueError(
            f"MODEL {spec_id}: sizes n_in={n_in}, n_out={n_out} don't fit task {task.name!r} "
            f"(n_in={task.n_in}, n_out={task.n_out})"
        )


def resolve_models(specs: Sequence[str], task_override: str | None = None) -> list[ModelSpec]:
    """Turn MODEL arguments into :class:`ModelSpec` s.

    Args:
        specs: each a saved model path (``.eqx``, with its ``.json`` sidecar), ``zoo:TASK/SEED`` or ``zoo:TASK``
            (every shipped seed of that task).
        task_override: evaluate every model on this task (default: the task named in each model's metadata).

    Returns:
        One spec per model, ids unique.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: unknown zoo task or seed, unknown task, or a model whose sizes don't fit its task.
    """
    out: list[ModelSpec] = []
    for raw in specs:
        if raw.startswith("zoo:"):
            out.extend(_resolve_zoo(raw, task_override))
        else:
            out.append(_resolve_path(raw, task_override))
    seen: dict[str, int] = {}
    for spec in out:
        if spec.id in seen:
            seen[spec.id] += 1
            spec.id = f"{spec.id}~{seen[spec.id]}"
        else:
            seen[spec.id] = 0
    if not out:
        raise ValueError("MODEL: no model given")
    return out


def _resolve_zoo(raw: str, task_override: str | None) -> list[ModelSpec]:
    from schurjax import tasks, zoo

    body = raw[len("zoo:") :]
    task_name, _, seed_text = body.partition("/")
    entries = [e for e in zoo.entries() if e.task == task_name]
    if not entries:
        known = sorted({e.task for e in zoo.entries()})
        raise ValueError(f"MODEL: unknown zoo task {task_name!r} in {raw!r}; the zoo has {', '.join(known)}")
    if seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            raise ValueError(f"MODEL: expected zoo:TASK/SEED with an int seed, got {raw!r}") from None
        chosen = [e for e in entries if int(e.seed) == seed]
        if not chosen:
            have = ", ".join(str(e.seed) for e in entries)
            raise ValueError(f"MODEL: no zoo model {raw!r}; seeds of {task_name!r} are {have}")
    else:
        chosen = sorted(entries, key=lambda e: int(e.seed))
    specs = []
    for e in chosen:
        model = zoo.load(e.task, seed=int(e.seed))
        meta = dict(zoo.metadata(e.task, seed=int(e.seed)))
        meta.setdefault("seed", int(e.seed))
        meta.setdefault("task", e.task)
        if task_override and task_override != e.task:
            if task_override not in tasks.names():
                raise ValueError(f"--task: unknown task {task_override!r}; expected one of {', '.join(tasks.names())}")
            task = tasks.get(task_override)
        else:
            task = zoo.task(e.task)
        spec = ModelSpec(f"{e.task}-{int(e.seed)}", f"zoo:{e.task}/{int(e.seed)}", model, task, meta)
        _check_fit(spec.source, model, task)
        specs.append(spec)
    return specs


def _resolve_path(raw: str, task_override: str | None) -> ModelSpec:
    from schurjax import checkpoint

    path = Path(raw)
    if path.is_dir():
        raise ValueError(f"MODEL: {raw} is a folder; pass the model files in it (e.g. {raw}/*.eqx)")
    if not path.exists() and path.suffix != ".eqx" and path.with_suffix(".eqx").exists():
        path = path.with_suffix(".eqx")
    if not path.exists():
        raise FileNotFoundError(f"MODEL: no such file: {raw}")
    model, meta = checkpoint.load_model(path)
    meta = dict(meta or {})
    task = _task_from_metadata(meta, f"MODEL {raw}", task_override)
    spec = ModelSpec(path.stem, str(path), model, task, meta)
    _check_fit(raw, model, task)
    return spec


# ----------------------------------------------------------------------------------------------------------------
# Config, keys, plan
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that fixes a sweep's results (two runs with equal configs produce equal tables).

    Attributes:
        families: CLI family names (see :data:`FAMILIES`).
        controls: random controls per Schur ablation and control kind (0: none).
        control_kinds: kinds of controls (see :data:`CONTROL_KINDS`), default matched-norm only.
        control_max: at most this many ablations per family and model get controls (None: all); which ones is
            a seeded random choice.
        trials: batch size B of the shared task batch.
        order: Schur block order (one of ``schurjax.schur.ORDERS``).
        precision: matmul precision inside the rollouts (one of :data:`PRECISIONS`, i.e. ``engine.PRECISIONS``).
        dtype: rollout dtype, "float32" (default) or "float64" (verification).
        chunk_size: variants per chunk file (and per engine call).
        seed: root seed; the batch and control keys are derived from it.
        deviation: carry the deviations ``h_k - h`` from the unablated trajectory in the rollouts
            (``engine.evaluate(deviation=...)``): small loss changes keep their digits (error bound vs float64 in
            benchmarks/RESULTS.md). False: the plain rollout, which differences two float32 trajectories and loses
            the smallest effects. None (the default) resolves to the engine's default, True.
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

    def __post_init__(self):
        if self.deviation is None:  # the engine's default, made explicit so the config records what ran
            object.__setattr__(self, "deviation", True)
        if not isinstance(self.deviation, bool):
            raise ValueError(f"--deviation: expected True, False or None, got {self.deviation!r}")
        for name in ("controls", "trials", "chunk_size", "seed"):
            v = getattr(self, name)
            lo = 0 if name in ("controls", "seed") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"--{name.replace('_', '-')}: expected an int >= {lo}, got {v!r}")
        if self.control_max is not None and (not isinstance(self.control_max, int) or self.control_max < 0):
            raise ValueError(f"--control-max: expected an int >= 0, got {self.control_max!r}")
        if self.order not in ORDERS:
            raise ValueError(f"--order: expected one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype: expected float32 or float64, got {self.dtype!r}")

    def to_dict(self, models: Sequence[ModelSpec]) -> dict[str, Any]:
        """The JSON config stored in the manifest (and compared on resume): the settings, the model sources and
        weights, and the schurjax version and results schema (chunks of another version are never reused)."""
        import schurjax

        d = {"schurjax_version": schurjax.__version__, "results_schema": _results.SCHEMA_VERSION}
        d.update(dataclasses.asdict(self))
        d["families"] = list(self.families)
        d["control_kinds"] = list(self.control_kinds)
        d["models"] = [{"id": m.id, "source": m.source, "task": m.task.name, "task_params": _task_params(m.task),
                        "weights_sha256": model_fingerprint(m.model)} for m in models]  # fmt: skip
        return _results.to_jsonable(d)


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a TanhRNN's weights (float32 bytes of W_in, W_rec, b, W_out, b_out), to tell models apart."""
    h = hashlib.sha256()
    for name in ("W_in", "W_rec", "b", "W_out", "b_out"):
        a = np.ascontiguousarray(np.asarray(getattr(model, name), dtype=np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _task_params(task: Any) -> dict[str, Any]:
    """The task's parameters as JSON-able values (they are part of its identity: never guessed or dropped)."""
    return _results.to_jsonable(dict(task.params()))


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def task_params_json(params: dict[str, Any]) -> str:
    """Canonical JSON of a task's parameters (sorted keys, no spaces): the task's identity next to its name."""
    import json

    return json.dumps(_results.to_jsonable(dict(params)), sort_keys=True, separators=(",", ":"))


def task_identity(task: Any) -> tuple[str, str]:
    """``(name, canonical params JSON)`` of a task: models share a batch only when both are equal."""
    return str(task.name), task_params_json(_task_params(task))


def batch_key(seed: int, task_name: str, params: dict[str, Any]):
    """The key of the shared batch of one task: every model of that task (same name *and* params) sees the same
    trials, and tasks with different params (e.g. ``copy(length=8)`` vs ``copy(length=6)``) get different keys.

    Args:
        seed: the sweep's root seed.
        task_name: the task's name.
        params: the task's ``params()`` (folded in as canonical JSON, see :func:`task_params_json`).
    """
    import jax

    k = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), _stable_int(task_name))
    return jax.random.fold_in(k, _stable_int(task_params_json(params)))


def control_key(seed: int, model_id: str, kind: str):
    """The key of one model's controls of one kind."""
    import jax

    k = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), _stable_int(model_id))
    return jax.random.fold_in(k, _stable_int(kind))


@dataclasses.dataclass
class ModelPlan:
    """One model's Schur form, its full variant set, the chunk boundaries ``[(start, stop), ...]`` and the segment
    boundaries (each family, then each control kind; chunks never cross them)."""

    spec: ModelSpec
    schur: Any
    variants: Any
    n_ablations: int
    chunks: list[tuple[int, int]]
    family_counts: dict[str, int]
    segments: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def segment_of(self, start: int) -> tuple[int, int]:
        """The segment ``(start, stop)`` holding variant ``start`` (the whole set when no segments are recorded)."""
        for a, b in self.segments:
            if a <= start < b:
                return a, b
        return 0, len(self.variants)


def plan_chunks(segments: Sequence[int], chunk_size: int) -> list[tuple[int, int]]:
    """Chunk boundaries over consecutive segments; no chunk crosses a segment (families stay homogeneous).

    Args:
        segments: the length of each segment (e.g. each family, then each control kind), in order.
        chunk_size: the most variants per chunk.

    Returns:
        ``[(start, stop), ...]`` covering ``range(sum(segments))`` in order.

    Example:
        >>> plan_chunks([5, 2], 3)
        [(0, 3), (3, 5), (5, 7)]
    """
    out = []
    start = 0
    for length in segments:
        for a in range(start, start + length, chunk_size):
            out.append((a, min(a + chunk_size, start + length)))
        start += length
    return out


def _family_variants(sf: Any, family: str) -> Any:
    return _ablate.FAMILIES[family](sf)


def _control_subset(config: SweepConfig, spec: ModelSpec, ablations: Any) -> np.ndarray:
    """Indices (into the ablations) that get controls: all, or per family a seeded subset of ``control_max``."""
    k = len(ablations)
    if config.control_max is None:
        return np.arange(k)
    fam = np.asarray([str(lab.get("family")) for lab in ablations.labels], dtype=object)
    rng = np.random.default_rng([config.seed, _stable_int(spec.id)])
    keep = []
    for f in dict.fromkeys(fam.tolist()):
        idx = np.flatnonzero(fam == f)
        if idx.size > config.control_max:
            idx = rng.choice(idx, size=config.control_max, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep).astype(np.int64)) if keep else np.zeros(0, np.int64)


def plan_model(spec: ModelSpec, config: SweepConfig) -> ModelPlan:
    """Schur form, variants (families, then controls by kind) and chunk boundaries of one model."""
    from schurjax import ablate
    from schurjax.schur import ordered_schur

    W = np.asarray(spec.model.W_rec, dtype=np.float64)
    sf = ordered_schur(W, order=config.order)
    parts = []
    family_counts: dict[str, int] = {}
    for fam in config.families:
        v = _family_variants(sf, fam)
        if len(v):
            parts.append(v)
        family_counts[fam] = len(v)
    if not parts:
        raise UsageError(
            f"MODEL {spec.id}: the families {','.join(config.families)} give no variants (its W_rec has no nonzero "
            f"Schur couplings of these kinds, e.g. a normal or triangular-diagonal W); choose other --families"
        )
    ablations = ablate.Variants.concat(*parts) if len(parts) > 1 else parts[0]
    segments = [len(p) for p in parts]
    controls = []
    if config.controls > 0 and config.control_kinds:
        subset = _control_subset(config, spec, ablations)
        if subset.size == 0:
            return ModelPlan(spec, sf, ablations, len(ablations), plan_chunks(segments, config.chunk_size),
                             family_counts, _segment_bounds(segments))  # fmt: skip
        target = ablations if subset.size == len(ablations) else ablations[subset]
        for kind in config.control_kinds:
            fn = getattr(_ablate, kind)
            c = fn(control_key(config.seed, spec.id, kind), sf, target, n_per=config.controls)
            if subset.size != len(ablations):
                c = _remap_control_of(c, subset)
            controls.append(c)
            segments.append(len(c))
            family_counts[f"control:{kind}"] = len(c)
    variants = ablate.Variants.concat(ablations, *controls) if controls else ablations
    chunks = plan_chunks(segments, config.chunk_size)
    return ModelPlan(spec, sf, variants, len(ablations), chunks, family_counts, _segment_bounds(segments))


def _segment_bounds(segments: Sequence[int]) -> list[tuple[int, int]]:
    bounds = np.concatenate([[0], np.cumsum(np.asarray(segments, dtype=np.int64))]).tolist()
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _remap_control_of(controls: Any, subset: np.ndarray) -> Any:
    """Point ``control_of`` of controls built on ``ablations[subset]`` back into the full ablation set."""
    for lab in controls.labels:
        if lab.get("control_of") is not None:
            lab["control_of"] = int(subset[int(lab["control_of"])])
    return controls


# ----------------------------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------------------------


class Progress:
    """A plain-text progress bar over chunks on stderr: done/total variants, variants/s and ETA.

    On a terminal it redraws one line; otherwise it prints a line at most every ``every`` seconds.

    Args:
        total: total variants.
        label: prefix.
        stream: defaults to ``sys.stderr``.
        enabled: False silences it.
    """

    def __init__(self, total: int, label: str = "sweep", stream: Any = None, enabled: bool = True, every: float = 5.0):
        self.total = int(total)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.every = every
        self.done = 0
        self.computed = 0
        self.t0 = time.perf_counter()
        self.t_last = -math.inf
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @property
    def rate(self) -> float:
        """Computed (not resumed) variants per second so far."""
        dt = time.perf_counter() - self.t0
        return self.computed / dt if dt > 0 else 0.0

    def update(self, n: int, computed: bool = True, note: str = "") -> None:
        """Advance by ``n`` variants (``computed=False`` for chunks found on disk)."""
        self.done += n
        if computed:
            self.computed += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and now - self.t_last < self.every and self.done < self.total:
            return
        self.t_last = now
        text = self.line(note)
        if self.tty:
            self.width = max(getattr(self, "width", 0), len(text))
            self.stream.write("\r" + text.ljust(self.width))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, note: str = "") -> str:
        frac = self.done / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(round(frac * width))
        rate = self.rate
        remaining = self.total - self.done
        eta = _fmt_time(remaining / rate) if rate > 0 and remaining else ("--" if remaining else "0s")
        text = (
            f"{self.label} [{bar:<{width}}] {self.done}/{self.total} variants {100 * frac:5.1f}% "
            f"{rate:7.0f} var/s  ETA {eta}"
        )
        return text + (f"  {note}" if note else "")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


# ----------------------------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Versions of schurjax, Python, JAX, jaxlib, equinox, NumPy and SciPy."""
    import jax

    import schurjax

    out = {"schurjax": schurjax.__version__, "python": platform.python_version(), "jax": jax.__version__}
    for mod in ("jaxlib", "equinox", "optax", "numpy", "scipy", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            pass
    return out


def device_info() -> dict[str, Any]:
    """The default JAX backend and its devices."""
    import jax

    devs = jax.devices()
    return {"backend": jax.default_backend(), "devices": [str(d) for d in devs], "kind": devs[0].device_kind}


def _chunk_sleep() -> float:
    """Test-only hook, not a user setting: ``SCHURJAX_CHUNK_SLEEP=seconds`` sleeps after each chunk file is written.

    tests/test_cli.py sets it so that a subprocess sweep can be killed with SIGKILL between two chunk files, to
    check that a resumed run equals an uninterrupted one. It changes no result (chunks and table are unaffected)
    and is not part of the sweep config.
    """
    try:
        return float(os.environ.get("SCHURJAX_CHUNK_SLEEP", "0") or 0)
    except ValueError:
        return 0.0


def run_sweep(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    out: str | os.PathLike,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> _results.Run:
    """Run (or resume) a sweep into a run folder and return the loaded :class:`schurjax.results.Run`.

    Args:
        models: the models to sweep (see :func:`resolve_models`).
        config: the sweep config.
        out: the run folder; an existing folder must hold the same sweep (same config), which is then resumed.
        progress: draw the progress bar on stderr.
        log: where to write one-line status messages (default: stderr).
        extra_manifest: more JSON-able entries for the manifest (e.g. the command line).

    Returns:
        The finished run (table, manifest, Schur forms).

    Raises:
        UsageError: the folder holds a different sweep, or the families give a model no variants.

    Example:
        >>> run = run_sweep(resolve_models(["zoo:flipflop/0"]), SweepConfig(trials=64), "runs/ff")
    """
    import jax.numpy as jnp

    from schurjax import engine

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    folder = _results.RunFolder(out)
    with user_errors():
        plans = [plan_model(m, config) for m in models]
    manifest = {
        "schurjax_run": 1,
        "config": config.to_dict(models),
        "versions": versions(),
        "device": device_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seeds": {
            "seed": config.seed,
            "batch_keys": [
                {"task": name, "params": json.loads(params),
                 "key": f"fold_in(fold_in(fold_in(key({config.seed}), 0), crc32({name!r})), crc32({params!r}))"}
                for name, params in dict.fromkeys(task_identity(p.spec.task) for p in plans)
            ],
            "control_keys": f"fold_in(fold_in(fold_in(key({config.seed}), 1), crc32(model id)), crc32(kind))",
        },  # fmt: skip
        "models": [
            {
                "id": p.spec.id,
                "source": p.spec.source,
                "task": p.spec.task.name,
                "task_params": _task_params(p.spec.task),
                "seed": p.spec.seed,
                "n_hidden": int(p.schur.n),
                "metadata": _results.to_jsonable(p.spec.metadata),
                "schur": _results.to_jsonable(p.schur.summary_dict()),
                "variants": len(p.variants),
                "ablations": p.n_ablations,
                "chunks": len(p.chunks),
                "family_counts": p.family_counts,
            }
            for p in plans
        ],
        **(extra_manifest or {}),
    }
    with user_errors():
        resumed = folder.start(manifest)
        if resumed:
            _check_same_plan(folder, manifest)
    for p in plans:
        folder.save_schur(p.spec.id, p.schur)
    total = sum(len(p.variants) for p in plans)
    n_chunks = sum(len(p.chunks) for p in plans)
    have = sum(folder.has_chunk(i, c) for i, p in enumerate(plans) for c in range(len(p.chunks)))
    if resumed:
        log(f"sweep: resuming {folder.path}: {have}/{n_chunks} chunks already done")
    log(f"sweep: {len(plans)} model(s), {total} variants in {n_chunks} chunks, trials={config.trials}")
    bar = Progress(total, enabled=progress)
    sleep = _chunk_sleep()
    batches: dict[tuple[str, str], Any] = {}  # one shared batch per task identity (name, params)
    for i, p in enumerate(plans):
        task = p.spec.task
        ident = task_identity(task)
        seg_paths: dict[tuple[int, int], str] = {}  # one engine path per family / control segment
        for c, (a, b) in enumerate(p.chunks):
            if folder.has_chunk(i, c):
                bar.update(b - a, computed=False, note=p.spec.id)
                continue
            if ident not in batches:
                batches[ident] = task.sample(batch_key(config.seed, ident[0], _task_params(task)), config.trials)
            idx = np.arange(a, b, dtype=np.int64)  # the engine pads short chunks itself (zero edits, no host work)
            seg = p.segment_of(a)
            if seg not in seg_paths:  # chosen from the whole segment, so results don't depend on --chunk-size
                seg_paths[seg] = engine.choose_path(p.variants[seg[0] : seg[1]].max_nnz, int(p.schur.n))
            res = engine.evaluate(
                p.spec.model,
                p.schur,
                p.variants[idx],
                batches[ident],
                task=task,
                chunk_size="auto",  # the engine's own cache-sized chunks
                path=seg_paths[seg],
                precision=config.precision,
                dtype=jnp.float64 if config.dtype == "float64" else jnp.float32,
                deviation=config.deviation,
            )
            payload = {"model": p.spec.id, "start": a, "stop": b, "base_loss": float(res.base_loss),
                       "base_score": float(res.base_score)}  # fmt: skip
            for name in _METRICS:
                payload[name] = np.asarray(getattr(res, name), dtype=np.float64).tolist()
            folder.write_chunk(i, c, payload)
            bar.update(b - a, note=p.spec.id)
            if sleep:
                time.sleep(sleep)
    bar.close()
    rows = build_rows(plans, folder)
    summary = {"models": len(plans), "variants": total, "chunks": n_chunks}
    folder.finish(rows, summary)
    return _results.load(folder.path)


def _check_same_plan(folder: _results.RunFolder, manifest: dict[str, Any]) -> None:
    """On resume: the variant counts and chunk plan must be those of the run on disk (same code, same config)."""
    old = folder.existing_manifest() or {}
    plan_old = [(m.get("id"), m.get("variants"), m.get("chunks")) for m in old.get("models", [])]
    plan_new = [(m["id"], m["variants"], m["chunks"]) for m in manifest["models"]]
    if plan_old != plan_new:
        raise ValueError(
            f"--out: {folder.path} holds a different sweep (its variant plan {plan_old[:2]}... differs from "
            f"{plan_new[:2]}...; was it made by another schurjax version?); choose another --out or delete it"
        )


def build_rows(plans: Sequence[ModelPlan], folder: _results.RunFolder) -> list[dict[str, Any]]:
    """Assemble the tidy table from the chunk files: one row per (model, variant), controls pointing to rows."""
    rows: list[dict[str, Any]] = []
    offset = 0
    for i, p in enumerate(plans):
        metrics = {name: np.full(len(p.variants), np.nan) for name in (*_METRICS, "base_loss", "base_score")}
        for c, (a, b) in enumerate(p.chunks):
            chunk = folder.read_chunk(i, c)
            if (chunk["start"], chunk["stop"]) != (a, b):
                raise UsageError(f"{folder.chunk_path(i, c)}: chunk covers {chunk['start']}:{chunk['stop']}, "
                                 f"expected {a}:{b}; the folder holds a different sweep")  # fmt: skip
            for name in _METRICS:
                metrics[name][a:b] = chunk[name]
            # each chunk carries its own unablated rollout (same compiled program, so deltas cancel rounding)
            metrics["base_loss"][a:b] = chunk["base_loss"]
            metrics["base_score"][a:b] = chunk["base_score"]
        for k, label in enumerate(p.variants.labels):
            row: dict[str, Any] = {
                "row_id": offset + k,
                "model": p.spec.id,
                "task": p.spec.task.name,
                "model_seed": p.spec.seed,
            }
            flat = _results.flatten_label(label)
            ctrl = label.get("control_of")
            flat["control_of"] = None if ctrl is None or (isinstance(ctrl, int) and ctrl < 0) else offset + int(ctrl)
            flat.setdefault("control_kind", None)
            row.update(flat)
            for name in (*_METRICS, "base_loss", "base_score"):
                row[name] = float(metrics[name][k])
            rows.append(row)
        offset += len(p.variants)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------------------------


def _kind_of(row: dict[str, Any]) -> str:
    return str(row.get("control_kind") or "control")


def control_kinds_in(table: Sequence[dict[str, Any]]) -> list[str]:
    """The control kinds present in a table, in :data:`CONTROL_KINDS` order (then any others, sorted)."""
    present = {_kind_of(r) for r in table if r.get("control_of") is not None}
    return [k for k in CONTROL_KINDS if k in present] + sorted(present - set(CONTROL_KINDS))


def summarize(table: Sequence[dict[str, Any]], tol: float = KEEP_TOL) -> list[dict[str, Any]]:
    """Per-model summary of a sweep table, with the random controls reported per control kind (never pooled).

    For each model: its base loss and score, and its score after all-nonnormal removal (``all_nonnormal_score``:
    the task score shows what a loss change means where the base loss is mostly irreducible noise, as in the
    context task); the share of single couplings whose removal keeps the loss within
    ``tol`` (relative); the same for block couplings; the relative loss change under all-nonnormal removal; and,
    for each control kind present, the median relative loss change of the Schur ablations that have controls of
    that kind and of those controls, and the fraction of (ablation, control) pairs in which the ablation changes
    the loss more than its control (``by_kind[kind]``). When the table holds exactly one control kind, its figures
    are also the top-level ``ablation_median_rel``, ``control_median_rel``, ``frac_ablation_gt_control`` and
    ``n_pairs`` (NaN / 0 when there are none or several kinds, which are not pooled).

    Args:
        table: tidy rows (see :func:`schurjax.results.load`).
        tol: relative loss change that still counts as loss-preserving.

    Returns:
        One dict per model, in table order.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in table:
        by_model.setdefault(row["model"], []).append(row)
    kinds = control_kinds_in(table)
    out = []
    for model, rows in by_model.items():
        by_id = {r["row_id"]: r for r in rows}
        abl = [r for r in rows if r.get("control_of") is None]

        def rel(rs):
            return np.asarray([r["rel_delta_loss"] for r in rs], dtype=np.float64)

        singles = rel([r for r in abl if r.get("family") == "single"])
        blocks = rel([r for r in abl if r.get("family") == "block"])
        allnn_rows = [r for r in abl if r.get("family") == "all_nonnormal"]
        allnn = rel(allnn_rows)
        by_kind: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            ctrl = [r for r in rows if r.get("control_of") is not None and _kind_of(r) == kind]
            paired = [r for r in ctrl if r["control_of"] in by_id]
            controlled_ids = sorted({r["control_of"] for r in paired})
            pairs_a = np.asarray([by_id[r["control_of"]]["delta_loss"] for r in paired], dtype=np.float64)
            pairs_c = np.asarray([r["delta_loss"] for r in paired], dtype=np.float64)
            by_kind[kind] = {
                "ablation_median_rel": float(np.median(rel([by_id[i] for i in controlled_ids])))
                if controlled_ids
                else math.nan,
                "control_median_rel": float(np.median(rel(ctrl))) if ctrl else math.nan,
                "frac_ablation_gt_control": float(np.mean(pairs_a > pairs_c)) if pairs_c.size else math.nan,
                "n_pairs": int(pairs_c.size),
            }
        only = by_kind[kinds[0]] if len(kinds) == 1 else None
        first = rows[0]
        out.append(
            {
                "model": model,
                "task": first.get("task"),
                "seed": first.get("model_seed"),
                "base_loss": first.get("base_loss"),
                "base_score": first.get("base_score"),
                "n_single": int(singles.size),
                "single_keep": float(np.mean(np.abs(singles) <= tol)) if singles.size else math.nan,
                "block_keep": float(np.mean(np.abs(blocks) <= tol)) if blocks.size else math.nan,
                "all_nonnormal_rel": float(allnn[0]) if allnn.size else math.nan,
                "all_nonnormal_score": _float(allnn_rows[0].get("score")) if allnn_rows else math.nan,
                "control_kinds": list(kinds),
                "by_kind": by_kind,
                "ablation_median_rel": only["ablation_median_rel"] if only else math.nan,
                "control_median_rel": only["control_median_rel"] if only else math.nan,
                "frac_ablation_gt_control": only["frac_ablation_gt_control"] if only else math.nan,
                "n_pairs": only["n_pairs"] if only else 0,
            }
        )
    return out


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _fmt_score(base: Any, after: Any) -> str:
    """``0.983→0.512`` (task score before -> after all-nonnormal removal), or just the base score."""
    ok = [x is not None and not (isinstance(x, float) and math.isnan(x)) for x in (base, after)]
    if ok[0] and ok[1]:
        return f"{base:.3f}→{after:.3f}"
    return f"{base:.3f}" if ok[0] else "-"


def _fmt(x: Any, kind: str = "g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if kind == "%":
        return f"{100 * x:.0f}%"
    if kind == "+%":  # relative change; a loss that grew more than 10-fold shows as a factor
        return f"{100 * x:+.1f}%" if abs(x) < 9.5 else f"x{1 + x:.3g}"
    return f"{x:.3g}"


def format_summary(summary: Sequence[dict[str, Any]], tol: float = KEEP_TOL) -> str:
    """The per-task, per-seed summary as a plain-text table (one block per task, at most ~110 characters wide).

    Columns: seed, base loss, share of single (and block) couplings whose removal keeps the loss within ``tol``,
    relative loss change under all-nonnormal removal; then, per control kind, the median relative loss change of
    the Schur ablations vs of their random controls of that kind, and the fraction of ablations that change the
    loss more than their control. With one control kind these are columns of the main table (named in the legend);
    with several, each task gets a second table with one row per (model, control kind).
    """
    kinds = list(dict.fromkeys(k for s in summary for k in s.get("control_kinds", [])))
    single_kind = len(kinds) == 1
    head = (f"{'model':<16}{'seed':>5}{'base loss':>10}{'score base→NN':>14}{'single keep':>12}{'block keep':>11}"
            f"{'all-NN Δ':>10}")  # fmt: skip
    if single_kind:
        head += f"{'abl med Δ':>10}{'ctrl med Δ':>11}{'abl>ctrl':>9}"
    lines = [
        f"keep = share of removals with |Δloss|/loss <= {100 * tol:.0f}%; Δ = relative loss change (xK: loss "
        "multiplied by K)",
        "score base→NN = task score (0-1) of the unablated model → after removing all nonnormal couplings (all-NN)",
    ]
    if kinds:
        lines += [
            "abl med / ctrl med = median Δ of the Schur ablations that have random controls / of those controls;",
            "abl>ctrl = share of (ablation, control) pairs where the ablation changes the loss more;",
            f"controls: {kinds[0]}" if single_kind else f"controls per kind, never pooled: {', '.join(kinds)}",
        ]
    tasks_seen: dict[str, list[dict[str, Any]]] = {}
    for s in summary:
        tasks_seen.setdefault(str(s["task"]), []).append(s)
    for task, items in tasks_seen.items():
        lines.append("")
        lines.append(f"task {task}")
        lines.append(head)
        for s in items:
            score = _fmt_score(s.get("base_score"), s.get("all_nonnormal_score"))
            line = (
                f"{s['model']:<16}{_fmt(s['seed']):>5}{_fmt(s['base_loss']):>10}{score:>14}"
                f"{_fmt(s['single_keep'], '%'):>12}{_fmt(s['block_keep'], '%'):>11}"
                f"{_fmt(s['all_nonnormal_rel'], '+%'):>10}"
            )
            if single_kind:
                k = s.get("by_kind", {}).get(kinds[0], {})
                line += (
                    f"{_fmt(k.get('ablation_median_rel'), '+%'):>10}{_fmt(k.get('control_median_rel'), '+%'):>11}"
                    f"{_fmt(k.get('frac_ablation_gt_control'), '%'):>9}"
                )
            lines.append(line)
        if not single_kind and kinds:
            lines.append(f"{'model':<16}{'control kind':<16}{'abl med Δ':>11}{'ctrl med Δ':>12}{'abl>ctrl':>10}"
                         f"{'pairs':>8}")  # fmt: skip
            for s in items:
                for kind in kinds:
                    k = s.get("by_kind", {}).get(kind)
                    if not k:
                        continue
                    lines.append(
                        f"{s['model']:<16}{kind:<16}{_fmt(k['ablation_median_rel'], '+%'):>11}"
                        f"{_fmt(k['control_median_rel'], '+%'):>12}{_fmt(k['frac_ablation_gt_control'], '%'):>10}"
                        f"{k['n_pairs']:>8}"
                    )
    return "\n".join(lines)
