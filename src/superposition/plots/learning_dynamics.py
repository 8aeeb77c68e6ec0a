"""Section 5 figures on a log-step axis, as the paper draws them: feature dimensionalities over
training above the loss (plateaus shaded), the n = 6, m = 3 model's geometric stages, and the
n = 6, m = 2 runs' losses against the exact k-gon losses (Chen et al. 2023)."""

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from superposition.experiments.learning_dynamics import (
    CORRELATED,
    FRACTIONS,
    KGON,
    UNIFORM,
    analyse,
    kgon_analysis,
)
from superposition.results import Run


def _describe(run: Run) -> str:
    cfg = run.config
    d = cfg.data
    sets = f", correlated sets {list(d.correlated)}" if d.correlated else ""
    return (
        f"{cfg.model.kind} model, n={d.n_features}, m={cfg.model.n_hidden}, "
        f"1-S={d.density[0]:g}{sets}; best of {cfg.train.instances} seed(s)"
    )


def _x(steps: list[int]) -> np.ndarray:
    # step 0 cannot sit on a log axis: draw it at 0.5, left of step 1
    return np.maximum(np.asarray(steps, dtype=float), 0.5)


def _shade(ax: Axes, x: np.ndarray, found: list[tuple[int, int]]) -> None:
    for first, last in found:
        ax.axvspan(x[first], x[last], color="0.9", zorder=-2, lw=0)


def dimensionalities(run: Run) -> Figure:
    """D_i of every feature against log steps (named fractions dashed) above the held-out loss on
    log-log axes; loss plateaus shaded grey in both panels."""
    a = analyse(run)
    x, dims, loss = _x(a["steps"]), a["dims"], a["loss"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    for name, value in FRACTIONS.items():
        top.axhline(value, color="0.8", lw=0.8, ls="--", zorder=0)
        top.text(x[-1], value, f" {name}", va="center", fontsize=7, color="0.5")
    cmap = plt.get_cmap("viridis")
    n = dims.shape[1]
    for i in range(n):
        top.plot(x, dims[:, i].numpy(), lw=1.0 if n <= 20 else 0.5, color=cmap(i / max(n - 1, 1)))
    top.set_ylabel("feature dimensionality $D_i$")
    top.set_ylim(-0.03, 1.05)
    bottom.plot(x, loss.numpy(), color="k", lw=1.2)
    bottom.set_yscale("log")
    bottom.set_xscale("log")
    bottom.set_ylabel("held-out loss")
    bottom.set_xlabel("training step (log; shaded: loss plateaus)")
    for ax in (top, bottom):
        _shade(ax, x, a["plateaus"])
    fig.suptitle(f"Feature dimensionality over training: {_describe(run)}", fontsize=10)
    fig.tight_layout()
    return fig


def stages(run: Run) -> Figure:
    """The n = 6 model: D_i over log steps with the geometry label of each stage, beside the
    loss."""
    a = analyse(run)
    x, dims, loss = _x(a["steps"]), a["dims"], a["loss"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i in range(dims.shape[1]):
        left.plot(x, dims[:, i].numpy(), lw=1.2, label=f"feature {i}")
    for value in FRACTIONS.values():
        left.axhline(value, color="0.85", lw=0.8, ls="--", zorder=0)
    right.plot(x, loss.numpy(), color="k", lw=1.2)
    right.set_yscale("log")
    for k, (label, first, last) in enumerate(a["stages"]):
        colour = plt.get_cmap("Pastel1")(k % 9)
        for ax in (left, right):
            ax.axvspan(x[first], x[last], color=colour, alpha=0.6, zorder=-1)
        right.text(
            np.sqrt(x[first] * x[last]), 0.98, label.replace(" + ", "\n+ "),
            transform=right.get_xaxis_transform(), ha="center", va="top", fontsize=6, rotation=90,
        )
    for ax in (left, right):
        ax.set_xscale("log")
    left.set_ylabel("feature dimensionality $D_i$")
    left.set_xlabel("training step (log)")
    left.legend(fontsize=7, ncol=2)
    right.set_ylabel("held-out loss")
    right.set_xlabel("training step (log; shaded: geometric stages)")
    fig.suptitle(f"Geometric stages during training: {_describe(run)}", fontsize=10)
    fig.tight_layout()
    return fig


def kgon_plateaus(run: Run) -> Figure:
    """Every n = 6, m = 2 seed's held-out loss against log steps, its plateaus marked (filled dot:
    within 5% of the loss of the k-gon with its number k of represented features; open: not),
    and the exact k-gon losses as labelled horizontal lines (Chen et al. 2023)."""
    ka = kgon_analysis(run)
    x, losses = _x(ka["steps"]), ka["losses"].numpy()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("tab20")
    for k, level in enumerate(ka["levels"]):
        ax.axhline(level, color="0.6", lw=0.8, ls="--", zorder=0)
        ax.text(x[-1], level, f" {k}-gon" if k > 1 else f" k={k}", va="center", fontsize=7,
                color="0.35")
    for i, seed in enumerate(ka["seeds"]):
        colour = cmap(i % 20)
        ax.plot(x, losses[:, i], lw=0.9, color=colour, alpha=0.8)
        for p in seed:
            mid = np.sqrt(x[p["first"]] * x[p["last"]])
            ax.plot(mid, p["loss"], "o", ms=5, color=colour,
                    mfc=colour if p["match"] else "white")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training step (log)")
    ax.set_ylabel("held-out loss")
    d = run.config.data
    ax.set_title(
        f"Loss plateaus against regular k-gons: relu, n={d.n_features}, "
        f"m={run.config.model.n_hidden}, 1-S={d.density[0]:g}, {run.n_instances} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def dimensionalities_interactive(run: Run) -> go.Figure:
    """Interactive version of :func:`dimensionalities` (hover shows the stage label)."""
    a = analyse(run)
    x, dims, loss, labels = _x(a["steps"]), a["dims"], a["loss"], a["labels"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35])
    for i in range(dims.shape[1]):
        fig.add_trace(
            go.Scatter(x=x.tolist(), y=dims[:, i].tolist(), mode="lines", name=f"feature {i}",
                       text=labels, hovertemplate="step %{x}: D=%{y:.3f}<br>%{text}"),
            row=1, col=1,
        )
    fig.add_trace(go.Scatter(x=x.tolist(), y=loss.tolist(), mode="lines", name="loss",
                             line={"color": "black"}), row=2, col=1)
    fig.update_yaxes(title_text="feature dimensionality D_i", row=1, col=1)
    fig.update_yaxes(title_text="held-out loss", type="log", row=2, col=1)
    fig.update_xaxes(type="log")
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_layout(title=f"Feature dimensionality over training: {_describe(run)}")
    return fig


FIGURES = {
    "uniform_dimensionalities": lambda runs: dimensionalities(runs[UNIFORM]),
    "correlated_dimensionalities": lambda runs: dimensionalities(runs[CORRELATED]),
    "correlated_stages": lambda runs: stages(runs[CORRELATED]),
    "kgon_dimensionalities": lambda runs: dimensionalities(runs[KGON]),
    "kgon_plateaus": lambda runs: kgon_plateaus(runs[KGON]),
}
INTERACTIVE = {
    "uniform_dimensionalities": lambda runs: dimensionalities_interactive(runs[UNIFORM]),
    "correlated_dimensionalities": lambda runs: dimensionalities_interactive(runs[CORRELATED]),
    "kgon_dimensionalities": lambda runs: dimensionalities_interactive(runs[KGON]),
}
