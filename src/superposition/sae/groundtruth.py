"""Scores of SAEs against the known features of a synthetic model (layer 1, maths).

The latents of each SAE instance are first *matched* to the ground-truth features: a one-to-one
assignment that maximises the summed cosine similarity between decoder rows and feature
directions (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``; a dictionary
narrower than the feature count matches every latent, a wider one every feature). Then, as in
SynthSAEBench (Chanin and Garriga-Alonso 2026, Section 4):

- **MCC**: the mean cosine similarity over the matched pairs (mean correlation coefficient of the
  matched directions; 1 = every latent is exactly a feature).
- **precision / recall / F1** per matched latent: the latent's firing (``f_j > 0``) against its
  feature's firing (``x_i > 0``) over evaluation samples; precision = P(feature | latent),
  recall = P(latent | feature). The scores are means over the matched latents (a dead latent
  scores 0).
- **uniqueness**: the number of distinct features that are some live latent's nearest feature
  (argmax cosine), over the number of live latents: below 1 when latents duplicate a feature.
- **explained variance** (1 - FVU), **L0** (mean active latents), **dead** latents (never fire on
  the evaluation samples) and **shrinkage**, ``sum ||h_hat - b_dec|| / sum ||h - b_dec||`` over
  the samples (1 = none; an L1 penalty pulls it below 1).
- **absorption** (Chanin et al. 2024, *A is for Absorption*, Section 4): over the parent-child
  pairs of the hierarchy whose two features are matched, the share of the child's occurrences
  on which the parent's latent stays silent while the child's latent fires with a decoder row
  that carries the parent direction (cosine with it above :data:`ABSORPTION_COSINE`).
- **hedging** (Chanin et al. 2025, *Feature Hedging*): for a dictionary narrower than the feature
  count, the mean over matched parents of ``sum_c max(cos(W_dec[parent latent], D_c), 0)^2``
  over the parent's children c: how much of the parent latent's direction leans towards its
  children. A random unit vector scores about (number of children) / (2 n_hidden).
"""

import numpy as np
import torch

from superposition._types import Bool, Float, Int, Tensor
from superposition.errors import ConfigError, install_hint

ABSORPTION_COSINE = 0.2
"""A child latent "carries the parent direction" when its decoder row's cosine with the parent
feature is above this (fixed before any benchmark was run)."""


def cosines(
    decoder: Float[Tensor, "inst latent hidden"], directions: Float[Tensor, "feat hidden"]
) -> Float[Tensor, "inst latent feat"]:
    """Cosine similarity of every decoder row with every feature direction."""
    d_hat = decoder / decoder.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t_hat = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return d_hat @ t_hat.T


def hungarian(cos: Float[Tensor, "latent feat"]) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matching of latents to features with the largest summed cosine: the
    matched latent indices and their features."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # pragma: no cover - scipy is in the sae extra
        raise ConfigError(
            f"matching latents to features needs scipy; {install_hint('sae')}"
        ) from None
    rows, cols = linear_sum_assignment(cos.double().cpu().numpy(), maximize=True)
    return rows, cols


def match(
    cos: Float[Tensor, "latent feat"], live: Bool[Tensor, " latent"]
) -> tuple[Int[Tensor, " latent"], float]:
    """One instance: every latent's matched feature (-1: unmatched or masked) and the MCC."""
    feature = torch.full(live.shape, -1, dtype=torch.long)
    index = torch.nonzero(live.cpu()).squeeze(-1)
    sub = cos[index.to(cos.device)]
    rows, cols = hungarian(sub)
    feature[index[rows]] = torch.from_numpy(cols).long()
    return feature.to(cos.device), float(sub[rows, cols].mean()) if len(rows) else 0.0


def uniqueness(
    nearest: Int[Tensor, "inst latent"], live: Bool[Tensor, "inst latent"]
) -> Float[Tensor, " inst"]:
    """Distinct nearest features of the live latents over the number of live latents."""
    out = torch.zeros(nearest.shape[0], device=nearest.device)
    for k in range(nearest.shape[0]):
        n_live = int(live[k].sum())
        if n_live:
            out[k] = nearest[k][live[k]].unique().numel() / n_live
    return out


