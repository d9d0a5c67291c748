"""PyTorch and NumPy import, and PyTorch export, of schurjax's models (torch is optional: ``pip install
'schurjax[torch]'``).

What is imported, and how each source maps onto a form of schurjax's models (see schurjax.rnn; the paper's model
is arXiv:2606.18457's one-layer tanh RNN). Every route sums and rescales in float64 and casts to float32 once.
Files are read without running code: ``torch.load(path, weights_only=True)`` (tensors and plain containers only)
and ``np.load(path, allow_pickle=False)`` (an object array is refused in one line naming its key).

``torch.nn.RNN`` (:func:`from_torch`, layout ``"torch-rnn"``): one layer, unidirectional, ``nonlinearity``
"tanh" (a :class:`TanhRNN`) or "relu" (a ``RateRNN(alpha=1, "relu", "rate")``), with a ``torch.nn.Linear``
readout::

    W_in = weight_ih_l0   W_rec = weight_hh_l0   b = bias_ih_l0 + bias_hh_l0   W_out = weight   b_out = bias

``bias=False`` (neither bias key) means ``b = 0``; one bias key without the other is refused. A module says
its nonlinearity; a state dict does not, so it is ``nonlinearity=`` (default "tanh"). ``batch_first`` does not
change the weights.

NeuroGym's example ``CTRNN`` (:func:`from_ctrnn`, layout ``"neurogym"``), ``h' = relu(h (1 - alpha) + alpha
(input2h(x) + h2h(h)))`` with a ``Linear`` readout (commonly ``fc``), is the ``"post"`` form::

    W_in = input2h.weight   W_rec = h2h.weight   b = input2h.bias + h2h.bias   W_out = fc.weight   b_out = fc.bias

``alpha`` comes from the module (its ``alpha`` attribute, else ``dt / tau``) or is given; nonlinearity "relu"
(the example's) unless given.

``.npz`` weight files (:func:`from_npz`), read with ``allow_pickle=False``:

* layout ``"npz"``: arrays named as schurjax's fields, ``W_in (n, n_in)``, ``W_rec (n, n)``, ``b (n,)``,
  ``W_out (n_out, n)``, ``b_out (n_out,)``, ``h0 (n,)`` (the biases and ``h0`` optional), and optionally the
  scalars ``alpha``, ``nonlinearity``, ``form``; ``keys={"W_rec": "J", ...}`` maps other names onto these.
* layout ``"psychrnn"``: what PsychRNN's ``RNN.save`` writes (``W_in``, ``W_rec``, ``W_out``, ``b_rec``,
  ``b_out``, ``init_state (1, n)``, ``Dale_rec``, ``Dale_out``, ``input_connectivity``, ``rec_connectivity``,
  ``output_connectivity``, ``dale_ratio``, ``transfer_function``). PsychRNN's ``Basic`` step is the ``"current"``
  form, ``x' = (1 - alpha) x + alpha (W_rec_eff relu(x) + W_in_eff u + b_rec)``, ``y = W_out_eff relu(x) + b_out``,
  with ``alpha = dt / tau`` and the effective weights of its ``get_effective_W_*``::

      W_rec_eff = |W_rec * rec_connectivity| @ Dale_rec      (Dale's law on; else W_rec * rec_connectivity)
      W_in_eff  = |W_in * input_connectivity|                (Dale's law on; else W_in * input_connectivity)
      W_out_eff = |W_out * output_connectivity| @ Dale_out   (Dale's law on; else W_out * output_connectivity)

  ``RNN.save`` already stores the effective matrices, and with 0/1 masks and a diagonal ±1 (0/1) ``Dale_rec``
  (``Dale_out``) the formulas leave them unchanged, so raw and saved weights import alike. Dale's law is on when
  ``dale_ratio`` is a number; PsychRNN writes ``dale_ratio=None`` and ``transfer_function`` as pickled object
  arrays, which are never unpickled: such a ``dale_ratio`` counts as None (``dale=`` overrides) and the transfer
  function is ``nonlinearity=`` (default "relu", PsychRNN's default). ``alpha`` (``dt / tau``) must be given.
  Optimizer slots that ``RNN.save`` also writes (``W_rec/Adam``, ``W_rec/Adam_1``, ...) are ignored.
  Recurrent noise is not imported (the analysis is deterministic).

Low-rank RNN state dicts (:func:`from_lowrank`, layout ``"lowrank"``) as the low-rank literature ships them
(``LowRankRNN`` of Dubreuil, Valente et al.: ``wi (n_in, N)``, ``si (n_in,)``, ``m, n (N, rank)``, ``b (N,)``,
``wo (N, n_out)``, ``so (n_out,)``, ``h0 (N,)``; or ``FullRankRNN``'s ``wrec (N, N)`` instead of ``m, n``). Their
step and readout are ``x' = x + alpha (-x + W phi(x + b) + W_in u)``, ``y = phi(x) W_out`` with::

    W = m n^T / N        W_in = (si[:, None] * wi)^T        W_out = (wo * so)^T / N         (LowRankRNN)
    W = wrec             W_in = (si[:, None] * wi)^T        W_out = (wo * so)^T             (FullRankRNN)

(``normalise=False`` drops both ``/ N``, as in ``OptimizedLowRankRNN``.) With ``b = 0`` (their default,
``add_biases=False``) this is exactly the ``"current"`` form with ``b_out = 0`` and ``h0``. A nonzero ``b``
sits inside the nonlinearity: the state shift ``x~ = x + b`` turns the step into ``x~' = (1 - alpha) x~ +
alpha (W phi(x~) + W_in u + b)`` exactly, with ``h0~ = h0 + b``, but their readout reads ``phi(x) = phi(x~ - b)``
and their first step ``phi(h0)``, which no form represents; such a file is refused unless ``bias="shift"``
(exact for a network whose readout and first step read ``phi(x + b)``).

Export (:func:`to_torch`): a ``TanhRNN`` becomes ``(torch.nn.RNN(nonlinearity="tanh"), torch.nn.Linear)`` as
before; every other model becomes a small ``torch.nn.Module`` (:func:`torch_module_class`) with parameters
named as schurjax's fields and the same step, which :func:`from_torch` reads back.

Example::

    model = from_torch(net.rnn, net.readout)           # modules
    model = from_torch(net.state_dict())               # whole model: finds rnn.weight_hh_l0, readout.weight
    model = from_torch("model.pt")                      # a saved state dict (or {"model": state_dict, ...})
    model = from_ctrnn(net)                             # NeuroGym's RNNNet(CTRNN + fc), alpha from the module
    model = from_npz("weights.npz", layout="psychrnn", alpha=0.1)
    model = from_lowrank("rank2.pt", alpha=0.2)
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "from_torch",
    "from_ctrnn",
    "from_npz",
    "from_lowrank",
    "load_file",
    "to_torch",
    "torch_module_class",
    "load_state",
    "read_npz",
    "LAYOUTS",
    "SUPPORTED",
]

SUPPORTED = (
    "a one-layer unidirectional torch.nn.RNN(nonlinearity='tanh') (batch_first either way, bias or not) "
    "with a torch.nn.Linear readout"
)
"""What ``TanhRNN.from_torch`` imports, as said in its error messages."""

SUPPORTED_RATE = (
    "a one-layer unidirectional torch.nn.RNN(nonlinearity='tanh' or 'relu') (batch_first either way, bias or not) "
    "with a torch.nn.Linear readout"
)
"""What ``RateRNN.from_torch`` imports through the ``torch.nn.RNN`` route."""

LAYOUTS = ("auto", "torch-rnn", "neurogym", "psychrnn", "npz", "lowrank")
"""The file layouts :func:`load_file` (and ``schurjax import --layout``) reads; see the module docstring."""

_W = "TanhRNN.from_torch"
_RNN_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
_MAX_ELEMENTS = 2**28
"""Largest array (elements) read from a file: 1 GiB of float32; a header that declares more is refused unread."""


@contextlib.contextmanager
def _renamed(where: str) -> Iterator[None]:
    """Re-word the shared helpers' ``TanhRNN.from_torch:`` prefix as ``where:`` (one error idiom, many callers)."""
    try:
        yield
    except ValueError as err:
        text = str(err)
        if where != _W and text.startswith(_W + ": "):
            raise ValueError(f"{where}: {text[len(_W) + 2 :]}") from None
        raise


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


