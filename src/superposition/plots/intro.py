"""The introduction figure: each density's best model drawn as feature arrows in the hidden plane,
with its W^T W below (paper, Introduction)."""

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from superposition import geometry
from superposition.experiments.intro import RUN
from superposition.results import Run


def polygons(run: Run) -> Figure:
    """One column per group: the best instance's feature directions W_i (arrows coloured by
    importance, darkest = most important, yellow = least) and its Gram matrix W^T W (red positive,
    blue negative)."""
    cfg = run.config
    if cfg.model.n_hidden != 2:
        raise ValueError(
            f"the polygons figure draws 2-D models; this run has n_hidden={cfg.model.n_hidden}"
        )
    best = run.best()
    W = run.W[best]
    shapes = geometry.classify(W)
    n_groups = len(best)
    fig, axes = plt.subplots(2, n_groups, figsize=(1.9 * n_groups, 4.6), squeeze=False)
    importance = cfg.data.feature_importances(cfg.groups[0]["importance_decay"])
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
        ax.set_title(f"1-S = {group['density']:g}", fontsize=9)
        ax.set_xlabel(shapes[col].label.replace(" + ", "\n+ "), fontsize=7)
        g = geometry.gram(w[None])[0]
        lim_g = max(1.0, float(g.abs().max()))
        axes[1, col].imshow(g.numpy(), cmap="RdBu_r", vmin=-lim_g, vmax=lim_g)
        axes[1, col].set_xticks([])
        axes[1, col].set_yticks([])
    axes[1, 0].set_ylabel("$W^T W$", fontsize=9)
    axes[0, 0].set_ylabel("$W_i$ in the hidden plane", fontsize=9)
    n, m = cfg.data.n_features, cfg.model.n_hidden
    fig.suptitle(
        f"{cfg.model.kind} model, n={n} features in m={m} dimensions, importance "
        f"{cfg.groups[0]['importance_decay']:g}^i; best of {cfg.train.instances} seeds per density "
        "(denser left, sparser right)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


FIGURES = {"polygons": lambda runs: polygons(runs[RUN])}