class GroundTruthScores:
    """Accumulates the firing statistics of many SAE instances over evaluation batches and
    turns them into the scores of the module doc. ``parents`` is each feature's parent (-1 for
    none). The cosine matrix is built one instance at a time ([latent, feat] at most)."""

    def __init__(
        self,
        decoder: Float[Tensor, "inst latent hidden"],
        mask: Bool[Tensor, "inst latent"],
        directions: Float[Tensor, "feat hidden"],
        parents: Int[Tensor, " feat"],
    ):
        self.mask = mask
        n_inst, n_lat = mask.shape
        dev = decoder.device
        parents = parents.to(dev)
        child = torch.nonzero(parents >= 0).squeeze(-1)
        self.child, self.parent = child, parents[child]
        self.feature = torch.full((n_inst, n_lat), -1, dtype=torch.long, device=dev)
        self.nearest = torch.zeros((n_inst, n_lat), dtype=torch.long, device=dev)
        self.mcc = torch.zeros(n_inst, device=dev)
        self.hedge = torch.zeros(n_inst, device=dev)
        self.child_latent = torch.full((n_inst, len(child)), -1, dtype=torch.long, device=dev)
        self.parent_latent = torch.full_like(self.child_latent, -1)
        self.carries = torch.zeros(self.child_latent.shape, dtype=torch.bool, device=dev)
        for k in range(n_inst):
            cos = cosines(decoder[k : k + 1], directions)[0]
            self.feature[k], mcc = match(cos, mask[k])
            self.mcc[k] = mcc
            self.nearest[k] = cos.argmax(-1)
            self._pairs(k, cos, parents)
        self.pair_ok = (self.child_latent >= 0) & (self.parent_latent >= 0)
        zeros = lambda *shape: torch.zeros(*shape, device=dev, dtype=torch.float64)  # noqa: E731
        self.both, self.latent_on, self.feature_on = (zeros(n_inst, n_lat) for _ in range(3))
        self.err, self.var, self.shrink, self.norm, self.l0 = (zeros(n_inst) for _ in range(5))
        self.sum_h = zeros(decoder.shape[-1])
        self.child_on, self.absorbed, self.parent_missed = (
            zeros(n_inst, len(child)) for _ in range(3)
        )
        self.n = 0

    def _pairs(self, k: int, cos: Float[Tensor, "latent feat"], parents: Tensor) -> None:
        """Instance k's parent-child pairs: their latents, whether the child's latent carries
        the parent direction, and the hedging of the parents' latents."""
        if not len(self.child):
            return
        latent_of = torch.full((parents.shape[0],), -1, dtype=torch.long, device=cos.device)
        lat = torch.nonzero(self.feature[k] >= 0).squeeze(-1)
        latent_of[self.feature[k, lat]] = lat
        cl, pl = latent_of[self.child], latent_of[self.parent]
        self.child_latent[k], self.parent_latent[k] = cl, pl
        self.carries[k] = cos[cl.clamp_min(0), self.parent] > ABSORPTION_COSINE
        ok = pl >= 0
        if bool(ok.any()):
            lean = cos[pl[ok], self.child[ok]].clamp_min(0).square()
            per_parent = torch.zeros(parents.shape[0], device=cos.device)
            per_parent.index_add_(0, self.parent[ok], lean)
            has = torch.zeros(parents.shape[0], dtype=torch.bool, device=cos.device)
            has[self.parent[ok]] = True
            self.hedge[k] = per_parent[has].mean()

    @torch.no_grad()
    def update(
        self,
        x: Float[Tensor, "batch feat"],
        h: Float[Tensor, "batch hidden"],
        f: Float[Tensor, "inst batch latent"],
        h_hat: Float[Tensor, "inst batch hidden"],
        b_dec: Float[Tensor, "inst hidden"],
    ) -> None:
        """Add one evaluation batch (the same samples for every instance)."""
        fired = x > 0
        latent = f > 0
        feat = fired[:, self.feature.clamp_min(0)].permute(1, 0, 2) & (self.feature >= 0)[:, None]
        self.both += (latent & feat).sum(1)
        self.latent_on += latent.sum(1)
        self.feature_on += feat.sum(1)
        self.l0 += latent.sum(dim=(1, 2))
        self.err += (h_hat - h).square().sum(dim=(1, 2))
        self.sum_h += h.sum(0)
        self.var += h.square().sum()  # the same samples for every instance
        self.shrink += (h_hat - b_dec[:, None, :]).norm(dim=-1).sum(-1)
        self.norm += (h[None] - b_dec[:, None, :]).norm(dim=-1).sum(-1)
        self.n += x.shape[0]
        if len(self.child):
            child_on = fired[:, self.child]  # [batch, pair]
            take = lambda idx: torch.gather(  # noqa: E731
                latent, 2, idx.clamp_min(0)[:, None, :].expand(-1, x.shape[0], -1)
            )
            parent_fires = take(self.parent_latent)
            child_fires = take(self.child_latent)
            missed = child_on[None] & ~parent_fires & self.pair_ok[:, None]
            self.child_on += (child_on[None] & self.pair_ok[:, None]).sum(1)
            self.parent_missed += missed.sum(1)
            self.absorbed += (missed & child_fires & self.carries[:, None]).sum(1)

    def result(self) -> dict[str, Tensor]:
        """Per-instance scores (see the module doc)."""
        matched = self.feature >= 0
        precision = self.both / self.latent_on.clamp_min(1)
        recall = self.both / self.feature_on.clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        n_matched = matched.sum(-1).clamp_min(1)
        mean = lambda t: (t * matched).sum(-1) / n_matched  # noqa: E731
        live = (self.latent_on > 0) & self.mask
        variance = self.var - self.sum_h.square().sum() / max(self.n, 1)
        occurrences = self.child_on.sum(-1)
        return {
            "mcc": self.mcc,
            "f1": mean(f1).float(),
            "precision": mean(precision).float(),
            "recall": mean(recall).float(),
            "uniqueness": uniqueness(self.nearest, live),
            "explained_variance": (1 - self.err / variance.clamp_min(1e-30)).float(),
            "l0": (self.l0 / max(self.n, 1)).float(),
            "dead": (self.mask & ~live).sum(-1).float(),
            "shrinkage": (self.shrink / self.norm.clamp_min(1e-30)).float(),
            "absorption": (self.absorbed.sum(-1) / occurrences.clamp_min(1)).float(),
            "parent_missed": (self.parent_missed.sum(-1) / occurrences.clamp_min(1)).float(),
            "hedging": self.hedge.float(),
        }