def _check_rnn_module(name: str, m: Any, relu_ok: bool = False) -> str:
    """The nonlinearity of a one-layer ``nn.RNN``; GRU/LSTM, multi-layer, bidirectional, projected: one line."""
    sup = SUPPORTED_RATE if relu_ok else SUPPORTED
    kind = type(m).__name__
    mode = getattr(m, "mode", None)
    if kind in ("GRU", "LSTM") or mode in ("GRU", "LSTM"):
        _fail(f"{name} is a torch.nn.{kind}; schurjax supports {sup}")
    got = []
    nl = "relu" if mode == "RNN_RELU" or getattr(m, "nonlinearity", "tanh") == "relu" else "tanh"
    if nl == "relu" and not relu_ok:
        got.append("nonlinearity='relu'")
    if getattr(m, "num_layers", 1) != 1:
        got.append(f"num_layers={m.num_layers}")
    if getattr(m, "bidirectional", False):
        got.append("bidirectional=True")
    if getattr(m, "proj_size", 0):
        got.append(f"proj_size={m.proj_size}")
    if got:
        _fail(f"{name} is a torch.nn.RNN({', '.join(got)}); schurjax supports {sup}")
    return nl


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
    have = [k for k in ("bias_ih_l0", "bias_hh_l0") if p + k in sd]
    if len(have) == 1:
        missing = "bias_hh_l0" if have == ["bias_ih_l0"] else "bias_ih_l0"
        _fail(
            f"{where} has {p}{have[0]} but no {p}{missing}; a torch.nn.RNN has both biases or (bias=False) neither, "
            "so this state dict is incomplete"
        )
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


def _strip_common_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.wi": ..., "model.m": ...}`` -> ``{"wi": ..., "m": ...}`` (a checkpoint nesting one state dict)."""
    sd = dict(sd)
    while sd and all("." in k for k in sd) and len({k.split(".", 1)[0] for k in sd}) == 1:
        sd = {k.split(".", 1)[1]: v for k, v in sd.items()}
    return sd


def _detect_torch(sd: Mapping[str, Any]) -> str:
    """Which torch layout a flat state dict holds: "schurjax", "neurogym", "lowrank" or "torch-rnn"."""
    keys = set(_strip_common_prefix(sd))
    if {"W_in", "W_rec", "W_out"} <= keys:
        return "schurjax"
    if any(k.endswith("h2h.weight") for k in keys) and any(k.endswith("input2h.weight") for k in keys):
        return "neurogym"
    if any(k.endswith("weight_hh_l0") for k in keys):
        return "torch-rnn"
    if ({"m", "n"} <= keys or "wrec" in keys) and {"wi", "wo"} <= keys:
        return "lowrank"
    return "torch-rnn"


