"""The study end to end at tiny sizes: folder, tables, report, figure; the compressed models checked by an
independent float64 NumPy rollout and loaded by load_model, the sweep command and PyTorch; resuming after an
interruption gives the same report; the command; one-line errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from numpy_reference import rollout

import schurjax as sj
from schurjax import cli
from schurjax._json import canonical
from schurjax.studies import compression
from schurjax.studies.protocol import study_key
from schurjax.sweeps.config import task_params

TINY = {
    "trials": 12,
    "bootstrap": 20,
    "control_max": 6,
    "greedy_candidates": 6,
    "greedy_passes": 1,
    "restriction_max": 6,
    "null_draws": 20,
    "worst_starts": 2,
    "worst_steps": 4,
    "radius_iters": 2,
    "rotations": 1,
}
FLAGS = [
    "--trials",
    "12",
    "--bootstrap",
    "20",
    "--control-max",
    "6",
    "--greedy-candidates",
    "6",
    "--greedy-passes",
    "1",
    "--restriction-max",
    "6",
    "--null-draws",
    "20",
    "--worst-starts",
    "2",
    "--worst-steps",
    "4",
    "--radius-iters",
    "2",
    "--rotations",
    "1",
]


def _models():
    """Three small random networks (two copy, one flip-flop) on short trials, saved as files too."""
    copy = sj.tasks.get("copy", length=3, delay=1)
    ff = sj.tasks.get("flipflop", bits=2, steps=10)
    return [
        (sj.TanhRNN(3, 10, 2, key=jax.random.key(1), gain=1.2), copy, "copy-a"),
        (sj.TanhRNN(3, 10, 2, key=jax.random.key(2), gain=1.2), copy, "copy-b"),
        (sj.TanhRNN(2, 10, 2, key=jax.random.key(3), gain=1.2), ff, "flipflop-a"),
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = []
    for model, task, name in _models():
        out.append(
            str(sj.save_model(root / f"{name}.eqx", model, {"task": {"name": task.name, "params": task_params(task)}}))
        )
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    return sj.study(out=out, models=_models(), progress=False, **TINY)


def test_folder_tables_report_and_figure(tiny):
    ids = ["copy-a-n10", "copy-b-n10", "flipflop-a-n10"]
    assert [m["id"] for m in tiny.models] == ids
    assert (tiny.path / "COMPLETE").is_file() and tiny.figure.stat().st_size > 20_000
    text = tiny.report.read_text()
    for head in (
        "Headline",
        "1. Loss-preserving",
        "2. Removing every",
        "3. Schur removals",
        "4. Compression",
        "5. What the copy replay needs",
        "6. Task restriction",
        "7. Do seeds need",
        "8. The worst edit",
        "9. Sensitivity to the coordinates",
    ):
        assert head in text
    assert "Headlines use the score criterion" in text
    assert list(tiny.summary.model) == ids
    for name in ("keep", "nonnormal", "versus", "compression", "restriction", "replay", "profiles", "across_seeds"):
        assert (tiny.path / "tables" / f"{name}.csv").is_file() and len(tiny.tables[name])
    assert set(tiny.tables["replay"].model) == {"copy-a-n10", "copy-b-n10"}  # replay only for copy networks
    assert set(tiny.tables["profiles"].comparison) == {"copy n=10", "between tasks n=10"}
    # the shares in the tables are those of the per-variant figures of the parts
    h = tiny.parts["copy-a-n10"]["heldout"]
    keep = tiny.tables["keep"].set_index(["model", "family", "criterion"])
    rel = np.asarray(h["single"]["rel"])
    # the loss criterion is one-sided by default: a removal that lowers the loss keeps it
    assert keep.loc[("copy-a-n10", "single", "loss"), "share"] == pytest.approx(np.mean(rel <= 0.05))
    assert "one-sided" in text
    drop = np.asarray(h["block"]["drop"])
    assert keep.loc[("copy-a-n10", "block", "score"), "share"] == pytest.approx(np.mean(drop <= 0.01))
    row = keep.loc[("copy-a-n10", "single", "loss")]
    assert row.lo <= row.share <= row.hi
    # every reported interval contains its own point estimate
    t = tiny.tables
    for name, point, lo, hi in (
        ("keep", "share", "lo", "hi"),
        ("nonnormal", "rel", "rel_lo", "rel_hi"),
        ("nonnormal", "drop", "drop_lo", "drop_hi"),
        ("versus", "share_more", "share_lo", "share_hi"),
        ("versus", "median_ratio", "ratio_lo", "ratio_hi"),
    ):
        df = t[name]
        ok = np.isfinite(df[lo].astype(float)) & np.isfinite(df[point].astype(float))
        assert ok.any(), (name, point)
        assert np.all(df[lo][ok] <= df[point][ok] + 1e-12) and np.all(df[point][ok] <= df[hi][ok] + 1e-12), name
    # every control kind for every network; several draws per removal; the T -> D test is one-sample
    vs = t["versus"]
    for mid in ids:
        assert set(vs[(vs.model == mid) & (vs.family == "single")].kind) == set(sj.ablate.CONTROL_KINDS)
    assert set(vs[vs.family == "single"].draws) == {sj.studies.StudyConfig().control_draws}
    assert set(vs[vs.family == "all_nonnormal"].test) == {"one-sample signed-rank"}
    # adjusted p beside every raw p, never below it, and the sentences quote the adjusted ones
    for name, col in (
        ("versus", "wilcoxon_p"),
        ("restriction", "wilcoxon_p"),
        ("replay", "p_null"),
        ("profiles", "p_null"),
    ):
        df = t[name]
        raw, adj = df[col].astype(float), df[f"{col}_adj"].astype(float)
        fin = np.isfinite(raw)
        assert np.all(adj[fin] >= raw[fin] - 1e-15) and np.all(np.isnan(adj[~fin])), name
        assert df[f"{col}_method"].iloc[0].split()[0] in ("holm", "bh")
    assert "adjusted p" in text and "p adj" in text
    assert {"n_eff", "base_n_eff", "few_trials"} <= set(t["nonnormal"].columns)
    # worst case and robustness radius for every network; the worst dense edit of T -> D's size is at least as bad
    # on the selection batch as the removal itself is on the held-out batch only by chance, so compare medians loosely
    fr, rob, co = t["fragility"], t["robustness"], t["coordinates"]
    assert set(fr.model) == set(rob.model) == set(co.model) == set(ids)
    assert set(fr[fr["size"] == "all_nonnormal"].kind) == set(sj.ablate.WORST_KINDS)
    assert np.all(rob.radius >= 0)
    assert set(co.coordinates) == {"default", "real", "angle", "unsorted", "rotation-0"}
    assert np.all(co[co.coordinates == "default"].single_keep_score_move == 0)
    # load reads the same back
    again = sj.studies.load(tiny.path)
    assert json.dumps(again.parts, sort_keys=True) == json.dumps(tiny.parts, sort_keys=True)


@pytest.mark.parametrize("criterion", ["loss", "score"])
def test_compressed_model_verified_by_float64_rollout(tiny, criterion):
    mid = "copy-a-n10"
    base, task, _ = _models()[0]
    path = tiny.compressed(mid, criterion)
    model, meta = sj.load_model(path)
    found = tiny.parts[mid][f"compression-{criterion}"]
    removed = np.asarray(found["removed"]).reshape(-1, 2)
    assert meta["task"] == {"name": "copy", "params": task_params(task)}
    assert meta["base_model"]["id"] == mid and meta["base_model"]["n_hidden"] == 10
    assert meta["removed_couplings"] == removed.tolist() and meta["compression"]["criterion"] == criterion
    # W_rec = Q (T with the removed couplings set to zero) Q^T, everything else unchanged
    sf = sj.ordered_schur(np.asarray(base.W_rec, np.float64))
    T = sf.T.copy()
    T[removed[:, 0], removed[:, 1]] = 0.0
    np.testing.assert_allclose(np.asarray(model.W_rec), sf.Q @ T @ sf.Q.T, atol=2e-6)
    for name in ("W_in", "b", "W_out", "b_out"):
        np.testing.assert_array_equal(np.asarray(getattr(model, name)), np.asarray(getattr(base, name)))
    # the held-out figures of the study, recomputed by an independent float64 NumPy rollout of the exported file
    held = task.sample(study_key(0, "heldout", "copy", canonical(task_params(task))), TINY["trials"])
    x, t, m = (np.asarray(a, np.float64) for a in (held.inputs, held.targets, held.mask))
    loss0 = np.sum(m * (rollout(base, x)[0] - t) ** 2) / m.sum()
    y = rollout(model, x)[0]
    loss = np.sum(m * (y - t) ** 2) / m.sum()
    hv = found["heldout"]
    assert (loss - loss0) / loss0 == pytest.approx(hv["rel"], rel=1e-3, abs=1e-4)
    mean = np.sum(m * t) / m.sum()
    r2 = np.clip(1 - np.sum(m * (y - t) ** 2) / np.sum(m * (t - mean) ** 2), 0, 1)
    assert r2 == pytest.approx(hv["score"], abs=1e-4)
    assert compression.compressed_W(sf, removed) == pytest.approx(sf.Q @ T @ sf.Q.T)


def test_compressed_model_loads_in_sweep_and_torch(tiny, tmp_path):
    path = tiny.compressed("flipflop-a-n10", "loss")
    rc = cli.main(
        [
            "sweep",
            str(path),
            "--families",
            "all_nonnormal",
            "--controls",
            "0",
            "--trials",
            "4",
            "--out",
            str(tmp_path / "sw"),
            "--quiet",
        ]
    )
    assert rc == 0
    run = sj.results.load(tmp_path / "sw")
    assert run.manifest["models"][0]["task"] == "flipflop" and len(run.table) == 1
    torch = pytest.importorskip("torch")
    model, _ = sj.load_model(path)
    rnn, lin = model.to_torch()
    x = np.array(sj.tasks.get("flipflop", bits=2, steps=10).sample(jax.random.key(0), 3).inputs)
    with torch.no_grad():
        y = lin(rnn(torch.as_tensor(x))[0]).numpy()
    np.testing.assert_allclose(y, np.asarray(jax.vmap(model)(x)), atol=1e-5)


def test_resume_after_interruption_gives_the_same_report(tiny, tmp_path):
    out = tmp_path / "s"
    seen = []

    def stop(model_id, part):
        seen.append((model_id, part))
        if len(seen) == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sj.study(out=out, models=_models(), progress=False, on_part=stop, **TINY)
    assert not (out / "COMPLETE").exists() and len(list((out / "chunks").glob("*.json"))) == 9
    log = []
    st = sj.study(out=out, models=_models(), log=log.append, **TINY)
    computed = [line.split("] ")[1].rsplit(" (", 1)[0] for line in log if line.startswith("study: [")]
    assert len(computed) == 26 - 9  # 9 parts per copy network, 8 for flip-flop: only the missing ones ran
    assert not {f"{m} {p}" for m, p in seen} & set(computed)
    assert st.report.read_text() == tiny.report.read_text()
    assert (out / "table.csv").read_bytes() == (tiny.path / "table.csv").read_bytes()


def test_command_resumes_a_finished_study(tiny, files, capsys):
    before = (tiny.path / "COMPLETE").read_bytes()
    rc = cli.main(["study", "--models", *files, "--out", str(tiny.path), "--quiet", *FLAGS])
    out = capsys.readouterr().out
    assert rc == 0 and "# Schur-coupling study" in out and "3 models" in out
    assert (tiny.path / "COMPLETE").read_bytes() == before  # same table: nothing was recomputed differently
    manifest = json.loads((tiny.path / "manifest.json").read_text())
    assert manifest["config"]["trials"] == 12


def test_errors_are_one_line_naming_the_argument(tmp_path, capsys, tiny, files):
    with pytest.raises(sj.InputError, match=r"^study: tau: must be a finite number >= 0, got -0.5$"):
        sj.study(out=tmp_path / "x", tau=-0.5)
    with pytest.raises(sj.InputError, match=r"^study: sizes: the zoo has no 'copy' models with n_hidden=7"):
        sj.study(out=tmp_path / "x", sizes=[7])
    with pytest.raises(sj.InputError, match=r"^study: bogus: unknown setting"):
        sj.study(out=tmp_path / "x", bogus=1)
    assert cli.main(["study", "--sizes", "7", "--out", str(tmp_path / "y")]) == 2
    assert "schurjax study: error: --sizes: the zoo has no 'copy' models" in capsys.readouterr().err
    assert cli.main(["study", "--models", *files, "--out", str(tiny.path), "--trials", "13", "--quiet"]) == 2
    assert "schurjax study: error: --out: " in capsys.readouterr().err


def test_margin_searches_below_the_criterion(tmp_path):
    st = sj.study(out=tmp_path / "m", models=_models()[2:], progress=False, margin=0.5, **TINY)
    for crit, tol in (("loss", 0.05), ("score", 0.01)):
        found = st.parts["flipflop-a-n10"][f"compression-{crit}"]
        assert found["tol"] == pytest.approx(0.5 * tol)
        # the selection-batch figure of the found set is within the tightened threshold
        sel = abs(found["selection"]["rel"]) if crit == "loss" else found["selection"]["drop"]
        assert sel <= 0.5 * tol + 1e-12
    assert "at 0.5 times each criterion's threshold (margin 0.5)" in st.report.read_text()
    assert json.loads((st.path / "manifest.json").read_text())["config"]["margin"] == 0.5


def test_compression_holds_says_whether_the_held_out_batch_keeps_the_criterion(tiny):
    c = tiny.tables["compression"]
    assert len(c) == 6
    for r in c.itertuples():
        expected = (
            r.heldout_rel <= 0.05 if r.criterion == "loss" else r.heldout_drop <= 0.01
        )  # one-sided loss criterion
        assert r.holds == expected
    n_loss = int(c.holds[c.criterion == "loss"].sum())
    assert f"loss criterion: the found set holds on the held-out batch in {n_loss} of 3 networks" in (
        tiny.report.read_text()
    )
