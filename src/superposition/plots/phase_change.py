"""Section 3's phase diagrams: empirical, theoretical and overlaid, for the paper's runs and for any
run or sweep over density x relative importance (one function draws both)."""

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from superposition import theory
from superposition._types import Tensor
from superposition.config import RunConfig
from superposition.errors import ConfigError
from superposition.experiments.phase_change import diagrams
from superposition.results import Run
from superposition.sweep.folder import SweepResult

# one colour per phase, in theory.PHASES order: not represented, dedicated dimension,
# superposition, dedicated dimension with another feature dropped (n >= 3 only)
COLOURS = ("#d9d9d9", "#4c72b0", "#dd8452", "#55a868")
CMAP = ListedColormap(COLOURS)


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges for log-spaced centres (geometric midpoints, extended at both ends)."""
    logs = np.log10(values)
    if logs.size == 1:  # one value: a cell one decade wide around it
        return np.asarray(10 ** (logs[0] + np.array([-0.5, 0.5])))
    mids = (logs[1:] + logs[:-1]) / 2
    first, last = logs[0] - (mids[0] - logs[0]), logs[-1] + (logs[-1] - mids[-1])
    return np.asarray(10 ** np.concatenate([[first], mids, [last]]))


@dataclass(frozen=True)
class PhaseGrid:
    """The extra (last) feature's phase at every point of a density x relative-importance grid,
    ``[importance, density]`` indices into :data:`theory.PHASES`, and the theory's where it has
    candidates."""

    n: int
    m: int
    seeds: int
    densities: np.ndarray
    relative_importances: np.ndarray
    empirical: np.ndarray
    """The best instance of each point, classified by :func:`theory.classify_extra_feature`."""
    theoretical: np.ndarray | None
    """The cheapest candidate (:func:`theory.phase_diagram`, the antipodal pair's scale and bias
    optimised); None where the theory does not apply (see :func:`theory_applies`)."""
    plain: np.ndarray | None = None
    """The cheapest of the paper's plain candidates (``optimise=False``); None likewise."""

    @property
    def agreement(self) -> float | None:
        if self.theoretical is None:
            return None
        return float((self.empirical == self.theoretical).mean())


def theory_applies(config: RunConfig) -> bool:
    """Whether Section 3's candidates describe this config: a tied ReLU-output model with (n, m)
    in :data:`theory.SUPPORTED`, independent unsigned features of one shared density and equal
    importance but for the last feature's relative importance."""
    data, model = config.data, config.model
    return (
        model.kind == "relu"
        and model.is_tied
        and (data.n_features, model.n_hidden) in theory.SUPPORTED
        and data.importance is None
        and data.feature_density is None
        and tuple(data.importance_decay) == (1.0,)
        and not data.correlated
        and not data.anticorrelated
        and not config.signed
    )


def phase_grid(source: Run | SweepResult) -> PhaseGrid:
    """The phase grid of a run whose groups span density x relative_importance (the paper's
    experiment: one importance_decay), or of a sweep whose only axes with more than one value are
    ``density`` and ``relative_importance`` (a ConfigError otherwise)."""
    if isinstance(source, Run):
        config, dens, imps, W = _from_run(source)
    elif isinstance(source, SweepResult):
        config, dens, imps, W = _from_sweep(source)
    else:
        raise ConfigError(f"a phase diagram is drawn from a Run or a SweepResult, got "
                          f"{type(source).__name__}")
    n, m = config.data.n_features, config.model.n_hidden
    if n < 2:
        raise ConfigError(f"a phase diagram needs n_features >= 2 (an extra feature beside "
                          f"others); this one has n_features={n}")
    index = {name: i for i, name in enumerate(theory.PHASES)}
    labels = theory.classify_extra_feature(W.reshape(-1, n, m))
    # W is [density, importance, ...]: the diagrams are [importance, density]
    empirical = np.array([index[v] for v in labels]).reshape(len(dens), len(imps)).T
    applies = theory_applies(config)
    theoretical = theory.phase_diagram(n, m, dens, imps).labels if applies else None
    plain = theory.phase_diagram(n, m, dens, imps, optimise=False).labels if applies else None
    return PhaseGrid(n, m, config.train.instances, dens, imps, empirical, theoretical, plain)