def from_torch(
    rnn: Any,
    readout: Any = None,
    *,
    prefix: str | None = None,
    readout_prefix: str | None = None,
    nonlinearity: str | None = None,
    alpha: float | None = None,
    cls: Any = None,
):
    """Import a PyTorch network (see the module docstring): ``nn.RNN`` + ``nn.Linear``, and with ``cls=RateRNN``
    (what ``RateRNN.from_torch`` passes) also NeuroGym CTRNNs, low-rank state dicts and :func:`to_torch` exports.

    Args:
        rnn: one of
            * a ``torch.nn.RNN`` module (with ``readout`` a ``torch.nn.Linear`` module or its state dict);
            * ``rnn.state_dict()`` (with ``readout`` the Linear's state dict);
            * a whole model (``nn.Module``) or its ``state_dict()``, with ``readout=None``: the keys ending in
              ``weight_ih_l0``/``weight_hh_l0``/``bias_*_l0`` and the Linear whose weight is ``(n_out, n)`` are found
              by suffix and shape;
            * a checkpoint path (``str``/``PathLike``) holding such a state dict, possibly nested
              (``{"model": state_dict, "epoch": 3}``), read with ``torch.load(path, weights_only=True)``.
            With ``cls`` not ``TanhRNN``, also a NeuroGym ``CTRNN``/``RNNNet`` (module, state dict or file; see
            :func:`from_ctrnn`), a low-rank ``LowRankRNN``/``FullRankRNN`` (:func:`from_lowrank`) or the module
            :func:`to_torch` returns, told apart by their keys.
        readout: the readout for the first two forms; None for the others.
        prefix: the RNN's key prefix in a whole state dict (e.g. ``"encoder.rnn."``) when there are several.
        readout_prefix: the readout's key prefix (e.g. ``"head."``) when there are several candidates. Giving
            both also allows a state dict with other weights (which are not imported).
        nonlinearity: ``"tanh"`` or ``"relu"`` for an ``nn.RNN`` state dict (a module says its own; default
            ``"tanh"``); for the other sources, see their functions.
        alpha: ``dt / tau`` for a CTRNN or low-rank source that does not store it; must be None or 1 for an
            ``nn.RNN`` (it has no leak).
        cls: ``TanhRNN`` (tanh ``nn.RNN`` only, what ``TanhRNN.from_torch`` passes), or None / ``RateRNN``.

    Returns:
        TanhRNN (float32) for a tanh ``nn.RNN``, with ``b = bias_ih_l0 + bias_hh_l0``; a RateRNN otherwise.

    Raises:
        ValueError: one line: a GRU/LSTM, multi-layer or bidirectional network (saying what schurjax supports),
            a ReLU network for ``TanhRNN``, ambiguous prefixes (listing the candidates), one bias key without the
            other, a file that is not a checkpoint, NaN weights.
        ImportError: torch is needed for modules and files and is not installed.

    Other layers (an input encoder, a second head) are refused in a whole model unless both prefixes are given:
    schurjax's model is x -> RNN -> Linear, nothing else.

    Example::

        model = sj.TanhRNN.from_torch(net.rnn, net.readout)
        model = sj.TanhRNN.from_torch(torch.load("model.pt", weights_only=True), prefix="rnn.")
        model = sj.RateRNN.from_torch(relu_net.state_dict(), nonlinearity="relu")
    """
    from schurjax.rnn import RateRNN, TanhRNN

    tanh_only = cls is not None and issubclass(cls, TanhRNN)
    where = "TanhRNN.from_torch" if tanh_only else "RateRNN.from_torch"
    with _renamed(where):
        if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
            _fail(f"nonlinearity must be 'tanh' or 'relu' for a torch.nn.RNN (or None), got {nonlinearity!r}")
        if tanh_only and nonlinearity == "relu":
            _fail("a TanhRNN is tanh only; import a ReLU torch.nn.RNN with sj.RateRNN.from_torch")
        whole = readout is None
        module = None
        if isinstance(rnn, str | os.PathLike):
            if not whole:
                _fail("a checkpoint path holds the whole model; pass readout=None (use prefix=/readout_prefix=)")
            sd, where_sd = load_state(rnn), repr(str(rnn))
        elif _is_module(rnn):
            module = rnn
            sd, where_sd = dict(rnn.state_dict()), f"the {type(rnn).__name__} module"
        elif isinstance(rnn, Mapping):
            sd, where_sd = _flatten(rnn), "the state dict"
        else:
            _fail(f"rnn must be a torch.nn.RNN, a model, a state dict or a checkpoint path, got {type(rnn).__name__}")
        if not whole and not tanh_only and _detect_torch(sd) == "neurogym":
            return from_ctrnn(rnn, readout, alpha=alpha, nonlinearity=nonlinearity)
        kind = _detect_torch(sd) if whole else "torch-rnn"
        if kind != "torch-rnn" and not tanh_only:
            if prefix is not None or readout_prefix is not None:
                _fail(f"prefix=/readout_prefix= apply to a torch.nn.RNN; {where_sd} holds a {kind} network")
            src = module if module is not None else sd
            if kind == "schurjax":
                return _from_schurjax_state(module if module is not None else _strip_common_prefix(sd), where)
            if kind == "neurogym":
                return from_ctrnn(src, alpha=alpha, nonlinearity=nonlinearity)
            return from_lowrank(src, alpha=alpha, nonlinearity=nonlinearity or "tanh")
        if alpha is not None and alpha != 1:
            _fail(f"alpha must be None or 1 for a torch.nn.RNN (it has no leak), got {alpha!r}")
        nl = nonlinearity
        if module is not None:
            mods = [(name, m) for name, m in module.named_modules() if hasattr(m, "weight_hh_l0")]
            for name, m in mods:  # the state dict does not say tanh vs relu: the modules do
                if prefix is None or (f"{name}." if name else "") == prefix:
                    got = _check_rnn_module(name or "rnn", m, relu_ok=not tanh_only)
                    if nl is not None and got != nl:
                        _fail(f"nonlinearity={nl!r} was given but {name or 'rnn'} is nonlinearity={got!r}")
                    nl = got
            if not whole and module not in [m for _, m in mods]:
                _fail(f"with a readout, rnn must be a torch.nn.RNN module, got {type(module).__name__}")
        nl = nl or "tanh"
        if whole:
            p = _rnn_prefix(sd, prefix, where_sd)
            W_ih, W_hh, b = _rnn_arrays(sd, p, where_sd)
            n = W_hh.shape[0]
            q = _readout_prefix(sd, n, p, readout_prefix, where_sd)
            if prefix is None or readout_prefix is None:
                others = sorted(k for k in sd if k.endswith("weight") and np.ndim(sd[k]) >= 2 and k != q + "weight")
                if others:
                    _fail(
                        f"{where_sd} holds other weights {others[:4]} besides {p}* and {q}*; schurjax's model is "
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
                _fail(
                    "readout must be a torch.nn.Linear or its state dict with key weight[, bias], got keys "
                    f"{sorted(ro)}"
                )
            W_out, b_out = _readout_arrays(ro, "", W_hh.shape[0])
        _check_sizes(W_ih, W_hh, W_out)
        if nl == "tanh":
            return TanhRNN.from_arrays(W_ih, W_hh, b, W_out, b_out)
        return RateRNN.from_arrays(
            W_in=W_ih, W_rec=W_hh, b=b, W_out=W_out, b_out=b_out, alpha=1.0, nonlinearity=nl, form="rate"
        )


def _check_sizes(W_in: np.ndarray, W_rec: np.ndarray, W_out: np.ndarray) -> None:
    n, n_in = W_in.shape
    if n < 1 or n_in < 1 or W_out.shape[0] < 1:
        _fail(
            f"the network has n={n} hidden, n_in={n_in} input and n_out={W_out.shape[0]} output units; schurjax "
            "needs at least one of each"
        )


def _alpha_arg(where_alpha: str, alpha: Any) -> float | None:
    if alpha is None:
        return None
    from schurjax.rnn import check_alpha

    return check_alpha(where_alpha, alpha)


def _module_alpha(m: Any) -> float | None:
    """``alpha`` stored on a module: its ``alpha`` attribute, else ``dt / tau``; None when it stores neither."""
    a = getattr(m, "alpha", None)
    if isinstance(a, numbers.Real) and not isinstance(a, bool):
        return float(a)
    if hasattr(a, "item") and getattr(a, "numel", lambda: 0)() == 1:
        return float(a.item())
    dt, tau = getattr(m, "dt", None), getattr(m, "tau", None)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (dt, tau)) and tau:
        return float(dt) / float(tau)
    return None


def _pick_alpha(given: float | None, stored: float | None, source: str) -> float:
    from schurjax.rnn import check_alpha

    if stored is not None:
        stored = check_alpha(source, stored)
        if given is not None and not math.isclose(given, stored, rel_tol=1e-12, abs_tol=0.0):
            _fail(f"alpha={given!r} was given but {source} stores alpha={stored!r}")
        return stored
    if given is None:
        _fail(f"{source} does not store alpha (= dt / tau); pass alpha= (schurjax import: --alpha)")
    return float(given)


def _nl_arg(nonlinearity: Any, default: str) -> str:
    from schurjax.rnn import NONLINEARITIES

    nl = default if nonlinearity is None else nonlinearity
    if not isinstance(nl, str) or nl not in NONLINEARITIES:
        _fail(f"nonlinearity must be one of {', '.join(map(repr, NONLINEARITIES))}, got {nonlinearity!r}")
    return nl


def _vec(sd: Mapping[str, Any], key: str, n: int, what: str) -> np.ndarray:
    v = _np(key, sd[key])
    if v.shape != (n,):
        _fail(f"{key} must have shape ({n},) ({what}), got {v.shape}")
    return v


def _nonzero_or_none(h0: np.ndarray | None) -> np.ndarray | None:
    return None if h0 is None or not np.any(h0) else h0


