"""Batched evaluation of Schur-coordinate weight variants: ``evaluate(model, sf, variants, batch) -> SweepResult``.

Every variant ``k`` is the network with recurrent matrix ``W_k = Q (T + dT_k) Q^T = W + Q dT_k Q^T`` (input map
and readout unchanged). All variants run on the same trials (common random numbers): the input drive
``W_in x_t + b`` is computed once per batch and shared. The rollout is a ``lax.scan`` over time over a *chunk*
of variants x trials, compiled once per chunk shape (the last chunk is zero padded, so a sweep compiles once);
metrics are reduced inside the compiled program and full ``K x B x T x n`` trajectories never exist.

Base matrix: ``W = Q T Q^T`` reconstructed in float64 from the SchurForm and cast to ``dtype`` (it agrees with
``model.W_rec`` to float32 rounding; a SchurForm that does not belong to the model is rejected). Every compiled
chunk carries the unablated model in an extra slot, computed by the same arithmetic as the variants, so an
edit that is exactly zero gives ``delta_loss == 0`` exactly.

Paths (``path="auto"`` picks one for the whole call):

* ``"shared"``: for sparse edits (every variant changes at most ``max(8, n // 4)`` entries of T). With
  ``dW_k = sum_e vals_e Q[:, rows_e] Q[:, cols_e]^T = U_k V_k^T`` (rank r), ``W_k h = W h + U_k (V_k^T h)``: all
  variants and trials share one ``(k*B, n) @ (n, n)`` GEMM per step plus a rank-r correction fused into the
  ``tanh`` loop.
* ``"dense"``: anything else; ``W_k`` is formed per variant on the device and applied as a batched matmul in the
  ``(variants, n, B)`` layout. XLA:CPU runs that matmul on about one core, so on the CPU the dense path runs one
  chunk per core concurrently from host threads (``EngineOptions.host_workers``).

Models: every form of :mod:`schurjax.rnn` (``TanhRNN``; ``RateRNN`` rate/post/current, tanh/relu/softplus, any
``alpha``, with or without a learned ``h0``). The models of one call share nonlinearity and form; their alphas may
differ.

Loss: the task's (``task.loss_type``, or ``loss=``): masked MSE, or the cross-entropy of the outputs as logits
against the targets as class probabilities on the steps that count (``schurjax.tasks.masked_ce``).

Rollout form (``deviation=True``, the default): the unablated *base* trajectory is computed once per batch, in
float64, and every variant carries its deviation ``D_k = h_k - h`` from it, updated with exact identities such as
``phi(a + delta) - phi(a)`` written without cancellation (``a`` the base's argument of the nonlinearity, ``delta``
the change of it; per form in :mod:`schurjax.engine.kernels`). The loss change is summed from the output deviations
against the float64 base: ``yd * (2 (y_0 - target) + yd)`` for the squared error, ``(sum_o t) log1p(sum_o p0_o
expm1(yd_o)) - sum_o t_o yd_o`` (``p0`` the base's softmax) for the cross-entropy, so the first-order terms that
nearly cancel at a trained minimum keep their digits; ``loss`` is ``base_loss + delta_loss``. Rounding errors are
thus relative to the effect of each edit. Where the loss change itself is a near-cancellation (its terms add up, in
absolute value, to more than ``REFINE_CONDITION`` times the change: an edit that moves the outputs but hardly the
loss), the variant is rolled out again in float64, with the same loss. The resulting bound per metric, form and
nonlinearity, measured against float64, is in ``benchmarks/RESULTS.md``.
``deviation=False`` is the plain rollout, kept as an opt-out and a cross-check: every variant carries its own state
and the metrics difference two float32 trajectories (slot 0 of each chunk is the unablated model), which loses the
small effects.

Precision: float32 with matmul precision ``"highest"`` by default (true fp32 dots on every backend).
``precision="high"``/``"default"``/``"tf32"`` are opt-in faster modes for GPUs: in the deviation form they apply
only to the ``W D_k`` products, so their rounding errs relative to the effect of an edit (the edit itself and the
readout stay at HIGHEST). On the CPU every precision is identical (XLA:CPU computes float32 dots in float32).
``dtype=jnp.float64`` runs the whole rollout in float64 (the engine enables ``jax_enable_x64`` for the duration
of the call).

Example::

    import jax, schurjax as sj
    task = sj.tasks.get("flipflop"); model = sj.zoo.load("flipflop")
    sf = sj.ordered_schur(model.W_rec)
    res = sj.evaluate(model, sf, sj.ablate.single_couplings(sf), task.sample(jax.random.key(1), 64), task=task)
    res.delta_loss.max(), res.base_score
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from schurjax.ablate import Variants
from schurjax.engine import kernels as _kernels
from schurjax.engine.base import _base_rollout, _valid_steps, aux, loss_denominator, loss_weights
from schurjax.engine.options import PATHS, PRECISIONS, EngineOptions
from schurjax.engine.result import SweepResult
from schurjax.errors import InputError
from schurjax.rnn import Dynamics
from schurjax.schur import SchurForm
from schurjax.tasks.batch import as_batch

if TYPE_CHECKING:
    from schurjax.rnn import TanhRNN
    from schurjax.tasks import Task, TaskBatch

__all__ = [
    "evaluate",
    "evaluate_many",
    "EngineOptions",
    "engine_options",
    "LOSSES",
    "PATHS",
    "PRECISIONS",
    "SHARED_MIN_NNZ",
    "auto_chunk_size",
    "choose_path",
    "loss_type_of",
]

LOSSES = ("mse", "ce", "custom")
"""Accepted loss types (``Task.loss_type``): masked mean squared error, cross-entropy of the output logits, or the
mean over trials of the task's own ``trial_loss(y, batch) -> (B,)``."""

