"""Section 2 figures: W^T W and b of the linear and ReLU-output models at each density, and the
paper's feature-norm bars coloured by superposition, for the n=20 and the larger model (layer 4)."""

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from plotly.subplots import make_subplots

from superposition import geometry
from superposition.experiments import demonstrating_superposition as exp
from superposition.results import Run

SUP_MAX = 1.0
"""Top of the superposition colour scale (the paper's: 0 black/dark, >= 1 bright)."""
SUP_CMAP = "viridis"


def _model_name(run: Run) -> str:
    kind = run.config.model.kind
    return {"linear": "linear", "relu": "ReLU output"}.get(kind, kind)


def _setting(run: Run) -> str:
    cfg = run.config
    return (
        f"n={cfg.data.n_features} features, m={cfg.model.n_hidden} dimensions, importance "
        f"{cfg.groups[0]['importance_decay']:g}^i"
    )


def _seeds(run: Run) -> str:
    k = run.config.train.instances
    return f"best of {k} seeds" if k > 1 else "1 seed"


def gram_and_bias(runs: dict[str, Run]) -> Figure:
    """For each model and density: ``W^T W`` (red positive, blue negative) with the bias ``b`` as a
    column on its right (Section 2's figure)."""
    models = [runs[exp.LINEAR], runs[exp.RELU]]
    dens = [g["density"] for g in models[0].config.groups]
    n = models[0].config.data.n_features
    fig, axes = plt.subplots(
        len(models), 2 * len(dens), figsize=(1.75 * len(dens) + 1.2, 2.1 * len(models) + 0.8),
        squeeze=False, gridspec_kw={"width_ratios": [n, 2.5] * len(dens)},
    )
    lim = max(float(geometry.gram(r.W[r.best()]).abs().max()) for r in models)
    lim = max(lim, max(float(r.b[r.best()].abs().max()) for r in models))
    im = None
    for row, run in enumerate(models):
        for col, k in enumerate(run.best()):
            g = geometry.gram(run.W[k : k + 1])[0].numpy()
            ax, bx = axes[row, 2 * col], axes[row, 2 * col + 1]
            im = ax.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim)
            bx.imshow(run.b[k].numpy()[:, None], cmap="RdBu_r", vmin=-lim, vmax=lim,
                      aspect="auto")
            for a in (ax, bx):
                a.set_xticks([])
                a.set_yticks([])
            if row == 0:
                ax.set_title(f"1-S = {dens[col]:g}", fontsize=8)
            if row == len(models) - 1:
                ax.set_xlabel("$W^TW$", fontsize=7)
                bx.set_xlabel("$b$", fontsize=7)
        axes[row, 0].set_ylabel(f"{_model_name(run)}\n({_seeds(run)})", fontsize=8)
    fig.suptitle(f"$W^TW$ and $b$, {_setting(models[1])} (denser left, sparser right)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.95), w_pad=0.2)
    if im is not None:
        cax = fig.add_axes((0.94, 0.15, 0.012, 0.65))
        fig.colorbar(im, cax=cax).set_label("value", fontsize=8)
    return fig


def norm_bars(models: list[Run], title: str) -> Figure:
    """Feature norms ``||W_i||`` as horizontal bars (feature 0, the most important, on top),
    coloured by superposition ``sum_{j != i} (W_i_hat . W_j)^2`` (Section 2's figure); one row
    per model, one column per density."""
    dens = [g["density"] for g in models[0].config.groups]
    n = models[0].config.data.n_features
    fig, axes = plt.subplots(
        len(models), len(dens),
        figsize=(max(7.0, 1.6 * len(dens) + 1.2), (0.11 * n + 1.0) * len(models) + 0.8),
        squeeze=False, sharey=True,
    )
    cmap = plt.get_cmap(SUP_CMAP)
    norm = Normalize(0, SUP_MAX)
    for row, run in enumerate(models):
        best = run.best()
        W = run.W[best]
        norms = geometry.feature_norms(W).numpy()
        sup = geometry.superposition(W).numpy()
        for col in range(len(best)):
            ax = axes[row, col]
            ax.barh(np.arange(n), norms[col], color=cmap(norm(np.minimum(sup[col], SUP_MAX))),
                    height=0.85)
            ax.set_xlim(0, max(1.2, float(norms.max()) * 1.05))
            ax.set_ylim(n - 0.5, -0.5)
            ax.axvline(1.0, color="0.6", lw=0.5, ls=":")
            ax.tick_params(labelsize=6)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            n_rep = len(exp.represented(run.W[best[col]]))
            ax.text(0.97, 0.02, f"{n_rep} repr.", transform=ax.transAxes, ha="right", fontsize=6)
            if row == 0:
                ax.set_title(f"1-S = {dens[col]:g}", fontsize=8)
            if row == len(models) - 1:
                ax.set_xlabel("$||W_i||$", fontsize=7)
        axes[row, 0].set_ylabel(f"{_model_name(run)} ({_seeds(run)})\nfeature i", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.88, 0.95))
    cax = fig.add_axes((0.9, 0.15, 0.012, 0.65))
    cbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cbar.set_label(r"superposition $\sum_{j\neq i}(\hat W_i\cdot W_j)^2$ (clipped at 1)",
                   fontsize=7)
    return fig