def _source_state(obj: Any, what: str) -> tuple[dict[str, Any], Any, str]:
    """``(flat state dict, module or None, description)`` of a module, a state dict or a checkpoint path."""
    if isinstance(obj, str | os.PathLike):
        return load_state(obj), None, repr(str(obj))
    if _is_module(obj):
        return dict(obj.state_dict()), obj, f"the {type(obj).__name__} module"
    if isinstance(obj, Mapping):
        return _flatten(obj), None, "the state dict"
    _fail(f"expected {what} (a torch module, its state dict or a checkpoint path), got {type(obj).__name__}")
    raise AssertionError  # unreachable


def from_ctrnn(
    net: Any,
    readout: Any = None,
    *,
    alpha: float | None = None,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    readout_prefix: str | None = None,
):
    """Import NeuroGym's example ``CTRNN`` (``input2h``, ``h2h``) with its ``Linear`` readout (``"post"`` form).

    NeuroGym's step, ``h' = relu(h (1 - alpha) + alpha (input2h(x) + h2h(h)))`` from ``h = 0``, with
    ``W_in = input2h.weight``, ``W_rec = h2h.weight``, ``b = input2h.bias + h2h.bias`` (a Linear built with
    ``bias=False`` contributes 0), ``W_out, b_out`` = the readout's weight and bias.

    Args:
        net: the whole network (NeuroGym's ``RNNNet``: ``rnn`` = CTRNN, ``fc`` = readout), its ``state_dict()``,
            a checkpoint path holding that, or the CTRNN alone (module or state dict) with ``readout`` given.
        readout: the readout ``nn.Linear`` (or its state dict) when ``net`` is the CTRNN alone.
        alpha: ``dt / tau``; read from the module (``alpha``, else ``dt / tau``) when it has one (a given value
            must agree); required for a state dict.
        nonlinearity: "relu" (default, NeuroGym's), "tanh" or "softplus": the module's code is not inspected.
        prefix, readout_prefix: key prefixes (``"rnn."``, ``"fc."``) when a state dict holds several candidates.

    Returns:
        ``RateRNN(form="post")``.

    Raises:
        ValueError: one line: no or several CTRNNs/readouts, unknown keys, wrong shapes, non-finite values, no
            alpha, an alpha that disagrees with the module's.

    Example::

        model = from_ctrnn(net)                                   # RNNNet(CTRNN(dt=20) + fc): alpha 0.2
        model = from_ctrnn(torch.load("net.pt", weights_only=True), alpha=0.2)
    """
    from schurjax.rnn import RateRNN

    where = "from_ctrnn"
    with _renamed(where):
        given = _alpha_arg(where, alpha)
        nl = _nl_arg(nonlinearity, "relu")
        sd, module, src = _source_state(net, "a NeuroGym CTRNN network")
        cands = sorted(
            k[: -len("h2h.weight")]
            for k in sd
            if k.endswith("h2h.weight") and k[-len("h2h.weight") - 1 : -len("h2h.weight")] in ("", ".")
        )
        cands = [c for c in cands if c + "input2h.weight" in sd]
        if prefix is not None:
            if prefix not in cands:
                _fail(
                    f"prefix={prefix!r} matches no '<prefix>input2h.weight'/'<prefix>h2h.weight' in {src}; "
                    f"candidates: {cands}"
                )
            p = prefix
        elif not cands:
            _fail(
                f"{src} holds no NeuroGym CTRNN (keys '<prefix>input2h.weight' and '<prefix>h2h.weight'); its "
                f"keys: {sorted(sd)[:8]}"
            )
        elif len(cands) > 1:
            _fail(f"{src} holds several CTRNNs, prefixes {cands}; pass prefix= to pick one")
        else:
            p = cands[0]
        W_rec = _np(p + "h2h.weight", sd[p + "h2h.weight"])
        if W_rec.ndim != 2 or W_rec.shape[0] != W_rec.shape[1]:
            _fail(f"{p}h2h.weight must be square (n, n), got shape {W_rec.shape}")
        n = W_rec.shape[0]
        W_in = _np(p + "input2h.weight", sd[p + "input2h.weight"])
        if W_in.ndim != 2 or W_in.shape[0] != n:
            _fail(f"{p}input2h.weight must have shape (n={n}, n_in), got {W_in.shape}")
        b = np.zeros(n)
        for k in ("input2h.bias", "h2h.bias"):
            if p + k in sd:
                b = b + _vec(sd, p + k, n, "a bias of the CTRNN")
        own = {p + k for k in ("input2h.weight", "input2h.bias", "h2h.weight", "h2h.bias")}
        if readout is not None:
            ro = _state_of("readout", readout)
            if "weight" not in ro:
                _fail(
                    "readout must be a torch.nn.Linear or its state dict with key weight[, bias], got keys "
                    f"{sorted(ro)}"
                )
            unknown = sorted(set(sd) - own)
            W_out, b_out = _readout_arrays(ro, "", n)
        else:
            rest = {k: v for k, v in sd.items() if k not in own}
            q = _readout_prefix(rest, n, p + "\0", readout_prefix, src)
            unknown = sorted(k for k in rest if k not in (q + "weight", q + "bias"))
            W_out, b_out = _readout_arrays(sd, q, n)
        if unknown:
            _fail(
                f"{src} holds keys {unknown[:4]} that are not part of a NeuroGym CTRNN + readout; schurjax "
                "imports x -> CTRNN -> Linear"
            )
        stored = None
        if module is not None:
            core = [m for _, m in module.named_modules() if hasattr(m, "input2h") and hasattr(m, "h2h")]
            stored = _module_alpha(core[0]) if core else None
        a = _pick_alpha(given, stored, f"the {type(module).__name__} module" if stored is not None else src)
        _check_sizes(W_in, W_rec, W_out)
        return RateRNN.from_arrays(
            W_in=W_in, W_rec=W_rec, b=b, W_out=W_out, b_out=b_out, alpha=a, nonlinearity=nl, form="post"
        )


_LOWRANK_KEYS = ("wi", "si", "m", "n", "wrec", "b", "wo", "so", "h0")


def _fn_name(fn: Any) -> str | None:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return {
        "tanh": "tanh",
        "Tanh": "tanh",
        "relu": "relu",
        "ReLU": "relu",
        "softplus": "softplus",
        "Softplus": "softplus",
    }.get(name)


