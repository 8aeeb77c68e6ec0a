"""Figures of :mod:`superposition.exercises` (layer 4): records in, figure out."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def packing_counts(records: Sequence[Mapping[str, Any]]) -> Figure:
    """How many unit vectors with pairwise ``|cos| <= eps`` were found in R^d, against d, beside
    the Welch upper bound and the random lower bound. ``records`` are
    :meth:`superposition.exercises.Packing.as_dict` rows (one eps; several d)."""
    rows = sorted(records, key=lambda r: r["d"])
    if not rows:
        raise ValueError("packing_counts needs at least one record")
    d = [r["d"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    ax.plot(d, [r["count"] for r in rows], "o-", label="found by optimisation")
    welch = [r["welch"] if math.isfinite(r["welch"]) else math.nan for r in rows]
    ax.plot(d, welch, "--", color="0.3", label="Welch upper bound")
    ax.plot(
        d, [r["random"] for r in rows], ":", color="0.3", label="random (union bound) lower bound"
    )
    ax.plot(d, d, "-", color="0.8", lw=1, label="d (an orthonormal basis)")
    eps = sorted({r["eps"] for r in rows})
    ax.set_xlabel("dimension d")
    ax.set_ylabel("unit vectors with every |cos| <= eps")
    ax.set_title("almost-orthogonal vectors, eps = " + ", ".join(f"{e:g}" for e in eps), fontsize=9)
    ax.legend(fontsize=8)
    return fig
