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
from schurjax.models import task_params
from schurjax.store._json import canonical
from schurjax.studies import compression
from schurjax.studies.protocol import study_key

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


def _decision_batch(task, trials=1024):
    return task.sample(study_key(0, "decision", task.name, canonical(task_params(task))), trials)


def _np_figures(base, model, task, batch):
    """Relative loss change and score drop of ``model`` against ``base``, by the float64 NumPy rollout."""
    x, t, m = (np.asarray(a, np.float64) for a in (batch.inputs, batch.targets, batch.mask))
    y0, y1 = rollout(base, x)[0], rollout(model, x)[0]
    l0, l1 = (np.sum(m * (y - t) ** 2) / m.sum() for y in (y0, y1))
    s0, s1 = (float(task.score(jax.numpy.asarray(y, jax.numpy.float32), batch)) for y in (y0, y1))
    return (l1 - l0) / l0, s0 - s1, s1


@pytest.mark.parametrize("criterion", ["loss", "score"])
def test_compressed_model_verified_by_float64_rollout(tiny, criterion):
    mid = "copy-a-n10"
    base, task, _ = _models()[0]
    path = tiny.compressed(mid, criterion)
    found = tiny.parts[mid][f"compression-{criterion}"]
    removed = np.asarray(found["removed"]).reshape(-1, 2)
    assert found["exported"] == found["decision"]["holds"] == bool(len(removed)) == path.is_file()
    if not path.is_file():
        pytest.skip("nothing of this network holds by the bound (tested in test_a_failing_set_is_not_exported)")
    model, meta = sj.load_model(path)
    assert meta["task"] == {"name": "copy", "params": task_params(task)}
    assert meta["base_model"]["id"] == mid and meta["base_model"]["n_hidden"] == 10
    assert meta["removed_couplings"] == removed.tolist() and meta["compression"]["criterion"] == criterion
    c = meta["compression"]
    assert c["trials"] == 1024 and c["keys"]["heldout"]["purpose"] == "decision" and c["heldout"]["holds"]
    assert c["loss_ratio"] == pytest.approx(1 + c["heldout"]["rel"])
    bound = c["heldout"]["rel_ucb"] if criterion == "loss" else c["heldout"]["drop_ucb"]
    assert bound <= c["tol"]
    # W_rec = Q (T with the removed couplings set to zero) Q^T, everything else unchanged
    sf = sj.ordered_schur(np.asarray(base.W_rec, np.float64))
    T = sf.T.copy()
    T[removed[:, 0], removed[:, 1]] = 0.0
    np.testing.assert_allclose(np.asarray(model.W_rec), sf.Q @ T @ sf.Q.T, atol=2e-6)
    for name in ("W_in", "b", "W_out", "b_out"):
        np.testing.assert_array_equal(np.asarray(getattr(model, name)), np.asarray(getattr(base, name)))
    # the held-out figures of the study, recomputed by an independent float64 NumPy rollout of the exported file
    rel, drop, score = _np_figures(base, model, task, _decision_batch(task))
    hv = found["heldout"]
    assert rel == pytest.approx(hv["rel"], rel=1e-3, abs=1e-4)
    assert score == pytest.approx(hv["score"], abs=1e-4)
    assert compression.compressed_W(sf, removed) == pytest.approx(sf.Q @ T @ sf.Q.T)


def test_exports_keep_their_criterion_on_fresh_trials(tiny):
    """Every exported model keeps its criterion on 4,096 trials from a key the study never used (float64)."""
    checked = 0
    for (base, task, _name), mid in zip(_models(), [m["id"] for m in tiny.models], strict=True):
        fresh = task.sample(jax.random.key(424_242), 4096)
        for criterion, tol in (("loss", 0.05), ("score", 0.01)):
            path = tiny.compressed(mid, criterion)
            if not path.is_file():
                continue
            model, _ = sj.load_model(path)
            rel, drop, _ = _np_figures(base, model, task, fresh)
            assert (rel if criterion == "loss" else drop) <= tol, (mid, criterion, rel, drop)
            checked += 1
    assert checked >= 3


def test_compressed_model_loads_in_sweep_and_torch(tiny, tmp_path):
    path = next(p for c in ("loss", "score") for p in [tiny.compressed("flipflop-a-n10", c)] if p.is_file())
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


