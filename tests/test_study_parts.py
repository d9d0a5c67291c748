"""The study's parts behind one protocol: the registry's order and needs, one-line refusals, and a part added by a
user that the study computes, stores with its identity and loads without any change to the runner."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import schurjax as sj
from schurjax.studies import parts

TINY = {
    "trials": 8,
    "bootstrap": 10,
    "control_max": 4,
    "greedy_candidates": 4,
    "greedy_passes": 1,
    "restriction_max": 4,
    "null_draws": 10,
    "worst_starts": 1,
    "worst_steps": 2,
    "radius_iters": 1,
    "rotations": 1,
}


def test_registry_order_and_needs():
    names = list(parts.REGISTRY)
    assert tuple(names) == sj.studies.PARTS
    for i, name in enumerate(names):
        part = parts.REGISTRY[name]
        assert isinstance(part, parts.Part) and part.name == name
        assert all(names.index(need) < i for need in part.needs), (name, part.needs)

    class Spec:  # what applies() reads of a model spec
        def __init__(self, task):
            self.task = sj.tasks.get(task)

    copy, ff = Spec("copy"), Spec("flipflop")
    assert "replay" in parts.applicable(copy) and "replay" not in parts.applicable(ff)
    assert "finetune" in parts.applicable(ff, True) and "finetune" not in parts.applicable(ff, False)


def test_register_refuses_in_one_line():
    with pytest.raises(sj.InputError, match=r"^register: part: a part named 'heldout' is registered already$"):
        parts.register(parts.FnPart("heldout", lambda inp, done: {}))
    with pytest.raises(sj.InputError, match=r"^register: part: 'x' needs \['nope'\], which are not registered"):
        parts.register(parts.FnPart("x", lambda inp, done: {}, needs=("nope",)))
    with pytest.raises(sj.InputError, match=r"^register: part: must have name, needs, applies\(\) and compute\(\)"):
        parts.register(object())


@pytest.fixture
def norms_part():
    """A user's question: the Frobenius norms of T and of its couplings, and how many single removals the
    selection part ranked (it needs ``selection``)."""
    calls = []

    def norms(inp, done):
        calls.append(inp.spec.id)
        T = np.asarray(inp.sf.T)
        return {
            "fro_T": float(np.linalg.norm(T)),
            "fro_couplings": float(np.linalg.norm(T[inp.sf.coupling_mask])),
            "ranked": len(done["selection"]["single"]["rel"]),
        }

    part = parts.register(parts.FnPart("norms", norms, needs=("selection",)))
    yield part, calls
    del parts.REGISTRY[part.name]


def test_a_registered_part_runs_is_stored_resumed_and_loaded(norms_part, tmp_path):
    part, calls = norms_part
    model = sj.TanhRNN(3, 10, 2, key=jax.random.key(1), gain=1.2)
    task = sj.tasks.get("copy", length=3, delay=1)
    out = tmp_path / "s"
    st = sj.study(out=out, models=[(model, task, "copy-a")], progress=False, **TINY)
    rec = st.parts["copy-a-n10"]["norms"]
    # independent of the study's Schur form: ||T||_F = ||W||_F (Q orthogonal); the couplings are what the Schur
    # form's strictly-upper-block part holds, which SciPy's real Schur form gives up to the block order
    W = np.asarray(model.W_rec, np.float64)
    assert rec["fro_T"] == pytest.approx(np.linalg.norm(W), rel=1e-10)
    assert rec["ranked"] == len(sj.ablate.single_couplings(sj.ordered_schur(W)))
    assert calls == ["copy-a-n10"]
    manifest = sj.results.read_manifest(out / "manifest.json", "test")
    assert manifest["parts"][-1] == "norms"
    assert sj.studies.load(out).parts["copy-a-n10"]["norms"] == rec  # stored with its identity and checksum
