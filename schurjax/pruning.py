"""Prune-and-fine-tune in ordered real Schur coordinates, decided on held-out trials by a confidence bound.

:func:`compress` removes Schur couplings of a trained network (entries of ``T`` above the block diagonal, with
``W = Q T Q^T``) in rounds and fine-tunes what is left on the task:

0. **One-shot.** The longest prefix of the base network's importance order (below) whose removal passes the
   criterion on the validation batch (batched bisection), decided on the held-out batch by the bound (shrunk by
   bisection on the bound when it fails). The rounds start from this set, each removing the schedule's share of
   all couplings more; the one-shot prefixes at the same counts form the comparison curve.
1. **Prune.** Each round removes the kept couplings of smallest *single-removal importance* (the exact loss change,
   or for the score criterion the score drop then the loss change, of removing that coupling alone from the
   current network, on ``rank_trials`` trials of the selection batch) until the round's share of all couplings is
   removed. The first round ranks every coupling of the base network; later rounds re-rank the :data:`POOL` times
   as many least important kept couplings of the last ranking (at least :data:`POOL_MIN`) on the fine-tuned
   network. ``schedule`` is the share removed per round (a float) or the cumulative shares (a sequence).
2. **Fine-tune.** ``steps`` Adam steps (optax) on fresh trials of the task, with ``Q`` fixed and masked updates of
   ``T``: removed couplings stay exactly zero; the block diagonal (the spectrum) is frozen (``spectrum="frozen"``,
   the paper's setting: ``W`` keeps its eigenvalues) or free; the input and readout maps (``W_in``, ``b``,
   ``W_out``, ``b_out``, ``h0``) frozen (default) or free. The rollout is the model's own (every ``RateRNN`` form).
   A round keeps the fine-tuned parameters only if they lower the loss on the validation batch (else the pruned
   network goes on unchanged), so fine-tuning never makes a round worse on that batch.
3. **Stop** at the first round whose set fails the criterion on the *validation* batch (point figures).
4. **Decide** on a third, larger *held-out* batch (``decision_trials >= 1024`` by default): the last round that
   passed validation is accepted if the one-sided upper confidence bound (bootstrap over trials, ``level``) of
   its relative loss change is within ``tol`` (loss criterion: ``Δloss / loss <= tau``), or the upper bound of its
   score drop is within ``tol`` (score criterion: the lower bound of the score within ``eps`` of the base score);
   otherwise the previous rounds are tried in turn (putting back the couplings removed last, the most important
   ones); when none holds nothing is accepted.

The same decision is made for the one-shot compression (the prefixes of the base network's importance order,
not fine-tuned) so that the curve compares both, and for baselines: magnitude pruning of ``W``'s entries (one-shot
and with the same fine-tuning, at the same counts), random couplings, and low-rank truncation of ``W``, at the
count and at the ``||ΔW||_F`` of the accepted Schur set.

The three batches are drawn from distinct keys split from ``key`` (recorded in the result's metadata); fine-tuning
draws its trials from a fourth.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from schurjax._seeds import key_words
from schurjax.errors import InputError

__all__ = [
    "compress",
    "CompressResult",
    "Figures",
    "decision_figures",
    "magnitude_mask",
    "random_couplings",
    "low_rank",
    "low_rank_for_norm",
    "export_model",
    "write_folder",
    "LEVEL",
]

LEVEL = 0.95
"""One-sided confidence level of the decision bound."""
POOL, POOL_MIN = 4, 128
"""A fine-tuning round re-ranks the ``max(POOL * k, POOL_MIN)`` least important kept couplings of the last ranking
(``k``: the couplings it removes) by their exact single-removal importance on the fine-tuned network."""


# --------------------------------------------------------------------------------------------- evaluation
@dataclasses.dataclass(frozen=True)
class Figures:
    """Per-trial figures of one network on one batch (host, float64).

    Attributes:
        loss: (B,) per-trial loss (``task.loss`` of each trial alone).
        parts: (B, p) per-trial score parts (:mod:`schurjax.studies.scoring`), or None.
        score: the task score on the whole batch (``task.score``).
    """

    loss: np.ndarray
    parts: np.ndarray | None
    score: float


def _score_parts(task: Any) -> Any:
    from schurjax.studies.scoring import score_parts

    return score_parts(task)


@eqx.filter_jit
def _figures_jit(model: Any, batch: Any, task: Any) -> Any:
    parts = _score_parts(task)
    y = jax.vmap(model)(batch.inputs)

    def one(yb, bb):
        return task.loss(yb[None], jax.tree.map(lambda a: a[None], bb))

    loss = jax.vmap(one)(y, batch)
    p = None if parts is None else parts.parts(y, batch)
    return loss, p, task.score(y, batch)


class _Evaluator:
    """Figures of any model on fixed batches (one compiled program per model structure and batch shape)."""

    def __init__(self, task: Any):
        self.task = task
        self.parts = _score_parts(task)

    def __call__(self, model: Any, batch: Any) -> Figures:
        loss, p, score = _figures_jit(model, batch, self.task)
        return Figures(
            np.asarray(loss, np.float64), None if p is None else np.asarray(p, np.float64), float(np.asarray(score))
        )


def decision_figures(
    base: Figures, new: Figures, counts: np.ndarray, *, criterion: str, tol: float, level: float = LEVEL, parts=None
) -> dict[str, Any]:
    """Relative loss change and score drop of ``new`` against ``base`` on the same trials, with one-sided bounds.

    Args:
        base, new: :class:`Figures` of the base and the edited network on the same batch.
        counts: (R, B) bootstrap trial multiplicities (:func:`schurjax.studies.stats.bootstrap_counts`).
        criterion: ``"loss"`` (holds when ``rel_ucb <= tol``) or ``"score"`` (holds when ``drop_ucb <= tol``).
        tol: tau or eps.
        level: one-sided level (the bound is the ``level`` quantile of the replicates).
        parts: the task's :class:`ScoreParts` (for the score replicates), or None (then the score bound is NaN and
            the score criterion never holds).

    Returns:
        ``rel``, ``rel_ucb``, ``rel_lo``/``rel_hi`` (two-sided interval at ``level``), ``loss``, ``base_loss``,
        ``loss_ratio``, ``score``, ``base_score``, ``drop``, ``drop_ucb``, ``score_lcb``, ``trials``,
        ``resamples``, ``level``, ``holds``.
    """
    l0, l1 = base.loss, new.loss
    rel = float((l1.sum() - l0.sum()) / l0.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_r = (counts @ (l1 - l0)) / (counts @ l0)
    a = 100 * (1 - level) / 2
    out: dict[str, Any] = {
        "rel": rel,
        "rel_ucb": float(np.nanquantile(rel_r, level)),
        "rel_lo": float(np.nanpercentile(rel_r, a)),
        "rel_hi": float(np.nanpercentile(rel_r, 100 - a)),
        "loss": float(l1.mean()),
        "base_loss": float(l0.mean()),
        "loss_ratio": float(l1.sum() / l0.sum()),
        "score": float(new.score),
        "base_score": float(base.score),
        "drop": float(base.score - new.score),
        "drop_ucb": math.nan,
        "score_lcb": math.nan,
        "trials": int(counts.shape[1]),
        "resamples": int(counts.shape[0]),
        "level": float(level),
    }
    if parts is not None and base.parts is not None and new.parts is not None:
        drop_r = parts.combine(counts @ base.parts) - parts.combine(counts @ new.parts)
        out["drop_ucb"] = float(np.nanquantile(drop_r, level))
        out["score_lcb"] = out["base_score"] - out["drop_ucb"]
    out["holds"] = bool(out["rel_ucb"] <= tol) if criterion == "loss" else bool(out["drop_ucb"] <= tol)
    return out


def _val_passes(base: Figures, new: Figures, criterion: str, tol: float) -> tuple[bool, float]:
    if criterion == "loss":
        x = float((new.loss.sum() - base.loss.sum()) / base.loss.sum())
    else:
        x = float(base.score - new.score)
    return bool(x <= tol), x


# ------------------------------------------------------------------------------------------------ baselines
def magnitude_mask(W: Any, *, count: int | None = None, norm: float | None = None) -> np.ndarray:
    """0/1 mask zeroing the smallest-magnitude entries of ``W``: exactly ``count`` of them, or as many as fit in
    removed Frobenius norm ``<= norm`` (smallest first). Ties by position (row-major).

    Example:
        >>> magnitude_mask(np.array([[3.0, -1.0], [0.5, 2.0]]), count=2).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    W = np.asarray(W, np.float64)
    flat = np.abs(W).ravel()
    order = np.lexsort((np.arange(flat.size), flat))
    if (count is None) == (norm is None):
        raise InputError("magnitude_mask", None, "give exactly one of count and norm")
    if count is None:
        k = int(np.searchsorted(np.cumsum(flat[order] ** 2), float(norm) ** 2 * (1 + 1e-12), side="right"))
    else:
        k = int(count)
    if not 0 <= k <= flat.size:
        raise InputError("magnitude_mask", None, f"count must lie in [0, {flat.size}], got {count!r}")
    m = np.ones(flat.size)
    m[order[:k]] = 0.0
    return m.reshape(W.shape)