def test_margin_given_failing_sets_and_finetune(tmp_path, monkeypatch):
    """A given margin replaces the gap rule; a set that fails the bound is not exported (forced here for the score
    criterion) and is listed with its figures; the finetune part runs and is tabled."""
    real = compression.decide

    def fail_score(*a, **k):
        return real(*a, **{**k, "tol": -1.0}) if k["criterion"] == "score" else real(*a, **k)

    monkeypatch.setattr(compression, "decide", fail_score)
    st = sj.study(
        out=tmp_path / "m",
        models=_models()[2:],
        progress=False,
        margin=0.5,
        finetune=1,
        finetune_steps=3,
        finetune_schedule=0.5,
        decision_trials=256,
        **TINY,
    )
    p = st.parts["flipflop-a-n10"]
    for crit, tol in (("loss", 0.05), ("score", 0.01)):
        found = p[f"compression-{crit}"]
        assert found["tol"] == pytest.approx(0.5 * tol) and found["margin"]["rule"] == "given"
        # the selection-batch figure of the found set is within the tightened threshold
        sel = abs(found["selection"]["rel"]) if crit == "loss" else found["selection"]["drop"]
        assert sel <= 0.5 * tol + 1e-12
    sc = p["compression-score"]
    assert not sc["exported"] and sc["removed"] == [] and not st.compressed("flipflop-a-n10", "score").exists()
    text = st.report.read_text()
    assert "at 0.5 times each criterion's threshold (margin 0.5, given)" in text
    assert "Not exported" in text and "- flipflop-a-n10 (score): found" in text
    assert json.loads((st.path / "manifest.json").read_text())["config"]["margin"] == 0.5
    ft = p["finetune"]
    assert {r["method"] for r in ft["curve"]} >= {"fine-tuned", "one-shot", "magnitude"}
    assert len(st.tables["finetune"]) and "4b. Prune and fine-tune" in text
    if ft["accepted"]:
        model, meta = sj.load_model(st.path / "compressed" / "flipflop-a-n10-finetuned-loss.eqx")
        assert meta["compression"]["heldout"]["holds"] and meta["removed_couplings"] == ft["removed"]


def test_margin_from_the_selection_validation_gap(tiny):
    """The rule: when the found set fails on the validation batch, search again at (1 - gap / tol) tol."""
    reran = 0
    for p in tiny.parts.values():
        for crit, tol in (("loss", 0.05), ("score", 0.01)):
            mg = p[f"compression-{crit}"]["margin"]
            rounds = mg["rounds"]
            assert mg["rule"] == "gap" and rounds[0]["margin"] == 0.0 and len(rounds) <= compression.MARGIN_ROUNDS + 1
            for a, b in zip(rounds, rounds[1:], strict=False):
                assert a["validation"] > tol  # reran only after a validation failure
                assert b["margin"] == pytest.approx(min(compression.MAX_MARGIN, max(a["margin"], a["gap"] / tol)))
                assert b["tol"] == pytest.approx(tol * (1 - b["margin"]))
                reran += 1
            last = rounds[-1]
            assert mg["value"] == last["margin"] and len(p[f"compression-{crit}"]["found"]) == last["size"]
    assert reran >= 1  # these tiny networks include one whose first set fails on the validation batch


def test_compression_holds_says_whether_the_held_out_batch_keeps_the_criterion(tiny):
    c = tiny.tables["compression"]
    assert len(c) == 6
    for r in c.itertuples():
        found = tiny.parts[r.model][f"compression-{r.criterion}"]
        assert r.holds == found["decision"]["holds"] == tiny.compressed(r.model, r.criterion).is_file()
        assert r.decision_trials == 1024
        if r.holds:  # the bound of the accepted set is within the criterion
            assert (r.heldout_rel_ucb <= 0.05) if r.criterion == "loss" else (r.heldout_drop_ucb <= 0.01)
            assert r.removed >= 1
        else:
            assert r.removed == 0
    n_loss = int(c.holds[c.criterion == "loss"].sum())
    assert f"loss criterion: the found set holds on the held-out batch in {n_loss} of 3 networks" in (
        tiny.report.read_text()
    )


def test_a_registered_part_is_added_to_a_finished_study(tiny, tmp_path):
    """A user's question (:class:`schurjax.studies.parts.Part`): registered, it runs on a finished study folder for
    every model and nothing else is recomputed; its record is stored with its identity and read back by ``load``."""
    import shutil

    from schurjax.studies import parts

    calls = []

    def norms(inp, done):
        calls.append(inp.spec.id)
        T = np.asarray(inp.sf.T)
        return {"fro_T": float(np.linalg.norm(T)), "ranked": len(done["selection"]["single"]["rel"])}

    out = tmp_path / "s"
    shutil.copytree(tiny.path, out)
    parts.register(parts.FnPart("norms", norms, needs=("selection",)))
    try:
        computed = []
        st = sj.study(out=out, models=_models(), progress=False, on_part=lambda m, p: computed.append(p), **TINY)
    finally:
        del parts.REGISTRY["norms"]
    assert computed == ["norms"] * 3 and calls == [m["id"] for m in tiny.models]
    for (model, _, _), m in zip(_models(), tiny.models, strict=True):
        rec = st.parts[m["id"]]["norms"]
        W = np.asarray(model.W_rec, np.float64)
        assert rec["fro_T"] == pytest.approx(np.linalg.norm(W), rel=1e-10)  # ||T||_F = ||W||_F: Q is orthogonal
        assert rec["ranked"] == len(sj.ablate.single_couplings(sj.ordered_schur(W)))
    assert st.report.read_text() == tiny.report.read_text()  # the report reads the built-in parts only
    assert sj.studies.load(out).parts[tiny.models[0]["id"]]["norms"] == st.parts[tiny.models[0]["id"]]["norms"]
