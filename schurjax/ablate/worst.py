"""The worst edit of a given size: batched projected gradient ascent of the loss over ``||ΔW||_F = radius``.

The paper's contrast: similar-scale changes can destroy the behaviour.
Random edits sample directions; this finds the worst one of the same size.

Three edit spaces, all in Schur coordinates ``W + Q dT Q^T`` (``||ΔW||_F = ||dT||_F``):

* ``"dense"``: any ``dT``;
* ``"coupling"``: ``dT`` supported on the coupling entries of T (strictly above the block diagonal; the spectrum is
  kept);
* ``"rank1"``: ``dT = u v^T`` with ``||u|| ||v|| = radius``.

Every start is an independent ascent (``vmap`` over starts; one jitted ``lax.scan`` over steps): a normalised
gradient step of length ``lr * radius`` (decaying linearly to a tenth), then the exact projection back onto the
sphere (and the support). The best iterate of each start is returned; its edit is re-projected in float64 on the
host, so its norm is exactly ``radius``. The model's own step (``model(x)``, any form) and the task's own loss
(``task.loss``, masked MSE without a task) are used, so the ascent works for every network form and loss.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from schurjax.ablate.controls import _control_labels, _control_setup, _entropy
from schurjax.ablate.storage import _Explicit
from schurjax.ablate.variants import Variants, _check_sf
from schurjax.errors import InputError

__all__ = ["WorstCase", "worst_case", "worst_controls", "robustness_radius", "WORST_KINDS", "RobustnessRadius"]

WORST_KINDS = ("dense", "coupling", "rank1")
"""The edit spaces of :func:`worst_case`."""


class WorstCase(NamedTuple):
    """Result of :func:`worst_case` (S starts).

    Attributes:
        delta_loss: (S,) the largest loss change each start reached.
        rel_delta_loss: (S,) the same over the base loss.
        dT: (S, n, n) float64 edits in Schur coordinates (``W_k = Q (T + dT_k) Q^T``), ``||dT_k||_F = radius``.
        base_loss: the unablated loss on the batch.
        radius: the edit size.
        kind: the edit space.
        trace: (S, steps + 1) loss change after each step (step 0: the random start).
    """

    delta_loss: np.ndarray
    rel_delta_loss: np.ndarray
    dT: np.ndarray
    base_loss: float
    radius: float
    kind: str
    trace: np.ndarray

    @property
    def worst(self) -> float:
        """The largest loss change over the starts."""
        return float(np.max(self.delta_loss))

    @property
    def worst_rel(self) -> float:
        """The largest relative loss change over the starts."""
        return float(np.max(self.rel_delta_loss))


def _loss_fn(task: Any):
    import jax.numpy as jnp

    if task is not None:
        return task.loss

    def mse(y, batch):
        m = jnp.asarray(batch.mask, y.dtype)
        return jnp.sum(m * (y - batch.targets) ** 2) / jnp.maximum(jnp.sum(m), 1.0)

    return mse


def _check(fn: str, radius: Any, kind: str, starts: Any, steps: Any) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int | float | np.floating) or not radius >= 0:
        raise InputError(fn, None, f"radius must be a number >= 0, got {radius!r}")
    if kind not in WORST_KINDS:
        raise InputError(fn, None, f"kind must be one of {list(WORST_KINDS)}, got {kind!r}")
    for name, v, lo in (("starts", starts, 1), ("steps", steps, 0)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise InputError(fn, None, f"{name} must be an int >= {lo}, got {v!r}")


def worst_case(
    key: Any,
    model: Any,
    sf: Any,
    batch: Any,
    *,
    radius: float,
    kind: str = "dense",
    starts: int = 16,
    steps: int = 50,
    lr: float = 0.3,
    task: Any = None,
) -> WorstCase:
    """The edit of ``||ΔW||_F = radius`` that raises the loss most, by projected gradient ascent from many starts.

    Args:
        key: ``jax.random.key(seed)`` (or a raw uint32 key, or an int seed): the random starts.
        model: the network (any schurjax model with ``W_rec`` and ``model(x)`` for one trial).
        sf: SchurForm of ``model.W_rec``.
        batch: TaskBatch (B, T, ...).
        radius: ``||ΔW||_F`` of every edit.
        kind: ``"dense"``, ``"coupling"`` or ``"rank1"`` (module docstring).
        starts: S, independent ascents (run at once, ``vmap``).
        steps: gradient steps per start.
        lr: step length as a fraction of ``radius`` (decays linearly to a tenth of it).
        task: the task whose ``loss(y, batch)`` is ascended (default: masked MSE on ``batch.mask``).

    Returns:
        :class:`WorstCase`.

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> task = sj.tasks.get("flipflop", bits=1, steps=8)
        >>> model = sj.TanhRNN(1, 6, 1, key=jax.random.key(0))
        >>> sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
        >>> batch = task.sample(jax.random.key(1), 8)
        >>> wc = sj.ablate.worst_case(0, model, sf, batch, radius=0.5, starts=4, steps=5, task=task)
        >>> wc.dT.shape, bool(np.allclose(np.linalg.norm(wc.dT, axis=(1, 2)), 0.5))
        ((4, 6, 6), True)
    """
    import jax
    import jax.numpy as jnp

    _check("worst_case", radius, kind, starts, steps)
    _check_sf(sf, "worst_case")
    seed = _entropy(key, "worst_case")
    n = int(sf.n)
    W0 = jnp.asarray(model.W_rec)
    dtype = W0.dtype
    Q = jnp.asarray(sf.Q, dtype)
    support = jnp.asarray(sf.coupling_mask if kind == "coupling" else np.ones((n, n), bool), dtype)
    if kind == "coupling" and not bool(np.any(sf.coupling_mask)) and radius > 0:
        raise InputError("worst_case", None, f"sf has no coupling positions (blocks {sf.blocks}); use kind='dense'")
    r = float(radius)
    base = float(_base_loss(model, batch, task))
    k = jax.random.key(int(np.random.SeedSequence(list(seed)).generate_state(1)[0]))
    if kind == "rank1":
        ku, kv = jax.random.split(k)
        p0 = (jax.random.normal(ku, (starts, n), dtype), jax.random.normal(kv, (starts, n), dtype))
    else:
        p0 = jax.random.normal(k, (starts, n, n), dtype)
    best_p, best, trace = _ascend(
        model, Q, support, p0, jnp.asarray(r, dtype), batch, task, kind, int(steps), float(lr)
    )
    if kind == "rank1":
        u, v = (np.asarray(x, np.float64) for x in best_p)
        dT = np.einsum("si,sj->sij", u, v)
    else:
        dT = np.asarray(best_p, np.float64) * np.asarray(support, np.float64)
    nrm = np.linalg.norm(dT.reshape(starts, -1), axis=1)
    dT = dT * np.where(nrm > 0, r / np.where(nrm > 0, nrm, 1.0), 0.0)[:, None, None]  # exact in float64
    d = np.asarray(best, np.float64) - base
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = d / base
    return WorstCase(d, rel, dT, base, r, kind, np.asarray(trace, np.float64) - base)


def worst_controls(
    key: Any,
    model: Any,
    sf: Any,
    variants: Variants,
    batch: Any,
    *,
    task: Any = None,
    n_per: int = 1,
    space: str = "dense",
    starts: int = 4,
    steps: int = 30,
    lr: float = 0.3,
) -> Variants:
    """Worst-case controls: for each variant, the edit of its own ``||ΔW||_F`` that raises the loss most on
    ``batch`` (:func:`worst_case`, the best of ``starts`` ascents), ``n_per`` per variant (each from its own key).

    Random controls say what a typical edit of the removal's size does; this one says what the worst does, which is
    the paper's contrast ("similar-scale changes can destroy"). The edits are stored (not redrawn); the ascent is
    deterministic on one backend, so a sweep that plans them again resumes on the same edits.

    Args:
        key: ``jax.random.key(seed)`` (or a raw uint32 key, or an int seed).
        model, sf, batch, task: as :func:`worst_case` (the ascent's loss is ``task.loss``, masked MSE without one).
        variants: the K variants to control (each one's ``delta_norm`` is its control's radius).
        n_per: controls per variant.
        space: ``"dense"``, ``"coupling"`` or ``"rank1"`` (:data:`WORST_KINDS`).
        starts, steps, lr: of each ascent.

    Returns:
        Variants of length ``K * n_per``, variant-major; labels ``control_kind="worst"``, ``control_of``, ``rep``,
        ``space`` and ``ascent_delta_loss`` (the loss change the ascent reached, in the model's float32 step).

    Example:
        >>> import jax, numpy as np, schurjax as sj
        >>> task = sj.tasks.get("flipflop", bits=1, steps=8)
        >>> model = sj.TanhRNN(1, 6, 1, key=jax.random.key(0), gain=1.2)
        >>> sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
        >>> v = sj.ablate.single_couplings(sf)[:3]
        >>> w = sj.ablate.worst_controls(0, model, sf, v, task.sample(jax.random.key(1), 8), task=task, steps=4)
        >>> len(w), w.labels[0]["control_kind"], bool(np.allclose(w.delta_norm, v.delta_norm))
        (3, 'worst', True)
    """
    kind = "worst"
    entropy, variants, keys = _control_setup("worst_controls", key, sf, variants, n_per)
    _check("worst_controls", 0.0, space, starts, steps)
    n = int(sf.n)
    dT = np.zeros((len(keys), n, n))
    found = np.zeros(len(keys))
    for j, (co, rep) in enumerate(keys.tolist()):
        r = float(variants.delta_norm[co])
        if not (r > 0.0 and math.isfinite(r)):
            continue  # a zero edit stays zero (and a NaN norm has no size to match)
        sub = int(np.random.SeedSequence([*entropy, 6, co, rep]).generate_state(1)[0])
        wc = worst_case(sub, model, sf, batch, radius=r, kind=space, starts=starts, steps=steps, lr=lr, task=task)
        best = int(np.argmax(wc.delta_loss))
        dT[j], found[j] = wc.dT[best], wc.delta_loss[best]
    labels = _control_labels(kind, variants, keys, [(0, int(np.count_nonzero(d))) for d in dT])
    for lab, f in zip(labels, found.tolist(), strict=True):
        lab.update(space=space, ascent_delta_loss=f)
    return Variants._from_segment(n, _Explicit(dT), labels, sf.fingerprint)


def _project(p, r, support, kind):
    import jax.numpy as jnp

    if kind == "rank1":
        u, v = p
        s = jnp.sqrt(r)
        return (u * (s / jnp.maximum(jnp.linalg.norm(u), 1e-30)), v * (s / jnp.maximum(jnp.linalg.norm(v), 1e-30)))
    x = p * support
    return x * (r / jnp.maximum(jnp.linalg.norm(x), 1e-30))


def _edit(p, support, kind):
    import jax.numpy as jnp

    if kind == "rank1":
        return jnp.outer(p[0], p[1])
    return p * support


def _base_loss_impl(model, batch, task):
    import jax

    return _loss_fn(task)(jax.vmap(model)(batch.inputs), batch)


def _ascend_impl(model, Q, support, p0, r, batch, task, kind, steps, lr):
    """Projected gradient ascent from every start at once: (best edits, best losses, loss trace)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    loss = _loss_fn(task)
    W0 = model.W_rec
    tree_map = jax.tree_util.tree_map

    def f(p):
        m = eqx.tree_at(lambda mm: mm.W_rec, model, W0 + Q @ _edit(p, support, kind) @ Q.T)
        return loss(jax.vmap(m)(batch.inputs), batch)

    def norm_tree(g):
        return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(g)))

    val_grad = jax.value_and_grad(f)

    def one(p):
        p = _project(p, r, support, kind)

        def step(carry, i):
            p, best_p, best = carry
            val, g = val_grad(p)
            better = val > best
            best_p = tree_map(lambda a, b: jnp.where(better, a, b), p, best_p)
            best = jnp.where(better, val, best)
            size = lr * r * (1.0 - 0.9 * i / max(steps, 1))
            gn = norm_tree(g)
            p_new = _project(tree_map(lambda a, b: a + size * b / jnp.maximum(gn, 1e-30), p, g), r, support, kind)
            return (p_new, best_p, best), val

        (p, best_p, best), vals = jax.lax.scan(step, (p, p, -jnp.inf), jnp.arange(steps, dtype=r.dtype))
        last = f(p)
        better = last > best
        best_p = tree_map(lambda a, b: jnp.where(better, a, b), p, best_p)
        best = jnp.where(better, last, best)
        return best_p, best, jnp.concatenate([vals, last[None]])

    return jax.vmap(one)(p0)


