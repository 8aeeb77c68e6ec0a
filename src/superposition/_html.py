"""Small, self-contained HTML for Jupyter: tables and inline SVG figures, built as strings.

The records' ``_repr_html_`` methods (:class:`superposition.results.Run`, the geometry summary,
:class:`superposition.sweep.SweepResult`) draw themselves with these helpers. They sit in layer 0
and need only numpy and the standard library, so showing a record never imports a plotting
library. Every piece of text goes through :func:`html.escape`; the output has no scripts, no
links and no external resources, and stays small (colour cells are merged into one SVG path per
colour, and callers cap how many rows and cells they draw).
"""

import html
import math
from collections.abc import Sequence

import numpy as np

from superposition.colours import DIVERGING

Number = float | int
"""Coordinates and values: an int is as good as a float here."""

MAX_ROWS = 10
"""Rows a record's table shows before it says how many more there are."""

FONT = 'font-family="sans-serif" font-size="10"'

PALETTE = (
    "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3",
    "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd",
)
"""Colours of categories (geometry labels), in order of first appearance; more wrap around."""


def esc(value: object) -> str:
    """Text safe inside an element or an attribute."""
    return html.escape(str(value), quote=True)


def number(value: object, digits: int = 4) -> str:
    """A value as short text: integers plainly, floats to ``digits`` significant digits, None as
    a dash, anything else with ``str``."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(value)


# --------------------------------------------------------------------------------------------------
# text and tables


def heading(text: str) -> str:
    return f'<div style="font-weight:bold;margin:4px 0">{esc(text)}</div>'


def note(text: str) -> str:
    return f'<div style="color:#666;font-size:90%;margin:2px 0">{esc(text)}</div>'


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    more: int = 0,
    what: str = "rows",
) -> str:
    """A table; numbers go through :func:`number`. ``more`` > 0 adds a last line saying how many
    ``what`` were left out."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(number(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    if more > 0:
        body += (
            f'<tr><td colspan="{len(header)}" style="text-align:left;color:#666">'
            f"… {more} more {esc(what)}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def side_by_side(*parts: str) -> str:
    """Blocks laid out in a row that wraps on narrow screens."""
    inner = "".join(f"<div>{p}</div>" for p in parts if p)
    return (
        '<div style="display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start">'
        f"{inner}</div>"
    )


# --------------------------------------------------------------------------------------------------
# colours


def _hex(rgb: np.ndarray) -> str:
    r, g, b = (int(round(float(c))) for c in np.clip(rgb, 0, 255))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ramp(stops: Sequence[str], t: Number) -> str:
    """Linear interpolation between colour stops, ``t`` in [0, 1] (clipped)."""
    rgb = np.array([[int(s[i : i + 2], 16) for i in (1, 3, 5)] for s in stops], dtype=float)
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    k = min(int(t), len(stops) - 2)
    return _hex(rgb[k] + (t - k) * (rgb[k + 1] - rgb[k]))


LEVELS = 10
"""Colour steps per half of a scale: few distinct colours keep the merged SVG paths few."""


def diverging(value: Number, limit: Number) -> str:
    """Blue (``-limit``) through white (0) to red (``+limit``), in :data:`LEVELS` steps a side."""
    if not math.isfinite(value):
        return "#999999"
    t = round(value / limit * LEVELS) / LEVELS if limit > 0 else 0.0
    return _ramp(DIVERGING, (t + 1) / 2)


def sequential(value: Number, low: Number, high: Number) -> str:
    """Dark (``low``) to yellow (``high``), in :data:`LEVELS` steps; the superposition scale of
    the paper's Section 2 figure (black = none, yellow = much)."""
    if not math.isfinite(value):
        return "#999999"
    t = (value - low) / (high - low) if high > low else 0.0
    return _ramp(("#1a1a1a", "#b5452f", "#f5c242"), round(t * LEVELS) / LEVELS)


def category_colours(labels: Sequence[str]) -> dict[str, str]:
    """One :data:`PALETTE` colour per distinct label, in order of first appearance."""
    out: dict[str, str] = {}
    for label in labels:
        if label not in out:
            out[label] = PALETTE[len(out) % len(PALETTE)]
    return out


# --------------------------------------------------------------------------------------------------
# SVG pieces


def svg(width: Number, height: Number, body: str, title: str) -> str:
    """An inline SVG element (no namespace attribute needed inside HTML) with an accessible
    title."""
    w, h = math.ceil(width), math.ceil(height)
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" {FONT}>'
        f"<title>{esc(title)}</title>{body}</svg>"
    )