def _from_run(run: Run) -> tuple[RunConfig, np.ndarray, np.ndarray, Tensor]:
    cfg = run.config
    if len(cfg.data.importance_decay) != 1 or run.n_instances != cfg.n_instances:
        raise ConfigError(
            "a phase diagram of a run needs groups over density x relative_importance only; "
            f"this run has {len(cfg.data.importance_decay)} importance_decay values"
            + ("" if run.n_instances == cfg.n_instances else " and is a selection")
        )
    # groups run density-major, then relative importance
    W = run.W[run.best()].detach().cpu()
    shape = (len(cfg.data.density), len(cfg.data.relative_importance))
    return cfg, np.array(cfg.data.density), np.array(cfg.data.relative_importance), W.reshape(
        *shape, *W.shape[1:]
    )


def _from_sweep(result: SweepResult) -> tuple[RunConfig, np.ndarray, np.ndarray, Tensor]:
    sweep = result.sweep
    other = [a.field for a in sweep.axes
             if len(a.values) > 1 and a.field not in ("density", "relative_importance")]
    missing = [f for f in ("density", "relative_importance") if f not in sweep.names]
    if missing or other:
        what = f"has no axis {missing[0]}" if missing else f"also varies {', '.join(other)}"
        raise ConfigError(
            "a phase diagram needs a sweep over density and relative_importance only; "
            f"{result.path} {what}"
        )
    config = sweep.point_config(0)
    if config.n_groups != 1:
        raise ConfigError(f"a phase diagram needs one group per point; the points of "
                          f"{result.path} have {config.n_groups}")
    axes = result.axes
    dens = np.array(axes["density"], dtype=float)
    imps = np.array(axes["relative_importance"], dtype=float)
    n, m = config.data.n_features, config.model.n_hidden
    W = torch.empty(len(dens), len(imps), n, m, dtype=torch.float64)
    d_axis, r_axis = sweep.names.index("density"), sweep.names.index("relative_importance")
    for row in result.table():
        position = np.unravel_index(row["point"], sweep.shape)
        run = result.run(row["point"])
        W[position[d_axis], position[r_axis]] = run.W[row["best_instance"]].detach().double()
    return config, dens, imps, W


