"""Train rate RNNs on a task: optax Adam with global-norm clipping, many seeds in one compiled program.

The trained networks are the objects analysed in arXiv:2606.18457 (S. Dräger, "Task-Restricted Symmetries in
Recurrent Weight Space", 2026): one solution per seed, so that ablation profiles can be compared across seeds.

All seeds are stacked into one model pytree and trained by one ``eqx.filter_jit``-compiled program that
``vmap``s the update over seeds and ``lax.scan``s over the steps between two progress lines. Keys: seed ``s``
gives ``k_init, k_data = split(jax.random.key(s))``; the model is initialised from ``k_init`` and step ``i`` trains
on ``task.sample(fold_in(k_data, i), batch_size)``. A seed's result therefore does not depend on the other seeds
or on ``log_every``.

Any :class:`~schurjax.rnn.RateRNN` can be trained (``alpha``, ``nonlinearity``, ``form``, ``learn_h0``); the
defaults train the paper's :class:`~schurjax.rnn.TanhRNN`, exactly as before (same draws, same program, same
configuration record).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.errors import InputError
from schurjax.rnn import DEFAULT_GAIN, FORMS, NONLINEARITIES, RateRNN, TanhRNN, check_alpha
from schurjax.tasks.base import Task, check_int

__all__ = ["TrainResult", "train", "evaluate_models", "init_models", "make_optimizer"]


@dataclasses.dataclass(frozen=True, eq=False)
class TrainResult:
    """Output of :func:`train`.

    Attributes:
        models: one trained model per seed, in the order of ``seeds`` (a ``TanhRNN`` with the default step, else a
            ``RateRNN``).
        history: (n_seeds, n_logs) mean training loss over each logging interval.
        config: JSON-able dict of the training configuration (task, sizes, optimiser, seeds, ...).
        scores: (n_seeds, n_logs) mean training-batch score over each logging interval.
        log_steps: (n_logs,) the step count at the end of each logging interval.
        seconds: wall time of the training loop (including compilation).
    """

    models: list[RateRNN]
    history: np.ndarray
    config: dict[str, Any]
    scores: np.ndarray
    log_steps: np.ndarray
    seconds: float


def _resolve_task(task: Task | str) -> Task:
    if isinstance(task, str):
        from schurjax import tasks as _tasks

        return _tasks.get(task)
    if not isinstance(task, Task):
        raise TypeError(f"train: task must be a Task or a task name, got {type(task).__name__}")
    return task


def _seed_keys(seeds: Sequence[int]) -> tuple[PRNGKeyArray, PRNGKeyArray]:
    """Stacked ``(k_init, k_data)`` per seed, each of shape (n_seeds,)."""
    pairs = [jax.random.split(jax.random.key(int(s))) for s in seeds]
    return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])


_DEFAULT_STEP = (1.0, "tanh", "rate", False)


def _check_step(where: str, alpha: Any, nonlinearity: Any, form: Any, learn_h0: Any) -> tuple[float, str, str, bool]:
    """The model's step arguments, checked (one-line ValueError naming the argument)."""
    a = check_alpha(where, alpha)
    if not isinstance(nonlinearity, str) or nonlinearity not in NONLINEARITIES:
        raise InputError(
            where, None, f"nonlinearity must be one of {', '.join(map(repr, NONLINEARITIES))}, got {nonlinearity!r}"
        )
    if not isinstance(form, str) or form not in FORMS:
        raise InputError(where, None, f"form must be one of {', '.join(map(repr, FORMS))}, got {form!r}")
    if not isinstance(learn_h0, bool):
        raise InputError(where, None, f"learn_h0 must be True or False, got {learn_h0!r}")
    return a, nonlinearity, form, learn_h0


