"""The package map lives in the package docstrings: each package's ``__init__.py`` lists every module and
subpackage in it, one per line, as ``- :mod:`~schurjax.pkg.name`: one-line description``.

The docstrings are read from the source files (no import), so the test also covers modules that need an extra.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "schurjax"
ENTRY = re.compile(r"^- :mod:`~?(?P<name>schurjax(?:\.\w+)*)`: (?P<what>\S.*)$")
PACKAGES = sorted(p.parent for p in ROOT.rglob("__init__.py") if "__pycache__" not in p.parts)


def _dotted(folder: Path) -> str:
    return ".".join(folder.relative_to(ROOT.parent).parts)


def _members(folder: Path) -> set[str]:
    """Module files and subpackages directly inside a package folder."""
    modules = {p.stem for p in folder.glob("*.py") if p.name != "__init__.py"}
    return modules | {d.name for d in folder.iterdir() if (d / "__init__.py").is_file()}


def _listed(folder: Path) -> dict[str, str]:
    """Member name -> description, from the ``- :mod:`...`: ...`` lines of the package docstring."""
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))) or ""
    listed = {}
    for line in doc.splitlines():
        m = ENTRY.match(line.strip())
        if m:
            parent, _, name = m["name"].rpartition(".")
            assert parent == _dotted(folder), f"{_dotted(folder)} lists {m['name']}, which is not one of its members"
            assert name not in listed, f"{_dotted(folder)} lists {name} twice"
            listed[name] = m["what"]
    return listed


def test_every_folder_with_modules_is_a_package():
    loose = sorted(
        _dotted(d)
        for d in ROOT.rglob("*")
        if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py")) and not (d / "__init__.py").exists()
    )
    assert not loose, f"folders with Python files but no __init__.py (the map cannot list them): {loose}"


@pytest.mark.parametrize("folder", PACKAGES, ids=_dotted)
def test_package_docstring_lists_its_modules(folder):
    members, listed = _members(folder), _listed(folder)
    missing, stale = sorted(members - set(listed)), sorted(set(listed) - members)
    where = f"{_dotted(folder)} ({folder.relative_to(ROOT.parent)}/__init__.py docstring)"
    assert not missing, f"{where} does not list {missing}: add '- :mod:`~{_dotted(folder)}.NAME`: what it holds'"
    assert not stale, f"{where} lists {stale}, which no longer exist there"
    short = [name for name, what in listed.items() if len(what.split()) < 3]
    assert not short, f"{where}: give {short} a one-line description"
