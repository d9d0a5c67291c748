"""The in-memory result of one evaluation: per-variant metrics of one model on one batch."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["SweepResult", "METRICS"]

METRICS = ("loss", "delta_loss", "rel_delta_loss", "output_distance", "hidden_distance", "score", "delta_norm")
"""The per-variant metric arrays of a :class:`SweepResult` (and metric columns of the tidy table), in order."""


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """Per-variant metrics of one model on one batch (all arrays are NumPy, shape (K,)).

    Attributes:
        loss: each variant's loss on the batch: the task's (``loss_type``: masked MSE, or cross-entropy).
        delta_loss: ``loss - base_loss``, summed from the output differences (no cancellation for small changes).
        rel_delta_loss: ``delta_loss / base_loss``.
        output_distance: mean squared difference between the variant's and the unablated outputs.
        hidden_distance: mean over trials of ``||h_T(variant) - h_T(base)||_2`` at the final step.
        score: task score in [0, 1] (NaN when no task was given).
        delta_norm: ``||W_variant - W||_F``.
        base_loss, base_score: the unablated model on the same batch.
        labels: one dict per variant (family, label, blocks, eigenvalues, ...), from ``Variants.labels``.
        divergence: (K, T) per-step output divergence, or None when not requested.
        trial_delta_loss: (K, B) each trial's share of ``delta_loss`` (``trial_delta_loss.sum(1) == delta_loss``
            to rounding), or None unless ``evaluate(..., per_trial=True)``.
        trial_base_loss: (B,) each trial's share of ``base_loss``, or None (as ``trial_delta_loss``).
        trial_stats, base_trial_stats: (K, B, p) and (B, p) per-trial statistics ``fn(y, batch)`` of each variant's
            and of the unablated outputs, or None unless ``evaluate(..., trial_stats=fn)``.
        loss_type: the loss that ``loss``, ``delta_loss``, ``base_loss`` and the per-trial sums mean: ``"mse"``
            (masked mean squared error), ``"ce"`` (cross-entropy of the output logits) or ``"custom"`` (the mean
            over trials of the task's ``trial_loss``).

    Example::

        res = sj.evaluate(model, sf, sj.ablate.single_couplings(sf), batch)
        res.rel_delta_loss.argmax()
    """

    loss: np.ndarray
    delta_loss: np.ndarray
    rel_delta_loss: np.ndarray
    output_distance: np.ndarray
    hidden_distance: np.ndarray
    score: np.ndarray
    delta_norm: np.ndarray
    base_loss: float
    base_score: float
    labels: list[dict[str, Any]]
    divergence: np.ndarray | None = None
    trial_delta_loss: np.ndarray | None = None
    trial_base_loss: np.ndarray | None = None
    trial_stats: np.ndarray | None = None
    base_trial_stats: np.ndarray | None = None
    loss_type: str = "mse"

    def __len__(self) -> int:
        return int(self.loss.shape[0])

    def to_frame(self) -> Any:
        """The metrics as a pandas DataFrame: one row per variant, its label fields then its metrics.

        Example::

            res.to_frame().nlargest(5, "delta_loss")[["label", "delta_loss"]]
        """
        import pandas as pd

        rows = []
        for k in range(len(self)):
            row = dict(self.labels[k]) if self.labels else {}
            row.update({name: float(getattr(self, name)[k]) for name in METRICS})
            row["base_loss"], row["base_score"] = float(self.base_loss), float(self.base_score)
            rows.append(row)
        return pd.DataFrame(rows)