def init_models(
    task: Task,
    seeds: Sequence[int],
    *,
    n_hidden: int = 64,
    gain: float = DEFAULT_GAIN,
    alpha: float = 1.0,
    nonlinearity: str = "tanh",
    form: str = "rate",
    learn_h0: bool = False,
) -> RateRNN:
    """Stacked initial models (leading axis = seed), exactly as :func:`train` initialises them.

    The default step gives ``TanhRNN``s; any other ``alpha``, ``nonlinearity``, ``form`` or ``learn_h0`` gives
    ``RateRNN``s with the same weight draws for the same seed (``h0`` starts at zero).

    Example::

        stacked = init_models(tasks.get("copy"), [0, 1], n_hidden=32)   # stacked.W_rec.shape == (2, 32, 32)
        leaky = init_models(tasks.get("copy"), [0], n_hidden=32, alpha=0.2)   # RateRNN, alpha = 0.2
    """
    step = _check_step("init_models", alpha, nonlinearity, form, learn_h0)
    k_init, _ = _seed_keys(seeds)
    # eager on purpose: the shipped zoo was built this way, and jit may round the scaling differently (1 ulp)
    if step == _DEFAULT_STEP:
        make = eqx.filter_vmap(lambda k: TanhRNN(task.n_in, n_hidden, task.n_out, key=k, gain=gain))
    else:
        a, phi, f, h0 = step
        make = eqx.filter_vmap(
            lambda k: RateRNN(
                task.n_in,
                n_hidden,
                task.n_out,
                alpha=a,
                nonlinearity=phi,
                form=f,
                learn_h0=h0,
                key=k,
                gain=gain,
            )
        )
    return make(k_init)


def make_optimizer(
    learning_rate: float, steps: int, clip: float, schedule: str = "cosine"
) -> optax.GradientTransformation:
    """``clip_by_global_norm(clip)`` then Adam; ``schedule`` is "constant" or "cosine" (decays to 5 % of the rate)."""
    if schedule == "constant":
        lr: Any = learning_rate
    elif schedule == "cosine":
        lr = optax.cosine_decay_schedule(learning_rate, max(int(steps), 1), alpha=0.05)
    else:
        raise InputError("train", None, f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr))


_CHUNK_CACHE: dict[Any, Any] = {}


def _chunk_fn(task: Task, static: Any, opt_key: tuple, batch_size: int, seed_chunk: int | None):
    """Cached :func:`_make_chunk_fn` so that repeated calls with the same configuration reuse the compiled code."""
    key = (
        task,
        jax.tree_util.tree_structure(static),
        static.n_in,
        static.n_hidden,
        static.n_out,
        opt_key,
        batch_size,
        seed_chunk,
    )
    if key not in _CHUNK_CACHE:
        if len(_CHUNK_CACHE) > 32:
            _CHUNK_CACHE.clear()
        _CHUNK_CACHE[key] = _make_chunk_fn(task, static, make_optimizer(*opt_key), batch_size, seed_chunk)
    return _CHUNK_CACHE[key]


def _make_chunk_fn(
    task: Task, static: Any, opt: optax.GradientTransformation, batch_size: int, seed_chunk: int | None = None
):
    """Compiled ``(params, opt_state, k_data, start, n) -> (params, opt_state, mean loss, mean score)`` per seed.

    ``seed_chunk=None`` vmaps the update over all seeds; an int ``k`` runs ``lax.map`` over groups of ``k`` seeds
    (vmapped inside a group), still in one compiled program.
    """

    def one_seed(params, opt_state, k_data, step):
        batch = task.sample(jax.random.fold_in(k_data, step), batch_size)

        def loss_fn(p):
            y = jax.vmap(eqx.combine(p, static))(batch.inputs)
            return task.loss(y, batch), y

        (loss, y), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss, task.score(jax.lax.stop_gradient(y), batch)

    if seed_chunk is None:
        seeds_step = jax.vmap(one_seed, in_axes=(0, 0, 0, None))
    else:

        def seeds_step(params, opt_state, k_data, step):
            return jax.lax.map(lambda a: one_seed(*a, step), (params, opt_state, k_data), batch_size=seed_chunk)

    @eqx.filter_jit
    def chunk(params, opt_state, k_data, start, n: int):
        def body(carry, i):
            p, s = carry
            p, s, loss, score = seeds_step(p, s, k_data, start + i)
            return (p, s), (loss, score)

        (params, opt_state), (losses, scores) = jax.lax.scan(body, (params, opt_state), jnp.arange(n))
        return params, opt_state, losses.mean(0), scores.mean(0)

    return chunk


