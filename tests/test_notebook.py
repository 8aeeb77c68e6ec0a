"""examples/tutorial.ipynb: stored executed (so that it reads with its figures on GitHub and in
the docs), and re-executed here top to bottom in a fresh kernel (nbclient) with the outcomes it
teaches. Store it again after an edit: scripts/execute_notebook.py."""

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"
KERNEL = "superposition-tests"
BUDGET_S = 180
"""Far above what it needs (under a minute on 2 cores, numba's cache cold): this catches a
notebook that someone made slow by accident, not a slow machine."""


def test_notebook_is_stored_executed() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the tutorial has no code"
    # run top to bottom, once, every cell: store it with scripts/execute_notebook.py
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        "store examples/tutorial.ipynb executed top to bottom (scripts/execute_notebook.py)"
    )
    text, htmls, images = _outputs(nb)  # no cell stored with an error
    assert "pentagon" in text and images == 3 and len(htmls) == 3
    assert "/tmp" not in text and "superposition-tutorial-" not in text  # no machine's paths
    assert nb.metadata.kernelspec.name == "python3"


def _kernel_manager(tmp: Path) -> KernelManager:
    """A kernel that runs this interpreter (the venv's), whatever kernels the user has installed."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    specs = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    # the connection file in tmp too: no need for a writable Jupyter runtime folder in HOME
    return KernelManager(
        kernel_name=KERNEL,
        kernel_spec_manager=specs,
        connection_file=str(tmp / "connection.json"),
    )


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, list[str], int]:
    """Everything the cells printed, their HTML outputs and how many images they showed."""
    text, htmls, images = [], [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{out.ename}: {out.evalue}"
            if out.output_type == "stream":
                text.append(out.text)
            data = out.get("data", {})
            htmls += [data["text/html"]] if "text/html" in data else []
            images += "image/png" in data
    return "".join(text), htmls, images


@pytest.mark.slow
def test_tutorial_runs(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "cwd"
    work.mkdir()
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=120,
        resources={"metadata": {"path": str(work)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first cell that fails
    seconds = time.perf_counter() - started
    assert seconds < BUDGET_S, f"the tutorial took {seconds:.0f} s (budget {BUDGET_S} s)"

    text, htmls, images = _outputs(nb)
    # the introduction's story, best seed per density (seeded, and the same for other seeds)
    shapes = re.findall(r"density (\S+) +-> (.+)", text)
    assert shapes == [
        ("1.0", "2 dedicated dimensions + 3 not represented"),
        ("0.3", "2 antipodal pairs + 1 not represented"),
        ("0.1", "pentagon"),
        ("0.03", "pentagon"),
    ]
    assert "refused: density must be in" in text
    assert "same weights: True" in text
    assert "points trained the second time: 0" in text
    agree = re.search(r"trained and theory agree on (\d+)% of the points", text)
    assert agree is not None and int(agree.group(1)) >= 80
    assert "scratch folder removed: True" in text
    assert list(work.iterdir()) == [], "the notebook wrote into its working folder"

    # the run, the geometry summary and the sweep showed themselves, small and self-contained
    assert len(htmls) == 3
    run_html, summary_html, sweep_html = htmls
    assert "Run: 5 features in 2 dimensions, 24 instances" in run_html
    assert "pentagon" in summary_html
    assert "Sweep over density, relative_importance" in sweep_html
    for h in htmls:
        assert "<table" in h and "<svg" in h and "<script" not in h
        assert len(h) < 20_000
    assert images == 3  # intro polygons, Section 2 norm bars, the phase diagram
