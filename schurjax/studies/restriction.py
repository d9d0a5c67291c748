"""Task restriction: do removals that keep the loss on the task distribution also keep the outputs off it?

The paper calls the invariances it finds *task-restricted*. This part measures how restricted they are.

For a random subset of the single-coupling removals (and for the compressed set), each with a matched-norm random
control, the output change is measured on the held-out trials and on inputs off the task distribution
(:func:`schurjax.studies.protocol.off_distribution_batches`: trials twice as long, input amplitudes x1.5, white noise of
the task's input variance). The output change is relative to the unablated network's own output on the same inputs:
``output_distance / mean(y_base^2)``. The *amplification* of a removal is its off-distribution output change over its
on-task output change: an invariance restricted to the task has an amplification well above 1, and above that of
random edits of the same size.

Filtering is fair: the headline comparison (``keep``, ``control``, ``amp_*``, ``wilcoxon``) uses the pairs in which
*both* the removal and its control keep the loss on the held-out batch; the same figures over every pair of the
subset are reported with the suffix ``_unfiltered``, and over the pairs whose removal keeps the loss (the control
unfiltered, the former one-sided filter) with ``_removal_filtered``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.studies import stats
from schurjax.studies.protocol import OFF_CONDITIONS, off_distribution_batches

__all__ = ["restriction_part", "output_power"]


def output_power(model: Any, batch: Any) -> float:
    """``mean(y^2)`` of the unablated model's outputs on the batch (all steps, trials and outputs), from the model's
    own step (``model(x)``, any network form), summed in float64."""
    y = np.asarray(_outputs()(model, batch.inputs), np.float64)
    return float(np.mean(y * y))


def _outputs_impl(model: Any, x: Any) -> Any:
    import jax

    return jax.vmap(model)(x)


@functools.cache
def _outputs() -> Any:
    """One jitted rollout (the model is an argument, so networks of one shape share the compilation)."""
    import equinox as eqx

    return eqx.filter_jit(_outputs_impl)


def _median(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan


def restriction_part(
    model: Any,
    sf: Any,
    task: Any,
    batch: Any,
    key: Any,
    keepers: np.ndarray,
    compressed: np.ndarray | None,
    *,
    restriction_max: int,
    tau: float | None = None,
    sides: str = "one",
    **options: Any,
) -> dict[str, Any]:
    """Output changes of loss-keeping removals and their controls on the task and off it.

    Args:
        model, sf, task, batch: the model, its Schur form, its task and the held-out batch.
        key: ``jax.random.key``: subset, controls, off-distribution inputs.
        keepers: indices into ``ablate.single_couplings(sf)`` of the removals that keep the loss on ``batch``.
        compressed: (p, 2) couplings of the compressed set, or None.
        restriction_max: at most this many removals (random subset).
        tau, sides: the loss criterion (:func:`schurjax.studies.protocol.keeps_loss`). With ``tau`` the subset is
            drawn from every single removal and removals and controls are filtered alike; without it (the former
            behaviour) the subset is drawn from ``keepers`` and the controls are not filtered.

    Returns:
        ``n`` (pairs in the headline comparison), ``n_subset``, ``n_removal_filtered``, ``conditions`` (``"task"``
        and :data:`OFF_CONDITIONS`), and per condition the median relative output change of the removals, of their
        controls and of the compressed set (``keep``/``control``/``compressed``); per off condition the median
        amplification of removals and controls, the share of pairs where the removal's amplification is larger,
        and a paired Wilcoxon test of the log amplifications; the same with the suffixes ``_unfiltered`` and
        ``_removal_filtered``; the per-pair values of the headline comparison (``keep_rel_out``,
        ``control_rel_out``) for figures.
    """
    import jax

    from schurjax.studies.measure import measure
    from schurjax.studies.protocol import keeps_loss

    k_sub, k_ctrl, k_off = jax.random.split(key, 3)
    keepers = np.asarray(keepers, np.int64)
    pool = keepers if tau is None else np.arange(len(sf.couplings))
    sub = pool
    if sub.size > restriction_max:
        sub = np.sort(stats._rng(k_sub).choice(pool, size=restriction_max, replace=False))
    out: dict[str, Any] = {"conditions": ["task", *OFF_CONDITIONS]}
    parts = []
    if sub.size:
        v_keep = ablate.single_couplings(sf)[sub]
        parts += [v_keep, ablate.matched_norm(k_ctrl, sf, v_keep)]
    comp = compressed is not None and len(compressed) > 0
    if comp:
        parts.append(ablate.cumulative(sf, np.asarray(compressed, np.int64).reshape(-1, 2), ks=[len(compressed)]))
    K = int(sub.size)
    if not parts:
        out.update(n=0, n_subset=0, n_removal_filtered=0)
        return out
    variants = ablate.Variants.concat(*parts)
    batches = {"task": batch, **off_distribution_batches(k_off, task, batch)}
    rel_out: dict[str, np.ndarray] = {}
    task_rel = None
    for cond, b in batches.items():
        # the task is given where its trials have the batch's length (same compiled program as the other parts)
        res = measure(model, sf, variants, b, task if cond != "long" else None, **options).res
        rel_out[cond] = np.asarray(res.output_distance, np.float64) / max(output_power(model, b), 1e-30)
        if cond == "task":
            task_rel = np.asarray(res.rel_delta_loss, np.float64)
    keep_r = np.isin(sub, keepers)
    if tau is None:
        keep_c = np.ones(K, bool)
        keep_r = np.ones(K, bool)
    else:
        keep_c = keeps_loss(task_rel[K : 2 * K], tau, sides)
    sets = {"": keep_r & keep_c, "_unfiltered": np.ones(K, bool), "_removal_filtered": keep_r}
    out.update(n=int(sets[""].sum()), n_subset=K, n_removal_filtered=int(keep_r.sum()))
    for cond, r in rel_out.items():
        d: dict[str, Any] = {"compressed": float(r[-1]) if comp else math.nan}
        for suffix, sel in sets.items():
            rk, rc = r[:K][sel], r[K : 2 * K][sel]
            d["keep" + suffix] = _median(rk)
            d["control" + suffix] = _median(rc)
            if suffix == "":
                d["keep_rel_out"] = [float(x) for x in rk]
                d["control_rel_out"] = [float(x) for x in rc]
            if cond != "task" and sel.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    amp_k = rk / rel_out["task"][:K][sel]
                    amp_c = rc / rel_out["task"][K : 2 * K][sel]
                ok = np.isfinite(amp_k) & np.isfinite(amp_c) & (amp_k > 0) & (amp_c > 0)
                d["amp_keep" + suffix] = _median(amp_k)
                d["amp_control" + suffix] = _median(amp_c)
                d["share_amp_more" + suffix] = float((amp_k[ok] > amp_c[ok]).mean()) if ok.any() else math.nan
                d["wilcoxon" + suffix] = stats.wilcoxon_paired(np.log(amp_k[ok]), np.log(amp_c[ok]))
        if cond != "task" and comp:
            with np.errstate(divide="ignore", invalid="ignore"):
                d["amp_compressed"] = float(r[-1] / rel_out["task"][-1])
        out[cond] = d
    return out
