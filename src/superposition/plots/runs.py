"""Figures of any run (layer 4): each group's best instance drawn as the paper draws its models.

Every function takes a :class:`~superposition.results.Run` of any model kind (linear, relu,
privileged, abs) and size and returns a matplotlib Figure:

- :func:`gram_and_bias`: the paper's ``W^T W`` beside the bias ``b`` (Section 2);
- :func:`norm_bars`: feature norms ``||W_i||`` coloured by superposition (Section 2);
- :func:`dimensionality`: every represented feature's dimensionality ``D_i`` against the group
  axis, with the fractions the paper names (Section 4, "Feature Dimensionality");
- :func:`polygons`: the feature directions as arrows in the hidden plane, for m = 2 only
  (Introduction);
- :func:`loss_curves`: the training loss of every instance (or of each group's best).

A *group* is one combination of density x importance_decay x relative_importance
(:attr:`RunConfig.groups`); what is drawn of it is its best instance (:meth:`Run.best`, lowest
held-out loss). At most :data:`MAX_GROUPS` groups get a panel each (evenly spaced, the first and
the last included) and the figure says when some are left out. A run restricted with
:meth:`Run.select` no longer has groups: each of its instances is drawn instead.

The project stores W ``[inst, feat, hidden]`` (row i is feature i's direction), so the paper's
``W^T W`` is :func:`geometry.gram` ``(W) = W W^T``. For untied models (``abs``) these figures draw
the encoder W; the decoder ``W_dec`` is left out. Signed matrices use red for positive and blue
for negative with symmetric colour limits (:data:`SIGNED_CMAP`).
"""

import math
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from superposition import geometry
from superposition.colours import DIVERGING
from superposition.config import RunConfig
from superposition.errors import ConfigError
from superposition.experiments.uniform_superposition import FRACTIONS
from superposition.results import REPRESENTED, Run

SIGNED_CMAP = LinearSegmentedColormap.from_list("superposition_diverging", DIVERGING)
"""Colour map of every signed matrix (W^T W, b): red positive, blue negative, white 0
(:data:`superposition.colours.DIVERGING`)."""
SUP_MAX = 1.0
"""Top of the superposition colour scale (the paper's: 0 dark, >= 1 bright)."""
SUP_CMAP = "viridis"
FEATURE_CMAP = ListedColormap(plt.get_cmap("plasma")(np.linspace(0.0, 0.85, 256)))
"""Colour of feature i by its index (0, the most important when importance decays, darkest;
plasma without its palest yellow, which vanishes on white)."""
MAX_GROUPS = 12
"""Groups (or selected instances) drawn at most as panels; the rest are left out, and said so."""
PANEL_COLUMNS = 6
"""Panels per row, about, when one run's groups are wrapped into a grid (up to
:data:`ONE_ROW` panels stay on one row)."""
ONE_ROW = 8
MAX_LINES = 48
"""Instances drawn as loss curves at most; above it, only each group's best."""

_FIELDS = {"density": "1-S", "importance_decay": "importance decay", "relative_importance": "r"}
"""Per-group fields and their short names in panel titles (r: the last feature's relative
importance, Section 3)."""

RunsLike = Run | Mapping[str, Run] | Sequence[Run]
"""What the multi-run figures accept: one run, runs by name (one row each), or a list of runs."""


# --------------------------------------------------------------------------------------------------
# what is drawn: panels, their labels and the run's setting


@dataclass(frozen=True)
class Panel:
    """One drawn instance and its label."""

    instance: int
    label: str


def varying_fields(config: RunConfig) -> list[str]:
    """The per-group fields that take more than one value in this run."""
    groups = config.groups
    return [f for f in _FIELDS if len({getattr(g, f) for g in groups}) > 1]


def group_labels(config: RunConfig, sep: str = ", ") -> list[str]:
    """One label per group naming the fields that vary (density when none does)."""
    fields = varying_fields(config) or ["density"]
    return [
        sep.join(f"{_FIELDS[f]} = {getattr(g, f):g}" for f in fields) for g in config.groups
    ]


