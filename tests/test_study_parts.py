"""The study's parts behind one protocol: the registry's order and needs, and one-line refusals (a part added by a
user is run on a finished study in ``tests/test_study.py``)."""

from __future__ import annotations

import pytest

import schurjax as sj
from schurjax.studies import parts


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
