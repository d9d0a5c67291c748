"""Figures: each draws what it claims (checked against the data it was given) and renders to a PNG."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import schurjax as sj  # noqa: E402
from schurjax import plot, results  # noqa: E402
from schurjax.store.table import flatten_label  # noqa: E402
from schurjax.sweeps import figures, report  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fake():
    """A random Schur form and a synthetic table (ablations + one matched-norm control each) for two models."""
    rng = np.random.default_rng(7)
    n = 10
    sf = sj.ordered_schur(rng.normal(size=(n, n)) / np.sqrt(n) * 1.2)
    abl = sj.ablate.Variants.concat(
        sj.ablate.single_couplings(sf), sj.ablate.block_couplings(sf), sj.ablate.bands(sf), sj.ablate.all_nonnormal(sf)
    )
    ctrl = sj.ablate.matched_norm(jax.random.key(0), sf, abl)
    v = sj.ablate.Variants.concat(abl, ctrl)
    rows = []
    for m, (mid, task) in enumerate((("copy-0", "copy"), ("sine-3", "sine"))):
        off = m * len(v)
        for k, lab in enumerate(v.labels):
            r = {"row_id": off + k, "model": mid, "task": task, "model_seed": int(mid[-1])}
            r.update(flatten_label(lab))
            r["control_of"] = None if lab.get("control_of") is None else off + lab["control_of"]
            rel = float(rng.normal() * 10.0 ** rng.uniform(-4, 0))
            r.update(
                delta_norm=float(v.delta_norm[k]),
                rel_delta_loss=rel,
                delta_loss=rel * 0.5,
                loss=0.5 + rel * 0.5,
                base_loss=0.5,
                base_score=0.9,
            )
            rows.append(r)
    return sf, rows


def _png_ok(fig):
    data = plot.to_png(fig, dpi=50)
    assert data[:8] == PNG and len(data) > 2000


def test_plot_is_not_imported_by_schurjax():
    code = "import sys, schurjax; print('matplotlib' in sys.modules, 'schurjax.plot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_schur_heatmap_shows_abs_T_with_block_grid(fake):
    sf, _ = fake
    fig = plot.schur_heatmap(sf)
    ax = fig.axes[1]
    img = ax.get_images()[0].get_array()
    np.testing.assert_array_equal(np.ma.getdata(img)[~np.ma.getmaskarray(img)], np.abs(sf.T)[sf.T != 0])
    assert np.array_equal(np.ma.getmaskarray(img), sf.T == 0)
    assert len(ax.patches) == len(sf.blocks)  # one outline per diagonal block
    strip = fig.axes[0]
    ys = np.concatenate([line.get_ydata() for line in strip.get_lines() if line.get_marker() == "o"])
    np.testing.assert_allclose(np.sort(ys), np.sort(np.abs(np.linalg.eigvals(sf.reconstruct()))), rtol=1e-8)
    assert "Schur" in fig._suptitle.get_text() and ax.get_xlabel() and ax.get_ylabel()
    _png_ok(fig)


def test_importance_map_puts_each_coupling_in_place(fake):
    sf, table = fake
    rows = [r for r in table if r["model"] == "copy-0"]
    fig = figures.importance_map(sf, rows)
    img = fig.axes[0].get_images()[0].get_array()
    expected = np.full((sf.n, sf.n), np.nan)
    for r in rows:
        if r["family"] == "single":
            expected[r["row"], r["col"]] = r["rel_delta_loss"]
    got = np.ma.filled(img.astype(float), np.nan)
    np.testing.assert_array_equal(got, expected)
    assert "loss change" in fig.axes[0].get_title()
    _png_ok(fig)
    # block family fallback fills each block pair's rectangle
    brows = [r for r in rows if r["family"] == "block"]
    img = figures.importance_map(sf, brows).axes[0].get_images()[0].get_array()
    r0 = brows[0]
    s, z = sf.blocks[r0["target_block"]]
    assert img[s, sf.blocks[r0["source_block"]][0]] == r0["rel_delta_loss"]


def test_loss_vs_norm_plots_every_row_on_log_axes(fake):
    _, table = fake
    rows = [r for r in table if r["model"] == "sine-3"]
    fig = figures.loss_vs_norm(rows)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    pts = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(pts) == sum(1 for r in rows if r["delta_norm"] > 0)
    np.testing.assert_allclose(np.sort(pts[:, 0]), np.sort([r["delta_norm"] for r in rows if r["delta_norm"] > 0]))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("control" in t for t in labels) and any("single" in t for t in labels)
    _png_ok(fig)


def test_eigenvalues_in_complex_plane(fake):
    sf, _ = fake
    fig = plot.eigenvalues(sf)
    ax = fig.axes[0]
    pts = ax.collections[0].get_offsets()
    ref = np.linalg.eigvals(sf.reconstruct())
    np.testing.assert_allclose(np.sort_complex(pts[:, 0] + 1j * pts[:, 1]), np.sort_complex(ref), atol=1e-8)
    circle = ax.get_lines()[0].get_xydata()
    np.testing.assert_allclose(np.hypot(circle[:, 0], circle[:, 1]), 1.0, atol=1e-12)
    assert ax.get_aspect() == 1.0
    _png_ok(fig)


def test_run_level_figures(fake):
    _, table = fake
    fig = figures.family_distributions(table)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["copy", "sine"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["single", "block", "band", "all\nnonnormal"]
    # one box per family plus one for its controls; box medians are the medians of exactly those rows
    copy = [r for r in table if r["task"] == "copy"]
    fam = {r["row_id"]: r["family"] for r in copy if r["control_of"] is None}
    want = []
    for f in ("single", "block", "band"):
        want.append(np.median([r["rel_delta_loss"] for r in copy if r["family"] == f]))
        want.append(
            np.median([r["rel_delta_loss"] for r in copy if r["control_of"] is not None and fam[r["control_of"]] == f])
        )
    medians = [
        line.get_ydata()[0]
        for line in ax.get_lines()
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] != line.get_xdata()[1] and line.get_linestyle() == "-"
    ]
    for w in want:
        assert any(np.isclose(m, w) for m in medians), (w, medians)
    _png_ok(fig)
    fig = figures.keep_profile(table)
    heat = fig.axes[1].get_images()[0].get_array()
    rows = [r for r in table if r["model"] == "copy-0" and r["family"] == "single"]
    assert heat[0, 0] == pytest.approx(np.mean([abs(r["rel_delta_loss"]) <= 0.05 for r in rows]))
    _png_ok(fig)


def test_write_report_is_self_contained(fake, tmp_path):
    sf, table = fake
    rf = results.RunFolder(tmp_path / "run")
    rf.start(
        {
            "config": {"families": ["single"], "controls": 1, "control_kinds": ["matched_norm"]},
            "models": [{"id": "copy-0", "source": "test"}, {"id": "sine-3", "source": "test"}],
        }
    )
    rf.save_schur("copy-0", sf)
    rf.save_schur("sine-3", sf)
    rf.finish(table)
    path = report.write_report(results.load(tmp_path / "run"), dpi=40)
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 2 + 2 * 4
    assert 'src="http' not in text and "arXiv:2606.18457" in text and "copy-0" in text
    assert len(list((tmp_path / "run" / "figures").glob("*.png"))) == 10


@pytest.fixture(scope="module")
def two_kinds():
    """One model's table with matched-norm and coupling-noise controls of every ablation."""
    rng = np.random.default_rng(3)
    sf = sj.ordered_schur(rng.normal(size=(8, 8)) / np.sqrt(8) * 1.2)
    abl = sj.ablate.Variants.concat(sj.ablate.single_couplings(sf), sj.ablate.block_couplings(sf))
    v = sj.ablate.Variants.concat(
        abl, sj.ablate.matched_norm(jax.random.key(1), sf, abl), sj.ablate.coupling_noise(jax.random.key(2), sf, abl)
    )
    rows = []
    for k, lab in enumerate(v.labels):
        r = {"row_id": k, "model": "flipflop-0", "task": "flipflop", "model_seed": 0, **flatten_label(lab)}
        r["control_of"] = lab.get("control_of")
        rel = float(rng.normal() * 10.0 ** rng.uniform(-4, 0))
        r.update(
            delta_norm=float(v.delta_norm[k]),
            rel_delta_loss=rel,
            delta_loss=rel,
            loss=1 + rel,
            base_loss=1.0,
            base_score=0.9,
        )
        rows.append(r)
    return sf, rows