def from_lowrank(
    net: Any,
    *,
    alpha: float | None = None,
    nonlinearity: str | None = None,
    normalise: bool = True,
    bias: str = "refuse",
):
    """Import a low-rank (``LowRankRNN``) or full-rank (``FullRankRNN``) network of the low-rank literature.

    The mapping onto the ``"current"`` form is in the module docstring: ``W = m n^T / N`` (or ``wrec``),
    ``W_in = (si * wi)^T``, ``W_out = (wo * so)^T / N`` (``/ N`` for ``m, n`` only), ``b_out = 0``, ``h0`` the
    learned initial state (None when it is zero). ``rec_noise`` (a buffer some files hold) is ignored.

    Args:
        net: the module, its ``state_dict()`` or a checkpoint path.
        alpha: ``dt / tau``; the module's ``alpha`` when given a module (a given value must agree); required for
            a state dict.
        nonlinearity: "tanh" (their default), "relu" or "softplus"; a module's ``non_linearity`` is read (its
            ``output_non_linearity`` must be the same function).
        normalise: ``W = m n^T / N`` and the readout ``/ N`` (``LowRankRNN``); False: no ``/ N``
            (``OptimizedLowRankRNN``). Ignored for ``wrec``.
        bias: "refuse" (default) refuses a nonzero ``b``, which their equations put where no schurjax form can;
            "shift" imports it by ``x~ = x + b`` (exact when their readout and first step read ``phi(x + b)``).

    Returns:
        ``RateRNN(form="current")``.

    Example::

        model = from_lowrank("rank2.pt", alpha=0.2)
    """
    from schurjax.rnn import RateRNN

    where = "from_lowrank"
    with _renamed(where):
        given = _alpha_arg(where, alpha)
        if not isinstance(normalise, bool):
            _fail(f"normalise must be True or False, got {normalise!r}")
        if bias not in ("refuse", "shift"):
            _fail(f"bias must be 'refuse' or 'shift', got {bias!r}")
        sd, module, src = _source_state(net, "a low-rank RNN")
        sd = {k: v for k, v in _strip_common_prefix(sd).items() if k != "rec_noise"}
        unknown = sorted(k for k in sd if k not in _LOWRANK_KEYS)
        if unknown:
            _fail(
                f"{src} holds keys {unknown[:4]} that a low-rank RNN does not have; expected {', '.join(_LOWRANK_KEYS)}"
            )
        lowrank = "m" in sd or "n" in sd
        if lowrank and "wrec" in sd:
            _fail(f"{src} holds both m, n and wrec; expected a LowRankRNN (m, n) or a FullRankRNN (wrec)")
        need = ("wi", "m", "n", "wo") if lowrank else ("wi", "wrec", "wo")
        missing = [k for k in need if k not in sd]
        if missing:
            _fail(f"{src} has no {', '.join(missing)}; a low-rank RNN state dict has {', '.join(need)}")
        wi = _np("wi", sd["wi"])
        if wi.ndim != 2:
            _fail(f"wi must be 2-D (n_in, N), got shape {wi.shape}")
        n_in, N = wi.shape
        if lowrank:
            m, nn_ = _np("m", sd["m"]), _np("n", sd["n"])
            if m.ndim != 2 or m.shape[0] != N or nn_.shape != m.shape:
                _fail(f"m and n must both have shape (N={N}, rank), got {m.shape} and {nn_.shape}")
            W = m @ nn_.T / (N if normalise else 1.0)
        else:
            W = _np("wrec", sd["wrec"])
            if W.shape != (N, N):
                _fail(f"wrec must have shape (N={N}, N), got {W.shape}")
        si = _vec(sd, "si", n_in, "the input scalings") if "si" in sd else np.ones(n_in)
        wo = _np("wo", sd["wo"])
        if wo.ndim != 2 or wo.shape[0] != N:
            _fail(f"wo must have shape (N={N}, n_out), got {wo.shape}")
        so = _vec(sd, "so", wo.shape[1], "the output scalings") if "so" in sd else np.ones(wo.shape[1])
        b = _vec(sd, "b", N, "the bias inside the nonlinearity") if "b" in sd else np.zeros(N)
        h0 = _vec(sd, "h0", N, "the initial state") if "h0" in sd else np.zeros(N)
        W_in = (si[:, None] * wi).T
        W_out = (wo * so).T / (N if (lowrank and normalise) else 1.0)
        stored, nl = None, nonlinearity
        if module is not None:
            stored = _module_alpha(module)
            got = _fn_name(getattr(module, "non_linearity", None)) if hasattr(module, "non_linearity") else None
            out = getattr(module, "output_non_linearity", getattr(module, "non_linearity", None))
            if got is not None and out is not None and _fn_name(out) != got:
                _fail(
                    f"the module's output_non_linearity ({_fn_name(out)}) differs from its non_linearity ({got}); "
                    "the current form reads phi(x) in both"
                )
            if got is not None and nl is not None and nl != got:
                _fail(f"nonlinearity={nl!r} was given but the module's non_linearity is {got!r}")
            nl = nl or got
        nl = _nl_arg(nl, "tanh")
        a = _pick_alpha(given, stored, f"the {type(module).__name__} module" if stored is not None else src)
        if np.any(b) and bias == "refuse":
            _fail(
                f"{src} has a nonzero b (max |b| = {np.abs(b).max():.3g}): their step reads phi(x + b) but their "
                "readout "
                "and first step read phi(x), which no schurjax form represents; pass bias='shift' to import it by "
                "x~ = x + b (exact when the readout and first step read phi(x + b))"
            )
        h0 = h0 + b
        _check_sizes(W_in, W, W_out)
        return RateRNN.from_arrays(
            W_in=W_in,
            W_rec=W,
            b=b,
            W_out=W_out,
            b_out=None,
            alpha=a,
            nonlinearity=nl,
            form="current",
            h0=_nonzero_or_none(h0),
        )


def read_npz(path: str | os.PathLike, where: str = "from_npz") -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays of an ``.npz`` file, read with ``allow_pickle=False`` after checking every header.

    Returns:
        ``(arrays, object_keys)``: the numeric and string arrays by name, and the names of object arrays, which are
        never read (unpickling them could run code).

    Raises:
        ValueError: one line: no such file, not an ``.npz``, a member that is not an array, an array whose header
            declares more than 2**28 elements, or more than 4 GiB in all (refused before anything is read).

    Example::

        arrays, objects = read_npz("weights.npz")
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{where}: no .npz file at {str(path)!r}")
    meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    torch_hint = "; a PyTorch checkpoint?" if info.filename.endswith("data.pkl") else ""
                    raise ValueError(
                        f"{where}: {str(path)!r} is not an .npz file (it holds {info.filename!r}, not a .npy array"
                        f"{torch_hint})"
                    )
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                    if version not in read:
                        raise ValueError(f"unsupported .npy format version {version}")
                    shape, _, dtype = read[version](f)  # the header only, no data
                meta[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(
            f"{where}: {str(path)!r} is not an .npz file ({type(err).__name__}: {str(err)[:80]})"
        ) from None
    except ValueError as err:
        if str(err).startswith(where + ":"):
            raise
        raise ValueError(f"{where}: {str(path)!r} holds a malformed array header ({str(err)[:100]})") from None
    for key, (shape, _) in meta.items():
        if math.prod(shape) > _MAX_ELEMENTS:
            raise ValueError(f"{where}: {str(path)!r} array {key!r} declares shape {shape}, more than 2**28 elements")
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in meta.values() if not dtype.hasobject)
    if total > 4 * _MAX_ELEMENTS * 4:
        raise ValueError(f"{where}: {str(path)!r} declares {total / 2**30:.1f} GiB of arrays, more than 4 GiB")
    objects = sorted(k for k, (_, dt) in meta.items() if dt.hasobject)
    arrays: dict[str, np.ndarray] = {}
    with np.load(p, allow_pickle=False) as z:
        for key in meta:
            if key not in objects:
                try:
                    arrays[key] = np.asarray(z[key])
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
                    raise ValueError(
                        f"{where}: {str(path)!r} array {key!r} cannot be read ({str(err)[:100]})"
                    ) from None
    return arrays, objects


