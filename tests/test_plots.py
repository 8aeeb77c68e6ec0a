"""Figures of any run and any sweep: the files draw_run / draw_sweep / draw write, the generic
figure functions on runs of every model kind, the paper's functions on a user's records, the store
hook."""

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from superposition import theory
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError, RunDirError
from superposition.plots import draw, draw_run, draw_sweep
from superposition.plots.demonstrating_superposition import gram_and_bias, norm_bars
from superposition.plots.phase_change import phase_diagrams, phase_grid
from superposition.plots.runs import MAX_GROUPS, dimensionality, loss_curves, polygons
from superposition.plots.sweeps import heatmap
from superposition.results import Run
from superposition.store import load_run, save_run
from superposition.sweep import Axis, SweepConfig, SweepResult, run_sweep
from superposition.training import train

TRAIN = {"steps": 200, "batch_size": 64, "instances": 2, "eval_samples": 500, "log_every": 50,
         "device": "cpu"}
RUN_FILES = ["gram", "norms", "dimensionality", "loss"]


def config(kind: str = "relu", n: int = 5, m: int = 2, **data: object) -> RunConfig:
    return RunConfig(
        data=DataConfig(n_features=n, **data),  # type: ignore[arg-type]
        model=ModelConfig(kind=kind, n_hidden=m),  # type: ignore[arg-type]
        train=TrainConfig(**TRAIN),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def relu2() -> Run:
    return train(config(density=(1.0, 0.1, 0.01)), progress=False)


@pytest.fixture(scope="module")
def many_groups() -> Run:
    """15 groups (5 densities x 3 relative importances): more than MAX_GROUPS panels."""
    dens, rel = (1.0, 0.3, 0.1, 0.03, 0.01), (0.5, 1.0, 2.0)
    return train(config(n=6, m=3, density=dens, relative_importance=rel), progress=False)


@pytest.fixture(scope="module")
def phase_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """Section 3's grid in miniature: 3 densities x 2 relative importances, n=2, m=1."""
    sweep = SweepConfig(
        config(n=2, m=1),
        (Axis.logspace("density", 0, -1, 3), Axis("relative_importance", [0.5, 2.0])),
    )
    return run_sweep(sweep, tmp_path_factory.mktemp("sweeps") / "phase", progress=False)


def check_files(paths: list[Path], out: Path, names: list[str]) -> None:
    """Exactly ``names`` as PNG and SVG in ``out``: real images of a sensible size, no temp
    files."""
    expected = sorted(f"{n}.{ext}" for n in names for ext in ("png", "svg"))
    assert sorted(p.name for p in paths) == expected
    assert sorted(p.name for p in out.iterdir()) == expected, "only the figures, no temp files"
    for name in names:
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            width, height = image.size
        assert image.format == "PNG" and width >= 400 and height >= 300, (name, image.size)
        assert png.stat().st_size > 8_000, f"{name}.png is nearly empty"
        text = svg.read_text()
        assert "<svg" in text[:1000] and text.rstrip().endswith("</svg>")
    plt.close("all")


def test_draw_run_of_a_2d_relu_model_writes_every_figure_and_the_polygons(
    relu2: Run, tmp_path: Path
) -> None:
    out = tmp_path / "figures"
    paths = draw_run(relu2, out)
    check_files(paths, out, [*RUN_FILES, "polygons"])
    assert plt.get_fignums() == [], "figures are closed after saving"


@pytest.mark.parametrize(
    ("kind", "m"), [("privileged", 3), ("abs", 3), ("linear", 1)], ids=["privileged", "abs", "m1"]
)
def test_draw_run_of_other_kinds_has_no_polygons_unless_m_is_2(
    kind: str, m: int, tmp_path: Path
) -> None:
    run = train(config(kind, n=4, m=m, density=(0.3,)), progress=False)
    if kind == "abs":
        assert "W_dec" in run.params  # the untied model
    paths = draw_run(run, tmp_path)
    check_files(paths, tmp_path, RUN_FILES)


def test_a_run_with_many_groups_draws_a_grid_and_says_what_it_left_out(
    many_groups: Run, tmp_path: Path
) -> None:
    fig = gram_and_bias(many_groups)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(titles) == MAX_GROUPS
    assert titles[0] == "1-S = 1\nr = 0.5" and titles[-1] == "1-S = 0.01\nr = 2"  # ends kept
    texts = " ".join(t.get_text() for t in fig.texts)
    assert f"{MAX_GROUPS} of 15 groups drawn" in texts
    plt.close(fig)
    # every group still has a column of points in the dimensionality figure
    fig = dimensionality(many_groups)
    ax = fig.axes[0]
    assert len(ax.collections) == 15  # one scatter per group
    assert len(ax.get_lines()[-1].get_xdata()) == 15  # dimensions per feature of each group
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "1-S = 1\nr = 0.5" and len(labels) <= MAX_GROUPS  # thinned, readable
    plt.close(fig)
    check_files(draw_run(many_groups, tmp_path), tmp_path, RUN_FILES)


def test_gram_and_bias_takes_any_mapping_or_a_single_run(relu2: Run) -> None:
    for runs in ({"relu": relu2}, relu2, {"a": relu2, "b": relu2}):
        fig = gram_and_bias(runs)  # type: ignore[arg-type]
        images = [ax for ax in fig.axes if ax.get_visible() and ax.images]
        rows = 2 if isinstance(runs, dict) and len(runs) == 2 else 1
        assert len(images) == 2 * 3 * rows  # W^T W and b of each group's best
        # symmetric colour limits, red positive (superposition.colours.DIVERGING)
        image = images[0].images[0]
        lo, hi = image.get_clim()
        r, g, b, _ = image.get_cmap()(image.norm(hi))
        assert lo == -hi and r > 0.6 and r > g + 0.3 and r > b + 0.3
        plt.close(fig)
    assert isinstance(norm_bars([relu2], "one run"), Figure)  # the tutorial's call
    plt.close("all")


def test_gram_draws_w_w_transposed_of_each_groups_best(relu2: Run) -> None:
    fig = gram_and_bias(relu2)
    best = relu2.best()
    grams = [ax.images[0].get_array() for ax in fig.axes if ax.images and ax.get_title()]
    for g, k in zip(grams, best, strict=True):
        W = relu2.W[k].double()
        np.testing.assert_allclose(np.asarray(g), (W @ W.T).numpy(), rtol=1e-6, atol=1e-9)
    plt.close(fig)


def test_polygons_refuses_models_that_are_not_2d(many_groups: Run) -> None:
    with pytest.raises(ConfigError, match="n_hidden=2.*n_hidden=3"):
        polygons(many_groups)


def test_selected_and_diverged_runs_still_draw(relu2: Run, tmp_path: Path) -> None:
    picked = relu2.select([1, 4])
    fig = gram_and_bias(picked)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["instance 1", "instance 4"]
    plt.close(fig)
    W = relu2.W.clone()
    W[relu2.best()[0], 0] = float("nan")  # a diverged best instance
    broken = dataclasses.replace(relu2, params={**relu2.params, "W": W})
    check_files(draw_run(broken, tmp_path), tmp_path, [*RUN_FILES, "polygons"])


def test_loss_curves_draw_one_line_per_instance(relu2: Run) -> None:
    fig = loss_curves(relu2)
    lines = fig.axes[0].get_lines()
    assert len(lines) == relu2.n_instances
    np.testing.assert_allclose(lines[-1].get_xdata(), relu2.history_steps.numpy())
    plt.close(fig)


def test_draw_sweep_writes_the_heatmaps_and_the_phase_diagram(
    phase_sweep: SweepResult, tmp_path: Path
) -> None:
    paths = draw_sweep(phase_sweep, tmp_path)
    check_files(
        paths, tmp_path,
        ["heatmap-best_loss", "heatmap-dimensions_per_feature", "phase-diagram"],
    )
    # the same through draw(path), from the folder alone
    again = tmp_path / "again"
    assert sorted(p.name for p in draw(phase_sweep.path, again)) == sorted(p.name for p in paths)


def test_phase_diagrams_takes_a_sweep_and_overlays_the_theory(phase_sweep: SweepResult) -> None:
    grid = phase_grid(phase_sweep)
    dens = np.array(phase_sweep.axes["density"])
    imps = np.array(phase_sweep.axes["relative_importance"])
    assert grid.empirical.shape == (2, 3)
    assert grid.theoretical is not None
    np.testing.assert_array_equal(grid.theoretical, theory.phase_diagram(2, 1, dens, imps).labels)
    # the empirical labels are the classification of each point's best seed
    for r, imp in enumerate(imps):
        for d, den in enumerate(dens):
            run = phase_sweep.select(density=float(den), relative_importance=float(imp))
            k = run.best()[0]
            label = theory.classify_extra_feature(run.W[k : k + 1])[0]
            assert theory.PHASES[grid.empirical[r, d]] == label
    fig = phase_diagrams(phase_sweep)
    assert len(fig.axes) == 4  # trained, theory, overlay, the paper's plain candidates
    assert fig.axes[2].collections, "the theory's boundaries are drawn over the trained diagram"
    assert f"{grid.agreement:.0%} agree" in fig.axes[2].get_title()
    plt.close(fig)


def test_a_phase_diagram_without_theory_draws_the_trained_one_only() -> None:
    run = train(
        config("linear", n=3, m=2, density=(1.0, 0.1), relative_importance=(0.5, 2.0)),
        progress=False,
    )
    assert phase_grid(run).theoretical is None
    fig = phase_diagrams({"linear": run})
    assert len(fig.axes) == 1
    assert "no theory drawn" in " ".join(t.get_text() for t in fig.texts)
    plt.close(fig)


def test_a_sweep_over_other_axes_gets_heatmaps_only(tmp_path: Path) -> None:
    sweep = SweepConfig(
        config(n=4, m=2),
        (Axis("density", [1.0, 0.1]), Axis("n_hidden", [1, 2, 3]), Axis("seed", [0, 1])),
    )
    result = run_sweep(sweep, tmp_path / "sweep", progress=False)
    out = tmp_path / "figures"
    check_files(
        draw_sweep(result, out), out, ["heatmap-best_loss", "heatmap-dimensions_per_feature"]
    )
    # x = density, y = n_hidden, seed folded by the mean (said in the title)
    fig = heatmap(result, "best_loss")
    ax = fig.axes[0]
    expected = np.nanmean(result.grid("best_loss"), axis=2).T
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected)
    assert "mean over seed (2 values)" in ax.get_title()
    plt.close(fig)
    fig = heatmap(result, "best_loss", x="n_hidden", y="density", fixed={"seed": 1})
    expected = result.grid("best_loss")[:, :, 1]
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), expected)
    assert "seed = 1" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ConfigError, match="'width' is not an axis.*density, n_hidden, seed"):
        heatmap(result, "best_loss", x="width")
    with pytest.raises(ConfigError, match="'geometry' is not numeric"):
        heatmap(result, "geometry")
    with pytest.raises(ConfigError, match="reduce='sum'.*mean"):
        heatmap(result, reduce="sum")
    with pytest.raises(ConfigError, match="a phase diagram needs a sweep over density and "
                       "relative_importance only"):
        phase_diagrams(result)


