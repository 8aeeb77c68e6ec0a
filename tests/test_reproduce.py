"""`reproduce intro`: the introduction figure, its claims, and redrawing from the run folder."""

import json
from pathlib import Path

import pytest

from superposition.errors import ConfigError, RunDirError
from superposition.reproduce import redraw, reproduce


@pytest.fixture(scope="module")
def intro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    target, claims = reproduce("intro", out, quick=True, progress=False)
    assert target == out / "intro"
    return target


@pytest.mark.slow
def test_intro_reproduces_the_papers_claims(intro_dir: Path) -> None:
    claims = json.loads((intro_dir / "claims.json").read_text())
    assert [c["section"] for c in claims] == ["Introduction"] * 3
    failed = [c for c in claims if not c["holds"]]
    assert not failed, f"claims not borne out: {failed}"
    assert "pentagon" in claims[2]["measured"] or "5 features in 2" in claims[2]["measured"]


@pytest.mark.slow
def test_intro_figures_are_written_and_redrawn_without_training(intro_dir: Path) -> None:
    assert (intro_dir / "runs" / "relu" / "weights.safetensors").is_file()
    png = intro_dir / "figures" / "polygons.png"
    svg = intro_dir / "figures" / "polygons.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]
    png.unlink()
    (intro_dir / "claims.json").unlink()
    claims = redraw(intro_dir)
    assert png.exists() and (intro_dir / "claims.json").exists()
    assert len(claims) == 3


def test_unknown_experiment_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown experiment 'nope'.*intro"):
        reproduce("nope", tmp_path, quick=True, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_existing_results_are_not_overwritten_without_force(intro_dir: Path) -> None:
    weights = intro_dir / "runs" / "relu" / "weights.safetensors"
    before = weights.read_bytes()
    with pytest.raises(ConfigError, match="--force"):
        reproduce("intro", intro_dir.parent, quick=True, progress=False)
    assert weights.read_bytes() == before


def test_an_interrupted_reproduce_leaves_no_folder(tmp_path, monkeypatch):
    import superposition.reproduce as rep

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rep, "_draw", boom)
    with pytest.raises(KeyboardInterrupt):
        reproduce("intro", tmp_path, quick=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_ours_is_never_replaced(tmp_path):
    (tmp_path / "intro").mkdir()
    (tmp_path / "intro" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a reproduced experiment"):
        reproduce("intro", tmp_path, quick=True, force=True, progress=False)
    assert (tmp_path / "intro" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["../../../../somewhere", "/etc", "a/b", "..", ".hidden", ""])
def test_experiment_runs_must_be_plain_names_inside_runs(tmp_path: Path, name: str) -> None:
    from superposition.reproduce import EXPERIMENT_FILE, load_runs

    folder = tmp_path / "intro"
    (folder / "runs").mkdir(parents=True)
    (folder / EXPERIMENT_FILE).write_text(json.dumps({"name": "intro", "runs": [name]}))
    with pytest.raises(RunDirError, match="run names must be plain folder names inside"):
        load_runs(folder)
