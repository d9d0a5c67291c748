"""Attribution of every Schur coupling's loss change from one backward pass, and screening of exact ablations.

Removing the
coupling ``T[i, j]`` of ``W = Q T Q^T`` changes the loss by

    Δloss_ij = L(T - T_ij E_ij) - L(T)  ≈  -T_ij ∂L/∂T_ij  +  ½ T_ij² ∂²L/∂T_ij²,     ∂L/∂T = Q^T (∂L/∂W) Q.

Every :class:`~schurjax.rnn.RateRNN` form is differentiated through its own rollout (``model.rollout``: the form's
step, ``alpha``, nonlinearity and initial state), and the loss is the task's own (``task.loss``) when a task is given,
else the masked MSE.

*First order* (``order=1``, the default): one backward pass through the rollout (``jax.grad`` of the loss with
respect to the recurrent matrix, rotated into Schur coordinates in float64 on the host) predicts all ``m``
couplings at once; an exact sweep (:func:`schurjax.evaluate` with ``sj.ablate.single_couplings``) costs ``m``
rollouts. A trained network sits near a minimum of its loss, where the gradient is small and the curvature term
often dominates, so the first-order term can get the sign wrong.

*Second order* (``order=2``): adds ``½ T_ij² G_ij``, with ``G`` the diagonal of the Gauss-Newton matrix of the
masked MSE in Schur coordinates (the saliency of "Optimal Brain Damage", LeCun, Denker & Solla 1990). The exact
diagonal needs one tangent rollout per coupling (as costly as the exact sweep); here it is estimated without bias
from ``probes`` backward passes with random output cotangents, ``G ≈ (2/M) mean_r (Q^T J^T (√mask ⊙ z_r) Q)²``,
``z_r ~ N(0, I)``: relative error ``√(2/probes)`` per coupling, at the cost of ``probes`` gradients.
The Gauss-Newton matrix leaves out the curvature of the outputs weighted by the residuals, small for a network
that fits its task.

:func:`screen` evaluates exactly only the couplings that attribution ranks most harmful, doubling the evaluated
set until the exact top-k stops changing. :func:`agreement` compares a prediction with exact loss changes
(Spearman, sign agreement, top-fraction overlap).

Example::

    sf = sj.ordered_schur(model.W_rec)
    pred = sj.attribute(model, sf, batch)                     # (m,), aligned with sf.couplings
    pred2 = sj.attribute(model, sf, batch, order=2, key=jax.random.key(0))
    sf.couplings[np.argsort(pred2)[::-1][:5]]                 # the five most harmful removals, predicted
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray
from scipy import stats

from schurjax.ablate import single_couplings
from schurjax.engine import evaluate as engine_evaluate
from schurjax.errors import InputError
from schurjax.rnn import RateRNN
from schurjax.schur import SchurForm
from schurjax.tasks import Task, TaskBatch
from schurjax.tasks.base import check_key, masked_mse
from schurjax.tasks.batch import as_batch

if TYPE_CHECKING:
    from collections.abc import Callable

    from jax.typing import DTypeLike

__all__ = [
    "attribute",
    "coupling_gradient",
    "coupling_curvature",
    "max_probes",
    "loss_along",
    "agreement",
    "screen",
    "ScreenResult",
]


def _fail(where: str, msg: str) -> None:
    raise InputError(where, None, f"{msg}")


def _check(where: str, model: Any, sf: Any, batch: Any, task: Any, dtype: Any) -> jnp.dtype:
    if not isinstance(model, RateRNN):
        raise TypeError(f"{where}: model must be a schurjax.RateRNN or TanhRNN, got {type(model).__name__}")
    if not isinstance(sf, SchurForm):
        raise TypeError(f"{where}: sf must be a SchurForm (sj.ordered_schur(model.W_rec)), got {type(sf).__name__}")
    if sf.n != model.n_hidden:
        _fail(where, f"sf has n = {sf.n} but model has n_hidden = {model.n_hidden}; expected equal")
    for name in ("W_in", "W_rec", "b", "W_out", "b_out", "h0"):
        a = getattr(model, name)
        if a is not None and not np.all(np.isfinite(np.asarray(a, np.float64))):
            _fail(
                where, f"model.{name} must be finite, got {int(np.size(a) - np.isfinite(np.asarray(a)).sum())} NaN/inf"
            )
    if not (np.all(np.isfinite(sf.Q)) and np.all(np.isfinite(sf.T))):
        _fail(where, "sf must be finite (Q and T), got NaN/inf entries")
    sf.check_of(model.W_rec, where)
    if task is not None and not callable(getattr(task, "loss", None)):
        raise TypeError(f"{where}: task must be a task with loss(y, batch), or None, got {type(task).__name__}")
    shapes = [np.shape(getattr(batch, f, None)) for f in ("inputs", "targets", "mask")]
    if isinstance(batch, TaskBatch):
        # shapes, dtypes, finite values, valid/mask; with a task: a batch of that task (n_in, n_out, steps)
        as_batch(batch, where, task=task)
    if (
        not isinstance(batch, tuple)
        or len(shapes[0]) != 3
        or shapes[0][2] != model.n_in
        or shapes[1] != shapes[0][:2] + (model.n_out,)
        or shapes[2] != shapes[1]
    ):
        _fail(
            where,
            f"batch must be a TaskBatch with inputs (B, T, n_in={model.n_in}) and targets/mask "
            f"(B, T, n_out={model.n_out}), got shapes {shapes}",
        )
    for f in ("inputs", "targets", "mask"):  # also for a plain (inputs, targets, mask) tuple
        a = np.asarray(getattr(batch, f), np.float64)
        if not np.all(np.isfinite(a)):
            _fail(where, f"batch.{f} must be finite, got {int(a.size - np.isfinite(a).sum())} NaN/inf entries")
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        _fail(where, f"dtype must be jnp.float32 or jnp.float64, got {dtype!r}")
    return dt


def _loss_fn(model: RateRNN, task: Task | None):
    """``loss(W, inputs, targets, mask, valid)``: the model's own rollout (its form) with recurrent matrix W, then
    ``task.loss`` (or the masked MSE without a task)."""

    def loss(W: Float[Array, "n n"], inputs, targets, mask, valid=None) -> Float[Array, ""]:
        m = eqx.tree_at(lambda mm: mm.W_rec, model, W)
        y = jax.vmap(m)(inputs)
        b = TaskBatch(inputs, targets, mask, valid)
        return task.loss(y, b) if task is not None else masked_mse(y, b)

    return loss


def _cast_model(model: RateRNN, dtype) -> RateRNN:
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype) if eqx.is_array(a) else a, model)


@eqx.filter_jit
def _value_and_grad(model: RateRNN, W, inputs, targets, mask, valid, task):
    return jax.value_and_grad(_loss_fn(model, task))(W, inputs, targets, mask, valid)


def _valid(batch: Any) -> Any:
    v = getattr(batch, "valid", None)
    return None if v is None else jnp.asarray(v, bool)


def _grad_W(model, sf, batch, task, dtype) -> tuple[float, np.ndarray]:
    """Loss and ∂L/∂W at ``W = Q T Q^T`` in ``dtype`` (float64 under ``jax.enable_x64``)."""
    with jax.enable_x64(dtype == jnp.dtype(jnp.float64)):
        W = jnp.asarray(sf.reconstruct(), dtype)
        arrs = [jnp.asarray(a, dtype) for a in (batch.inputs, batch.targets, batch.mask)]
        val, g = _value_and_grad(_cast_model(model, dtype), W, *arrs, _valid(batch), task)
        return float(val), np.asarray(g, np.float64)


def _rotate(sf: SchurForm, gW: np.ndarray) -> np.ndarray:
    """Values at ``sf.couplings`` of ``Q^T gW Q`` (gW (..., n, n), float64 on the host)."""
    Q = np.asarray(sf.Q, np.float64)
    gT = np.swapaxes(Q, 0, 1) @ gW @ Q
    c = sf.couplings
    return gT[..., c[:, 0], c[:, 1]]


def coupling_gradient(
    model: RateRNN, sf: SchurForm, batch: TaskBatch, *, task: Task | None = None, dtype: DTypeLike = jnp.float32
) -> Float[np.ndarray, " m"]:
    """``∂L/∂T_ij`` for every coupling of ``sf.couplings``, from one backward pass.

    Args:
        model: RateRNN or TanhRNN (any form).  sf: its SchurForm.  batch: TaskBatch (B, T, ·) (of ``task``, when
            given).
        task: its ``loss`` is used when given (the loss the network was trained with); else the masked MSE.
        dtype: ``jnp.float32`` (default) or ``jnp.float64`` (``jax.enable_x64`` inside).

    Returns:
        (m,) float64, aligned with ``sf.couplings``.

    Example::

        g = coupling_gradient(model, sf, batch)
    """
    dt = _check("coupling_gradient", model, sf, batch, task, dtype)
    return _rotate(sf, _grad_W(model, sf, batch, task, dt)[1])


@eqx.filter_jit
def _probe_grads(model: RateRNN, W, inputs, z, chunk: int):
    """``J^T z_r`` for each probe ``z_r`` (R, B, T, n_out): one forward pass, R backward passes in chunks."""

    def outputs(W):
        return jax.vmap(eqx.tree_at(lambda mm: mm.W_rec, model, W))(inputs)

    _, vjp = jax.vjp(outputs, W)
    return jax.lax.map(lambda zz: vjp(zz)[0], z, batch_size=chunk)


_PROBE_BYTES = 2**30
"""Host memory the random probes of :func:`coupling_curvature` may hold (cotangents and gradients, float64)."""


def max_probes(n_hidden: int, batch_shape: tuple[int, ...]) -> int:
    """The largest ``probes`` :func:`coupling_curvature` accepts for this size: each probe holds its output
    cotangent (``B T n_out`` float64s) and its gradient (``n²``), within 1 GiB together.

    Example:
        >>> max_probes(64, (64, 100, 3))
        5761
    """
    per = 8 * (int(np.prod(batch_shape)) + int(n_hidden) ** 2)
    return max(1, _PROBE_BYTES // per)


def coupling_curvature(
    model: RateRNN,
    sf: SchurForm,
    batch: TaskBatch,
    *,
    key: PRNGKeyArray | None = None,
    probes: int | None = 64,
    dtype: DTypeLike = jnp.float32,
) -> Float[np.ndarray, " m"]:
    """Diagonal of the Gauss-Newton matrix of the masked MSE in Schur coordinates, at every coupling.

    ``G_ij = (2/M) Σ_{b,t,o} mask · (∂y_bto/∂T_ij)²`` (M = ``sum(mask)``): the curvature ``∂²L/∂T_ij²`` without
    the residual-weighted term.

    Args:
        model, sf, batch: as for :func:`attribute`.
        key: PRNG key of the random probes (needed unless ``probes=None``).
        probes: number of Gaussian output probes (unbiased estimate, relative error ``√(2/probes)``), or None for
            the exact diagonal (one backward pass per masked output entry: small problems only).
        dtype: ``jnp.float32`` (default) or ``jnp.float64``.

    Returns:
        (m,) float64, aligned with ``sf.couplings``.

    Example::

        G = coupling_curvature(model, sf, batch, key=jax.random.key(0))
    """
    where = "coupling_curvature"
    dt = _check(where, model, sf, batch, None, dtype)
    shape = tuple(np.shape(batch.targets))
    mask = np.asarray(batch.mask, np.float64)
    if probes is None:  # exact: one unit cotangent per masked output entry
        nz = np.flatnonzero(mask.ravel() != 0)
        if nz.size * mask.size > 50_000_000:
            _fail(
                where,
                f"probes=None (exact) needs one backward pass per masked output entry, {nz.size} here; "
                "expected a small batch, or pass probes (an int) for the random estimate",
            )
        z = np.zeros((nz.size, int(np.prod(shape))))
        z[np.arange(nz.size), nz] = np.sqrt(mask.ravel()[nz])
        z = z.reshape((nz.size,) + shape)
        scale = 1.0
    else:
        cap = max_probes(model.n_hidden, shape)
        if isinstance(probes, bool) or not isinstance(probes, numbers.Integral) or not 1 <= probes <= cap:
            _fail(
                where,
                f"probes must be None (exact) or an int in [1, {cap}] (each probe holds B*T*n_out + n^2 float64s, "
                f"1 GiB in all), got {probes!r}",
            )
        if key is None:
            _fail(where, "key must be a PRNG key (jax.random.key(seed)) for the random probes, got None")
        check_key(where, key)
        z = np.asarray(jax.random.normal(key, (int(probes),) + shape), np.float64) * np.sqrt(mask)
        scale = 1.0 / int(probes)
    with jax.enable_x64(dt == jnp.dtype(jnp.float64)):
        W = jnp.asarray(sf.reconstruct(), dt)
        g = _probe_grads(_cast_model(model, dt), W, jnp.asarray(batch.inputs, dt), jnp.asarray(z, dt), 8)
        g = np.asarray(g, np.float64)
    gT = _rotate(sf, g)  # (R, m)
    M = max(float(mask.sum()), 1.0)
    return 2.0 / M * scale * np.sum(gT * gT, axis=0)


def attribute(
    model: RateRNN,
    sf: SchurForm,
    batch: TaskBatch,
    *,
    task: Task | None = None,
    dtype: DTypeLike = jnp.float32,
    order: int = 1,
    key: PRNGKeyArray | None = None,
    probes: int | None = 64,
) -> Float[np.ndarray, " m"]:
    """Predicted loss change of removing each coupling: ``-T_ij ∂L/∂T_ij`` (+ ``½ T_ij² G_ij`` with ``order=2``).

    First order: one backward pass through the model's own rollout (every RateRNN form) for all couplings at once
    (the loss is the masked MSE that :func:`schurjax.evaluate` reports as ``loss``, or ``task.loss`` when a task is
    given). Second order adds the Gauss-Newton diagonal term of :func:`coupling_curvature` (``probes`` more
    backward passes; the Gauss-Newton matrix of the masked MSE, so only for MSE tasks).

    Args:
        model: RateRNN or TanhRNN.  sf: its SchurForm (``sj.ordered_schur(model.W_rec)``).  batch: TaskBatch (a
            batch of ``task`` when one is given: its n_in, n_out and steps must match).
        task: optional Task whose ``loss`` is differentiated.
        dtype: ``jnp.float32`` (default) or ``jnp.float64``.
        order: 1 (default) or 2.
        key, probes: for ``order=2`` (see :func:`coupling_curvature`).

    Returns:
        (m,) float64 predicted ``Δloss``, aligned with ``sf.couplings`` (0 where ``T_ij == 0``).

    Raises:
        ValueError / TypeError: one line naming the argument (sizes, a SchurForm of another matrix, non-finite
            weights or batch entries, a batch of another task, dtype, order, too many probes).

    Example::

        pred = sj.attribute(model, sf, batch)
        i, j = sf.couplings[pred.argmax()]                 # the removal predicted to hurt most
    """
    dt = _check("attribute", model, sf, batch, task, dtype)
    if order not in (1, 2) or isinstance(order, bool):
        _fail("attribute", f"order must be 1 or 2, got {order!r}")
    loss_type = getattr(task, "loss_type", "mse") if task is not None else "mse"
    if order == 2 and loss_type != "mse":
        _fail(
            "attribute",
            f"order=2 adds the Gauss-Newton curvature of the masked MSE, but task {getattr(task, 'name', '?')!r} has "
            f"loss_type {loss_type!r}; expected order=1 for it",
        )
    c = sf.couplings
    t = np.asarray(sf.T)[c[:, 0], c[:, 1]]
    pred = -t * _rotate(sf, _grad_W(model, sf, batch, task, dt)[1])
    if order == 2:
        if probes is not None and key is None:
            _fail("attribute", "key must be a PRNG key (jax.random.key(seed)) with order=2, got None")
        pred = pred + 0.5 * t * t * coupling_curvature(model, sf, batch, key=key, probes=probes, dtype=dt)
    return pred


def loss_along(
    model: RateRNN,
    sf: SchurForm,
    batch: TaskBatch,
    coupling: tuple[int, int],
    eps: Float[np.ndarray, " e"],
    *,
    task: Task | None = None,
) -> Float[np.ndarray, " e"]:
    """Float64 loss of ``W = Q (T + ε e_i e_j^T) Q^T`` for each ε (a reference for finite differences).

    Example::

        lp, lm = loss_along(model, sf, batch, (0, 5), np.array([1e-5, -1e-5]))
        fd = (lp - lm) / 2e-5                                # ≈ coupling_gradient(...)[index of (0, 5)]
    """
    where = "loss_along"
    _check(where, model, sf, batch, task, jnp.float64)
    i, j = (int(a) for a in coupling)
    if not (0 <= i < sf.n and 0 <= j < sf.n):
        _fail(where, f"coupling must be (i, j) with 0 <= i, j < {sf.n}, got {coupling!r}")
    Q = np.asarray(sf.Q, np.float64)
    W0 = sf.reconstruct()
    direction = np.outer(Q[:, i], Q[:, j])
    eps = np.atleast_1d(np.asarray(eps, np.float64))
    with jax.enable_x64(True):
        m64 = _cast_model(model, jnp.float64)
        arrs = [jnp.asarray(a, jnp.float64) for a in (batch.inputs, batch.targets, batch.mask)]
        f = eqx.filter_jit(_loss_fn(m64, task))
        return np.array([float(f(jnp.asarray(W0 + e * direction), *arrs, _valid(batch))) for e in eps])


# ----------------------------------------------------------------------------------------------------------------
# Comparison with exact ablation
# ----------------------------------------------------------------------------------------------------------------


def _top(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries (ties broken by index, deterministic)."""
    return np.lexsort((np.arange(x.size), -x))[:k]