def test_draw_refuses_a_folder_that_is_neither_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "neither"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    with pytest.raises(RunDirError, match=r"neither.*is neither a run directory \(with "
                       r"config.json\) nor a sweep folder \(with sweep.json\)"):
        draw(folder, out)
    with pytest.raises(RunDirError, match="does not exist"):
        draw(tmp_path / "missing", out)
    assert not out.exists()


def test_save_run_draws_figures_inside_the_finished_folder(relu2: Run, tmp_path: Path) -> None:
    target = save_run(relu2, tmp_path / "run", figures=draw_run)
    names = sorted(p.name for p in (target / "figures").iterdir())
    assert names == sorted(f"{n}.{e}" for n in [*RUN_FILES, "polygons"] for e in ("png", "svg"))
    assert load_run(target).config == relu2.config
    # and draw() redraws them from the run directory alone
    redrawn = draw(target, tmp_path / "redrawn")
    assert sorted(p.name for p in redrawn) == names


def test_save_run_leaves_no_folder_when_the_figures_fail(relu2: Run, tmp_path: Path) -> None:
    def broken(run: Run, figures_dir: Path) -> None:
        (figures_dir / "half.png").write_bytes(b"\x89PNG")
        raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError, match="drawing failed"):
        save_run(relu2, tmp_path / "run", figures=broken)
    assert list(tmp_path.iterdir()) == [], "neither the run nor its temporary folder is left"


def test_draw_run_writes_nothing_when_a_figure_fails(
    relu2: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from superposition.plots import runs

    def fail(run: Run) -> Figure:
        raise RuntimeError("no loss today")

    monkeypatch.setitem(runs.RUN_FIGURES, "loss", fail)
    with pytest.raises(RuntimeError, match="no loss today"):
        draw_run(relu2, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert plt.get_fignums() == [], "the figures drawn before the failure are closed"


def test_a_non_finite_loss_history_is_drawn_as_gaps(relu2: Run) -> None:
    history = relu2.history_loss.clone()
    history[1, 0] = float("inf")
    fig = loss_curves(dataclasses.replace(relu2, history_loss=history))
    assert fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    assert torch.isfinite(relu2.history_loss).all()
