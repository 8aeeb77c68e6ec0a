"""Section 3's phase diagrams: empirical, theoretical and overlaid, for each model of the run."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from superposition import theory
from superposition.experiments.phase_change import Diagrams, diagrams
from superposition.results import Run

# one colour per phase, in theory.PHASES order: not represented, dedicated dimension, superposition
COLOURS = ("#d9d9d9", "#4c72b0", "#dd8452")
CMAP = ListedColormap(COLOURS)


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges for log-spaced centres (geometric midpoints, extended at both ends)."""
    logs = np.log10(values)
    mids = (logs[1:] + logs[:-1]) / 2
    first, last = logs[0] - (mids[0] - logs[0]), logs[-1] + (logs[-1] - mids[-1])
    return np.asarray(10 ** np.concatenate([[first], mids, [last]]))


def _panel(ax: plt.Axes, d: Diagrams, labels: np.ndarray, title: str) -> None:
    ax.pcolormesh(
        _edges(d.densities), _edges(d.relative_importances), labels, cmap=CMAP, vmin=-0.5,
        vmax=len(COLOURS) - 0.5,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()  # dense on the left, sparse on the right, as in the paper
    ax.set_xlabel("feature density 1-S")
    ax.set_title(title, fontsize=9)


def _theory_lines(ax: plt.Axes, d: Diagrams) -> None:
    # the theory's boundaries as contour lines between phases on a fine grid
    dens = np.geomspace(d.densities.max(), d.densities.min(), 200)
    imps = np.geomspace(d.relative_importances.min(), d.relative_importances.max(), 200)
    fine = theory.phase_diagram(d.n, d.m, dens, imps).labels
    ax.contour(dens, imps, fine, levels=[0.5, 1.5], colors="black", linewidths=1.2)


def phase_diagrams(runs: dict[str, Run]) -> Figure:
    """One row per model: the empirical diagram (best of N seeds per point), the theoretical one
    and the empirical one with the theory's boundaries drawn over it."""
    fig, axes = plt.subplots(len(runs), 3, figsize=(11.5, 3.6 * len(runs)), squeeze=False)
    for row, run in enumerate(runs.values()):
        d = diagrams(run)
        cfg = run.config
        n, m, seeds = cfg.data.n_features, cfg.model.n_hidden, cfg.train.instances
        _panel(axes[row, 0], d, d.empirical, f"n={n}, m={m}: trained (best of {seeds} seeds)")
        _panel(axes[row, 1], d, d.theoretical, f"n={n}, m={m}: theory (cheapest candidate)")
        overlay = f"trained, theory's boundaries over it: {d.agreement:.0%} agree"
        _panel(axes[row, 2], d, d.empirical, overlay)
        _theory_lines(axes[row, 2], d)
        axes[row, 0].set_ylabel("relative importance of the extra feature")
    handles = [Patch(color=c, label=p) for c, p in zip(COLOURS, theory.PHASES, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    fig.suptitle("The extra feature's phase against density and relative importance (Section 3)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


def interactive_phase_diagrams(runs: dict[str, Run]) -> object:
    """Plotly heatmaps of the trained and theoretical phases with the values under the cursor."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(runs)
    titles = []
    for name in names:
        titles += [f"{name}: trained", f"{name}: theory"]
    fig = make_subplots(rows=len(names), cols=2, subplot_titles=titles)
    colorscale = [[i / 2, c] for i, c in enumerate(COLOURS)]
    for row, name in enumerate(names, start=1):
        d = diagrams(runs[name])
        text_emp = np.array(theory.PHASES, dtype=object)[d.empirical]
        text_th = np.array(theory.PHASES, dtype=object)[d.theoretical]
        for col, (z, text) in enumerate(((d.empirical, text_emp), (d.theoretical, text_th)), 1):
            fig.add_trace(
                go.Heatmap(
                    x=np.log10(d.densities), y=np.log10(d.relative_importances), z=z, text=text,
                    customdata=d.extra_norm, zmin=0, zmax=2, colorscale=colorscale,
                    showscale=False,
                    hovertemplate="density %{x:.2f} (log10)<br>relative importance %{y:.2f} "
                    "(log10)<br>%{text}<br>extra feature norm %{customdata:.2f}<extra></extra>",
                ),
                row=row, col=col,
            )
            fig.update_xaxes(title_text="log10 density", autorange="reversed", row=row, col=col)
            fig.update_yaxes(title_text="log10 relative importance", row=row, col=col)
    fig.update_layout(height=380 * len(names), title="Phase of the extra feature (Section 3)")
    return fig


FIGURES = {"phase-diagrams": phase_diagrams}
INTERACTIVE = {"phase-diagrams": interactive_phase_diagrams}
