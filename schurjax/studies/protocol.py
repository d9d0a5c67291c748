"""The study protocol: its settings, the criteria that decide whether a removal keeps the task, its keys and batches.

Definitions (fixed, so that every figure of a study means one thing):

* **Two batches per task.** A *selection* batch decides everything that is chosen (rankings, the compression
  search) and a *held-out* batch, drawn from another key with the same task parameters and size, gives every
  reported figure.
* **Two criteria.** A removal *keeps the loss* when its relative loss change is small: by default one-sided,
  ``Δloss / loss <= tau`` (default 5 %; a removal that lowers the loss keeps it), or two-sided,
  ``|Δloss| / loss <= tau`` (``loss_sides="two"``); and *keeps the score* when the task score (accuracy or R²)
  drops by at most ``eps`` (default 0.01). The loss criterion is relative to each network's own base loss, so it
  is strict for networks with a near-zero loss (a copy network at loss 4e-4) and lenient for noisy tasks; the
  score criterion is in the task's own units and means the same for every network of a task. Study headlines use
  the score criterion.
* **Intervals.** 95 % BCa intervals (:func:`schurjax.studies.stats.bca_interval`) from ``bootstrap`` resamples of
  the held-out trials, and, where removals are compared with controls, of the removals with their control draws.
* **Keys.** Every random draw derives from the root ``seed`` through :func:`study_key`, by purpose and names.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from schurjax._seeds import SEED_MAX, root_key
from schurjax.ablate import CONTROL_KINDS
from schurjax.errors import InputError

__all__ = [
    "StudyConfig",
    "QUICK",
    "study_key",
    "keeps_loss",
    "keeps_score",
    "HEADLINE",
    "DEFAULT_TASKS",
    "off_distribution_batches",
    "OFF_CONDITIONS",
    "LOSS_SIDES",
]

DEFAULT_TASKS = ("copy", "flipflop", "sine", "context")
LOSS_SIDES = ("one", "two")
"""The forms of the loss criterion: one-sided ``Δloss / loss <= tau`` (default) or two-sided
``|Δloss| / loss <= tau``."""
HEADLINE = "score"
"""The criterion the headline figures use: ``"score"`` (task-score drop <= eps), see the module docstring."""
OFF_CONDITIONS = ("long", "amplitude", "noise")
"""Inputs off the task distribution: trials twice as long, input amplitudes x1.5, white noise of the task's input
variance (see :func:`off_distribution_batches`)."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything that fixes a study's results (two equal configs give equal reports).

    Attributes:
        tasks: zoo tasks.
        seeds: zoo seeds per task.
        sizes: hidden sizes (zoo sizes); None: every size the zoo ships.
        alpha: the zoo family: 1 (the paper's tanh RNNs, default) or a leaky family's ``alpha = dt / tau`` (0.2:
            the leaky tanh rate networks, ``sj.zoo.entries(alpha=0.2)``).
        tau: loss criterion, ``Δloss / loss <= tau`` (one-sided) or ``|Δloss| / loss <= tau`` (two-sided).
        eps: score criterion, ``score drop <= eps``.
        trials: trials in each of the selection and held-out batches.
        bootstrap: bootstrap resamples of the held-out trials (percentile intervals).
        seed: root seed of batches, controls, bootstrap and nulls.
        control_kinds: random control kinds compared with the Schur ablations.
        control_max: at most this many ablations per family and model get controls (a random subset).
        null_draws: draws of the shuffled nulls (profile similarity, replay chains).
        greedy_candidates: couplings tried per greedy pass of the compression search.
        greedy_passes: greedy passes at most.
        restriction_max: at most this many loss-keeping single removals (a random subset) in the restriction part.
        replay_r2: a removal breaks the copy replay when its R² falls below this.
        bins: quantile bins of |λ| per axis in the basis-free profiles.
        quick: a small preset for a first look (see :data:`QUICK`); recorded so that quick and full studies never
            share a folder.
        control_draws: random controls per ablation and kind in the controls part (the all-nonnormal ablation gets
            16), so that intervals cover the variation between control draws.
        loss_sides: ``"one"`` (default: ``Δloss / loss <= tau``) or ``"two"`` (``|Δloss| / loss <= tau``).
        worst_starts, worst_steps: starts and gradient steps of each worst-case search (fragility part).
        radius_iters: worst-case searches of the robustness-radius bisection.
        rotations: random rotations inside the 2x2 blocks in the coordinates part (besides the other orders).
        coordinate_trials: the coordinates part reruns the headlines (default coordinates included) on the first
            ``min(trials, coordinate_trials)`` held-out trials.
        margin: a fixed margin for the compression search: it accepts a set only within ``(1 - margin) tau``
            (loss) or ``(1 - margin) eps`` (score) on the selection batch. None (the default): the margin is set
            from the measured selection/validation gap (:func:`schurjax.studies.compression.select`). Either way
            the decision is made on the held-out decision batch by a confidence bound at tau and eps.
        decision_trials: trials of the held-out batch that compression decisions and exports rest on (drawn from
            its own key); None: ``max(1024, 4 * trials)`` (:attr:`decision_size`).
        finetune: how many models per task and size also get prune-and-fine-tune (:func:`schurjax.compress`,
            loss criterion) with its baselines (the first seeds); None: 1 for zoo studies, 0 for given models.
        finetune_steps: Adam steps per fine-tuning round. finetune_schedule: share of the couplings pruned per round.
    """

    tasks: tuple[str, ...] = DEFAULT_TASKS
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    sizes: tuple[int, ...] | None = None
    alpha: float = 1.0
    tau: float = 0.05
    eps: float = 0.01
    trials: int = 256
    bootstrap: int = 1000
    seed: int = 0
    control_kinds: tuple[str, ...] = tuple(CONTROL_KINDS)
    control_max: int = 256
    null_draws: int = 1000
    greedy_candidates: int = 128
    greedy_passes: int = 3
    restriction_max: int = 128
    replay_r2: float = 0.5
    bins: int = 4
    quick: bool = False
    control_draws: int = 4
    loss_sides: str = "one"
    worst_starts: int = 8
    worst_steps: int = 40
    radius_iters: int = 8
    rotations: int = 2
    coordinate_trials: int = 256
    margin: float | None = None
    decision_trials: int | None = None
    finetune: int | None = None
    finetune_steps: int = 100
    finetune_schedule: float = 0.05

    def __post_init__(self):
        def bad(arg: str, expected: str) -> InputError:
            return InputError("study", arg, f"must be {expected}, got {getattr(self, arg)!r}")

        for name in ("tasks", "control_kinds"):
            v = getattr(self, name)
            items = v.split(",") if isinstance(v, str) else list(v)
            items = [str(x).strip() for x in items if str(x).strip()]
            if not items:
                raise bad(name, "a non-empty list of names")
            object.__setattr__(self, name, tuple(dict.fromkeys(items)))
        for k in self.control_kinds:
            if k not in CONTROL_KINDS:
                raise InputError(
                    "study", "control_kinds", f"unknown kind {k!r}; expected some of {', '.join(CONTROL_KINDS)}"
                )
        object.__setattr__(self, "seeds", _ints(self.seeds, "seeds", 0))
        if self.sizes is not None:
            object.__setattr__(self, "sizes", _ints(self.sizes, "sizes", 1))
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not 0 < self.alpha <= 1:
            raise bad("alpha", "a number in (0, 1]")
        object.__setattr__(self, "alpha", float(self.alpha))
        for name in ("tau", "eps", "replay_r2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise bad(name, "a finite number >= 0")
            object.__setattr__(self, name, float(v))
        for name, lo, hi in (
            ("trials", 2, 100_000),
            ("bootstrap", 10, 100_000),
            ("seed", 0, SEED_MAX),
            ("control_max", 1, 1_000_000),
            ("null_draws", 10, 100_000),
            ("greedy_candidates", 1, 1_000_000),
            ("greedy_passes", 0, 1_000),
            ("restriction_max", 1, 1_000_000),
            ("bins", 2, 1_000),
            ("control_draws", 1, 1_000),
            ("worst_starts", 1, 10_000),
            ("worst_steps", 0, 100_000),
            ("radius_iters", 1, 100),
            ("rotations", 0, 1_000),
            ("coordinate_trials", 2, 100_000),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise bad(name, f"an int >= {lo}")
            if v > hi:
                raise bad(name, f"an int in [{lo}, {hi:,}]")
            object.__setattr__(self, name, int(v))
        object.__setattr__(self, "quick", bool(self.quick))
        if self.loss_sides not in LOSS_SIDES:
            raise bad("loss_sides", f"one of {', '.join(LOSS_SIDES)}")
        m = self.margin
        if m is not None:
            if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0 <= m < 1:
                raise bad("margin", "a number in [0, 1) or None")
            object.__setattr__(self, "margin", float(m))
        for name, lo in (("decision_trials", 2), ("finetune", 0)):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                    raise bad(name, f"an int >= {lo} or None")
                object.__setattr__(self, name, int(v))
        v = self.finetune_steps
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise bad("finetune_steps", "an int >= 0")
        object.__setattr__(self, "finetune_steps", int(v))
        f = self.finetune_schedule
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 < f <= 1:
            raise bad("finetune_schedule", "a share in (0, 1]")
        object.__setattr__(self, "finetune_schedule", float(f))

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able values (stored in the study's manifest and compared on resume). Settings left
        at None (chosen by a rule) are left out."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        for k in ("margin", "decision_trials", "finetune"):
            if d[k] is None:
                del d[k]
        if d["alpha"] == 1.0:  # the paper's zoo: not recorded, as before the leaky family existed
            del d["alpha"]
        return d

    def search_tol(self, criterion: str) -> float:
        """The threshold the compression search starts at for ``criterion`` (``"loss"`` or ``"score"``)."""
        return (self.tau if criterion == "loss" else self.eps) * (1.0 - (self.margin or 0.0))

    @property
    def decision_size(self) -> int:
        """Trials of the held-out decision batch: ``decision_trials``, or ``max(1024, 4 * trials)``."""
        return self.decision_trials if self.decision_trials is not None else max(1024, 4 * self.trials)


def _ints(v: Any, arg: str, lo: int) -> tuple[int, ...]:
    items = v.split(",") if isinstance(v, str) else (list(v) if isinstance(v, Sequence) else [v])
    out = []
    for x in items:
        try:
            i = int(str(x).strip()) if isinstance(x, str) else x
        except ValueError:
            i = None
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < lo:
            raise InputError("study", arg, f"must be ints >= {lo}, got {v!r}")
        out.append(int(i))
    if not out:
        raise InputError("study", arg, f"must name at least one int >= {lo}, got {v!r}")
    return tuple(dict.fromkeys(out))


QUICK: dict[str, Any] = {
    "seeds": (0, 1),
    "sizes": (64,),
    "trials": 128,
    "bootstrap": 200,
    "control_max": 64,
    "null_draws": 200,
    "greedy_candidates": 64,
    "greedy_passes": 2,
    "restriction_max": 64,
    "control_draws": 2,
    "worst_starts": 4,
    "worst_steps": 20,
    "radius_iters": 5,
    "rotations": 1,
    "coordinate_trials": 64,
    "finetune_steps": 50,
}
"""The ``quick=True`` preset (values given explicitly to :func:`schurjax.study` win over it)."""


def _crc(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def study_key(seed: int, purpose: str, *names: str):
    """The key of one draw of a study: ``fold_in`` of the root seed by purpose, then by each name.

    Example:
        >>> k = study_key(0, "heldout", "flipflop", '{"bits":3}')
    """
    import jax

    k = jax.random.fold_in(root_key(seed), _crc("schurjax.studies:" + purpose))
    for name in names:
        k = jax.random.fold_in(k, _crc(str(name)))
    return k


def keeps_loss(rel_delta_loss: np.ndarray, tau: float, sides: str = "one") -> np.ndarray:
    """The loss criterion: ``Δloss / loss <= tau`` (``sides="one"``, the default: lowering the loss keeps it) or
    ``|Δloss| / loss <= tau`` (``sides="two"``). NaN never keeps.

    Example:
        >>> keeps_loss(np.array([0.01, -0.2, np.nan]), 0.05).tolist()
        [True, True, False]
        >>> keeps_loss(np.array([0.01, -0.2, np.nan]), 0.05, sides="two").tolist()
        [True, False, False]
    """
    x = np.asarray(rel_delta_loss, np.float64)
    if sides not in LOSS_SIDES:
        raise InputError("keeps_loss", None, f"sides must be one of {LOSS_SIDES}, got {sides!r}")
    with np.errstate(invalid="ignore"):
        return (np.abs(x) if sides == "two" else x) <= tau


def keeps_score(score_drop: np.ndarray, eps: float) -> np.ndarray:
    """The score criterion: ``base score - score <= eps`` (NaN never keeps).

    Example:
        >>> keeps_score(np.array([0.0, 0.02, -0.01]), 0.01).tolist()
        [True, False, True]
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(score_drop, np.float64) <= eps


def off_distribution_batches(key: Any, task: Any, batch: Any) -> dict[str, Any]:
    """Batches of inputs off the task distribution, built from the held-out ``batch`` of ``task``.

    * ``"long"``: trials twice as long: the task rebuilt with twice its ``steps`` where it has such a parameter,
      otherwise the held-out trials followed by as many steps of zero input (free-running continuation);
    * ``"amplitude"``: the held-out inputs times 1.5;
    * ``"noise"``: white Gaussian noise with each input channel's variance on the task (over trials and steps).

    Targets and masks are zero where no target exists; the study compares outputs with the unablated network's
    own outputs on the same inputs, never with targets, on these batches.

    Args:
        key: ``jax.random.key(seed)``.
        task: the task.
        batch: its held-out batch (B, T, ...).

    Returns:
        ``{"long": TaskBatch, "amplitude": TaskBatch, "noise": TaskBatch}``.
    """
    import jax
    import jax.numpy as jnp

    from schurjax.tasks import TaskBatch, from_record

    k_long, k_noise = jax.random.split(key)
    x = np.asarray(batch.inputs, np.float32)
    B, T, _ = x.shape
    long = None
    params = dict(task.params())
    if isinstance(params.get("steps"), int):
        try:
            long = from_record(task.name, {**params, "steps": 2 * params["steps"]}).sample(k_long, B)
        except (ValueError, TypeError):
            long = None
    if long is None:
        pad = lambda a: np.concatenate([np.asarray(a, np.float32), np.zeros_like(a, np.float32)], axis=1)  # noqa: E731
        long = TaskBatch(jnp.asarray(pad(x)), jnp.asarray(pad(batch.targets)), jnp.asarray(pad(batch.mask)))
    amp = TaskBatch(jnp.asarray(1.5 * x), jnp.asarray(batch.targets), jnp.asarray(batch.mask))
    std = x.reshape(-1, x.shape[-1]).std(axis=0)
    noise = np.asarray(jax.random.normal(k_noise, x.shape, jnp.float32)) * std[None, None, :]
    zeros = jnp.zeros(np.shape(batch.targets), jnp.float32)
    return {"long": long, "amplitude": amp, "noise": TaskBatch(jnp.asarray(noise), zeros, zeros)}