@functools.cache
def _jitted(name: str) -> Any:
    """The jitted entry point (made once, so that repeated calls of the same shapes reuse the compilation)."""
    import equinox as eqx

    return eqx.filter_jit({"ascend": _ascend_impl, "base": _base_loss_impl}[name])


def _ascend(*args):
    return _jitted("ascend")(*args)


def _base_loss(*args):
    return _jitted("base")(*args)


class RobustnessRadius(NamedTuple):
    """Result of :func:`robustness_radius`.

    Attributes:
        radius: the largest ``||ΔW||_F`` found at which the worst edit still keeps the loss criterion.
        failing: the smallest radius found at which it does not (``inf`` if none up to the search's end).
        tau, kind: the criterion and the edit space.
        radii, worst_rel: the radii tried and the worst relative loss change at each.
    """

    radius: float
    failing: float
    tau: float
    kind: str
    radii: tuple[float, ...]
    worst_rel: tuple[float, ...]


def robustness_radius(
    key: Any,
    model: Any,
    sf: Any,
    batch: Any,
    *,
    tau: float = 0.05,
    kind: str = "dense",
    r_start: float | None = None,
    iters: int = 8,
    starts: int = 8,
    steps: int = 30,
    task: Any = None,
    sides: str = "one",
) -> RobustnessRadius:
    """The largest ``r`` at which the worst edit of size ``r`` still keeps the loss, by bracketing and bisection.

    The criterion is that of the study: ``Δloss / loss <= tau`` (``sides="one"``) or ``|Δloss| / loss <= tau``
    (the worst case raises the loss, so the two agree unless no edit raises it). Starting at ``r_start`` (default:
    the Frobenius norm of T's couplings, the size of removing them all), the radius is divided or multiplied by 4
    until the criterion changes, then bisected geometrically; ``iters`` evaluations in all, each a
    :func:`worst_case` of ``starts`` starts. ``radius`` is 0 when every radius tried fails.

    Args:
        key: ``jax.random.key(seed)``, a raw uint32 key or an int seed (one subkey per evaluation).
        model, sf, batch: as for :func:`worst_case`.
        tau: loss criterion.
        kind: edit space.
        r_start: first radius tried.
        iters: worst-case evaluations.
        starts, steps: per evaluation.
        task: the task (its loss).
        sides: the criterion's form.

    Returns:
        :class:`RobustnessRadius`.
    """
    import jax

    from schurjax.studies.protocol import keeps_loss

    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise InputError("robustness_radius", None, f"iters must be an int >= 1, got {iters!r}")
    seed = _entropy(key, "robustness_radius")
    base_key = jax.random.key(int(np.random.SeedSequence(list(seed)).generate_state(1)[0]))
    r = float(r_start) if r_start is not None else float(np.linalg.norm(sf.T[sf.coupling_mask]))
    if not r > 0:
        r = float(np.linalg.norm(sf.T)) * 0.1 or 1.0
    lo, hi = 0.0, math.inf
    radii, worst = [], []
    for i in range(iters):
        k_i = jax.random.fold_in(base_key, i)
        wc = worst_case(k_i, model, sf, batch, radius=r, kind=kind, starts=starts, steps=steps, task=task)
        radii.append(r)
        worst.append(wc.worst_rel)
        if bool(keeps_loss(np.array([wc.worst_rel]), tau, sides)[0]):
            lo = max(lo, r)
        else:
            hi = min(hi, r)
        r = 4 * r if math.isinf(hi) else (r / 4 if lo == 0.0 else math.sqrt(lo * hi))
    return RobustnessRadius(lo, hi, float(tau), kind, tuple(radii), tuple(worst))
