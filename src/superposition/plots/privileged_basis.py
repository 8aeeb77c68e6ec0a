"""Section 7 figures: neuron weights per density, stacked per-neuron feature-weight bars, and the
share of monosemantic neurons against density (layer 4). The stacked-bar helpers are shared with
the Section 8 figures."""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.experiments import privileged_basis as exp
from superposition.plots.runs import SIGNED_CMAP
from superposition.results import Run


def feature_colours(n: int) -> list[tuple[float, float, float, float]]:
    """One colour per feature: tab10 for up to ten features, else viridis by feature index (most
    important dark)."""
    if n <= 10:
        cmap = plt.get_cmap("tab10")
        return [cmap(i) for i in range(n)]
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def neuron_bars(ax: Axes, W: Float[Tensor, "feat hidden"], *, label_neurons: bool = True) -> None:
    """Stacked bars, one per neuron (Section 7 convention): each feature's weight on the neuron,
    positive weights stacked up and negative ones down, coloured by feature; neurons ordered by
    their dominant feature (:func:`geometry.neuron_order`)."""
    order = geometry.neuron_order(W[None])[0].tolist()
    weights = geometry.neuron_feature_weights(W[None])[0][order].numpy()  # [neuron, feat]
    n_neur, n_feat = weights.shape
    colours = feature_colours(n_feat)
    x = np.arange(n_neur)
    # every segment as one rectangle of a single collection: one bar() call per feature and sign
    # made a patch per bar (100 features x 40 neurons x 7 panels took about a minute to draw)
    pos, neg = np.clip(weights, 0, None), np.clip(weights, None, 0)
    up, down = pos.cumsum(axis=1), neg.cumsum(axis=1)  # [neuron, feat]: tops of the stacks
    rects, faces = [], []
    for stack_top, height in ((up, pos), (down, neg)):
        base = stack_top - height
        j, i = np.nonzero(height)
        for jj, ii in zip(j.tolist(), i.tolist(), strict=True):
            y0, y1 = base[jj, ii], stack_top[jj, ii]
            rects.append([(jj - 0.4, y0), (jj + 0.4, y0), (jj + 0.4, y1), (jj - 0.4, y1)])
            faces.append(colours[ii])
    ax.add_collection(PolyCollection(rects, facecolors=faces, linewidths=0))
    ax.set_xlim(-0.6, n_neur - 0.4)
    up, down = up[:, -1], down[:, -1]
    ax.axhline(0, color="0.3", lw=0.5)
    top, bottom = float(up.max()), float(down.min())
    pad = 0.05 * max(top - bottom, 1e-6)
    ax.set_ylim(bottom - pad, top + pad)
    ax.set_xticks(x if label_neurons and n_neur <= 20 else [])
    if label_neurons and n_neur <= 20:
        ax.set_xticklabels([str(k) for k in order], fontsize=6)
    ax.tick_params(axis="y", labelsize=7)


def feature_key(fig: Figure, n_feat: int, axes: Sequence[Axes] | np.ndarray) -> None:
    """A legend (up to ten features) or a colourbar of feature index."""
    if n_feat <= 10:
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=c) for c in feature_colours(n_feat)
        ]
        fig.legend(
            handles, [f"feature {i}" for i in range(n_feat)], loc="lower right", fontsize=7,
            title="feature (0 = most important)", title_fontsize=7,
        )
    else:
        sm = plt.cm.ScalarMappable(norm=Normalize(0, n_feat - 1), cmap="viridis")
        cbar = fig.colorbar(
            sm, ax=list(np.asarray(axes, dtype=object).ravel()), fraction=0.02, pad=0.01
        )
        cbar.set_label("feature index (0 = most important)", fontsize=8)


def interactive_neuron_bars(run: Run, title: str) -> go.Figure:
    """Plotly version of the stacked neuron bars, one panel per density (hover: feature, weight)."""
    cfg = run.config
    best = run.best()
    dens = [g.density for g in cfg.groups]
    n_feat = cfg.data.n_features
    fig = make_subplots(
        rows=len(best), cols=1, subplot_titles=[f"1-S = {d:g}" for d in dens],
        vertical_spacing=0.25 / max(1, len(best)),
    )
    colours = [
        "rgba({:.0f},{:.0f},{:.0f},1)".format(*(255 * np.array(c[:3])))
        for c in feature_colours(n_feat)
    ]
    for row, k in enumerate(best, start=1):
        W = run.W[k]
        order = geometry.neuron_order(W[None])[0].tolist()
        weights = W[:, order].numpy()  # [feat, neuron]
        for i in range(n_feat):
            fig.add_trace(
                go.Bar(
                    x=[f"n{j}" for j in order], y=weights[i], name=f"feature {i}",
                    marker_color=colours[i], legendgroup=f"f{i}", showlegend=row == 1,
                    hovertemplate=f"feature {i}<br>neuron %{{x}}<br>weight %{{y:.3f}}"
                    "<extra></extra>",
                ),
                row=row, col=1,
            )
    fig.update_layout(
        barmode="relative", title=title, height=max(400, 220 * len(best)),
        legend_title_text="feature (0 = most important)",
    )
    return fig


