"""Custom tasks: the protocol, register / get / names, load_spec ("module:Name"), parameter checks, evaluate."""

from __future__ import annotations

import math
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from schurjax import tasks


@pytest.fixture(autouse=True)
def clean_registry():
    saved = dict(tasks.REGISTRY)
    yield
    tasks.REGISTRY.clear()
    tasks.REGISTRY.update(saved)


class Hold(sj.tasks.Task):
    """Hold a random level shown at the first step; score = 1 - masked MSE (floored at 0)."""

    name = "hold"
    steps: int = eqx.field(default=12, static=True)
    level: float = eqx.field(default=1.0, static=True)
    n_in, n_out = 1, 1

    def sample(self, key, batch_size):
        a = self.level * jax.random.normal(key, (batch_size, 1, 1))
        x = jnp.zeros((batch_size, self.steps, 1)).at[:, :1].set(a)
        return sj.TaskBatch(x, jnp.broadcast_to(a, x.shape), jnp.ones_like(x))

    def score(self, y, batch):
        return jnp.maximum(0.0, 1.0 - sj.tasks.masked_mse(y, batch))


def one_line(info) -> str:
    assert "\n" not in str(info.value)
    return str(info.value)


def test_register_get_names_and_evaluate():
    assert tasks.register("hold", Hold) is Hold
    assert "hold" in tasks.names()
    task = tasks.get("hold", steps=10, level=0.5)
    assert (task.n_in, task.n_out, task.steps, task.params()) == (1, 1, 10, {"steps": 10, "level": 0.5})
    assert tasks.get(task.name, **task.params()) == task
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['bits'\] for task 'hold'"):
        tasks.get("hold", bits=3)
    with pytest.raises(ValueError, match=r"tasks\.get: parameter level of task 'hold' must be finite, got nan"):
        tasks.get("hold", level=math.nan)
    with pytest.raises(ValueError, match=r"hold: level must be finite, got inf"):  # the Task base check
        Hold(level=math.inf)
    # registered task through sj.evaluate: score equals 1 - MSE of an independent NumPy rollout
    rng = np.random.default_rng(0)
    n = 6
    model = sj.TanhRNN.from_arrays(
        rng.normal(size=(n, 1)), rng.normal(size=(n, n)) / np.sqrt(n), np.zeros(n), rng.normal(size=(1, n)), np.zeros(1)
    )
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    batch = task.sample(jax.random.key(2), 8)
    res = sj.evaluate(model, sf, sj.ablate.all_nonnormal(sf), batch, task=task)
    x = np.asarray(batch.inputs, np.float64)
    h, ys = np.zeros((8, n)), []
    for t in range(task.steps):
        h = np.tanh(h @ np.asarray(model.W_rec, np.float64).T + x[:, t] @ np.asarray(model.W_in, np.float64).T)
        ys.append(h @ np.asarray(model.W_out, np.float64).T)
    mse = np.mean((np.stack(ys, 1) - np.asarray(batch.targets, np.float64)) ** 2)
    assert res.base_loss == pytest.approx(mse, rel=1e-5)
    assert res.base_score == pytest.approx(max(0.0, 1 - mse), rel=1e-5, abs=1e-6)


def test_register_refusals():
    with pytest.raises(ValueError, match=r"'copy' is a built-in task"):
        tasks.register("copy", Hold)
    with pytest.raises(ValueError, match=r"name must be a non-empty str without ':'"):
        tasks.register("a:b", Hold)
    with pytest.raises(ValueError, match=r"factory must be a Task class or a callable, got int"):
        tasks.register("x", 3)
    tasks.register("hold", Hold)

    def other(**p):
        return Hold(**p)

    with pytest.raises(ValueError, match=r"'hold' is already registered to .*Hold; pass overwrite=True"):
        tasks.register("hold", other)
    tasks.register("hold", other, overwrite=True)
    assert tasks.REGISTRY["hold"] is other
    # a factory whose product is not a task: the missing members are named
    tasks.register("broken", lambda: object())
    with pytest.raises(
        ValueError,
        match=r"tasks\.get: a task must have name, .*; object is missing name, n_in, n_out, "
        r"steps, sample, score, loss, params",
    ) as info:
        tasks.get("broken")
    one_line(info)
    with pytest.raises(ValueError, match=r"unknown task name 'nope', expected one of \['broken', 'context'"):
        tasks.get("nope")


