"""Figures of the scaling experiment (layer 4): the loss against the width m on log-log axes, one
panel per weight decay, with the fitted power laws; and the fraction of represented features
against weight decay."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition.experiments import scaling as exp
from superposition.results import Run

REGIMES = {exp.STRONG: "strong superposition", exp.WEAK: "weak superposition"}


def _regime(wd: float) -> str:
    return REGIMES.get(wd, "between")


def loss(runs: dict[str, Run]) -> Figure:
    """Held-out loss against m (log-log), one panel per weight decay, one series per alpha, each
    with its least-squares power law (exponent in the legend); the weak panel also shows the
    paper's account (left-out frequency mass, scaled to the first point) dashed."""
    by = exp.series(runs)
    alphas = sorted({a for a, _ in by})
    decays = sorted({wd for _, wd in by})
    fig, axes = plt.subplots(
        1, len(decays), figsize=(4.2 * len(decays), 4.0), layout="constrained", sharey=True
    )
    axes = np.atleast_1d(axes)
    colours = plt.get_cmap("tab10")
    for ax, wd in zip(axes, decays, strict=True):
        for j, a in enumerate(alphas):
            pts = by[(a, wd)]
            ms = np.array([p.m for p in pts], dtype=float)
            ax.plot(ms, [p.loss for p in pts], "o", color=colours(j))
            law = exp.fit(pts)
            grid = np.geomspace(ms.min(), ms.max(), 50)
            ax.plot(grid, [law(g) for g in grid], "-", color=colours(j),
                    label=f"alpha {a:g}: exponent {law.exponent:.2f}")  # fmt: skip
            if wd == exp.WEAK:
                acc = exp.account(pts)
                scale = pts[0].loss / acc(ms[0])
                ax.plot(grid, [scale * acc(g) for g in grid], "--", color=colours(j), lw=1,
                        label=f"alpha {a:g}: account, {acc.exponent:.2f}")  # fmt: skip
        first = by[(alphas[0], wd)]
        grid = np.geomspace(first[0].m, first[-1].m, 50)
        ax.plot(grid, first[0].loss * first[0].m / grid, ":", color="0.5", lw=1, label="1/m")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("hidden dimensions m")
        ax.set_title(f"weight decay {wd:g} ({_regime(wd)})", fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("held-out loss (mean squared error)")
    n = next(iter(by.values()))[0].n
    fig.suptitle(f"Loss against width, n = {n} features with p_i ∝ i^-alpha", fontsize=10)
    return fig


def represented(runs: dict[str, Run]) -> Figure:
    """Fraction of features whose row of W is longer than 1/2, against weight decay: one line
    per m (colour) and alpha (line style)."""
    by = exp.series(runs)
    alphas = sorted({a for a, _ in by})
    decays = sorted({wd for _, wd in by})
    widths = sorted({p.m for pts in by.values() for p in pts})
    fig, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    cmap = plt.get_cmap("viridis")
    styles = ["-", "--", ":", "-."]
    for j, a in enumerate(alphas):
        for k, m in enumerate(widths):
            fr = [next(p.fraction for p in by[(a, wd)] if p.m == m) for wd in decays]
            ax.plot(decays, fr, styles[j % len(styles)], marker="o",
                    color=cmap(k / max(len(widths) - 1, 1)),
                    label=f"m {m}" if j == 0 else None)  # fmt: skip
    for j, a in enumerate(alphas):
        ax.plot([], [], styles[j % len(styles)], color="0.3", label=f"alpha {a:g}")
    ax.set_xlabel("weight decay (negative: pulls rows of W toward norm 1)")
    ax.set_ylabel(f"fraction of features with ||W_i|| > {exp.REPRESENTED:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Represented features against weight decay", fontsize=10)
    return fig


FIGURES = {
    "loss": loss,
    "represented": represented,
}