def text(x: Number, y: Number, content: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}"{extra}>{esc(content)}</text>'


def cells(colours: np.ndarray, x0: Number, y0: Number, size: Number) -> str:
    """A grid of square cells, ``colours[row, col]`` a colour string or "" for none: one path per
    colour, runs of equal colour along a row merged into one rectangle."""
    runs: dict[str, list[str]] = {}
    rows, cols = colours.shape
    for r in range(rows):
        c = 0
        while c < cols:
            colour = str(colours[r, c])
            end = c + 1
            while end < cols and str(colours[r, end]) == colour:
                end += 1
            if colour:
                x, y, w = x0 + c * size, y0 + r * size, (end - c) * size
                runs.setdefault(colour, []).append(f"M{x:g} {y:g}h{w:g}v{size:g}h{-w:g}z")
            c = end
    return "".join(f'<path fill="{esc(k)}" d="{"".join(v)}"/>' for k, v in runs.items())


def legend(colours: dict[str, str], x: Number, y: Number, row: Number = 13) -> tuple[str, Number]:
    """Swatches with their labels, one per line (at most :data:`MAX_ROWS`, then a count of the
    rest); returns the SVG and the height used."""
    shown = list(colours.items())[:MAX_ROWS]
    parts = []
    for i, (label, colour) in enumerate(shown):
        top = y + i * row
        parts.append(f'<rect x="{x:g}" y="{top:g}" width="9" height="9" fill="{esc(colour)}"/>')
        parts.append(text(x + 13, top + 8.5, label))
    lines = len(shown)
    if len(colours) > len(shown):
        parts.append(text(x, y + lines * row + 8.5, f"… {len(colours) - len(shown)} more"))
        lines += 1
    return "".join(parts), lines * row


# --------------------------------------------------------------------------------------------------
# figures


