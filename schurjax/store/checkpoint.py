"""Save and load a ``TanhRNN`` or any ``RateRNN`` with JSON metadata, without pickle.

The weights go to ``<name>.eqx`` via ``equinox.tree_serialise_leaves``; a JSON sidecar ``<name>.json`` holds the
format tag, the sizes, the package version, a SHA-256 of the weights file and the caller's metadata (task name and
parameters, training config, metrics, ...). Loading checks all of it and raises a one-line ``ValueError`` on a
corrupt, truncated or mismatched file.

Two format tags: ``"schurjax.TanhRNN/1"`` (:data:`FORMAT`, the paper's model; unchanged, so every file written
before the leaky forms existed, the zoo's included, loads as the same ``TanhRNN`` bit for bit) and
``"schurjax.RateRNN/1"`` (:data:`FORMAT_RATE`), whose sidecar also records the step:
``"dynamics": {"alpha", "nonlinearity", "form", "h0"}`` (``h0``: whether the model has a learned initial state).

Every write is atomic: both files are first written to temporary files created exclusively in the target folder,
then moved into place with ``os.replace``; a failure at any point leaves no temporary file and no half-written
model. :func:`save_model` never replaces a file that schurjax did not write (a ``.json`` that is not a schurjax
sidecar, or an ``.eqx`` whose sidecar does not vouch for it) unless ``force=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from schurjax.rnn import FORMS, NONLINEARITIES, RateRNN, TanhRNN, check_alpha
from schurjax.store import _json
from schurjax.store._json import finite_or_none

__all__ = [
    "save_model",
    "load_model",
    "import_torch",
    "import_model",
    "written_by_schurjax",
    "FORMAT",
    "FORMAT_RATE",
    "FORMATS",
]

FORMAT = "schurjax.TanhRNN/1"
"""Format tag of a saved ``TanhRNN`` (written to, and required in, its sidecar)."""

FORMAT_RATE = "schurjax.RateRNN/1"
"""Format tag of a saved ``RateRNN`` of any form; its sidecar also holds ``"dynamics"``."""

FORMATS = (FORMAT, FORMAT_RATE)
"""Every format tag :func:`load_model` reads."""

_RESERVED = ("format", "sizes", "sha256", "schurjax_version", "dynamics")


def _paths(where: str, path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix != ".eqx":
        raise ValueError(f"{where}: path must end with '.eqx', got {str(path)!r}")
    return p, p.with_suffix(".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dynamics_record(model: RateRNN) -> dict[str, Any]:
    return {
        "alpha": float(model.alpha),
        "nonlinearity": str(model.nonlinearity),
        "form": str(model.form),
        "h0": model.h0 is not None,
    }


def written_by_schurjax(path: str | Path) -> bool:
    """True when ``path`` (``.eqx``) and its ``.json`` sidecar are a pair that :func:`save_model` wrote.

    The sidecar must be a JSON object with one of :data:`FORMATS` and the SHA-256 of the ``.eqx`` file (a missing
    ``.eqx`` passes when the sidecar parses as a schurjax sidecar: a previous save that was interrupted).

    Example::

        written_by_schurjax("runs/ff.eqx")
    """
    p, side = _paths("written_by_schurjax", path)
    if not side.exists() and not p.exists():
        return True
    try:
        meta = _json.loads(side.read_text()) if side.is_file() and not side.is_symlink() else None
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        return False
    if not p.exists():
        return True
    try:
        return p.is_file() and not p.is_symlink() and meta.get("sha256") == _sha256(p)
    except OSError:
        return False


def _write_pair(p: Path, side: Path, weights: bytes, text: str) -> None:
    """Both files to exclusive temporaries in the target folder, then ``os.replace``; nothing left on failure."""
    temps: list[str] = []
    placed: list[Path] = []
    try:
        for target, data in ((p, weights), (side, text.encode())):
            fd, tmp = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".tmp", dir=target.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, target in zip(temps, (p, side), strict=True):
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if len(placed) == 1:  # the weights are in place but their sidecar is not: take them back out
            with contextlib.suppress(OSError):
                os.unlink(placed[0])
        raise


def save_model(
    path: str | Path, model: RateRNN, metadata: dict[str, Any] | None = None, *, force: bool = False
) -> Path:
    """Write ``model`` to ``path`` (``.eqx``) and its metadata to the ``.json`` sidecar next to it, atomically.

    Args:
        path: target file, ending in ``.eqx``; parent folders are created.
        model: the model to save: a ``TanhRNN`` (format :data:`FORMAT`) or any ``RateRNN`` (format
            :data:`FORMAT_RATE`, with its ``alpha``, ``nonlinearity``, ``form`` and whether it has ``h0``).
        metadata: JSON-able dict (e.g. ``{"task": {...}, "train": {...}, "metrics": {...}}``). The keys
            ``format``, ``sizes``, ``dynamics``, ``sha256`` and ``schurjax_version`` are written by this function: a
            loaded sidecar may be passed back (``save_model(q, *load_model(p))``), but ``format``, ``sizes`` and
            ``dynamics`` must agree with what is written.
        force: also replace files that schurjax did not write (see :func:`written_by_schurjax`); by default such a
            file is refused in one line and left as it is.

    Returns:
        The ``.eqx`` path.

    Raises:
        ValueError: a bad path, reserved metadata that disagrees, or a target file schurjax did not write.
        TypeError: a model that is not a RateRNN, or metadata that is not JSON-serialisable.

    Example::

        save_model("runs/ff.eqx", model, {"task": {"name": "flipflop", "params": task.params()}})
    """
    p, side = _paths("save_model", path)
    if not isinstance(model, RateRNN):
        raise TypeError(f"save_model: model must be a TanhRNN or RateRNN, got {type(model).__name__}")
    if not isinstance(force, bool):
        raise ValueError(f"save_model: force must be True or False, got {force!r}")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(f"save_model: metadata must be a dict or None, got {type(metadata).__name__}")
    tanh = isinstance(model, TanhRNN)
    sizes = {"n_in": model.n_in, "n_hidden": model.n_hidden, "n_out": model.n_out}
    written: dict[str, Any] = {"format": FORMAT if tanh else FORMAT_RATE, "sizes": sizes}
    if not tanh:
        written["dynamics"] = _dynamics_record(model)
    for key, value in written.items():
        if key in metadata and metadata[key] != value:
            raise ValueError(
                f"save_model: metadata key {key!r} is reserved and must be {value!r} if given, got {metadata[key]!r}"
            )
    if tanh and "dynamics" in metadata and metadata["dynamics"] != _dynamics_record(model):
        raise ValueError(
            f"save_model: metadata key 'dynamics' is reserved and must be {_dynamics_record(model)!r} if given for a "
            f"TanhRNN, got {metadata['dynamics']!r}"
        )
    metadata = {k: v for k, v in metadata.items() if k not in _RESERVED}
    from schurjax import __version__

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    weights = buf.getvalue()
    record = {
        "format": written["format"],
        "sizes": sizes,
        **({"dynamics": written["dynamics"]} if not tanh else {}),
        "sha256": hashlib.sha256(weights).hexdigest(),
        "schurjax_version": __version__,
        **metadata,
    }
    try:
        text = json.dumps(finite_or_none(record), indent=2, sort_keys=False, allow_nan=False)
    except TypeError as err:
        raise TypeError(f"save_model: metadata must be JSON-serialisable, got {err}") from None
    if not force and not written_by_schurjax(p):
        raise ValueError(
            f"save_model: {str(side)!r} or {str(p)!r} exists and was not written by schurjax; refusing to replace "
            "it (move it away, pick another path, or pass force=True)"
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    _write_pair(p, side, weights, text + "\n")
    return p


def _dynamics_of_sidecar(side: Path, meta: dict[str, Any]) -> tuple[float, str, str, bool]:
    """``(alpha, nonlinearity, form, has_h0)`` from a RateRNN sidecar, or a one-line ValueError."""
    dyn = meta.get("dynamics")
    expected = (
        "{'alpha': (0, 1], 'nonlinearity': 'tanh'|'relu'|'softplus', 'form': 'rate'|'post'|'current', 'h0': bool}"
    )
    if not isinstance(dyn, dict):
        raise ValueError(f"load_model: {str(side)!r} has no 'dynamics' record; expected {expected}")
    try:
        alpha = check_alpha("load_model", dyn.get("alpha"))
    except ValueError:
        raise ValueError(
            f"load_model: {str(side)!r} dynamics.alpha must be in (0, 1], got {dyn.get('alpha')!r}"
        ) from None
    nl, form, h0 = dyn.get("nonlinearity"), dyn.get("form"), dyn.get("h0")
    if nl not in NONLINEARITIES or form not in FORMS or not isinstance(h0, bool):
        raise ValueError(f"load_model: {str(side)!r} dynamics must be {expected}, got {dyn!r}")
    return alpha, nl, form, h0


def load_model(path: str | Path) -> tuple[RateRNN, dict[str, Any]]:
    """Read a model saved by :func:`save_model`.

    Args:
        path: the ``.eqx`` file (its ``.json`` sidecar must sit next to it).

    Returns:
        ``(model, metadata)``: a ``TanhRNN`` for :data:`FORMAT` files, a ``RateRNN`` with the recorded ``alpha``,
        ``nonlinearity``, ``form`` and ``h0`` for :data:`FORMAT_RATE` files; ``metadata`` is the whole sidecar
        (the caller's keys plus ``format``, ``sizes``, ``sha256``, ``schurjax_version`` and ``dynamics``).

    Raises:
        ValueError: missing, corrupt, truncated or mismatched files (one line, naming the file).

    Example::

        model, meta = load_model("runs/ff.eqx")
    """
    p, side = _paths("load_model", path)
    if not p.is_file():
        raise ValueError(f"load_model: no model file at {str(p)!r}")
    if not side.is_file():
        raise ValueError(f"load_model: metadata sidecar {str(side)!r} is missing (expected next to {p.name})")
    try:
        meta = _json.loads(side.read_text())
    except ValueError as err:  # not JSON, not UTF-8, nested too deep
        raise ValueError(f"load_model: {str(side)!r} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"load_model: {str(side)!r} has format {got!r}, expected {FORMAT!r} or {FORMAT_RATE!r}")
    sizes = meta.get("sizes")
    try:
        n_in, n_hidden, n_out = (int(sizes[k]) for k in ("n_in", "n_hidden", "n_out"))
    except (TypeError, KeyError, ValueError):
        raise ValueError(
            f"load_model: {str(side)!r} sizes must be {{'n_in', 'n_hidden', 'n_out'}} ints, got {sizes!r}"
        ) from None
    if min(n_in, n_hidden, n_out) < 1:
        raise ValueError(f"load_model: {str(side)!r} sizes must be ints >= 1, got {sizes!r}")
    digest = _sha256(p)
    if "sha256" not in meta:
        raise ValueError(f"load_model: {str(side)!r} has no sha256 checksum of {p.name} (not written by save_model)")
    if meta["sha256"] != digest:
        raise ValueError(
            f"load_model: {str(p)!r} is corrupt or does not belong to its sidecar (sha256 {digest[:12]}..., "
            f"expected {str(meta.get('sha256'))[:12]}...)"
        )
    if meta["format"] == FORMAT:
        kind = "TanhRNN"
        skeleton = jax.eval_shape(lambda: TanhRNN(n_in, n_hidden, n_out, key=jax.random.key(0)))
    else:
        alpha, nl, form, has_h0 = _dynamics_of_sidecar(side, meta)
        kind = f"RateRNN ({form} form, {nl}, alpha={alpha:g}{', h0' if has_h0 else ''})"
        skeleton = jax.eval_shape(
            lambda: RateRNN(
                n_in,
                n_hidden,
                n_out,
                alpha=alpha,
                nonlinearity=nl,
                form=form,
                learn_h0=has_h0,
                key=jax.random.key(0),
            )
        )
    n_floats = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(skeleton))
    size = p.stat().st_size
    if size < 4 * n_floats:  # before allocating anything of the sidecar's sizes: the file bounds them
        raise ValueError(
            f"load_model: {str(p)!r} does not hold a {kind} with sizes n_in={n_in}, n_hidden={n_hidden}, "
            f"n_out={n_out} (it has {size} bytes, fewer than the {4 * n_floats} its weights need)"
        )
    skeleton = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), skeleton)
    expected = _expected_size(skeleton)
    if size != expected:
        why = "truncated" if size < expected else "trailing bytes, or other sizes"
        raise ValueError(
            f"load_model: {str(p)!r} does not hold a {kind} with sizes n_in={n_in}, n_hidden={n_hidden}, "
            f"n_out={n_out} ({size} bytes, expected {expected}: {why})"
        )
    try:
        model = eqx.tree_deserialise_leaves(p, skeleton)
    except Exception as err:  # noqa: BLE001 - any failure here means a bad file
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"load_model: {str(p)!r} does not hold a {kind} with sizes n_in={n_in}, n_hidden={n_hidden}, "
            f"n_out={n_out} ({msg})"
        ) from None
    return model, meta


def _expected_size(skeleton: RateRNN) -> int:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, skeleton)
    return len(buf.getvalue())


def import_torch(
    path: str | Path,
    out: str | Path,
    *,
    task: Any = None,
    prefix: str | None = None,
    readout_prefix: str | None = None,
    force: bool = False,
) -> Path:
    """Convert a PyTorch checkpoint (``nn.RNN`` + ``nn.Linear`` state dict) into a ``.eqx`` model with its sidecar.

    :func:`import_model` with ``layout="torch-rnn"``: the file is read with ``torch.load(path, weights_only=True)``
    (:func:`schurjax.store.torch_io.from_torch`; a state dict imports as tanh).

    Args:
        path: the PyTorch checkpoint (a state dict, possibly nested like ``{"model": state_dict, ...}``).
        out: target ``.eqx`` path (the ``.json`` sidecar goes next to it); refused when either file exists,
            unless ``force``.
        task: None, a task name (``"copy"``, ``"neurogym:PerceptualDecisionMaking-v0"``, ``"module:Name"``) or a
            task object; its name and params go into the metadata, so ``schurjax sweep out.eqx`` finds the task.
            The model's n_in/n_out must fit it.
        prefix, readout_prefix: key prefixes when the state dict holds several candidates.
        force: replace existing target files.

    Returns:
        The ``.eqx`` path. Metadata: ``{"task": {"name", "params"}, "source": {"torch_checkpoint", "file",
        "sha256", "layout", "prefix", "readout_prefix", "alpha", "form", "nonlinearity"}}``.

    Raises:
        ValueError: one line (see ``from_torch``; a task the model does not fit; an existing target).

    Example::

        import_torch("model.pt", "model.eqx", task="neurogym:PerceptualDecisionMaking-v0")
    """
    return import_model(
        path,
        out,
        layout="torch-rnn",
        task=task,
        prefix=prefix,
        readout_prefix=readout_prefix,
        force=force,
        where="import_torch",
    )


def import_model(
    path: str | Path,
    out: str | Path,
    *,
    layout: str = "auto",
    alpha: float | None = None,
    form: str | None = None,
    nonlinearity: str | None = None,
    task: Any = None,
    prefix: str | None = None,
    readout_prefix: str | None = None,
    force: bool = False,
    where: str = "import",
    task_source: str | None = None,
) -> Path:
    """Import a weight file of any layout (:func:`schurjax.store.torch_io.load_file`) and save it as ``out`` (``.eqx``).

    What ``schurjax import FILE --out model.eqx [--task NAME] [--layout L] [--alpha A] [--form F]
    [--nonlinearity N] [--force]`` runs. The model file records the step (its format, and for a leaky model its
    ``dynamics``), so ``load_model`` returns the same RateRNN and ``schurjax sweep out.eqx`` needs no further
    flags. Nothing is written unless the whole import succeeds; nothing half-written remains on a failure.

    Args:
        path: the source file (``.pt``/``.pth`` checkpoint or ``.npz``).
        out: target ``.eqx``; refused in one line when it or its ``.json`` exists, unless ``force``.
        layout: "auto", "torch-rnn", "neurogym", "psychrnn", "npz" or "lowrank".
        alpha, form, nonlinearity: the step where the file does not record it.
        task: the task the model was trained on (name, ``neurogym:<id>``, ``module:Name`` or a task object); it
            must fit the model's n_in/n_out. Your own task's ``module:Name`` is recorded as ``task.source``
            (:func:`schurjax.tasks.source_of`), text a sweep never imports: it says which ``--task`` to pass.
        prefix, readout_prefix: key prefixes in a torch state dict.
        force: replace existing target files.
        where: the name errors start with.
        task_source: the ``module:Name`` a task object was built from (the CLI's ``--task``), to record.

    Returns:
        The ``.eqx`` path. Metadata: ``{"task": {"name", "params"[, "source"]}, "source": {"file", "sha256", "layout",
        "alpha", "form", "nonlinearity", "prefix", "readout_prefix"[, "torch_checkpoint"]}}`` (the flags as given,
        None where not given); the step itself is in the format tag and ``dynamics``.

    Example::

        import_model("ctrnn.pt", "ctrnn.eqx", layout="neurogym", alpha=0.2, task="neurogym:GoNogo-v0")
    """
    from schurjax import tasks
    from schurjax.store.torch_io import load_file

    p, side = _paths(where, out)
    if not isinstance(force, bool):
        raise ValueError(f"{where}: force must be True or False, got {force!r}")
    if not force:
        for target in (p, side):
            if target.exists() or target.is_symlink():
                raise ValueError(f"{where}: {str(target)!r} already exists; pass --force (force=True) to replace it")
    src = Path(path)
    if not src.is_file():
        raise ValueError(f"{where}: no such file {str(path)!r}")
    model, used = load_file(
        src,
        layout=layout,
        alpha=alpha,
        form=form,
        nonlinearity=nonlinearity,
        prefix=prefix,
        readout_prefix=readout_prefix,
    )
    source: dict[str, Any] = {
        "file": src.name,
        "sha256": _sha256(src),
        "layout": used,
        "alpha": alpha,
        "form": form,
        "nonlinearity": nonlinearity,
        "prefix": prefix,
        "readout_prefix": readout_prefix,
    }
    if src.suffix != ".npz":
        source = {"torch_checkpoint": src.name, **source}
    meta: dict[str, Any] = {"source": source}
    if task is not None:
        t = tasks.get(task) if isinstance(task, str) else tasks.check_task(task, where)
        if (model.n_in, model.n_out) != (t.n_in, t.n_out):
            raise ValueError(
                f"{where}: the model has n_in={model.n_in}, n_out={model.n_out} but task "
                f"{t.name!r} has n_in={t.n_in}, n_out={t.n_out}; expected the task it was trained on"
            )
        meta["task"] = {"name": t.name, "params": t.params()}
        src_spec = tasks.source_of(t, task if isinstance(task, str) else task_source)
        if src_spec is not None:  # your own task: recorded as text, for the sweep to say which --task to pass
            meta["task"]["source"] = src_spec
    try:
        return save_model(out, model, meta, force=True)
    except OSError as err:  # disk full, permissions: nothing half-written remains (see _write_pair)
        raise ValueError(f"{where}: could not write {str(p)!r} ({type(err).__name__}: {err})") from None
