"""The plan of a sweep: each model's Schur form, its full variant set (families, then controls by kind) and the
chunk boundaries. Chunks never cross a family or control-kind segment, so each chunk is homogeneous."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from schurjax import ablate
from schurjax.errors import InputError
from schurjax.models import ModelSpec
from schurjax.schur import ordered_schur
from schurjax.sweeps.config import SweepConfig, _stable_int, control_key, order_of

__all__ = ["ModelPlan", "plan_model", "plan_chunks"]


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """One model's Schur form, its full variant set, the chunk boundaries ``[(start, stop), ...]`` and the segment
    boundaries (each family, then each control kind; chunks never cross them)."""

    spec: ModelSpec
    sf: Any
    variants: Any
    n_ablations: int
    chunks: list[tuple[int, int]]
    family_counts: dict[str, int]
    segments: list[tuple[int, int]]

    def segment_of(self, start: int) -> tuple[int, int]:
        """The segment ``(start, stop)`` holding variant ``start``."""
        for a, b in self.segments:
            if a <= start < b:
                return a, b
        raise IndexError(f"ModelPlan.segment_of: variant {start} is outside 0..{len(self.variants) - 1}")


def plan_chunks(segments: Sequence[int], chunk_size: int) -> list[tuple[int, int]]:
    """Chunk boundaries over consecutive segments; no chunk crosses a segment (families stay homogeneous).

    Args:
        segments: the length of each segment (e.g. each family, then each control kind), in order.
        chunk_size: the most variants per chunk.

    Returns:
        ``[(start, stop), ...]`` covering ``range(sum(segments))`` in order.

    Example:
        >>> plan_chunks([5, 2], 3)
        [(0, 3), (3, 5), (5, 7)]
    """
    out = []
    start = 0
    for length in segments:
        for a in range(start, start + length, chunk_size):
            out.append((a, min(a + chunk_size, start + length)))
        start += length
    return out


def _segment_bounds(segments: Sequence[int]) -> list[tuple[int, int]]:
    bounds = np.concatenate([[0], np.cumsum(np.asarray(segments, dtype=np.int64))]).tolist()
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _control_subset(config: SweepConfig, spec: ModelSpec, ablations: Any) -> np.ndarray:
    """Indices (into the ablations) that get controls: all, or per family a seeded subset of ``control_max``."""
    k = len(ablations)
    if config.control_max is None:
        return np.arange(k)
    fam = np.asarray([str(lab.get("family")) for lab in ablations.labels], dtype=object)
    rng = np.random.default_rng([config.seed, _stable_int(spec.id)])
    keep = []
    for f in dict.fromkeys(fam.tolist()):
        idx = np.flatnonzero(fam == f)
        if idx.size > config.control_max:
            idx = rng.choice(idx, size=config.control_max, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep).astype(np.int64)) if keep else np.zeros(0, np.int64)


def _remap_control_of(controls: Any, subset: np.ndarray) -> Any:
    """Point ``control_of`` of controls built on ``ablations[subset]`` back into the full ablation set."""
    return controls.with_labels(
        [
            {**lab, "control_of": int(subset[int(lab["control_of"])])} if lab.get("control_of") is not None else lab
            for lab in controls.labels
        ]
    )


def plan_model(spec: ModelSpec, config: SweepConfig, batch_of: Callable[[ModelSpec], Any] | None = None) -> ModelPlan:
    """Schur form, variants (families, then controls by kind) and chunk boundaries of one model.

    ``batch_of(spec)``: the batch the model is evaluated on, needed only by the ``worst`` control kind (its edits
    are searched on that batch, :func:`schurjax.ablate.worst_controls`).

    Raises:
        InputError: the families give the model no variants (e.g. a normal W has no couplings).
    """
    sf = ordered_schur(np.asarray(spec.model.W_rec, dtype=np.float64), order=order_of(config.order, spec.model))
    parts = []
    family_counts: dict[str, int] = {}
    for fam in config.families:
        v = ablate.FAMILIES[fam](sf)
        if len(v):
            parts.append(v)
        family_counts[fam] = len(v)
    if not parts:
        raise InputError(
            "sweep",
            "families",
            f"{','.join(config.families)} give model {spec.id} no variants (its "
            "W_rec has no nonzero Schur couplings of these kinds, e.g. a normal W); choose other "
            "families",
        )
    ablations = ablate.Variants.concat(*parts) if len(parts) > 1 else parts[0]
    segments = [len(p) for p in parts]
    controls = []
    subset = _control_subset(config, spec, ablations) if config.controls > 0 and config.control_kinds else []
    if len(subset):
        target = ablations if len(subset) == len(ablations) else ablations[subset]
        for kind in config.control_kinds:
            key = control_key(config.seed, spec.id, kind)
            if kind == "worst":
                if batch_of is None:
                    raise InputError(
                        "sweep", "control_kinds", "'worst' needs the sweep's batch (plan_model(batch_of=))"
                    )
                c = ablate.worst_controls(
                    key, spec.model, sf, target, batch_of(spec), task=spec.task, n_per=config.controls
                )
            else:
                c = getattr(ablate, kind)(key, sf, target, n_per=config.controls)
            if len(subset) != len(ablations):
                c = _remap_control_of(c, subset)
            controls.append(c)
            segments.append(len(c))
            family_counts[f"control:{kind}"] = len(c)
    variants = ablate.Variants.concat(ablations, *controls) if controls else ablations
    return ModelPlan(
        spec,
        sf,
        variants,
        len(ablations),
        plan_chunks(segments, config.chunk_size),
        family_counts,
        _segment_bounds(segments),
    )
