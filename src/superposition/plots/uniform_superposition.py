"""Section 4, "Uniform Superposition": dimensions per feature and feature dimensionalities against
1/(1-S) on a log axis, the paper's fractions marked and named by polytope."""

from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition.experiments.uniform_superposition import FRACTIONS, RUN, Measures, measures
from superposition.plots.runs import fraction_lines
from superposition.results import Run


def _setting(run: Run) -> str:
    cfg = run.config
    seeds = cfg.train.instances
    best = f"best of {seeds} seeds" if seeds > 1 else "one model"
    return (
        f"{cfg.model.kind} model, n={cfg.data.n_features} features in m={cfg.model.n_hidden} "
        f"dimensions, equal importance and sparsity; {best} per density"
    )


def _points(meas: Measures) -> tuple[np.ndarray, np.ndarray]:
    """x = 1/(1-S) and D_i of every represented feature of every density's best model."""
    xs, ys = [], []
    for x, d, rep in zip(meas.x, meas.D, meas.represented, strict=True):
        vals = d[rep].numpy()
        xs.append(np.full(vals.shape, x))
        ys.append(vals)
    return np.concatenate(xs), np.concatenate(ys)


def dimensions_per_feature(run: Run) -> Figure:
    """m / ||W||_F^2 against 1/(1-S) (Section 4, "Uniform Superposition"): sticky at 1 and 1/2."""
    meas = measures(run)
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    right = ax.get_yaxis_transform()  # x in axes units, y in data units
    for value, label, _ in FRACTIONS:
        if value in (1.0, 0.5):
            ax.axhline(value, color="0.6", lw=0.8, ls="--")
            ax.text(1.01, value, label, transform=right, va="center", ha="left", fontsize=9)
    ax.plot(meas.x, meas.dpf, "o-", color="C0", ms=4)
    ax.set_xscale("log")
    ax.set_xlabel("1/(1-S)  (sparser to the right)")
    ax.set_ylabel("dimensions per feature  $m / \\|W\\|_F^2$")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Dimensions per feature\n{_setting(run)}", fontsize=9)
    fig.tight_layout()
    return fig


def feature_dimensionality(run: Run) -> Figure:
    """Every represented feature's D_i against 1/(1-S), with the paper's fractions (Section 4,
    "Feature Dimensionality") drawn and named by polytope, and m/||W||_F^2 as a line."""
    meas = measures(run)
    xs, ys = _points(meas)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    fraction_lines(ax)
    jitter = np.exp(np.random.default_rng(0).uniform(-0.04, 0.04, xs.shape))
    ax.scatter(xs * jitter, ys, s=10, alpha=0.45, color="C0", lw=0, label="$D_i$ of a feature")
    ax.plot(meas.x, meas.dpf, "-", color="k", lw=1, label="$m / \\|W\\|_F^2$")
    ax.set_xscale("log")
    ax.set_xlim(min(meas.x) / 1.2, max(meas.x) * 1.1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("1/(1-S)  (sparser to the right)")
    ax.set_ylabel("feature dimensionality $D_i$")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"Feature dimensionality of represented features\n{_setting(run)}", fontsize=9)
    fig.tight_layout()
    return fig


def interactive_dimensionality(run: Run) -> Any:
    """The two figures in one plotly chart: hover a point for its density and D_i."""
    import plotly.graph_objects as go

    meas = measures(run)
    xs, ys = _points(meas)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=xs, y=ys, mode="markers", name="D_i of a represented feature",
            marker={"size": 5, "opacity": 0.5},
            hovertemplate="1/(1-S)=%{x:.3g}<br>D_i=%{y:.3f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=meas.x, y=meas.dpf, mode="lines+markers", name="m/||W||_F^2",
            line={"color": "black"},
            hovertemplate="1/(1-S)=%{x:.3g}<br>m/||W||_F^2=%{y:.3f}<extra></extra>",
        )
    )
    for value, label, polytope in FRACTIONS:
        fig.add_hline(
            y=value, line_dash="dash", line_color="grey", line_width=1,
            annotation_text=f"{label} {polytope}", annotation_position="right",
        )
    fig.update_xaxes(type="log", title="1/(1-S)  (sparser to the right)")
    fig.update_yaxes(title="feature dimensionality D_i", range=[0, 1.08])
    fig.update_layout(title=f"Feature dimensionality: {_setting(run)}")
    return fig


FIGURES: dict[str, Callable[[dict[str, Run]], Figure]] = {
    "dimensions_per_feature": lambda runs: dimensions_per_feature(runs[RUN]),
    "feature_dimensionality": lambda runs: feature_dimensionality(runs[RUN]),
}
INTERACTIVE: dict[str, Callable[[dict[str, Run]], Any]] = {
    "feature_dimensionality": lambda runs: interactive_dimensionality(runs[RUN])
}
