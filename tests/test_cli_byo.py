"""Bring your own model and task from the command line: `schurjax import`, `--task module:Name`, `--trials-file`."""

from __future__ import annotations

import sys
import textwrap

import jax
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax.cli import main

HOLD = textwrap.dedent("""
    import equinox as eqx, jax, jax.numpy as jnp, schurjax as sj

    class Hold(sj.tasks.Task):
        name = "hold"
        steps: int = eqx.field(default=12, static=True)
        n_in, n_out = 1, 1

        def sample(self, key, batch_size):
            a = jax.random.normal(key, (batch_size, 1, 1))
            x = jnp.zeros((batch_size, self.steps, 1)).at[:, :1].set(a)
            return sj.TaskBatch(x, jnp.broadcast_to(a, x.shape), jnp.ones_like(x))

        def score(self, y, batch):
            return 1 - sj.tasks.masked_mse(y, batch) / jnp.mean(batch.targets ** 2)
""")
SMALL = ["--families", "block,all_nonnormal", "--controls", "1", "--trials", "8", "--quiet"]


def _one_line_error(argv, capsys, expect):
    capsys.readouterr()
    rc = main(argv)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in lines[0], lines
    assert expect in lines[0], lines[0]


@pytest.fixture()
def hold_model(tmp_path, monkeypatch):
    """A model for a task defined in a file ``hold_tasks.py``; the task registry is restored afterwards."""
    (tmp_path / "hold_tasks.py").write_text(HOLD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sj.tasks, "REGISTRY", dict(sj.tasks.REGISTRY))  # ``module:Name`` registers on first use
    model = sj.TanhRNN(1, 10, 1, key=jax.random.key(3))
    sj.save_model(tmp_path / "m.eqx", model, {"seed": 3})  # metadata names no task: --task gives it
    yield tmp_path, model
    sys.modules.pop("hold_tasks", None)


def test_custom_task_through_sweep_cli_and_report(hold_model, capsys):
    tmp_path, model = hold_model
    assert main(["sweep", "m.eqx", "--task", "hold_tasks:Hold", *SMALL, "--out", "run", "--report"]) == 0
    run = sj.results.load(tmp_path / "run")
    assert run.manifest["config"]["models"][0]["task"] == "hold" and set(run.table.task) == {"hold"}
    assert (tmp_path / "run" / "report.html").read_text().count("data:image/png") >= 6
    # the same through the Python entry point with the task object: the same table
    task = sj.tasks.load_spec("hold_tasks:Hold")()
    again = sj.sweep(
        [(model, task, "m")],
        out=tmp_path / "py",
        families="block,all_nonnormal",
        controls=1,
        trials=8,
        progress=False,
        log=lambda s: None,
    )
    assert again.table.drop(columns=["model_seed"]).equals(run.table.drop(columns=["model_seed"]))
    _one_line_error(["sweep", "m.eqx", "--task", "hold_tasks:Nope", *SMALL, "--out", "x"], capsys, "--task: ")
    _one_line_error(["sweep", "m.eqx", "--task", "no_such_module:Hold", *SMALL, "--out", "x"], capsys, "--task: ")


def test_trials_file_is_what_every_variant_sees(hold_model, capsys):
    tmp_path, model = hold_model
    task = sj.tasks.load_spec("hold_tasks:Hold")()
    batch = task.sample(jax.random.key(7), 5)
    np.savez(tmp_path / "trials.npz", inputs=np.asarray(batch.inputs), targets=np.asarray(batch.targets))
    assert (
        main(
            [
                "sweep",
                "m.eqx",
                "--task",
                "hold_tasks:Hold",
                "--trials-file",
                "trials.npz",
                "--families",
                "all_nonnormal",
                "--controls",
                "0",
                "--quiet",
                "--out",
                "run",
            ]
        )
        == 0
    )
    run = sj.results.load(tmp_path / "run")
    assert run.manifest["config"]["trials"] == 5 and run.manifest["trials_file"]["trials"] == 5
    sf = sj.ordered_schur(model.W_rec)
    D = np.where(sf.coupling_mask, 0.0, sf.T)
    W = sf.Q @ D @ sf.Q.T
    tgt = np.asarray(batch.targets, np.float64)
    err = np.sum((rollout(model, batch.inputs, W)[0] - tgt) ** 2)  # independent float64 reference, the file's trials
    assert run.table.loss.iloc[0] == pytest.approx(err / tgt.size, rel=1e-4)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    _one_line_error(
        ["sweep", "m.eqx", "--task", "hold_tasks:Hold", "--trials-file", "bad.npz", "--out", "y"],
        capsys,
        "--trials-file: ",
    )
    np.savez(tmp_path / "long.npz", inputs=np.zeros((2, 20, 1)), targets=np.zeros((2, 20, 1)))
    _one_line_error(
        ["sweep", "m.eqx", "--task", "hold_tasks:Hold", "--trials-file", "long.npz", "--out", "y"],
        capsys,
        "--trials-file: long.npz does not fit model m",
    )


