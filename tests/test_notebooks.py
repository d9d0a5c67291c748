"""Execute every notebook in notebooks/ at small sizes (SCHURJAX_QUICK=1); any error fails the test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    zoo = pytest.importorskip("schurjax.zoo")
    if not zoo.entries():
        pytest.skip("no zoo models shipped")
    monkeypatch.setenv("SCHURJAX_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    for extra in nb.metadata.get("schurjax", {}).get("requires", []):  # optional packages a notebook needs
        pytest.importorskip(extra)
    n_cells = len(nb.cells)
    # which interpreter ran the notebook: appended here, checked below
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = nbclient.NotebookClient(
        nb, timeout=300, km=_this_interpreter_kernel(tmp_path), resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any error
    outputs = [o for cell in nb.cells[:n_cells] if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
    (probe,) = [o for o in nb.cells[-1].outputs if o.get("output_type") == "stream"]
    assert probe["text"].strip() == sys.executable


def _this_interpreter_kernel(tmp_path: Path):
    """A kernel manager whose kernel runs this interpreter (``sys.executable``, i.e. the venv), whatever kernel
    named ``python3`` Jupyter would otherwise find on the machine."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "schurjax-test"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "schurjax test", "language": "python"})
    )
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="schurjax-test", kernel_spec_manager=ksm)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "execute the notebook before committing it"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
