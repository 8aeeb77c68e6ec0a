"""The introduction figure: each density's best model drawn as feature arrows in the hidden plane,
with its W^T W below (paper, Introduction); :data:`INTERACTIVE` has a plotly version for the
report."""

import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from superposition import geometry
from superposition._types import Tensor
from superposition.experiments.intro import RUN
from superposition.plots.runs import SIGNED_CMAP
from superposition.results import Run


def _best_shapes(run: Run) -> tuple[list[int], Tensor, list[geometry.Geometry], list[float]]:
    """What both figures draw: the best instance of each group, its W, its shape and the
    features' importances."""
    n_hidden = run.config.model.n_hidden
    if n_hidden != 2:
        raise ValueError(f"the polygons figure draws 2-D models; this run has n_hidden={n_hidden}")
    best = run.best()
    W = run.W[best]
    importance = run.config.data.feature_importances(run.config.groups[0].importance_decay)
    return best, W, geometry.classify(W), importance


def polygons(run: Run) -> Figure:
    """One column per group: the best instance's feature directions W_i (arrows coloured by
    importance, darkest = most important, yellow = least) and its Gram matrix W^T W (red positive,
    blue negative)."""
    cfg = run.config
    best, W, shapes, importance = _best_shapes(run)
    n_groups = len(best)
    fig, axes = plt.subplots(2, n_groups, figsize=(1.9 * n_groups, 4.6), squeeze=False)
    cmap = plt.get_cmap("plasma")
    top, spread = max(importance), (max(importance) - min(importance)) or 1.0
    for col, (group, w) in enumerate(zip(cfg.groups, W, strict=True)):
        ax = axes[0, col]
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, lw=0.5, color="0.8"))
        for i, (x, y) in enumerate(w.tolist()):
            colour = cmap(0.8 * (top - importance[i]) / spread)
            ax.annotate(
                "", xy=(x, y), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.5, "shrinkA": 0,
                            "shrinkB": 0},
            )
        lim = max(1.25, float(w.abs().max()) * 1.1)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"1-S = {group.density:g}", fontsize=9)
        ax.set_xlabel(shapes[col].label.replace(" + ", "\n+ "), fontsize=7)
        g = geometry.gram(w[None])[0]
        lim_g = max(1.0, float(g.abs().max()))
        axes[1, col].imshow(g.numpy(), cmap=SIGNED_CMAP, vmin=-lim_g, vmax=lim_g)
        axes[1, col].set_xticks([])
        axes[1, col].set_yticks([])
    axes[1, 0].set_ylabel("$W^T W$", fontsize=9)
    axes[0, 0].set_ylabel("$W_i$ in the hidden plane", fontsize=9)
    n, m = cfg.data.n_features, cfg.model.n_hidden
    fig.suptitle(
        f"{cfg.model.kind} model, n={n} features in m={m} dimensions, importance "
        f"{cfg.groups[0].importance_decay:g}^i; best of {cfg.train.instances} seeds per density "
        "(denser left, sparser right)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


FIGURES = {"polygons": lambda runs: polygons(runs[RUN])}


def polygons_interactive(run: Run) -> Any:
    """The polygons figure as a plotly figure: one panel per density with the best instance's
    feature directions W_i (coloured by importance as in :func:`polygons`); hovering over a tip
    gives the feature's index, importance and norm."""
    # plotly is imported here, not at the top: reproducing and drawing the static figures needs
    # only matplotlib (the ``plot`` extra); plotly comes with the ``report`` extra
    from plotly.colors import sample_colorscale
    from plotly.subplots import make_subplots

    cfg = run.config
    best, W, shapes, importance = _best_shapes(run)
    norms = geometry.feature_norms(W)
    top, spread = max(importance), (max(importance) - min(importance)) or 1.0
    colours = sample_colorscale("Plasma", [0.8 * (top - v) / spread for v in importance])
    n_groups = len(best)
    cols = min(n_groups, 5)
    rows = -(-n_groups // cols)
    titles = [
        f"1-S = {g.density:g}<br><span style='font-size:10px'>{shape.label}</span>"
        for g, shape in zip(cfg.groups, shapes, strict=True)
    ]
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
        vertical_spacing=0.12,
    )
    lim = max(1.25, float(W.abs().max()) * 1.1)
    circle = [2 * math.pi * i / 64 for i in range(65)]
    for col, (group, w) in enumerate(zip(cfg.groups, W, strict=True)):
        r, c = col // cols + 1, col % cols + 1
        fig.add_scatter(
            x=[math.cos(t) for t in circle], y=[math.sin(t) for t in circle], mode="lines",
            line={"color": "#cccccc", "width": 1}, hoverinfo="skip", row=r, col=c,
        )
        xy = w.tolist()
        for i, (x, y) in enumerate(xy):
            fig.add_scatter(
                x=[0, x], y=[0, y], mode="lines", line={"color": colours[i], "width": 2.5},
                hoverinfo="skip", row=r, col=c,
            )
        fig.add_scatter(
            x=[p[0] for p in xy], y=[p[1] for p in xy], mode="markers+text",
            marker={"color": colours, "size": 9, "line": {"color": "white", "width": 1}},
            text=[str(i) for i in range(len(xy))], textposition="top center",
            textfont={"size": 9, "color": "#555555"},
            customdata=[
                [i, importance[i], float(norms[col, i]), f"{group.density:g}"]
                for i in range(len(xy))
            ],
            hovertemplate=(
                "feature %{customdata[0]}<br>importance %{customdata[1]:.3f}"
                "<br>norm ||W_i|| %{customdata[2]:.3f}<br>density %{customdata[3]}<extra></extra>"
            ),
            row=r, col=c,
        )
    fig.update_xaxes(range=[-lim, lim], showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(range=[-lim, lim], showticklabels=False, showgrid=False, zeroline=False)
    for k in range(1, n_groups + 1):
        # equal aspect in every panel, so that angles between features read true
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for annotation in fig.layout.annotations:
        annotation.font.size = 12
    n, m = cfg.data.n_features, cfg.model.n_hidden
    fig.update_layout(
        title={
            "text": (
                f"{cfg.model.kind} model, n={n} features in m={m} dimensions, importance "
                f"{cfg.groups[0].importance_decay:g}^i; best of {cfg.train.instances} seeds "
                "per density (hover over a feature for its importance and norm)"
            ),
            "font": {"size": 13},
        },
        showlegend=False, height=250 * rows + 110, margin={"l": 20, "r": 20, "t": 100, "b": 20},
        plot_bgcolor="white", paper_bgcolor="white",
    )
    return fig


INTERACTIVE: dict[str, Callable[[dict[str, Run]], Any]] = {
    "polygons": lambda runs: polygons_interactive(runs[RUN])
}