SHARED_MIN_NNZ = 8
"""``path="auto"`` takes the shared-base path when every variant changes at most ``max(SHARED_MIN_NNZ, n // 4)``
entries of T: the rank-r correction costs ~``2 r / n`` of the shared GEMM, and the dense path's batched matmuls
run at roughly half the GEMM rate, so the shared path wins up to r ~ n/4 (benchmarks/RESULTS.md)."""

_CPU_CACHE_BYTES = 2 * 2**20  # per-chunk state target on the CPU (L2-sized: 128 variants at n=128, B=32)
_CPU_BUDGET_BYTES = 1 * 2**30  # memory cap per chunk on the CPU
_GPU_MAX_CHUNK = 16384
_UNROLL = 1  # lax.scan unroll factor of the rollout
REFINE_CONDITION = 1000.0
"""Variants whose loss change is a sum of terms whose absolute values add up to more than this many times the
change (or 1e-5 x the base loss, if larger) are rolled out again in float64 (see ``_refine``). The threshold
follows from the float32 error measured on the zoo networks (``benchmarks/RESULTS.md``, Precision)."""
_REFINE_CHUNK = 8  # slots per float64 refinement chunk (always padded to it: one compiled shape)


def _fail(msg: str) -> None:
    raise InputError("evaluate", None, msg)


