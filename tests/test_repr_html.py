"""Jupyter views (``_repr_html_``) of a run, a geometry summary and a sweep: a table and an inline
SVG figure, the right numbers, every text escaped, small and self-contained."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from superposition import _html, geometry
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Run
from superposition.sweep import Axis, SweepConfig, SweepResult, run_sweep, table_columns

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def self_contained(h: str, limit: int) -> None:
    assert "<table" in h and "<svg" in h
    assert len(h) < limit, f"{len(h)} characters"
    # nothing runs and nothing is fetched: only these elements, no links, no event handlers
    tags = set(re.findall(r"<(\w+)", h))
    allowed = {"div", "table", "thead", "tbody", "tr", "th", "td", "svg", "title", "path", "rect",
               "text", "line", "polyline", "circle"}
    assert tags <= allowed, tags - allowed
    for tag in re.findall(r"<[^>]*>", h):
        assert re.search(r"\s(on\w+|href|src|xlink:href)=|url\(", tag) is None, tag


def pentagon(radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(5) * 2 * math.pi / 5
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def two_dedicated() -> torch.Tensor:
    W = torch.zeros(5, 2)
    W[0, 0], W[1, 1] = 1.0, 0.9
    return W


def made_up_run(info: dict[str, object] | None = None) -> Run:
    """5 features in 2 dimensions, densities 1 and 0.05, 2 seeds each; the best seeds are a pair of
    dedicated dimensions (instance 0) and a pentagon (instance 3)."""
    config = RunConfig(
        data=DataConfig(n_features=5, density=(1.0, 0.05), importance_decay=(0.9,)),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=TrainConfig(instances=2, steps=300, device="cpu"),
    )
    W = torch.stack([two_dedicated(), 0.3 * pentagon(), 0.8 * pentagon(), pentagon()])
    return Run(
        config=config,
        params={"W": W, "b": torch.zeros(4, 5)},
        loss=torch.tensor([0.0371, 0.0402, 0.00123, 0.00087]),
        history_steps=torch.tensor([0, 299]),
        history_loss=torch.rand(2, 4),
        info=info if info is not None else {"device": "cpu", "seconds": 1.25},
    )


# --------------------------------------------------------------------------------------------------
# the helpers


def test_number_and_table_escape() -> None:
    assert [_html.number(v) for v in (3, 0.000871234, 1.0, math.inf, None, np.float32(0.5))] == [
        "3", "0.0008712", "1", "inf", "–", "0.5",
    ]
    t = _html.table(["a<b", "c"], [[HOSTILE, 0.25]], more=7, what="points")
    assert "&lt;script&gt;" in t and "<script" not in t and "a&lt;b" in t
    assert "<td>0.25</td>" in t and "… 7 more points" in t


def test_cells_merge_runs_of_one_colour() -> None:
    colours = np.array([["#111111", "#111111", "#222222"], ["", "#222222", "#222222"]])
    svg = _html.cells(colours, 0, 0, 10)
    assert svg.count("<path") == 2  # one path per colour
    assert "M0 0h20v10h-20z" in svg  # the two equal cells of row 0 as one rectangle
    assert "M10 10h20v10h-20z" in svg  # and the empty cell left out


def test_colour_scales() -> None:
    assert _html.diverging(0.0, 1.0) == "#f7f7f7"
    assert _html.diverging(1.0, 1.0) == "#b2182b" and _html.diverging(-3.0, 1.0) == "#2166ac"
    assert _html.sequential(0.0, 0.0, 1.0) == "#1a1a1a"
    assert _html.sequential(5.0, 0.0, 1.0) == "#f5c242"  # clipped


# --------------------------------------------------------------------------------------------------
# Run


def test_run_view() -> None:
    h = made_up_run()._repr_html_()
    self_contained(h, 8_000)
    assert "Run: 5 features in 2 dimensions, 4 instances" in h
    # per group: density, best instance, its loss, the mean over seeds, features represented
    assert "<td>0</td><td>1</td><td>0.9</td><td>1</td><td>0</td><td>0.0371</td>" in h
    assert "<td>0.03865</td><td>2 of 5</td>" in h
    assert "<td>1</td><td>0.05</td><td>0.9</td><td>1</td><td>3</td><td>0.00087</td>" in h
    assert "<td>0.001050</td>" not in h and "<td>0.00105</td><td>5 of 5</td>" in h
    # W W^T of the two best seeds, titled by density
    assert h.count("<svg") == 1 and "density 1<" in h and "density 0.05<" in h
    assert "<td>seconds</td><td>1.25</td>" in h


def test_run_view_escapes_what_the_run_says() -> None:
    h = made_up_run({"device": HOSTILE, "step": "fused"})._repr_html_()
    self_contained(h, 8_000)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in h


def test_selected_run_view() -> None:
    run = made_up_run().select([3, 1])
    h = run._repr_html_()
    self_contained(h, 8_000)
    assert "selected instances" in h
    assert "<td>3</td><td>0.00087</td><td>5 of 5</td>" in h
    assert "<td>1</td><td>0.0402</td>" in h
    assert "instance 3<" in h and "instance 1<" in h


def test_big_run_view_stays_small() -> None:
    config = RunConfig(
        data=DataConfig(n_features=100, density=tuple(np.geomspace(1, 0.01, 12).tolist())),
        model=ModelConfig(n_hidden=20),
        train=TrainConfig(instances=3, steps=100, device="cpu"),
    )
    gen = torch.Generator().manual_seed(0)
    n = config.n_instances
    run = Run(
        config=config,
        params={"W": torch.randn(n, 100, 20, generator=gen), "b": torch.zeros(n, 100)},
        loss=torch.rand(n, generator=gen),
        history_steps=torch.tensor([0]),
        history_loss=torch.rand(1, n, generator=gen),
    )
    h = run._repr_html_()
    self_contained(h, 40_000)
    assert "… 2 more rows" in h  # 12 groups, 10 shown
    assert "first 2 of 12" in h and "first 20 of 100 features" in h


# --------------------------------------------------------------------------------------------------
# geometry summary


def test_summary_view() -> None:
    s = geometry.summary(torch.stack([pentagon(), two_dedicated()]))
    h = s._repr_html_()
    self_contained(h, 8_000)
    assert "instance 0: pentagon, dimensions per feature 0.4" in h
    assert "instance 1: 2 dedicated dimensions + 3 not represented" in h
    # feature 1 of the pentagon: norm 1, superposition 2 * (cos^2 72 + cos^2 144) = 1.5, D = 2/5
    assert "<td>1</td><td>1</td><td>1.5</td><td>0.4</td>" in h
    assert "<td>1</td><td>0.9</td><td>0</td><td>1</td>" in h
    assert h.count("<svg") == 2 and h.count("<rect") == 10  # a bar per feature and instance


def test_summary_is_still_a_plain_dict() -> None:
    s = geometry.summary(pentagon()[None])
    assert isinstance(s, dict)
    plain = json.loads(json.dumps(s))
    assert plain == s and plain["geometry"] == ["pentagon"]
    assert {**s}.keys() == s.keys()


def test_summary_view_escapes_and_truncates() -> None:
    s = geometry.summary(pentagon().expand(7, 5, 2).contiguous())
    s["geometry"][0] = HOSTILE
    h = s._repr_html_()
    self_contained(h, 16_000)
    assert "&lt;img src=x onerror=alert(1)&gt;" in h
    assert "… 3 more instances" in h


# --------------------------------------------------------------------------------------------------
# sweep


def grid_sweep(nx: int, ny: int) -> SweepConfig:
    base = RunConfig(
        data=DataConfig(n_features=2),
        model=ModelConfig(n_hidden=1),
        train=TrainConfig(instances=2, steps=200, batch_size=64, eval_samples=500, device="cpu"),
    )
    axes = [Axis.logspace("density", 0, -2, nx)]
    if ny:
        axes.append(Axis.logspace("relative_importance", -1, 1, ny))
    return SweepConfig(base, tuple(axes))


def made_up_result(sweep: SweepConfig, label: object) -> SweepResult:
    """A result whose table is made up (no training): loss 0.001 * (point + 1)."""
    rows = []
    for i, values in enumerate(sweep.points):
        row = {c: 0.5 for c in table_columns(sweep)}
        row.update(values, point=i, best_instance=0, best_loss=0.001 * (i + 1))
        row["geometry"] = label(values) if callable(label) else label
        rows.append(row)
    return SweepResult(Path("nowhere"), sweep, rows)


def test_sweep_view_2d() -> None:
    sweep = grid_sweep(40, 40)
    result = made_up_result(
        sweep, lambda v: "antipodal pair" if v["density"] < 0.2 else HOSTILE
    )
    h = result._repr_html_()
    self_contained(h, 16_000)
    assert "Sweep over density, relative_importance" in h
    assert "1600 points × 2 seeds" in h
    assert "… 1590 more rows" in h
    assert "<td>density</td><td>40</td><td>1, 0.8886, 0.7897, …, 0.01125, 0.01</td>" in h
    assert "<td>0.001</td>" in h and "<td>0.01</td><td>0.5</td>" in h  # points 0 and 9
    assert "&lt;script&gt;" in h and ">antipodal pair<" in h  # the legend
    # two colours, one merged rectangle per row and colour: the grid costs little
    assert h.count("<path") == 2


def test_sweep_view_1d() -> None:
    result = made_up_result(grid_sweep(5, 0), "antipodal pair")
    h = result._repr_html_()
    self_contained(h, 8_000)
    assert "<polyline" in h and h.count("<circle") == 5
    assert "best loss (log)" not in h  # 0.001 to 0.005: a linear axis


def test_trained_sweep_view_shows_its_table(tmp_path: Path) -> None:
    result = run_sweep(grid_sweep(3, 2), tmp_path / "sweep", progress=False)
    h = result._repr_html_()
    self_contained(h, 8_000)
    for row in result.table():
        assert f"<td>{_html.number(row['best_loss'])}</td>" in h
        assert f">{row['geometry']}<" in h
    assert "trained in" in h


def test_views_load_no_plotting_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'tests'); import torch; "
        "from superposition import geometry; "
        "from test_repr_html import made_up_run, made_up_result, grid_sweep; "
        "made_up_run()._repr_html_(); "
        "geometry.summary(torch.eye(3)[None])._repr_html_(); "
        "made_up_result(grid_sweep(2, 2), 'x')._repr_html_(); "
        "print(','.join(m for m in ('matplotlib', 'plotly') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == ""


def test_summary_names_rows_by_the_runs_instances() -> None:
    run = made_up_run()
    chosen = [3, 1]
    by_run = geometry.summary(run.select(chosen))._repr_html_()
    by_list = geometry.summary(run.W[chosen], instances=chosen)._repr_html_()
    for h in (by_run, by_list):
        assert "instance 3: " in h and "instance 1: " in h and "instance 0: " not in h
    whole = geometry.summary(run)
    assert whole.instances == list(range(run.n_instances))
    assert whole == geometry.summary(run.W)  # the same plain dict either way


# --------------------------------------------------------------------------------------------------
# text forms (print, the REPL): a few lines whatever the size, no tensor dumped


def test_run_repr_is_short_and_says_what_matters() -> None:
    config = RunConfig(
        data=DataConfig(n_features=20, density=(1.0, 0.1, 0.01), importance_decay=(0.7,)),
        model=ModelConfig(kind="relu", n_hidden=5),
        train=TrainConfig(instances=8, steps=300, device="cpu"),
    )
    gen = torch.Generator().manual_seed(0)
    run = Run(
        config=config,
        params={"W": torch.randn(24, 20, 5, generator=gen), "b": torch.zeros(24, 20)},
        loss=torch.linspace(0.01, 0.03, 24),
        history_steps=torch.arange(3),
        history_loss=torch.rand(3, 24, generator=gen),
    )
    text = repr(run)
    assert len(text) < 600 and len(text.splitlines()) <= 8
    assert "tensor(" not in text
    assert "relu, tied: 20 features in 5 dimensions, 24 instances = 3 group(s) x 8 seed(s)" in text
    assert "density=[1.0, 0.1, 0.01], importance_decay=0.7" in text
    assert "W [24, 20, 5], b [24, 20]" in text
    assert "min 0.01, median 0.01957, max 0.03" in text
    chosen = repr(run.select([5, 17]))
    assert "2 instances = selected from the config's 24" in chosen
    assert "selected instances: [5, 17]" in chosen


def test_sweep_result_repr_is_short() -> None:
    result = made_up_result(grid_sweep(40, 40), "antipodal pair")
    text = repr(result)
    assert len(text) < 300
    assert "1600 points over density[40], relative_importance[40], 2 seed(s) each" in text
    assert "best loss 0.001 to 1.6" in text


def test_sweep_result_as_dataframe() -> None:
    result = made_up_result(grid_sweep(3, 2), "antipodal pair")
    frame = result.to_dataframe()
    assert list(frame.columns) == table_columns(result.sweep)
    assert len(frame) == 6
    assert frame["best_loss"].tolist() == [row["best_loss"] for row in result.table()]
    assert frame.loc[5, "relative_importance"] == result.table()[5]["relative_importance"]


def test_dataframe_without_pandas_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import builtins

    real_import = builtins.__import__

    def no_pandas(name: str, *args: object, **kwargs: object) -> object:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    result = made_up_result(grid_sweep(2, 0), "x")
    with pytest.raises(ImportError, match=r"pip install 'toy-superposition\[pandas\]'"):
        result.to_dataframe()