def random_couplings(key: Any, sf: Any, *, count: int | None = None, norm: float | None = None) -> np.ndarray:
    """(k, 2) couplings of ``sf`` drawn at random: ``count`` of them, or, in a random order, as many as fit in removed
    norm ``||T ⊙ R||_F <= norm``.

    Example::

        rc = random_couplings(jax.random.key(0), sf, count=10)
    """
    from schurjax.studies.stats import _rng

    c = np.asarray(sf.couplings, np.int64)
    perm = _rng(key).permutation(len(c))
    if (count is None) == (norm is None):
        raise InputError("random_couplings", None, "give exactly one of count and norm")
    if count is None:
        sq = np.asarray(sf.T, np.float64)[c[perm, 0], c[perm, 1]] ** 2
        k = int(np.searchsorted(np.cumsum(sq), float(norm) ** 2 * (1 + 1e-12), side="right"))
    else:
        k = int(count)
    if not 0 <= k <= len(c):
        raise InputError("random_couplings", None, f"count must lie in [0, {len(c)}], got {count!r}")
    return c[perm[:k]]


def low_rank(W: Any, rank: int) -> np.ndarray:
    """``W`` truncated to its ``rank`` largest singular values (float64).

    Example:
        >>> bool(np.allclose(low_rank(np.eye(3), 3), np.eye(3)))
        True
    """
    U, s, Vt = np.linalg.svd(np.asarray(W, np.float64))
    r = int(rank)
    return (U[:, :r] * s[:r]) @ Vt[:r]