def panels(run: Run, limit: int | float = MAX_GROUPS, sep: str = ", ") -> tuple[list[Panel], str]:
    """The instances drawn (each group's best, or every instance of a selection), at most
    ``limit`` of them evenly spaced, and a note saying what was left out ("" when nothing)."""
    cfg = run.config
    if run.n_instances != cfg.n_instances:  # a Run.select: its config no longer has its groups
        original = run.info.get("selected_instances", list(range(run.n_instances)))
        items = [Panel(i, f"instance {original[i]}") for i in range(run.n_instances)]
        what = "instances"
    else:
        labels = group_labels(cfg, sep)
        items = [Panel(k, labels[g]) for g, k in enumerate(run.best())]
        what = "groups"
    if len(items) <= limit:
        return items, ""
    keep = sorted({int(i) for i in np.linspace(0, len(items) - 1, int(limit)).round()})
    note = f"{len(keep)} of {len(items)} {what} drawn (evenly spaced); the others are left out"
    return [items[i] for i in keep], note


def seeds(run: Run) -> str:
    k = run.config.train.instances
    if run.n_instances != run.config.n_instances:
        return "selected instances"
    return f"best of {k} seeds" if k > 1 else "1 seed"


def setting(run: Run, *, kind: bool = True, best: bool = True) -> str:
    """The run in words: model, n in m, the importance profile when one, seeds."""
    cfg = run.config
    words = []
    if kind:
        words.append(f"{cfg.model.kind} model{'' if cfg.model.is_tied else ' (untied)'},")
    words.append(f"n={cfg.data.n_features} features, m={cfg.model.n_hidden} dimensions")
    text = " ".join(words)
    decays = cfg.data.importance_decay
    if cfg.data.importance is None and len(decays) == 1:
        text += ", equal importance" if decays[0] == 1 else f", importance {decays[0]:g}^i"
    relative = cfg.data.relative_importance
    if len(relative) == 1 and relative[0] != 1:
        text += f", the last feature's x {relative[0]:g}"
    if best:
        grouped = cfg.n_groups > 1 and run.n_instances == cfg.n_instances
        text += f"; {seeds(run)}" + (" per group" if grouped else "")
    return text


def _dense_to_sparse(run: Run) -> str:
    """The paper's reading hint, when the panels run along density from dense to sparse."""
    cfg = run.config
    dens = [g.density for g in cfg.groups]
    if varying_fields(cfg) == ["density"] and dens == sorted(dens, reverse=True):
        return " (denser left, sparser right)"
    return ""


def _rows(runs: RunsLike) -> list[tuple[str, Run]]:
    if isinstance(runs, Run):
        return [("", runs)]
    items = list(runs.items()) if isinstance(runs, Mapping) else [("", r) for r in runs]
    if not items or not all(isinstance(r, Run) for _, r in items):
        raise ConfigError(
            "expected a Run, a mapping of names to Runs or a list of Runs, got "
            f"{type(runs).__name__} with {len(items)} item(s)"
        )
    return [(str(name), run) for name, run in items]


@dataclass(frozen=True)
class _Layout:
    """Where each panel goes: rows of (run, panel), a label per row, whether titles repeat."""

    rows: list[list[tuple[Run, Panel]]]
    row_labels: list[str]
    titles_every_row: bool
    notes: list[str]

    @property
    def n_cols(self) -> int:
        return max(len(r) for r in self.rows)

    @property
    def runs(self) -> list[Run]:
        return [run for row in self.rows for run, _ in row]


def _layout(runs: RunsLike) -> _Layout:
    named = _rows(runs)
    notes = []
    if len(named) == 1:  # one run: its panels wrapped into rows
        name, run = named[0]
        items, note = panels(run, sep="\n")
        notes += [note] if note else []
        width = _width(len(items))
        rows = [[(run, p) for p in items[i : i + width]] for i in range(0, len(items), width)]
        labels = [name] + [""] * (len(rows) - 1)
        return _Layout(rows, labels, len(rows) > 1, notes)
    rows, labels = [], []
    for name, run in named:
        items, note = panels(run, sep="\n")
        notes += [f"{name}: {note}"] if note else []
        rows.append([(run, p) for p in items])
        labels.append(f"{name}\n({seeds(run)})" if name else seeds(run))
    same = len({tuple(p.label for _, p in r) for r in rows}) == 1
    return _Layout(rows, labels, not same, notes)


