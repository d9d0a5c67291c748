"""End-to-end tests of the ``schurjax`` command on tiny models: train, sweep, report, resume after kill -9, bad input.

The CLI runs in-process through ``main(argv)``; only the kill -9 test starts a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import schurjax as sj
from schurjax.cli import main, parse_seeds
from schurjax.store.table import records
from schurjax.sweeps.config import batch_key
from schurjax.sweeps.progress import Progress

TRIALS = 8
SWEEP = [
    "--families",
    "single,block,band,all_nonnormal",
    "--controls",
    "1",
    "--trials",
    str(TRIALS),
    "--chunk-size",
    "16",
    "--quiet",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny copy-task models trained for a few steps by ``schurjax train``."""
    out = tmp_path_factory.mktemp("models")
    rc = main(
        ["train", "--task", "copy", "--seeds", "0-1", "--hidden", "8", "--steps", "4", "--out", str(out), "--quiet"]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def swept(trained, tmp_path_factory):
    """A finished sweep of both trained models."""
    out = tmp_path_factory.mktemp("runs") / "x"
    models = [str(trained / "copy-0.eqx"), str(trained / "copy-1.eqx")]
    assert main(["sweep", *models, *SWEEP, "--out", str(out)]) == 0
    return out, models


def test_train_saves_models_with_metadata(trained):
    for seed in (0, 1):
        model, meta = sj.load_model(trained / f"copy-{seed}.eqx")
        assert model.W_rec.shape == (8, 8) and model.W_in.shape == (8, 3)
        assert meta["task"]["name"] == "copy" and meta["seed"] == seed
        assert np.isfinite(meta["metrics"]["eval_loss"])
    a, _ = sj.load_model(trained / "copy-0.eqx")
    b, _ = sj.load_model(trained / "copy-1.eqx")
    assert not np.allclose(a.W_rec, b.W_rec)  # one model per seed


def _rollout_loss(W_rec, model, batch):
    """Independent float64 NumPy reference: masked MSE of the tanh RNN with recurrent matrix W_rec."""
    x = np.asarray(batch.inputs, np.float64)
    W_in, b = np.asarray(model.W_in, np.float64), np.asarray(model.b, np.float64)
    W_out, b_out = np.asarray(model.W_out, np.float64), np.asarray(model.b_out, np.float64)
    h = np.zeros((x.shape[0], W_rec.shape[0]))
    ys = []
    for t in range(x.shape[1]):
        h = np.tanh(h @ W_rec.T + x[:, t] @ W_in.T + b)
        ys.append(h @ W_out.T + b_out)
    y = np.stack(ys, 1)
    m = np.asarray(batch.mask, np.float64)
    return float(np.sum(m * (y - np.asarray(batch.targets, np.float64)) ** 2) / np.sum(m))


def test_sweep_table_manifest_and_values(swept):
    out, models = swept
    run = sj.results.load(out)
    assert run.complete and (out / "COMPLETE").is_file()
    m = run.manifest
    assert m["config"]["trials"] == TRIALS and m["config"]["families"] == ["single", "block", "band", "all_nonnormal"]
    assert m["versions"]["jax"] == jax.__version__ and m["device"]["backend"] == "cpu"
    assert [x["id"] for x in m["models"]] == ["copy-0", "copy-1"]
    assert m["models"][0]["schur"]["n"] == 8
    table = records(run.table)
    assert len(table) == sum(x["variants"] for x in m["models"])
    assert [r["row_id"] for r in table] == list(range(len(table)))
    by_id = {r["row_id"]: r for r in table}
    task = sj.tasks.get("copy", **m["models"][0]["task_params"])
    batch = task.sample(batch_key(0, "copy", task.params()), TRIALS)
    for mid, path in zip(["copy-0", "copy-1"], models, strict=True):
        model, _ = sj.load_model(path)
        sf = run.schurs[mid]
        np.testing.assert_allclose(sf.Q @ sf.T @ sf.Q.T, np.asarray(model.W_rec, np.float64), atol=1e-5)
        rows = [r for r in table if r["model"] == mid]
        fams = {r["family"] for r in rows}
        assert {"single", "block", "band", "all_nonnormal", "control"} <= fams
        base = _rollout_loss(np.asarray(model.W_rec, np.float64), model, batch)
        assert rows[0]["base_loss"] == pytest.approx(base, rel=1e-4)
        # single couplings: one per nonzero coupling entry, loss against the float64 reference
        singles = [r for r in rows if r["family"] == "single"]
        assert len(singles) == int(np.count_nonzero(sf.T[sf.coupling_mask]))
        for r in singles[:: max(1, len(singles) // 5)]:
            T = sf.T.copy()
            T[r["row"], r["col"]] = 0.0
            assert r["delta_norm"] == pytest.approx(abs(sf.T[r["row"], r["col"]]), rel=1e-12)
            ref = _rollout_loss(sf.Q @ T @ sf.Q.T, model, batch)
            assert r["loss"] == pytest.approx(ref, rel=1e-4, abs=1e-6)
            assert r["delta_loss"] == pytest.approx(ref - base, rel=2e-2, abs=2e-6)
            assert r["rel_delta_loss"] == pytest.approx(r["delta_loss"] / r["base_loss"], rel=1e-9)
        (alln,) = [r for r in rows if r["family"] == "all_nonnormal"]
        D = sf.T * ~sf.coupling_mask
        assert alln["loss"] == pytest.approx(_rollout_loss(sf.Q @ D @ sf.Q.T, model, batch), rel=1e-4)
        assert alln["delta_norm"] == pytest.approx(np.linalg.norm(sf.T - D), rel=1e-10)
        # controls point to a Schur ablation of the same model with the same norm
        for r in rows:
            if r["control_of"] is not None:
                target = by_id[r["control_of"]]
                assert target["model"] == mid and target["control_of"] is None and target["family"] != "control"
                assert r["delta_norm"] == pytest.approx(target["delta_norm"], rel=1e-9)
                assert r["control_kind"] == "matched_norm"
    # the chunk files are all there and the CSV reads back as the same table
    n_chunks = sum(x["chunks"] for x in m["models"])
    assert len(list((out / "chunks").glob("*.json"))) == n_chunks


def test_models_sharing_a_task_name_but_not_its_params_get_their_own_batch(tmp_path):
    """zoo copy-0 next to the same weights saved for copy(length=8): each row's base loss is its own task's."""
    zoo = pytest.importorskip("schurjax.zoo")
    if not zoo.entries():
        pytest.skip("no zoo models shipped")
    model = zoo.load("copy", seed=0)
    p6 = dict(zoo.task("copy").params())
    p8 = {**p6, "length": 8}
    assert p8 != p6
    sj.save_model(tmp_path / "long.eqx", model, {"task": {"name": "copy", "params": p8}, "seed": 0})
    small = ["--families", "all_nonnormal", "--controls", "0", "--trials", "4", "--quiet"]
    refs = {}
    for mid, params in (("copy-0", p6), ("long", p8)):
        task = sj.tasks.get("copy", **params)
        batch = task.sample(batch_key(0, "copy", task.params()), 4)
        refs[mid] = _rollout_loss(np.asarray(model.W_rec, np.float64), model, batch)
    assert abs(refs["copy-0"] - refs["long"]) > 1e-3 * refs["copy-0"]  # the two tasks really differ
    for k, order in enumerate((["zoo:copy/0", str(tmp_path / "long.eqx")], [str(tmp_path / "long.eqx"), "zoo:copy/0"])):
        out = tmp_path / f"o{k}"
        assert main(["sweep", *order, *small, "--out", str(out)]) == 0
        run = sj.results.load(out)
        for mid, ref in refs.items():
            (row,) = [r for r in records(run.table) if r["model"] == mid]
            assert row["base_loss"] == pytest.approx(ref, rel=1e-4), (order, mid)
        keys = run.manifest["seeds"]["batch_keys"]
        assert sorted(json.dumps(b["params"], sort_keys=True) for b in keys) == sorted(
            json.dumps(p, sort_keys=True) for p in (p6, p8)
        )


def test_deviation_flag_gives_exact_small_loss_changes(trained, tmp_path, capsys):
    """The deviation rollout is the default, is part of the config and gives delta_loss to float64 accuracy."""
    model_path = str(trained / "copy-0.eqx")
    argv = ["sweep", model_path, "--families", "single", "--controls", "0", "--trials", str(TRIALS), "--quiet"]
    out = tmp_path / "dev"
    assert main([*argv, "--out", str(out)]) == 0
    run = sj.results.load(out)
    assert run.manifest["config"]["deviation"] is True
    model, meta = sj.load_model(model_path)
    task = sj.tasks.get("copy", **meta["task"]["params"])
    batch = task.sample(batch_key(0, "copy", task.params()), TRIALS)
    sf = run.schurs["copy-0"]
    base = _rollout_loss(sf.Q @ sf.T @ sf.Q.T, model, batch)
    for r in records(run.table):
        T = sf.T.copy()
        T[r["row"], r["col"]] = 0.0
        ref = _rollout_loss(sf.Q @ T @ sf.Q.T, model, batch) - base
        assert r["delta_loss"] == pytest.approx(ref, rel=2e-5, abs=1e-12 * base), r["label"]
    capsys.readouterr()
    line = _bad([*argv, "--no-deviation", "--out", str(out)], capsys, "holds a different sweep")
    assert "deviation: True != False" in line


def test_rerun_of_finished_sweep_is_a_no_op(swept, capsys):
    out, models = swept
    before = (out / "table.csv").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()}
    assert main(["sweep", *models, *SWEEP, "--out", str(out)]) == 0
    assert (out / "table.csv").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (out / "chunks").iterdir()} == mtimes
    assert "already done" in capsys.readouterr().err


def test_report_writes_self_contained_html(swept, capsys):
    out, _ = swept
    assert main(["report", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "task copy" in stdout and "copy-0" in stdout and "report.html" in stdout
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 + 4 * 2  # 2 run figures + 4 per model
    assert 'src="http' not in html and "<script" not in html
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "profile.png" in pngs and "copy-0_importance.png" in pngs
    assert all((out / "figures" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_resume_after_kill_9_equals_uninterrupted_run(trained, tmp_path):
    model = str(trained / "copy-0.eqx")
    argv = [
        "sweep",
        model,
        "--families",
        "single,all_nonnormal",
        "--controls",
        "1",
        "--trials",
        str(TRIALS),
        "--chunk-size",
        "4",
        "--quiet",
    ]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert main([*argv, "--out", str(ref)]) == 0
    total = len(list((ref / "chunks").glob("*.json")))
    assert total >= 6

    # the same sweep from Python in a subprocess that pauses after each chunk file (the on_chunk callback), so that
    # SIGKILL lands between two chunk files; then the same command line resumes it
    script = (
        f"import time, schurjax as sj; sj.sweep([{model!r}], out={str(killed)!r}, "
        f"families='single,all_nonnormal', controls=1, trials={TRIALS}, chunk_size=4, progress=False, "
        "on_chunk=lambda *a: time.sleep(0.4))"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunks = killed / "chunks"
    deadline = time.monotonic() + 120
    try:
        while len(list(chunks.glob("*.json")) if chunks.is_dir() else []) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep wrote no chunk in 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in chunks.glob("*.json")}
    assert 2 <= len(done) < total
    assert not (killed / "COMPLETE").exists() and not (killed / "table.csv").exists()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        sj.results.load(killed)

    assert main([*argv, "--out", str(killed)]) == 0  # the same command again
    assert (killed / "COMPLETE").is_file()
    for p, stamp in done.items():  # finished chunks were not recomputed
        assert (p.stat().st_mtime_ns, p.stat().st_ino) == stamp
    assert len(list(chunks.glob("*.json"))) == total
    assert (killed / "table.csv").read_bytes() == (ref / "table.csv").read_bytes()
    assert (
        json.loads((killed / "manifest.json").read_text())["config"]
        == json.loads((ref / "manifest.json").read_text())["config"]
    )


def _bad(argv, capsys, expect):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert expect in lines[0], lines[0]
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(trained, tmp_path, capsys):
    model = str(trained / "copy-0.eqx")
    out = str(tmp_path / "o")
    _bad(["sweep", str(tmp_path / "missing.eqx"), "--out", out], capsys, "no such file")
    _bad(["sweep", model, "--families", "single,bogus", "--out", out], capsys, "--families: unknown name 'bogus'")
    _bad(["sweep", model, "--task", "bogus", "--out", out], capsys, "--task: unknown task name 'bogus'")
    _bad(["train", "--task", "bogus", "--out", out], capsys, "--task: unknown task name 'bogus'")
    _bad(["sweep", model, "--control-kinds", "fancy", "--out", out], capsys, "--control-kinds: unknown name 'fancy'")
    _bad(["sweep", model, "--trials", "0", "--out", out], capsys, "--trials")
    _bad(["train", "--task", "copy", "--seeds", "3-1", "--out", out], capsys, "--seeds")
    _bad(["report", str(tmp_path / "nothing")], capsys, "no such folder")
    _bad(["frobnicate"], capsys, "invalid choice")
    # a model whose sizes don't fit its task: copy-task weights evaluated on the sine task
    _bad(["sweep", model, "--task", "sine", "--out", out], capsys, "don't fit task 'sine'")
    # a saved model whose metadata names a task it does not fit
    wrong = sj.TanhRNN(2, 4, 1, key=jax.random.key(0))
    sj.save_model(tmp_path / "wrong.eqx", wrong, {"task": {"name": "copy", "params": {}}})
    _bad(["sweep", str(tmp_path / "wrong.eqx"), "--out", out], capsys, "don't fit task 'copy'")
    # an output folder holding a different sweep
    small = ["--families", "all_nonnormal", "--controls", "0", "--quiet"]
    assert main(["sweep", model, *small, "--trials", "4", "--out", out]) == 0
    capsys.readouterr()
    line = _bad(["sweep", model, *small, "--trials", "5", "--out", out], capsys, "holds a different sweep")
    assert "trials: 4 != 5" in line
    _bad(["sweep", model, *small, "--trials", "4", "--seed", "1", "--out", out], capsys, "holds a different sweep")
    # chunks written by another schurjax version or results schema are never reused
    manifest_path = Path(out) / "manifest.json"
    original = manifest_path.read_text()
    for key, old, now in (
        ("schurjax_version", "0.0.1", sj.__version__),
        ("results_schema", 1, sj.results.SCHEMA_VERSION),
    ):
        manifest = json.loads(original)
        manifest["config"][key] = old
        manifest_path.write_text(json.dumps(manifest))
        line = _bad(["sweep", model, *small, "--trials", "4", "--out", out], capsys, "holds a different sweep")
        assert f"{key}: {old!r} != {now!r}" in line, line
    manifest_path.write_text(original)
    # the same path now holding other weights (e.g. a retrained model) is a different sweep too
    for ext in (".eqx", ".json"):
        shutil.copy(trained / f"copy-0{ext}", tmp_path / f"m{ext}")
    out2 = str(tmp_path / "o2")
    assert main(["sweep", str(tmp_path / "m.eqx"), *small, "--trials", "4", "--out", out2]) == 0
    capsys.readouterr()
    for ext in (".eqx", ".json"):
        shutil.copy(trained / f"copy-1{ext}", tmp_path / f"m{ext}")
    line = _bad(["sweep", str(tmp_path / "m.eqx"), *small, "--trials", "4", "--out", out2], capsys, "different sweep")
    assert "models[0] weights_sha256" in line
    # families that give no variants: a diagonal W_rec has no Schur couplings at all
    m0, meta0 = sj.load_model(model)
    diag = sj.TanhRNN.from_arrays(
        m0.W_in, np.diag(np.linspace(-0.9, 0.9, 8)).astype(np.float32), m0.b, m0.W_out, m0.b_out
    )
    sj.save_model(tmp_path / "diag.eqx", diag, {"task": meta0["task"]})
    _bad(
        ["sweep", model, str(tmp_path / "diag.eqx"), "--families", "single,block", "--out", str(tmp_path / "o3")],
        capsys,
        "--families: single,block give model diag no variants",
    )
    (tmp_path / "afile").write_text("x")
    _bad(["sweep", model, *small, "--out", str(tmp_path / "afile")], capsys, "is a file, expected a run folder")
    Path(tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    _bad(["sweep", model, *small, "--out", str(tmp_path / "junk")], capsys, "holds no manifest.json")


def test_unexpected_errors_are_internal_errors_with_traceback(trained, tmp_path, capsys, monkeypatch):
    """A ValueError from deep inside the library is a bug, not bad input: exit 1, traceback, "internal error"."""

    def broken(*args, **kwargs):
        raise ValueError("shapes (3,) and (4,) not aligned")

    monkeypatch.setattr(sj.engine, "evaluate", broken)
    rc = main(
        [
            "sweep",
            str(trained / "copy-0.eqx"),
            "--families",
            "all_nonnormal",
            "--controls",
            "0",
            "--trials",
            "4",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" in err and "shapes (3,) and (4,) not aligned" in err
    assert err.strip().splitlines()[-1].startswith("schurjax sweep: internal error: ValueError")
    monkeypatch.setenv("SCHURJAX_DEBUG", "1")
    with pytest.raises(ValueError, match="not aligned"):
        main(
            [
                "sweep",
                str(trained / "copy-0.eqx"),
                "--families",
                "all_nonnormal",
                "--controls",
                "0",
                "--trials",
                "4",
                "--quiet",
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_bad_zoo_model(capsys):
    zoo = pytest.importorskip("schurjax.zoo")
    if not hasattr(zoo, "entries") or not zoo.entries():
        pytest.skip("no zoo models shipped")
    _bad(["sweep", "zoo:bogus", "--out", "unused"], capsys, "unknown zoo task 'bogus'")
    _bad(["sweep", "zoo:copy/999", "--out", "unused"], capsys, "is not in the zoo")


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5,0-1,1") == [0, 1, 5]
    for bad in ("3-1", "a", "-2", "1,,2"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"jax         {jax.__version__}" in out and "device" in out and "precision" in out


def test_progress_bar_reports_rate_and_eta():
    buf = io.StringIO()
    bar = Progress(100, stream=buf, every=0.0)
    bar.update(40, computed=False)
    time.sleep(0.01)
    bar.update(30)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert "40/100 variants" in lines[0] and "70/100 variants" in lines[1]
    assert "var/s" in lines[1] and "ETA" in lines[1] and "ETA --" not in lines[1]


def test_demo_small(tmp_path, capsys):
    zoo = pytest.importorskip("schurjax.zoo")
    if not hasattr(zoo, "entries") or not zoo.entries():
        pytest.skip("no zoo models shipped")
    argv = [
        "demo",
        "--tasks",
        "copy",
        "--seeds-per-task",
        "2",
        "--families",
        "band,all_nonnormal",
        "--trials",
        "4",
        "--quiet",
        "--out",
        str(tmp_path / "demo"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "task copy" in out and "copy-0" in out and "copy-1" in out and "report ->" in out
    run = sj.results.load(tmp_path / "demo")
    assert run.complete and run.models == ["copy-0", "copy-1"]
    assert set(run.table.family) == {"band", "all_nonnormal", "control"}
    assert (tmp_path / "demo" / "report.html").is_file()
    _bad(["demo", "--tasks", "nope", "--out", str(tmp_path / "d2")], capsys, "the zoo has no 'nope' model")


def test_nonfinite_saved_model_is_refused_before_the_run_folder(tmp_path, capsys):
    import equinox as eqx

    zoo = pytest.importorskip("schurjax.zoo")
    if not zoo.entries():
        pytest.skip("no zoo models shipped")
    model = zoo.load("copy", seed=0)
    bad = eqx.tree_at(lambda m: m.W_out, model, model.W_out.at[0, 0].set(np.nan))
    meta = {"task": {"name": "copy", "params": dict(zoo.task("copy").params())}, "seed": 0}
    path = sj.save_model(tmp_path / "nan.eqx", bad, meta)
    out = tmp_path / "o"
    argv = [
        "sweep",
        str(path),
        "--families",
        "all_nonnormal",
        "--controls",
        "0",
        "--trials",
        "4",
        "--quiet",
        "--out",
        str(out),
    ]
    line = _bad(argv, capsys, "W_out holds 1 NaN/inf entries; expected finite weights")
    assert line.startswith("schurjax sweep: error: MODEL: ") and "nan.eqx" in line
    assert not out.exists() or not (out / "manifest.json").exists()


def test_table_does_not_depend_on_chunk_size(tmp_path):
    """Chunks of 7 variants (trailing chunks with small edits) give the same table as the default chunking."""
    zoo = pytest.importorskip("schurjax.zoo")
    if not zoo.entries():
        pytest.skip("no zoo models shipped")
    common = [
        "sweep",
        "zoo:flipflop/0",
        "--families",
        "band,all_nonnormal,eigen_groups",
        "--controls",
        "1",
        "--trials",
        "8",
        "--quiet",
    ]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert main([*common, "--chunk-size", "7", "--out", str(tmp_path / "c7")]) == 0
    default = (tmp_path / "default" / "table.csv").read_bytes()
    c7 = (tmp_path / "c7" / "table.csv").read_bytes()
    assert len(default.splitlines()) > 8  # more variants than one 7-chunk
    assert c7 == default