def test_builtin_parameter_errors_name_the_parameter():
    cases = [
        (("context",), dict(coherences=5), r"context: coherences must be a non-empty sequence of floats > 0, got 5"),
        (("context",), dict(noise=math.inf), r"parameter noise of task 'context' must be finite, got inf"),
        (("context",), dict(coherences=[0.5, math.nan]), r"parameter coherences\[1\] .* must be finite, got nan"),
        (("flipflop",), dict(p_pulse=math.nan), r"parameter p_pulse of task 'flipflop' must be finite"),
        (("sine",), dict(w_min="a"), r"sine: need 0 < w_min <= w_max"),
        (("copy",), dict(length=2.5), r"copy: length must be an int >= 1, got 2\.5"),
    ]
    for (name,), params, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            tasks.get(name, **params)
        one_line(info)
    with pytest.raises(ValueError, match=r"context: noise must be finite, got inf"):
        sj.tasks.ContextTask(noise=math.inf)  # direct construction is checked too
    assert tasks.get("context", coherences=[0.5, 1.0]).coherences == (0.5, 1.0)


MODULE = """
import equinox as eqx, jax, jax.numpy as jnp
import schurjax as sj

class Ramp(sj.tasks.Task):
    name = "ramp"
    steps: int = eqx.field(default=8, static=True)
    n_in, n_out = 1, 1

    def sample(self, key, batch_size):
        x = jax.random.uniform(key, (batch_size, self.steps, 1))
        return sj.TaskBatch(x, jnp.cumsum(x, axis=1), jnp.ones_like(x))

    def score(self, y, batch):
        return 1.0 - sj.tasks.masked_mse(y, batch)

class Fake(Ramp):
    name = "copy"

RAMP5 = Ramp(steps=5)
NOT_A_TASK = 3
"""


def test_load_spec_module_and_file(tmp_path, monkeypatch):
    (tmp_path / "my_byo_tasks.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "broken_byo_tasks.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    Ramp = tasks.load_spec("my_byo_tasks:Ramp")
    assert Ramp(steps=4).steps == 4
    task = tasks.get("my_byo_tasks:Ramp", steps=6)  # the CLI's --task module:Name
    assert task.name == "ramp" and "ramp" in tasks.names()  # registered under its name on first use
    assert tasks.get("ramp", **task.params()) == task
    inst = tasks.get("my_byo_tasks:RAMP5")
    assert inst.steps == 5 and tasks.get("my_byo_tasks:RAMP5", steps=5) is inst
    by_file = tasks.load_spec(f"{tmp_path / 'my_byo_tasks.py'}:Ramp")
    assert by_file(steps=3).steps == 3
    monkeypatch.chdir(tmp_path)  # run next to the file
    assert tasks.load_spec("my_byo_tasks.py:Ramp")(steps=2).steps == 2
    cases = [
        ("my_byo_tasks", r"spec must be 'module:Name' \(e\.g\. 'mytasks:Ramp' or 'tasks\.py:Ramp'\), got"),
        ("no_such_module_xyz:Ramp", r"cannot import 'no_such_module_xyz' .*No module named 'no_such_module_xyz'"),
        ("broken_byo_tasks:X", r"importing 'broken_byo_tasks' failed: RuntimeError: boom"),
        ("my_byo_tasks:Nope", r"'my_byo_tasks' has no attribute 'Nope' .*its Task classes: \['Fake', 'Ramp'\]"),
        ("my_byo_tasks:NOT_A_TASK", r"'my_byo_tasks:NOT_A_TASK' is a int; expected a Task class"),
        ("missing_file.py:Ramp", r"no file 'missing_file\.py'"),
    ]
    for spec, msg in cases:
        with pytest.raises(ValueError, match=r"tasks\.load_spec: " + msg) as info:
            tasks.load_spec(spec)
        one_line(info)
    with pytest.raises(ValueError, match=r"takes no other parameters than its own \{'steps': 5\}"):
        tasks.get("my_byo_tasks:RAMP5", steps=6)
    with pytest.raises(ValueError, match=r"the task from 'my_byo_tasks:Fake' is named 'copy', which is already regis"):
        tasks.get("my_byo_tasks:Fake")