def _scalar_arg(arrays: Mapping[str, np.ndarray], key: str, where_file: str) -> Any:
    v = arrays[key]
    if v.shape not in ((), (1,)):
        _fail(f"{where_file} {key!r} must be a scalar, got shape {v.shape}")
    v = v.reshape(())
    return str(v) if v.dtype.kind in "US" else float(v)


_NPZ_NAMES = ("W_in", "W_rec", "b", "W_out", "b_out", "h0", "alpha", "nonlinearity", "form")
_PSYCHRNN_KEYS = (
    "W_in",
    "W_rec",
    "W_out",
    "b_rec",
    "b_out",
    "init_state",
    "Dale_rec",
    "Dale_out",
    "input_connectivity",
    "rec_connectivity",
    "output_connectivity",
    "dale_ratio",
    "transfer_function",
)


def _is_psychrnn(keys: set[str]) -> bool:
    return bool(keys & {"b_rec", "init_state", "Dale_rec", "rec_connectivity", "transfer_function", "dale_ratio"})


def from_npz(
    path: str | os.PathLike,
    *,
    layout: str = "auto",
    alpha: float | None = None,
    nonlinearity: str | None = None,
    form: str | None = None,
    keys: Mapping[str, str] | None = None,
    dale: bool | None = None,
):
    """Import an ``.npz`` weight file (read with ``allow_pickle=False``; key mappings in the module docstring).

    Args:
        path: the ``.npz`` file.
        layout: "npz" (schurjax's names, or ``keys``), "psychrnn" (PsychRNN's ``RNN.save``) or "auto" (PsychRNN
            when the file has any of its own names: ``b_rec``, ``init_state``, ``Dale_rec``, ...).
        alpha: ``dt / tau``; required unless the file holds ``alpha`` (layout "npz").
        nonlinearity: "tanh", "relu" or "softplus"; default the file's ``nonlinearity`` (layout "npz"), else
            "tanh" (layout "npz") or "relu" (PsychRNN's default).
        form: "rate", "post" or "current"; required for layout "npz" unless the file holds ``form``; must be
            None or "current" for PsychRNN.
        keys: layout "npz": ``{schurjax_name: file_key}`` for files with other names (e.g. ``{"W_rec": "J"}``).
        dale: PsychRNN: force Dale's law on or off (default: on when ``dale_ratio`` is a number).

    Returns:
        RateRNN.

    Raises:
        ValueError: one line: an object array (naming the key), unknown keys, missing arrays, wrong shapes,
            non-finite values, missing alpha or form, values that disagree with the file.

    Example::

        model = from_npz("psychrnn_weights.npz", layout="psychrnn", alpha=0.1)
        model = from_npz("mine.npz", alpha=0.2, form="rate", keys={"W_rec": "J"})
    """
    return _from_npz(path, layout, alpha, nonlinearity, form, keys, dale)[0]


def _from_npz(path, layout, alpha, nonlinearity, form, keys, dale):
    """:func:`from_npz`, returning ``(model, layout)`` (the layout it read the file as)."""
    from schurjax.rnn import FORMS, RateRNN

    where = "from_npz"
    with _renamed(where):
        if layout not in ("auto", "npz", "psychrnn"):
            _fail(f"layout must be 'auto', 'npz' or 'psychrnn', got {layout!r}")
        given = _alpha_arg(where, alpha)
        if form is not None and form not in FORMS:
            _fail(f"form must be one of {', '.join(map(repr, FORMS))} or None, got {form!r}")
        if dale is not None and not isinstance(dale, bool):
            _fail(f"dale must be True, False or None, got {dale!r}")
        arrays, objects = read_npz(path, where)
        src = repr(str(path))
        names = set(arrays) | set(objects)
        if layout == "auto":
            layout = "psychrnn" if _is_psychrnn(names) else "npz"
        if layout == "psychrnn":
            bad = [k for k in objects if k not in ("dale_ratio", "transfer_function")]
        else:
            bad = list(objects)
        if bad:
            _fail(
                f"{src} holds an object array {bad[0]!r}, which schurjax never unpickles "
                "(np.load(allow_pickle=False)); "
                "save it as a numeric array"
            )
        if layout == "psychrnn":
            return _from_psychrnn(arrays, objects, src, given, nonlinearity, form, dale), layout
        if dale is not None:
            _fail("dale= applies to layout 'psychrnn' only")
        mapping = {k: k for k in _NPZ_NAMES}
        if keys is not None:
            if not isinstance(keys, Mapping) or any(
                k not in _NPZ_NAMES or not isinstance(v, str) for k, v in keys.items()
            ):
                _fail(f"keys must map schurjax names ({', '.join(_NPZ_NAMES)}) to file keys, got {keys!r}")
            mapping.update(keys)
        back = {v: k for k, v in mapping.items()}
        unknown = sorted(k for k in arrays if k not in back)
        if unknown:
            _fail(
                f"{src} holds keys {unknown[:4]} that are not in the npz layout ({', '.join(_NPZ_NAMES)}); map "
                "them with keys="
            )
        got = {back[k]: v for k, v in arrays.items()}
        missing = [k for k in ("W_in", "W_rec", "W_out") if k not in got]
        if missing:
            _fail(
                f"{src} has no {', '.join(repr(mapping[k]) for k in missing)}; the npz layout needs W_in, W_rec, W_out"
            )
        stored_alpha = _scalar_arg(got, "alpha", src) if "alpha" in got else None
        a = _pick_alpha(given, stored_alpha, src)
        for name, value in (("nonlinearity", nonlinearity), ("form", form)):
            if name in got and value is not None and _scalar_arg(got, name, src) != value:
                _fail(f"{name}={value!r} was given but {src} stores {name}={_scalar_arg(got, name, src)!r}")
        nl = _nl_arg(_scalar_arg(got, "nonlinearity", src) if "nonlinearity" in got else nonlinearity, "tanh")
        f = _scalar_arg(got, "form", src) if "form" in got else form
        if f is None:
            _fail(f"{src} does not say its form; pass form= (schurjax import: --form) 'rate', 'post' or 'current'")
        if f not in FORMS:
            _fail(f"{src} form must be one of {', '.join(map(repr, FORMS))}, got {f!r}")
        W_in, W_rec, W_out = (_np(mapping[k], got[k]) for k in ("W_in", "W_rec", "W_out"))
        if W_in.ndim != 2 or W_out.ndim != 2:
            _fail(f"W_in and W_out must be 2-D, got shapes {W_in.shape} and {W_out.shape}")
        _check_sizes(W_in, W_rec, W_out)
        opt = {k: _np(mapping[k], got[k]) for k in ("b", "b_out", "h0") if k in got}
        model = RateRNN.from_arrays(
            W_in=W_in,
            W_rec=W_rec,
            b=opt.get("b"),
            W_out=W_out,
            b_out=opt.get("b_out"),
            alpha=a,
            nonlinearity=nl,
            form=f,
            h0=opt.get("h0"),
        )
        return model, layout


