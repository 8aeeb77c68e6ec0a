"""Figures of any sweep (layer 4): a column of ``results.csv`` as a heatmap over two axes.

:func:`heatmap` draws one numeric column of the table (:meth:`SweepResult.table`: the best seed of
each point) over two axes of the sweep, one cell per pair of values, in the axes' own order (a
``logspace`` axis from 0 to -2 runs from dense to sparse, left to right). The other axes are

- *fixed* at one value each when given in ``fixed={"axis": value}``, and otherwise
- *aggregated* over all their values with ``reduce`` (mean by default; min, max or median),
  ignoring non-finite values; the title says which.

The phase diagram of a sweep over density x relative importance is
:func:`superposition.plots.phase_change.phase_diagrams`, the same function the paper's Section 3
experiment draws with.
"""

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from superposition.errors import ConfigError
from superposition.plots.runs import SIGNED_CMAP
from superposition.sweep.folder import SweepResult, table_columns
from superposition.sweep.grid import Axis

DEFAULT_COLUMNS = ("best_loss", "dimensions_per_feature")
"""The columns :func:`superposition.plots.draw_sweep` draws as ``heatmap-<column>``."""
REDUCTIONS: dict[str, Callable[..., Any]] = {
    "mean": np.nanmean,
    "median": np.nanmedian,
    "min": np.nanmin,
    "max": np.nanmax,
}
"""How an axis that is neither drawn nor fixed is folded away (non-finite values ignored)."""
MAX_TICKS = 12
"""Tick labels per heatmap axis at most (every k-th value is labelled beyond)."""
ANNOTATE_CELLS = 100
"""Heatmaps with at most this many cells print each cell's value."""
SEQUENTIAL_CMAP = "viridis"
"""Colour map of a column that does not change sign (signed ones use red/blue, symmetric)."""


def default_axes(result: SweepResult) -> tuple[str, str | None]:
    """The first two axes with more than one value (x, then y); y is None when there is only
    one such axis, and x is the first axis when none varies."""
    varying = [a.field for a in result.sweep.axes if len(a.values) > 1]
    if not varying:
        return result.sweep.names[0], None
    return varying[0], (varying[1] if len(varying) > 1 else None)


def heatmap(
    result: SweepResult,
    column: str = "best_loss",
    *,
    x: str | None = None,
    y: str | None = None,
    fixed: Mapping[str, Any] | None = None,
    reduce: str = "mean",
) -> Figure:
    """``column`` of the table over axes ``x`` (columns) and ``y`` (rows) of the sweep.

    Defaults: :func:`default_axes`. ``y=None`` with a sweep of one varying axis draws one row.
    ``fixed`` picks one value of other axes; the remaining axes are folded with ``reduce`` (one of
    :data:`REDUCTIONS`). Colours: red/blue around 0 for a column that changes sign, otherwise
    viridis (on a log scale when the values are all > 0 and span a factor of 30 or more);
    non-finite cells are grey.
    """
    if not isinstance(result, SweepResult):
        raise ConfigError(f"heatmap draws a SweepResult, got {type(result).__name__}")
    sweep = result.sweep
    if x is None and y is None:
        x, y = default_axes(result)
    elif x is None:
        raise ConfigError("give x too when y is given")
    fixed = dict(fixed or {})
    _check_axes(result, column, x, y, fixed, reduce)
    drawn = [x] if y is None else [y, x]

    values = result.grid(column).astype(float)  # numeric: checked above
    names = list(sweep.names)
    for name, value in fixed.items():  # pick the fixed values, axis by axis
        k = names.index(name)
        values = np.take(values, _position(sweep.axes[sweep.names.index(name)], value), axis=k)
        names.pop(k)
    folded = [n for n in names if n not in drawn]
    values = np.moveaxis(values, [names.index(n) for n in drawn], range(-len(drawn), 0))
    if folded:
        finite = np.where(np.isfinite(values), values, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice folds to NaN
            values = REDUCTIONS[reduce](finite.reshape(-1, *values.shape[-len(drawn):]), axis=0)
    data = values.reshape(1, -1) if y is None else values

    axis_of = {a.field: a for a in sweep.axes}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * data.shape[1] + 3.2),
                                    max(3.2, 0.35 * data.shape[0] + 2.4)))
    masked = np.ma.masked_invalid(data)
    cmap, norm = _colours(masked)
    im = ax.imshow(masked, cmap=cmap, norm=norm, origin="lower", aspect="auto",
                   interpolation="nearest")
    _ticks(ax.set_xticks, axis_of[x])
    ax.set_xlabel(x)
    if y is None:
        ax.set_yticks([])
    else:
        _ticks(ax.set_yticks, axis_of[y])
        ax.set_ylabel(y)
    if data.size <= ANNOTATE_CELLS:
        _annotate(ax, data, im)
    fig.colorbar(im, ax=ax).set_label(column)
    about = [f"{n} = {axis_of[n].label(v)}" for n, v in fixed.items()]
    about += [
        f"{reduce} over {n} ({len(axis_of[n].values)} values)"
        for n in folded if len(axis_of[n].values) > 1
    ]
    seeds = sweep.base.train.instances
    if seeds == 1:
        per_point = "one seed per point"
    elif column == "mean_loss":
        per_point = f"mean over {seeds} seeds per point"
    else:
        per_point = f"the best of {seeds} seeds per point (lowest held-out loss)"
    lines = [f"{column}: {per_point}"]
    if about:
        lines.append("; ".join(about))
    if not np.isfinite(data).all():
        lines.append("grey: not finite")
    ax.set_title("\n".join(lines), fontsize=9)
    fig.tight_layout()
    return fig


