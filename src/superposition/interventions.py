"""Interventions on a toy model's hidden layer: ablate or steer one feature, and measure how much
every other feature's output moves (layer 1: pure functions, no plotting).

Feature i is written into the hidden space along its row ``W_i`` (the paper's column W_i,
Elhage et al. 2022, Section 2). Two edits of a hidden activation ``h``:

- **ablation** projects that direction out, ``h' = h - (h . u_i) u_i`` with ``u_i = W_i / ||W_i||``;
- **steering** adds a multiple of it, ``h' = h + alpha W_i`` (what raising ``x_i`` by ``alpha``
  would add before any hidden non-linearity).

When features are orthogonal, neither edit reaches another feature's read-out
(``W_j . u_i = 0``), so only feature i's output moves. In superposition the directions overlap
and every feature that interferes with i moves too. :func:`collateral_change` measures that: the
mean absolute change of the *other* features' outputs per unit of change of feature i's own.
"""

import math
from collections.abc import Callable

import torch

from superposition._types import Float, Tensor
from superposition.errors import ConfigError
from superposition.geometry import EPS
from superposition.models import ToyModel

Edit = Callable[[Tensor], Tensor]
"""An edit of a hidden activation ``[inst, batch, hidden]`` (e.g. ``lambda h: ablate_feature(h,
W, 3)``)."""


def check_feature(feature: object, n_features: int) -> int:
    """``feature`` as an index into ``n_features`` features; anything else is refused."""
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < n_features:
        raise ConfigError(
            f"feature must be an integer in [0, {n_features - 1}] (the model has {n_features} "
            f"features), got {feature!r}"
        )
    return feature


def feature_direction(
    W: Float[Tensor, "inst feat hidden"], feature: int
) -> Float[Tensor, "inst hidden"]:
    """The unit direction ``u_i = W_i / ||W_i||`` of feature i in each instance (zero where the
    feature is not represented, ``||W_i|| < EPS``)."""
    i = check_feature(feature, W.shape[1])
    row = W[:, i]
    norm = torch.linalg.vector_norm(row, dim=-1, keepdim=True)
    live = norm > EPS
    return torch.where(live, row / torch.where(live, norm, torch.ones_like(norm)), 0.0)


def ablate_feature(
    h: Float[Tensor, "inst batch hidden"], W: Float[Tensor, "inst feat hidden"], feature: int
) -> Float[Tensor, "inst batch hidden"]:
    """``h - (h . u_i) u_i``: the hidden activation with feature i's direction projected out (an
    unrepresented feature has no direction, and ``h`` is returned unchanged)."""
    u = feature_direction(W, feature)
    along = torch.einsum("kbh,kh->kb", h, u)
    return h - along[..., None] * u[:, None, :]


def steer_feature(
    h: Float[Tensor, "inst batch hidden"],
    W: Float[Tensor, "inst feat hidden"],
    feature: int,
    alpha: float,
) -> Float[Tensor, "inst batch hidden"]:
    """``h + alpha W_i``: the hidden activation pushed along feature i's row."""
    i = check_feature(feature, W.shape[1])
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise ConfigError(f"alpha must be a finite number, got {alpha!r}")
    return h + alpha * W[:, None, i]


def output_change(
    model: ToyModel, x: Float[Tensor, "inst batch feat"], edit: Edit
) -> Float[Tensor, "inst batch feat"]:
    """How much every output moves when the hidden activation of ``x`` is edited:
    ``model.output(edit(h)) - model.output(h)`` with ``h = model.hidden(x)``."""
    h = model.hidden(x)
    return model.output(edit(h)) - model.output(h)


def readout_change(
    model: ToyModel, x: Float[Tensor, "inst batch feat"], edit: Edit
) -> Float[Tensor, "inst batch feat"]:
    """How much every output's pre-activation (the read-out ``W_dec h`` before the output
    non-linearity) moves when the hidden activation of ``x`` is edited: the interference itself,
    before an output ReLU can hide it."""
    h = model.hidden(x)
    return torch.bmm(edit(h) - h, model.decoder.transpose(1, 2))


def collateral_change(
    delta: Float[Tensor, "inst batch feat"], feature: int
) -> Float[Tensor, " inst"]:
    """Collateral change of an intervention on feature i, per instance:

    ``mean over samples and features j != i of |delta_j|  /  mean over samples of |delta_i|``,

    the other features' mean absolute output change per unit of the intended one. 0 when only
    feature i moves; NaN where feature i's own output did not move (nothing to compare with).
    """
    n = delta.shape[-1]
    i = check_feature(feature, n)
    if n < 2:
        raise ConfigError(f"collateral change needs at least 2 features, got {n}")
    size = delta.abs()
    own = size[..., i].mean(-1)
    others = (size.sum(-1) - size[..., i]).mean(-1) / (n - 1)
    safe = torch.where(own > 0, own, torch.ones_like(own))
    return torch.where(own > 0, others / safe, torch.full_like(own, math.nan))