def low_rank_for_norm(W: Any, norm: float) -> tuple[int, np.ndarray]:
    """The lowest rank ``r`` whose truncation changes ``W`` by ``||ΔW||_F <= norm``, and that truncation."""
    s = np.linalg.svd(np.asarray(W, np.float64), compute_uv=False)
    tail = np.sqrt(np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]]))  # tail[r] = ||W - W_r||_F
    r = int(np.nonzero(tail <= float(norm) * (1 + 1e-12))[0][0])
    return r, low_rank(W, r)


# ----------------------------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class CompressResult:
    """What :func:`compress` found.

    Attributes:
        model: the accepted compressed network (None when nothing could be removed with the bound holding).
        removed: (p, 2) the removed couplings ``(i, j)`` of ``T`` (the accepted set; empty when none).
        decision: held-out figures of the accepted set (:func:`decision_figures`), or of the candidate that failed.
        one_shot: the same for the best one-shot set.
        curve: one row per (method, round): ``method`` (``"fine-tuned"``, ``"one-shot"``, ``"magnitude"``,
            ``"magnitude-ft"``), ``removed``, ``share``, ``val`` (validation figure), ``val_passes``, and the
            held-out ``rel``, ``rel_ucb``, ``score``, ``drop``, ``drop_ucb``, ``holds``.
        baselines: one row per baseline at the accepted set's count / norm (``method``, ``match``, ``removed``,
            ``delta_norm``, held-out figures).
        settings: the settings and keys (JSON-able).
        base_model: the network compressed.
        T: (n, n) float32 the accepted network's ``T`` (``W = Q T Q^T``, ``Q`` of the base network's Schur form),
            or None.
    """

    model: Any
    removed: np.ndarray
    decision: dict[str, Any]
    one_shot: dict[str, Any]
    curve: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    settings: dict[str, Any]
    base_model: Any
    T: np.ndarray | None = None

    @property
    def accepted(self) -> bool:
        return self.model is not None

    def metadata(self) -> dict[str, Any]:
        """What an exported file carries: criterion, held-out figures with their bound, trials, keys, removed set."""
        d = self.decision
        return {
            "compression": {
                "method": "prune-and-fine-tune in ordered real Schur coordinates (schurjax.compress)",
                "criterion": self.settings["criterion"],
                "tol": self.settings["tol"],
                "rule": (
                    "accepted when the one-sided upper bound of dloss/loss <= tol"
                    if self.settings["criterion"] == "loss"
                    else "accepted when the one-sided lower bound of the score >= base score - tol"
                ),
                "heldout": d,
                "loss_ratio": d.get("loss_ratio"),
                "trials": d.get("trials"),
                "keys": self.settings["keys"],
                "settings": {k: v for k, v in self.settings.items() if k != "keys"},
                "removed_count": int(len(self.removed)),
            },
            "removed_couplings": np.asarray(self.removed, np.int64).tolist(),
        }


def _key_words(key: Any) -> list[int]:
    return list(key_words("compress", key))


def export_model(path: str | Path, model: Any, metadata: dict[str, Any]) -> dict[str, str]:
    """Write ``model`` with ``metadata``: ``.eqx`` (+ ``.json``) by :func:`schurjax.save_model` (every form), and
    ``.pt`` where torch is installed: ``{"rnn": state dict, "readout": state dict, "metadata": JSON}`` for the paper's
    tanh RNN (``nn.RNN`` + ``nn.Linear``), ``{"model": state dict, "metadata": JSON}`` of
    :func:`schurjax.store.torch_io.to_torch`'s module for the other forms.

    Returns:
        kind -> path written (``"eqx"``, ``"pt"``), and ``"torch"``: why no ``.pt`` when there is none.
    """
    import json

    from schurjax.rnn import TanhRNN
    from schurjax.store._json import finite_or_none
    from schurjax.store.checkpoint import save_model

    path = Path(path).with_suffix(".eqx")
    plain = model.alpha == 1.0 and model.nonlinearity == "tanh" and model.form == "rate" and model.h0 is None
    m = (
        TanhRNN.from_arrays(model.W_in, model.W_rec, model.b, model.W_out, model.b_out)
        if plain and not isinstance(model, TanhRNN)
        else model
    )
    meta = finite_or_none(metadata)
    out: dict[str, str] = {"eqx": str(save_model(path, m, meta))}
    try:
        import torch
    except ImportError:
        out["torch"] = "not written: torch is not installed"
        return out
    from schurjax.store import _safe_io

    pt = path.with_suffix(".pt")
    exported = m.to_torch()
    if isinstance(exported, tuple):
        rnn, lin = exported
        obj = {"rnn": rnn.state_dict(), "readout": lin.state_dict(), "metadata": json.dumps(meta)}
    else:
        obj = {"model": exported.state_dict(), "metadata": json.dumps(meta)}
    # atomic, and a link at the target is replaced, never written through
    _safe_io.write_with(pt.parent, pt.name, lambda f: torch.save(obj, f), where="export")
    out["pt"] = str(pt)
    return out