def _check_axes(
    result: SweepResult, column: str, x: str, y: str | None, fixed: dict[str, Any], reduce: str
) -> None:
    names = result.sweep.names
    for what, name in (("x", x), ("y", y), *(("fixed", n) for n in fixed)):
        if name is not None and name not in names:
            raise ConfigError(f"{what}={name!r} is not an axis of this sweep; axes: "
                              f"{', '.join(names)}")
    if x == y:
        raise ConfigError(f"x and y are both {x!r}; give two different axes")
    clash = [n for n in fixed if n in (x, y)]
    if clash:
        raise ConfigError(f"{clash[0]!r} is drawn, so it cannot be fixed too")
    if reduce not in REDUCTIONS:
        raise ConfigError(f"reduce={reduce!r} is not known; use one of {', '.join(REDUCTIONS)}")
    columns = table_columns(result.sweep)
    if column not in columns:
        raise ConfigError(f"no column {column!r} in the table; columns: {', '.join(columns)}")
    if result.grid(column).dtype == object:
        raise ConfigError(f"column {column!r} is not numeric; a heatmap draws numbers")


def _position(axis: Axis, value: Any) -> int:
    for j, v in enumerate(axis.values):
        if v == value or (
            isinstance(v, int | float) and isinstance(value, int | float)
            and math.isclose(v, value, rel_tol=1e-9)
        ):
            return j
    shown = ", ".join(axis.label(v) for v in axis.values[:8])
    raise ConfigError(f"{axis.field}={value!r} is not on the axis (values: {shown}"
                      f"{' ...' if len(axis.values) > 8 else ''})")


def _colours(data: np.ma.MaskedArray) -> tuple[Any, Normalize]:
    cmap_name: Any = SEQUENTIAL_CMAP
    finite = data.compressed()
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    if lo < 0 < hi:
        top = max(-lo, hi)
        cmap_name, norm = SIGNED_CMAP, Normalize(-top, top)
    elif lo > 0 and hi / lo >= 30:
        norm = LogNorm(lo, hi)
    else:
        norm = Normalize(lo, hi if hi > lo else lo + 1)
    return plt.get_cmap(cmap_name).with_extremes(bad="0.8"), norm


def _ticks(setter: Callable[..., Any], axis: Axis) -> None:
    labels = [_short(axis, v) for v in axis.values]
    every = max(1, math.ceil(len(labels) / MAX_TICKS))
    shown = list(range(0, len(labels), every))
    setter(shown, [labels[i] for i in shown], fontsize=8)


def _short(axis: Axis, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return axis.label(value)


def _annotate(ax: Any, data: np.ndarray, im: Any) -> None:
    for (r, c), v in np.ndenumerate(data):
        if not math.isfinite(v):
            continue
        rgba = im.cmap(im.norm(v))
        dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
        ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=6,
                color="white" if dark else "black")