def _from_psychrnn(arrays, objects, src, given, nonlinearity, form, dale):
    from schurjax.rnn import RateRNN

    slots = [k for k in arrays if "/" in k and k.split("/", 1)[0] in _PSYCHRNN_KEYS]  # optimizer state: W_rec/Adam
    arrays = {k: v for k, v in arrays.items() if k not in slots}
    unknown = sorted(k for k in arrays if k not in _PSYCHRNN_KEYS)
    if unknown:
        _fail(
            f"{src} holds keys {unknown[:4]} that PsychRNN's Basic model does not save (an LSTM?); expected "
            f"{', '.join(_PSYCHRNN_KEYS)}"
        )
    missing = [k for k in ("W_in", "W_rec", "W_out", "b_rec", "b_out") if k not in arrays]
    if missing:
        _fail(f"{src} has no {', '.join(missing)}; PsychRNN's RNN.save writes W_in, W_rec, W_out, b_rec, b_out")
    if form not in (None, "current"):
        _fail(f"PsychRNN's model is the 'current' form, got form={form!r}")
    if given is None:
        _fail(f"{src} (PsychRNN) does not store alpha = dt / tau; pass alpha= (schurjax import: --alpha)")
    nl = _nl_arg(nonlinearity, "relu")
    W_in, W_rec, W_out = (_np(k, arrays[k]) for k in ("W_in", "W_rec", "W_out"))
    if W_rec.ndim != 2 or W_rec.shape[0] != W_rec.shape[1]:
        _fail(f"W_rec must be square (N_rec, N_rec), got shape {W_rec.shape}")
    n = W_rec.shape[0]
    if W_in.ndim != 2 or W_in.shape[0] != n:
        _fail(f"W_in must have shape (N_rec={n}, N_in), got {W_in.shape}")
    if W_out.ndim != 2 or W_out.shape[1] != n:
        _fail(f"W_out must have shape (N_out, N_rec={n}), got {W_out.shape}")
    _check_sizes(W_in, W_rec, W_out)
    n_in, n_out = W_in.shape[1], W_out.shape[0]

    def mask(key, shape, default):
        if key not in arrays:
            return default
        v = _np(key, arrays[key])
        if v.shape != shape:
            _fail(f"{key} must have shape {shape}, got {v.shape}")
        return v

    C_in = mask("input_connectivity", (n, n_in), np.ones((n, n_in)))
    C_rec = mask("rec_connectivity", (n, n), np.ones((n, n)))
    C_out = mask("output_connectivity", (n_out, n), np.ones((n_out, n)))
    D_rec = mask("Dale_rec", (n, n), np.eye(n))
    D_out = mask("Dale_out", (n, n), np.eye(n))
    if dale is None:
        dale = "dale_ratio" in arrays and np.isfinite(_scalar_arg(arrays, "dale_ratio", src))
    if dale:
        W_rec_eff, W_in_eff, W_out_eff = (
            np.abs(W_rec * C_rec) @ D_rec,
            np.abs(W_in * C_in),
            np.abs(W_out * C_out) @ D_out,
        )
    else:
        W_rec_eff, W_in_eff, W_out_eff = W_rec * C_rec, W_in * C_in, W_out * C_out
    b_rec = _vec(arrays, "b_rec", n, "PsychRNN's recurrent bias")
    b_out = _vec(arrays, "b_out", n_out, "PsychRNN's output bias")
    h0 = None
    if "init_state" in arrays:
        h0 = _np("init_state", arrays["init_state"])
        if h0.shape not in ((1, n), (n,)):
            _fail(f"init_state must have shape (1, N_rec={n}), got {h0.shape}")
        h0 = _nonzero_or_none(h0.reshape(n))
    return RateRNN.from_arrays(
        W_in=W_in_eff,
        W_rec=W_rec_eff,
        b=b_rec,
        W_out=W_out_eff,
        b_out=b_out,
        alpha=given,
        nonlinearity=nl,
        form="current",
        h0=h0,
    )


def _from_schurjax_state(src: Any, where: str):
    """A model from the module :func:`to_torch` returns (or its state dict)."""
    from schurjax.rnn import FORMS, NONLINEARITIES, RateRNN

    sd = dict(src.state_dict()) if _is_module(src) else dict(src)
    unknown = sorted(
        k
        for k in sd
        if k not in ("W_in", "W_rec", "b", "W_out", "b_out", "h0", "alpha", "form_code", "nonlinearity_code")
    )
    if unknown:
        _fail(f"the state dict holds keys {unknown[:4]} that schurjax's exported module does not have")
    for k in ("alpha", "form_code", "nonlinearity_code", "b", "b_out"):
        if k not in sd:
            _fail(f"the state dict of schurjax's exported module has no {k!r}")
    try:
        a = float(_np("alpha", sd["alpha"]).reshape(()))
        f = FORMS[int(_np("form_code", sd["form_code"]).reshape(()))]
        nl = tuple(NONLINEARITIES)[int(_np("nonlinearity_code", sd["nonlinearity_code"]).reshape(()))]
    except (IndexError, ValueError, TypeError):
        _fail("the exported module's alpha, form_code and nonlinearity_code must be scalars in range")
    arr = {k: _np(k, v) for k, v in sd.items() if k in ("W_in", "W_rec", "b", "W_out", "b_out", "h0")}
    _check_sizes(arr["W_in"], arr["W_rec"], arr["W_out"])
    return RateRNN.from_arrays(
        W_in=arr["W_in"],
        W_rec=arr["W_rec"],
        b=arr["b"],
        W_out=arr["W_out"],
        b_out=arr["b_out"],
        alpha=a,
        nonlinearity=nl,
        form=f,
        h0=arr.get("h0"),
    )


