"""Section 8 figures: the dense n=3, m=6 model's weights (ReLU(x) and ReLU(-x) neurons) and the
sparse model's stacked per-neuron feature-weight bars across densities (layer 4)."""

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.figure import Figure

from superposition.colours import DIVERGING_SCALE
from superposition.experiments import computation as exp
from superposition.plots.privileged_basis import feature_key, interactive_neuron_bars, neuron_bars
from superposition.plots.runs import SIGNED_CMAP
from superposition.results import Run


def _title(run: Run) -> str:
    cfg = run.config
    imp = cfg.groups[0].importance_decay
    return (
        f"|x| model, n={cfg.data.n_features} signed features, m={cfg.model.n_hidden} neurons"
        + (f", importance {imp:g}^i" if imp != 1 else "")
        + f"; best of {cfg.train.instances} seeds"
    )


def dense_weights(run: Run) -> Figure:
    """The best dense model's encoder W1 and decoder W2 (features down, neurons across), neurons
    grouped by the feature they compute and its sign (Section 8: ReLU(x) and ReLU(-x))."""
    k = run.best()[0]
    W, D = run.W[k], run.params["W_dec"][k]
    pairs = exp.sign_neurons(W)
    order = [j for p in pairs if p is not None for j in p]
    order += [j for j in range(W.shape[1]) if j not in order]
    lim = float(max(W.abs().max(), D.abs().max()))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    im = None
    for ax, M, name in zip(
        axes, (W, D), ("encoder $W_1$ (feature to neuron)", "decoder $W_2$ (neuron to output)"),
        strict=True,
    ):
        im = ax.imshow(M[:, order].numpy(), cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
        for (i, j), v in zip(
            [(i, j) for i in range(M.shape[0]) for j in range(len(order))],
            M[:, order].flatten().tolist(), strict=True,
        ):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 * lim else "black")
        ax.set_xticks(range(len(order)), [f"n{j}" for j in order], fontsize=8)
        ax.set_yticks(range(M.shape[0]), [f"{'output' if M is D else 'feature'} {i}"
                                          for i in range(M.shape[0])], fontsize=8)
        ax.set_xlabel("neuron", fontsize=8)
        ax.set_title(name, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.9, 0.86), w_pad=2.0)
    if im is not None:
        cax = fig.add_axes((0.91, 0.2, 0.012, 0.55))
        fig.colorbar(im, cax=cax).set_label("weight", fontsize=8)
    found = ", ".join(
        f"f{i}: +n{p[0]} / -n{p[1]}" for i, p in enumerate(pairs) if p is not None
    )
    fig.suptitle(
        _title(run) + f", 1-S = {run.config.groups[0].density:g}\n"
        f"ReLU(x) / ReLU(-x) neuron pairs: {found or 'none'}",
        fontsize=9,
    )
    return fig


def neuron_weights(run: Run) -> Figure:
    """Stacked per-neuron bars of the best sparse model at each density (Section 8's figure):
    monosemantic neurons when dense, polysemantic as sparsity grows."""
    best = run.best()
    dens = [g.density for g in run.config.groups]
    fig, axes = plt.subplots(len(best), 1, figsize=(8.5, 1.45 * len(best) + 0.8), squeeze=False,
                             sharex=False)
    m = run.config.model.n_hidden
    for row, (d, k) in enumerate(zip(dens, best, strict=True)):
        ax = axes[row, 0]
        neuron_bars(ax, run.W[k], label_neurons=m <= 20)
        mono, _ = exp.monosemantic_share(run.W[k])
        ax.set_ylabel(f"1-S = {d:g}\n{len(mono)}/{m} mono", fontsize=7)
    axes[-1, 0].set_xlabel("neuron (sorted by dominant feature, then monosemanticity)", fontsize=8)
    fig.suptitle(_title(run) + "; encoder weights stacked per neuron", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.84, 0.97))
    feature_key(fig, run.config.data.n_features, axes)
    return fig


def interactive_dense_weights(run: Run) -> go.Figure:
    """Plotly heatmaps of the dense model's encoder and decoder (hover: feature, neuron, weight)."""
    from plotly.subplots import make_subplots

    k = run.best()[0]
    W, D = run.W[k], run.params["W_dec"][k]
    lim = float(max(W.abs().max(), D.abs().max()))
    fig = make_subplots(rows=1, cols=2, subplot_titles=["encoder W1", "decoder W2"])
    for col, M in enumerate((W, D), start=1):
        fig.add_trace(
            go.Heatmap(
                z=M.numpy(),
                x=[f"n{j}" for j in range(M.shape[1])],
                y=[f"feature {i}" for i in range(M.shape[0])],
                colorscale=DIVERGING_SCALE,
                zmin=-lim,
                zmax=lim,
                showscale=col == 2,
                hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1, col=col,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=_title(run))
    return fig


FIGURES = {
    "dense-weights": lambda runs: dense_weights(runs[exp.DENSE]),
    "neuron-weights": lambda runs: neuron_weights(runs[exp.SPARSE]),
}
INTERACTIVE = {
    "dense-weights": lambda runs: interactive_dense_weights(runs[exp.DENSE]),
    "neuron-bars": lambda runs: interactive_neuron_bars(
        runs[exp.SPARSE], _title(runs[exp.SPARSE])
    ),
}
