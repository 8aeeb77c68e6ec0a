"""Section 5 figures: feature dimensionalities over training above the loss curve, and the n = 6
model's geometric stages beside its loss (paper, "Superposition and Learning Dynamics")."""

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from superposition.experiments.learning_dynamics import CORRELATED, FRACTIONS, UNIFORM, analyse
from superposition.results import Run


def _describe(run: Run) -> str:
    cfg = run.config
    d = cfg.data
    sets = f", correlated sets {list(d.correlated)}" if d.correlated else ""
    return (
        f"{cfg.model.kind} model, n={d.n_features}, m={cfg.model.n_hidden}, "
        f"1-S={d.density[0]:g}{sets}; best of {cfg.train.instances} seed(s)"
    )


def dimensionalities(run: Run) -> Figure:
    """D_i of every feature over training (one line each, named fractions dashed) above the loss
    recomputed at every snapshot on a fixed held-out sample."""
    a = analyse(run)
    steps, dims, loss = a["steps"], a["dims"], a["loss"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    for name, value in FRACTIONS.items():
        top.axhline(value, color="0.85", lw=0.8, ls="--", zorder=0)
        top.text(steps[-1], value, f" {name}", va="center", fontsize=7, color="0.5")
    cmap = plt.get_cmap("viridis")
    n = dims.shape[1]
    for i in range(n):
        colour = cmap(i / max(n - 1, 1))
        top.plot(steps, dims[:, i].numpy(), lw=1.0 if n <= 20 else 0.5, color=colour)
    top.set_ylabel("feature dimensionality $D_i$")
    top.set_ylim(-0.03, 1.05)
    bottom.plot(steps, loss.numpy(), color="k", lw=1.2)
    bottom.set_yscale("log")
    bottom.set_ylabel("held-out loss")
    bottom.set_xlabel("training step")
    fig.suptitle(f"Feature dimensionality over training: {_describe(run)}", fontsize=10)
    fig.tight_layout()
    return fig


def stages(run: Run) -> Figure:
    """The n = 6 model: D_i over training with the geometry label of each stage, beside the loss."""
    a = analyse(run)
    steps, dims, loss = a["steps"], a["dims"], a["loss"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i in range(dims.shape[1]):
        left.plot(steps, dims[:, i].numpy(), lw=1.2, label=f"feature {i}")
    for value in FRACTIONS.values():
        left.axhline(value, color="0.85", lw=0.8, ls="--", zorder=0)
    right.plot(steps, loss.numpy(), color="k", lw=1.2)
    right.set_yscale("log")
    for k, (label, first, last) in enumerate(a["stages"]):
        colour = plt.get_cmap("Pastel1")(k % 9)
        for ax in (left, right):
            ax.axvspan(steps[first], steps[last], color=colour, alpha=0.6, zorder=-1)
        right.text(
            (steps[first] + steps[last]) / 2, 0.98, label.replace(" + ", "\n+ "),
            transform=right.get_xaxis_transform(), ha="center", va="top", fontsize=6, rotation=90,
        )
    left.set_ylabel("feature dimensionality $D_i$")
    left.set_xlabel("training step")
    left.legend(fontsize=7, ncol=2)
    right.set_ylabel("held-out loss")
    right.set_xlabel("training step (shaded: geometric stages)")
    fig.suptitle(f"Geometric stages during training: {_describe(run)}", fontsize=10)
    fig.tight_layout()
    return fig


def dimensionalities_interactive(run: Run) -> go.Figure:
    """Interactive version of :func:`dimensionalities` (hover shows the stage label)."""
    a = analyse(run)
    steps, dims, loss, labels = a["steps"], a["dims"], a["loss"], a["labels"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35])
    for i in range(dims.shape[1]):
        fig.add_trace(
            go.Scatter(x=steps, y=dims[:, i].tolist(), mode="lines", name=f"feature {i}",
                       text=labels, hovertemplate="step %{x}: D=%{y:.3f}<br>%{text}"),
            row=1, col=1,
        )
    fig.add_trace(go.Scatter(x=steps, y=loss.tolist(), mode="lines", name="loss",
                             line={"color": "black"}), row=2, col=1)
    fig.update_yaxes(title_text="feature dimensionality D_i", row=1, col=1)
    fig.update_yaxes(title_text="held-out loss", type="log", row=2, col=1)
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_layout(title=f"Feature dimensionality over training: {_describe(run)}")
    return fig


FIGURES = {
    "uniform_dimensionalities": lambda runs: dimensionalities(runs[UNIFORM]),
    "correlated_dimensionalities": lambda runs: dimensionalities(runs[CORRELATED]),
    "correlated_stages": lambda runs: stages(runs[CORRELATED]),
}
INTERACTIVE = {
    "uniform_dimensionalities": lambda runs: dimensionalities_interactive(runs[UNIFORM]),
    "correlated_dimensionalities": lambda runs: dimensionalities_interactive(runs[CORRELATED]),
}