def train(
    task: Task | str,
    seeds: Sequence[int],
    *,
    n_hidden: int = 64,
    steps: int = 2000,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    clip: float = 1.0,
    gain: float = DEFAULT_GAIN,
    schedule: str = "cosine",
    log_every: int | None = None,
    progress: bool = True,
    callback: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    parallel: bool = True,
    seed_chunk: int | None = None,
    alpha: float = 1.0,
    nonlinearity: str = "tanh",
    form: str = "rate",
    learn_h0: bool = False,
) -> TrainResult:
    """Train one model per seed on ``task`` (all seeds in one compiled program).

    The defaults train the paper's ``TanhRNN``; ``alpha``, ``nonlinearity``, ``form`` and ``learn_h0`` train any
    ``RateRNN`` (see :mod:`schurjax.rnn` for the forms' equations) with the task's own loss (``task.loss``).

    Args:
        task: a task object or a registered name.
        seeds: integer seeds; one model each (init and data keys derive from the seed only).
        n_hidden: hidden size n.
        steps: optimiser steps.
        batch_size: trials per step (fresh trials every step).
        learning_rate: Adam learning rate (peak, if ``schedule="cosine"``).
        clip: global gradient-norm clip.
        gain: recurrent initial gain (``W_rec ~ N(0, gain²/n)``).
        schedule: "cosine" (decay to 5 %) or "constant".
        log_every: steps per compiled chunk / progress line (default ``steps // 20``).
        progress: print a line (step, mean/min/max loss over seeds, mean score, steps/s) to stderr per chunk.
        callback: called as ``callback(step, losses (n_seeds,), scores (n_seeds,))`` after each chunk.
        parallel: True (default): all seeds in one compiled program. False: a Python loop over seeds, one
            program run per seed (same results; a baseline for the throughput benchmark).
        seed_chunk: None (default) vmaps the update over all seeds. An int ``k`` runs ``lax.map`` over groups of
            ``k`` seeds inside the same program (``k = 1``: sequential); on a 2-core CPU this was faster than a
            full vmap (XLA's batched matmul is slow there), see ``benchmarks/train_throughput.py``. Results agree
            with the default to float32 rounding.
        alpha: ``dt / tau`` in (0, 1] (default 1: no leak).
        nonlinearity: ``"tanh"`` (default), ``"relu"`` or ``"softplus"``.
        form: ``"rate"`` (default), ``"post"`` or ``"current"``.
        learn_h0: also train an initial state ``h0`` (starts at zero); default False (``h_0 = 0``).

    Returns:
        :class:`TrainResult` (``models``, ``history`` (n_seeds, n_logs), ``config``, ...).

    Example::

        res = train("flipflop", seeds=[0, 1, 2, 3], steps=500, progress=False)
        res.history[:, -1]      # final mean training loss per seed
        leaky = train("flipflop", seeds=[0], alpha=0.2, steps=500, progress=False).models[0]   # RateRNN
    """
    task = _resolve_task(task)
    step = _check_step("train", alpha, nonlinearity, form, learn_h0)
    seeds = [int(s) for s in (seeds if isinstance(seeds, Sequence | np.ndarray) else [seeds])]
    if not seeds:
        raise InputError("train", None, "seeds must be a non-empty sequence of ints, got []")
    n_hidden = check_int("train", "n_hidden", n_hidden)
    steps = check_int("train", "steps", steps)
    batch_size = check_int("train", "batch_size", batch_size)
    log_every = max(steps // 20, 1) if log_every is None else check_int("train", "log_every", log_every)
    log_every = min(log_every, steps)
    if seed_chunk is not None:
        seed_chunk = check_int("train", "seed_chunk", seed_chunk)
    for arg, val in (("learning_rate", learning_rate), ("clip", clip), ("gain", gain)):
        if not isinstance(val, int | float) or not val > 0:
            raise InputError("train", None, f"{arg} must be a positive float, got {val!r}")

    opt_key = (float(learning_rate), steps, float(clip), schedule)
    opt = make_optimizer(*opt_key)
    config = {
        "task": {"name": task.name, "params": task.params()},
        "seeds": seeds,
        "n_hidden": n_hidden,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "schedule": schedule,
        "clip": float(clip),
        "gain": float(gain),
        "optimizer": "clip_by_global_norm + adam",
        "log_every": log_every,
        "keys": "k_init, k_data = split(key(seed)); step i samples with fold_in(k_data, i)",
        "jax_version": jax.__version__,
    }
    if seed_chunk is not None:
        config["seed_chunk"] = seed_chunk
    if step != _DEFAULT_STEP:  # the default record stays what it was, so that rebuilt zoo sidecars do not change
        config.update(zip(("alpha", "nonlinearity", "form", "learn_h0"), step, strict=True))
    groups = [seeds] if parallel else [[s] for s in seeds]
    t0 = time.perf_counter()
    models: list[RateRNN] = []
    hist_parts, score_parts = [], []
    log_steps: list[int] = []
    for g_idx, group in enumerate(groups):
        stacked = init_models(
            task,
            group,
            n_hidden=n_hidden,
            gain=gain,
            alpha=step[0],
            nonlinearity=step[1],
            form=step[2],
            learn_h0=step[3],
        )
        _, k_data = _seed_keys(group)
        params, static = eqx.partition(stacked, eqx.is_array)
        opt_state = jax.vmap(opt.init)(params)
        chunk = _chunk_fn(task, static, opt_key, batch_size, seed_chunk if parallel else None)
        done, hist, sc, t_last = 0, [], [], time.perf_counter()
        while done < steps:
            n = min(log_every, steps - done)
            params, opt_state, loss, score = chunk(params, opt_state, k_data, jnp.asarray(done, jnp.int32), n)
            loss, score = np.asarray(loss), np.asarray(score)
            done += n
            hist.append(loss)
            sc.append(score)
            if g_idx == 0:
                log_steps.append(done)
            now = time.perf_counter()
            if progress:
                tag = f"train[{task.name}]" + ("" if parallel else f" seed {group[0]}")
                print(
                    f"{tag} step {done}/{steps}  loss {loss.mean():.4g} (min {loss.min():.4g}, max {loss.max():.4g})"
                    f"  score {score.mean():.4f}  {n / (now - t_last):.1f} steps/s",
                    file=sys.stderr,
                    flush=True,
                )
            if callback is not None:
                callback(done, loss, score)
            t_last = now
        trained = eqx.combine(params, static)
        models.extend(jax.tree_util.tree_map(lambda x, i=i: x[i], trained) for i in range(len(group)))
        hist_parts.append(np.stack(hist, axis=1))
        score_parts.append(np.stack(sc, axis=1))
    seconds = time.perf_counter() - t0
    return TrainResult(
        models=models,
        history=np.concatenate(hist_parts, axis=0),
        config=config,
        scores=np.concatenate(score_parts, axis=0),
        log_steps=np.asarray(log_steps),
        seconds=seconds,
    )


def evaluate_models(
    task: Task, models: Sequence[RateRNN], key: PRNGKeyArray, batch_size: int = 1024
) -> tuple[Float[Array, " M"], Float[Array, " M"]]:
    """Loss and score of each model on one shared batch drawn with ``key``.

    Returns:
        ``(losses, scores)`` as NumPy arrays of shape (len(models),).

    Example::

        losses, scores = evaluate_models(task, res.models, jax.random.key(10_000))
    """
    batch = _sample(task, key, batch_size)
    out = [_loss_score(task, m, batch) for m in models]
    return np.asarray([float(a) for a, _ in out]), np.asarray([float(b) for _, b in out])


@eqx.filter_jit
def _sample(task: Task, key: PRNGKeyArray, batch_size: int):
    return task.sample(key, batch_size)


@eqx.filter_jit
def _loss_score(task: Task, model: RateRNN, batch):
    y = jax.vmap(model)(batch.inputs)
    return task.loss(y, batch), task.score(y, batch)
