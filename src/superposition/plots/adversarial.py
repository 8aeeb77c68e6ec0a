"""Section 6 figures: vulnerability to small L2 attacks against density and against superposition
(paper, "Superposition and Adversarial Robustness")."""

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from superposition.experiments.adversarial import BUDGET, RUN, analyse
from superposition.results import Run


def _describe(run: Run) -> str:
    cfg = run.config
    return (
        f"{cfg.model.kind} model, n={cfg.data.n_features}, m={cfg.model.n_hidden}, importance "
        f"{cfg.groups[0].importance_decay:g}^i, best of {cfg.train.instances} seeds per "
        f"density; L2 budget {BUDGET:g} x mean input norm"
    )


def vulnerability(run: Run) -> Figure:
    """Left: vulnerability and mean superposition against density. Right: vulnerability against
    superposition, one point per density."""
    a = analyse(run)
    dens, sup, vul = a["density"].numpy(), a["superposition"].numpy(), a["vulnerability"].numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(dens, vul, "o-", color="C3", label="vulnerability")
    left.set_xscale("log")
    left.invert_xaxis()
    left.set_xlabel("feature density 1-S (sparser to the right)")
    left.set_ylabel("vulnerability (loss rise / identity model's)", color="C3")
    twin = left.twinx()
    twin.plot(dens, sup, "s--", color="C0", label="superposition")
    twin.set_ylabel("mean superposition $\\sum_{j\\neq i}(\\hat W_i\\cdot W_j)^2$", color="C0")
    right.scatter(sup, vul, c=dens, cmap="viridis_r", norm=plt.matplotlib.colors.LogNorm())
    for d, s, v in zip(dens, sup, vul, strict=True):
        right.annotate(f"{d:g}", (s, v), textcoords="offset points", xytext=(4, 4), fontsize=7)
    right.set_xlabel("mean superposition per feature")
    right.set_ylabel("vulnerability")
    right.axhline(1.0, color="0.7", ls=":", lw=1)
    fig.suptitle(f"Adversarial vulnerability rises with superposition: {_describe(run)}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def vulnerability_interactive(run: Run) -> go.Figure:
    a = analyse(run)
    dens = a["density"].tolist()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("against density", "against superposition"))
    fig.add_trace(go.Scatter(x=dens, y=a["vulnerability"].tolist(), mode="lines+markers",
                             name="vulnerability"), row=1, col=1)
    fig.add_trace(go.Scatter(x=a["superposition"].tolist(), y=a["vulnerability"].tolist(),
                             mode="markers+text", text=[f"{d:g}" for d in dens],
                             name="per density"), row=1, col=2)
    fig.update_xaxes(title_text="density 1-S", type="log", autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="mean superposition per feature", row=1, col=2)
    fig.update_yaxes(title_text="vulnerability")
    fig.update_layout(title=f"Adversarial vulnerability: {_describe(run)}")
    return fig


FIGURES = {"vulnerability": lambda runs: vulnerability(runs[RUN])}
INTERACTIVE = {"vulnerability": lambda runs: vulnerability_interactive(runs[RUN])}
