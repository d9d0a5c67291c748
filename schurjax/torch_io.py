"""PyTorch import and export of ``TanhRNN`` (torch is optional: ``pip install 'schurjax[torch]'``).

schurjax's model (arXiv:2606.18457; see schurjax.rnn) is exactly a one-layer unidirectional ``torch.nn.RNN`` with
``nonlinearity="tanh"`` followed by a ``torch.nn.Linear`` readout: ``W_in = weight_ih_l0``, ``W_rec =
weight_hh_l0``, ``b = bias_ih_l0 + bias_hh_l0``, ``W_out = weight``, ``b_out = bias`` (a missing bias is 0;
``batch_first`` does not change the weights). :func:`from_torch` takes that pair as modules, as two state dicts, as
one whole model's ``state_dict()`` (keys with prefixes, found by their suffixes) or as a checkpoint file. Files
are read with ``torch.load(path, weights_only=True)``: tensors and plain containers only, never arbitrary pickled
objects. Every route ends in the same float64 sum and float32 cast, so the four give bitwise the same model.

Example::

    model = from_torch(net.rnn, net.readout)           # modules
    model = from_torch(net.state_dict())               # whole model: finds rnn.weight_hh_l0, readout.weight
    model = from_torch("model.pt")                      # a saved state dict (or {"model": state_dict, ...})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["from_torch", "to_torch", "load_state", "SUPPORTED"]

SUPPORTED = (
    "a one-layer unidirectional torch.nn.RNN(nonlinearity='tanh') (batch_first either way, bias or not) "
    "with a torch.nn.Linear readout"
)
"""What schurjax imports, as said in its error messages."""

_W = "TanhRNN.from_torch"
_RNN_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _fail(msg: str) -> None:
    raise ValueError(f"{_W}: {msg}")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(f"{_W}: torch is not installed; install the extra: pip install 'schurjax[torch]'") from None
    return torch


def _is_module(obj: Any) -> bool:
    """A ``torch.nn.Module`` (user subclasses included), told without importing torch."""
    return any(c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in type(obj).__mro__)


def _np(name: str, value: Any) -> np.ndarray:
    """float64 NumPy copy of a tensor or array (bfloat16/float16 tensors included)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = value.double() if value.is_floating_point() else value
        value = value.numpy()
    a = np.asarray(value)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        _fail(f"{name} must be a real tensor, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        _fail(f"{name} holds {int((~np.isfinite(a)).sum())} NaN/inf entries; expected finite weights")
    return a


def _check_rnn_module(name: str, m: Any) -> None:
    """Refuse GRU/LSTM, ReLU, multi-layer, bidirectional and projected recurrent modules in one line."""
    kind = type(m).__name__
    mode = getattr(m, "mode", None)
    if kind in ("GRU", "LSTM") or mode in ("GRU", "LSTM"):
        _fail(f"{name} is a torch.nn.{kind}; schurjax supports {SUPPORTED}")
    got = []
    if mode == "RNN_RELU" or getattr(m, "nonlinearity", "tanh") != "tanh":
        got.append("nonlinearity='relu'")
    if getattr(m, "num_layers", 1) != 1:
        got.append(f"num_layers={m.num_layers}")
    if getattr(m, "bidirectional", False):
        got.append("bidirectional=True")
    if getattr(m, "proj_size", 0):
        got.append(f"proj_size={m.proj_size}")
    if got:
        _fail(f"{name} is a torch.nn.RNN({', '.join(got)}); schurjax supports {SUPPORTED}")


def _flatten(obj: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (a checkpoint like {"model": state_dict, "epoch": 3}) -> {"model.rnn.weight_hh_l0": ...}."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif hasattr(v, "shape") and hasattr(v, "dtype"):
            out[key] = v
    return out


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a PyTorch checkpoint with ``torch.load(path, weights_only=True)`` and flatten nested dicts.

    Returns:
        ``{key: tensor}``, nested keys joined with ``"."`` (``{"model": sd}`` gives ``"model.rnn.weight_hh_l0"``).

    Raises:
        ValueError: one line: no such file, a file that is not a checkpoint, or one that holds pickled Python
            objects (``torch.save(model)``) which schurjax does not unpickle.

    Example::

        sorted(load_state("model.pt"))[:2]
    """
    p = Path(path)
    if not p.is_file():
        _fail(f"no checkpoint file at {str(path)!r}")
    torch = _torch()
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        text = str(err)
        if "allowed global" in text or "Unsupported global" in text:
            _fail(
                f"{str(path)!r} holds pickled Python objects (saved with torch.save(model)?), which schurjax does "
                "not unpickle; save model.state_dict() instead"
            )
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Check the documentation")]
        reason = lines[-1] if lines else ""
        _fail(
            f"{str(path)!r} is not a PyTorch checkpoint (torch.load(weights_only=True): "
            f"{type(err).__name__}: {reason[:120]})"
        )
    if not isinstance(obj, Mapping):
        _fail(f"{str(path)!r} holds a {type(obj).__name__}; expected a state dict (torch.save(model.state_dict()))")
    return _flatten(obj)


def _rnn_prefix(sd: Mapping[str, Any], prefix: str | None, where: str) -> str:
    cands = sorted(k[: -len("weight_hh_l0")] for k in sd if k.endswith("weight_hh_l0"))
    if prefix is not None:
        if not isinstance(prefix, str):
            _fail(f"prefix must be a str such as 'rnn.', got {prefix!r}")
        if prefix not in cands:
            _fail(f"prefix={prefix!r} matches no '<prefix>weight_hh_l0' key in {where}; candidates: {cands}")
        return prefix
    if not cands:
        keys = sorted(sd)
        _fail(
            f"{where} holds no torch.nn.RNN weights (no key ending in 'weight_hh_l0'); its keys: "
            f"{keys[:8]}{' ...' if len(keys) > 8 else ''}"
        )
    if len(cands) > 1:
        _fail(f"{where} holds several recurrent layers, prefixes {cands}; pass prefix= to pick one")
    return cands[0]


def _rnn_arrays(sd: Mapping[str, Any], p: str, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    own = [k[len(p) :] for k in sd if k.startswith(p) and k[len(p) :].startswith(("weight_", "bias_"))]
    if "weight_ih_l0" not in own:
        _fail(f"{where} has {p}weight_hh_l0 but no {p}weight_ih_l0; expected the state dict of {SUPPORTED}")
    extra = sorted(k for k in own if k not in _RNN_KEYS)
    if extra:
        what = (
            "bidirectional"
            if any("reverse" in k for k in extra)
            else "an LSTM with proj_size"
            if any(k.startswith("weight_hr") for k in extra)
            else "multi-layer"
        )
        _fail(f"{where} looks {what} (keys {[p + k for k in extra][:4]}); schurjax supports {SUPPORTED}")
    W_hh = _np(p + "weight_hh_l0", sd[p + "weight_hh_l0"])
    W_ih = _np(p + "weight_ih_l0", sd[p + "weight_ih_l0"])
    if W_hh.ndim != 2:
        _fail(f"{p}weight_hh_l0 must be 2-D (n, n), got shape {W_hh.shape}")
    rows, n = W_hh.shape
    if rows in (3 * n, 4 * n) and rows != n:
        kind = "GRU" if rows == 3 * n else "LSTM"
        _fail(
            f"{where} holds a torch.nn.{kind} ({p}weight_hh_l0 has shape {W_hh.shape} = ({rows // n}n, n)); "
            f"schurjax supports {SUPPORTED}"
        )
    if rows != n:
        _fail(f"{p}weight_hh_l0 must be square (n, n), got shape {W_hh.shape}")
    if W_ih.ndim != 2 or W_ih.shape[0] != n:
        _fail(f"{p}weight_ih_l0 must have shape (n={n}, n_in), got {W_ih.shape}")
    b = np.zeros(n)
    for k in ("bias_ih_l0", "bias_hh_l0"):  # sum in float64, then one cast: the same bits on every route
        if p + k in sd:
            bk = _np(p + k, sd[p + k])
            if bk.shape != (n,):
                _fail(f"{p}{k} must have shape ({n},), got {bk.shape}")
            b = b + bk
    return W_ih, W_hh, b


def _readout_prefix(sd: Mapping[str, Any], n: int, rnn_p: str, prefix: str | None, where: str) -> str:
    def is_weight(k: str) -> bool:
        return k == "weight" or k.endswith(".weight")

    cands = sorted(
        k[: -len("weight")]
        for k in sd
        if is_weight(k) and np.ndim(sd[k]) == 2 and np.shape(sd[k])[1] == n and not k.startswith(rnn_p + "weight_")
    )
    if prefix is not None:
        if not isinstance(prefix, str):
            _fail(f"readout_prefix must be a str such as 'readout.', got {prefix!r}")
        if prefix + "weight" not in sd:
            _fail(f"readout_prefix={prefix!r}: {where} has no key {prefix + 'weight'!r}; candidates: {cands}")
        return prefix
    if not cands:
        _fail(
            f"{where} holds no torch.nn.Linear readout (a '<prefix>weight' of shape (n_out, n={n})); "
            f"expected {SUPPORTED}"
        )
    if len(cands) > 1:
        _fail(
            f"{where} holds several possible readouts (Linear weights of shape (n_out, {n})), prefixes {cands}; "
            "pass readout_prefix= to pick one"
        )
    return cands[0]


def _readout_arrays(sd: Mapping[str, Any], p: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    W_out = _np(p + "weight", sd[p + "weight"])
    if W_out.ndim != 2 or W_out.shape[1] != n:
        _fail(f"readout {p}weight must have shape (n_out, n={n}), got {W_out.shape}")
    b_out = np.zeros(W_out.shape[0])
    if p + "bias" in sd:
        b_out = _np(p + "bias", sd[p + "bias"])
        if b_out.shape != (W_out.shape[0],):
            _fail(f"readout {p}bias must have shape ({W_out.shape[0]},), got {b_out.shape}")
    return W_out, b_out


def _state_of(name: str, obj: Any) -> dict[str, Any]:
    if _is_module(obj):
        return dict(obj.state_dict())
    if isinstance(obj, Mapping):
        return _flatten(obj)
    _fail(
        f"{name} must be a torch module, a state dict or (first argument only) a checkpoint path, got "
        f"{type(obj).__name__}"
    )
    raise AssertionError  # unreachable


def from_torch(rnn: Any, readout: Any = None, *, prefix: str | None = None, readout_prefix: str | None = None):
    """Import a PyTorch ``nn.RNN`` + ``nn.Linear`` network as a ``TanhRNN`` (see the module docstring).

    Args:
        rnn: one of
            * a ``torch.nn.RNN`` module (with ``readout`` a ``torch.nn.Linear`` module or its state dict);
            * ``rnn.state_dict()`` (with ``readout`` the Linear's state dict);
            * a whole model (``nn.Module``) or its ``state_dict()``, with ``readout=None``: the keys ending in
              ``weight_ih_l0``/``weight_hh_l0``/``bias_*_l0`` and the Linear whose weight is ``(n_out, n)`` are found
              by suffix and shape;
            * a checkpoint path (``str``/``PathLike``) holding such a state dict, possibly nested
              (``{"model": state_dict, "epoch": 3}``), read with ``torch.load(path, weights_only=True)``.
        readout: the readout for the first two forms; None for the others.
        prefix: the RNN's key prefix in a whole state dict (e.g. ``"encoder.rnn."``) when there are several.
        readout_prefix: the readout's key prefix (e.g. ``"head."``) when there are several candidates. Giving
            both also allows a state dict with other weights (which are not imported).

    Returns:
        TanhRNN (float32) with ``b = bias_ih_l0 + bias_hh_l0``.

    Raises:
        ValueError: one line: a GRU/LSTM, ReLU, multi-layer or bidirectional network (saying what schurjax
            supports), ambiguous prefixes (listing the candidates), a file that is not a checkpoint, NaN weights.
        ImportError: torch is needed for modules and files and is not installed.

    A state dict does not record the nonlinearity: a ReLU ``nn.RNN`` is refused as a module, but its state dict
    or checkpoint imports as tanh. Other layers (an input encoder, a second head) are refused in a whole model
    unless both prefixes are given: schurjax's model is x -> RNN -> Linear, nothing else.

    Example::

        model = sj.TanhRNN.from_torch(net.rnn, net.readout)
        model = sj.TanhRNN.from_torch(torch.load("model.pt", weights_only=True), prefix="rnn.")
    """
    from schurjax.rnn import TanhRNN

    whole = readout is None
    if isinstance(rnn, str | os.PathLike):
        if not whole:
            _fail("a checkpoint path holds the whole model; pass readout=None (use prefix=/readout_prefix=)")
        sd, where = load_state(rnn), repr(str(rnn))
    elif _is_module(rnn):
        mods = [(name, m) for name, m in rnn.named_modules() if hasattr(m, "weight_hh_l0")]
        for name, m in mods:  # the state dict does not say tanh vs relu: the modules do
            if prefix is None or (f"{name}." if name else "") == prefix:
                _check_rnn_module(name or "rnn", m)
        if not whole and rnn not in [m for _, m in mods]:
            _fail(f"with a readout, rnn must be a torch.nn.RNN module, got {type(rnn).__name__}")
        sd, where = dict(rnn.state_dict()), f"the {type(rnn).__name__} module"
    elif isinstance(rnn, Mapping):
        sd, where = _flatten(rnn), "the state dict"
    else:
        _fail(f"rnn must be a torch.nn.RNN, a model, a state dict or a checkpoint path, got {type(rnn).__name__}")
    if whole:
        p = _rnn_prefix(sd, prefix, where)
        W_ih, W_hh, b = _rnn_arrays(sd, p, where)
        n = W_hh.shape[0]
        q = _readout_prefix(sd, n, p, readout_prefix, where)
        if prefix is None or readout_prefix is None:
            others = sorted(k for k in sd if k.endswith("weight") and np.ndim(sd[k]) >= 2 and k != q + "weight")
            if others:
                _fail(
                    f"{where} holds other weights {others[:4]} besides {p}* and {q}*; schurjax's model is "
                    "x -> nn.RNN -> nn.Linear (pass prefix= and readout_prefix= to import those two alone)"
                )
        W_out, b_out = _readout_arrays(sd, q, n)
    else:
        rs = _state_of("rnn", rnn)
        if not any(k.endswith("weight_hh_l0") for k in rs):
            _fail(
                f"rnn must be the state dict of a one-layer torch.nn.RNN with keys weight_ih_l0, weight_hh_l0"
                f"[, bias_ih_l0, bias_hh_l0], got keys {sorted(rs)[:8]}"
            )
        W_ih, W_hh, b = _rnn_arrays(rs, _rnn_prefix(rs, prefix, "rnn"), "rnn")
        if _is_module(readout) and not any(c.__name__ == "Linear" for c in type(readout).__mro__):
            _fail(f"readout must be a torch.nn.Linear, got torch.nn.{type(readout).__name__}")
        ro = _state_of("readout", readout)
        if "weight" not in ro:
            _fail(f"readout must be a torch.nn.Linear or its state dict with key weight[, bias], got keys {sorted(ro)}")
        W_out, b_out = _readout_arrays(ro, "", W_hh.shape[0])
    return TanhRNN.from_arrays(W_ih, W_hh, b, W_out, b_out)


def to_torch(model: Any, *, batch_first: bool = True) -> tuple[Any, Any]:
    """Export as ``(torch.nn.RNN(nonlinearity="tanh"), torch.nn.Linear)`` (float32); ``b`` goes to ``bias_ih_l0``.

    ``from_torch(*to_torch(model))`` gives back bitwise the same model.

    Example::

        rnn, lin = to_torch(model)
        h, _ = rnn(torch.as_tensor(x)[None]); y = lin(h)
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TanhRNN.to_torch: torch is not installed; install the extra: pip install 'schurjax[torch]'"
        ) from None
    if not isinstance(batch_first, bool):
        raise ValueError(f"TanhRNN.to_torch: batch_first must be True or False, got {batch_first!r}")
    rnn = torch.nn.RNN(model.n_in, model.n_hidden, num_layers=1, nonlinearity="tanh", batch_first=batch_first)
    lin = torch.nn.Linear(model.n_hidden, model.n_out)

    def t(a):
        return torch.from_numpy(np.array(a, dtype=np.float32))

    with torch.no_grad():
        rnn.weight_ih_l0.copy_(t(model.W_in))
        rnn.weight_hh_l0.copy_(t(model.W_rec))
        rnn.bias_ih_l0.copy_(t(model.b))
        rnn.bias_hh_l0.zero_()
        lin.weight.copy_(t(model.W_out))
        lin.bias.copy_(t(model.b_out))
    return rnn, lin