def test_import_a_torch_checkpoint_and_sweep_it(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"rnn": torch.nn.RNN(3, 12, batch_first=True), "readout": torch.nn.Linear(12, 3)})
    torch.save(net.state_dict(), tmp_path / "model.pt")
    assert main(["import", str(tmp_path / "model.pt"), "--out", str(tmp_path / "m.eqx"), "--task", "flipflop"]) == 0
    model, meta = sj.load_model(tmp_path / "m.eqx")
    np.testing.assert_array_equal(np.asarray(model.W_rec), net["rnn"].weight_hh_l0.detach().numpy())
    assert meta["task"]["name"] == "flipflop"
    assert main(["sweep", str(tmp_path / "m.eqx"), *SMALL, "--out", str(tmp_path / "run")]) == 0
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    _one_line_error(["import", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "j.eqx")], capsys, "junk.pt")
    gru = torch.nn.GRU(3, 12, batch_first=True)
    torch.save(
        {
            **{f"rnn.{k}": v for k, v in gru.state_dict().items()},
            "readout.weight": torch.zeros(3, 12),
            "readout.bias": torch.zeros(3),
        },
        tmp_path / "gru.pt",
    )
    _one_line_error(["import", str(tmp_path / "gru.pt"), "--out", str(tmp_path / "g.eqx")], capsys, "tanh")


def test_task_params_from_the_command_line_reach_the_task_and_the_manifest(hold_model, capsys):
    tmp_path, _ = hold_model
    argv = ["sweep", "m.eqx", "--task", "hold_tasks:Hold", "--task-param", "steps=7", *SMALL, "--out", "run"]
    assert main([*argv, "--criterion", "loss"]) == 0
    run = sj.results.load(tmp_path / "run")
    (entry,) = run.manifest["config"]["models"]
    assert entry["task_params"] == {"steps": 7}
    assert "criterion: keep = Δloss/loss ≤ 5%" in capsys.readouterr().out
    batch = run.manifest.get("trials_file")  # none: the batch was sampled from Hold(steps=7)
    assert batch is None and int(run.table.base_loss.nunique()) == 1
    _one_line_error([*argv[:-2], "--task-param", "steps", "--out", "y"], capsys, "--task-param")
    _one_line_error([*argv[:-2], "--task-param", "steps=3", "--out", "y"], capsys, "--task-param: steps is given")


def test_import_records_task_params_and_a_sweep_can_change_them(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = torch.nn.ModuleDict({"rnn": torch.nn.RNN(3, 8, batch_first=True), "readout": torch.nn.Linear(8, 3)})
    torch.save(net.state_dict(), tmp_path / "model.pt")
    out = str(tmp_path / "m.eqx")
    assert (
        main(["import", str(tmp_path / "model.pt"), "--out", out, "--task", "flipflop", "--task-param", "steps=30"])
        == 0
    )
    _, meta = sj.load_model(out)
    assert meta["task"]["name"] == "flipflop" and meta["task"]["params"]["steps"] == 30
    # without --task, --task-param changes the model's own recorded task (its other parameters kept)
    assert main(["sweep", out, "--task-param", "steps=20", *SMALL, "--out", str(tmp_path / "run")]) == 0
    (entry,) = sj.results.load(tmp_path / "run").manifest["config"]["models"]
    assert entry["task_params"] == {**meta["task"]["params"], "steps": 20}
    # a NeuroGym CTRNN file does not say its nonlinearity: the CLI asks for it instead of guessing
    _one_line_error(
        [
            "import",
            str(tmp_path / "model.pt"),
            "--out",
            str(tmp_path / "c.eqx"),
            "--layout",
            "neurogym",
            "--alpha",
            "0.2",
        ],
        capsys,
        "--nonlinearity: a NeuroGym CTRNN file does not record its nonlinearity",
    )
    _one_line_error(
        ["import", str(tmp_path / "model.pt"), "--out", str(tmp_path / "d.eqx"), "--task-param", "dt=2"],
        capsys,
        "--task-param: needs --task",
    )
