"""Section 4, "Correlated and Anticorrelated Features": feature arrows of the 2-D settings (each set
in its own colour) and W^T W of the two sets of ten."""

import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition import geometry
from superposition.colours import DIVERGING_SCALE
from superposition.experiments.correlated_features import (
    ANTICORRELATED,
    CORRELATED,
    LOCAL_BASES,
    THREE_PAIRS,
    feature_sets,
)
from superposition.plots.runs import SIGNED_CMAP
from superposition.results import Run

SET_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _sets(sizes: tuple[int, ...], kind: str) -> str:
    """e.g. "2 correlated pairs", "2 correlated sets of 10", "sets of 3/4"."""
    if len(set(sizes)) == 1:
        size = sizes[0]
        return f"{len(sizes)} {kind} pairs" if size == 2 else f"{len(sizes)} {kind} sets of {size}"
    return f"{kind} sets of {'/'.join(map(str, sizes))}"


def _describe(run: Run) -> str:
    data = run.config.data
    parts = []
    if data.correlated:
        parts.append(_sets(data.correlated, "correlated"))
    if data.anticorrelated:
        parts.append(_sets(data.anticorrelated, "anticorrelated"))
    return f"n={data.n_features}, m={run.config.model.n_hidden}, " + ", ".join(parts)


def oriented(w: np.ndarray) -> np.ndarray:
    """A 2-D embedding rotated so feature 0 points right and reflected so feature 1 lies on or
    above the x axis: the same solution always drawn the same way."""
    angle = math.atan2(w[0, 1], w[0, 0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    out = w @ rot
    if out[1, 1] < -1e-9:
        out[:, 1] *= -1
    return out


def _panels(runs: dict[str, Run]) -> list[tuple[str, Run, int]]:
    """(title, run, instance) of every 2-D panel: the best model of each group."""
    out = []
    for name in (CORRELATED, ANTICORRELATED, THREE_PAIRS):
        run = runs[name]
        for group, inst in zip(run.config.groups, run.best(), strict=True):
            title = f"{_describe(run)}\ndensity {group.density:g}"
            out.append((title, run, inst))
    return out


def arrows(runs: dict[str, Run]) -> Figure:
    """Best-of-N feature directions of the 2-D settings (Section 4): correlated pairs orthogonal,
    anticorrelated pairs antipodal, three correlated pairs side by side, collapsing as density
    grows. Each set has its own colour; feature indices at the tips."""
    panels = _panels(runs)
    k = len(panels)
    fig, axes = plt.subplots(1, k, figsize=(2.3 * k, 3.0), squeeze=False)
    for ax, (title, run, inst) in zip(axes[0], panels, strict=True):
        w = oriented(run.W[inst].detach().double().numpy())
        owner = {i: s for s, members in enumerate(feature_sets(run.config)) for i in members}
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, lw=0.5, color="0.8"))
        for i, (x, y) in enumerate(w.tolist()):
            colour = SET_COLOURS[owner[i] % len(SET_COLOURS)] if i in owner else "0.4"
            ax.annotate(
                "", xy=(x, y), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "lw": 1.6, "shrinkA": 0, "shrinkB": 0,
                            "color": colour},
            )
            ax.text(x * 1.15, y * 1.15, str(i), fontsize=7, ha="center", va="center",
                    color=colour)
        lim = max(1.35, float(np.abs(w).max()) * 1.25)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=7)
        label = geometry.classify(run.W[inst : inst + 1])[0].label
        ax.set_xlabel(label.replace(" + ", "\n+ "), fontsize=7)
    seeds = runs[CORRELATED].config.train.instances
    fig.suptitle(
        f"{runs[CORRELATED].config.model.kind} model, equal importance; best of {seeds} seeds; "
        "one colour per feature set",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def local_bases(runs: dict[str, Run]) -> Figure:
    """``W^T W`` of the best model with two correlated sets (Section 4): each set a local
    orthogonal basis (identity blocks on the diagonal), the two bases overlapping (off-diagonal
    blocks)."""
    run = runs[LOCAL_BASES]
    inst = run.best()[0]
    g = geometry.gram(run.W[inst : inst + 1])[0].detach().numpy()
    lim = max(1.0, float(np.abs(g).max()))
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(g, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
    edge = 0
    for members in feature_sets(run.config)[:-1]:
        edge += len(members)
        ax.axhline(edge - 0.5, color="k", lw=0.8)
        ax.axvline(edge - 0.5, color="k", lw=0.8)
    ticks = list(range(0, g.shape[0], max(1, g.shape[0] // 10)))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("feature j")
    ax.set_ylabel("feature i")
    fig.colorbar(im, ax=ax, label="$W_i \\cdot W_j$")
    ax.set_title(
        f"$W^T W$, {run.config.model.kind} model, {_describe(run)},\n"
        f"density {run.config.groups[0].density:g}; best of {run.config.train.instances} seeds",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def interactive_local_bases(runs: dict[str, Run]) -> Any:
    """``W^T W`` of the two sets of ten as a plotly heatmap (hover for the pair and the value)."""
    import plotly.graph_objects as go

    run = runs[LOCAL_BASES]
    inst = run.best()[0]
    g = geometry.gram(run.W[inst : inst + 1])[0].detach().numpy()
    lim = max(1.0, float(np.abs(g).max()))
    fig = go.Figure(
        go.Heatmap(
            z=g,
            colorscale=DIVERGING_SCALE,
            zmin=-lim,
            zmax=lim,
            hovertemplate="W_%{y} . W_%{x} = %{z:.3f}<extra></extra>",
            colorbar={"title": "W_i . W_j"},
        )
    )
    fig.update_yaxes(autorange="reversed", title="feature i", scaleanchor="x")
    fig.update_xaxes(title="feature j")
    fig.update_layout(
        title=f"W^T W, {_describe(run)}, density {run.config.groups[0].density:g}",
        width=600, height=560,
    )
    return fig


FIGURES: dict[str, Callable[[dict[str, Run]], Figure]] = {
    "arrows": arrows,
    "local_bases": local_bases,
}
INTERACTIVE: dict[str, Callable[[dict[str, Run]], Any]] = {"local_bases": interactive_local_bases}
