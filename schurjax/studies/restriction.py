"""Task restriction: do removals that keep the loss on the task distribution also keep the outputs off it?

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026); the paper calls
the invariances it finds *task-restricted*. This part measures how restricted they are.

For a random subset of the single-coupling removals that keep the loss on the held-out batch (and for the compressed
set), the output change is measured on the held-out trials and on inputs off the task distribution
(:func:`schurjax.studies.protocol.off_distribution_batches`: trials twice as long, input amplitudes x1.5, white noise of
the task's input variance). The output change is relative to the unablated network's own output on the same inputs:
``output_distance / mean(y_base^2)``. Each removal is paired with a matched-norm random control. The *amplification*
of a removal is its off-distribution output change over its on-task output change: an invariance restricted to the
task has an amplification well above 1, and above that of random edits of the same size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.studies import stats
from schurjax.studies.protocol import OFF_CONDITIONS, off_distribution_batches

__all__ = ["restriction_part", "output_power"]


def output_power(model: Any, batch: Any) -> float:
    """``mean(y^2)`` of the unablated model's outputs on the batch (all steps, trials and outputs), from a float64
    NumPy rollout (no compilation)."""
    W_in, W, b, W_out, b_out = (
        np.asarray(getattr(model, k), np.float64) for k in ("W_in", "W_rec", "b", "W_out", "b_out")
    )
    x = np.asarray(batch.inputs, np.float64)
    drive = x @ W_in.T + b
    h = np.zeros((x.shape[0], W.shape[0]))
    total = 0.0
    for t in range(x.shape[1]):
        h = np.tanh(h @ W.T + drive[:, t])
        y = h @ W_out.T + b_out
        total += float(np.sum(y * y))
    return total / (x.shape[0] * x.shape[1] * W_out.shape[0])


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
    **options: Any,
) -> dict[str, Any]:
    """Output changes of loss-keeping removals and their controls on the task and off it.

    Args:
        model, sf, task, batch: the model, its Schur form, its task and the held-out batch.
        key: ``jax.random.key``: subset, controls, off-distribution inputs.
        keepers: indices into ``ablate.single_couplings(sf)`` of the removals that keep the loss on ``batch``.
        compressed: (p, 2) couplings of the compressed set, or None.
        restriction_max: at most this many keepers (random subset).

    Returns:
        ``n`` (keepers used), ``conditions`` (``"task"`` and :data:`OFF_CONDITIONS`), and per condition the median
        relative output change of the keepers, of their controls and of the compressed set
        (``keep``/``control``/``compressed``); per off condition the median amplification of keepers and controls,
        the share of pairs where the keeper's amplification is larger, and a paired Wilcoxon test of the log
        amplifications; the per-keeper values (``keep_rel_out``, ``control_rel_out``) for figures.
    """
    import jax

    from schurjax.studies.measure import measure

    k_sub, k_ctrl, k_off = jax.random.split(key, 3)
    keepers = np.asarray(keepers, np.int64)
    if keepers.size > restriction_max:
        keepers = np.sort(stats._rng(k_sub).choice(keepers, size=restriction_max, replace=False))
    out: dict[str, Any] = {"n": int(keepers.size), "conditions": ["task", *OFF_CONDITIONS]}
    parts = []
    if keepers.size:
        v_keep = ablate.single_couplings(sf)[keepers]
        parts += [v_keep, ablate.matched_norm(k_ctrl, sf, v_keep)]
    comp = compressed is not None and len(compressed) > 0
    if comp:
        parts.append(ablate.cumulative(sf, np.asarray(compressed, np.int64).reshape(-1, 2), ks=[len(compressed)]))
    if not parts:
        return out
    variants = ablate.Variants.concat(*parts)
    K = int(keepers.size)
    batches = {"task": batch, **off_distribution_batches(k_off, task, batch)}
    rel_out: dict[str, np.ndarray] = {}
    for cond, b in batches.items():
        # the task is given where its trials have the batch's length (same compiled program as the other parts)
        res = measure(model, sf, variants, b, task if cond != "long" else None, **options).res
        rel_out[cond] = np.asarray(res.output_distance, np.float64) / max(output_power(model, b), 1e-30)
    for cond, r in rel_out.items():
        d: dict[str, Any] = {
            "keep": _median(r[:K]),
            "control": _median(r[K : 2 * K]),
            "compressed": float(r[-1]) if comp else math.nan,
            "keep_rel_out": [float(x) for x in r[:K]],
            "control_rel_out": [float(x) for x in r[K : 2 * K]],
        }
        if cond != "task" and K:
            with np.errstate(divide="ignore", invalid="ignore"):
                amp_k = r[:K] / rel_out["task"][:K]
                amp_c = r[K : 2 * K] / rel_out["task"][K : 2 * K]
            ok = np.isfinite(amp_k) & np.isfinite(amp_c) & (amp_k > 0) & (amp_c > 0)
            d.update(
                amp_keep=_median(amp_k),
                amp_control=_median(amp_c),
                share_amp_more=float((amp_k[ok] > amp_c[ok]).mean()) if ok.any() else math.nan,
                wilcoxon=stats.wilcoxon_paired(np.log(amp_k[ok]), np.log(amp_c[ok])),
            )
            if comp:
                with np.errstate(divide="ignore", invalid="ignore"):
                    d["amp_compressed"] = float(r[-1] / rel_out["task"][-1])
        out[cond] = d
    return out
