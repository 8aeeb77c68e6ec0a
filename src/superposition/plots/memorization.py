"""Figures of the memorization experiment (Henighan et al. 2023): the hidden vectors of the
training points and of the features at several T, the test and training loss against T, and the
dimensionality of training points and features against T (all at m = 2), and the test loss
against T for every m trained."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition import geometry as geo
from superposition.experiments import memorization as exp
from superposition.results import Run

PANELS = 6
"""Training-set sizes drawn in the geometry figure at most (spread over the grid)."""


def _by_size(runs: dict[str, Run]) -> list[tuple[int, Run]]:
    out = []
    for run in exp.of_hidden(runs).values():
        size = run.config.data.dataset_size
        assert size is not None
        out.append((size, run))
    return sorted(out, key=lambda item: item[0])


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def _arrows(ax: plt.Axes, V: np.ndarray, colour: str) -> None:
    scale = float(np.abs(V).max()) or 1.0
    V = V / scale
    # one line through every spoke (origin, tip, break): thousands of points stay one artist
    spokes = np.full((len(V), 3, 2), np.nan)
    spokes[:, 0] = 0.0
    spokes[:, 1] = V
    ax.plot(spokes[..., 0].ravel(), spokes[..., 1].ravel(), color=colour, lw=0.8, alpha=0.7)
    ax.plot(V[:, 0], V[:, 1], "o", color=colour, ms=2.5)
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-1.15, 1.15)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def geometry(runs: dict[str, Run]) -> Figure:
    """Top, the hidden vectors ``h_j = W^T x_j`` of the first seed's training points; bottom, its
    features (rows ``W_i``), at several T. Each panel is scaled to its longest vector."""
    chosen = _spread(_by_size(runs), PANELS)
    fig, axes = plt.subplots(
        2, len(chosen), figsize=(2.1 * len(chosen), 4.6), layout="constrained", squeeze=False
    )
    for col, (size, run) in enumerate(chosen):
        p = exp.measure(run)
        X = exp.training_points(run.config)[:1]
        H = exp.hidden_points(run.W[:1].double(), X.double())[0].numpy()
        W = run.W[0].double().numpy()
        _arrows(axes[0, col], H, "tab:red")
        _arrows(axes[1, col], W, "tab:blue")
        dp, fp = p.point_polygon[0], p.feature_polygon[0]
        axes[0, col].set_title(
            f"T={size}\n{dp.vertices} points" + (", regular" if dp.regular else ""), fontsize=8
        )
        axes[1, col].set_title(
            f"{fp.vertices} features >= {exp.FEATURE_NORM}" + (", regular" if fp.regular else ""),
            fontsize=8,
        )
    axes[0, 0].set_ylabel("training points W^T x_j", fontsize=8)
    axes[1, 0].set_ylabel("features W_i", fontsize=8)
    fig.suptitle(
        "Hidden vectors of the training points (top) and of the features (bottom), seed 0",
        fontsize=10,
    )
    return fig


def loss(runs: dict[str, Run]) -> Figure:
    """Test loss (fresh samples) and training loss against T, each seed faint and their mean
    bold, on log axes: the double descent in the data set size."""
    pts = exp.points(runs)
    sizes = np.array([p.size for p in pts])
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for key, colour, label in (
        ("test", "tab:red", "test loss"),
        ("train", "tab:blue", "training loss"),
    ):
        values = [getattr(p, key) for p in pts]
        for s, v in zip(sizes, values, strict=True):
            ax.plot([s] * len(v), v, ".", color=colour, alpha=0.3)
        ax.plot(sizes, [np.mean(v) for v in values], "o-", color=colour, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training-set size T")
    ax.set_ylabel("loss (squared error, mean over features)")
    ax.legend(fontsize=8)
    cfg = pts and next(iter(exp.of_hidden(runs).values())).config
    if cfg:
        ax.set_title(
            f"n={cfg.data.n_features}, m={cfg.model.n_hidden}, density {cfg.data.density[0]:g}",
            fontsize=9,
        )
    return fig


def dimensionality(runs: dict[str, Run]) -> Figure:
    """Every training point's ``D_j`` and every feature's ``D_i`` (first seed) against T, with
    the typical (norm-weighted) dimensionality of each, mean over seeds."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    pts = exp.points(runs)
    for size, run in _by_size(runs):
        X = exp.training_points(run.config)[:1].double()
        W = run.W[:1].double()
        Dp = exp.datapoint_dimensionality(W, X)[0].numpy()
        Df = geo.feature_dimensionality(W)[0].numpy()
        Df = Df[np.linalg.norm(W[0].numpy(), axis=-1) >= exp.FEATURE_NORM]
        jitter = np.exp(np.random.default_rng(size).uniform(-0.08, 0.08, Dp.size + Df.size))
        ax.plot(size * jitter[: Dp.size], Dp, ".", color="tab:red", alpha=0.15, ms=3)
        ax.plot(size * jitter[Dp.size :], Df, ".", color="tab:blue", alpha=0.3, ms=3)
    sizes = [p.size for p in pts]
    ax.plot(sizes, [np.mean(p.point_dim) for p in pts], "o-", color="tab:red",
            label="training points (typical)")  # fmt: skip
    ax.plot(sizes, [np.mean(p.feature_dim) for p in pts], "o-", color="tab:blue",
            label=f"features (typical; dots: ||W_i|| >= {exp.FEATURE_NORM})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training-set size T")
    ax.set_ylabel("dimensionality")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Dimensionality of training points and features", fontsize=9)
    return fig


def loss_by_m(runs: dict[str, Run]) -> Figure:
    """Test loss (mean over seeds) against T, one line per hidden dimension m, each m's peak
    ringed: where the double descent's peak sits as m grows."""
    curves = exp.loss_curves(runs)
    peaks = exp.peak_sizes(curves)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(curves), 2)))
    for colour, (m, curve) in zip(colours, curves.items(), strict=False):
        sizes, test = zip(*curve, strict=True)
        ax.plot(sizes, test, "o-", color=colour, label=f"m={m} (peak at T={peaks[m]})")
        ax.plot([peaks[m]], [dict(curve)[peaks[m]]], "o", ms=12, mfc="none", color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training-set size T")
    ax.set_ylabel("test loss (mean over seeds)")
    ax.legend(fontsize=8)
    ax.set_title("Test loss against T for each number of hidden dimensions m", fontsize=9)
    return fig


FIGURES = {
    "geometry": geometry,
    "loss": loss,
    "dimensionality": dimensionality,
    "loss_by_m": loss_by_m,
}
