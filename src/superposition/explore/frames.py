"""What the page draws, as plain JSON-ready numbers: one instance's W turned into its figures.

The page's three figures are the Gram matrix ``W W^T`` (the paper's ``W^T W``), the feature
geometry (for two hidden dimensions each feature's direction in the plane; otherwise each
feature's norm and superposition) and the training loss. Values are rounded to four significant
digits: the page polls several times a second and needs no more.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch

from superposition import geometry
from superposition._types import Float, Tensor

MAX_LOSS_POINTS = 500
"""Loss points per instance sent to the page (a longer history is thinned, keeping the last)."""


def rounded(value: float) -> float | None:
    """Four significant digits; non-finite values (a diverged model) become null in JSON."""
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _rows(t: torch.Tensor) -> list[Any]:
    return [[rounded(x) for x in row] for row in t.tolist()]


def frame(W: Float[Tensor, "feat hidden"]) -> dict[str, Any]:
    """The Gram matrix, norms, superposition and dimensionality of one instance's ``W``, and the
    directions themselves when there are two hidden dimensions."""
    W = W.detach().to("cpu", torch.float32)
    batch = W[None]
    out: dict[str, Any] = {
        "n_features": W.shape[0],
        "n_hidden": W.shape[1],
        "gram": _rows(geometry.gram(batch)[0]),
        "norms": [rounded(x) for x in geometry.feature_norms(batch)[0].tolist()],
        "superposition": [rounded(x) for x in geometry.superposition(batch)[0].tolist()],
        "dimensionality": [rounded(x) for x in geometry.feature_dimensionality(batch)[0].tolist()],
    }
    if W.shape[1] == 2:
        out["directions"] = _rows(W)
    return out


def loss_series(steps: Sequence[int], losses: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The loss history as one series per instance (``losses`` is [log step][instance]), thinned
    to at most :data:`MAX_LOSS_POINTS` points."""
    keep = list(range(len(steps)))
    if len(keep) > MAX_LOSS_POINTS:
        stride = math.ceil(len(keep) / MAX_LOSS_POINTS)
        keep = keep[::stride]
        if keep[-1] != len(steps) - 1:
            keep.append(len(steps) - 1)
    n_inst = len(losses[0]) if losses else 0
    return {
        "steps": [steps[i] for i in keep],
        "instances": [[rounded(losses[i][k]) for i in keep] for k in range(n_inst)],
    }


def geometry_label(W: Float[Tensor, "feat hidden"]) -> str:
    """The shape classifier's name for one instance's geometry, e.g. "pentagon"."""
    if not bool(torch.isfinite(W).all()):
        return "diverged (weights not finite)"
    return geometry.classify(W.detach().to("cpu", torch.float32)[None])[0].label
