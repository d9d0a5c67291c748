"""Batched fixed points of Schur-coupling ablations: find, polish, classify and match them to the unablated network.

A sweep says
which couplings of ``W = Q T Q^T`` a task needs; the fixed points of each edited network ``W_k = Q (T + dT_k) Q^T``
say what the removal did to the dynamics (which attractor vanished, which moved, which oscillation changed speed).

For a constant input x (drive ``u = W_in x + b``) the fixed points of variant k are the roots of

    F_k(h) = tanh(W_k h + u) - h,        equivalently the zeros of  q_k(h) = ½ ||F_k(h)||²,

for the paper's tanh RNN. Every :class:`~schurjax.rnn.RateRNN` form has its own ``F_k`` and step Jacobian (the table
in :mod:`schurjax.dynamics.points`): rate ``phi(W h + u) - h``, post ``phi((1-a) h + a (W h + u)) - h``, current
``W phi(h) + u - h``; a point is stable when the spectral radius of the Jacobian of the model's own step is below 1.

Pipeline (:func:`fixed_points`):

1. Starts. States sampled from the unablated network's trajectories (on a task batch, or autonomous at input x
   from random initial states). The base network is solved from ``base_starts`` of them; every variant is solved
   from the same ``n_starts`` states plus the base's own fixed points (continuation: a base point that survives
   an edit is found again in a few Newton steps) plus the base's attractors relaxed under the variant's own map
   (``relax_steps`` iterations: the state a memory would drift to).
2. Search and polish, vmapped over (variant, start) pairs in chunks, one compiled program for the base and all
   chunks: optimistix's ``Newton`` root finder on ``F_k`` in float32, then Newton again in float64
   (``jax.enable_x64``).
3. Host, float64 NumPy: keep the points with ``||F_k(h)||_2 <= tol`` (default 1e-6, recomputed here, independently
   of the solver), deduplicate, and classify each point by the eigenvalues of the Jacobian of the map,
   ``J = diag(1 - h²) W_k`` (for the paper's step; in general the step Jacobian of the model's form): ``stable``
   (spectral radius < 1), else ``rotational`` (the leading eigenvalue is a complex pair: an unstable focus, the
   centre of an oscillation) or ``saddle`` (real leading eigenvalue).
4. Match each variant's attractors to the base's attractors (one-to-one, nearest first, within ``match_radius``):
   a base attractor *survives* (moved at most ``survive_tol``), *moves* (further, but still within the radius) or
   *vanishes*. Per variant: stable points, attractors lost and gained, the largest displacement of a surviving
   attractor, and the leading eigenvalue's frequency ``|arg λ|`` (rad/step) at the point that continues the
   base's reference point (the base fixed point nearest to the mean trajectory state; for an oscillating network
   the unstable focus inside the cycle).

Slow points (local minima of q with q > 0) are not reported: Newton solves ``F = 0`` and every reported point is a
fixed point to ``tol``.

Example::

    sf = sj.ordered_schur(model.W_rec)
    fp = sj.dynamics.fixed_points(model, sf, sj.ablate.single_couplings(sf), key=jax.random.key(0),
                                  task=sj.zoo.task("flipflop"))
    fp.base.stable.sum(), fp.lost.max(), fp.points[0].shape
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
import warnings
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from schurjax.ablate import Variants
from schurjax.dynamics.points import (
    KINDS,
    STATUS,
    TANH_STEP,
    PointSet,
    _match,
    _phi,
    _sets_from_chunk,
    as_dynamics,
    classify,
)
from schurjax.errors import InputError
from schurjax.rnn import NONLINEARITIES, Dynamics, RateRNN
from schurjax.schur import SchurForm
from schurjax.tasks import Task, TaskBatch
from schurjax.tasks.base import check_key

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "KINDS",
    "STATUS",
    "PointSet",
    "FixedPoints",
    "fixed_points",
    "fixed_point_columns",
    "solve_points",
    "classify",
    "trajectory_states",
]

_HIGHEST = jax.lax.Precision.HIGHEST
_WHERE = "fixed_points"


# ----------------------------------------------------------------------------------------------------------------
# Result containers
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class FixedPoints:
    """Fixed points of K variants and of the unablated network, matched (output of :func:`fixed_points`).

    Attributes:
        base: :class:`PointSet` of the unablated network.
        sets: K :class:`PointSet`, one per variant.
        match: (K, a) int, for each of the base's ``a`` attractors the index of its variant attractor in
            ``sets[k].points``, or -1 when it vanished.
        displacement: (K, a) Euclidean distance from a base attractor to its match (NaN when it vanished).
        status: (K, a) int8 codes into :data:`STATUS` (0 survive, 1 move, 2 vanish).
        n_stable, n_points, lost, gained: (K,) int64 per variant.
        max_displacement: (K,) largest displacement of a matched base attractor (NaN when none is matched).
        leading_freq: (K,) ``|arg λ_lead|`` (rad/step) at the variant point nearest the base reference point.
        leading_radius: (K,) ``|λ_lead|`` at that point.
        reference: index of the base reference point in ``base.points`` (nearest to the mean trajectory state;
            -1 when the base has no fixed point).
        labels: the variants' label dicts.
        x: (n_in,) the constant input.
        starts: (s, n) the trajectory states every variant was started from (on top: the base's fixed points and
            its attractors after ``relax_steps`` iterations of the variant's map).
        relax_steps: see :func:`fixed_points`.
        trajectories: (B, steps, n) float32 trajectories of the unablated network the starts came from.
        tol, survive_tol, match_radius: the tolerances used.
        seconds: wall time of the search.
        dynamics: the model's step (:class:`~schurjax.rnn.Dynamics`: alpha, nonlinearity, form) the points are
            fixed points of.

    Example::

        fp.points[k], fp.stable[k]              # (p, n) float64 and (p,) bool for variant k
        np.nonzero(fp.lost > 0)[0]              # removals that lose an attractor
    """

    base: PointSet
    sets: list[PointSet]
    match: Int[np.ndarray, "K a"]
    displacement: Float[np.ndarray, "K a"]
    status: Int[np.ndarray, "K a"]
    n_stable: Int[np.ndarray, " K"]
    n_points: Int[np.ndarray, " K"]
    lost: Int[np.ndarray, " K"]
    gained: Int[np.ndarray, " K"]
    max_displacement: Float[np.ndarray, " K"]
    leading_freq: Float[np.ndarray, " K"]
    leading_radius: Float[np.ndarray, " K"]
    reference: int
    labels: list[dict]
    x: Float[np.ndarray, " n_in"]
    starts: Float[np.ndarray, "s n"]
    relax_steps: int
    trajectories: Float[np.ndarray, "B steps n"]
    tol: float
    survive_tol: float
    match_radius: float
    seconds: float
    dynamics: Dynamics = TANH_STEP

    def __len__(self) -> int:
        return len(self.sets)

    @property
    def points(self) -> list[Float[np.ndarray, "p n"]]:
        """K arrays (p_k, n) float64: the distinct fixed points of each variant."""
        return [s.points for s in self.sets]

    @property
    def stable(self) -> list[Bool[np.ndarray, " p"]]:
        """K arrays (p_k,) bool: which of them are stable."""
        return [s.stable for s in self.sets]

    def starts_of(self, W: Float[np.ndarray, "n n"], u: Float[np.ndarray, " n"]) -> Float[np.ndarray, "S n"]:
        """All starts of a variant with recurrent matrix ``W`` and drive ``u``: base points, relaxed base
        attractors, trajectory states (for reproducing a search with another solver).

        Example::

            S = fp.starts_of(sf.reconstruct(sf.T + v.delta_T(k)[0]), W_in @ fp.x + b)
        """
        A = self.base.points[self.base.stable]
        parts = [self.base.points]
        if self.relax_steps > 0 and A.shape[0]:
            W64, u64 = np.asarray(W, np.float64)[None], np.asarray(u, np.float64)
            parts.append(_relax(W64, u64, A, self.relax_steps, self.dynamics)[0])
        return np.concatenate(parts + [self.starts])

    def columns(self) -> dict[str, np.ndarray]:
        """Per-variant table columns, each a (K,) NumPy array.

        Keys: ``n_fixed``, ``n_stable``, ``lost``, ``gained``, ``n_moved`` (attractors displaced beyond
        ``survive_tol``), ``max_displacement``, ``leading_freq``, ``leading_radius``, ``max_residual``.

        Example::

            pd.DataFrame(fp.columns()).query("lost > 0")
        """
        max_res = np.array([s.residual.max() if len(s) else np.nan for s in self.sets])
        return {
            "n_fixed": self.n_points.copy(),
            "n_stable": self.n_stable.copy(),
            "lost": self.lost.copy(),
            "gained": self.gained.copy(),
            "n_moved": (self.status == 1).sum(axis=1).astype(np.int64),
            "max_displacement": self.max_displacement.copy(),
            "leading_freq": self.leading_freq.copy(),
            "leading_radius": self.leading_radius.copy(),
            "max_residual": max_res,
        }


# ----------------------------------------------------------------------------------------------------------------
# Device side: Newton in float32, Newton polish in float64
# ----------------------------------------------------------------------------------------------------------------


def _F(h: Float[Array, " n"], args: tuple[Array, Array]) -> Float[Array, " n"]:
    W, u = args
    return jnp.tanh(jnp.matmul(W, h, precision=_HIGHEST) + u) - h


def _residual_fn(dyn: Dynamics):
    """``F(h, (W, u))`` of the form's fixed-point equation (the paper's ``tanh(W h + u) - h`` for its step)."""
    if dyn == TANH_STEP:
        return _F
    a, name, form = dyn
    phi = NONLINEARITIES[name]

    def F(h, args):
        W, u = args
        if form == "current":
            return jnp.matmul(W, phi(h), precision=_HIGHEST) + u - h
        pre = jnp.matmul(W, h, precision=_HIGHEST) + u
        if form == "post" and a != 1.0:
            pre = (1.0 - a) * h + a * pre
        return phi(pre) - h

    return F


SOLVERS = ("newton", "lm", "dogleg")
"""Solvers by name; an optimistix solver object (``optx.AbstractRootFinder`` or ``optx.AbstractLeastSquaresSolver``)
works too, and then searches with its own tolerances."""


def _is_solver(x: Any) -> bool:
    return isinstance(x, optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver)


def _solver(name: Any, rtol: float, atol: float):
    if _is_solver(name):
        return name
    if name == "newton":
        return optx.Newton(rtol=rtol, atol=atol, linear_solver=lx.LU())
    if name == "lm":
        return optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    if name == "dogleg":
        return optx.Dogleg(rtol=rtol, atol=atol)
    raise InputError(
        _WHERE,
        None,
        f"solver must be one of ('newton', 'lm', 'dogleg') or an optimistix root finder or least-squares solver, "
        f"got {name!r}",
    )


def _run(solver, h0, args, max_steps: int, F=_F):
    if isinstance(solver, optx.AbstractRootFinder):
        sol = optx.root_find(F, solver, h0, args=args, max_steps=max_steps, throw=False)
    else:  # least squares on F: minimises q = ½||F||², a trust-region method (robust, slower)
        sol = optx.least_squares(F, solver, h0, args=args, max_steps=max_steps, throw=False)
    return sol.value


@eqx.filter_jit
def _solve_flat(
    W: Float[Array, "c n n"],
    idx: Int[Array, " P"],
    u: Float[Array, " n"],
    starts: Float[Array, "P n"],
    *,
    solver: Any,
    max_steps: int,
    polish_steps: int,
    search_dtype: Any,
    dynamics: Dynamics = TANH_STEP,
) -> Float[Array, "P n"]:
    """Problem p solves ``F(h; W[idx[p]], u) = 0`` (``tanh(W h + u) = h`` for the paper's step) from ``starts[p]``:
    search in ``search_dtype``, then Newton polish in the dtype of ``W`` (float64 under x64). One program for any
    mix of variants and starts."""
    F = _residual_fn(Dynamics(*dynamics))
    if not (isinstance(solver, str) and solver == "newton") and not isinstance(solver, optx.AbstractRootFinder):
        # optimistix's least-squares solvers promote float32 to float64 under x64
        search_dtype = W.dtype
    search = _solver(solver, 1e-5, 1e-5) if jnp.dtype(search_dtype) == jnp.float32 else _solver(solver, 1e-9, 1e-9)
    polish = optx.Newton(rtol=1e-12, atol=1e-12, linear_solver=lx.LU())
    Ws, us = W.astype(search_dtype), u.astype(search_dtype)

    def one(i, h0):
        h = _run(search, h0.astype(search_dtype), (Ws[i], us), max_steps, F).astype(W.dtype)
        if polish_steps == 0:
            return h
        return _run(polish, h, (W[i], u), polish_steps, F)

    return jax.vmap(one)(idx, starts)


def _launch(W: np.ndarray, idx: np.ndarray, u: np.ndarray, starts: np.ndarray, c: int, P: int, solve: dict):
    """Pad to the fixed shapes (c matrices, P problems) and dispatch (asynchronously) one compiled call."""
    Wp = np.concatenate([W, np.broadcast_to(W[:1], (c - W.shape[0],) + W.shape[1:])]) if W.shape[0] < c else W
    m = idx.size
    idx_p = np.concatenate([idx, np.zeros(P - m, idx.dtype)]) if m < P else idx
    st_p = np.concatenate([starts, np.broadcast_to(starts[:1], (P - m, starts.shape[1]))]) if m < P else starts
    with jax.enable_x64(True):
        return _solve_flat(
            jnp.asarray(Wp, jnp.float64),
            jnp.asarray(idx_p, jnp.int32),
            jnp.asarray(u, jnp.float64),
            jnp.asarray(st_p, jnp.float64),
            **solve,
        )


def solve_points(
    W: Float[np.ndarray, "k n n"],
    u: Float[np.ndarray, " n"],
    starts: Float[np.ndarray, "s n"],
    *,
    solver: Any = "newton",
    max_steps: int = 40,
    polish_steps: int = 4,
    search_dtype: Any = jnp.float32,
    dynamics: Any = None,
) -> Float[np.ndarray, "k s n"]:
    """Raw end points of the root search of ``F_k(h) = 0`` (``tanh(W_k h + u) = h`` by default) from every start.

    One compiled program for all ``k × s`` problems: optimistix ``Newton`` (or ``"lm"``/``"dogleg"`` least
    squares on F) in ``search_dtype``, then ``polish_steps`` Newton steps in float64.

    Args:
        W: (k, n, n) recurrent matrices.  u: (n,) constant drive ``W_in x + b``.  starts: (s, n) initial states.
        solver: ``"newton"`` (default), ``"lm"`` (Levenberg-Marquardt) or ``"dogleg"`` (these two search in
            float64: under x64, optimistix promotes their float32 iterates), or an optimistix solver object such as
            ``optx.Newton(rtol=1e-6, atol=1e-6)`` (a root finder on F, or a least-squares solver of ½||F||²).
        max_steps: search steps.  polish_steps: float64 Newton steps (0: none).
        search_dtype: ``jnp.float32`` (default) or ``jnp.float64``.
        dynamics: a model or its :class:`~schurjax.rnn.Dynamics` (default: the paper's step); the equation of each
            form is in :mod:`schurjax.dynamics.points`.

    Returns:
        (k, s, n) float64 end points (NaN or non-converged ones included; check the residual; no filtering).

    Example::

        h = solve_points(W[None], u, starts)          # (1, s, n)
    """
    _solver(solver, 1e-5, 1e-5)
    W = np.asarray(W, np.float64)
    starts = np.asarray(starts, np.float64)
    k, s = W.shape[0], starts.shape[0]
    solve = dict(
        solver=solver,
        max_steps=int(max_steps),
        polish_steps=int(polish_steps),
        search_dtype=jnp.dtype(search_dtype),
        dynamics=tuple(as_dynamics(dynamics, "solve_points")),
    )
    out = _launch(W, np.repeat(np.arange(k), s), u, np.tile(starts, (k, 1)), k, k * s, solve)
    return np.asarray(out, np.float64).reshape(k, s, -1)


# ----------------------------------------------------------------------------------------------------------------
# Host side: residuals, deduplication, classification, matching
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# Starts
# ----------------------------------------------------------------------------------------------------------------


def trajectory_states(
    model: RateRNN,
    *,
    key: PRNGKeyArray,
    x: Float[np.ndarray, " n_in"] | None = None,
    task: Task | None = None,
    batch: TaskBatch | None = None,
    n_trials: int = 32,
    steps: int = 20,
) -> Float[np.ndarray, "B steps n"]:
    """Hidden trajectories of the unablated network, the pool that fixed-point searches start from.

    With ``batch`` (or ``task``, sampled with ``key``): the task trials from ``h_0 = 0``. Otherwise the autonomous
    dynamics at the constant input ``x`` (default 0) from ``n_trials`` initial states uniform in ``[-1, 1]^n``:
    the initial states and the next ``steps - 1`` states (transients, which pass between the attractors).

    Returns:
        (B, steps, n) float32 NumPy array.

    Example::

        H = trajectory_states(model, key=jax.random.key(0), task=sj.zoo.task("flipflop"))
    """
    if batch is None and task is not None:
        if not callable(getattr(task, "sample", None)):
            raise TypeError(f"{_WHERE}: task must be a task with sample(key, batch_size), got {type(task).__name__}")
        batch = task.sample(key, n_trials)
    if batch is not None:
        inputs = getattr(batch, "inputs", None)
        if inputs is None or np.ndim(inputs) != 3 or np.shape(inputs)[2] != model.n_in:
            got = None if inputs is None else np.shape(inputs)
            raise InputError(
                _WHERE,
                None,
                f"batch must be a TaskBatch with inputs (B, T, n_in={model.n_in}), got "
                f"{type(batch).__name__} with inputs shape {got}",
            )
        hs, _ = jax.vmap(model.rollout)(jnp.asarray(inputs, jnp.float32))
        return np.asarray(hs, dtype=np.float32)
    u = jnp.asarray(_drive(model, _as_input(model, x)), jnp.float32)
    h0 = jax.random.uniform(key, (n_trials, model.n_hidden), jnp.float32, -1.0, 1.0)

    if model.dynamics == TANH_STEP:

        def step(h, _):
            h = jnp.tanh(jnp.matmul(h, model.W_rec.T, precision=_HIGHEST) + u)
            return h, h

    else:  # the model's own step

        def step(h, _):
            h = jax.vmap(model.step, in_axes=(0, None))(h, u)
            return h, h

    _, hs = jax.lax.scan(step, h0, None, length=int(steps) - 1)
    return np.asarray(jnp.concatenate([h0[:, None], jnp.swapaxes(hs, 0, 1)], axis=1), dtype=np.float32)


def _as_input(model: RateRNN, x: Any) -> np.ndarray:
    if x is None:
        return np.zeros(model.n_in)
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (model.n_in,) or not np.all(np.isfinite(arr)):
        raise InputError(
            _WHERE, None, f"x must be a finite constant input of shape (n_in={model.n_in},), got shape {arr.shape}"
        )
    return arr


def _drive(model: RateRNN, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.W_in, np.float64) @ x + np.asarray(model.b, np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(_WHERE, None, f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_pos(name: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise InputError(_WHERE, None, f"{name} must be a positive finite float, got {value!r}")
    return v


def _check_model_sf(model: Any, sf: Any, variants: Any) -> Variants:
    if not isinstance(model, RateRNN):
        raise TypeError(f"{_WHERE}: model must be a schurjax.RateRNN or TanhRNN, got {type(model).__name__}")
    if not isinstance(sf, SchurForm):
        raise TypeError(f"{_WHERE}: sf must be a SchurForm (sj.ordered_schur(model.W_rec)), got {type(sf).__name__}")
    if sf.n != model.n_hidden:
        raise InputError(_WHERE, None, f"sf has n = {sf.n} but model has n_hidden = {model.n_hidden}; expected equal")
    sf.check_of(model.W_rec, _WHERE)
    if not isinstance(variants, Variants):
        raise TypeError(f"{_WHERE}: variants must be schurjax.ablate.Variants, got {type(variants).__name__}")
    if len(variants) == 0:
        raise InputError(_WHERE, None, "variants must hold at least one variant, got K = 0")
    if variants.n != sf.n:
        raise InputError(_WHERE, None, f"variants have n = {variants.n} but sf has n = {sf.n}; expected equal")
    fp, want = variants.fingerprint, _fingerprint(sf)
    if fp is not None and fp != want:
        raise InputError(
            _WHERE,
            None,
            f"variants were built from a different SchurForm than sf (fingerprint "
            f"{str(fp)[:12]} != {want[:12]}); build them from sf",
        )
    return variants.bind(sf)


def _fingerprint(sf: SchurForm) -> str:
    """The SchurForm's fingerprint (``sf.fingerprint``, or ``sj.ablate.schur_fingerprint`` where that is the API)."""
    fp = getattr(sf, "fingerprint", None)
    if isinstance(fp, str):
        return fp
    from schurjax import ablate

    return ablate.schur_fingerprint(sf)


def _contract(key: PRNGKeyArray, S: np.ndarray, mean: np.ndarray, share: float) -> np.ndarray:
    """Move every ``1/share``-th start (evenly spread) to ``mean + λ (h - mean)``, λ ~ U[0, 1)."""
    S = S.copy()
    sel = np.unique(np.floor(np.arange(0, S.shape[0], 1.0 / share)).astype(np.int64))
    lam = np.asarray(jax.random.uniform(key, (sel.size, 1)), np.float64)
    S[sel] = mean + lam * (S[sel] - mean)
    return S


def _pick(key: PRNGKeyArray, pool: np.ndarray, count: int) -> np.ndarray:
    idx = jax.random.choice(key, pool.shape[0], (min(count, pool.shape[0]),), replace=False)
    return pool[np.sort(np.asarray(idx))].astype(np.float64)


def fixed_points(
    model: RateRNN,
    sf: SchurForm,
    variants: Variants,
    *,
    key: PRNGKeyArray,
    x: Float[np.ndarray, " n_in"] | None = None,
    task: Task | None = None,
    batch: TaskBatch | None = None,
    n_starts: int = 64,
    base_starts: int = 1024,
    n_trials: int = 32,
    noise: float = 0.0,
    contract: float = 0.5,
    relax_steps: int = 100,
    tol: float = 1e-6,
    dedupe_tol: float = 1e-5,
    survive_tol: float = 1e-2,
    match_radius: float | None = None,
    solver: Any = "newton",
    max_steps: int = 40,
    polish_steps: int = 4,
    search_dtype: Any = jnp.float32,
    chunk_size: int | str = "auto",
    progress: Callable[[int, int], object] | None = None,
) -> FixedPoints:
    """Fixed points of every variant ``W_k = Q (T + dT_k) Q^T`` at a constant input, matched to the base's.

    Args:
        model: the unablated TanhRNN or RateRNN (its ``W_in``, ``b`` give the drive ``u = W_in x + b``; its form,
            nonlinearity and ``alpha`` give the fixed-point equation and the step Jacobian whose spectral radius
            decides stability, see :mod:`schurjax.dynamics.points`).
        sf: its SchurForm (``sj.ordered_schur(model.W_rec)``).
        variants: ``sj.ablate`` Variants built from ``sf``.
        key: PRNG key (trajectories and the choice of starts).
        x: (n_in,) constant input (default zeros: the flip-flop's memory period, an autonomous generator).
        task: sample the start trajectories from this task (``n_trials`` trials, with a subkey of ``key``).
        batch: or from these trials. Neither: autonomous trajectories at input x from random states.
        n_starts: trajectory states each variant starts from (the base's fixed points and relaxed attractors are
            added to them).
        base_starts: trajectory states the unablated network starts from.
        n_trials: trials (or random initial states) of the start trajectories.
        noise: standard deviation of Gaussian noise added to the starts (0: states as sampled).
        contract: share of the starts moved toward the mean trajectory state, ``m + λ (h - m)`` with λ uniform
            in [0, 1): they reach the points inside a limit cycle (an oscillator's unstable focus), from which
            Newton often fails when started on the cycle itself (0: none).
        relax_steps: each base attractor, iterated this many steps under each variant's own map, is one more
            start of that variant (0: none). A surviving attractor is then found even when it moved far.
        tol: a point is reported when ``||F(h)||_2 <= tol`` in float64.
        dedupe_tol: points closer than this (Euclidean) are one point.
        survive_tol: a matched base attractor that moved at most this far *survives*, further it *moves*.
        match_radius: largest distance of a match (default: half the smallest distance between two base
            attractors, or half the RMS spread of the trajectories when the base has fewer than two).
        solver: ``"newton"`` (optimistix Newton, default), ``"lm"`` or ``"dogleg"`` (least squares on F), or an
            optimistix solver object (:data:`SOLVERS`).
        max_steps, polish_steps: search steps and float64 Newton polish steps per start.
        search_dtype: dtype of the search (``jnp.float32``, default, or ``jnp.float64``); the polish is float64.
        chunk_size: searches (variant × start pairs) per compiled call, or ``"auto"`` (up to 4,096 at n = 64,
            fewer for larger n: about 1 GiB of Jacobians). The base and all chunks share one compiled program.
        progress: ``callable(done, total)`` after each chunk.

    Returns:
        :class:`FixedPoints` (``points[k]`` (p, n) float64, ``stable[k]`` (p,) bool, per-variant counts).

    Raises:
        ValueError / TypeError: one line naming the argument (sizes, a SchurForm of another matrix, variants
            built from another SchurForm, bad tolerances).

    Example::

        fp = fixed_points(model, sf, sj.ablate.all_nonnormal(sf), key=jax.random.key(0), task=task)
        fp.base.stable.sum(), fp.n_stable[0], fp.lost[0]
    """
    t0 = time.perf_counter()
    variants = _check_model_sf(model, sf, variants)
    check_key(_WHERE, key)
    x = _as_input(model, x)
    n_starts = _check_int("n_starts", n_starts, 1)
    base_starts = _check_int("base_starts", base_starts, 1)
    n_trials = _check_int("n_trials", n_trials, 1)
    max_steps = _check_int("max_steps", max_steps, 1)
    polish_steps = _check_int("polish_steps", polish_steps, 0)
    relax_steps = _check_int("relax_steps", relax_steps, 0)
    tol = _check_pos("tol", tol)
    dedupe_tol = _check_pos("dedupe_tol", dedupe_tol)
    survive_tol = _check_pos("survive_tol", survive_tol)
    match_radius = _check_pos("match_radius", match_radius, allow_none=True)
    if not isinstance(noise, int | float) or not math.isfinite(noise) or noise < 0:
        raise InputError(_WHERE, None, f"noise must be a finite float >= 0, got {noise!r}")
    if not isinstance(contract, int | float) or not 0 <= contract <= 1:
        raise InputError(_WHERE, None, f"contract must be a float in [0, 1], got {contract!r}")
    _solver(solver, 1e-5, 1e-5)
    try:
        sd = jnp.dtype(search_dtype)
    except TypeError:
        sd = None
    if sd not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise InputError(_WHERE, None, f"search_dtype must be jnp.float32 or jnp.float64, got {search_dtype!r}")
    k_traj, k_base, k_var, k_noise, k_con = jax.random.split(key, 5)

    traj = trajectory_states(model, key=k_traj, x=x, task=task, batch=batch, n_trials=n_trials)
    pool = traj.reshape(-1, model.n_hidden)
    u = _drive(model, x)
    W0 = sf.reconstruct()  # the network whose Schur form is sf (as in sj.evaluate)
    dyn = as_dynamics(model.dynamics, _WHERE)
    solve = dict(solver=solver, max_steps=max_steps, polish_steps=polish_steps, search_dtype=sd, dynamics=tuple(dyn))
    K = len(variants)

    # one compiled program for the base and every chunk: P searches on at most c matrices per call
    if chunk_size == "auto":  # each search holds an n x n Jacobian (and its W): ~1 GiB of them per call at most
        cap = max(64, min(4096, 2 ** int(math.log2(2**30 / (32 * sf.n * sf.n)))))
        P = int(min(cap, 2 ** math.ceil(math.log2(max(base_starts, K * (n_starts + 16), 2)))))
    else:
        P = _check_int("chunk_size", chunk_size, 1)
    P = max(P, n_starts + 1)
    c = max(1, P // n_starts)

    # the unablated network, from many starts
    s_base = _pick(k_base, pool, base_starts)
    starts = _pick(k_var, pool, n_starts)
    if contract > 0:
        kb, kv = jax.random.split(k_con)
        s_base = _contract(kb, s_base, pool.mean(axis=0), contract)
        starts = _contract(kv, starts, pool.mean(axis=0), contract)
    if noise > 0:
        kb, kv = jax.random.split(k_noise)
        s_base = s_base + noise * np.asarray(jax.random.normal(kb, s_base.shape), np.float64)
        starts = starts + noise * np.asarray(jax.random.normal(kv, starts.shape), np.float64)
    h_base = []
    for a in range(0, s_base.shape[0], P):
        part = s_base[a : a + P]
        out = _launch(W0[None], np.zeros(part.shape[0], np.int64), u, part, c, P, solve)
        h_base.append(np.asarray(out)[: len(part)])
    base = _sets_from_chunk(W0[None], u, np.concatenate(h_base)[None], tol, dedupe_tol, dyn)[0]
    if len(base) == 0:  # with tanh the step maps a bounded box into itself: one exists (Brouwer), the search missed it
        exists = "(one exists)" if dyn.nonlinearity == "tanh" else f"(with {dyn.nonlinearity} there may be none)"
        warnings.warn(
            f"{_WHERE}: found no fixed point of the unablated network from {s_base.shape[0]} starts "
            f"{exists}; try more base_starts, contract=1.0 or solver='lm'",
            stacklevel=2,
        )

    # every variant: the same trajectory starts plus the base's fixed points
    A = base.points[base.stable]
    n_relax = A.shape[0] if relax_steps > 0 else 0
    S = len(base) + n_relax + starts.shape[0]
    if S > P:  # more base points than expected: a larger program
        P = int(2 ** math.ceil(math.log2(S)))
    chunk = max(1, min(c, P // S))
    sets: list[PointSet] = []
    pending = None
    for a in range(0, K, chunk):
        b_ = min(K, a + chunk)
        k = b_ - a
        Wk = W0[None] + sf.reconstruct(variants.delta_T(np.arange(a, b_)))
        parts = [np.broadcast_to(base.points, (k,) + base.points.shape)]
        if n_relax:
            parts.append(_relax(Wk, u, A, relax_steps, dyn))
        parts.append(np.broadcast_to(starts, (k,) + starts.shape))
        st = np.concatenate(parts, axis=1).reshape(k * S, -1)
        fut = _launch(Wk, np.repeat(np.arange(k), S), u, st, c, P, solve)  # async: overlaps the host work below
        if pending is not None:
            sets += _finish(pending, u, tol, dedupe_tol, dyn)
            if progress is not None:
                progress(len(sets), K)
        pending = (Wk, fut, S)
    sets += _finish(pending, u, tol, dedupe_tol, dyn)
    if progress is not None:
        progress(len(sets), K)

    # matching
    if match_radius is None:
        if A.shape[0] >= 2:
            D = np.linalg.norm(A[:, None] - A[None], axis=-1)
            match_radius = 0.5 * float(D[np.triu_indices(A.shape[0], 1)].min())
        else:
            match_radius = 0.5 * float(np.sqrt(np.mean(np.sum((pool - pool.mean(0)) ** 2, axis=1))))
        match_radius = max(match_radius, 2 * survive_tol)
    a_n = A.shape[0]
    match = np.full((K, a_n), -1, np.int64)
    disp = np.full((K, a_n), np.nan)
    for k, s in enumerate(sets):
        match[k], disp[k] = _match(base, s, match_radius)
    status = np.where(match < 0, 2, np.where(disp > survive_tol, 1, 0)).astype(np.int8)
    n_stable = np.array([int(s.stable.sum()) for s in sets], np.int64)
    lost = (match < 0).sum(axis=1).astype(np.int64)
    gained = n_stable - (match >= 0).sum(axis=1)
    with np.errstate(all="ignore"):
        max_disp = np.array([np.nanmax(d) if np.isfinite(d).any() else np.nan for d in disp])

    # leading eigenvalue at the continuation of the base reference point
    reference = -1
    freq = np.full(K, np.nan)
    rad = np.full(K, np.nan)
    if len(base):
        reference = int(np.argmin(np.linalg.norm(base.points - pool.mean(0), axis=1)))
        ref = base.points[reference]
        for k, s in enumerate(sets):
            if len(s):
                j = int(np.argmin(np.linalg.norm(s.points - ref, axis=1)))
                freq[k], rad[k] = s.freq[j], s.radius[j]

    for arr in (match, disp, status, n_stable, lost, gained, max_disp, freq, rad):
        arr.setflags(write=False)
    return FixedPoints(
        base=base,
        sets=sets,
        match=match,
        displacement=disp,
        status=status,
        n_stable=n_stable,
        n_points=np.array([len(s) for s in sets], np.int64),
        lost=lost,
        gained=gained,
        max_displacement=max_disp,
        leading_freq=freq,
        leading_radius=rad,
        reference=reference,
        labels=[dict(lab) for lab in variants.labels],
        x=x,
        starts=starts,
        relax_steps=relax_steps,
        trajectories=traj,
        tol=tol,
        survive_tol=survive_tol,
        match_radius=float(match_radius),
        seconds=time.perf_counter() - t0,
        dynamics=dyn,
    )


def _relax(W: np.ndarray, u: np.ndarray, A: np.ndarray, steps: int, dyn: Dynamics = TANH_STEP) -> np.ndarray:
    """(k, a, n): the base attractors ``A`` after ``steps`` iterations of each variant's map (float64, host)."""
    h = np.broadcast_to(A, (W.shape[0],) + A.shape).copy()
    Wt = np.swapaxes(W, 1, 2)
    if dyn == TANH_STEP:
        for _ in range(steps):
            h = np.tanh(h @ Wt + u)
        return h
    a, phi, form = dyn
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            if form == "rate":
                h = (1.0 - a) * h + a * _phi(phi, h @ Wt + u)
            elif form == "post":
                h = _phi(phi, (1.0 - a) * h + a * (h @ Wt + u))
            else:
                h = (1.0 - a) * h + a * (_phi(phi, h) @ Wt + u)
    return h


def _finish(pending, u: np.ndarray, tol: float, dedupe_tol: float, dyn: Dynamics = TANH_STEP) -> list[PointSet]:
    Wk, fut, S = pending
    h = np.asarray(fut, dtype=np.float64)[: Wk.shape[0] * S].reshape(Wk.shape[0], S, -1)
    return _sets_from_chunk(Wk, u, h, tol, dedupe_tol, dyn)


def fixed_point_columns(
    model: RateRNN,
    sf: SchurForm,
    variants: Variants,
    x: Float[np.ndarray, " n_in"] | None = None,
    *,
    key: PRNGKeyArray,
    batch: TaskBatch | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Per-variant fixed-point columns for a sweep table: :meth:`FixedPoints.columns` of :func:`fixed_points`.

    Args:
        model, sf, variants: as for :func:`fixed_points`.
        x: (n_in,) constant input (default zeros).
        key: PRNG key.
        batch: trials whose unablated trajectories give the starts (the sweep's batch).
        **kwargs: passed to :func:`fixed_points`.

    Returns:
        dict of (K,) NumPy arrays: ``n_fixed``, ``n_stable``, ``lost``, ``gained``, ``n_moved``,
        ``max_displacement``, ``leading_freq``, ``leading_radius``, ``max_residual``.

    Example::

        cols = fixed_point_columns(model, sf, variants, key=jax.random.key(0), batch=batch)
        table = table.assign(**cols)
    """
    return fixed_points(model, sf, variants, key=key, x=x, batch=batch, **kwargs).columns()