def test_control_kinds_are_never_pooled(two_kinds):
    _, table = two_kinds
    fig = figures.loss_vs_norm(table)
    ax = fig.axes[0]
    assert "matched-norm" in ax.get_title() and "coupling-noise" in ax.get_title()
    legend = {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)}
    assert "random control: matched-norm" in legend and "random control: coupling-noise" in legend
    # each kind's scatter holds exactly that kind's rows (different markers: different paths)
    for kind in ("matched_norm", "coupling_noise"):
        want = sorted(r["delta_norm"] for r in table if r.get("control_kind") == kind and r["rel_delta_loss"] >= 0)
        (coll,) = [c for c in ax.collections if c.get_label() == f"random control: {kind.replace('_', '-')}"]
        np.testing.assert_allclose(np.sort(coll.get_offsets()[:, 0]), want)
    paths = [
        legend[f"random control: {k}"].get_paths()[0].vertices.tolist() for k in ("matched-norm", "coupling-noise")
    ]
    assert paths[0] != paths[1]
    _png_ok(fig)
    fig = figures.keep_profile(table)
    axh = fig.axes[1]
    labels = [t.get_text() for t in axh.get_xticklabels()]
    assert labels == ["single", "norm\nctrl", "noise\nctrl", "block", "norm\nctrl", "noise\nctrl"]
    heat = axh.get_images()[0].get_array()
    fam = {r["row_id"]: r["family"] for r in table if r["control_of"] is None}
    for j, (f, kind) in enumerate(
        [
            ("single", None),
            ("single", "matched_norm"),
            ("single", "coupling_noise"),
            ("block", None),
            ("block", "matched_norm"),
            ("block", "coupling_noise"),
        ]
    ):
        if kind is None:
            sel = [r for r in table if r["family"] == f]
        else:
            sel = [r for r in table if r.get("control_kind") == kind and fam[r["control_of"]] == f]
        assert heat[0, j] == pytest.approx(np.mean([abs(r["rel_delta_loss"]) <= 0.05 for r in sel]))
    _png_ok(fig)
    fig = figures.family_distributions(table)
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert legend == ["random controls: matched-norm", "random controls: coupling-noise"]
    _png_ok(fig)


def test_eigenvalue_plot_draws_the_leaky_step_boundary():
    """For a leaky step the stable region is |1 - α + αλ| < 1: a circle of centre 1 - 1/α and radius 1/α."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(8, 8)) * 0.6
    sf = sj.ordered_schur(W, order="decay", alpha=0.2)
    fig = plot.eigenvalues(sf)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    (name,) = [k for k in lines if k.startswith("|1 − α + αλ| = 1")]
    x, y = lines[name].get_xdata(), lines[name].get_ydata()
    np.testing.assert_allclose(np.hypot(x - (1 - 1 / 0.2), y), 1 / 0.2, rtol=1e-12)
    lam = np.linalg.eigvals(W)
    n_out = int(np.sum(np.abs(0.8 + 0.2 * lam) > 1))
    assert f"{n_out} with per-step decay" in fig.axes[0].get_title()