def _width(k: int) -> int:
    """Panels per row for k panels: one row up to ONE_ROW, else balanced rows of about
    PANEL_COLUMNS."""
    if k <= ONE_ROW:
        return max(k, 1)
    return -(-k // -(-k // PANEL_COLUMNS))


def _wrap(fig: Figure, text: str, fontsize: int) -> str:
    """``text`` wrapped, line by line, to the figure's width (a character is about 0.65 em)."""
    width = max(30, int(fig.get_figwidth() * 72 / (0.65 * fontsize)))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def _colorbar_room(fig: Figure) -> tuple[float, float]:
    """Where the panels end and a colour bar starts (figure fractions): about 0.9 inch is kept
    on the right for the bar, its ticks and its label, whatever the figure's width."""
    w = fig.get_figwidth()
    return 1 - 0.95 / w, 1 - 0.85 / w


def _limit(arrays: Sequence[np.ndarray]) -> float:
    """Symmetric colour limit: the largest finite |value| (1 when there is none)."""
    top = 0.0
    for a in arrays:
        finite = a[np.isfinite(a)]
        if finite.size:
            top = max(top, float(np.abs(finite).max()))
    return top if top > 0 else 1.0


def _note(fig: Figure, notes: Sequence[str]) -> float:
    """Write the notes at the bottom left; the height (figure fraction) they take."""
    notes = [n for n in notes if n]
    if not notes:
        return 0.0
    text = _wrap(fig, "\n".join(notes), 7)
    fig.text(0.01, 0.005, text, fontsize=7, va="bottom", ha="left", color="0.3")
    # a 7-point line is about 0.13 inch high
    return min(0.3, (0.13 * (text.count("\n") + 1) + 0.05) / fig.get_figheight())


def _hide_unused(axes: np.ndarray, used: set[tuple[int, int]]) -> None:
    for (r, c), ax in np.ndenumerate(axes):
        if (r, c) not in used:
            ax.set_visible(False)


def _bottom_rows(layout: _Layout) -> dict[int, int]:
    """For each panel column, the last row that has a panel in it."""
    bottom: dict[int, int] = {}
    for r, row in enumerate(layout.rows):
        for c in range(len(row)):
            bottom[c] = r
    return bottom


def _W(run: Run, instance: int) -> torch.Tensor:
    return run.W[instance : instance + 1].detach().cpu().double()


# --------------------------------------------------------------------------------------------------
# Section 2: W^T W and b; feature norms coloured by superposition


def gram_and_bias(runs: RunsLike, title: str | None = None) -> Figure:
    """``W^T W`` (red positive, blue negative, one symmetric colour scale for the whole figure)
    with the bias ``b`` as a column on its right, for the best instance of each group (Section 2).

    ``runs``: one run (its groups wrapped into rows of :data:`PANEL_COLUMNS`), runs by name (one
    row each, the name on the left) or a list of runs.
    """
    layout = _layout(runs)
    n_cols = layout.n_cols
    n_feat = max(run.config.data.n_features for row in layout.rows for run, _ in row)
    fig, axes = plt.subplots(
        len(layout.rows), 2 * n_cols,
        figsize=(max(5.0, 1.75 * n_cols + 1.2), 2.1 * len(layout.rows) + 0.8), squeeze=False,
        # b's column: as in the paper for n = 20, never thinner than 0.6 of a cell
        gridspec_kw={"width_ratios": [n_feat, max(0.6, n_feat / 8)] * n_cols},
    )
    grams = {
        (r, c): geometry.gram(_W(run, p.instance))[0].numpy()
        for r, row in enumerate(layout.rows) for c, (run, p) in enumerate(row)
    }
    biases = {
        (r, c): run.b[p.instance].detach().cpu().double().numpy()
        for r, row in enumerate(layout.rows) for c, (run, p) in enumerate(row)
    }
    lim = _limit([*grams.values(), *biases.values()])
    bottom = _bottom_rows(layout)
    used, im = set(), None
    for r, row in enumerate(layout.rows):
        for c, (_, p) in enumerate(row):
            ax, bx = axes[r, 2 * c], axes[r, 2 * c + 1]
            used |= {(r, 2 * c), (r, 2 * c + 1)}
            im = ax.imshow(grams[r, c], cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)
            bx.imshow(biases[r, c][:, None], cmap=SIGNED_CMAP, vmin=-lim, vmax=lim,
                      aspect="auto")
            for a in (ax, bx):
                a.set_xticks([])
                a.set_yticks([])
            if r == 0 or layout.titles_every_row:
                ax.set_title(p.label, fontsize=8)
            if bottom[c] == r:
                ax.set_xlabel("$W^TW$", fontsize=7)
                bx.set_xlabel("$b$", fontsize=7)
        if layout.row_labels[r]:
            axes[r, 0].set_ylabel(layout.row_labels[r], fontsize=8)
    _hide_unused(axes, used)
    first = layout.rows[0][0][0]
    single = len(_rows(runs)) == 1
    default = f"$W^TW$ and $b$, {setting(first, kind=single, best=single)}"
    fig.suptitle(_wrap(fig, title or default + _dense_to_sparse(first), 9), fontsize=9)
    bottom_space = _note(fig, layout.notes + _untied_note(layout.runs))
    right, bar = _colorbar_room(fig)
    fig.tight_layout(rect=(0, bottom_space, right, 0.95), w_pad=0.2)
    if im is not None:
        cax = fig.add_axes((bar, 0.15 + bottom_space, 0.12 / fig.get_figwidth(),
                            0.65 - bottom_space))
        fig.colorbar(im, cax=cax).set_label("value", fontsize=8)
    return fig


def _untied_note(runs: Iterable[Run]) -> list[str]:
    if all(run.config.model.is_tied for run in runs):
        return []
    return ["untied model: W is the encoder; the decoder W_dec is not drawn"]


def norm_bars(runs: RunsLike, title: str | None = None) -> Figure:
    """Feature norms ``||W_i||`` as horizontal bars (feature 0 on top), coloured by superposition
    ``sum_{j != i} (W_i_hat . W_j)^2`` clipped at :data:`SUP_MAX` (Section 2), one panel per
    group's best instance; ``runs`` as in :func:`gram_and_bias`."""
    layout = _layout(runs)
    n_cols = layout.n_cols
    sizes = {run.config.data.n_features for row in layout.rows for run, _ in row}
    n_feat = max(sizes)
    fig, axes = plt.subplots(
        len(layout.rows), n_cols,
        figsize=(max(7.0, 1.6 * n_cols + 1.2), (0.11 * n_feat + 1.0) * len(layout.rows) + 0.8),
        squeeze=False, sharey=len(sizes) == 1,
    )
    cmap = plt.get_cmap(SUP_CMAP)
    norm = Normalize(0, SUP_MAX)
    bottom = _bottom_rows(layout)
    used = set()
    for r, row in enumerate(layout.rows):
        for c, (run, p) in enumerate(row):
            ax = axes[r, c]
            used.add((r, c))
            W = _W(run, p.instance)
            norms = geometry.feature_norms(W)[0].numpy()
            sup = geometry.superposition(W)[0].numpy()
            n = len(norms)
            ax.barh(np.arange(n), norms, color=cmap(norm(np.minimum(sup, SUP_MAX))), height=0.85)
            finite = norms[np.isfinite(norms)]
            ax.set_xlim(0, max(1.2, float(finite.max()) * 1.05 if finite.size else 1.2))
            ax.set_ylim(n - 0.5, -0.5)
            ax.axvline(1.0, color="0.6", lw=0.5, ls=":")
            ax.tick_params(labelsize=6)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            n_rep = int((norms >= REPRESENTED).sum())
            ax.text(0.97, 0.02, f"{n_rep} repr.", transform=ax.transAxes, ha="right", fontsize=6)
            if r == 0 or layout.titles_every_row:
                ax.set_title(p.label, fontsize=8)
            if bottom[c] == r:
                ax.set_xlabel("$||W_i||$", fontsize=7)
        label = layout.row_labels[r].replace("\n", " ")
        axes[r, 0].set_ylabel(f"{label}\nfeature i" if label else "feature i", fontsize=8)
    _hide_unused(axes, used)
    first = layout.rows[0][0][0]
    single = len(_rows(runs)) == 1
    default = (
        f"Feature norms coloured by superposition, {setting(first, kind=single, best=single)}"
        + _dense_to_sparse(first)
    )
    fig.suptitle(_wrap(fig, title or default, 9), fontsize=9)
    represented = f"repr.: features with ||W_i|| >= {REPRESENTED}"
    notes = [*layout.notes, *_untied_note(layout.runs), represented]
    bottom_space = _note(fig, notes)
    right, bar = _colorbar_room(fig)
    fig.tight_layout(rect=(0, bottom_space, right, 0.95))
    cax = fig.add_axes((bar, 0.15 + bottom_space, 0.12 / fig.get_figwidth(), 0.65 - bottom_space))
    cbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cbar.set_label(r"superposition $\sum_{j\neq i}(\hat W_i\cdot W_j)^2$ (clipped at 1)",
                   fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------------
# Section 4: feature dimensionality against the group axis


@dataclass(frozen=True)
class GroupAxis:
    """Where each drawn instance sits on the x axis of :func:`dimensionality`."""

    x: np.ndarray
    label: str
    log: bool
    ticks: list[str] | None
    """Tick labels when the axis is categorical (x = 0, 1, 2 ...), else None."""


def group_axis(run: Run, instances: Sequence[Panel]) -> GroupAxis:
    """The x axis of the groups: 1/(1-S) on a log axis when only density varies (as the paper),
    the one varying field's value when another varies alone, categories otherwise."""
    cfg = run.config
    fields = varying_fields(cfg) if run.n_instances == cfg.n_instances else []
    if len(fields) == 1:
        field = fields[0]
        values = np.array([getattr(g, field) for g in cfg.groups], dtype=float)
        if field == "density":
            return GroupAxis(1.0 / values, "1/(1-S)  (sparser to the right)", True, None)
        log = bool(values.min() > 0 and values.max() / values.min() >= 10)
        return GroupAxis(values, _FIELDS[field] if field != "relative_importance" else
                         "relative importance r of the last feature", log, None)
    return GroupAxis(np.arange(len(instances), dtype=float), "", False,
                     [p.label for p in instances])


def fraction_lines(ax: Axes) -> None:
    """The feature dimensionalities the paper names (Section 4, "Feature Dimensionality") as dashed
    lines across ``ax``, each labelled with its polytope on the right."""
    right = ax.get_yaxis_transform()  # x in axes units, y in data units
    for value, label, polytope in FRACTIONS:
        ax.axhline(value, color="0.75", lw=0.7, ls="--", zorder=0)
        # 2/5 and 3/8 are close: one label above its line, the other below
        va = {2 / 5: "bottom", 3 / 8: "top"}.get(value, "center")
        ax.text(1.01, value, f"{label} {polytope}", transform=right, va=va, fontsize=8)


def dimensionality(run: Run) -> Figure:
    """Every represented feature's dimensionality ``D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2``
    against the group axis (:func:`group_axis`), coloured by feature index, with the fractions the
    paper names (Section 4, "Feature Dimensionality") as dashed lines and dimensions per feature
    ``m / ||W||_F^2`` as a black line. All groups are drawn (one column of points each)."""
    cfg = run.config
    items, _ = panels(run, limit=math.inf, sep="\n")
    W = run.W[[p.instance for p in items]].detach().cpu().double()
    D = geometry.feature_dimensionality(W).numpy()
    norms = geometry.feature_norms(W).numpy()
    dpf = geometry.dimensions_per_feature(W).numpy()
    axis = group_axis(run, items)
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    fraction_lines(ax)
    n = cfg.data.n_features
    cmap, colour = FEATURE_CMAP, Normalize(0, max(n - 1, 1))
    rng = np.random.default_rng(0)
    for k in range(len(items)):
        rep = np.flatnonzero(norms[k] >= REPRESENTED)
        if axis.log:
            xs = axis.x[k] * np.exp(rng.uniform(-0.04, 0.04, rep.size))
        else:
            step = float(np.diff(axis.x).min()) if len(axis.x) > 1 else 1.0
            xs = axis.x[k] + rng.uniform(-0.08, 0.08, rep.size) * abs(step)
        ax.scatter(xs, D[k, rep], s=12, alpha=0.6, lw=0, c=cmap(colour(rep)))
    finite = np.where(np.isfinite(dpf), dpf, np.nan)
    order = np.argsort(axis.x)
    ax.plot(axis.x[order], finite[order], "-o", color="k", lw=1, ms=3,
            label="dimensions per feature $m / \\|W\\|_F^2$")
    if axis.log:
        ax.set_xscale("log")
        ax.set_xlim(axis.x.min() / 1.3, axis.x.max() * 1.3)
    if axis.ticks is not None:
        every = max(1, math.ceil(len(axis.ticks) / MAX_GROUPS))
        shown = list(range(0, len(axis.ticks), every))
        ax.set_xticks(shown, [axis.ticks[i] for i in shown], fontsize=7)
        ax.set_xlim(-0.6, len(axis.ticks) - 0.4)
    ax.set_xlabel(axis.label)
    ax.set_ylim(0, max(1.08, float(np.nanmax(finite, initial=0.0)) + 0.05))
    ax.set_ylabel("feature dimensionality $D_i$")
    ax.legend(loc="lower left", fontsize=8)
    # the fractions' names stand right of the axes: the colour bar goes beyond them
    cbar = fig.colorbar(plt.cm.ScalarMappable(norm=colour, cmap=cmap), ax=ax, pad=0.24,
                        fraction=0.03)
    cbar.set_label("feature i", fontsize=8)
    cbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(_wrap(fig, "Feature dimensionality of represented features (||W_i|| >= "
                       f"{REPRESENTED})\n{setting(run)}", 9), fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Introduction: the feature directions of a 2-D model


def polygons(run: Run) -> Figure:
    """For m = 2: each group's best instance as arrows ``W_i`` in the hidden plane (coloured by
    feature index, 0 darkest), the unit circle, and the shape :func:`geometry.classify` names."""
    m = run.config.model.n_hidden
    if m != 2:
        raise ConfigError(
            f"the polygons figure draws models with n_hidden=2 (a plane); this run has n_hidden={m}"
        )
    items, note = panels(run, sep="\n")
    n_cols = _width(len(items))
    n_rows = -(-len(items) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.0 * n_cols + 0.6, 2.3 * n_rows + 0.9),
                             squeeze=False)
    W = run.W[[p.instance for p in items]].detach().cpu().double()
    shapes = geometry.classify(W)
    n = run.config.data.n_features
    colour = Normalize(0, max(n - 1, 1))
    finite = W[torch.isfinite(W)]
    lim = max(1.25, float(finite.abs().max()) * 1.1 if finite.numel() else 1.25)
    for k, p in enumerate(items):
        ax = axes[k // n_cols, k % n_cols]
        _arrows(ax, W[k].numpy(), [FEATURE_CMAP(colour(i)) for i in range(n)], lim)
        ax.set_title(p.label, fontsize=8)
        ax.set_xlabel(shapes[k].label.replace(" + ", "\n+ "), fontsize=7)
    _hide_unused(axes, {(k // n_cols, k % n_cols) for k in range(len(items))})
    fig.suptitle(_wrap(fig, "Feature directions $W_i$ in the hidden plane (feature 0 darkest)\n"
                       + setting(run) + _dense_to_sparse(run), 9), fontsize=9)
    bottom_space = _note(fig, [note, *_untied_note([run])])
    fig.tight_layout(rect=(0, bottom_space, 1, 1))
    return fig


def _arrows(ax: Axes, w: np.ndarray, colours: Sequence[object], lim: float) -> None:
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, lw=0.5, color="0.8"))
    for i, (x, y) in enumerate(w.tolist()):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.annotate(
            "", xy=(x, y), xytext=(0, 0),
            arrowprops={"arrowstyle": "-|>", "color": colours[i], "lw": 1.5, "shrinkA": 0,
                        "shrinkB": 0},
        )
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------------------------------
# training


def loss_curves(run: Run) -> Figure:
    """The training loss over steps (:attr:`Run.history_loss`, on each step's batch), one colour
    per group: every instance as a thin line and each group's best thicker, or only the best ones
    when the run has more than :data:`MAX_LINES` instances. Log scale when every value is > 0."""
    steps = run.history_steps.detach().cpu().numpy()
    loss = run.history_loss.detach().cpu().double().numpy()
    loss = np.where(np.isfinite(loss), loss, np.nan)
    cfg = run.config
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    grouped = run.n_instances == cfg.n_instances
    if grouped:
        labels = group_labels(cfg)
        best = run.best()
        members = [list(range(run.n_instances))[run.group_slice(g)] for g in range(cfg.n_groups)]
    else:
        original = run.info.get("selected_instances", list(range(run.n_instances)))
        labels = [f"instance {original[i]}" for i in range(run.n_instances)]
        best = list(range(run.n_instances))
        members = [[i] for i in best]
    colours = _colours(len(labels))
    every_instance = run.n_instances <= MAX_LINES
    for g, (label, k) in enumerate(zip(labels, best, strict=True)):
        if every_instance:
            for i in members[g]:
                if i != k:
                    ax.plot(steps, loss[:, i], color=colours[g], lw=0.6, alpha=0.45)
        ax.plot(steps, loss[:, k], color=colours[g], lw=1.6,
                label=label if len(labels) <= MAX_GROUPS else None)
    if steps.size == 0:
        ax.text(0.5, 0.5, "no training loss was recorded", transform=ax.transAxes, ha="center")
    elif np.nanmin(loss, initial=np.inf) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (on that step's batch)")
    if len(labels) <= MAX_GROUPS and steps.size:
        ax.legend(fontsize=7, ncol=2 if len(labels) > 6 else 1,
                  title="best instance per group" if grouped else None, title_fontsize=7)
    what = "thin: the other seeds of a group" if every_instance and grouped else ""
    if len(labels) > MAX_GROUPS:
        what = (what + "; " if what else "") + f"{len(labels)} groups, coloured in order"
    if len(labels) > MAX_GROUPS:  # no legend: a colour bar names some groups
        bar = fig.colorbar(
            plt.cm.ScalarMappable(norm=Normalize(0, len(labels) - 1), cmap=_GROUP_CMAP), ax=ax
        )
        ticks = sorted({int(t) for t in np.linspace(0, len(labels) - 1, 6).round()})
        bar.set_ticks(ticks, labels=[labels[t] for t in ticks], fontsize=7)
    ax.set_title(_wrap(fig, f"Training loss, {setting(run)}" + (f"\n{what}" if what else ""), 9),
                 fontsize=9)
    fig.tight_layout()
    return fig


def _colours(k: int) -> list[tuple[float, float, float, float]]:
    if k <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(k)]
    return [_GROUP_CMAP(i / (k - 1)) for i in range(k)]


_GROUP_CMAP = plt.get_cmap("viridis")


RUN_FIGURES: dict[str, Callable[[Run], Figure]] = {
    "gram": gram_and_bias,
    "norms": norm_bars,
    "dimensionality": dimensionality,
    "polygons": polygons,
    "loss": loss_curves,
}
"""The figures :func:`superposition.plots.draw_run` writes, by file name (``polygons`` only when
``n_hidden == 2``)."""