def choose_path(max_nnz: int, n: int) -> str:
    """The path ``path="auto"`` takes for a variant set whose largest edit changes ``max_nnz`` entries of T.

    Returns ``"shared"`` when ``max_nnz <= max(SHARED_MIN_NNZ, n // 4)``, else ``"dense"``.

    Example:
        >>> choose_path(1, 128), choose_path(32, 128), choose_path(33, 128)
        ('shared', 'shared', 'dense')
    """
    return "shared" if max_nnz <= max(SHARED_MIN_NNZ, n // 4) else "dense"


def auto_chunk_size(
    path: str,
    *,
    n: int,
    B: int,
    T: int,
    n_out: int,
    r: int = 1,
    models: int = 1,
    itemsize: int = 4,
    device: jax.Device | None = None,
) -> int:
    """Variants per compiled chunk for ``chunk_size="auto"``.

    CPU: the chunk's working set is kept around the L2 size (2 MiB, rounded to a power of two: 128 variants at
    n=128, B=32 on the shared path; 16 on the dense path, whose two per-variant matrices count too: ``W_k`` and the
    edit ``dW_k`` that the deviation form applies to the base), capped by a 1 GiB memory budget.
    GPU/other: half of the device's free memory (``device.memory_stats()``), at most 16384 variants.

    Returns:
        chunk size (>= 1), not yet capped at K.
    """
    device = device or jax.devices()[0]
    per_var = itemsize * models * (B * (4 * n + 3 * T * n_out) + (3 * n * n if path == "dense" else 2 * r * n))
    if device.platform == "cpu":
        state = itemsize * models * (B * n + (2 * n * n if path == "dense" else 0))
        k = max(8, 2 ** round(math.log2(max(1.0, _CPU_CACHE_BYTES / state))))
        return int(max(1, min(k, 1024, _CPU_BUDGET_BYTES // per_var)))
    budget = 2 * 2**30
    try:
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            budget = (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) // 2
    except Exception:  # noqa: BLE001 - memory_stats is optional on some backends
        pass
    return int(max(1, min(_GPU_MAX_CHUNK, budget // per_var)))


def _as_list(x: Any, name: str) -> list:
    if not isinstance(x, (list, tuple)):
        _fail(f"{name} must be a list (one entry per model), got {type(x).__name__}")
    if not x:
        _fail(f"{name} is an empty list; expected at least one")
    return list(x)


def _finite(name: str, arr: Any) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        _fail(f"{name} holds {int((~np.isfinite(a)).sum())} NaN/inf entries; expected finite weights")
    return a


def _dynamics(model) -> Dynamics:
    """A model's step (a model without the attributes is the paper's tanh RNN)."""
    return Dynamics(
        float(getattr(model, "alpha", 1.0)), str(getattr(model, "nonlinearity", "tanh")), getattr(model, "form", "rate")
    )


def loss_type_of(task: Any = None, loss: str | None = None) -> str:
    """The loss an evaluation sums: ``loss`` when given, else the task's ``loss_type`` (``"mse"`` when the task
    declares none, or without a task).

    Example:
        >>> loss_type_of(None, "ce"), loss_type_of(None)
        ('ce', 'mse')
    """
    if loss is None:
        loss = getattr(task, "loss_type", "mse") if task is not None else "mse"
        where = f"task {getattr(task, 'name', type(task).__name__)!r} has loss_type"
    else:
        where = "loss must be None or one of 'mse', 'ce', 'custom', got"
    if not isinstance(loss, str) or loss not in LOSSES:
        _fail(f"{where} {loss!r}; expected one of {', '.join(map(repr, LOSSES))}")
    if loss == "custom" and not callable(getattr(task, "trial_loss", None)):
        _fail("loss 'custom' needs a task with a trial_loss(y, batch) -> (B,) method, got task=" + repr(task)[:80])
    return loss


def _check(models, schurs, variants, batch, task=None):
    if len(schurs) != len(models) or len(variants) != len(models):
        _fail(
            f"got {len(models)} model(s), {len(schurs)} SchurForm(s) and {len(variants)} variant set(s); "
            "expected one of each per model"
        )
    as_batch(batch, "evaluate", task=task)  # a TaskBatch, not any object with three attributes
    for name, field in (("inputs", 3), ("targets", 3), ("mask", 3)):
        if not hasattr(batch, name) or np.ndim(getattr(batch, name)) != field:
            _fail(f"batch.{name} must be a 3-D array (B, T, ...), got {np.shape(getattr(batch, name, None))}")
    Bsz, Tlen, n_in = np.shape(batch.inputs)
    if np.shape(batch.targets)[:2] != (Bsz, Tlen) or np.shape(batch.mask) != np.shape(batch.targets):
        _fail(
            f"batch.targets {np.shape(batch.targets)} and batch.mask {np.shape(batch.mask)} must both have shape "
            f"(B={Bsz}, T={Tlen}, n_out)"
        )
    if Bsz == 0 or Tlen == 0:
        _fail(f"batch.inputs must have B >= 1 trials and T >= 1 steps, got shape {(Bsz, Tlen, n_in)}")
    valid = getattr(batch, "valid", None)
    if valid is not None:
        v = np.asarray(valid)
        if v.shape != (Bsz, Tlen) or not np.all((v == 0) | (v == 1)):
            _fail(
                f"batch.valid must be None or a (B={Bsz}, T={Tlen}) array of 0/1 (or bool), got shape {v.shape}"
                + ("" if v.shape != (Bsz, Tlen) else " with values other than 0 and 1")
            )
    n_out = np.shape(batch.targets)[2]
    if task is not None:
        got = tuple(getattr(task, a, None) for a in ("n_in", "n_out", "steps"))
        if got != (n_in, n_out, Tlen):
            _fail(
                f"task {getattr(task, 'name', type(task).__name__)!r} has (n_in, n_out, steps) = {got} but the batch "
                f"has {(n_in, n_out, Tlen)}; expected the task that sampled the batch"
            )
    n0 = None
    K0 = None
    for i, (m, sf, v) in enumerate(zip(models, schurs, variants, strict=True)):
        tag = f"[{i}]" if len(models) > 1 else ""
        for attr in ("W_in", "W_rec", "b", "W_out", "b_out"):
            if not hasattr(m, attr):
                _fail(f"model{tag} has no attribute {attr!r}; expected a TanhRNN")
        n = np.shape(m.W_rec)[0]
        if np.shape(m.W_rec) != (n, n):
            _fail(f"model{tag}.W_rec must be square, got shape {np.shape(m.W_rec)}")
        if n0 is None:
            n0 = n
        elif n != n0:
            _fail(f"all models must have the same hidden size n, got {n0} and {n} (model{tag})")
        if np.shape(m.W_in)[1] != n_in:
            _fail(f"model{tag}.n_in = {np.shape(m.W_in)[1]} but batch.inputs has last dim {n_in}; expected equal")
        if np.shape(m.W_out)[0] != n_out:
            _fail(f"model{tag}.n_out = {np.shape(m.W_out)[0]} but batch.targets has last dim {n_out}; expected equal")
        for attr in ("W_in", "W_rec", "b", "W_out", "b_out"):
            _finite(f"model{tag}.{attr}", getattr(m, attr))
        h0 = getattr(m, "h0", None)
        if h0 is not None and np.shape(h0) != (n,):
            _fail(f"model{tag}.h0 must be None or have shape (n={n},), got {np.shape(h0)}")
        if h0 is not None:
            _finite(f"model{tag}.h0", h0)
        dyn, dyn0 = _dynamics(m), _dynamics(models[0])
        if dyn.nonlinearity not in ("tanh", "relu", "softplus") or dyn.form not in ("rate", "post", "current"):
            _fail(
                f"model{tag} has an unsupported step ({dyn.describe()}); expected tanh/relu/softplus, rate/post/current"
            )
        if not 0.0 < dyn.alpha <= 1.0:
            _fail(f"model{tag}.alpha must be in (0, 1], got {dyn.alpha!r}")
        if dyn[1:] != dyn0[1:]:
            _fail(
                f"all models of one call must share their nonlinearity and form, got {dyn0.describe()} (model[0]) "
                f"and {dyn.describe()} (model{tag}); evaluate them in separate calls"
            )
        if not isinstance(sf, SchurForm):
            _fail(f"sf{tag} must be a SchurForm (sj.ordered_schur(model.W_rec)), got {type(sf).__name__}")
        if np.shape(sf.T) != (n, n) or np.shape(sf.Q) != (n, n):
            _fail(f"sf{tag} has n = {np.shape(sf.T)[0]} but model{tag} has n = {n}; expected the model's Schur form")
        if not isinstance(v, Variants):
            _fail(f"variants{tag} must be a schurjax.ablate.Variants, got {type(v).__name__}")
        if v.n != n:
            _fail(f"variants{tag}.n = {v.n} does not match the model's hidden size n = {n}")
        K = len(v)
        if K == 0:
            _fail(f"variants{tag} is empty (K = 0); expected at least one variant")
        K0 = K if K0 is None else max(K0, K)  # unequal K: shorter sets run zero-edit slots, cut off afterwards
        _finite(f"sf{tag}.Q", sf.Q)
        _finite(f"sf{tag}.T", sf.T)
        sf.check_of(m.W_rec, "evaluate", name=f"sf{tag}", model=f"model{tag}")
    return n0, K0


def _bind(schurs: list, variants: list[Variants]) -> list[Variants]:
    """Tie every variant set to its SchurForm: refuse sets built from another one, bind ``from_masks`` sets."""
    many = len(variants) > 1
    out = []
    for i, (sf, v) in enumerate(zip(schurs, variants, strict=True)):
        tag = f"[{i}]" if many else ""
        out.append(v._bind(sf, "evaluate", f"variants{tag}", f"sf{tag}"))
    return out


_ENGINE_FIELDS = tuple(f.name for f in dataclasses.fields(EngineOptions))
_RENAMED = {"chunk_size": "compiled_chunk"}


def engine_options(options: EngineOptions | None = None, **fields: Any) -> EngineOptions:
    """``options`` (default ``EngineOptions()``) with the given fields replaced: the keyword shorthand of
    :func:`evaluate` (``path="dense"`` is ``options=EngineOptions(path="dense")``).

    Example:
        >>> engine_options(path="dense").path, engine_options(EngineOptions(dtype="float64"), path="shared").dtype
        ('dense', 'float64')
    """
    if options is not None and not isinstance(options, EngineOptions):
        raise InputError("evaluate", "options", f"must be None or an EngineOptions, got {type(options).__name__}")
    for name in fields:
        if name in _RENAMED:
            raise InputError(
                "evaluate", name, f"is now {_RENAMED[name]} (variants per compiled chunk, an EngineOptions field)"
            )
        if name not in _ENGINE_FIELDS:
            raise InputError("evaluate", name, f"is not an option; expected some of {', '.join(_ENGINE_FIELDS)}")
    base = EngineOptions() if options is None else options
    return dataclasses.replace(base, **fields) if fields else base


class _Call(NamedTuple):
    """What one evaluation computes: checked models, forms and variant sets on one batch, and the metrics asked."""

    models: list
    schurs: list
    vsets: list[Variants]
    batch: TaskBatch
    task: Task | None
    loss: str  # "mse", "ce" or "custom"
    per_trial: bool
    trial_stats: Callable[[Any, Any], Any] | None
    n: int
    K: int  # the largest set's size


class _How(NamedTuple):
    """How it runs: the options, with what they leave open resolved for this call (the path, the mesh)."""

    path: str  # "shared" or "dense"
    mesh: jax.sharding.Mesh | None
    options: EngineOptions

    @property
    def precision(self) -> str:
        """The JAX matmul precision."""
        return self.options.matmul_precision

    @property
    def dtype(self) -> Any:
        """jnp.float32 or jnp.float64."""
        return self.options.jax_dtype

    @property
    def deviation(self) -> bool:
        return self.options.deviation

    @property
    def chunk(self) -> int | str:
        """Variants per compiled chunk, or ``"auto"``."""
        return self.options.compiled_chunk


def evaluate(
    model: TanhRNN,
    sf: SchurForm,
    variants: Variants,
    batch: TaskBatch,
    *,
    task: Task | None = None,
    loss: str | None = None,
    divergence: bool = False,
    per_trial: bool = False,
    trial_stats: Callable[[Any, Any], Any] | None = None,
    progress: Callable[[int, int], object] | None = None,
    options: EngineOptions | None = None,
    **engine: Any,
) -> SweepResult:
    """Roll out every weight variant of one model on one batch of trials and return its metrics.

    Args:
        model: TanhRNN or RateRNN with n hidden units (any form, nonlinearity, ``alpha`` and ``h0``).
        sf: the model's SchurForm (``ordered_schur(model.W_rec)``).
        variants: ``schurjax.ablate.Variants`` built from ``sf`` (``dT`` depends on T; checked through
            ``Variants.fingerprint``). ``from_masks`` variants made without ``sf`` are bound to it here
            (``Variants.bind``: diagonal-block check, counts).
        batch: TaskBatch, inputs (B, T, n_in), targets and mask (B, T, n_out); shared by all variants.
            An optional ``batch.valid`` (B, T) (None: every step valid) marks the steps of trials of unequal length
            (padded at the end): the loss counts valid steps only (mask times valid), output_distance and
            divergence average over valid steps, and hidden_distance is taken at each trial's last valid step.
        task: Task whose ``score(y, batch)`` fills ``SweepResult.score`` (NaN without a task) and whose
            ``loss_type`` (``"mse"``, the default, or ``"ce"``) names the loss the metrics sum.
        loss: ``None`` (default: the task's ``loss_type``, ``"mse"`` without a task), ``"mse"`` (masked mean
            squared error), ``"ce"`` (cross-entropy of the outputs as logits against the targets as class
            probabilities, per step weighted by ``max_o mask``, as :func:`schurjax.tasks.masked_ce`) or
            ``"custom"`` (the mean over trials of ``task.trial_loss(y, batch) -> (B,)``, pure JAX, evaluated
            from each variant's full outputs and differenced per trial in the rollout dtype: no cancellation-free
            form and no float64 re-run); given, it overrides the task's. In the deviation form the cross-entropy
            change is summed without cancellation from the float64 base's softmax.
        divergence: also return the per-step output divergence ``(K, T)`` (mean over the trials valid at that
            step and the outputs of the squared output difference to the unablated model).
        per_trial: also fill ``trial_delta_loss`` (K, B), each trial's share of ``delta_loss`` (summed over its
            steps and outputs; ``trial_delta_loss.sum(1) == delta_loss`` to rounding), and ``trial_base_loss`` (B,),
            the same for ``base_loss``: the sums a bootstrap over trials resamples.
        trial_stats: ``fn(y, batch) -> (B, p)``, per-trial statistics of the outputs ``y`` (B, T, n_out) (traced);
            fills ``trial_stats`` (K, B, p) for every variant and ``base_trial_stats`` (B, p) for the unablated
            model (for example the additive parts of a task score).
        progress: ``callable(done_variants, total_variants)``, called after every chunk.
        options: how the engine runs (:class:`EngineOptions`: path, precision, dtype, deviation, compiled chunk,
            devices, host workers); default ``EngineOptions()``.
        **engine: shorthand for fields of ``options``: ``evaluate(..., path="dense", dtype=jnp.float64)`` is
            ``evaluate(..., options=EngineOptions(path="dense", dtype="float64"))``.

    Returns:
        SweepResult: loss (the task's loss, ``loss_type``), delta_loss, rel_delta_loss, output_distance,
        hidden_distance, score, delta_norm, each (K,) NumPy float64.

    Raises:
        InputError: a one-line message naming the bad argument (sizes that do not match, NaN weights, K = 0,
            an unknown option, a SchurForm of another matrix, variants built from another SchurForm, masks
            that change the diagonal blocks).

    Example::

        task = sj.tasks.get("flipflop"); model = sj.zoo.load("flipflop")
        sf = sj.ordered_schur(model.W_rec)
        res = sj.evaluate(model, sf, sj.ablate.single_couplings(sf), task.sample(jax.random.key(1), 64), task=task)
        res.rel_delta_loss.argmax()
    """
    for name, value in (("model", model), ("sf", sf), ("variants", variants)):
        if isinstance(value, (list, tuple)):
            _fail(
                f"{name} must be one {name} object, got a {type(value).__name__}; for several models use "
                "evaluate_many(models, sfs, variants, batch)"
            )
    return evaluate_many(
        [model],
        [sf],
        [variants],
        batch,
        task=task,
        loss=loss,
        divergence=divergence,
        per_trial=per_trial,
        trial_stats=trial_stats,
        progress=progress,
        options=options,
        **engine,
    )[0]


def evaluate_many(
    models: Sequence[TanhRNN],
    sfs: Sequence[SchurForm],
    variants: Sequence[Variants],
    batch: TaskBatch,
    *,
    task: Task | None = None,
    loss: str | None = None,
    divergence: bool = False,
    per_trial: bool = False,
    trial_stats: Callable[[Any, Any], Any] | None = None,
    progress: Callable[[int, int], object] | None = None,
    options: EngineOptions | None = None,
    **engine: Any,
) -> list[SweepResult]:
    """:func:`evaluate` for several models of the same size n on one batch, in one compiled program.

    Args:
        models: TanhRNNs or RateRNNs of the same n and the same step (alpha, nonlinearity, form; a one-line
            error otherwise).
        sfs: their SchurForms, one per model.
        variants: one Variants per model (dT depends on each T). K may differ: shorter sets are padded with zero
            edits inside the one program and each result is cut back to its own K.
        batch: the shared TaskBatch.
        task, loss, divergence, per_trial, trial_stats, progress, options, **engine: as :func:`evaluate`.

    Returns:
        One SweepResult per model, in order.

    Example::

        res = sj.engine.evaluate_many([m0, m1], [sf0, sf1], [v0, v1], batch, task=task)
    """
    opts = engine_options(options, **engine)
    mesh = opts.mesh()
    if not isinstance(per_trial, bool):
        _fail(f"per_trial must be True or False, got {per_trial!r}")
    if trial_stats is not None and not callable(trial_stats):
        _fail(f"trial_stats must be None or a callable fn(y, batch) -> (B, p), got {trial_stats!r}")
    models = _as_list(models, "models")
    sfs = _as_list(sfs, "sfs")
    vsets = _as_list(variants, "variants")
    n, K = _check(models, sfs, vsets, batch, task)
    vsets = _bind(sfs, vsets)
    if task is None and loss is None:
        _warn_if_class_targets(batch)
    _warn_if_order_differs(models, sfs)
    call = _Call(models, sfs, vsets, batch, task, loss_type_of(task, loss), per_trial, trial_stats, n, K)
    path = opts.path if opts.path != "auto" else choose_path(max(v.max_nnz for v in vsets), n)
    how = _How(path, mesh, opts)
    with jax.enable_x64(True) if opts.dtype == "float64" else contextlib.nullcontext():
        cat, fixed, steps, mask_sum = _run(call, how, progress=progress)
        if how.deviation and opts.dtype == "float32" and call.loss != "custom":  # (custom: nothing to key a re-run on)
            _refine(cat, fixed, call, how)
    return _results(cat, fixed, vsets, len(models), steps, mask_sum, divergence, call.loss)


def _warn_if_class_targets(batch: TaskBatch) -> None:
    """Without a task or ``loss``, the loss is masked MSE; say so when the targets look like class probabilities
    (non-negative, summing to 1 on every counted step, at least 2 outputs): a cross-entropy network's loss."""
    t = np.asarray(batch.targets, np.float64)
    counted = np.asarray(batch.mask, np.float64).max(axis=-1) > 0
    if t.shape[-1] < 2 or not counted.any():
        return
    tc = t[counted]
    if np.all(tc >= 0) and np.allclose(tc.sum(axis=-1), 1.0, atol=1e-6):
        warnings.warn(
            "evaluate: no task and no loss given, so the loss is the masked MSE, but the targets look like class "
            "probabilities; pass task= (or loss='ce') for a network trained with cross-entropy",
            UserWarning,
            stacklevel=4,
        )


def _warn_if_order_differs(models: list, sfs: list) -> None:
    """A leaky model's Schur form in another order than the one the CLI and ``schur_of(model)`` use: the results
    are right for that form, but its labels ``T[i, j]`` name other couplings than theirs."""
    for m, sf in zip(models, sfs, strict=True):
        alpha = float(getattr(m, "alpha", 1.0))
        if alpha != 1.0 and getattr(sf, "order", None) == "modulus":
            warnings.warn(
                f"evaluate: the model is leaky (alpha={alpha:g}) but sf is in 'modulus' order; schurjax sweep and "
                "sj.schur.schur_of(model) use the 'decay' order, so the labels T[i, j] name other couplings there",
                UserWarning,
                stacklevel=4,
            )
            return


def _refine(cat: dict, fixed: dict, call: _Call, how: _How) -> None:
    """Re-run in float64 the variants whose loss change is ill-conditioned, in place of their float32 metrics.

    The loss change is a sum of terms (``mask yd (2 r0 + yd)`` for the squared error; for the cross-entropy
    ``(sum_o wt) log1p(sum_o p0_o expm1(yd_o))`` and ``- sum_o wt_o yd_o`` per step and trial); float32 rounding
    errs by a small fraction of the sum of their absolute values. Where that sum exceeds ``REFINE_CONDITION``
    times ``max(|change|, 1e-5 base)`` (the terms nearly cancel: an edit that moves the outputs but hardly the
    loss), the float32 result cannot hold the error bound, so the variant is rolled out again in float64 (a
    fraction of a percent of the single couplings of trained networks). Depends only on each variant's own
    results, so it does not depend on the chunking either.
    """
    change = cat["loss_change"].sum(axis=-1)  # (M, K)
    scale = np.maximum(np.abs(change), 1e-5 * fixed["base_loss_sum"][:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        ill = cat["loss_change_abs"].sum(axis=-1) > REFINE_CONDITION * scale
    picks = [np.flatnonzero(ill[i, : len(v)]) for i, v in enumerate(call.vsets)]
    sel = [i for i, p in enumerate(picks) if p.size]
    if not sel:
        return
    sub = [call.vsets[i][picks[i]] for i in sel]
    hb = {name: value[sel] for name, value in fixed["host_base"].items()}
    again = call._replace(
        models=[call.models[i] for i in sel],
        schurs=[call.schurs[i] for i in sel],
        vsets=sub,
        trial_stats=None,
        K=max(len(v) for v in sub),
    )
    with jax.enable_x64(True):
        x64 = how._replace(options=how.options.replace(compiled_chunk=_REFINE_CHUNK, dtype="float64"))
        fine, _, _, _ = _run(again, x64, pad=True, hb=hb)
    for j, i in enumerate(sel):
        for name in cat:
            if name in fine:
                cat[name][i, picks[i]] = fine[name][j, : picks[i].size]


def _run(
    call: _Call,
    how: _How,
    *,
    progress: Callable[[int, int], object] | None = None,
    pad: bool = False,
    hb: dict | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], np.ndarray, float]:
    """Roll out every chunk; returns the per-slot arrays concatenated over chunks (name -> (M, K, ...)), the base
    quantities, the entries per step (T,) and the loss denominator (:func:`loss_denominator`). ``pad``: always use
    chunks of ``how.chunk`` slots. ``hb``: the host base trajectory (:func:`_base_rollout`) when already computed.
    """
    r = _Rollout(call, how, pad, hb)
    bounds = [(a, min(a + r.k, call.K)) for a in range(0, call.K, r.k)]
    workers = how.options.workers(how.path, jax.local_devices()[0]) if len(bounds) > 1 and how.mesh is None else 1
    if workers > 1:
        # XLA:CPU runs the dense path's batched matmuls on ~1 core: run `workers` chunks at once from host threads
        # (each compiled call releases the GIL); results are collected in chunk order.
        # The first chunk runs alone, so the program is traced and compiled once before the threads start.
        r.collect(*bounds[0], jax.block_until_ready(r.launch(*bounds[0])), progress)
        x64 = r.np_dtype == np.float64

        def work(ab: tuple[int, int]) -> dict[str, Any]:
            with jax.enable_x64(x64):  # the x64 context is thread-local
                return jax.block_until_ready(r.launch(*ab))

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(work, ab) for ab in bounds[1:]]
            for ab, fut in zip(bounds[1:], futures, strict=True):
                r.collect(*ab, fut.result(), progress)
    else:
        pending = None
        for ab in bounds:  # dispatch chunk i+1 (async) before reading chunk i back: host prep overlaps compute
            out = r.launch(*ab)
            if pending is not None:
                r.collect(*pending, progress)
            pending = (*ab, out)
        r.collect(*pending, progress)
    return r.results()


class _Rollout:
    """One call's device inputs, and the launch and read-back of its chunks (the body of :func:`_run`)."""

    def __init__(self, call: _Call, how: _How, pad: bool, hb: dict | None):
        self.call, self.how = call, how
        models, vsets, batch, task, n, K = call.models, call.vsets, call.batch, call.task, call.n, call.K
        M = len(models)
        Bsz, Tlen, _ = np.shape(batch.inputs)
        n_out = np.shape(batch.targets)[2]
        dtype = how.dtype
        self.np_dtype = np_dtype = np.dtype(jnp.dtype(dtype).name)
        self.r = max(1, max(v.max_nnz for v in vsets))
        chunk = how.chunk
        if chunk == "auto":
            chunk = auto_chunk_size(
                how.path, n=n, B=Bsz, T=Tlen, n_out=n_out, r=self.r, models=M, itemsize=np_dtype.itemsize
            )
        # slots per compiled chunk; a set smaller than one chunk is padded up to a power of two, so that calls with
        # different small K share compiled programs
        k = int(chunk) if K >= chunk or pad else int(min(chunk, 2 ** math.ceil(math.log2(K))))
        self.base_slot = 0 if how.deviation else 1  # the plain form runs the unablated model in slot 0 of a chunk
        self.split = None
        if how.mesh is not None:  # the slots of a chunk are split across the devices: a multiple of their number
            nd = how.mesh.devices.size
            k = -(-(k + self.base_slot) // nd) * nd - self.base_slot
            self.split = jax.sharding.NamedSharding(how.mesh, jax.sharding.PartitionSpec(None, "variants"))
        self.k = k

        Qs = [np.asarray(sf.Q, dtype=np.float64) for sf in call.schurs]
        self.Ts = [np.asarray(sf.T, dtype=np.float64) for sf in call.schurs]
        Ws = [sf.reconstruct() for sf in call.schurs]
        valid, last = _valid_steps(batch, Tlen)
        mask_np = np.swapaxes(np.asarray(batch.mask, dtype=np.float64), 0, 1)  # (T, B, o)
        if valid is not None:
            mask_np = mask_np * valid[:, :, None]
        self.custom = call.loss == "custom"  # the task's own per-trial loss, from the full outputs; kernels sum MSE
        self.loss = loss = "mse" if self.custom else call.loss
        self.mask_sum = loss_denominator(mask_np, loss)
        mask_np = loss_weights(batch, mask_np, loss)  # the loss sums' weights: the mask, or weighted targets (ce)
        dyns = [_dynamics(m) for m in models]
        # alpha = 1 for every model: the step without the leak (static); else each model's (alpha, 1 - alpha), traced
        leaky = any(d.alpha != 1.0 for d in dyns)
        self.dyn = dyn = (None if leaky else 1.0, dyns[0].nonlinearity, dyns[0].form)
        alphas64 = np.array([[d.alpha, 1.0 - d.alpha] for d in dyns]) if leaky else None
        self.alphas = None if alphas64 is None else jnp.asarray(alphas64.astype(np_dtype))
        self.W = jnp.asarray(np.stack(Ws).astype(np_dtype))
        self.W_out = jnp.asarray(np.stack([np.asarray(m.W_out) for m in models]).astype(np_dtype))
        self.mask = jnp.asarray(mask_np, dtype)
        self.valid = None if valid is None else jnp.asarray(valid, dtype)
        self.last = None if last is None else jnp.asarray(last)
        dense = how.path == "dense"
        if dense:
            self.Q = jnp.asarray(np.stack(Qs).astype(np_dtype))
        else:
            self.QT = jnp.asarray(np.stack([Q.T for Q in Qs]).astype(np_dtype))
        self.outputs = task is not None or call.trial_stats is not None
        self.score_batch = batch.astype(dtype) if self.outputs else None  # valid (None or bool) is kept as it is
        self.fixed: dict[str, Any] = {}
        if how.deviation:
            self._base(hb if hb is not None else _base_rollout(models, Qs, Ws, batch, mask_np, dyn, loss, alphas64))
        else:
            self.b_out = jnp.asarray(np.stack([np.asarray(m.b_out) for m in models]).astype(np_dtype))
            W_in = jnp.asarray(np.stack([np.asarray(m.W_in) for m in models]), dtype)
            b = jnp.asarray(np.stack([np.asarray(m.b) for m in models]), dtype)
            h0s = [getattr(m, "h0", None) for m in models]
            self.h0 = None
            if any(h is not None for h in h0s):
                h0 = np.stack([np.zeros(n) if h is None else np.asarray(h, np.float64) for h in h0s])
                self.h0 = jnp.asarray(h0, dtype)
            self.drive = _kernels.drive(
                jnp.asarray(batch.inputs, dtype), W_in, b, layout="TnB" if dense else "TBn", precision=how.precision
            )
            self.targets = jnp.asarray(np.swapaxes(np.asarray(batch.targets), 0, 1), dtype)
        names = ["loss_change", "sq_distance", "hidden_sq_distance"]
        names += ["loss_change_abs"] if how.deviation else ["loss_sum"]
        names += ["score"] if task is not None else []
        names += ["trial_loss_change"] if call.per_trial else []
        names += ["trial_stats"] if call.trial_stats is not None else []
        names += ["trial_custom"] if self.custom else []
        self.names = names
        self.acc: dict[str, list[np.ndarray]] = {name: [] for name in names}
        self.steps = np.full(Tlen, float(Bsz * n_out)) if valid is None else valid.sum(axis=1) * n_out  # (T,)

    def _base(self, hb: dict) -> None:
        """The deviation form's base quantities on the device, and the base model's figures, once per call."""
        call, dense, np_dtype = self.call, self.how.path == "dense", self.np_dtype
        layout = (lambda a: np.swapaxes(a, 2, 3)) if dense else (lambda a: a)  # (M, T, n, B) on the dense path
        base = {"a": layout(hb["a"]), **{name: layout(v) for name, v in aux(self.dyn[1], hb).items()}, "y0": hb["y0"]}
        base.update({name: hb[name] for name in (("p0", "lp0") if self.loss == "ce" else ("r0",))})
        base["h" if dense else "z"] = layout(hb["h_prev"]) if dense else hb["z"]
        self.base = {name: jnp.asarray(value.astype(np_dtype)) for name, value in base.items()}
        fixed = self.fixed
        fixed["base_loss_sum"] = hb["loss_sum"]
        fixed["trial_base_loss_sum"] = hb["trial_loss_sum"]
        fixed["host_base"] = hb
        if not self.outputs:
            return
        # the base model's score and trial statistics, once, from the float64 outputs
        y0 = jnp.asarray(np.transpose(hb["y0"], (0, 2, 1, 3))[:, None].astype(np_dtype))  # (M, 1, B, T, o)
        sb = self.score_batch
        if call.task is not None:
            fixed["base_score"] = np.asarray(_kernels.scores(call.task, y0, sb), dtype=np.float64)[:, 0]
        if call.trial_stats is not None:
            fixed["base_trial_stats"] = np.asarray(_kernels.trial_stats(call.trial_stats, y0, sb), np.float64)[:, 0]
        if self.custom:
            fixed["base_trial_custom"] = np.asarray(_kernels.trial_losses(call.task, y0, sb), np.float64)[:, 0]

    def _put(self, a: np.ndarray) -> jax.Array:
        """An edit array (M, slots, ...) on the device(s): its slots split across the mesh when there is one."""
        return jnp.asarray(a) if self.split is None else jax.device_put(a, self.split)

    def edits(self, a: int, b: int) -> tuple[Any, Any]:
        """Host side: the edits of variants [a, b) of every model, zero padded to k (+ 1 base slot) slots."""
        M, k, s0, n = len(self.call.models), self.k, self.base_slot, self.call.n
        if self.how.path == "shared":
            r = self.r
            rows = np.zeros((M, k + s0, r), np.int32)
            cols = np.zeros((M, k + s0, r), np.int32)
            vals = np.zeros((M, k + s0, r), self.np_dtype)
            for i, (v, T) in enumerate(zip(self.call.vsets, self.Ts, strict=True)):
                e = min(b, len(v)) - a  # a set shorter than K leaves its slots past its end as zero edits
                if e <= 0:
                    continue
                rr, cc, vv = v.sparse(slice(a, a + e), T=T)
                w = rr.shape[1]
                rows[i, s0 : s0 + e, :w], cols[i, s0 : s0 + e, :w], vals[i, s0 : s0 + e, :w] = rr, cc, vv
            return self.QT, (self._put(rows), self._put(cols), self._put(vals))
        dT = np.zeros((M, k + s0, n, n), self.np_dtype)
        for i, (v, T) in enumerate(zip(self.call.vsets, self.Ts, strict=True)):
            e = min(b, len(v)) - a
            if e > 0:
                dT[i, s0 : s0 + e] = v.delta_T(slice(a, a + e), T=T)
        return self.Q, self._put(dT)

    def launch(self, a: int, b: int) -> dict[str, Any]:
        """Dispatch the compiled chunk of variants [a, b) (asynchronously); its metrics on the device."""
        call, how = self.call, self.how
        e1, e2 = self.edits(a, b)
        common = dict(
            path=how.path,
            precision=how.precision,
            unroll=_UNROLL,
            outputs=self.outputs,
            per_trial=call.per_trial,
            dyn=self.dyn,
            loss=self.loss,
            alphas=self.alphas,
        )
        if how.deviation:
            out = _kernels.chunk_dev(self.W, self.W_out, self.base, e1, e2, self.mask, self.valid, self.last, **common)
        else:
            out = _kernels.chunk(
                self.W,
                self.W_out,
                self.b_out,
                self.drive,
                e1,
                e2,
                self.targets,
                self.mask,
                self.valid,
                self.last,
                h0=self.h0,
                **common,
            )
        if call.trial_stats is not None:
            out["trial_stats"] = _kernels.trial_stats(call.trial_stats, out["outputs"], self.score_batch)
        if call.task is not None:
            out["score"] = _kernels.scores(call.task, out["outputs"], self.score_batch)
        if self.custom:
            out["trial_custom"] = _kernels.trial_losses(call.task, out["outputs"], self.score_batch)
        out.pop("outputs", None)
        return out

    def collect(self, a: int, b: int, out: dict[str, Any], progress: Callable[[int, int], object] | None) -> None:
        """Read chunk [a, b) back to the host (float64), in chunk order."""
        call, fixed = self.call, self.fixed
        host = {name: np.asarray(out[name], dtype=np.float64) for name in self.names}
        if not self.how.deviation and not fixed:  # the plain form: the base model's figures from slot 0
            fixed["base_loss_sum"] = host["loss_sum"][:, 0].sum(axis=-1)
            if call.task is not None:
                fixed["base_score"] = host["score"][:, 0]
            if call.per_trial:
                fixed["trial_base_loss_sum"] = np.asarray(out["trial_loss_sum"], dtype=np.float64)
            if call.trial_stats is not None:
                fixed["base_trial_stats"] = host["trial_stats"][:, 0]
            if self.custom:
                fixed["base_trial_custom"] = host["trial_custom"][:, 0]
        s0 = self.base_slot
        for name in self.names:
            self.acc[name].append(host[name][:, s0 : s0 + b - a])
        if progress is not None:
            progress(b, call.K)

    def results(self) -> tuple[dict[str, np.ndarray], dict[str, Any], np.ndarray, float]:
        cat = {name: np.concatenate(self.acc[name], axis=1) for name in self.names}
        return cat, self.fixed, self.steps, self.mask_sum


def _results(cat, fixed, vsets, M, steps, mask_sum, divergence, loss="mse"):
    """Host side, float64: sums over time of the per-step sums, then the SweepResults. ``steps`` (T,): entries
    (valid trials x outputs) per step."""
    cat = dict(cat)
    cat["output_distance"] = cat["sq_distance"].sum(axis=-1) / max(float(steps.sum()), 1.0)
    cat["hidden_distance"] = np.sqrt(cat["hidden_sq_distance"]).mean(axis=-1)  # float64, over trials
    out = []
    for i in range(M):
        Ki = len(vsets[i])  # cut the zero-edit padding of a set shorter than the largest K
        cat_i = {name: value[i][:Ki] for name, value in cat.items()}
        base_loss = float(fixed["base_loss_sum"][i] / mask_sum)
        delta = cat_i["loss_change"].sum(axis=-1) / mask_sum  # = loss - base_loss, without the cancellation
        # the plain form sums each variant's own loss; the deviation form has only the change
        value = cat_i["loss_sum"].sum(axis=-1) / mask_sum if "loss_sum" in cat_i else base_loss + delta
        trial_delta = trial_base = None
        if "trial_loss_change" in cat_i:
            trial_delta, trial_base = cat_i["trial_loss_change"] / mask_sum, fixed["trial_base_loss_sum"][i] / mask_sum
        if loss == "custom":  # the mean over trials of the task's trial_loss, differenced per trial
            tl, tl0 = cat_i["trial_custom"], fixed["base_trial_custom"][i]
            base_loss, value, delta = float(tl0.mean()), tl.mean(axis=-1), (tl - tl0).mean(axis=-1)
            if trial_delta is not None:
                trial_delta, trial_base = (tl - tl0) / tl.shape[1], tl0 / tl.shape[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = delta / base_loss
        K = value.shape[0]
        score = cat_i["score"] if "score" in cat_i else np.full(K, np.nan)
        out.append(
            SweepResult(
                loss=value,
                delta_loss=delta,
                rel_delta_loss=rel,
                output_distance=cat_i["output_distance"],
                hidden_distance=cat_i["hidden_distance"],
                score=score,
                delta_norm=np.asarray(vsets[i].delta_norm, dtype=np.float64).copy(),
                base_loss=base_loss,
                base_score=float(fixed["base_score"][i]) if "base_score" in fixed else math.nan,
                labels=[dict(lab) for lab in vsets[i].labels],
                divergence=cat_i["sq_distance"] / np.maximum(steps, 1.0) if divergence else None,
                trial_delta_loss=trial_delta,
                trial_base_loss=trial_base,
                trial_stats=cat_i.get("trial_stats"),
                base_trial_stats=fixed["base_trial_stats"][i] if "base_trial_stats" in fixed else None,
                loss_type=loss,
            )
        )
    return out
