"""Fault injection: damage a finished run folder, rerun, and get either the same table or one line naming the file.

Extend it by adding a row to FAULTS: a name, a function that damages the folder, the command to rerun
(``"sweep"`` or ``"report"``), and what must happen (``"same"``: exit 0 and a byte-identical table.csv; or a
substring of the one-line error, exit 2). ``_rerun`` is the one helper.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import schurjax as sj
from schurjax.cli import main

MODEL = "zoo:flipflop/0"
ARGS = ["--families", "band,all_nonnormal", "--controls", "1", "--trials", "8", "--chunk-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A finished sweep; every case copies it and damages the copy."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["sweep", MODEL, *ARGS, "--out", str(out)]) == 0
    assert len(list((out / "chunks").glob("*.json"))) >= 4
    return out


def _chunk(run: Path, k: int = 1) -> Path:
    return sorted((run / "chunks").glob("*.json"))[k]


def _edit_chunk(run: Path, fn, *, reseal: bool) -> None:
    """Edit one chunk's JSON with ``fn``; ``reseal`` recomputes its checksum, so only the content check can catch it."""
    from schurjax.store._json import canonical
    from schurjax.store.results import _sha256

    p = _chunk(run)
    data = json.loads(p.read_text())
    fn(data)
    if reseal:
        data["sha256"] = _sha256(canonical({k: v for k, v in data.items() if k != "sha256"}).encode())
    p.write_text(json.dumps(data))


def _truncate(p: Path, keep: float = 0.5) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


def _symlink_chunk(run: Path) -> None:
    p = _chunk(run)
    target = run / "elsewhere.json"
    p.rename(target)
    p.symlink_to(target)


def _foreign_chunk(run: Path) -> None:
    """A chunk written by a sweep of another config (another --seed) into this folder."""
    other = run.parent / "other"
    assert main(["sweep", MODEL, *ARGS, "--seed", "1", "--out", str(other)]) == 0
    shutil.copy(_chunk(other), _chunk(run))


FAULTS = [
    ("truncated chunk", lambda run: _truncate(_chunk(run)), "sweep", "same"),
    ("empty chunk", lambda run: _chunk(run).write_bytes(b""), "sweep", "same"),
    ("symlinked chunk", _symlink_chunk, "sweep", "same"),
    (
        "edited chunk value",
        lambda run: _edit_chunk(run, lambda d: d["loss"].__setitem__(0, 5.0), reseal=False),
        "sweep",
        "same",
    ),
    ("shortened array", lambda run: _edit_chunk(run, lambda d: d["loss"].pop(), reseal=True), "sweep", "same"),
    ("chunk of another config", _foreign_chunk, "sweep", "same"),
    ("chunks folder removed", lambda run: shutil.rmtree(run / "chunks"), "sweep", "same"),
    ("truncated table", lambda run: _truncate(run / "table.csv", 0.3), "report", "table.csv does not match"),
    ("truncated table, rerun", lambda run: _truncate(run / "table.csv", 0.3), "sweep", "same"),
    (
        "edited table cell",
        lambda run: (run / "table.csv").write_text((run / "table.csv").read_text().replace("band", "bend", 1)),
        "report",
        "table.csv does not match",
    ),
    ("truncated schur file", lambda run: _truncate(next((run / "schur").glob("*.npz"))), "report", "flipflop-0.npz"),
    ("truncated schur file, rerun", lambda run: _truncate(next((run / "schur").glob("*.npz"))), "sweep", "same"),
    ("manifest not an object", lambda run: (run / "manifest.json").write_text("[]"), "report", "manifest.json"),
    ("manifest not an object, sweep", lambda run: (run / "manifest.json").write_text("[]"), "sweep", "manifest.json"),
    ("truncated manifest", lambda run: _truncate(run / "manifest.json"), "report", "manifest.json"),
    ("truncated COMPLETE", lambda run: _truncate(run / "COMPLETE"), "report", "COMPLETE"),
]


def _rerun(run: Path, command: str, capsys) -> tuple[int, list[str]]:
    """The one helper: rerun ``command`` on ``run``; returns the exit status and the non-empty stderr lines."""
    capsys.readouterr()
    argv = ["report", str(run), "--no-figures"] if command == "report" else ["sweep", MODEL, *ARGS, "--out", str(run)]
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return rc, err


