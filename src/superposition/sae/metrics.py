"""Scores of SAEs against the ground truth a toy model provides (pure functions, batched on inst).

The *true* directions of toy instance k are the rows ``W[k, i]`` of its embedding: feature i is
written into hidden space along ``W[k, i]``. For the ``privileged`` and ``abs`` models the SAE reads
the hidden layer *after* its ReLU, and the encoder rows are still taken as the true directions (a
lone feature i with x_i > 0 gives h = ReLU(x_i W_i), which is W_i's direction where it is
non-negative). Only *represented* features count for the recovery scores: those with
``||W_i|| > 0.5`` (the threshold of :func:`superposition.geometry.summary`), since a feature the toy
model dropped leaves nothing in its activations to recover.

- max cosine similarity (per true feature): the best cosine between its direction and any decoder
  row; the mean of it over represented features is the MMCS of Sharkey et al. 2022. The cosine is
  signed: a decoder row pointing away from a feature cannot reconstruct it with f >= 0.
- recovered fraction: represented features whose max cosine exceeds a threshold.
- L0, dead latents (never fire on the evaluation samples), dense latents (fire on more than a given
  fraction), reconstruction MSE and the fraction of variance unexplained (FVU: squared error over
  the total variance of h around its mean), and the toy model's loss when its hidden activations
  are replaced by the SAE's reconstruction ("spliced", next to the toy model's own loss).
"""

import torch

from superposition._types import Bool, Float, Tensor
from superposition.losses import MEAN_SQUARED_ERROR
from superposition.models import OUTPUT_RELU, ToyModel

REPRESENTED_NORM = 0.5
"""A true feature with ``||W_i||`` above this is represented and counts for recovery."""


def max_cosine(
    decoder: Float[Tensor, "inst latent hidden"],
    true: Float[Tensor, "inst feat hidden"],
    mask: Bool[Tensor, "inst latent"] | None = None,
) -> Float[Tensor, "inst feat"]:
    """For each true direction, the largest cosine similarity with any (unmasked) decoder row."""
    d_hat = decoder / decoder.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t_hat = true / true.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = t_hat @ d_hat.transpose(1, 2)  # [inst, feat, latent]
    if mask is not None:
        cos = cos.masked_fill(~mask[:, None, :], -torch.inf)
    return cos.max(dim=-1).values.clamp(-1.0, 1.0)


def represented(
    true: Float[Tensor, "inst feat hidden"], threshold: float = REPRESENTED_NORM
) -> Bool[Tensor, "inst feat"]:
    return true.norm(dim=-1) > threshold


def mmcs(
    max_cos: Float[Tensor, "inst feat"], counted: Bool[Tensor, "inst feat"]
) -> Float[Tensor, " inst"]:
    """Mean max cosine similarity over the counted (represented) features; NaN when none is."""
    total = (max_cos * counted).sum(-1)
    return total / counted.sum(-1)


def recovered_fraction(
    max_cos: Float[Tensor, "inst feat"], counted: Bool[Tensor, "inst feat"], threshold: float
) -> Float[Tensor, " inst"]:
    """Fraction of the counted features whose max cosine is above ``threshold``."""
    hits = ((max_cos > threshold) & counted).sum(-1)
    return hits / counted.sum(-1)


def toy_output_from_hidden(
    toy: ToyModel, h: Float[Tensor, "inst batch hidden"]
) -> Float[Tensor, "inst batch feat"]:
    """The toy model's output computed from a given hidden activation (its second layer)."""
    out = torch.baddbmm(toy.b[:, None, :], h, toy.decoder.transpose(1, 2))
    return torch.relu(out) if OUTPUT_RELU[toy.kind] else out


def spliced_loss(
    toy: ToyModel,
    x: Float[Tensor, "inst batch feat"],
    h: Float[Tensor, "inst batch hidden"],
    importance: Float[Tensor, "inst feat"],
) -> Float[Tensor, " inst"]:
    """The toy model's loss (same reduction as :meth:`ToyModel.loss`) when its hidden activation
    is replaced by ``h``, e.g. an SAE's reconstruction."""
    return MEAN_SQUARED_ERROR.value(toy_output_from_hidden(toy, h), toy.target(x), importance)


def fraction_of_variance_unexplained(
    h: Float[Tensor, "inst batch hidden"], h_hat: Float[Tensor, "inst batch hidden"]
) -> Float[Tensor, " inst"]:
    """Squared error over the total variance of ``h`` about its mean (0 = perfect)."""
    err = (h_hat - h).square().sum(dim=(1, 2))
    var = (h - h.mean(dim=1, keepdim=True)).square().sum(dim=(1, 2))
    return err / var.clamp_min(1e-30)