def load_file(
    path: str | os.PathLike,
    *,
    layout: str = "auto",
    alpha: float | None = None,
    form: str | None = None,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    readout_prefix: str | None = None,
):
    """Import a weight file of any :data:`LAYOUTS` (what ``schurjax import`` runs).

    Args:
        path: a ``.pt``/``.pth`` checkpoint (``torch.load(weights_only=True)``) or an ``.npz`` (``allow_pickle=False``).
        layout: one of :data:`LAYOUTS`; "auto" tells them apart by suffix and keys (``weight_hh_l0``: torch-rnn;
            ``input2h``/``h2h``: neurogym; ``m``/``n``/``wrec`` with ``wi``/``wo``: lowrank; PsychRNN's names:
            psychrnn; else npz).
        alpha, form, nonlinearity: the step, where the file does not say it (see each layout's function); a
            ``form`` that is not the layout's is refused.
        prefix, readout_prefix: key prefixes (torch-rnn and neurogym).

    Returns:
        ``(model, layout)``: the RateRNN (a TanhRNN for a tanh ``nn.RNN``) and the layout it was read as.

    Example::

        model, layout = load_file("ctrnn.pt", layout="neurogym", alpha=0.2)
    """
    where = "import"
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout must be one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}")
    p = Path(path)
    if layout in ("psychrnn", "npz") or (layout == "auto" and (p.suffix == ".npz" or _looks_npz(p))):
        if prefix is not None or readout_prefix is not None:
            raise ValueError(f"{where}: prefix/readout_prefix apply to torch checkpoints, not to {p.name}")
        return _from_npz(p, layout, alpha, nonlinearity, form, None, None)
    sd = load_state(p)
    kind = {"torch-rnn": "torch-rnn", "neurogym": "neurogym", "lowrank": "lowrank"}.get(layout) or _detect_torch(sd)
    expected_form = {"torch-rnn": "rate", "neurogym": "post", "lowrank": "current", "schurjax": form}[kind]
    if form is not None and form != expected_form:
        raise ValueError(f"{where}: layout {kind!r} is the {expected_form!r} form, got --form {form}")
    if kind == "torch-rnn":
        found = _detect_torch(sd)
        if found != "torch-rnn":
            shown = {"schurjax": "schurjax export", "neurogym": "NeuroGym CTRNN", "lowrank": "low-rank RNN"}[found]
            hint = f"; import it with --layout {found}" if found != "schurjax" else ""
            raise ValueError(f"{where}: {str(path)!r} holds a {shown}, not a torch.nn.RNN{hint}")
        model = from_torch(
            sd, prefix=prefix, readout_prefix=readout_prefix, nonlinearity=nonlinearity, alpha=alpha, cls=None
        )
    elif kind == "neurogym":
        model = from_ctrnn(sd, alpha=alpha, nonlinearity=nonlinearity, prefix=prefix, readout_prefix=readout_prefix)
    elif kind == "lowrank":
        if prefix is not None or readout_prefix is not None:
            raise ValueError(f"{where}: prefix/readout_prefix do not apply to a low-rank state dict")
        model = from_lowrank(sd, alpha=alpha, nonlinearity=nonlinearity)
    else:
        with _renamed(where):
            model = _from_schurjax_state(_strip_common_prefix(sd), where)
    for name, given, got in (("alpha", alpha, model.alpha), ("nonlinearity", nonlinearity, model.nonlinearity)):
        if given is not None and given != got:
            raise ValueError(f"{where}: --{name} {given} was given but {str(path)!r} holds a model with {name} {got}")
    return model, kind


def _looks_npz(p: Path) -> bool:
    """A zip of ``.npy`` members (an ``.npz`` under another name); torch's zip files hold ``data.pkl``."""
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


@functools.cache
def torch_module_class():
    """The ``torch.nn.Module`` class that :func:`to_torch` exports leaky models to (defined when first asked).

    ``SchurjaxRNN(model, batch_first=True)``: parameters ``W_in, W_rec, b, W_out, b_out[, h0]`` (schurjax's
    layout), buffers ``alpha``, ``form_code`` (index into ``FORMS``) and ``nonlinearity_code`` (index into
    ``NONLINEARITIES``); ``forward(x) -> (y, h)`` for a batch ``x (B, T, n_in)`` (``(T, B, n_in)`` when not
    ``batch_first``) by the form's own equations.
    """
    torch = _torch()
    from schurjax.rnn import FORMS, NONLINEARITIES

    phis = {"tanh": torch.tanh, "relu": torch.relu, "softplus": torch.nn.functional.softplus}

    class SchurjaxRNN(torch.nn.Module):
        """schurjax's RateRNN as a torch module (see :func:`schurjax.store.torch_io.torch_module_class`)."""

        def __init__(self, model: Any, batch_first: bool = True):
            super().__init__()

            def t(a):
                return torch.nn.Parameter(torch.from_numpy(np.array(a, dtype=np.float32)))

            self.batch_first = batch_first
            self.W_in, self.W_rec, self.b = t(model.W_in), t(model.W_rec), t(model.b)
            self.W_out, self.b_out = t(model.W_out), t(model.b_out)
            self.h0 = None if model.h0 is None else t(model.h0)
            self.register_buffer("alpha", torch.tensor(float(model.alpha), dtype=torch.float64))
            self.register_buffer("form_code", torch.tensor(FORMS.index(model.form)))
            self.register_buffer("nonlinearity_code", torch.tensor(tuple(NONLINEARITIES).index(model.nonlinearity)))

        @property
        def form(self) -> str:
            return FORMS[int(self.form_code)]

        @property
        def nonlinearity(self) -> str:
            return tuple(NONLINEARITIES)[int(self.nonlinearity_code)]

        def forward(self, x):
            if not self.batch_first:
                x = x.transpose(0, 1)
            B, T, _ = x.shape
            a, phi, form = float(self.alpha), phis[self.nonlinearity], self.form
            W_in, W, b, W_out, b_out = (p.to(x.dtype) for p in (self.W_in, self.W_rec, self.b, self.W_out, self.b_out))
            h = x.new_zeros(B, W.shape[0]) if self.h0 is None else self.h0.to(x.dtype).expand(B, -1)
            hs = []
            for t in range(T):
                u = x[:, t] @ W_in.T + b
                if form == "rate":
                    h = (1 - a) * h + a * phi(h @ W.T + u)
                elif form == "post":
                    h = phi((1 - a) * h + a * (h @ W.T + u))
                else:
                    h = (1 - a) * h + a * (phi(h) @ W.T + u)
                hs.append(h)
            hs = torch.stack(hs, dim=1)
            y = (phi(hs) if form == "current" else hs) @ W_out.T + b_out
            return (y, hs) if self.batch_first else (y.transpose(0, 1), hs.transpose(0, 1))

    return SchurjaxRNN


def to_torch(model: Any, *, batch_first: bool = True) -> Any:
    """Export to PyTorch (float32): a ``TanhRNN`` as ``(torch.nn.RNN(nonlinearity="tanh"), torch.nn.Linear)``
    (``b`` goes to ``bias_ih_l0``), any other RateRNN as a :func:`torch_module_class` module.

    ``from_torch(*to_torch(tanh_model))`` and ``from_torch(to_torch(model), cls=RateRNN)`` give back bitwise the
    same model.

    Example::

        rnn, lin = to_torch(model)
        h, _ = rnn(torch.as_tensor(x)[None]); y = lin(h)
        net = to_torch(leaky_model); y, h = net(torch.as_tensor(x)[None])
    """
    from schurjax.rnn import TanhRNN

    if not isinstance(batch_first, bool):
        raise ValueError(f"{type(model).__name__}.to_torch: batch_first must be True or False, got {batch_first!r}")
    if not isinstance(model, TanhRNN):
        with _renamed(f"{type(model).__name__}.to_torch"):
            return torch_module_class()(model, batch_first=batch_first)
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TanhRNN.to_torch: torch is not installed; install the extra: pip install 'schurjax[torch]'"
        ) from None
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