def _panel(ax: Axes, g: PhaseGrid, labels: np.ndarray, title: str) -> None:
    ax.pcolormesh(
        _edges(g.densities), _edges(g.relative_importances), labels, cmap=CMAP, vmin=-0.5,
        vmax=len(COLOURS) - 0.5,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()  # dense on the left, sparse on the right, as in the paper
    ax.set_xlabel("feature density 1-S")
    ax.set_title(title, fontsize=9)


def _theory_lines(ax: Axes, g: PhaseGrid) -> None:
    # the theory's boundaries as contour lines between phases on a fine grid
    dens = np.geomspace(g.densities.max(), g.densities.min(), 200)
    imps = np.geomspace(g.relative_importances.min(), g.relative_importances.max(), 200)
    fine = theory.phase_diagram(g.n, g.m, dens, imps).labels
    levels = np.arange(len(theory.phases(g.n, g.m)) - 1) + 0.5
    ax.contour(dens, imps, fine, levels=levels, colors="black", linewidths=1.2)


Source = Run | SweepResult


def phase_diagrams(sources: Source | Mapping[str, Source]) -> Figure:
    """The extra feature's phase against density and relative importance (Section 3), one row
    per run or sweep: the trained diagram (best of N seeds per point) and, where the theory
    applies (:func:`theory_applies`), the theoretical one (pair optimised), the trained one with
    that theory's boundaries drawn over it, and the theory of the paper's plain candidates (for
    n=3, m=2 with its four regions; with the pair optimised the fourth only ties, at density 1).

    ``sources``: a Run whose groups span density x relative_importance, a SweepResult over those
    two axes (:func:`phase_grid`), or several of them by name.
    """
    items = list(sources.values()) if isinstance(sources, Mapping) else [sources]
    grids = [phase_grid(s) for s in items]
    if not grids:
        raise ConfigError("phase_diagrams needs at least one run or sweep")
    cols = 4 if any(g.theoretical is not None for g in grids) else 1
    height = 3.6 * len(grids) + (0 if cols == 4 else 1.0)
    fig, axes = plt.subplots(
        len(grids), cols, figsize=(15.0 if cols == 4 else 4.8, height), squeeze=False
    )
    for row, g in enumerate(grids):
        name = f"n={g.n}, m={g.m}"
        best = f"best of {g.seeds} seeds" if g.seeds > 1 else "1 seed"
        _panel(axes[row, 0], g, g.empirical, f"{name}: trained ({best})")
        axes[row, 0].set_ylabel("relative importance of the extra feature")
        if g.theoretical is not None and g.plain is not None:
            _panel(axes[row, 1], g, g.theoretical, f"{name}: theory (cheapest, pair optimised)")
            overlay = f"trained, theory's boundaries over it: {g.agreement:.0%} agree"
            _panel(axes[row, 2], g, g.empirical, overlay)
            _theory_lines(axes[row, 2], g)
            agree = float((g.empirical == g.plain).mean())
            _panel(axes[row, 3], g, g.plain,
                   f"{name}: paper's plain candidates ({agree:.0%} agree)")
        elif cols == 4:
            for ax in axes[row, 1:]:
                ax.axis("off")
            axes[row, 1].text(0.0, 0.5, textwrap.fill(_NO_THEORY, 90), fontsize=9, va="center")
    handles = [Patch(color=c, label=p) for c, p in zip(COLOURS, theory.PHASES, strict=True)]
    if cols == 4:
        fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
        fig.suptitle("The extra feature's phase against density and relative importance "
                     "(Section 3)")
        fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    else:
        note = textwrap.fill(_NO_THEORY, 80)
        note_height = (0.13 * (note.count("\n") + 1) + 0.05) / height  # 7-point lines
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=7)
        fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=7,
                   bbox_to_anchor=(0.5, note_height))
        fig.suptitle("The extra (last) feature's phase (Section 3)", fontsize=10)
        fig.tight_layout(rect=(0, note_height + 0.3 / height, 1, 0.95))
    return fig


_NO_THEORY = (
    "no theory drawn: Section 3's candidates cover the tied ReLU-output model with (n, m) = "
    "(2, 1) or (3, 2), uniform importance but for the last feature, independent features"
)


def interactive_phase_diagrams(runs: dict[str, Run]) -> object:
    """Plotly heatmaps of the trained and theoretical phases with the values under the cursor."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(runs)
    titles = []
    for name in names:
        titles += [f"{name}: trained", f"{name}: theory"]
    fig = make_subplots(rows=len(names), cols=2, subplot_titles=titles)
    top = len(COLOURS) - 1
    colorscale = [[i / top, c] for i, c in enumerate(COLOURS)]
    for row, name in enumerate(names, start=1):
        d = diagrams(runs[name])
        text_emp = np.array(theory.PHASES, dtype=object)[d.empirical]
        text_th = np.array(theory.PHASES, dtype=object)[d.theoretical]
        for col, (z, text) in enumerate(((d.empirical, text_emp), (d.theoretical, text_th)), 1):
            fig.add_trace(
                go.Heatmap(
                    x=np.log10(d.densities), y=np.log10(d.relative_importances), z=z, text=text,
                    customdata=d.extra_norm, zmin=0, zmax=top, colorscale=colorscale,
                    showscale=False,
                    hovertemplate="density %{x:.2f} (log10)<br>relative importance %{y:.2f} "
                    "(log10)<br>%{text}<br>extra feature norm %{customdata:.2f}<extra></extra>",
                ),
                row=row, col=col,
            )
            fig.update_xaxes(title_text="log10 density", autorange="reversed", row=row, col=col)
            fig.update_yaxes(title_text="log10 relative importance", row=row, col=col)
    fig.update_layout(height=380 * len(names), title="Phase of the extra feature (Section 3)")
    return fig


FIGURES = {"phase-diagrams": phase_diagrams}
INTERACTIVE = {"phase-diagrams": interactive_phase_diagrams}