# ---------------------------------------------------------------------------------------------- the search
def _shares(schedule: Any) -> np.ndarray:
    if isinstance(schedule, int | float) and not isinstance(schedule, bool):
        f = float(schedule)
        if not 0 < f <= 1:
            raise InputError("compress", "schedule", f"a share per round must lie in (0, 1], got {schedule!r}")
        return np.minimum(np.arange(1, math.ceil(1 / f - 1e-9) + 1) * f, 1.0)
    s = np.asarray(list(schedule), np.float64)
    if s.ndim != 1 or not s.size or np.any(np.diff(s) <= 0) or s[0] <= 0 or s[-1] > 1:
        raise InputError("compress", "schedule", f"cumulative shares must increase within (0, 1], got {schedule!r}")
    return s


def _build(model: Any, Q: Any, p: dict[str, Any]) -> Any:
    """The network of parameters ``p``: ``W = Q T Q^T`` (``p["T"]``) or ``p["W"]``, and the trained maps."""
    W = jnp.matmul(jnp.matmul(Q, p["T"], precision="highest"), Q.T, precision="highest") if "T" in p else p["W"]
    m = eqx.tree_at(lambda mm: mm.W_rec, model, W)
    for k, v in p.get("maps", {}).items():
        m = eqx.tree_at(lambda mm, k=k: getattr(mm, k), m, v)
    return m


@eqx.filter_jit
def _removals_jit(model: Any, Q: Any, T: Any, ij: Any, batch: Any, task: Any) -> Any:
    parts = _score_parts(task)

    def one(c):
        m = _build(model, Q, {"T": T.at[c[0], c[1]].set(0.0)})
        y = jax.vmap(m)(batch.inputs)
        p = jnp.zeros((1,)) if parts is None else parts.parts(y, batch).sum(0)
        return task.loss(y, batch), p

    m0 = _build(model, Q, {"T": T})
    y0 = jax.vmap(m0)(batch.inputs)
    return jax.lax.map(one, ij), task.loss(y0, batch), task.score(y0, batch)


def _importance(model: Any, sf_Q: np.ndarray, T: np.ndarray, cand: np.ndarray, batch: Any, task: Any, crit: str):
    """(len(cand),) sort key of single removals of ``cand`` from the network ``Q T Q^T`` (smaller: remove first)."""
    parts = _score_parts(task)
    Q = jnp.asarray(sf_Q, jnp.float32)
    T = jnp.asarray(T, jnp.float32)
    size = 64
    losses, drops = [], []
    l0 = s0 = 0.0
    for a in range(0, len(cand), size):
        ij = np.asarray(cand[a : a + size], np.int32)
        pad = size - len(ij)
        ij = np.concatenate([ij, np.repeat(ij[:1], pad, 0)]) if pad else ij
        (lk, pk), l0, s0 = _removals_jit(model, Q, T, jnp.asarray(ij), batch, task)
        lk, pk, l0, s0 = np.asarray(lk, np.float64), np.asarray(pk, np.float64), float(l0), float(s0)
        n = size - pad
        losses.append(lk[:n])
        drops.append(s0 - parts.combine(pk[:n]) if parts is not None else np.zeros(n))
    rel = (np.concatenate(losses) - l0) / l0
    drop = np.concatenate(drops)
    return np.lexsort((np.arange(len(cand)), rel)) if crit == "loss" else np.lexsort((np.arange(len(cand)), rel, drop))


@eqx.filter_jit
def _step_jit(model: Any, Q: Any, params: Any, support: Any, state: Any, batch: Any, task: Any, lr: float) -> Any:
    import optax

    opt = optax.adam(lr)

    def loss_fn(p):
        return task.loss(jax.vmap(_build(model, Q, p))(batch.inputs), batch)

    g = jax.grad(loss_fn)(params)
    g = jax.tree.map(lambda a, s: a * s, g, support)
    upd, state = opt.update(g, state, params)
    upd = jax.tree.map(lambda a, s: a * s, upd, support)  # exact zeros where nothing may move
    return optax.apply_updates(params, upd), state


def _finetune(model, Q, params, support, task, key, *, steps: int, lr: float, batch_size: int):
    """``steps`` Adam steps of ``task.loss`` on fresh trials; updates multiplied by ``support`` (1: trained)."""
    import optax

    if steps <= 0:
        return params
    state = optax.adam(lr).init(params)
    for k in jax.random.split(key, steps):
        params, state = _step_jit(model, Q, params, support, state, task.sample(k, batch_size), task, float(lr))
    return params


