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


HOLD_PY = """
import equinox as eqx, jax, jax.numpy as jnp, schurjax as sj
open("IMPORTED", "a").write("x")

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
"""


def test_import_of_your_own_task_records_which_task_flag_sweeps_it(hostile, capsys, monkeypatch):
    """`import --task mytasks:Hold` records the spec as text; a later sweep of the file (a fresh process: the
    registry as at start) refuses in one line naming the flag, without importing; with that flag it sweeps, on
    the recorded task parameters. A sidecar's source that is no plain spec is never echoed."""
    import json
    import sys

    torch = pytest.importorskip("torch")
    (hostile / "mytasks.py").write_text(HOLD_PY)
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"rnn": torch.nn.RNN(1, 6, batch_first=True), "readout": torch.nn.Linear(6, 1)})
    torch.save(net.state_dict(), hostile / "model.pt")
    at_start = dict(sj.tasks.REGISTRY)
    argv = ["import", "model.pt", "--out", "mh.eqx", "--task", "mytasks:Hold", "--task-param", "steps=9"]
    assert main(argv) == 0
    assert "sweep it with --task mytasks:Hold" in capsys.readouterr().out
    _, meta = sj.load_model(hostile / "mh.eqx")
    assert meta["task"] == {"name": "hold", "params": {"steps": 9}, "source": "mytasks:Hold"}
    monkeypatch.setattr(sj.tasks, "REGISTRY", dict(at_start))  # as a new process finds it
    monkeypatch.delitem(sys.modules, "mytasks")
    (hostile / "IMPORTED").unlink()
    line = _one_line(["sweep", "mh.eqx", *SMALL, "--out", "run"], capsys, "pass --task mytasks:Hold to import it")
    assert "task 'hold' is your own task from 'mytasks:Hold'" in line
    assert not (hostile / "IMPORTED").exists() and not (hostile / "run").exists()
    assert main(["sweep", "mh.eqx", "--task", "mytasks:Hold", *SMALL, "--out", "run"]) == 0
    (entry,) = sj.results.load(hostile / "run").manifest["config"]["models"]
    assert entry["task"] == "hold" and entry["task_params"]["steps"] == 9
    side = hostile / "mh.json"
    for forged in ["evil\n\x1b[31m:X", "<b>x</b>:Y", "a" * 400 + ":X", ["mytasks:Hold"]]:
        monkeypatch.setattr(sj.tasks, "REGISTRY", dict(at_start))
        side.write_text(json.dumps({**json.loads(side.read_text()), "task": {**meta["task"], "source": forged}}))
        line = _one_line(["sweep", "mh.eqx", *SMALL, "--out", "run2"], capsys, "unknown task name 'hold'")
        assert "\x1b" not in line and "<b>" not in line and "aaaa" not in line


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


# ---- writes stay inside the folder ------------------------------------------------------------------------------