def agreement(
    pred: Float[np.ndarray, " K"], exact: Float[np.ndarray, " K"], *, fracs: tuple[float, ...] = (0.01, 0.05)
) -> dict[str, float]:
    """How well predicted loss changes rank and sign the exact ones (same variants, same order).

    Returns:
        dict: ``spearman`` (rank correlation), ``pearson``, ``sign_agreement`` (share with the same sign, over
        entries where both are nonzero), and per fraction f (e.g. ``top_1%``): the share of the exact top
        ``ceil(f K)`` (largest Δloss, the most harmful removals) that is also in the predicted top.

    Example::

        agreement(pred_v, res.delta_loss)["spearman"]
    """
    pred = np.asarray(pred, np.float64).ravel()
    exact = np.asarray(exact, np.float64).ravel()
    if pred.shape != exact.shape or pred.size < 2:
        raise InputError(
            "agreement",
            None,
            f"pred and exact must be 1-D of the same length >= 2, got shapes {pred.shape} and {exact.shape}",
        )
    nz = (pred != 0) & (exact != 0)
    out = {
        "spearman": float(stats.spearmanr(pred, exact).statistic),
        "pearson": float(np.corrcoef(pred, exact)[0, 1]),
        "sign_agreement": float(np.mean(np.sign(pred[nz]) == np.sign(exact[nz]))) if nz.any() else math.nan,
    }
    for f in fracs:
        k = max(1, math.ceil(f * pred.size))
        out[f"top_{100 * f:g}%"] = len(set(_top(pred, k)) & set(_top(exact, k))) / k
    return out


