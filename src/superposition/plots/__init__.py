"""Figures: one function per figure, records in, figure out (layer 4).

Static figures use matplotlib, interactive ones plotly. Importing a figure module imports its
plotting library; ``import superposition`` never does. Without a display (a server, CI), matplotlib
is switched to its file-only Agg backend here, once, unless a notebook's inline backend is in use.

Any run or sweep: :mod:`superposition.plots.runs` and :mod:`superposition.plots.sweeps` hold the
figures, :func:`draw_run`, :func:`draw_sweep` and :func:`draw` write them as files
(:mod:`superposition.plots.files` lists the names). The paper's experiments have one module each
(``superposition.plots.intro`` ...), which call the same functions where a figure is generic.
"""

import os

import matplotlib

if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower():
    matplotlib.use("Agg")

from superposition.plots.files import draw, draw_run, draw_sweep  # noqa: E402 (after the backend)

__all__ = ["draw", "draw_run", "draw_sweep"]