def interactive_norms(run: Run) -> go.Figure:
    """Plotly norm bars per density, coloured by superposition (hover: feature, norm, bias)."""
    best = run.best()
    dens = [g["density"] for g in run.config.groups]
    W = run.W[best]
    norms = geometry.feature_norms(W).numpy()
    sup = geometry.superposition(W).numpy()
    n = run.config.data.n_features
    fig = make_subplots(rows=1, cols=len(best), shared_yaxes=True,
                        subplot_titles=[f"1-S = {d:g}" for d in dens])
    for col, k in enumerate(best):
        fig.add_trace(
            go.Bar(
                x=norms[col], y=list(range(n)), orientation="h",
                marker={"color": np.minimum(sup[col], SUP_MAX), "cmin": 0, "cmax": SUP_MAX,
                        "colorscale": "Viridis", "showscale": col == 0,
                        "colorbar": {"title": "superposition"}},
                customdata=np.stack([sup[col], run.b[k].numpy()], axis=-1),
                hovertemplate="feature %{y}<br>||W_i|| %{x:.3f}<br>superposition "
                "%{customdata[0]:.3f}<br>b_i %{customdata[1]:.3f}<extra></extra>",
                showlegend=False,
            ),
            row=1, col=col + 1,
        )
    fig.update_yaxes(autorange="reversed", title_text="feature i", row=1, col=1)
    fig.update_layout(title=f"{_model_name(run)} model: ||W_i|| coloured by superposition, "
                      f"{_setting(run)}, {_seeds(run)}", height=max(400, 14 * n + 150))
    return fig


FIGURES = {
    "gram-and-bias": gram_and_bias,
    "feature-norms": lambda runs: norm_bars(
        [runs[exp.LINEAR], runs[exp.RELU]],
        f"Feature norms coloured by superposition, {_setting(runs[exp.RELU])}\n"
        "(denser left, sparser right)",
    ),
    "feature-norms-large": lambda runs: norm_bars(
        [runs[exp.LARGE]],
        f"ReLU output model, {_setting(runs[exp.LARGE])}:\nfeature norms coloured by "
        "superposition (denser left, sparser right)",
    ),
}
INTERACTIVE = {
    "feature-norms-linear": lambda runs: interactive_norms(runs[exp.LINEAR]),
    "feature-norms-relu": lambda runs: interactive_norms(runs[exp.RELU]),
    "feature-norms-large": lambda runs: interactive_norms(runs[exp.LARGE]),
}