def compress(
    model: Any,
    task: Any,
    *,
    key: Any,
    criterion: str = "loss",
    tol: float | None = None,
    schedule: float | Sequence[float] = 0.05,
    spectrum: str = "frozen",
    maps: str = "frozen",
    steps: int = 100,
    lr: float = 3e-4,
    batch_size: int = 64,
    trials: int = 256,
    decision_trials: int = 1024,
    rank_trials: int = 64,
    bootstrap: int = 1000,
    level: float = LEVEL,
    baselines: bool = True,
    magnitude_finetune: bool = True,
    order: Any = None,
    start: str = "one-shot",
    initial: Any = None,
) -> CompressResult:
    """Prune Schur couplings and fine-tune in rounds; accept on held-out trials by a confidence bound.

    Args:
        model: a trained ``RateRNN`` (any form; ``TanhRNN`` included).
        task: its task (``task.sample``, ``task.loss``, ``task.score``).
        key: ``jax.random.key(seed)``; split into the selection, validation, held-out and training keys.
        criterion: ``"loss"`` (``Δloss / loss <= tol``, default tol 0.05) or ``"score"`` (score drop ``<= tol``,
            default 0.01).
        tol: the criterion's threshold (tau or eps).
        schedule: share of all couplings removed per round (float), or the cumulative shares (increasing sequence),
            counted from the one-shot set.
        spectrum: ``"frozen"`` (the block diagonal of ``T`` is fixed: the eigenvalues are kept) or ``"free"``.
        maps: ``"frozen"`` (``W_in``, ``b``, ``W_out``, ``b_out``, ``h0`` fixed: the paper's setting) or ``"free"``.
        steps: Adam steps of fine-tuning per round (0: prune only). lr: its learning rate.
        batch_size: fresh trials per fine-tuning step.
        trials: trials in each of the selection and validation batches.
        decision_trials: trials in the held-out batch the decision rests on.
        rank_trials: trials of the selection batch used for the single-removal importance.
        bootstrap: resamples of the held-out trials. level: one-sided level of the bound.
        baselines: also compute the baselines (magnitude, random couplings, low rank) at the accepted set's size.
        magnitude_finetune: also run magnitude pruning of ``W``'s entries with the same schedule and fine-tuning.
        order: the Schur form's block order (:func:`schurjax.ordered_schur`); None: the model's own
            (:func:`schurjax.schur.order_for`: ``"modulus"``, or the per-step decay for a leaky network).
        start: ``"one-shot"`` (the rounds start from the one-shot set) or ``"none"`` (from the base network; the
            schedule's shares are then of all couplings from zero, and there is no one-shot set or baselines).
        initial: (p, 2) a one-shot set found elsewhere (e.g. the study's compression search): it replaces the
            bisection of step 0 and is decided (and shrunk) on the held-out batch the same way.

    Returns:
        :class:`CompressResult`; ``result.model`` is None when no round holds.

    Example::

        res = sj.compress(sj.zoo.load("flipflop", seed=0), sj.tasks.get("flipflop"), key=jax.random.key(0))
        res.decision["rel_ucb"], len(res.removed)
    """
    from schurjax.schur import order_for, ordered_schur
    from schurjax.studies import stats

    if criterion not in ("loss", "score"):
        raise InputError("compress", "criterion", f"must be 'loss' or 'score', got {criterion!r}")
    if start not in ("one-shot", "none"):
        raise InputError("compress", "start", f"must be 'one-shot' or 'none', got {start!r}")
    for arg, v in (("spectrum", spectrum), ("maps", maps)):
        if v not in ("frozen", "free"):
            raise InputError("compress", arg, f"must be 'frozen' or 'free', got {v!r}")
    tol = (0.05 if criterion == "loss" else 0.01) if tol is None else float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise InputError("compress", "tol", f"must be a finite number >= 0, got {tol!r}")
    for arg, v, lo in (
        ("steps", steps, 0),
        ("batch_size", batch_size, 1),
        ("trials", trials, 2),
        ("decision_trials", decision_trials, 2),
        ("rank_trials", rank_trials, 1),
        ("bootstrap", bootstrap, 10),
    ):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise InputError("compress", arg, f"must be an int >= {lo}, got {v!r}")
    shares = _shares(schedule)
    parts = _score_parts(task)
    if criterion == "score" and parts is None:
        raise InputError("compress", "criterion", f"task {task.name!r} has no score parts for a bound on its score")

    k_sel, k_val, k_dec, k_train, k_boot, k_rand = jax.random.split(key, 6)
    sel, val, dec = task.sample(k_sel, trials), task.sample(k_val, trials), task.sample(k_dec, decision_trials)
    rank_batch = jax.tree.map(lambda a: a[:rank_trials], sel)
    counts = stats.bootstrap_counts(k_boot, int(decision_trials), int(bootstrap))
    ev = _Evaluator(task)
    base_val, base_dec = ev(model, val), ev(model, dec)

    sf = ordered_schur(np.asarray(model.W_rec, np.float64), order=order_for(model) if order is None else order)
    n, Q, T0 = sf.n, np.asarray(sf.Q), np.asarray(sf.T, np.float64)
    coup = np.asarray(sf.couplings, np.int64)
    m_all = len(coup)
    diag = np.zeros((n, n))
    for s, size in sf.blocks:
        diag[s : s + size, s : s + size] = 1.0
    Qj = jnp.asarray(Q, jnp.float32)
    map_names = [k for k in ("W_in", "b", "W_out", "b_out", "h0") if getattr(model, k, None) is not None]

    def build_schur(p):
        return _build(model, Qj, p)

    W_base = np.asarray(model.W_rec, np.float64)

    def keep_better(before, after, build):
        """The fine-tuned parameters if they lower the validation loss, else the pruned ones (and which)."""
        if after is before:
            return before, False
        better = ev(build(after), val).loss.sum() <= ev(build(before), val).loss.sum()
        return (after, True) if better else (before, False)

    def decide(mdl):
        return decision_figures(base_dec, ev(mdl, dec), counts, criterion=criterion, tol=tol, level=level, parts=parts)

    def row(method, removed, mdl, extra=None):
        passes, v = _val_passes(base_val, ev(mdl, val), criterion, tol)
        d = decide(mdl)
        return {
            "method": method,
            "removed": int(removed),
            "share": removed / max(m_all, 1),
            "val": v,
            "val_passes": passes,
            **{k: d[k] for k in ("rel", "rel_ucb", "score", "drop", "drop_ucb", "holds")},
            "delta_norm": float(np.linalg.norm(np.asarray(mdl.W_rec, np.float64) - W_base)),
            "decision": d,
            **(extra or {}),
        }

    def export_W(T):
        return sf.reconstruct(T)

    curve: list[dict[str, Any]] = []
    # ---- one-shot: the longest prefix of the base network's importance order that passes validation (batched
    # bisection), decided on the held-out batch (shrunk by bisection on the bound when it fails)
    from schurjax.studies.compression import longest_prefix

    rank0 = _importance(model, Q, T0, coup, rank_batch, task, criterion) if m_all else np.zeros(0, np.int64)
    if initial is not None:  # the given set first (in the importance order), then the other couplings
        where = {(int(i), int(j)): a for a, (i, j) in enumerate(coup)}
        first = np.zeros(m_all, bool)
        for i, j in np.asarray(initial, np.int64).reshape(-1, 2):
            if (int(i), int(j)) not in where:
                raise InputError("compress", "initial", f"({i}, {j}) is not a coupling of the model's Schur form")
            first[where[(int(i), int(j))]] = True
        rank0 = np.concatenate([rank0[first[rank0]], rank0[~first[rank0]]])
    order0 = coup[rank0]

    def prefix_model(k):
        Tk = T0.copy()
        Tk[order0[:k, 0], order0[:k, 1]] = 0.0
        return model.with_recurrent(export_W(Tk))

    def val_ok(_o, ks):
        return np.array([_val_passes(base_val, ev(prefix_model(int(k)), val), criterion, tol)[0] for k in ks])

    def bound_ok(_o, ks):
        return np.array([decide(prefix_model(int(k)))["holds"] for k in ks])

    if initial is not None:
        k_pass = int(np.asarray(initial).reshape(-1, 2).shape[0])
    else:
        k_pass = longest_prefix(val_ok, order0, 0, m_all)[0] if m_all and start == "one-shot" else 0
    k_os = (
        k_pass
        if k_pass and bound_ok(None, [k_pass])[0]
        else (longest_prefix(bound_ok, order0, 0, k_pass - 1)[0] if k_pass > 1 else 0)
    )
    one_best = row("one-shot", k_os, prefix_model(k_os), {"search": True}) if k_os else None
    if one_best is not None:
        curve.append(one_best)
    oneshot_models = {int(k_os): (None, order0[:k_os])}
    # the rounds: from the one-shot set, then the schedule's share of all couplings more per round
    targets = np.unique(np.minimum(k_os + np.round(shares * m_all).astype(np.int64), m_all))
    targets = np.unique(np.concatenate([[k_os] if k_os else [], targets])).astype(np.int64)
    targets = targets[targets > 0]
    for k in targets:  # one-shot at the rounds' counts, for the curve
        if k == k_os:
            continue
        r = row("one-shot", k, prefix_model(int(k)))
        curve.append(r)
        if not r["val_passes"]:
            break

    # ---- fine-tuned: prune by the current importance, fine-tune with masked updates
    keep = np.ones(m_all, bool)
    T = jnp.asarray(T0, jnp.float32)
    params: dict[str, Any] = {"T": T}
    if maps == "free":
        params["maps"] = {k: getattr(model, k) for k in map_names}
    ft_states = {}
    removed_order: list[np.ndarray] = []
    keys = jax.random.split(k_train, max(len(targets), 1))
    prev = np.asarray(rank0, np.int64)  # coupling indices, least important first (the last ranking)
    for r_i, k in enumerate(targets):
        need = int(k) - int((~keep).sum())
        if need > 0:
            kept_sorted = prev[keep[prev]]
            if r_i == 0:  # the base network: its ranking is the one-shot one (the one-shot set when there is one)
                drop_idx = kept_sorted[:need]
            else:  # re-rank the least important of the last ranking on the fine-tuned network
                pool = kept_sorted[: min(len(kept_sorted), max(POOL * need, POOL_MIN))]
                Tnow = np.asarray(params["T"], np.float64)
                rank = _importance(build_schur(params), Q, Tnow, coup[pool], rank_batch, task, criterion)
                drop_idx = pool[rank[:need]]
                prev = np.concatenate([pool[rank], kept_sorted[len(pool) :]])
            keep[drop_idx] = False
            removed_order.append(coup[drop_idx])
            params["T"] = params["T"].at[coup[drop_idx, 0], coup[drop_idx, 1]].set(0.0)
        support_T = np.zeros((n, n))
        support_T[coup[keep, 0], coup[keep, 1]] = 1.0
        if spectrum == "free":
            support_T = support_T + diag
        support = {"T": jnp.asarray(support_T, jnp.float32)}
        if "maps" in params:
            support["maps"] = {kk: jnp.ones_like(v) for kk, v in params["maps"].items()}
        tuned = _finetune(model, Qj, params, support, task, keys[r_i], steps=steps, lr=lr, batch_size=batch_size)
        params, improved = keep_better(params, tuned, build_schur)
        mk = build_schur(params).with_recurrent(export_W(params["T"]))
        r = row("fine-tuned", k, mk, {"tuned": improved})
        curve.append(r)
        ft_states[int(k)] = (mk, coup[~keep].copy(), np.array(params["T"]))
        if not r["val_passes"]:
            break
    ft_rows = [r for r in curve if r["method"] == "fine-tuned"]
    ft_best = _pick(ft_rows)

    # ---- magnitude pruning of W's entries with the same fine-tuning, at the same counts
    if magnitude_finetune:
        Wp = {"W": jnp.asarray(model.W_rec, jnp.float32)}
        if maps == "free":
            Wp["maps"] = {k: getattr(model, k) for k in map_names}
        keepW = np.ones((n, n))

        def build_W(p):
            return _build(model, None, p)

        keysW = jax.random.split(jax.random.fold_in(k_train, 1), max(len(targets), 1))
        for r_i, k in enumerate(targets):
            Wnow = np.asarray(Wp["W"], np.float64)
            masked = np.where(keepW > 0, np.abs(Wnow), np.inf).ravel()
            need = int(k) - int((keepW == 0).sum())
            if need > 0:
                idx = np.lexsort((np.arange(masked.size), masked))[:need]
                keepW.ravel()[idx] = 0.0
                Wp["W"] = Wp["W"] * jnp.asarray(keepW, jnp.float32)
            sup = {"W": jnp.asarray(keepW, jnp.float32)}
            if "maps" in Wp:
                sup["maps"] = {kk: jnp.ones_like(v) for kk, v in Wp["maps"].items()}
            tunedW = _finetune(model, None, Wp, sup, task, keysW[r_i], steps=steps, lr=lr, batch_size=batch_size)
            Wp, improved = keep_better(Wp, tunedW, build_W)
            r = row("magnitude-ft", k, build_W(Wp), {"tuned": improved})
            curve.append(r)
            if not r["val_passes"]:
                break
        for k in targets:
            r = row(
                "magnitude", k, model.with_recurrent(np.asarray(model.W_rec) * magnitude_mask(model.W_rec, count=k))
            )
            curve.append(r)
            if not r["val_passes"]:
                break

    accepted = ft_best is not None
    T_acc = None
    if accepted:
        mk, removed, T_acc = ft_states[ft_best["removed"]]
        decision = ft_best["decision"]
    else:
        mk, removed = None, np.zeros((0, 2), np.int64)
        decision = ft_rows[-1]["decision"] if ft_rows else {}
    one_shot = one_best["decision"] if one_best is not None else {}

    base_rows: list[dict[str, Any]] = []
    if baselines:
        if one_best is not None:
            k = one_best["removed"]
            r_set = oneshot_models[k][1]
            nu = float(np.linalg.norm(T0[r_set[:, 0], r_set[:, 1]]))
            base_rows = _baselines(model, sf, k, nu, k_rand, row)
    settings = {
        "criterion": criterion,
        "tol": tol,
        "schedule": [float(s) for s in shares],
        "spectrum": spectrum,
        "maps": maps,
        "steps": int(steps),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "trials": int(trials),
        "decision_trials": int(decision_trials),
        "rank_trials": int(rank_trials),
        "bootstrap": int(bootstrap),
        "level": float(level),
        "couplings": int(m_all),
        "schur": {"order": sf.order, "fingerprint": sf.fingerprint},
        "keys": {
            "root": _key_words(key),
            "split": "jax.random.split(key, 6): selection, validation, heldout, training, bootstrap, random",
            "selection": _key_words(k_sel),
            "validation": _key_words(k_val),
            "heldout": _key_words(k_dec),
            "training": _key_words(k_train),
            "bootstrap": _key_words(k_boot),
        },
    }
    return CompressResult(
        model=mk,
        removed=np.asarray(removed, np.int64).reshape(-1, 2),
        decision=decision,
        one_shot=one_shot,
        curve=curve,
        baselines=base_rows,
        settings=settings,
        base_model=model,
        T=T_acc,
    )


