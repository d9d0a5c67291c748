"""The HTML report names its criterion and, for a leaky network, the per-step decay beside the eigenvalues."""

import numpy as np
import pytest

import schurjax as sj

pytest.importorskip("matplotlib")


def test_report_of_a_leaky_model_names_criterion_and_decay(tmp_path):
    from schurjax.sweeps.report import write_report

    model = sj.zoo.load("flipflop", seed=1, alpha=0.2)
    run = sj.sweep(
        [(model, sj.zoo.task("flipflop"), "ff")],
        out=tmp_path / "run",
        families="block,all_nonnormal",
        controls=1,
        trials=8,
        progress=False,
        log=lambda s: None,
    )
    assert run.manifest["config"]["order"] == "auto" and run.manifest["config"]["models"][0]["order"] == ["decay", 0.2]
    text = write_report(run, save_pngs=False).read_text()
    assert "criterion: keep = task score drops by ≤ 0.01" in text
    lam = sj.ordered_schur(np.asarray(model.W_rec, np.float64)).eigvals
    decay = np.abs(0.8 + 0.2 * lam)  # independent of the SchurForm helper
    assert f"to {decay.max():.4g}" in text and "order: decay" in text
    loss_text = write_report(run, save_pngs=False, criterion="loss").read_text()
    assert "criterion: keep = Δloss/loss ≤ 5%" in loss_text
