"""NeuroGym tasks as schurjax tasks: whole trials, one-hot targets, the loss they are trained with, decision accuracy.

``neurogym(env_id, **env_kwargs)`` wraps a NeuroGym trial environment (optional extra: ``pip install
'schurjax[neurogym]'``). NeuroGym streams trials back to back; schurjax's model starts every trial from h0 = 0
(the one-layer tanh RNN of arXiv:2606.18457 starts every trial from h0 = 0), so each batch row here is one whole trial:

* ``inputs[i, t] = env.ob[t]`` and ``targets[i, t] = one_hot(env.gt[t], n_out)`` (same step, as in NeuroGym's
  supervised datasets; action 0 is "fixate"), for ``t < L_i``, the trial's own length.
* Trials of unequal length are padded at the end to ``steps`` (the longest trial the env's timing allows);
  ``valid`` marks the real steps and ``mask`` (all outputs, every real step) is 0 on the padding.
* ``loss``: what NeuroGym networks are trained with, cross-entropy of the output logits against the correct action
  (``loss="ce"``, the default; ``loss="mse"`` is the masked MSE against the one-hot targets), on the steps that
  count: every real step (``loss_steps="all"``, the default, as NeuroGym's supervised examples train) or the
  decision period only (``loss_steps="decision"``); ``mask`` is 1 on exactly those steps.
  ``score``: accuracy of ``argmax(y_t)`` against the correct action over the decision period, the last
  ``decision_steps`` real steps of every trial (pure JAX over the batch).
  Sampling checks on every trial that the env's ``decision`` period is exactly those steps.

NeuroGym environments are NumPy/gym code, not JAX: ``sample(key, B)`` runs on the host (it cannot be jitted) in a
fresh environment seeded with ``seed = jax.random.bits(key, (), uint32)``, so a key gives the same trials every
time, independently of earlier calls.

Example::

    task = sj.tasks.neurogym("PerceptualDecisionMaking-v0", dt=100)
    batch = task.sample(jax.random.key(0), 64)        # inputs (64, 22, 3), targets (64, 22, 3)
    task.name, task.params()                          # params include loss="ce", loss_steps="all"
    sj.tasks.neurogym("PerceptualDecisionMaking-v0", loss="mse", loss_steps="decision")
"""

from __future__ import annotations

import json
import math
import numbers
import re
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from schurjax.errors import InputError
from schurjax.tasks.base import Task, TaskBatch, check_batch_size, check_int, check_key, check_y

__all__ = ["NeuroGymTask", "neurogym", "PREFIX", "LOSSES", "LOSS_STEPS"]

LOSSES = ("ce", "mse")
"""Accepted ``loss`` values of a NeuroGym task: cross-entropy over the logits (default) or MSE on one-hot targets."""
LOSS_STEPS = ("all", "decision")
"""Accepted ``loss_steps``: every real step of a trial (default) or its decision period."""

PREFIX = "neurogym:"
"""Task names of NeuroGym tasks are ``"neurogym:<env_id>"``; ``tasks.get("neurogym:<env_id>", **params)``."""

_W = "tasks.neurogym"


def _modules():
    try:
        import gymnasium
        import neurogym
    except ImportError as err:
        raise ImportError(
            f"{_W}: NeuroGym is not installed ({err}); install the extra: pip install 'schurjax[neurogym]'"
        ) from None
    return gymnasium, neurogym


