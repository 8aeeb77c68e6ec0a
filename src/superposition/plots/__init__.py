"""Figures: one function per figure, records in, figure out (layer 4).

Static figures use matplotlib, interactive ones plotly. Importing a figure module imports its
plotting library; ``import superposition`` never does. Without a display (a server, CI), matplotlib
is switched to its file-only Agg backend here, once, unless a notebook's inline backend is in use.
"""

import os

import matplotlib

if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower():
    matplotlib.use("Agg")
