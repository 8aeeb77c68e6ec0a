"""Section 2 figures: W^T W and b of the linear and ReLU-output models at each density, and the
paper's feature-norm bars coloured by superposition, for the n=20 and the larger model (layer 4).

:func:`gram_and_bias` and :func:`norm_bars` are the generic ones of :mod:`superposition.plots.runs`
(any run, or runs by name); the paper's figures call them with its runs."""

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from superposition import geometry
from superposition.experiments import demonstrating_superposition as exp
from superposition.plots.runs import SUP_MAX, gram_and_bias, norm_bars
from superposition.results import Run

__all__ = ["FIGURES", "INTERACTIVE", "gram_and_bias", "interactive_norms", "norm_bars"]


def _model_name(run: Run) -> str:
    kind = run.config.model.kind
    return {"linear": "linear", "relu": "ReLU output"}.get(kind, kind)


def _setting(run: Run) -> str:
    cfg = run.config
    return (
        f"n={cfg.data.n_features} features, m={cfg.model.n_hidden} dimensions, importance "
        f"{cfg.groups[0].importance_decay:g}^i"
    )


def _seeds(run: Run) -> str:
    k = run.config.train.instances
    return f"best of {k} seeds" if k > 1 else "1 seed"


def interactive_norms(run: Run) -> go.Figure:
    """Plotly norm bars per density, coloured by superposition (hover: feature, norm, bias)."""
    best = run.best()
    dens = [g.density for g in run.config.groups]
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


def _pair(runs: dict[str, Run]) -> dict[str, Run]:
    """The linear and the ReLU-output model, named as the figures' rows."""
    return {_model_name(runs[k]): runs[k] for k in (exp.LINEAR, exp.RELU)}


FIGURES = {
    "gram-and-bias": lambda runs: gram_and_bias(
        _pair(runs),
        f"$W^TW$ and $b$, {_setting(runs[exp.RELU])} (denser left, sparser right)",
    ),
    "feature-norms": lambda runs: norm_bars(
        _pair(runs),
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