# ----------------------------------------------------------------------------------------------------------------
# Screening
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ScreenResult:
    """Output of :func:`screen`.

    Attributes:
        top: (k,) indices into ``variants`` (the nonzero single couplings) of the exact top-k among the evaluated.
        couplings: (k, 2) their ``(i, j)``.
        k: size of the top set.
        evaluated: (e,) indices of the variants evaluated exactly, in attribution order.
        delta_loss: (e,) their exact loss changes.
        pred: (K,) the attribution of every variant.
        order: (K,) variants sorted by attribution, most harmful first.
        rounds: list of ``(evaluated so far, top-k changed)`` per doubling.
        n_evaluated: ``e``; ``K`` is the exhaustive sweep's count.
        K: number of nonzero couplings.

    Example::

        r = screen(model, sf, batch); r.n_evaluated, r.couplings[:3]
    """

    top: Int[np.ndarray, " k"]
    couplings: Int[np.ndarray, "k 2"]
    k: int
    evaluated: Int[np.ndarray, " e"]
    delta_loss: Float[np.ndarray, " e"]
    pred: Float[np.ndarray, " K"]
    order: Int[np.ndarray, " K"]
    rounds: list[tuple[int, bool]]
    n_evaluated: int
    K: int


def screen(
    model: RateRNN,
    sf: SchurForm,
    batch: TaskBatch,
    *,
    key: PRNGKeyArray | None = None,
    frac: float = 0.01,
    k: int | None = None,
    start: int | None = None,
    pred: Float[np.ndarray, " m"] | None = None,
    order: int = 2,
    probes: int | None = 64,
    task: Task | None = None,
    dtype: DTypeLike = jnp.float32,
    evaluate: Callable[..., Any] | None = None,
    **evaluate_kwargs: Any,
) -> ScreenResult:
    """Find the exact top-k most harmful single-coupling removals while evaluating only a few of them.

    The nonzero couplings are ranked by attribution (most harmful first; second order by default, which ranks
    far better than first order on trained networks). The first ``start`` are evaluated exactly; then the
    evaluated prefix doubles until the exact top-k of the evaluated set is the same before and after a doubling
    (or everything was evaluated). The stopping rule is a heuristic: a harmful coupling that attribution ranks
    low is found only when the prefix reaches it.

    Args:
        model, sf, batch: as for :func:`attribute`.
        key: PRNG key of the curvature probes (``order=2``).
        frac: top fraction wanted (default 0.01: the top 1 %), used when ``k`` is None.
        k: size of the top set (overrides ``frac``).
        start: first prefix (default ``max(4 k, 32)``).
        pred: a precomputed :func:`attribute` (aligned with ``sf.couplings``); computed when None.
        order, probes: passed to :func:`attribute` when ``pred`` is None.
        task, dtype: passed to :func:`attribute` and to the exact evaluation.
        evaluate: the exact evaluator (default :func:`schurjax.evaluate`).
        **evaluate_kwargs: passed to it (``path``, ``compiled_chunk``, ``options``, ...).

    Returns:
        :class:`ScreenResult`.

    Example::

        r = screen(model, sf, batch, key=jax.random.key(0), frac=0.01)
        r.n_evaluated / r.K                                    # share of the exhaustive sweep's cost
    """
    where = "screen"
    _check(where, model, sf, batch, task, dtype)
    variants = single_couplings(sf)
    K = len(variants)
    if K == 0:
        _fail(where, "sf has no nonzero couplings; expected at least one")
    if k is None:
        if not isinstance(frac, int | float) or not 0 < frac <= 1:
            _fail(where, f"frac must be a float in (0, 1], got {frac!r}")
        k = max(1, math.ceil(frac * K))
    elif isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= K:
        _fail(where, f"k must be an int in [1, {K}], got {k!r}")
    k = int(k)
    s = max(4 * k, 32) if start is None else start
    if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
        _fail(where, f"start must be a positive int, got {start!r}")
    if pred is None:
        pred = attribute(model, sf, batch, task=task, dtype=dtype, order=order, key=key, probes=probes)
    pred = np.asarray(pred, np.float64)
    if pred.shape != (sf.couplings.shape[0],):
        _fail(where, f"pred must have shape (m={sf.couplings.shape[0]},) aligned with sf.couplings, got {pred.shape}")
    pv = pred[_variant_coupling_index(sf, variants)]
    order = _top(pv, K)
    ev = engine_evaluate if evaluate is None else evaluate
    exact = np.full(K, np.nan)
    done, prev, rounds = 0, None, []
    while True:
        upto = min(K, int(s))
        idx = order[done:upto]
        if idx.size:
            res = ev(model, sf, variants[idx], batch, task=task, dtype=dtype, **evaluate_kwargs)
            exact[idx] = np.asarray(res.delta_loss, np.float64)
        done = upto
        seen = order[:done]
        top = seen[_top(exact[seen], min(k, done))]
        cur = frozenset(top.tolist())
        changed = prev is None or cur != prev
        rounds.append((done, bool(changed)))
        if (not changed and len(cur) == k) or done == K:
            break
        prev = cur
        s = 2 * done
    seen = order[:done]
    return ScreenResult(
        top=top,
        couplings=np.asarray(sf.couplings)[_variant_coupling_index(sf, variants)[top]],
        k=k,
        evaluated=seen.copy(),
        delta_loss=exact[seen],
        pred=pv,
        order=order,
        rounds=rounds,
        n_evaluated=int(done),
        K=K,
    )


def _variant_coupling_index(sf: SchurForm, variants) -> np.ndarray:
    """For single-coupling variants, the index of each variant's ``(row, col)`` in ``sf.couplings``."""
    n = sf.n
    c = np.asarray(sf.couplings)
    lookup = {int(i) * n + int(j): p for p, (i, j) in enumerate(c)}
    return np.array([lookup[int(lab["row"]) * n + int(lab["col"])] for lab in variants.labels], np.int64)