@pytest.mark.parametrize(("name", "damage", "command", "expect"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault(name, damage, command, expect, reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run, symlinks=True)
    damage(run)
    rc, err = _rerun(run, command, capsys)
    if expect == "same":
        assert rc == 0, err
        assert (run / "table.csv").read_bytes() == (reference / "table.csv").read_bytes()
        assert sj.results.load(run).complete
    else:
        assert rc == 2, err
        problems = [line for line in err if not line.startswith("sweep: ")]  # progress/status lines aside
        assert len(problems) == 1 and "Traceback" not in "\n".join(err), err
        assert expect in problems[0], problems[0]


def test_damaged_chunk_is_reported_in_one_line(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    _truncate(_chunk(run))
    rc, err = _rerun(run, "sweep", capsys)
    assert rc == 0
    assert [line for line in err if "recomputing" in line] == [
        f"sweep: recomputing {_chunk(run)} (damaged: JSONDecodeError)"
    ]


def test_load_refuses_a_table_that_does_not_match(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    _truncate(run / "table.csv", 0.3)
    with pytest.raises(sj.InputError, match=r"table\.csv does not match the checksum in .*COMPLETE"):
        sj.results.load(run)


def test_second_writer_is_refused_naming_the_first(reference, tmp_path, capsys):
    from schurjax.store.lock import RunLock

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    with RunLock(run):
        rc, err = _rerun(run, "sweep", capsys)
    assert rc == 2 and len(err) == 1
    assert f"is being written by process {os.getpid()}" in err[0]
    assert _rerun(run, "sweep", capsys)[0] == 0  # the lock goes with its holder


def _start_slow_sweep(out: Path, trials: int) -> subprocess.Popen:
    """``sj.sweep`` in a subprocess that sleeps after every chunk file."""
    script = (
        f"import time, schurjax as sj; sj.sweep([{MODEL!r}], out={str(out)!r}, families='band,all_nonnormal', "
        f"controls=1, trials={trials}, chunk_size=8, progress=False, on_chunk=lambda *a: time.sleep(0.5))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_chunks(proc: subprocess.Popen, chunks: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(chunks.glob("*.json")) if chunks.is_dir() else []) < n:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no chunk in 120 s"
        time.sleep(0.02)


def test_stale_writer_cannot_mix_its_chunks_into_a_new_sweep(tmp_path, capsys):
    """Start a sweep, delete its folder while it runs, start another config there: the table is the clean one's."""
    clean, run = tmp_path / "clean", tmp_path / "run"
    args16 = [a if a != "8" or i != ARGS.index("--trials") + 1 else "16" for i, a in enumerate(ARGS)]
    assert main(["sweep", MODEL, *args16, "--out", str(clean)]) == 0
    stale = _start_slow_sweep(run, trials=8)
    try:
        _wait_for_chunks(stale, run / "chunks", 1)
        shutil.rmtree(run)
        assert main(["sweep", MODEL, *args16, "--out", str(run)]) == 0
        stale.wait(timeout=120)
        err = stale.stderr.read().decode()
    finally:
        stale.kill()
        stale.wait()
        stale.stderr.close()
    assert (run / "table.csv").read_bytes() == (clean / "table.csv").read_bytes()
    assert sj.results.load(run).manifest["config"]["trials"] == 16
    assert stale.returncode != 0 and "was deleted or replaced while this sweep was writing it" in err


def test_sigterm_stops_with_one_line_and_the_rerun_resumes(reference, tmp_path):
    run = tmp_path / "run"
    # the command line of a sweep, with a pause after each chunk file so that SIGTERM lands in the middle
    script = "\n".join(
        [
            "import sys, time, schurjax.cli as cli, schurjax.sweeps as sweeps",
            "run_sweep = sweeps.run_sweep",
            "sweeps.run_sweep = lambda *a, **k: run_sweep(*a, **{**k, 'on_chunk': lambda *x: time.sleep(0.5)})",
            f"sys.exit(cli.main(['sweep', {MODEL!r}, *{ARGS!r}, '--out', {str(run)!r}]))",
        ]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_chunks(proc, run / "chunks", 1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        err = proc.stderr.read().decode().strip().splitlines()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == 143
    assert err[-1] == "schurjax sweep: terminated (finished chunks are kept; rerun the same command to resume)"
    assert main(["sweep", MODEL, *ARGS, "--out", str(run)]) == 0
    assert (run / "table.csv").read_bytes() == (reference / "table.csv").read_bytes()


def test_too_many_trials_writes_nothing_and_the_corrected_rerun_works(reference, tmp_path, capsys):
    run = tmp_path / "run"
    for trials in ("1000000000000", "10000000000000000000000"):
        rc = main(["sweep", MODEL, "--trials", trials, "--out", str(run)])
        (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert rc == 2 and line.startswith("schurjax sweep: error: --trials: must be at most ")
        assert not run.exists()
    assert main(["sweep", MODEL, *ARGS, "--out", str(run)]) == 0
    assert (run / "table.csv").read_bytes() == (reference / "table.csv").read_bytes()


def test_manifest_only_folder_is_taken_over_by_another_config(reference, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    manifest = json.loads((reference / "manifest.json").read_text())
    manifest["config"]["trials"] = 999
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert main(["sweep", MODEL, *ARGS, "--out", str(run)]) == 0
    assert (run / "table.csv").read_bytes() == (reference / "table.csv").read_bytes()


def test_model_paths_compare_by_content(tmp_path, capsys):
    model = sj.zoo.load("sine", seed=0)
    meta = {"task": {"name": "sine", "params": dict(sj.zoo.task("sine").params())}, "seed": 0}
    sj.save_model(tmp_path / "m.eqx", model, meta)
    args = [
        "--families",
        "all_nonnormal",
        "--controls",
        "0",
        "--trials",
        "4",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert main(["sweep", "m.eqx", *args]) == 0
    finally:
        os.chdir(cwd)
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "m.eqx"), *args]) == 0  # the same file spelled as an absolute path
    assert "already done" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["sidecar", "python"])
def test_non_finite_task_parameters_are_refused(tmp_path, capsys, where):
    model = sj.zoo.load("context", seed=0)
    params = {**dict(sj.zoo.task("context").params()), "noise": float("nan")}
    if where == "sidecar":
        sj.save_model(tmp_path / "m.eqx", model, {"task": {"name": "context", "params": {}}, "seed": 0})
        side = json.loads((tmp_path / "m.json").read_text())
        side["task"]["params"] = params
        (tmp_path / "m.json").write_text(json.dumps(side).replace("null", "NaN"))  # NaN as a hand edit writes it
        argv = ["sweep", str(tmp_path / "m.eqx"), "--trials", "4", "--quiet", "--out", str(tmp_path / "run")]
        rc = main(argv)
        (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert rc == 2 and ("noise" in line or "not finite" in line), line
        assert not (tmp_path / "run" / "manifest.json").exists()
    else:
        with pytest.raises((ValueError, TypeError), match="noise"):
            task = sj.tasks.get("context", noise=float("nan"))
            sj.sweep([(model, task)], out=tmp_path / "run", trials=4, progress=False)
        assert not (tmp_path / "run" / "manifest.json").exists()


def test_backend_that_cannot_start_is_an_environment_error():
    env = dict(os.environ, JAX_PLATFORMS="bogus")
    for argv in (["info"], ["sweep", MODEL, "--out", "unused"]):
        out = subprocess.run(
            [sys.executable, "-m", "schurjax.cli", *argv], env=env, capture_output=True, text=True, timeout=120
        )
        lines = [x for x in out.stderr.splitlines() if x.strip()]
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert "JAX could not start the bogus backend" in lines[0] and "internal error" not in lines[0]


def test_seeds_are_bounded_before_anything_runs(tmp_path, capsys):
    rc = main(["train", "--task", "copy", "--seeds", "0-100000000", "--out", str(tmp_path / "m")])
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and "--seeds: at most 100,000 seeds" in line
    rc = main(["train", "--task", "copy", "--seeds", "0-90000", "--hidden", "512", "--out", str(tmp_path / "m")])
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and "fit here" in line and not (tmp_path / "m").exists()
