"""Hostile inputs: no code from data, no HTML from data, no writes outside the folder, bounded sizes and seeds.

Each case ends in a correct result or in a one-line error with exit 2, with nothing outside the folder touched and
no canary created.
"""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

import schurjax as sj
from schurjax.cli import main

SMALL = ["--families", "all_nonnormal", "--controls", "1", "--trials", "4", "--quiet"]

EVIL_PY = """
open("CANARY", "w").write("ran")
class X:
    pass
"""


def _one_line(argv, capsys, expect: str) -> str:
    capsys.readouterr()
    rc = main(argv)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in lines[0], (rc, lines)
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def hostile(tmp_path, monkeypatch):
    """A folder with a module and a file that would create CANARY when imported; the registry is restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sj.tasks, "REGISTRY", dict(sj.tasks.REGISTRY))
    (tmp_path / "evil_mod_sj.py").write_text(EVIL_PY)
    (tmp_path / "evil.py").write_text(EVIL_PY)
    yield tmp_path
    import sys

    sys.modules.pop("evil_mod_sj", None)


def _model_naming(path: Path, task: dict) -> Path:
    model = sj.TanhRNN(3, 8, 3, key=jax.random.key(0))
    return sj.save_model(path, model, {"task": task, "seed": 0})


@pytest.mark.parametrize(
    "task",
    [
        {"name": "os:system", "params": {"command": "touch CANARY"}},
        {"name": "evil.py:X", "params": {}},
        {"name": "evil_mod_sj:X", "params": {}},
        {"name": "neurogym:evil_mod_sj:Env", "params": {}},
        {"name": "neurogym:os:system", "params": {}},
    ],
    ids=["os-system", "file-py", "module", "neurogym-mod-env", "neurogym-os"],
)
def test_no_code_from_a_model_sidecar(hostile, capsys, task):
    m = _model_naming(hostile / "m.eqx", task)
    _one_line(["sweep", str(m), *SMALL, "--out", "run"], capsys, "m.eqx")
    assert not (hostile / "CANARY").exists()
    _one_line(["study", "--models", str(m), "--quick", "--out", "st"], capsys, "m.eqx")
    assert not (hostile / "CANARY").exists()
    with pytest.raises(sj.errors.InputError, match="m.eqx") as info:
        sj.sweep([str(m)], out=hostile / "py", families="all_nonnormal", trials=4, progress=False, log=lambda s: None)
    assert "\n" not in str(info.value)
    assert not (hostile / "CANARY").exists()


def test_user_code_only_a_task_class_named_in_this_call(hostile):
    with pytest.raises(ValueError, match="expected a Task class"):
        sj.tasks.load_spec("os:system")
    with pytest.raises(ValueError, match="not a Task"):
        sj.tasks.get("evil_mod_sj:X")  # imported because named here, but X is no task class
    with pytest.raises(ValueError, match="no ':'"):
        sj.tasks.neurogym("evil_mod_sj:Env")
    # a task named in a file resolves only to registered tasks
    assert sj.tasks.from_record("copy", {"length": 3}).steps == sj.tasks.get("copy", length=3).steps
    with pytest.raises(ValueError, match="names code to import"):
        sj.tasks.from_record("pathlib:Path", {})


def test_study_model_does_not_import_from_the_sidecar(hostile):
    """Study.model() reloads the source: a sidecar edited after the study must not run code."""
    import dataclasses

    from schurjax.studies.result import Study

    m = _model_naming(hostile / "m.eqx", {"name": "copy", "params": {}})
    m.with_suffix(".json").write_text(
        m.with_suffix(".json").read_text().replace('"name": "copy"', '"name": "evil_mod_sj:X"')
    )
    study = Study(Path("st"), None, [{"id": "m", "source": str(m), "weights_sha256": "x"}], {}, None, {}, {})
    with pytest.raises(sj.errors.InputError, match="names code to import"):
        dataclasses.replace(study).model("m")
    assert not (hostile / "CANARY").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small finished sweep; cases copy it."""
    out = tmp_path_factory.mktemp("sec") / "run"
    assert main(["sweep", "zoo:flipflop/0", *SMALL, "--out", str(out)]) == 0
    return out


def _copy(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, symlinks=True)
    return to


XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "\"'><svg onload=alert(1)>"]


def test_report_escapes_every_value_from_the_manifest(finished, tmp_path, capsys):
    import json

    run = _copy(finished, tmp_path / "run")
    p = run / "manifest.json"
    m = json.loads(p.read_text())
    cfg = m["config"]
    cfg["order"], cfg["controls"], cfg["control_max"] = XSS
    cfg["trials"], cfg["precision"], cfg["seed"] = XSS
    cfg["families"] = XSS
    cfg["control_kinds"] = [XSS[1]]
    m["versions"]["jax"], m["device"]["backend"] = XSS[:2]
    for model in m["models"]:
        model["source"] = XSS[2]
    p.write_text(json.dumps(m))
    rc = main(["report", str(run)])
    capsys.readouterr()
    html = (run / "report.html").read_text() if (run / "report.html").exists() else ""
    assert rc == 0, rc
    for bad in ("<script", "<img src=x", "<svg", "\"'>"):
        assert bad not in html, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
