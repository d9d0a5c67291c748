"""Argument validation of the `schurjax` command that needs no model: one line on stderr, exit status 2."""

import pytest

from schurjax import cli


@pytest.mark.parametrize("lr", ["-1", "0", "nan", "inf", "fast"])
def test_train_rejects_bad_learning_rate(lr, tmp_path, capsys):
    rc = cli.main(["train", "--task", "sine", "--seeds", "0", "--steps", "2", "--lr", lr, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "--lr" in lines[0] and "expected a finite number > 0" in lines[0] and repr(lr) in lines[0]
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_demo_runs_each_task_once(monkeypatch, tmp_path):
    seen = {}

    def fake_sweep(models, **kw):
        seen["specs"] = list(models)
        raise SystemExit(0)

    monkeypatch.setattr("schurjax.sweeps.sweep", fake_sweep)
    with pytest.raises(SystemExit):
        cli.main(["demo", "--tasks", "copy,copy,flipflop,copy", "--seeds-per-task", "1", "--out", str(tmp_path / "d")])
    assert seen["specs"] == ["zoo:copy/0", "zoo:flipflop/0"]
