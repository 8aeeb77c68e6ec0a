"""Figures of the engineered-monosemanticity experiment (Jermyn et al. 2022): monosemantic share
and loss against the number of neurons for each neuron-bias initialisation, and the neurons'
responses to one-feature inputs."""

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from superposition.experiments import engineered_monosemanticity as exp
from superposition.plots.privileged_basis import feature_key, neuron_bars
from superposition.results import Run


def _describe(runs: dict[str, Run]) -> str:
    cfg = next(iter(runs.values())).config
    return (
        f"mlp model, n={cfg.data.n_features} features through a random projection to "
        f"d={cfg.model.n_inputs}, density {cfg.data.density[0]:g}, {cfg.train.instances} seeds "
        "per setting"
    )


def monosemanticity(runs: dict[str, Run]) -> Figure:
    """Left: monosemantic share of the live neurons against neuron count, every model a dot and
    the best per setting a line, one colour per bias initialisation. Right: normalised loss
    against neuron count, the same way."""
    rows = exp.table(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for colour, c0 in zip(("C0", "C3"), exp.BIAS_INITS, strict=True):
        mine = [r for r in rows if r["bias_init"] == c0]
        best = exp.best_by_k(runs, c0)
        label = f"neuron biases start at {c0:g}"
        for ax, key in ((left, "share"), (right, "loss")):
            ax.scatter(
                [r["k"] for r in mine], [r[key] for r in mine], color=colour, s=14, alpha=0.5
            )
            ax.plot(list(best), [b[key] for b in best.values()], "o-", color=colour, label=label)
    n = next(iter(runs.values())).config.data.n_features
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.axvline(n, color="0.7", ls=":", lw=1)
        ax.set_xlabel(f"neurons k (dotted: k = n = {n})")
        ax.legend(fontsize=8)
    left.set_ylim(-0.03, 1.03)
    left.set_ylabel(f"share of live neurons monosemantic (>= {exp.MONOSEMANTIC:g})")
    right.set_ylabel("loss / loss of the all-zero output")
    fig.suptitle(f"Monosemanticity by route: {_describe(runs)}", fontsize=9)
    fig.tight_layout()
    return fig


def neurons(runs: dict[str, Run]) -> Figure:
    """The best model's neuron responses to one-feature inputs, ``ReLU(G W + c)``, as stacked
    bars per neuron (Section 7's convention), for each bias initialisation (rows) and neuron count
    (columns)."""
    ks = sorted({r.config.model.n_hidden for r in runs.values()})
    fig, axes = plt.subplots(
        len(exp.BIAS_INITS),
        len(ks),
        figsize=(2.6 * len(ks) + 1.5, 2.4 * len(exp.BIAS_INITS)),
        squeeze=False,
    )
    for row, c0 in enumerate(exp.BIAS_INITS):
        for col, k in enumerate(ks):
            run = runs[exp.run_name(k, c0)]
            best = int(run.loss.argmin())
            R = exp.responses(run)[best]
            neuron_bars(axes[row, col], R, label_neurons=False)
            axes[row, col].set_title(f"k={k}, bias init {c0:g}", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("response", fontsize=8)
    n_feat = next(iter(runs.values())).config.data.n_features
    fig.suptitle(
        f"Neuron responses to each feature alone (best seed): {_describe(runs)}", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 0.86, 0.95))
    feature_key(fig, n_feat, axes)
    return fig


FIGURES = {"monosemanticity": monosemanticity, "neurons": neurons}