def heatmaps(
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    title: str,
    size: int = 88,
) -> str:
    """Square matrices side by side on one symmetric blue-white-red scale (e.g. ``W W^T``), each
    about ``size`` pixels wide (whole pixels per cell, at least 2)."""
    if not panels:
        return ""
    limit = max(1.0, *(float(np.nanmax(np.abs(p))) if p.size else 0.0 for p in panels))
    gap, top = 10, 14
    parts, x0 = [], 0
    for p, name in zip(panels, titles, strict=True):
        n = max(p.shape[0], 1)
        cell = max(2, size // n)
        grid = np.array([[diverging(float(v), limit) for v in row] for row in p], dtype=object)
        parts.append(cells(grid.reshape(p.shape), x0, top, cell))
        parts.append(text(x0 + n * cell / 2, 10, name, "middle"))
        x0 += n * cell + gap
    height = top + max(max(p.shape[0], 1) * max(2, size // max(p.shape[0], 1)) for p in panels)
    parts.append(text(0, height + 12, f"blue −{limit:.2g} · white 0 · red +{limit:.2g}"))
    return svg(max(x0 - gap, 150), height + 16, "".join(parts), title)


def bars(
    lengths: np.ndarray,
    shades: np.ndarray,
    *,
    title: str,
    heading_text: str = "",
    shade_max: Number = 1.0,
    width: Number = 150,
) -> str:
    """Horizontal bars, one per row (row 0 on top), lengths on a scale whose end is at least 1
    (a dotted line marks 1); each bar's colour follows ``shades`` on the :func:`sequential`
    scale from 0 to ``shade_max``."""
    n = len(lengths)
    row = 12 if n <= 12 else 6 if n <= 32 else 3
    left, top = 22, 14 if heading_text else 2
    finite = [float(v) for v in lengths if math.isfinite(float(v))]
    end = max(1.0, *finite) if finite else 1.0
    scale = (width - left - 4) / end
    parts = [text(0, 10, heading_text)] if heading_text else []
    for i in range(n):
        v = float(lengths[i])
        w = v * scale if math.isfinite(v) and v > 0 else 0.0
        y = top + i * row
        colour = sequential(float(shades[i]), 0.0, shade_max)
        parts.append(
            f'<rect x="{left}" y="{y:g}" width="{w:.1f}" height="{row - 1:g}" fill="{colour}"/>'
        )
        if row >= 12 or i % 8 == 0:
            parts.append(text(left - 3, y + row - 2.5, str(i), "end"))
    x1 = left + scale
    bottom = top + n * row
    parts.append(
        f'<line x1="{x1:.1f}" y1="{top}" x2="{x1:.1f}" y2="{bottom}" stroke="#888" '
        'stroke-dasharray="2,2"/>'
    )
    parts.append(text(x1, bottom + 11, "1", "middle"))
    return svg(width, bottom + 14, "".join(parts), title)


def category_grid(
    labels: np.ndarray,
    *,
    x_name: str,
    x_ends: tuple[str, str],
    y_name: str,
    y_ends: tuple[str, str],
    title: str,
    size: Number = 120,
) -> str:
    """A grid of categories (``labels[col, row]``: first index along x, second along y, y growing
    upwards), coloured by label, with a legend; axis ends written at the corners."""
    nx, ny = labels.shape
    cell = size / max(nx, ny)
    colours = category_colours([str(v) for v in labels.ravel()])
    grid = np.array(
        [[colours[str(labels[i, j])] for i in range(nx)] for j in reversed(range(ny))],
        dtype=object,
    ).reshape(ny, nx)
    left, top = 40, 4
    h = ny * cell
    parts = [cells(grid, left, top, cell)]
    parts.append(text(left, top + h + 11, x_ends[0]))
    parts.append(text(left + nx * cell, top + h + 11, x_ends[1], "end"))
    parts.append(text(left + nx * cell / 2, top + h + 23, x_name, "middle"))
    parts.append(text(left - 3, top + h, y_ends[0], "end"))
    parts.append(text(left - 3, top + 8, y_ends[1], "end"))
    parts.append(
        text(10, top + h / 2, y_name, "middle", f' transform="rotate(-90 10 {top + h / 2:g})"')
    )
    key, key_h = legend(colours, left, top + h + 32)
    width = max(left + nx * cell, left + 14 + 6.5 * max(len(k) for k in colours))
    return svg(width, top + h + 34 + key_h, "".join(parts) + key, title)


def line(
    x: np.ndarray,
    y: np.ndarray,
    categories: Sequence[str],
    *,
    x_name: str,
    y_name: str,
    title: str,
    width: Number = 240,
    height: Number = 120,
) -> str:
    """``y`` against ``x`` as a line with points coloured by category (and a legend); an axis is
    logarithmic when its values are positive and span more than a factor of 20."""

    def scaled(v: np.ndarray) -> tuple[np.ndarray, bool]:
        finite = v[np.isfinite(v)]
        log = finite.size > 1 and bool(finite.min() > 0 and finite.max() / finite.min() > 20)
        return (np.log10(np.where(v > 0, v, np.nan)) if log else v), log

    xs, log_x = scaled(np.asarray(x, dtype=float))
    ys, log_y = scaled(np.asarray(y, dtype=float))
    left, top, plot_w, plot_h = 46, 6, width - 56, height - 34

    def span(v: np.ndarray) -> tuple[float, float]:
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = float(finite.min()), float(finite.max())
        return (lo - 0.5, hi + 0.5) if hi == lo else (lo, hi)

    (x_lo, x_hi), (y_lo, y_hi) = span(xs), span(ys)
    px = left + (xs - x_lo) / (x_hi - x_lo) * plot_w
    py = top + plot_h - (ys - y_lo) / (y_hi - y_lo) * plot_h
    ok = np.isfinite(px) & np.isfinite(py)
    colours = category_colours(list(categories))
    parts = [
        f'<rect x="{left}" y="{top}" width="{plot_w:g}" height="{plot_h:g}" fill="none" '
        'stroke="#ccc"/>'
    ]
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px[ok], py[ok], strict=True))
    if points:
        parts.append(f'<polyline points="{points}" fill="none" stroke="#999"/>')
    for a, b, c, good in zip(px, py, categories, ok, strict=True):
        if good:
            parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colours[c]}"/>')

    def tick(v: float, log: bool) -> str:
        return number(10**v if log else v, 3)

    bottom = top + plot_h
    parts.append(text(left, bottom + 11, tick(x_lo, log_x)))
    parts.append(text(left + plot_w, bottom + 11, tick(x_hi, log_x), "end"))
    x_title = x_name + (" (log)" if log_x else "")
    y_title = y_name + (" (log)" if log_y else "")
    mid = top + plot_h / 2
    parts.append(text(left + plot_w / 2, bottom + 23, x_title, "middle"))
    parts.append(text(left - 3, bottom, tick(y_lo, log_y), "end"))
    parts.append(text(left - 3, top + 8, tick(y_hi, log_y), "end"))
    parts.append(text(10, mid, y_title, "middle", f' transform="rotate(-90 10 {mid:g})"'))
    key, key_h = legend(colours, left, bottom + 32)
    return svg(width, bottom + 34 + key_h, "".join(parts) + key, title)