def _outside(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A folder outside the run with a victim file; returns it, the file and a snapshot of the folder."""
    out = tmp_path / "outside"
    out.mkdir(exist_ok=True)
    victim = out / "victim.txt"
    victim.write_text("precious\n")
    return out, victim, _snapshot(out)


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def _file_link(run: Path, rel: str, victim: Path) -> None:
    p = run / rel
    if p.exists() or p.is_symlink():
        p.unlink()
    p.symlink_to(victim)


def _dir_link(run: Path, rel: str, outside: Path) -> None:
    import shutil

    p = run / rel
    if p.is_dir() and not p.is_symlink():
        for f in p.iterdir():
            shutil.copy(f, outside / f.name) if f.is_file() else None
        shutil.rmtree(p)
    p.symlink_to(outside, target_is_directory=True)


SWEEP_LINKS = [
    ("lock file", lambda run, o, v: _file_link(run, ".lock", v), "sweep", "symlink"),
    ("schur temp file", lambda run, o, v: _file_link(run, "schur/.flipflop-0.tmp.npz", v), "sweep", None),
    ("chunk file", lambda run, o, v: _file_link(run, "chunks/000-00000.json", v), "sweep", None),
    ("table.csv", lambda run, o, v: _file_link(run, "table.csv", v), "sweep", None),
    ("manifest-less COMPLETE", lambda run, o, v: _file_link(run, "COMPLETE", v), "sweep", None),
    ("chunks folder", lambda run, o, v: _dir_link(run, "chunks", o), "sweep", "symlink"),
    ("schur folder", lambda run, o, v: _dir_link(run, "schur", o), "sweep", "symlink"),
    ("figures folder", lambda run, o, v: _dir_link(run, "figures", o), "report", "symlink"),
    ("report.html", lambda run, o, v: _file_link(run, "report.html", v), "report", None),
    ("figure file", lambda run, o, v: _file_link(run, "figures/keep_by_family.png", v), "report", None),
]


@pytest.mark.parametrize("damage,command,expect", [c[1:] for c in SWEEP_LINKS], ids=[c[0] for c in SWEEP_LINKS])
def test_sweep_writes_stay_inside_the_run(finished, tmp_path, capsys, damage, command, expect):
    run = _copy(finished, tmp_path / "run")
    (run / "figures").mkdir(exist_ok=True)
    outside, victim, before = _outside(tmp_path)
    if command == "sweep" and expect is None:  # a rerun that must rewrite: drop a chunk and the table
        (run / "COMPLETE").unlink(missing_ok=True)
    damage(run, outside, victim)
    before = _snapshot(outside)
    argv = ["sweep", "zoo:flipflop/0", *SMALL, "--out", str(run)] if command == "sweep" else ["report", str(run)]
    if expect is None:
        capsys.readouterr()
        assert main(argv) == 0
    else:
        _one_line(argv, capsys, expect)
    assert _snapshot(outside) == before, "a write landed outside the run folder"
    assert victim.read_text() == "precious\n"


def test_safe_io_refuses_every_symlinked_component(tmp_path):
    from schurjax.store import _safe_io

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    outside, victim, before = _outside(tmp_path)
    (root / "a" / "b").symlink_to(outside, target_is_directory=True)
    for rel in ("a/b/x.json", "a/b/c/x.json"):
        with pytest.raises(sj.errors.InputError, match="is a symlink") as info:
            _safe_io.write_bytes(root, rel, b"x")
        assert "\n" not in str(info.value)
    with pytest.raises(sj.errors.InputError, match="is a symlink"):
        _safe_io.mkdirs(root, "a/b/c")
    with pytest.raises(sj.errors.InputError, match="not inside"):
        _safe_io.write_bytes(root, "/etc/x", b"x")
    with pytest.raises(sj.errors.InputError, match="not a path inside"):
        _safe_io.write_bytes(root, "a/../../x", b"x")
    (root / "a" / "f").symlink_to(victim)
    _safe_io.write_bytes(root, "a/f", b"new")  # the link is replaced, never written through
    assert not (root / "a" / "f").is_symlink() and (root / "a" / "f").read_bytes() == b"new"
    assert _snapshot(outside) == before
    with pytest.raises(sj.errors.InputError, match="symlink"):
        _safe_io.read_bytes(root, "a/b/victim.txt")
    assert [p.name for p in (root / "a").iterdir() if p.name.endswith(".tmp")] == []


STUDY_TINY = {
    "trials": 8,
    "bootstrap": 10,
    "control_max": 3,
    "greedy_candidates": 3,
    "greedy_passes": 1,
    "restriction_max": 3,
    "null_draws": 10,
}


def _study_models():
    return [(sj.TanhRNN(3, 8, 2, key=jax.random.key(1), gain=1.2), sj.tasks.get("copy", length=2, delay=1), "c")]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("secstudy") / "s"
    sj.study(out=out, models=_study_models(), progress=False, log=lambda s: None, **STUDY_TINY)
    return out


STUDY_LINKS = [
    ("report.md", lambda s, o, v: _file_link(s, "report.md", v), None),
    ("figure.png", lambda s, o, v: _file_link(s, "figure.png", v), None),
    ("table csv", lambda s, o, v: _file_link(s, "tables/keep.csv", v), None),
    ("compressed json", lambda s, o, v: _file_link(s, "compressed/c-n8-loss.json", v), None),
    ("tables folder", lambda s, o, v: _dir_link(s, "tables", o), "symlink"),
    ("compressed folder", lambda s, o, v: _dir_link(s, "compressed", o), "symlink"),
]


@pytest.mark.parametrize("damage,expect", [c[1:] for c in STUDY_LINKS], ids=[c[0] for c in STUDY_LINKS])
def test_study_writes_stay_inside_the_folder(finished_study, tmp_path, damage, expect):
    st = _copy(finished_study, tmp_path / "s")
    outside, victim, _ = _outside(tmp_path)
    damage(st, outside, victim)
    before = _snapshot(outside)
    run = lambda: sj.study(out=st, models=_study_models(), progress=False, log=lambda s: None, **STUDY_TINY)  # noqa: E731
    if expect is None:
        run()
    else:
        with pytest.raises(sj.errors.InputError, match=expect) as info:
            run()
        assert "\n" not in str(info.value)
    assert _snapshot(outside) == before, "a write landed outside the study folder"
    assert victim.read_text() == "precious\n"


# ---- memory before loading ------------------------------------------------------------------------------------


def _npz_declaring(path: Path, shape: tuple, *, real: int = 10) -> Path:
    """An .npz whose inputs.npy header declares ``shape`` but holds only ``real`` values (a 10 KB file)."""
    import io
    import zipfile

    import numpy as np

    def member(shape_, data: bytes) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape_})
        return buf.getvalue() + data

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("inputs.npy", member(shape, b"\0" * 4 * real))
        zf.writestr("targets.npy", member(shape, b"\0" * 4 * real))
    return path


def test_trials_file_declaring_a_huge_shape_is_refused_before_loading(tmp_path, capsys):
    f = _npz_declaring(tmp_path / "huge.npz", (10**12, 100, 3))
    assert f.stat().st_size < 20_000
    line = _one_line(
        ["sweep", "zoo:flipflop/0", *SMALL, "--trials-file", str(f), "--out", str(tmp_path / "r")],
        capsys,
        "--trials-file",
    )
    assert "huge.npz" in line
    with pytest.raises(ValueError, match="huge.npz"):
        sj.TaskBatch.from_npz(f)
    assert not (tmp_path / "r").exists()


def test_compressed_trials_file_is_bounded_by_the_sweep_before_loading(tmp_path, capsys, monkeypatch):
    """A small compressed file that expands to 400 MB: refused from its headers, naming --trials-file."""
    import resource

    import numpy as np

    f = tmp_path / "bomb.npz"
    x = np.zeros((250_000, 100, 3), np.float32)  # 300 MB of zeros, compressed to well under 1 MB
    np.savez_compressed(f, inputs=x, targets=np.zeros((250_000, 100, 1), np.float32))
    del x
    assert f.stat().st_size < 2_000_000
    monkeypatch.setattr("schurjax.runtime.environment.available_memory", lambda *a, **k: 16 * 2**30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = _one_line(
        ["sweep", "zoo:flipflop/0", *SMALL, "--trials-file", str(f), "--out", str(tmp_path / "r")],
        capsys,
        "--trials-file",
    )
    assert "bomb.npz" in line and "250,000 trials" in line, line
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing was loaded


def test_trials_file_that_is_text_or_pickle(tmp_path, capsys):
    import numpy as np

    text = tmp_path / "notes.npz"
    text.write_text("these are my notes\n")
    line = _one_line(
        ["sweep", "zoo:flipflop/0", *SMALL, "--trials-file", str(text), "--out", str(tmp_path / "r")],
        capsys,
        "not an .npz archive",
    )
    assert "allow_pickle" not in line and "notes.npz" in line
    obj = tmp_path / "obj.npz"
    np.savez(obj, inputs=np.array([{"a": 1}], dtype=object), targets=np.zeros((1, 2, 3)))
    line = _one_line(
        ["sweep", "zoo:flipflop/0", *SMALL, "--trials-file", str(obj), "--out", str(tmp_path / "r")],
        capsys,
        "pickled objects",
    )
    assert "allow_pickle" not in line


# ---- seeds and sizes ------------------------------------------------------------------------------------------


def test_seeds_are_injective_and_bounded(tmp_path, capsys):
    from schurjax._seeds import root_key
    from schurjax.sweeps.config import batch_key

    assert jax.random.key_data(root_key(7)).tolist() == jax.random.key_data(jax.random.key(7)).tolist()
    datas = {tuple(jax.random.key_data(root_key(s)).tolist()) for s in (0, 1, 2**32, 2**32 + 1, 2**63 - 1, 2**62)}
    assert len(datas) == 6
    a, b = (jax.random.key_data(batch_key(s, "copy", {})).tolist() for s in (0, 2**32))
    assert a != b
    common = ["sweep", "zoo:flipflop/0", *SMALL]
    assert main([*common, "--seed", "0", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--seed", str(2**32), "--out", str(tmp_path / "b")]) == 0
    ta, tb = (sj.results.load(tmp_path / x).table for x in "ab")
    assert not ta.base_loss.equals(tb.base_loss), "--seed 2**32 gave the table of --seed 0"
    _one_line([*common, "--seed", "9223372036854775808", "--out", str(tmp_path / "c")], capsys, "--seed")
    for bad in (2**70, 2**63, -1):
        with pytest.raises(sj.errors.InputError, match=r"seed: must be an int") as info:
            sj.sweep(["zoo:flipflop/0"], out=tmp_path / "d", seed=bad, progress=False, log=lambda s: None)
        assert "\n" not in str(info.value)
    _one_line(["study", "--quick", "--seed", str(2**64), "--out", str(tmp_path / "e")], capsys, "--seed")
    with pytest.raises(sj.errors.InputError, match="seed"):
        sj.study(out=tmp_path / "f", seed=2**64)
    assert not (tmp_path / "d").exists() and not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    "kwargs,arg",
    [({"controls": 10**9}, "controls"), ({"controls": 10**23}, "controls"), ({"trials": 10**12}, "trials")],
)
def test_sweep_sizes_refused_before_allocating(tmp_path, kwargs, arg):
    with pytest.raises(sj.errors.InputError, match=rf"sweep: {arg}: must be") as info:
        sj.sweep(["zoo:flipflop/0"], out=tmp_path / "r", progress=False, log=lambda s: None, **kwargs)
    assert "\n" not in str(info.value) and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flag,value",
    [("--controls", "1e23"), ("--controls", "10000000"), ("--num-processes", "99999999999999999999")],
)
def test_sweep_size_flags(tmp_path, capsys, flag, value):
    _one_line(["sweep", "zoo:flipflop/0", *SMALL, flag, value, "--out", str(tmp_path / "r")], capsys, flag)


@pytest.mark.parametrize("flag", ["--bootstrap", "--null-draws", "--trials"])
def test_study_sizes_refused_before_allocating(tmp_path, capsys, flag):
    _one_line(["study", "--quick", flag, "1000000000", "--out", str(tmp_path / "s")], capsys, flag)
    _one_line(["study", "--quick", flag, "1e9", "--out", str(tmp_path / "s")], capsys, flag)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("n_hidden", [10**6, 30000, 1e6])
def test_sidecar_sizes_bounded_before_loading(hostile, capsys, n_hidden):
    import json

    m = _model_naming(hostile / "m.eqx", {"name": "flipflop", "params": {}})
    side = m.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["sizes"]["n_hidden"] = n_hidden
    side.write_text(json.dumps(meta))
    _one_line(["sweep", str(m), *SMALL, "--out", "run"], capsys, "m.json")


# ---- Python inputs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mid", ["../../../escaped_id", "a/b", ".hidden", "", "x\0y"])
def test_model_ids_are_safe_file_names(tmp_path, monkeypatch, mid):
    monkeypatch.chdir(tmp_path)
    model, task = sj.zoo.load("flipflop", seed=0), sj.zoo.task("flipflop")
    with pytest.raises(sj.errors.InputError, match="models: .*not a safe file name") as info:
        sj.sweep(
            [(model, task, mid)],
            out=tmp_path / "a" / "b" / "run",
            families="all_nonnormal",
            trials=4,
            progress=False,
            log=lambda s: None,
        )
    assert "\n" not in str(info.value).replace("\\n", "")
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_empty_out_and_reserved_manifest_entries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kw = dict(families="all_nonnormal", trials=4, progress=False, log=lambda s: None)
    with pytest.raises(sj.errors.InputError, match="out: must name a folder"):
        sj.sweep(["zoo:flipflop/0"], out="", **kw)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(sj.errors.InputError, match="extra_manifest: must not replace .*config"):
        sj.sweep(["zoo:flipflop/0"], out=tmp_path / "r", extra_manifest={"config": {"x": 1}}, **kw)
    run = sj.sweep(["zoo:flipflop/0"], out=tmp_path / "r", extra_manifest={"note": "<mine>"}, **kw)
    assert run.manifest["note"] == "<mine>" and sj.results.load(tmp_path / "r").manifest["config"]["trials"] == 4


# ---- chunk identity -----------------------------------------------------------------------------------------------


def test_sweep_chunk_copied_under_another_name_is_recomputed(tmp_path, capsys):
    import shutil

    argv = ["sweep", "zoo:flipflop/0", "zoo:flipflop/1", *SMALL, "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    run = tmp_path / "run"
    table = (run / "table.csv").read_bytes()
    shutil.copy(run / "chunks" / "000-00000.json", run / "chunks" / "001-00000.json")
    (run / "COMPLETE").unlink()
    capsys.readouterr()
    assert main([*argv[:-2], "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "made for another chunk" in err and "001-00000" in err, err
    assert (run / "table.csv").read_bytes() == table


def test_study_part_copied_into_another_slot_is_recomputed(finished_study, tmp_path):
    import shutil

    st = _copy(finished_study, tmp_path / "s")
    table = (st / "table.csv").read_bytes()
    chunks = sorted((st / "chunks").glob("*.json"))
    shutil.copy(chunks[0], chunks[1])  # selection over held-out
    shutil.copy(chunks[0], chunks[2])  # selection over controls
    log: list[str] = []
    sj.study(out=st, models=_study_models(), progress=True, log=log.append, **STUDY_TINY)
    assert sum("made for another chunk" in x for x in log) == 2, log
    assert (st / "table.csv").read_bytes() == table


def _as_earlier_version(chunk: Path) -> None:
    """Rewrite a chunk file as a schurjax from before chunk identities wrote it: no identity, a valid checksum."""
    import hashlib
    import json

    from schurjax.store._json import canonical

    body = {k: v for k, v in json.loads(chunk.read_bytes()).items() if k not in ("identity", "sha256")}
    chunk.write_text(canonical({**body, "sha256": hashlib.sha256(canonical(body).encode()).hexdigest()}))


def test_chunks_of_an_earlier_version_are_named_as_such(finished, finished_study, tmp_path, capsys):
    """A chunk without an identity record is said to come from an earlier schurjax: a sweep recomputes it (the
    same table), loading a study refuses it in one line saying how to proceed, and the study's rerun repairs it."""
    run = _copy(finished, tmp_path / "run")
    table = (run / "table.csv").read_bytes()
    for c in (run / "chunks").glob("*.json"):
        _as_earlier_version(c)
    (run / "COMPLETE").unlink()
    capsys.readouterr()
    assert main(["sweep", "zoo:flipflop/0", *SMALL, "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "(written by an earlier version of schurjax, which recorded no chunk identity)" in err, err
    assert "records no identity" not in err and (run / "table.csv").read_bytes() == table
    st = _copy(finished_study, tmp_path / "s")
    _as_earlier_version(sorted((st / "chunks").glob("*.json"))[0])
    line = _one_line(["report", str(st)], capsys, "was written by an earlier version of schurjax")
    assert f"delete {st / 'chunks'} first, or run the study with a fresh --out" in line, line
    with pytest.raises(sj.errors.InputError, match="earlier version of schurjax"):
        sj.studies.load(st)
    sj.study(out=st, models=_study_models(), progress=False, log=lambda s: None, **STUDY_TINY)
    assert len(sj.studies.load(st).summary) == 1


# ---- study folders: COMPLETE vouches for every file ------------------------------------------------------------


def _edit_part(st: Path) -> None:
    import json

    p = sorted((st / "chunks").glob("*.json"))[0]
    d = json.loads(p.read_text())
    d["result"] = {"x": 1}
    p.write_text(json.dumps(d))


STUDY_DAMAGE = [
    ("truncated table.csv", lambda st: (st / "table.csv").write_bytes((st / "table.csv").read_bytes()[:60])),
    ("edited keep.csv", lambda st: (st / "tables" / "keep.csv").write_text("model\nforged\n")),
    ("edited part", _edit_part),
    ("torn figure", lambda st: (st / "figure.png").write_bytes((st / "figure.png").read_bytes()[:1000])),
    ("foreign table", lambda st: (st / "tables" / "forged.csv").write_text("a\n1\n")),
    (
        "swapped compressed models",
        lambda st: [
            (st / "compressed" / "c-n8-loss.eqx").rename(st / "compressed" / "tmp"),
            (st / "compressed" / "c-n8-score.eqx").rename(st / "compressed" / "c-n8-loss.eqx"),
            (st / "compressed" / "tmp").rename(st / "compressed" / "c-n8-score.eqx"),
        ],
    ),
]


def test_single_model_study_loads(finished_study):
    st = sj.studies.load(finished_study)
    assert len(st.summary) == 1 and "keep" in st.tables


@pytest.mark.parametrize("damage", [c[1] for c in STUDY_DAMAGE], ids=[c[0] for c in STUDY_DAMAGE])
def test_study_load_refuses_damage_and_rerun_repairs(finished_study, tmp_path, damage):
    st = _copy(finished_study, tmp_path / "s")
    files = {p.relative_to(st): p.read_bytes() for p in st.rglob("*") if p.is_file() and p.parent.name != "chunks"}
    damage(st)
    with pytest.raises((sj.errors.InputError, ValueError)) as info:
        sj.studies.load(st)
    assert "\n" not in str(info.value)
    sj.study(out=st, models=_study_models(), progress=False, log=lambda s: None, **STUDY_TINY)
    again = sj.studies.load(st)
    assert len(again.summary) == 1
    for rel in ("table.csv", "tables/keep.csv", "compressed/c-n8-loss.eqx", "compressed/c-n8-score.eqx"):
        assert (st / rel).read_bytes() == files[Path(rel)], rel


# ---- user task errors and degenerate input ---------------------------------------------------------------------

BAD_TASKS = """
import jax.numpy as jnp
import numpy as np
import schurjax as sj


class Base(sj.tasks.Task):
    name = "base"
    n_in = 3
    n_out = 3
    steps = 5
    def sample(self, key, batch_size):
        x = np.ones((batch_size, 5, 3), np.float32)
        return sj.TaskBatch.from_arrays(x, x)
    def score(self, y, batch):
        return 1.0 - sj.tasks.masked_mse(y, batch)

class Raises(Base):
    name = "raises"
    def sample(self, key, batch_size):
        raise RuntimeError("my bug")

class Eleven(Base):
    name = "eleven"
    def sample(self, key, batch_size):
        return Base.sample(self, key, 11)

class Nan(Base):
    name = "nan"
    def sample(self, key, batch_size):
        b = Base.sample(self, key, batch_size)
        return sj.TaskBatch(b.inputs.at[0, 0, 0].set(jnp.nan), b.targets, b.mask)

class Dict(Base):
    name = "dict"
    def sample(self, key, batch_size):
        b = Base.sample(self, key, batch_size)
        return {"inputs": b.inputs, "targets": b.targets}

class Tuple(Base):
    name = "tuple"
    def sample(self, key, batch_size):
        b = Base.sample(self, key, batch_size)
        return (b.inputs, b.targets, b.mask)

class Zero(Base):
    name = "zero"
    def sample(self, key, batch_size):
        x = np.ones((batch_size, 5, 3), np.float32)
        return sj.TaskBatch.from_arrays(x, x, np.zeros_like(x))

class Short(Base):
    name = "short"
    def sample(self, key, batch_size):
        x = np.ones((batch_size, 4, 3), np.float32)
        return sj.TaskBatch.from_arrays(x, x)

class ScoreRaises(Base):
    name = "score_raises"
    def score(self, y, batch):
        raise ValueError("score bug")

class ScoreVector(Base):
    name = "score_vector"
    def score(self, y, batch):
        return jnp.ones(3)

class LossInf(Base):
    name = "loss_inf"
    def loss(self, y, batch):
        return jnp.inf
"""


@pytest.mark.parametrize(
    "cls,expect",
    [
        ("Raises", "Raises ('raises'): sample(key, 4) failed: RuntimeError: my bug"),
        ("Eleven", "returned 11 trials; expected exactly 4"),
        ("Nan", "NaN"),
        ("Dict", "got a dict"),
        ("Tuple", "got tuple"),
        ("Zero", "mask of its batch is all zero"),
        ("Short", "Short"),
        ("ScoreRaises", "score(y, batch) failed: ValueError: score bug"),
        ("ScoreVector", "returned shape (3,)"),
        ("LossInf", "is inf"),
    ],
)
def test_user_task_errors_are_user_errors(hostile, capsys, cls, expect):
    (hostile / "bad_tasks_sj.py").write_text(BAD_TASKS)
    model = sj.TanhRNN(3, 6, 3, key=jax.random.key(0))
    sj.save_model(hostile / "m.eqx", model, {})
    capsys.readouterr()
    rc = main(["sweep", "m.eqx", "--task", f"bad_tasks_sj:{cls}", *SMALL, "--out", "run"])
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if "error" in x]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err and "--task: " in errors[0], err
    line = errors[0]
    assert expect in line and "internal error" not in line, line
    import sys

    sys.modules.pop("bad_tasks_sj", None)


def test_all_zero_mask_in_a_trials_file(tmp_path, capsys):
    import numpy as np

    task = sj.zoo.task("flipflop")
    b = task.sample(jax.random.key(0), 4)
    f = tmp_path / "zero.npz"
    np.savez(f, inputs=np.asarray(b.inputs), targets=np.asarray(b.targets), mask=np.zeros(np.shape(b.targets)))
    _one_line(
        ["sweep", "zoo:flipflop/0", *SMALL, "--trials-file", str(f), "--out", str(tmp_path / "r")],
        capsys,
        "mask is all zero",
    )


def test_report_of_a_study_folder(finished_study, tmp_path, capsys):
    st = _copy(finished_study, tmp_path / "s")
    capsys.readouterr()
    assert main(["report", str(st)]) == 0
    out = capsys.readouterr().out
    assert "Schur-coupling study" in out and "figure.png" in out
    (st / "tables" / "keep.csv").write_text("forged\n")
    _one_line(["report", str(st)], capsys, "keep.csv")


@pytest.mark.parametrize("sig,rc", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_swallowed_signal_still_stops_the_command(monkeypatch, capsys, sig, rc):
    """XLA's gc callback swallows a handler's exception ("Exception ignored in _xla_gc_callback"): the command
    must still end with the signal's exit status, never 0."""
    import signal

    from schurjax import cli

    def swallowing(args):
        try:
            signal.raise_signal(getattr(signal, sig))
        except BaseException:  # noqa: BLE001 - what the gc callback does
            pass
        return 0

    monkeypatch.setitem(cli.COMMANDS, "info", swallowing)
    assert main(["info"]) == rc
    assert "terminated" in capsys.readouterr().err or sig == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- several processes ------------------------------------------------------------------------------------------


def test_coordinator_checks_are_bounded(tmp_path, capsys):
    import time

    base = ["sweep", "zoo:flipflop/0", *SMALL, "--out", str(tmp_path / "r")]
    _one_line(
        [*base, "--coordinator", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "1"],
        capsys,
        "port in 1..65535",
    )
    _one_line(
        [*base, "--coordinator", "127.0.0.1:1", "--num-processes", "99999999999999999999", "--process-id", "1"],
        capsys,
        "--num-processes",
    )
    t0 = time.monotonic()
    line = _one_line(
        [*base, "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1", "--timeout", "2"],
        capsys,
        "--coordinator: process 1 of 2 could not reach 127.0.0.1:1 within 2 s",
    )
    assert time.monotonic() - t0 < 30 and "rerun" in line
    assert not (tmp_path / "r").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(out, port, n, pid, timeout=30):
    """One ``schurjax sweep`` process of ``n`` over loopback (stderr piped)."""
    import os
    import subprocess
    import sys

    argv = ["sweep", "zoo:flipflop/0", *SMALL, "--out", str(out), "--coordinator", f"127.0.0.1:{port}"]
    argv += ["--num-processes", str(n), "--process-id", str(pid), "--timeout", str(timeout)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        [sys.executable, "-m", "schurjax.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _ended(p, within: float) -> tuple[int, list[str]]:
    """The exit status and the non-empty stderr lines of a process that must end within ``within`` seconds."""
    import subprocess

    try:
        _, err = p.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"still running {within} s later") from None
    return p.returncode, [x for x in err.decode().splitlines() if x.strip()]


def _until(cond, what: str, within: float = 60) -> None:
    import time

    end = time.monotonic() + within
    while not cond():
        assert time.monotonic() < end, f"never {what}"
        time.sleep(0.1)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig,rc,word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_stops_a_process_waiting_for_the_others(tmp_path, sig, rc, word):
    """Process 0 alone (of 2) waits in XLA's C++ join, where Python runs no handler: the signal still ends it at
    once, with its own status and one line naming the missing process; the folder it created is gone again."""
    import signal

    port = _free_port()
    p = _process(tmp_path / "run", port, 2, 0, timeout=60)
    _until(lambda: _listening(port) or p.poll() is not None, "joined")  # its coordinator is up: it waits in C++
    p.send_signal(getattr(signal, sig))
    code, lines = _ended(p, within=15)
    assert code == rc and len(lines) == 1 and "Traceback" not in lines[0], (code, lines)
    assert f"{word} while process 0 of 2 waited at 127.0.0.1:{port} for process 1 to join" in lines[0]
    assert "rerun the same command on every process" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_join_deadline_names_the_missing_process(tmp_path):
    """Processes 0 and 1 of 3 wait for process 2: --timeout ends each in one line (exit 2, never XLA's abort),
    and each names who is missing, read from the folder's process locks."""
    port = _free_port()
    zero = _process(tmp_path / "run", port, 3, 0, timeout=6)
    _until(lambda: _listening(port), "listened")
    one = _process(tmp_path / "run", port, 3, 1, timeout=6)
    code, lines = _ended(zero, within=60)
    assert code == 2 and len(lines) == 1, (code, lines)
    assert lines[0].startswith("schurjax sweep: error: --timeout: process 0 of 3 waited 6 s at 127.0.0.1:")
    assert "but process 2 did not join; start it with the same command and --process-id 2" in lines[0]
    code, lines = _ended(one, within=60)
    assert code == 2 and len(lines) == 1 and "Traceback" not in lines[0], (code, lines)
    assert "process 1 of 3 waited" in lines[0] and "processes 0, 2 did not join" in lines[0], lines[0]


@pytest.mark.slow
def test_two_processes_with_one_id_are_refused_at_once(tmp_path):
    """A second --process-id 0 (or 1) for the folder is refused in one line while the first waits, instead of both
    waiting for a process that never comes; a second process 0 with its own folder finds the port taken."""
    import signal

    port = _free_port()
    zero = _process(tmp_path / "run", port, 3, 0)
    _until(lambda: _listening(port), "listened")
    one = _process(tmp_path / "run", port, 3, 1)
    _until(lambda: (tmp_path / "run" / ".lock-1").exists(), "claimed 1")
    try:
        cases = [
            (0, "run", "--process-id: process 0 of 3 is already running (process "),
            (1, "run", "--process-id: process 1 of 3 is already running (process "),
            (0, "other", f"--coordinator: port {port} is already in use on this host"),
        ]
        started = [_process(tmp_path / out, port, 3, pid) for pid, out, _ in cases]
        for p, (pid, out, expect) in zip(started, cases, strict=True):
            code, lines = _ended(p, within=60)  # a hang guard: three processes start at once on a busy machine
            assert code == 2 and len(lines) == 1 and expect in lines[0], (pid, out, code, lines)
            assert "each once" in lines[0] or "choose another port" in lines[0]
        assert not (tmp_path / "other").exists()
    finally:
        zero.send_signal(signal.SIGTERM)
        code, lines = _ended(zero, within=5)
        one.send_signal(signal.SIGTERM)
    assert code == 143 and len(lines) == 1 and "process 0 of 3 waited" in lines[0], (code, lines)
    assert "for process 2 to join" in lines[0]  # process 1 is there
    code, lines = _ended(one, within=5)
    assert code == 143 and len(lines) == 1 and "for processes 0, 2 to join" in lines[0], (code, lines)


def test_resumed_sweep_never_mixes_trials_of_edited_task_code(hostile, capsys, monkeypatch):
    """A custom task's sample edited between a stopped sweep and its resume: the chunks of the old trials are
    recomputed (their identity holds the trials' SHA-256), so the table holds one base loss per model."""
    import sys

    src = BAD_TASKS.replace("np.ones((batch_size, 5, 3), np.float32)", "np.full((batch_size, 5, 3), SCALE, np.float32)")
    model = sj.TanhRNN(3, 6, 3, key=jax.random.key(0))
    sj.save_model(hostile / "m.eqx", model, {})
    argv = [
        "sweep",
        "m.eqx",
        "--task",
        "trial_code_sj:Base",
        "--families",
        "block,all_nonnormal",
        "--controls",
        "0",
        "--trials",
        "4",
        "--chunk-size",
        "2",
        "--quiet",
        "--out",
        "run",
    ]
    (hostile / "trial_code_sj.py").write_text("SCALE = 1.0\n" + src)
    stop = {"n": 0}

    def on_chunk(*a):
        stop["n"] += 1
        if stop["n"] == 1:
            raise KeyboardInterrupt

    import schurjax.sweeps.loop as loop

    orig = loop.run_sweep
    with monkeypatch.context() as mp:
        mp.setattr("schurjax.sweeps.run_sweep", lambda *a, **k: orig(*a, **{**k, "on_chunk": on_chunk}))
        assert main(argv) == 130
    sys.modules.pop("trial_code_sj", None)
    sj.tasks.REGISTRY.pop("base", None)
    (hostile / "trial_code_sj.py").write_text("SCALE = 0.5\n" + src)
    capsys.readouterr()
    assert main(argv) == 0
    assert "made for another chunk" in capsys.readouterr().err
    table = sj.results.load(hostile / "run").table
    assert table.base_loss.nunique() == 1, table.base_loss.tolist()
    sys.modules.pop("trial_code_sj", None)


def test_python_model_pairs_are_checked(tmp_path):
    model, task = sj.zoo.load("flipflop", seed=0), sj.zoo.task("flipflop")
    kw = dict(out=tmp_path / "r", families="all_nonnormal", trials=4, progress=False, log=lambda s: None)
    with pytest.raises(sj.errors.InputError, match=r"models: \[0\] holds a dict where a TanhRNN"):
        sj.sweep([({"W_rec": 1}, task)], **kw)
    with pytest.raises(sj.errors.InputError, match=r"models: \[0\] needs a task object or name"):
        sj.sweep([(model, 3)], **kw)
    run = sj.sweep([(model, "flipflop")], **kw)  # a task name given here resolves
    assert set(run.table.task) == {"flipflop"}


def test_a_full_disk_during_an_export_is_one_line(tmp_path):
    import errno

    from schurjax.store import _safe_io

    def writer(tmp):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("TreePathError-like wrapper") from e

    with pytest.raises(sj.errors.InputError, match="No space left on device") as info:
        _safe_io.write_files(tmp_path, "compressed", writer)
    assert "\n" not in str(info.value)
    assert list((tmp_path / "compressed").iterdir()) == []


def test_trials_flag_disagreeing_with_the_trials_file(tmp_path, capsys):
    import numpy as np

    b = sj.zoo.task("flipflop").sample(jax.random.key(0), 8)
    f = tmp_path / "good.npz"
    np.savez(f, inputs=np.asarray(b.inputs), targets=np.asarray(b.targets))
    argv = ["sweep", "zoo:flipflop/0", "--families", "all_nonnormal", "--controls", "0", "--quiet"]
    _one_line(
        [*argv, "--trials", "16", "--trials-file", str(f), "--out", str(tmp_path / "r")],
        capsys,
        "--trials: 16 disagrees with --trials-file",
    )
    assert main([*argv, "--trials", "8", "--trials-file", str(f), "--out", str(tmp_path / "r")]) == 0


def test_run_batch_gives_back_the_trials_of_a_row(finished):
    import numpy as np

    run = sj.results.load(finished)
    batch = run.batch("flipflop-0")
    model, task = sj.zoo.load("flipflop", seed=0), sj.zoo.task("flipflop")
    y = jax.vmap(model)(batch.inputs)
    base = float(run.table.base_loss.iloc[0])
    assert np.isclose(float(task.loss(y, batch)), base, rtol=1e-3), (float(task.loss(y, batch)), base)
    with pytest.raises(sj.errors.InputError, match="no model"):
        run.batch("nope")


def test_trial_stats_reading_valid_align_with_single_variants():
    """``evaluate(trial_stats=fn)`` with ``fn`` reading ``batch.valid``, in chunks of 4 over 6 variants: each row
    equals evaluating that variant alone (the issue saw rows 4 and 5 repeat rows 0 and 1)."""
    import jax.numpy as jnp
    import numpy as np

    task, model = sj.tasks.get("flipflop"), sj.zoo.load("flipflop", seed=0)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    v = sj.ablate.block_couplings(sf)[np.arange(6)]
    b = task.sample(jax.random.key(0), 5)
    valid = np.ones((5, b.inputs.shape[1]), bool)
    valid[:, -3:] = False
    b = sj.TaskBatch.from_arrays(np.asarray(b.inputs), np.asarray(b.targets), np.asarray(b.mask), valid=valid)

    def fn(y, batch):
        return jnp.sum(y**2 * batch.valid[:, :, None], axis=(1, 2))[:, None]

    res = np.asarray(sj.evaluate(model, sf, v, b, trial_stats=fn, compiled_chunk=4).trial_stats)
    for k in range(6):
        alone = np.asarray(sj.evaluate(model, sf, v[np.array([k])], b, trial_stats=fn).trial_stats[0])
        np.testing.assert_allclose(res[k], alone, rtol=1e-4)


def test_a_task_too_long_for_memory_names_the_task(tmp_path):
    from types import SimpleNamespace

    from schurjax.sweeps.budget import check_sizes

    task = SimpleNamespace(name="huge", steps=10**12, n_in=3, n_out=3)
    plan = SimpleNamespace(spec=SimpleNamespace(task=task), sf=SimpleNamespace(n=64))
    with pytest.raises(sj.errors.InputError, match=r"sweep: task: task 'huge': one trial of"):
        check_sizes([plan], SimpleNamespace(trials=8, chunk_size=8), memory=2**30)


def test_a_manifest_model_id_cannot_name_a_path(finished, tmp_path, capsys):
    import json

    run = _copy(finished, tmp_path / "run")
    m = json.loads((run / "manifest.json").read_text())
    m["models"][0]["id"] = "../../../../etc/passwd"
    (run / "manifest.json").write_text(json.dumps(m))
    _one_line(["report", str(run)], capsys, "not a safe file name")


def test_trials_file_sweeps_a_model_that_names_no_task(tmp_path, capsys, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    model = sj.TanhRNN(2, 6, 1, key=jax.random.key(0))
    sj.save_model(tmp_path / "m.eqx", model, {"seed": 1})
    x = np.asarray(jax.random.normal(jax.random.key(1), (4, 7, 2)))
    np.savez(tmp_path / "trials.npz", inputs=x, targets=x[:, :, :1])
    capsys.readouterr()
    argv = ["sweep", "m.eqx", "--trials-file", "trials.npz", "--families", "all_nonnormal", "--controls", "0"]
    assert main([*argv, "--quiet", "--out", "run"]) == 0
    assert "names no task" in capsys.readouterr().err
    table = sj.results.load(tmp_path / "run").table
    assert np.isfinite(table.base_loss).all() and table.base_score.isna().all()


# ---- second hostile round ----------------------------------------------------------------------------------------


def test_model_ids_that_read_like_numbers_or_missing_keep_their_names(tmp_path, capsys):
    """Models named nan, NA, 1e3 and 007: the table read back holds those very ids (pandas would read NaN, 1000.0
    and 7), and the summary prints (it raised a TypeError on the NaN id)."""
    model = sj.TanhRNN(3, 8, 3, key=jax.random.key(0))
    names = ["nan", "NA", "1e3", "007"]
    for n in names:
        sj.save_model(tmp_path / f"{n}.eqx", model, {"task": {"name": "flipflop", "params": {}}, "seed": 0})
    capsys.readouterr()
    assert main(["sweep", *(str(tmp_path / f"{n}.eqx") for n in names), *SMALL, "--out", str(tmp_path / "r")]) == 0
    assert "007" in capsys.readouterr().out
    table = sj.results.load(tmp_path / "r").table
    assert list(dict.fromkeys(table.model)) == names and not table.model.isna().any()
    assert table.control_kind.isna().sum() == len(names)  # an empty text cell is still missing


def test_json_nested_too_deeply_is_one_line(tmp_path, finished, capsys):
    """A sidecar, a manifest or a chunk of 100,000 nested lists, or such a --task-param: one line or a recomputed
    chunk, never RecursionError."""
    deep = "[" * 100_000 + "]" * 100_000
    m = _model_naming(tmp_path / "m.eqx", {"name": "flipflop", "params": {}})
    m.with_suffix(".json").write_text(deep)
    _one_line(["sweep", str(m), *SMALL, "--out", str(tmp_path / "a")], capsys, "nested deeper than 64 levels")
    run = _copy(finished, tmp_path / "run")
    table = (run / "table.csv").read_bytes()
    (run / "chunks" / "000-00000.json").write_text(deep)
    (run / "COMPLETE").unlink()
    capsys.readouterr()
    assert main(["sweep", "zoo:flipflop/0", *SMALL, "--out", str(run)]) == 0
    assert "recomputing" in capsys.readouterr().err and (run / "table.csv").read_bytes() == table
    (run / "manifest.json").write_text(deep)
    _one_line(["report", str(run)], capsys, "manifest.json")
    arg = "--task-param=bits=" + "[" * 5000 + "1" + "]" * 5000
    _one_line(["sweep", "zoo:flipflop/0", *SMALL, arg, "--out", str(tmp_path / "b")], capsys, "--task-param")


def test_study_markdown_opens_no_tag_from_a_model_id():
    from schurjax.studies.report import _table

    text = _table(["model", "share"], [["<img src=x onerror=alert(1)>|x", "< 0.5"]])
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)>\\|x" in text and "| < 0.5 |" in text


def test_an_ipv6_coordinator_is_dialled_bare(tmp_path, capsys):
    base = ["sweep", "zoo:flipflop/0", *SMALL, "--out", str(tmp_path / "r"), "--timeout", "1"]
    line = _one_line(
        [*base, "--coordinator", "[::1]:1", "--num-processes", "2", "--process-id", "1"], capsys, "could not reach"
    )
    assert "Name or service not known" not in line and "[::1]:1" in line


def test_manifest_models_of_the_wrong_shape_are_one_line(finished, tmp_path, capsys):
    import json

    for i, models in enumerate(["x", [1], [{"id": 3}], {"id": "m"}]):
        run = _copy(finished, tmp_path / f"r{i}")
        m = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps({**m, "models": models}))
        _one_line(["report", str(run), "--no-figures"], capsys, "'models' must be a list of records with a str 'id'")


@pytest.mark.parametrize("trials", [10**12, 10**8, -1, 2.5, True])
def test_run_batch_of_an_edited_manifest_is_bounded(finished, tmp_path, trials):
    """Run.batch draws the trials the manifest records: an edited count is refused before any allocation."""
    import json

    run = _copy(finished, tmp_path / "r")
    m = json.loads((run / "manifest.json").read_text())
    m["config"]["trials"] = trials
    (run / "manifest.json").write_text(json.dumps(m))
    loaded = sj.results.load(run)
    with pytest.raises(sj.errors.InputError, match="manifest.json: .*(expected an int|cannot fit in memory)"):
        loaded.batch(loaded.models[0])


@pytest.mark.parametrize("kind", ["symlink", "foreign file"])
def test_train_refuses_a_target_it_did_not_write_before_training(tmp_path, capsys, monkeypatch, kind):
    """A symlinked or foreign flipflop-0.eqx in --out: one line before any training (it was an internal error
    with a traceback after training), and the file it points to is untouched."""
    from schurjax import train

    out = tmp_path / "t"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    if kind == "symlink":
        (out / "flipflop-0.eqx").symlink_to(victim)
    else:
        (out / "flipflop-0.json").write_text('{"my": "training notes"}')
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("trained before checking the targets"))
    argv = ["train", "--task", "flipflop", "--seeds", "0-1", "--steps", "2", "--hidden", "8", "--out", str(out)]
    _one_line([*argv, "--quiet"], capsys, "--out: ")
    assert victim.read_text() == "mine" and sorted(p.name for p in out.iterdir()) == sorted(
        ["flipflop-0.eqx"] if kind == "symlink" else ["flipflop-0.json"]
    )


def test_a_fifo_in_place_of_a_study_table_is_refused_not_waited_on(finished_study, tmp_path):
    """tables/keep.csv replaced by a FIFO: reading it blocked forever; it is refused in one line (exit 2)."""
    import os
    import subprocess
    import sys

    st = _copy(finished_study, tmp_path / "s")
    (st / "tables" / "keep.csv").unlink()
    os.mkfifo(st / "tables" / "keep.csv")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-m", "schurjax.cli", "report", str(st)], env=env, capture_output=True, text=True, timeout=60
    )
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert out.returncode == 2 and len(lines) == 1, (out.returncode, lines)
    assert "keep.csv is not a regular file" in lines[0]


def test_compress_writes_stay_inside_its_folder(tmp_path, capsys):
    """report.md, curve.csv, result.json, baselines.csv and the exported .pt left as links in --out: each is
    replaced by the compress result, and what they point to is untouched (they were written through)."""
    m = _model_naming(tmp_path / "m.eqx", {"name": "flipflop", "params": {}})
    out = tmp_path / "c"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    names = ["report.md", "curve.csv", "result.json", "baselines.csv", "m-loss.pt"]
    for name in names:
        (out / name).symlink_to(victim)
    argv = ["compress", str(m), "--out", str(out), "--steps", "2", "--trials", "8", "--decision-trials", "16"]
    assert main([*argv, "--bootstrap", "10", "--schedule", "0.5"]) == 0
    assert victim.read_text() == "mine"
    for name in names:
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert "# Compression of m" in (out / "report.md").read_text()


def test_export_model_replaces_a_linked_pt_never_writes_through(tmp_path):
    pytest.importorskip("torch")
    from schurjax.pruning import export_model

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / "x.pt").symlink_to(victim)
    files = export_model(tmp_path / "x.eqx", sj.TanhRNN(3, 8, 3, key=jax.random.key(0)), {"note": 1})
    assert victim.read_text() == "mine" and files["pt"] == str(tmp_path / "x.pt")
    assert (tmp_path / "x.pt").is_file() and not (tmp_path / "x.pt").is_symlink()
