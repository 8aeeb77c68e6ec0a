"""Section 3: the empirical phase diagrams against the theory, reproduced end to end (quick)."""

from pathlib import Path

import numpy as np
import pytest

from superposition import theory
from superposition.experiments import phase_change
from superposition.reproduce import load_runs, redraw, reproduce


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("res")
    target, _ = reproduce("phase-change", out, quick=True, progress=False)
    return target


@pytest.mark.slow
def test_the_quick_phase_diagrams_bear_out_the_papers_claims(folder: Path) -> None:
    _, runs = load_runs(folder)
    claims = phase_change.claims(runs)
    assert len(claims) == 6
    assert all(c.holds for c in claims), [c for c in claims if not c.holds]


@pytest.mark.slow
def test_diagrams_are_laid_out_importance_by_density(folder: Path) -> None:
    _, runs = load_runs(folder)
    d = phase_change.diagrams(runs["n2-m1"])
    assert d.empirical.shape == d.theoretical.shape == (12, 12)
    # dense and much less important: dropped; dense and much more important: a dimension of its
    # own; sparse and equally important: superposition (the corners of the paper's diagram)
    names = np.array(theory.PHASES)
    assert names[d.empirical[0, 0]] == "not represented"
    assert names[d.empirical[-1, 0]] == "dedicated dimension"
    assert names[d.theoretical[5, -1]] == "superposition"
    # n=3, m=2 with the paper's plain candidates: the dense, important corner is the fourth region
    d3 = phase_change.diagrams(runs["n3-m2"])
    assert names[d3.plain[-1, 0]] == "dedicated dimension, other dropped"
    assert names[d3.theoretical[-1, 0]] == "dedicated dimension"  # ties at density 1, first wins
    assert set(d3.empirical.ravel().tolist()) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_figures_and_interactive_versions(folder: Path) -> None:
    from superposition.plots.phase_change import INTERACTIVE

    png = folder / "figures" / "phase-diagrams.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    png.unlink()
    redraw(folder)
    assert png.exists()
    _, runs = load_runs(folder)
    fig = INTERACTIVE["phase-diagrams"](runs)
    assert len(fig.data) == 4  # two models x (trained, theory)


def test_grid_spans_the_papers_ranges() -> None:
    densities, importances = phase_change.grid(40)
    assert len(densities) == len(importances) == 40
    assert densities[0] == 1.0 and densities[-1] == 0.01
    assert importances[0] == 0.1 and importances[-1] == 10.0
