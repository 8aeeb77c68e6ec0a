"""One colour convention everywhere: positive values red, negative blue, 0 white, in the static
figures (matplotlib), the report's interactive figures (plotly), the explorer's page (plotly.js)
and the notebook views (inline SVG). Each is read from what it would draw, not from a name."""

import json
import re

import numpy as np
import torch
from conftest import fake_run, tiny_config

from superposition import _html
from superposition.colours import DIVERGING, DIVERGING_SCALE
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def _rgb(colour: object) -> tuple[float, float, float]:
    """(r, g, b) in [0, 1] from '#rrggbb', 'rgb(r, g, b)' or a matplotlib tuple."""
    if isinstance(colour, str) and colour.startswith("#"):
        return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]
    if isinstance(colour, str):
        r, g, b = (float(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3])
        return r, g, b
    r, g, b = colour[:3]  # type: ignore[index]
    return float(r), float(g), float(b)


def is_red(colour: object) -> bool:
    r, g, b = _rgb(colour)
    return r > 0.6 and r > g + 0.3 and r > b + 0.3


def is_blue(colour: object) -> bool:
    r, g, b = _rgb(colour)
    return b > 0.6 and b > r + 0.3


def test_the_scale_runs_blue_white_red() -> None:
    assert is_blue(DIVERGING[0]) and is_red(DIVERGING[-1])
    assert min(_rgb(DIVERGING[len(DIVERGING) // 2])) > 0.95  # white in the middle
    assert DIVERGING_SCALE[0] == (0.0, DIVERGING[0]) and DIVERGING_SCALE[-1] == (1.0, DIVERGING[-1])


def test_static_figures_draw_positive_in_red() -> None:
    import matplotlib.pyplot as plt

    from superposition.plots import computation, intro, privileged_basis, runs

    relu = fake_run(tiny_config("relu"))
    relu.params["W"] = torch.randn(4, 5, 2)
    config = RunConfig(
        DataConfig(n_features=3, density=(1.0,)), ModelConfig(kind="abs", n_hidden=6),
        TrainConfig(instances=1),
    )  # fmt: skip
    figures = {
        "gram_and_bias": runs.gram_and_bias(relu),
        "intro.polygons": intro.polygons(relu),
        "privileged_basis.neuron_weights": privileged_basis.neuron_weights(
            fake_run(tiny_config("privileged"))
        ),
        "computation.dense_weights": computation.dense_weights(fake_run(config)),
    }
    for name, fig in figures.items():
        images = [im for ax in fig.axes for im in ax.get_images()]
        assert images, name
        for im in images:
            assert is_red(im.cmap(im.norm(im.norm.vmax))), name
            assert is_blue(im.cmap(im.norm(im.norm.vmin))), name
        plt.close(fig)


def test_interactive_figures_draw_positive_in_red() -> None:
    from superposition.plots import computation, correlated_features

    run = fake_run(
        RunConfig(
            DataConfig(n_features=20, correlated=(10, 10)), ModelConfig(n_hidden=10),
            TrainConfig(instances=1),
        )
    )  # fmt: skip
    abs_run = fake_run(
        RunConfig(DataConfig(n_features=3), ModelConfig(kind="abs", n_hidden=6), TrainConfig())
    )
    figures = [
        correlated_features.interactive_local_bases({correlated_features.LOCAL_BASES: run}),
        computation.interactive_dense_weights(abs_run),
    ]
    for fig in figures:
        heatmaps = [t for t in fig.data if t.type == "heatmap"]
        assert heatmaps
        for trace in heatmaps:
            assert not trace.reversescale
            assert is_red(trace.colorscale[-1][1]) and is_blue(trace.colorscale[0][1])


def test_explorer_page_draws_positive_in_red() -> None:
    from superposition.explore.page import SCRIPT, render

    page = render()
    found = re.search(r"const DIVERGING = (\[.*?\]);", page)
    assert found is not None
    scale = json.loads(found.group(1))
    assert is_red(scale[-1][1]) and scale[-1][0] == 1 and is_blue(scale[0][1])
    gram = SCRIPT[SCRIPT.index("function drawGram") :].split("\n}\n")[0]
    assert "colorscale: DIVERGING" in gram and "reversescale" not in gram
    assert "RdBu" not in page  # plotly.js's own RdBu runs the other way


def test_notebook_views_draw_positive_in_red() -> None:
    assert is_red(_html.diverging(1.0, 1.0)) and is_blue(_html.diverging(-1.0, 1.0))
    svg = _html.heatmaps([np.array([[1.0, -1.0]])], ["x"], title="t")
    assert _html.diverging(1.0, 1.0) in svg