def _pick(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The decision: the last row that passed validation, else the previous ones in turn, the first that holds."""
    passed = [r for r in rows if r["val_passes"]]
    for r in reversed(passed):
        if r["holds"]:
            return r
    return None


def _baselines(model: Any, sf: Any, k: int, nu: float, key: Any, row: Any) -> list[dict[str, Any]]:
    """Magnitude pruning, random couplings and low rank at ``k`` removed entries and at removed norm ``nu``."""
    import jax

    W = np.asarray(model.W_rec, np.float64)
    n = W.shape[0]
    out = []

    def add(method, match, removed, Wk):
        r = row(method, removed, model.with_recurrent(Wk), {"match": match})
        r["delta_norm"] = float(np.linalg.norm(Wk - W))
        out.append(r)

    add("magnitude", "count", k, W * magnitude_mask(W, count=k))
    mm = magnitude_mask(W, norm=nu)
    add("magnitude", "norm", int((mm == 0).sum()), W * mm)
    for match in ("count", "norm"):
        rc = random_couplings(
            jax.random.fold_in(key, 0 if match == "count" else 1), sf, **{match: k if match == "count" else nu}
        )
        T = np.array(sf.T, np.float64)
        T[rc[:, 0], rc[:, 1]] = 0.0
        add("random couplings", match, len(rc), sf.Q @ T @ sf.Q.T)
    # rank-r factors hold 2nr numbers: "removed" counts the numbers saved, n² - 2nr (0 when r >= n/2)
    r_cnt = max(0, min(n, int(np.ceil((n * n - k) / (2 * n)))))
    add("low rank", "count", max(0, n * n - 2 * n * r_cnt), low_rank(W, r_cnt))
    out[-1]["rank"] = r_cnt
    r_nrm, Wr = low_rank_for_norm(W, nu)
    add("low rank", "norm", max(0, n * n - 2 * n * r_nrm), Wr)
    out[-1]["rank"] = r_nrm
    return out


def write_folder(out: str | Path, res: CompressResult, spec: Any, *, command: Sequence[str] = ()) -> dict[str, str]:
    """Write a :func:`compress` result: ``<id>-<criterion>.eqx`` (+ ``.json``, ``.pt``) only when accepted,
    ``result.json`` (decision, one-shot, curve, baselines, settings), ``curve.csv``, ``baselines.csv`` and
    ``report.md``.

    Returns:
        ``report``, ``result`` and, when exported, ``model`` paths.
    """
    import json

    import pandas as pd

    from schurjax.models import model_fingerprint, task_params
    from schurjax.store import _safe_io
    from schurjax.store._json import finite_or_none

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crit = res.settings["criterion"]
    written: dict[str, str] = {}
    base_meta = {
        "task": {"name": spec.task.name, "params": task_params(spec.task)},
        "base_model": {
            "id": spec.id,
            "source": spec.source,
            "n_hidden": int(spec.model.n_hidden),
            "weights_sha256": model_fingerprint(spec.model),
        },
        "command": list(command),
    }
    stale = out / f"{spec.id}-{crit}.eqx"
    for suffix in (".eqx", ".json", ".pt", ".npz"):
        stale.with_suffix(suffix).unlink(missing_ok=True)  # a rerun never leaves an older export beside a failure
    if res.accepted:
        files = export_model(out / f"{spec.id}-{crit}.eqx", res.model, {**base_meta, **res.metadata()})
        written["model"] = files["eqx"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "decision"} for r in rows]  # noqa: E731
    doc = {
        **base_meta,
        "accepted": res.accepted,
        "removed": np.asarray(res.removed).tolist(),
        "decision": res.decision,
        "one_shot": res.one_shot,
        "curve": strip(res.curve),
        "baselines": strip(res.baselines),
        "settings": res.settings,
    }
    # atomic, and never through a link left in the folder (it is replaced; its target is untouched)
    put = lambda name, text: _safe_io.write_bytes(out, name, text.encode(), where="compress")  # noqa: E731
    put("result.json", json.dumps(finite_or_none(doc), indent=1, sort_keys=True))
    curve, bl = pd.DataFrame(strip(res.curve)), pd.DataFrame(strip(res.baselines))
    put("curve.csv", curve.to_csv(index=False))
    if len(bl):
        put("baselines.csv", bl.to_csv(index=False))
    put("report.md", report_text(res, spec.id))
    written.update(report=str(out / "report.md"), result=str(out / "result.json"))
    return written


def _pct(x: Any) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:+.2f} %"


def report_text(res: CompressResult, model_id: str) -> str:
    """A short markdown report of a :func:`compress` result: decision, the curve, the baselines side by side."""
    st = res.settings
    crit, tol = st["criterion"], st["tol"]
    d = res.decision
    L = [
        f"# Compression of {model_id} in Schur coordinates",
        "",
        f"Criterion: {crit} ({'dloss/loss <= ' if crit == 'loss' else 'score drop <= '}{tol:g}), decided on "
        f"{st['decision_trials']} held-out trials by the one-sided {st['level']:.0%} bootstrap bound; schedule "
        f"{', '.join(f'{x:.0%}' for x in st['schedule'])}; {st['steps']} Adam steps per round; spectrum "
        f"{st['spectrum']}, maps {st['maps']}.",
        "",
    ]
    if res.accepted:
        L += [
            f"**Accepted**: {len(res.removed)} of {st['couplings']} couplings removed; held-out dloss/loss "
            f"{_pct(d['rel'])} (bound {_pct(d['rel_ucb'])}), loss ratio {d['loss_ratio']:.4f}, score "
            f"{d['base_score']:.4f} -> {d['score']:.4f}"
            + (
                f" (drop bound {d['drop_ucb']:.4f})."
                if math.isfinite(d["drop_ucb"])
                else " (no score bound: the task's score is not a sum over trials that can be resampled)."
            ),
        ]
    else:
        L += [
            "**Nothing exported**: no round holds by the bound" + (f" (last: {_pct(d.get('rel_ucb'))})." if d else ".")
        ]
    o = res.one_shot
    if o:
        L += [f"One-shot (no fine-tuning): held-out dloss/loss {_pct(o['rel'])} (bound {_pct(o['rel_ucb'])})."]
    L += [
        "",
        "| method | removed | share | validation | held-out dloss/loss (bound) | score | holds |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for r in res.curve:
        L += [
            f"| {r['method']} | {r['removed']} | {r['share']:.1%} | {_pct(r['val']) if crit == 'loss' else r['val']} | "
            f"{_pct(r['rel'])} ({_pct(r['rel_ucb'])}) | {r['score']:.4f} | {'yes' if r['holds'] else 'no'} |"
        ]
    if res.baselines:
        L += [
            "",
            "Baselines at the one-shot set's count and norm:",
            "",
            "| method | matched | removed | ‖ΔW‖_F | held-out dloss/loss (bound) | score | holds |",
            "|---|---|---:|---:|---|---:|---|",
        ]
        for r in res.baselines:
            L += [
                f"| {r['method']} | {r['match']} | {r['removed']} | {r['delta_norm']:.4g} | {_pct(r['rel'])} "
                f"({_pct(r['rel_ucb'])}) | {r['score']:.4f} | {'yes' if r['holds'] else 'no'} |"
            ]
    return "\n".join(L) + "\n"
