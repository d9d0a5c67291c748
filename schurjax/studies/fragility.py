"""The worst edit of the same size as a Schur removal, and the robustness radius of each network.

The paper's contrast: "similar-scale changes can destroy the behaviour".
Random controls sample directions; this part finds the worst direction.

For each network: the worst edit (:func:`schurjax.ablate.worst_case`, projected gradient ascent from several starts)
is searched on the *selection* batch and its loss change reported on the *held-out* batch, at two sizes: that of
removing every coupling (T → D; dense, coupling-space and rank-1 edits) and the median size of a single-coupling
removal (rank-1 edits, the single removal's rank). Beside them, the Schur removals of those sizes on the held-out
batch. The *robustness radius* is the largest ``||ΔW||_F`` at which the worst dense edit still keeps the loss
criterion on the selection batch (:func:`schurjax.ablate.robustness_radius`, started at the median single removal's
size), also as a fraction of ``||N||_F``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from schurjax import ablate

__all__ = ["fragility_part", "edited_loss"]


def edited_loss(model: Any, sf: Any, dT: np.ndarray, batch: Any, task: Any) -> np.ndarray:
    """(S,) loss of the model with each edit ``W + Q dT_s Q^T`` on ``batch`` (the task's loss; JAX, the model's own
    step; one compiled program per shape, reused across networks)."""
    import jax.numpy as jnp

    W0 = jnp.asarray(model.W_rec)
    Q = jnp.asarray(sf.Q, W0.dtype)
    return np.asarray(_edited()(model, Q, jnp.asarray(dT, W0.dtype), batch, task), np.float64)


def _edited_impl(model: Any, Q: Any, dT: Any, batch: Any, task: Any) -> Any:
    import equinox as eqx
    import jax

    def one(d):
        m = eqx.tree_at(lambda mm: mm.W_rec, model, model.W_rec + Q @ d @ Q.T)
        return task.loss(jax.vmap(m)(batch.inputs), batch)

    return jax.lax.map(one, dT)


@functools.cache
def _edited() -> Any:
    import equinox as eqx

    return eqx.filter_jit(_edited_impl)


def fragility_part(
    model: Any,
    sf: Any,
    task: Any,
    sel: Any,
    held: Any,
    key: Any,
    heldout: dict[str, Any],
    *,
    tau: float,
    sides: str,
    starts: int,
    steps: int,
    iters: int,
) -> dict[str, Any]:
    """Worst-case edits of the Schur removals' sizes, and the robustness radius.

    Args:
        model, sf, task: the network, its Schur form and task.
        sel, held: the selection batch (the ascent) and the held-out batch (the reported figures).
        key: ``jax.random.key``.
        heldout: the held-out part (the removals' sizes and loss changes).
        tau, sides: the loss criterion.
        starts, steps: per worst-case search; iters: evaluations of the radius search.

    Returns:
        ``base_loss`` (held-out), ``sizes``: per size (``"all_nonnormal"``, ``"single_median"``) the ``radius``, the
        Schur removal's held-out relative loss change ``removal_rel`` and per kind the worst start's held-out
        ``worst_rel`` (and the median over starts, ``median_rel``); ``radius``: the robustness radius, the smallest
        failing radius tried, and both over ``||N||_F``.
    """
    import jax

    k_nn, k_single, k_rad = jax.random.split(key, 3)
    base = float(heldout["base_loss"])
    nn = heldout["all_nonnormal"]
    single_norm = np.asarray(heldout["single"]["delta_norm"], np.float64)
    single_rel = np.asarray(heldout["single"]["rel"], np.float64)
    out: dict[str, Any] = {"base_loss": base, "sizes": {}}
    plan = [("all_nonnormal", float(nn["delta_norm"]), float(nn["rel"]), ablate.WORST_KINDS, k_nn)]
    if single_norm.size:
        plan.append(
            ("single_median", float(np.median(single_norm)), float(np.median(single_rel)), ("rank1",), k_single)
        )
    for name, radius, removal_rel, kinds, k in plan:
        d: dict[str, Any] = {"radius": radius, "removal_rel": removal_rel}
        if name == "single_median":
            d["removal_max_rel"] = float(np.max(single_rel))
        for i, kind in enumerate(kinds):
            if kind == "coupling" and not np.any(sf.coupling_mask):
                continue
            wc = ablate.worst_case(
                jax.random.fold_in(k, i),
                model,
                sf,
                sel,
                radius=radius,
                kind=kind,
                starts=starts,
                steps=steps,
                task=task,
            )
            held_rel = (edited_loss(model, sf, wc.dT, held, task) - base) / base
            d[kind] = {
                "worst_rel": float(np.max(held_rel)),
                "median_rel": float(np.median(held_rel)),
                "selection_worst_rel": wc.worst_rel,
            }
        out["sizes"][name] = d
    r0 = float(np.median(single_norm)) if single_norm.size else None  # the size of one removal: a typical start
    rr = ablate.robustness_radius(
        k_rad,
        model,
        sf,
        sel,
        tau=tau,
        kind="dense",
        r_start=r0,
        iters=iters,
        starts=starts,
        steps=steps,
        task=task,
        sides=sides,
    )
    henrici = float(np.linalg.norm(sf.T[sf.coupling_mask]))
    out["radius"] = {
        "radius": rr.radius,
        "failing": rr.failing if math.isfinite(rr.failing) else math.nan,
        "henrici": henrici,
        "radius_over_henrici": rr.radius / henrici if henrici > 0 else math.nan,
        "radii": list(rr.radii),
        "worst_rel": list(rr.worst_rel),
    }
    return out
