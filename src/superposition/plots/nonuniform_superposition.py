"""Section 4, "Non-Uniform Superposition": the best solution per density of the fifth feature (the
pentagon deforming, then snapping to two digons) and the losses of the two geometries."""

import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition import geometry
from superposition.experiments.nonuniform_superposition import (
    DENSITY,
    DIGONS,
    KINDS,
    PENTAGON,
    VARIED,
    best_weights,
    multiplier_of,
    solution_kind,
    sweep,
)
from superposition.results import Run

COLOURS = {PENTAGON: "#1f77b4", DIGONS: "#d62728"}
NAMES = {PENTAGON: "pentagon (5 features in 2-D)", DIGONS: "two digons, fifth not represented"}


def _ordered(runs: dict[str, Run]) -> list[Run]:
    return sorted(runs.values(), key=multiplier_of)


def _setting(runs: dict[str, Run]) -> str:
    cfg = next(iter(runs.values())).config
    return (
        f"{cfg.model.kind} model, n={cfg.data.n_features}, m={cfg.model.n_hidden}, equal "
        f"importance; features 1-{VARIED} at density {cfg.data.density[0]:g}, feature "
        f"{VARIED + 1} at that times the multiplier; best of {cfg.train.instances} seeds"
    )


def arrows(runs: dict[str, Run]) -> Figure:
    """The best model's feature directions for each density of the fifth feature (Section 4): the
    fifth feature's arrow in red, the others in grey; rotated so feature 1 points right and
    reflected so feature 2 lies above it."""
    ordered = _ordered(runs)
    k = len(ordered)
    fig, axes = plt.subplots(1, k, figsize=(1.9 * k, 2.6), squeeze=False)
    for ax, run in zip(axes[0], ordered, strict=True):
        w = best_weights(run).double().numpy()
        angle = math.atan2(w[0, 1], w[0, 0])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        w = w @ rot  # rotate by -angle: feature 1 along +x
        if w[1, 1] < 0:  # and reflect so that feature 2 lies above the x axis
            w[:, 1] *= -1
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, lw=0.5, color="0.8"))
        for i, (x, y) in enumerate(w.tolist()):
            ax.annotate(
                "", xy=(x, y), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "lw": 1.6, "shrinkA": 0, "shrinkB": 0,
                            "color": "C3" if i == VARIED else "0.35"},
            )
        lim = max(1.3, float(np.abs(w).max()) * 1.1)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"fifth: {multiplier_of(run):g}x density", fontsize=9)
        label = geometry.classify(best_weights(run)[None])[0].label
        ax.set_xlabel(label.replace(" + ", "\n+ "), fontsize=7)
    fig.suptitle(f"Best solution per density of the fifth feature (red)\n{_setting(runs)}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def losses(runs: dict[str, Run]) -> Figure:
    """Held-out loss of every seed, coloured by its geometry, and the lowest loss of each geometry
    against the fifth feature's relative density; right: the digons' excess over the pentagon."""
    rows = sweep(runs)
    mults = rows["multiplier"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in _ordered(runs):
        kinds = solution_kind(run.W)
        for kind in KINDS:
            ys = [v for k, v in zip(kinds, run.loss.tolist(), strict=True) if k == kind]
            ax.scatter([multiplier_of(run)] * len(ys), ys, s=9, alpha=0.3, color=COLOURS[kind],
                       lw=0)
    for kind in KINDS:
        ax.plot(mults, rows[kind], "o-", color=COLOURS[kind], ms=4, label=NAMES[kind])
    excess = [d / p - 1 for p, d in zip(rows[PENTAGON], rows[DIGONS], strict=True)]
    ax2.axhline(0, color="0.5", lw=0.8)
    ax2.plot(mults, excess, "o-", color="k", ms=4)
    switch = [
        (a, b) for a, b, ka, kb in zip(mults, mults[1:], rows["best"], rows["best"][1:],
                                       strict=False) if ka != kb
    ]
    for a, b in switch:
        for axis in (ax, ax2):
            axis.axvspan(a, b, color="0.9", zorder=0)
    ax.set_yscale("log")
    ax.set_ylabel("held-out loss")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Loss of each seed by geometry; lines: lowest per geometry", fontsize=9)
    ax2.set_ylabel("lowest digon loss / lowest pentagon loss - 1")
    ax2.set_title("Digons cheaper below 0, pentagon above (grey: best solution changes)",
                  fontsize=9)
    for axis in (ax, ax2):
        axis.set_xscale("log")
        axis.set_xticks(mults, [f"{m:g}x" for m in mults])
        axis.minorticks_off()
        axis.set_xlim(min(mults) / 1.2, max(mults) * 1.2)
        axis.set_xlabel(f"density of the fifth feature relative to the others ({DENSITY:g})")
    fig.suptitle(_setting(runs), fontsize=9)
    fig.tight_layout()
    return fig


def interactive_losses(runs: dict[str, Run]) -> Any:
    """Every seed's held-out loss by geometry, and the lowest per geometry (plotly)."""
    import plotly.graph_objects as go

    rows = sweep(runs)
    fig = go.Figure()
    for kind in KINDS:
        xs: list[float] = []
        ys: list[float] = []
        for run in _ordered(runs):
            kinds = solution_kind(run.W)
            ys += [v for k, v in zip(kinds, run.loss.tolist(), strict=True) if k == kind]
            xs += [multiplier_of(run)] * (len(ys) - len(xs))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"{NAMES[kind]}: a seed",
                                 marker={"color": COLOURS[kind], "opacity": 0.35, "size": 5}))
        fig.add_trace(go.Scatter(x=rows["multiplier"], y=rows[kind], mode="lines+markers",
                                 name=f"{NAMES[kind]}: lowest", line={"color": COLOURS[kind]}))
    fig.update_xaxes(type="log", title="density of the fifth feature relative to the others")
    fig.update_yaxes(type="log", title="held-out loss")
    fig.update_layout(title=_setting(runs))
    return fig


FIGURES: dict[str, Callable[[dict[str, Run]], Figure]] = {"arrows": arrows, "losses": losses}
INTERACTIVE: dict[str, Callable[[dict[str, Run]], Any]] = {"losses": interactive_losses}
