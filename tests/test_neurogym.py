"""sj.tasks.neurogym against NeuroGym itself: whole trials, one-hot targets, padding, the decision-period score."""

from __future__ import annotations

import math
import sys
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj

ngym = pytest.importorskip("neurogym")
gym = pytest.importorskip("gymnasium")


@eqx.filter_jit
def loss_and_score(task, y, batch):
    return task.loss(y, batch), task.score(y, batch)


ENVS = ["PerceptualDecisionMaking-v0", "GoNogo-v0", "ContextDecisionMaking-v0"]  # the last: unequal lengths


def draw_direct(env_id: str, key, B: int, **kwargs):
    """Independent draw with NeuroGym: fresh env seeded as documented, B trials of (ob, gt, decision range)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id, **kwargs).unwrapped
    env.seed(int(np.asarray(jax.random.bits(key, (), jnp.uint32))))
    out = []
    for _ in range(B):
        env.new_trial()
        out.append((env.ob.copy(), env.gt.copy(), env.start_ind["decision"], env.end_ind["decision"]))
    return out


@pytest.mark.parametrize("env_id", ENVS)
def test_trials_targets_padding_and_score(env_id):
    task = sj.tasks.neurogym(env_id)
    key = jax.random.key(7)
    B = 12
    batch = task.sample(key, B)
    trials = draw_direct(env_id, key, B)
    T = task.steps
    assert batch.inputs.shape == (B, T, task.n_in) and batch.targets.shape == batch.mask.shape == (B, T, task.n_out)
    assert batch.valid.shape == (B, T) and batch.valid.dtype == jnp.bool_
    y_rand = np.random.default_rng(0).normal(size=batch.targets.shape)
    hits = total = 0
    for i, (ob, gt, s, e) in enumerate(trials):
        L = len(gt)
        np.testing.assert_array_equal(np.asarray(batch.inputs[i, :L]), ob)
        assert np.all(np.asarray(batch.inputs[i, L:]) == 0)
        np.testing.assert_array_equal(np.asarray(batch.targets[i, :L]), np.eye(task.n_out)[gt])
        np.testing.assert_array_equal(np.asarray(batch.valid[i]), np.arange(T) < L)
        np.testing.assert_array_equal(np.asarray(batch.mask[i]), np.repeat((np.arange(T) < L)[:, None], task.n_out, 1))
        assert e == L and e - s == task.decision_steps  # the score's rule holds for this env
        hits += int(np.sum(np.argmax(y_rand[i, s:e], axis=-1) == gt[s:e]))
        total += e - s
    s_rand = float(loss_and_score(task, jnp.asarray(y_rand, jnp.float32), batch)[1])
    assert s_rand == pytest.approx(hits / total, abs=1e-6)
    # perfect outputs: the targets (as confident logits for the cross-entropy, the task's default loss)
    perfect = batch.targets * (1e3 if task.loss_type == "ce" else 1.0)
    assert [float(a) for a in loss_and_score(task, perfect, batch)] == [0.0, 1.0]
    # deterministic per key, different keys differ; the name and params rebuild the task
    np.testing.assert_array_equal(np.asarray(task.sample(key, B).inputs), np.asarray(batch.inputs))
    assert not np.array_equal(np.asarray(task.sample(jax.random.key(8), B).inputs), np.asarray(batch.inputs))
    assert task.name == f"neurogym:{env_id}"
    assert sj.tasks.get(task.name, **task.params()) == task
    assert sj.tasks.check_task(task, "t") is task and hash(task) == hash(sj.tasks.neurogym(env_id))


def test_unequal_lengths_and_env_kwargs():
    task = sj.tasks.neurogym("ContextDecisionMaking-v0", dt=50)
    assert task.params() == {"dt": 50, "steps": task.steps, "loss": "ce", "loss_steps": "all"} and task.dt == 50.0
    batch = task.sample(jax.random.key(3), 32)
    L = np.asarray(batch.lengths)
    assert L.min() < L.max() <= task.steps  # the delay is random: trials differ in length
    timing = {"fixation": 100, "stimulus": 500, "delay": 0, "decision": 200}
    t2 = sj.tasks.neurogym("PerceptualDecisionMaking-v0", timing=timing)
    assert t2.steps == 8 and t2.decision_steps == 2
    assert sj.tasks.get(t2.name, **t2.params()) == t2


def test_padded_trials_score_and_loss_match_each_trial_alone():
    """Task level (the engine's part is tests/test_batch.py): padding changes neither loss nor score."""
    task = sj.tasks.neurogym("ContextDecisionMaking-v0")
    batch = task.sample(jax.random.key(5), 4)
    L = np.asarray(batch.lengths)
    assert len(set(L.tolist())) > 1
    y = np.random.default_rng(1).normal(size=batch.targets.shape).astype(np.float32)
    y[:2] += 3 * np.asarray(batch.targets[:2])  # two trials answered right, two at random
    y[~np.asarray(batch.valid)] = 9.0  # garbage on padded steps must not matter
    loss, score = (float(a) for a in loss_and_score(task, jnp.asarray(y), batch))
    alone = []
    for i, n in enumerate(L):
        bi = sj.TaskBatch.from_arrays(*(np.asarray(a)[i : i + 1, :n] for a in batch[:3]))
        ti = sj.tasks.neurogym(task.env_id, steps=int(n))
        alone.append(tuple(float(a) for a in loss_and_score(ti, jnp.asarray(y[i : i + 1, :n]), bi)))
    la, sa = np.array(alone).T
    assert loss == pytest.approx(np.sum(L * la) / L.sum(), rel=1e-5)  # every real step of every output counts
    assert score == pytest.approx(np.mean(sa), abs=1e-6)  # every trial has decision_steps decision steps
    assert 0.5 <= score <= 1 and np.ptp(la) > 0


def test_errors_are_one_line(monkeypatch):
    cases = [
        (dict(env_id="NoSuchEnv-v0"), r"tasks\.neurogym: unknown env_id 'NoSuchEnv-v0' .*expected a NeuroGym"),
        (dict(env_id="GoNogo-v0", foo=1), r"GoNogo-v0 does not accept env_kwargs \['foo'\]"),
        (dict(env_id="GoNogo-v0", dt=math.nan), r"tasks\.neurogym: dt must be finite, got nan"),
        (dict(env_id="GoNogo-v0", timing={"delay": math.inf}), r"timing\['delay'\] must be finite, got inf"),
        (dict(env_id="GoNogo-v0", dt=object()), r"dt must be JSON-able"),
        (dict(env_id="ReadySetGo-v0"), r"ReadySetGo-v0 has periods .*needs a 'decision' period of a fixed"),
        (dict(env_id="GoNogo-v0", steps=0), r"steps must be an int >= 1, got 0"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            sj.tasks.neurogym(**kw)
        assert "\n" not in str(info.value)
    short = sj.tasks.neurogym("ContextDecisionMaking-v0", steps=15)
    with pytest.raises(
        ValueError,
        match=r"neurogym:ContextDecisionMaking-v0\.sample: trial \d+ has \d+ steps, more "
        r"than steps=15; pass a larger steps=",
    ):
        short.sample(jax.random.key(0), 64)
    with pytest.raises(ValueError, match=r"NeuroGym draws trials on the host, so sample cannot run under jax\.jit"):
        jax.jit(lambda k: short.sample(k, 2).inputs)(jax.random.key(0))
    monkeypatch.setitem(sys.modules, "neurogym", None)
    with pytest.raises(ImportError, match=r"NeuroGym is not installed .*pip install 'schurjax\[neurogym\]'"):
        sj.tasks.neurogym("GoNogo-v0")


def test_loss_steps_decision_masks_only_the_decision_period():
    task = sj.tasks.neurogym("PerceptualDecisionMaking-v0", dt=100, loss="mse", loss_steps="decision")
    assert task.loss_type == "mse" and sj.tasks.get(task.name, **task.params()) == task
    batch = task.sample(jax.random.key(3), 8)
    L = np.asarray(batch.valid).sum(axis=1)
    m = np.asarray(batch.mask)[..., 0]
    for i in range(8):  # exactly the last decision_steps real steps of each trial
        expect = np.zeros(m.shape[1])
        expect[L[i] - task.decision_steps : L[i]] = 1
        np.testing.assert_array_equal(m[i], expect)
    with pytest.raises(ValueError, match="loss_steps must be one of"):
        sj.tasks.neurogym("PerceptualDecisionMaking-v0", loss_steps="late")
    with pytest.raises(ValueError, match="loss must be one of"):
        sj.tasks.neurogym("PerceptualDecisionMaking-v0", loss="l1")
