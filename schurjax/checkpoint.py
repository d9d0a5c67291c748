"""Save and load a ``TanhRNN`` with JSON metadata, without pickle.

The weights go to ``<name>.eqx`` via ``equinox.tree_serialise_leaves``; a JSON sidecar ``<name>.json`` holds the
format tag, the sizes, the package version, a SHA-256 of the weights file and the caller's metadata (task name and
parameters, training config, metrics, ...). Loading checks all of it and raises a one-line ``ValueError`` on a
corrupt, truncated or mismatched file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from schurjax._json import finite_or_none
from schurjax.rnn import TanhRNN

__all__ = ["save_model", "load_model", "import_torch", "FORMAT"]

FORMAT = "schurjax.TanhRNN/1"
"""Format tag written to (and required in) every sidecar."""

_RESERVED = ("format", "sizes", "sha256", "schurjax_version")


def _paths(where: str, path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix != ".eqx":
        raise ValueError(f"{where}: path must end with '.eqx', got {str(path)!r}")
    return p, p.with_suffix(".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(path: str | Path, model: TanhRNN, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (``.eqx``) and its metadata to the ``.json`` sidecar next to it.

    Args:
        path: target file, ending in ``.eqx``; parent folders are created.
        model: the model to save.
        metadata: JSON-able dict (e.g. ``{"task": {...}, "train": {...}, "metrics": {...}}``). The keys
            ``format``, ``sizes``, ``sha256`` and ``schurjax_version`` are written by this function: a loaded
            sidecar may be passed back (``save_model(q, *load_model(p))``), but ``format`` and ``sizes`` must
            agree with what is written.

    Returns:
        The ``.eqx`` path.

    Example::

        save_model("runs/ff.eqx", model, {"task": {"name": "flipflop", "params": task.params()}})
    """
    p, side = _paths("save_model", path)
    if not isinstance(model, TanhRNN):
        raise TypeError(f"save_model: model must be a TanhRNN, got {type(model).__name__}")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(f"save_model: metadata must be a dict or None, got {type(metadata).__name__}")
    sizes = {"n_in": model.n_in, "n_hidden": model.n_hidden, "n_out": model.n_out}
    for key, written in (("format", FORMAT), ("sizes", sizes)):
        if key in metadata and metadata[key] != written:
            raise ValueError(
                f"save_model: metadata key {key!r} is reserved and must be {written!r} if given, got {metadata[key]!r}"
            )
    metadata = {k: v for k, v in metadata.items() if k not in _RESERVED}
    from schurjax import __version__

    p.parent.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(p, model)
    record = {
        "format": FORMAT,
        "sizes": sizes,
        "sha256": _sha256(p),
        "schurjax_version": __version__,
        **metadata,
    }
    try:
        text = json.dumps(finite_or_none(record), indent=2, sort_keys=False, allow_nan=False)
    except TypeError as err:
        p.unlink(missing_ok=True)
        raise TypeError(f"save_model: metadata must be JSON-serialisable, got {err}") from None
    side.write_text(text + "\n")
    return p


def load_model(path: str | Path) -> tuple[TanhRNN, dict[str, Any]]:
    """Read a model saved by :func:`save_model`.

    Args:
        path: the ``.eqx`` file (its ``.json`` sidecar must sit next to it).

    Returns:
        ``(model, metadata)``; ``metadata`` is the whole sidecar (the caller's keys plus ``format``, ``sizes``,
        ``sha256``, ``schurjax_version``).

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
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"load_model: {str(side)!r} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"load_model: {str(side)!r} has format {got!r}, expected {FORMAT!r}")
    sizes = meta.get("sizes")
    try:
        n_in, n_hidden, n_out = (int(sizes[k]) for k in ("n_in", "n_hidden", "n_out"))
    except (TypeError, KeyError, ValueError):
        raise ValueError(
            f"load_model: {str(side)!r} sizes must be {{'n_in', 'n_hidden', 'n_out'}} ints, got {sizes!r}"
        ) from None
    digest = _sha256(p)
    if "sha256" not in meta:
        raise ValueError(f"load_model: {str(side)!r} has no sha256 checksum of {p.name} (not written by save_model)")
    if meta["sha256"] != digest:
        raise ValueError(
            f"load_model: {str(p)!r} is corrupt or does not belong to its sidecar (sha256 {digest[:12]}..., "
            f"expected {str(meta.get('sha256'))[:12]}...)"
        )
    skeleton = jax.eval_shape(lambda: TanhRNN(n_in, n_hidden, n_out, key=jax.random.key(0)))
    skeleton = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), skeleton)
    try:
        model = eqx.tree_deserialise_leaves(p, skeleton)
    except Exception as err:  # noqa: BLE001 - any failure here means a bad file
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"load_model: {str(p)!r} does not hold a TanhRNN with sizes n_in={n_in}, n_hidden={n_hidden}, "
            f"n_out={n_out} ({msg})"
        ) from None
    if p.stat().st_size != _expected_size(skeleton, p):
        raise ValueError(f"load_model: {str(p)!r} has trailing bytes; expected a TanhRNN of sizes {sizes}")
    return model, meta


def _expected_size(skeleton: TanhRNN, p: Path) -> int:
    import io

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, skeleton)
    return len(buf.getvalue())


def import_torch(
    path: str | Path, out: str | Path, *, task: Any = None, prefix: str | None = None, readout_prefix: str | None = None
) -> Path:
    """Convert a PyTorch checkpoint (``nn.RNN`` + ``nn.Linear`` state dict) into a ``.eqx`` model with its sidecar.

    What ``schurjax import model.pt --out model.eqx [--task NAME]`` runs. The file is read with
    ``torch.load(path, weights_only=True)`` (:func:`schurjax.torch_io.from_torch`).

    Args:
        path: the PyTorch checkpoint (a state dict, possibly nested like ``{"model": state_dict, ...}``).
        out: target ``.eqx`` path (the ``.json`` sidecar goes next to it).
        task: None, a task name (``"copy"``, ``"neurogym:PerceptualDecisionMaking-v0"``, ``"module:Name"``) or a
            task object; its name and params go into the metadata, so ``schurjax sweep out.eqx`` finds the task.
            The model's n_in/n_out must fit it.
        prefix, readout_prefix: key prefixes when the state dict holds several candidates.

    Returns:
        The ``.eqx`` path. Metadata: ``{"task": {"name", "params"}, "source": {"torch_checkpoint", "sha256",
        "prefix", "readout_prefix"}}``.

    Raises:
        ValueError: one line (see ``from_torch``; a task the model does not fit).

    Example::

        import_torch("model.pt", "model.eqx", task="neurogym:PerceptualDecisionMaking-v0")
    """
    from schurjax import tasks

    _paths("import_torch", out)
    model = TanhRNN.from_torch(path, prefix=prefix, readout_prefix=readout_prefix)
    meta: dict[str, Any] = {
        "source": {
            "torch_checkpoint": Path(path).name,
            "sha256": _sha256(Path(path)),
            "prefix": prefix,
            "readout_prefix": readout_prefix,
        }
    }
    if task is not None:
        t = tasks.get(task) if isinstance(task, str) else tasks.check_task(task, "import_torch")
        if (model.n_in, model.n_out) != (t.n_in, t.n_out):
            raise ValueError(
                f"import_torch: the model has n_in={model.n_in}, n_out={model.n_out} but task "
                f"{t.name!r} has n_in={t.n_in}, n_out={t.n_out}; expected the task it was trained on"
            )
        meta["task"] = {"name": t.name, "params": t.params()}
    return save_model(out, model, meta)