# --------------------------------------------------------------------------------------------------


def _title(run: Run) -> str:
    cfg = run.config
    return (
        f"{cfg.model.kind} model (ReLU hidden layer), n={cfg.data.n_features} features, "
        f"m={cfg.model.n_hidden} neurons, importance {cfg.groups[0].importance_decay:g}^i; "
        f"best of {cfg.train.instances} seeds per density"
    )


def neuron_weights(run: Run) -> Figure:
    """W per density (features down, neurons across; red positive, blue negative), neurons in
    :func:`geometry.neuron_order`, with the stacked per-neuron bars below (Section 7)."""
    best = run.best()
    dens = [g.density for g in run.config.groups]
    n_feat = run.config.data.n_features
    fig, axes = plt.subplots(
        2, len(best), figsize=(2.0 * len(best) + 1.6, 5.2), squeeze=False,
        gridspec_kw={"height_ratios": [1.3, 1]},
    )
    lim = float(run.W[best].abs().max())
    im = None
    for col, (d, k) in enumerate(zip(dens, best, strict=True)):
        W = run.W[k]
        order = geometry.neuron_order(W[None])[0].tolist()
        im = axes[0, col].imshow(
            W[:, order].numpy(), cmap=SIGNED_CMAP, vmin=-lim, vmax=lim, aspect="auto"
        )
        axes[0, col].set_title(f"1-S = {d:g}", fontsize=9)
        axes[0, col].set_xticks(range(len(order)), [str(j) for j in order], fontsize=6)
        axes[0, col].set_yticks(range(n_feat), [str(i) for i in range(n_feat)], fontsize=6)
        neuron_bars(axes[1, col], W)
    axes[0, 0].set_ylabel("feature", fontsize=8)
    axes[1, 0].set_ylabel("weight (stacked)", fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("neuron", fontsize=8)
    fig.suptitle(_title(run) + " (denser left, sparser right)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.86, 0.95))
    if im is not None:
        cax = fig.add_axes((0.87, 0.55, 0.012, 0.33))
        fig.colorbar(im, cax=cax).set_label("$W_{i,n}$", fontsize=8)
    feature_key(fig, n_feat, axes[1])
    return fig


def monosemanticity(run: Run) -> Figure:
    """Share of monosemantic neurons and mean monosemanticity against density (log axis, sparser to
    the right as in the paper)."""
    dens = [g.density for g in run.config.groups]
    frac = exp.monosemantic_fraction(run)
    mean = exp.mean_monosemanticity(run)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    ax.plot(dens, frac, "o-", label=f"share of neurons monosemantic (>= {exp.MONOSEMANTIC:g})")
    ax.plot(dens, mean, "s--", label="mean monosemanticity (top feature's share)")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("feature density 1-S (sparser to the right)")
    ax.set_ylabel("monosemanticity")
    ax.legend(fontsize=8)
    ax.set_title(_title(run).replace("; ", "\n"), fontsize=8)
    fig.tight_layout()
    return fig


def interactive_monosemanticity(run: Run) -> go.Figure:
    dens = [g.density for g in run.config.groups]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dens, y=exp.monosemantic_fraction(run), mode="lines+markers",
                             name="share of neurons monosemantic"))
    fig.add_trace(go.Scatter(x=dens, y=exp.mean_monosemanticity(run), mode="lines+markers",
                             name="mean monosemanticity"))
    fig.update_xaxes(type="log", autorange="reversed", title="feature density 1-S")
    fig.update_yaxes(range=[0, 1.05], title="monosemanticity")
    fig.update_layout(title=_title(run))
    return fig


FIGURES = {
    "neuron-weights": lambda runs: neuron_weights(runs[exp.RUN]),
    "monosemanticity": lambda runs: monosemanticity(runs[exp.RUN]),
}
INTERACTIVE = {
    "neuron-bars": lambda runs: interactive_neuron_bars(runs[exp.RUN], _title(runs[exp.RUN])),
    "monosemanticity": lambda runs: interactive_monosemanticity(runs[exp.RUN]),
}