def _freeze(where: str, kwargs: dict[str, Any]) -> str:
    """Canonical JSON of the env kwargs (hashable, rebuildable), refusing non-JSON and non-finite values."""

    def walk(path: str, v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            if not math.isfinite(float(v)):
                raise InputError(where, None, f"{path} must be finite, got {v!r}")
            return float(v)
        if isinstance(v, dict):
            return {str(k): walk(f"{path}[{k!r}]", x) for k, x in v.items()}
        if isinstance(v, list | tuple | range):
            return [walk(f"{path}[{i}]", x) for i, x in enumerate(v)]
        raise InputError(
            where,
            None,
            f"{path} must be JSON-able (numbers, str, lists, dicts) so the task can be rebuilt "
            f"by name, got {type(v).__name__}",
        )

    return json.dumps({k: walk(k, v) for k, v in kwargs.items()}, sort_keys=True, separators=(",", ":"))


_ENV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


def _make_env(env_id: str, kwargs: dict[str, Any]):
    if not isinstance(env_id, str) or not _ENV_ID.fullmatch(env_id):
        raise InputError(_W, None, f"env_id must be a NeuroGym id without ':', got {env_id!r}")
    gym, _ = _modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env = gym.make(env_id, disable_env_checker=True, **kwargs)
        except gym.error.Error as err:
            raise InputError(
                _W,
                None,
                f"unknown env_id {env_id!r} ({str(err).splitlines()[0]}); expected a NeuroGym "
                "id such as 'PerceptualDecisionMaking-v0' (neurogym.all_envs() lists them)",
            ) from None
        except TypeError as err:
            raise InputError(
                _W, None, f"{env_id} does not accept env_kwargs {sorted(kwargs)} ({str(err).splitlines()[0]})"
            ) from None
    env = env.unwrapped
    if not all(hasattr(env, a) for a in ("new_trial", "timing", "dt", "start_ind", "end_ind")):
        raise InputError(
            _W,
            None,
            f"{env_id} is not a NeuroGym trial environment (neurogym.TrialEnv); "
            "schurjax draws whole trials with env.new_trial()",
        )
    return env


def _max_ms(spec: Any) -> float | None:
    """Upper bound of a NeuroGym timing spec in ms, or None when it has none."""
    if isinstance(spec, numbers.Real):
        return float(spec)
    if callable(spec):
        vmax = getattr(spec, "vmax", None)  # neurogym.utils.ngym_random.TruncExp
        return float(vmax) if isinstance(vmax, numbers.Real) and math.isfinite(vmax) else None
    if isinstance(spec, list | tuple) and spec:
        if all(isinstance(x, numbers.Real) for x in spec):
            return float(max(spec))
        if len(spec) == 2 and isinstance(spec[0], str):
            dist, args = spec
            if dist == "constant":
                return float(args)
            if dist == "uniform":
                return float(args[1])
            if dist == "choice":
                return float(max(args))
            if dist == "truncated_exponential" and len(args) >= 3 and math.isfinite(args[2]):
                return float(args[2])
    return None


class NeuroGymTask(Task):
    """A NeuroGym trial environment as a task (see the module docstring; build it with :func:`neurogym`).

    Args:
        env_id: a registered NeuroGym id, e.g. ``"PerceptualDecisionMaking-v0"``.
        steps: padded trial length (default: the longest trial the env's timing allows; required when a period
            has an unbounded duration).
        loss: ``"ce"`` (cross-entropy over the output logits, default) or ``"mse"`` (against one-hot targets).
        loss_steps: ``"all"`` (every real step, default) or ``"decision"`` (the decision period).
        **env_kwargs: passed to the environment (``dt``, ``timing``, ...); JSON-able and finite.

    Example::

        task = NeuroGymTask("GoNogo-v0")
        task.n_in, task.n_out, task.steps, task.decision_steps
    """

    env_id: str = eqx.field(static=True)
    env_kwargs: str = eqx.field(static=True)  # canonical JSON
    steps: int = eqx.field(default=0, static=True)  # a default shadows Task.steps (a property)
    decision_steps: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)
    n_actions: int = eqx.field(static=True)
    loss_type: str = eqx.field(default="ce", static=True)
    loss_steps: str = eqx.field(default="all", static=True)

    def __init__(
        self, env_id: str, *, steps: int | None = None, loss: str = "ce", loss_steps: str = "all", **env_kwargs: Any
    ):
        if loss not in LOSSES:
            raise InputError(_W, None, f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
        if loss_steps not in LOSS_STEPS:
            raise InputError(
                _W, None, f"loss_steps must be one of {', '.join(map(repr, LOSS_STEPS))}, got {loss_steps!r}"
            )
        if not isinstance(env_id, str) or not _ENV_ID.fullmatch(env_id):
            # gymnasium imports ``mod`` for an id ``mod:Env``: an id is a plain name, never a module path
            raise InputError(
                _W,
                None,
                f"env_id must be a NeuroGym id like 'PerceptualDecisionMaking-v0' (letters, digits, '.', '_', "
                f"'-', '/'; no ':'), got {env_id!r}",
            )
        frozen = _freeze(_W, env_kwargs)
        env = _make_env(env_id, json.loads(frozen))
        obs, act = env.observation_space, env.action_space
        if len(getattr(obs, "shape", ()) or ()) != 1 or not isinstance(getattr(act, "n", None), numbers.Integral):
            raise InputError(
                _W,
                None,
                f"{env_id} has observation space {obs} and action space {act}; schurjax supports "
                "a 1-D Box observation and a Discrete action space",
            )
        dt = float(env.dt)
        timing = dict(env.timing)
        dec = timing.get("decision")
        if not isinstance(dec, numbers.Real) or int(dec // dt) < 1:
            what = f"periods {sorted(timing)}" if dec is None else f"'decision' timing {dec!r}"
            raise InputError(
                _W,
                None,
                f"{env_id} has {what}; the decision-period score needs a 'decision' period of a "
                f"fixed duration >= dt={dt:g} ms",
            )
        if steps is None:
            bounds = {p: _max_ms(s) for p, s in timing.items()}
            open_ = sorted(p for p, b in bounds.items() if b is None)
            if open_:
                raise InputError(
                    _W,
                    None,
                    f"{env_id}'s period(s) {open_} have no upper bound on their duration; "
                    "pass steps= (the padded trial length)",
                )
            steps = sum(int(b // dt) for b in bounds.values())
        self.env_id = env_id
        self.env_kwargs = frozen
        self.steps = check_int(_W, "steps", steps)
        self.decision_steps = int(dec // dt)
        self.dt = dt
        self.n_inputs = int(obs.shape[0])
        self.n_actions = int(act.n)
        self.loss_type = loss
        self.loss_steps = loss_steps

    @property
    def name(self) -> str:  # type: ignore[override]
        return PREFIX + self.env_id

    @property
    def n_in(self) -> int:
        return self.n_inputs

    @property
    def n_out(self) -> int:
        return self.n_actions

    def params(self) -> dict[str, Any]:
        """Env kwargs plus ``steps``, ``loss`` and ``loss_steps``: ``tasks.get(task.name, **task.params())`` rebuilds
        the task."""
        return {
            **json.loads(self.env_kwargs),
            "steps": self.steps,
            "loss": self.loss_type,
            "loss_steps": self.loss_steps,
        }

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params().items())
        return f"neurogym({self.env_id!r}{args})"

    def sample(self, key: PRNGKeyArray, batch_size: int) -> TaskBatch:
        """Draw ``batch_size`` whole trials on the host (not jit-able), seeded from ``key``.

        Returns:
            TaskBatch with ``valid`` (B, steps) marking each trial's real steps.
        """
        where = f"{self.name}.sample"
        B = check_batch_size(where, batch_size)
        check_key(where, key)
        if isinstance(key, jax.core.Tracer):
            raise InputError(
                where,
                None,
                "NeuroGym draws trials on the host, so sample cannot run under jax.jit (nor "
                "inside sj.train); call it outside jit, or train in PyTorch and import the model",
            )
        seed = int(np.asarray(jax.random.bits(key, (), jnp.uint32)))
        env = _make_env(self.env_id, json.loads(self.env_kwargs))
        env.seed(seed)
        T, d, n_in, n_out = self.steps, self.decision_steps, self.n_inputs, self.n_actions
        x = np.zeros((B, T, n_in), np.float32)
        y = np.zeros((B, T, n_out), np.float32)
        valid = np.zeros((B, T), bool)
        for i in range(B):
            env.new_trial()
            ob, gt = np.asarray(env.ob, np.float32), np.asarray(env.gt)
            L = ob.shape[0]
            if ob.shape != (L, n_in) or gt.shape != (L,) or not np.issubdtype(gt.dtype, np.integer):
                raise InputError(
                    where,
                    None,
                    f"trial {i} has ob {ob.shape} and gt {gt.shape} ({gt.dtype}); expected "
                    f"ob (L, {n_in}) and integer gt (L,)",
                )
            if L > T:
                raise InputError(where, None, f"trial {i} has {L} steps, more than steps={T}; pass a larger steps=")
            if not 1 <= L or gt.min() < 0 or gt.max() >= n_out or not np.all(np.isfinite(ob)):
                raise InputError(
                    where,
                    None,
                    f"trial {i} has {L} steps, actions {np.unique(gt).tolist()} (expected "
                    f"0..{n_out - 1}) and {int((~np.isfinite(ob)).sum())} non-finite inputs",
                )
            s, e = env.start_ind.get("decision"), env.end_ind.get("decision")
            if (s, e) != (L - d, L):
                raise InputError(
                    where,
                    None,
                    f"trial {i}'s decision period is steps [{s}, {e}) of {L}; the decision-"
                    f"period score needs it to be the last {d} steps",
                )
            x[i, :L] = ob
            y[i, np.arange(L), gt] = 1.0
            valid[i, :L] = True
        counts = valid
        if self.loss_steps == "decision":
            L = valid.sum(axis=1)[:, None]
            t = np.arange(T)[None, :]
            counts = (t >= L - d) & (t < L)
        mask = np.broadcast_to(counts[:, :, None], (B, T, n_out)).astype(np.float32)
        return TaskBatch(jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask), jnp.asarray(valid))

    def score(self, y: Float[Array, "B T n_out"], batch: TaskBatch) -> Float[Array, ""]:
        """Accuracy of ``argmax(y_t)`` against the correct action over the decision period (pure JAX).

        The decision period of trial ``i`` is its last ``decision_steps`` real steps, ``[L_i - d, L_i)`` with
        ``L_i = batch.lengths[i]``; the accuracy is averaged over all those steps of the batch.
        """
        check_y(f"{self.name}.score", y, batch)
        t = jnp.arange(y.shape[1])[None, :]
        L = batch.lengths[:, None]
        dec = (t >= L - self.decision_steps) & (t < L)
        hit = jnp.argmax(y, axis=-1) == jnp.argmax(batch.targets, axis=-1)
        return (jnp.sum(dec & hit) / jnp.maximum(jnp.sum(dec), 1)).astype(jnp.float32)


def neurogym(env_id: str, *, steps: int | None = None, **env_kwargs: Any) -> NeuroGymTask:
    """A NeuroGym environment as a schurjax task (whole trials from h0 = 0; see the module docstring).

    Args:
        env_id: NeuroGym id, e.g. ``"PerceptualDecisionMaking-v0"``, ``"GoNogo-v0"``, ``"DelayMatchSample-v0"``.
        steps: padded trial length (default: the longest trial the env's timing allows).
        **env_kwargs: environment arguments (``dt=``, ``timing=``, ...), and ``loss=`` (``"ce"`` default or
            ``"mse"``) and ``loss_steps=`` (``"all"`` default or ``"decision"``), see :class:`NeuroGymTask`.

    Returns:
        NeuroGymTask named ``"neurogym:<env_id>"``; ``sj.tasks.get(task.name, **task.params())`` rebuilds it.

    Raises:
        ImportError: NeuroGym is not installed (the message names the ``neurogym`` extra).
        ValueError: unknown id, bad kwargs, NaN/inf kwargs, an env without a fixed-length ``decision`` period.

    Example::

        task = sj.tasks.neurogym("PerceptualDecisionMaking-v0")
        res = sj.evaluate(model, sf, variants, task.sample(jax.random.key(1), 256), task=task)
    """
    return NeuroGymTask(env_id, steps=steps, **env_kwargs)
