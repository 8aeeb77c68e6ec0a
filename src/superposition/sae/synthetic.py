"""Synthetic activations with known features: the ground truth an SAE benchmark scores against
(layer 1, maths: no training, no I/O).

A :class:`SyntheticModel` holds ``n_features`` unit directions ``D [feat, hidden]`` and writes a
sample as ``h = sum_i x_i D_i (+ noise)``, where ``x_i >= 0`` is feature i's magnitude, non-zero
only when the feature fires. Following the SynthSAEBench design of the SAELens synthetic module,
the features may have

- **firing rates** (densities) that are uniform, fall linearly or follow a Zipf law, scaled so
  that on average ``mean_active`` features fire per sample;
- **correlations** through a low-rank Gaussian copula: feature i fires when
  ``z_i < Phi^-1(p_i)`` with ``z = L u + sqrt(1 - |L_i|^2) e`` (u of ``correlation_rank``
  dimensions, e independent), so every marginal rate stays exactly ``p_i`` while features that
  share factors fire together;
- **hierarchies** (Chanin et al. 2024, *A is for Absorption*, Section 3): a child fires only
  when its parent fires (its density is then its rate *given* the parent), the children of one
  parent may be mutually exclusive (one of those that fired is kept, at random), and a child's
  magnitude may be multiplied by its parent's;
- **magnitudes** per feature: constant, uniform on ``[0, 2 mu_i]`` or folded normal
  ``|N(mu_i, sigma mu_i)|``, with per-feature means ``mu_i`` spread around ``magnitude_mean``;
- optional isotropic Gaussian **noise** on ``h``.

The model is built once from the config's seed (directions, rates, copula factors, the forest)
and every batch is drawn from an explicit ``torch.Generator`` on the model's device, so the same
seed gives the same model and the same generator state the same batch, on the CPU or CUDA.
"""

import math
from dataclasses import dataclass
from typing import Literal, get_args, no_type_check

import torch

from superposition._types import Bool, Float, Int, Tensor
from superposition.config import (
    check_choice,
    check_in_range,
    check_int_at_least,
    doc_field,
    freeze_tuple,
)
from superposition.errors import ConfigError
from superposition.rng import derive_seed

Profile = Literal["uniform", "linear", "zipf"]
Magnitude = Literal["constant", "uniform", "folded_normal"]
Directions = Literal["random", "orthogonal"]


@no_type_check  # validated by __post_init__
@dataclass(frozen=True)
class SyntheticConfig:
    """A synthetic model of activations whose features are known."""

    n_features: int = doc_field(4096, "Ground-truth features (>= 1).")
    n_hidden: int = doc_field(256, "Dimensions of the activations (>= 1).")
    directions: Directions = doc_field(
        "random",
        "'random' (independent Gaussian directions, normalised) or 'orthogonal' (orthonormal; "
        "needs n_features <= n_hidden).",
    )
    density_profile: Profile = doc_field(
        "zipf",
        "How the firing rates fall from the first feature to the last: 'uniform', 'linear' "
        "(to density_ratio times the first) or 'zipf' (p_i proportional to (i+1)^-zipf_exponent).",
    )
    mean_active: float = doc_field(
        25.0, "Expected number of firing features per sample before the hierarchy gates them "
        "(> 0); the rates are scaled to it."
    )
    zipf_exponent: float = doc_field(0.5, "Exponent of the Zipf profile (>= 0).")
    density_ratio: float = doc_field(
        0.1, "Linear profile: the last feature's rate over the first's, in (0, 1]."
    )
    densities: tuple[float, ...] | None = doc_field(
        None,
        "Explicit firing rate of every feature, each in (0, 1] (n_features values); replaces "
        "the profile.",
    )
    correlation_rank: int = doc_field(
        0, "Rank of the Gaussian copula that correlates the firing (0 = independent)."
    )
    correlation_strength: float = doc_field(
        0.5,
        "Norm of each feature's row of copula loadings, in [0, 1): the share of its latent "
        "Gaussian's standard deviation that comes from the shared factors.",
    )
    hierarchy_roots: int = doc_field(
        0, "Generated hierarchy: number of parent features (the most frequent ones) with children."
    )
    hierarchy_children: int = doc_field(4, "Generated hierarchy: children per parent (>= 1).")
    hierarchy_depth: int = doc_field(
        1, "Generated hierarchy: levels of children below each root (>= 1)."
    )
    parents: tuple[int, ...] | None = doc_field(
        None,
        "Explicit hierarchy: each feature's parent index, or -1 for none (n_features values); "
        "it must be a forest. Replaces the generated one.",
    )
    mutually_exclusive: bool = doc_field(
        True, "At most one child of a parent fires per sample (one of those drawn, at random)."
    )
    scale_children: bool = doc_field(
        True, "A child's magnitude is multiplied by its parent's (as an absolute value)."
    )
    magnitude: Magnitude = doc_field(
        "folded_normal",
        "Distribution of a firing feature's magnitude: 'constant' (mu_i), 'uniform' on "
        "[0, 2 mu_i] or 'folded_normal' |N(mu_i, magnitude_std * mu_i)|.",
    )
    magnitude_mean: float = doc_field(1.0, "Mean of the per-feature magnitude means mu_i (> 0).")
    magnitude_spread: float = doc_field(
        0.0, "The mu_i are uniform on magnitude_mean x [1 - spread, 1 + spread], spread in [0, 1)."
    )
    magnitude_std: float = doc_field(
        0.5, "Folded normal: standard deviation relative to the mean (>= 0)."
    )
    noise_std: float = doc_field(0.0, "Standard deviation of Gaussian noise added to h (>= 0).")
    seed: int = doc_field(0, "Seed of the model (directions, rates, copula, hierarchy).")

    def __post_init__(self) -> None:
        for name in ("densities", "parents"):
            if getattr(self, name) is not None:
                freeze_tuple(self, name)
        check_int_at_least("n_features", self.n_features, 1)
        check_int_at_least("n_hidden", self.n_hidden, 1)
        check_choice("directions", self.directions, get_args(Directions))
        if self.directions == "orthogonal" and self.n_features > self.n_hidden:
            raise ConfigError(
                f"orthogonal directions need n_features <= n_hidden, got {self.n_features} "
                f"features in {self.n_hidden} dimensions; use directions='random'"
            )
        check_choice("density_profile", self.density_profile, get_args(Profile))
        if self.densities is None:  # explicit densities replace the profile and its scale
            check_in_range("mean_active", self.mean_active, 0.0, float(self.n_features),
                           low_open=True)  # fmt: skip
        check_in_range("zipf_exponent", self.zipf_exponent, 0.0, 10.0)
        check_in_range("density_ratio", self.density_ratio, 0.0, 1.0, low_open=True)
        if self.densities is not None:
            if len(self.densities) != self.n_features:
                raise ConfigError(
                    f"densities must have one value per feature ({self.n_features}), got "
                    f"{len(self.densities)}"
                )
            for i, p in enumerate(self.densities):
                if not isinstance(p, int | float) or not 0.0 < p <= 1.0:
                    raise ConfigError(
                        f"densities[{i}] = {p!r} is not a firing rate in (0, 1]"
                    )
        check_int_at_least("correlation_rank", self.correlation_rank, 0)
        check_in_range("correlation_strength", self.correlation_strength, 0.0, 1.0)
        if self.correlation_strength >= 1.0:
            raise ConfigError(
                f"correlation_strength must be below 1 (the independent part would vanish), "
                f"got {self.correlation_strength}"
            )
        check_int_at_least("hierarchy_roots", self.hierarchy_roots, 0)
        check_int_at_least("hierarchy_children", self.hierarchy_children, 1)
        check_int_at_least("hierarchy_depth", self.hierarchy_depth, 1)
        check_choice("magnitude", self.magnitude, get_args(Magnitude))
        check_in_range("magnitude_mean", self.magnitude_mean, 0.0, 1e6, low_open=True)
        check_in_range("magnitude_spread", self.magnitude_spread, 0.0, 1.0)
        if self.magnitude_spread >= 1.0:
            raise ConfigError(
                f"magnitude_spread must be below 1 (a mean would reach 0), got "
                f"{self.magnitude_spread}"
            )
        check_in_range("magnitude_std", self.magnitude_std, 0.0, 1e6)
        check_in_range("noise_std", self.noise_std, 0.0, 1e6)
        check_int_at_least("seed", self.seed, 0)
        check_forest(self.parent_list())
        self.firing_rates()  # refuses a profile whose rates leave (0, 1]

    # ---- derived facts, pure functions of the config ---------------------------------------------

    def parent_list(self) -> list[int]:
        """Each feature's parent (-1: a root or no hierarchy): the explicit list or the generated
        forest, in which roots 0..R-1 get ``hierarchy_children`` children each, level by level,
        numbered after them."""
        if self.parents is not None:
            if len(self.parents) != self.n_features:
                raise ConfigError(
                    f"parents must have one entry per feature ({self.n_features}), got "
                    f"{len(self.parents)}"
                )
            return [int(p) for p in self.parents]
        out = [-1] * self.n_features
        level = list(range(self.hierarchy_roots))
        nxt = self.hierarchy_roots
        for _ in range(self.hierarchy_depth if self.hierarchy_roots else 0):
            children = []
            for parent in level:
                for _ in range(self.hierarchy_children):
                    if nxt >= self.n_features:
                        raise ConfigError(
                            f"a hierarchy of {self.hierarchy_roots} roots x "
                            f"{self.hierarchy_children} children x {self.hierarchy_depth} "
                            f"level(s) needs more than n_features={self.n_features} features"
                        )
                    out[nxt] = parent
                    children.append(nxt)
                    nxt += 1
            level = children
        return out

    def firing_rates(self) -> list[float]:
        """Each feature's firing rate (given its parent, for a child), in (0, 1]."""
        if self.densities is not None:
            return [float(p) for p in self.densities]
        n = self.n_features
        if self.density_profile == "uniform":
            shape = [1.0] * n
        elif self.density_profile == "linear":
            step = (1.0 - self.density_ratio) / max(n - 1, 1)
            shape = [1.0 - i * step for i in range(n)]
        else:
            shape = [(i + 1) ** -self.zipf_exponent for i in range(n)]
        scale = self.mean_active / sum(shape)
        rates = [s * scale for s in shape]
        if rates[0] > 1.0:
            raise ConfigError(
                f"mean_active={self.mean_active} with the {self.density_profile} profile gives "
                f"the first feature a firing rate of {rates[0]:.3g}, outside (0, 1]; lower "
                "mean_active or flatten the profile"
            )
        return rates


def check_forest(parents: list[int]) -> None:
    """Refuse a parent list that is not a forest: an index out of range, a feature its own
    parent, or a cycle."""
    n = len(parents)
    for i, p in enumerate(parents):
        if not isinstance(p, int) or p < -1 or p >= n:
            raise ConfigError(f"parents[{i}] = {p!r} is not -1 or a feature index below {n}")
        if p == i:
            raise ConfigError(f"parents[{i}] = {i}: a feature cannot be its own parent")
    state = [0] * n  # 0 unseen, 1 on the current path, 2 known to reach a root
    for start in range(n):
        path = []
        i = start
        while i != -1 and state[i] == 0:
            state[i] = 1
            path.append(i)
            i = parents[i]
        if i != -1 and state[i] == 1:
            raise ConfigError(
                f"the hierarchy is not a forest: feature {i} is its own ancestor"
            )
        for j in path:
            state[j] = 2


@dataclass
class Batch:
    """One batch drawn from a :class:`SyntheticModel`."""

    x: Float[Tensor, "batch feat"]
    """Every feature's magnitude (0 where it does not fire)."""
    h: Float[Tensor, "batch hidden"]
    """The activations, ``x D + noise``."""


class SyntheticModel:
    """The fixed parts of a synthetic model, built from a :class:`SyntheticConfig` on a device."""

    def __init__(self, config: SyntheticConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.device = device = torch.device(device)
        n, d = config.n_features, config.n_hidden
        gen = torch.Generator().manual_seed(derive_seed(config.seed, "synthetic-model"))
        if config.directions == "orthogonal":
            q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
            D = q[:n]
        else:
            D = torch.randn(n, d, generator=gen)
            D = D / D.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.directions: Float[Tensor, "feat hidden"] = D.to(device)
        rates = torch.tensor(config.firing_rates(), dtype=torch.float64)
        self.density: Float[Tensor, " feat"] = rates.float().to(device)
        # the copula's threshold: feature i fires when its standard normal z_i < Phi^-1(p_i)
        self.threshold: Float[Tensor, " feat"] = (
            torch.special.ndtri(rates.clamp(max=1 - 1e-12)).float().to(device)
        )
        r = config.correlation_rank
        self.loadings: Float[Tensor, "feat factor"] | None = None
        if r:
            L = torch.randn(n, r, generator=gen)
            L = L / L.norm(dim=-1, keepdim=True).clamp_min(1e-12) * config.correlation_strength
            self.loadings = L.to(device)
            self.own_std = math.sqrt(1.0 - config.correlation_strength**2)
        spread = config.magnitude_spread
        mu = config.magnitude_mean * (1.0 + spread * (2.0 * torch.rand(n, generator=gen) - 1.0))
        self.magnitude_mean: Float[Tensor, " feat"] = mu.to(device)
        parents = config.parent_list()
        self.parent: Int[Tensor, " feat"] = torch.tensor(parents, dtype=torch.long, device=device)
        self.levels = _levels(parents, device)
        self.depth: Int[Tensor, " feat"] = torch.zeros(n, dtype=torch.long, device=device)
        for level, (children, _) in enumerate(self.levels, 1):
            self.depth[children] = level

    @property
    def n_features(self) -> int:
        return self.config.n_features

    @property
    def n_hidden(self) -> int:
        return self.config.n_hidden

    def fires(self, n: int, generator: torch.Generator) -> Bool[Tensor, "batch feat"]:
        """Which features fire in ``n`` samples: the copula, then the hierarchy's gates."""
        feats, rows = self._firing(n, generator)
        on = torch.zeros(n, self.n_features, dtype=torch.bool, device=self.device)
        return on.index_put_((rows, feats), torch.ones((), dtype=torch.bool, device=self.device))

    def _firing(
        self, n: int, generator: torch.Generator
    ) -> tuple[Int[Tensor, " fired"], Int[Tensor, " fired"]]:
        """The (feature, sample) pairs that fire, features in increasing order.

        Only the copula needs every pair (a dense draw and comparison); the hierarchy then works
        on the few pairs that passed it (about ``mean_active`` per sample), never on the dense
        ``[feat, batch]`` table."""
        shape = (self.n_features, n)  # feature-major: the pairs come out grouped by feature
        if self.loadings is None:  # independent features: one uniform draw each
            on = torch.rand(shape, generator=generator, device=self.device) < self.density[:, None]
        else:
            z = torch.randn(shape, generator=generator, device=self.device)
            u = torch.randn(self.loadings.shape[1], n, generator=generator, device=self.device)
            on = z.mul_(self.own_std).addmm_(self.loadings, u) < self.threshold[:, None]
        feats, rows = on.nonzero(as_tuple=True)
        if not self.levels:
            return feats, rows
        depth = self.depth[feats]
        for level in range(1, len(self.levels) + 1):  # roots first: a parent's state is final
            at = (depth == level).nonzero().squeeze(1)
            f, r = feats[at], rows[at]
            parent = self.parent[f]
            alive = on[parent, r]
            if self.config.mutually_exclusive:
                alive = _one_per_group(alive, parent * n + r, generator)
            on[f, r] = alive
        keep = on[feats, rows]
        return feats[keep], rows[keep]

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """``n`` samples: magnitudes ``x`` and activations ``h``. Magnitudes are drawn only for
        the features that fire (a few per sample), and ``h`` adds up only their directions."""
        feats, rows, mag = self._magnitudes(n, generator)
        x = torch.zeros(n, self.n_features, device=self.device).index_put_((rows, feats), mag)
        return Batch(x, self._activations(n, feats, rows, mag, generator))

    def activations(self, n: int, generator: torch.Generator) -> Float[Tensor, "batch hidden"]:
        """The ``h`` of :meth:`sample` (the same for the same generator state), without building
        the dense ``x``: what a trainer reads."""
        feats, rows, mag = self._magnitudes(n, generator)
        return self._activations(n, feats, rows, mag, generator)

    def _magnitudes(
        self, n: int, generator: torch.Generator
    ) -> tuple[Int[Tensor, " fired"], Int[Tensor, " fired"], Float[Tensor, " fired"]]:
        """The firing (feature, sample) pairs and their magnitudes, children scaled."""
        feats, rows = self._firing(n, generator)
        cfg = self.config
        mu = self.magnitude_mean[feats]
        if cfg.magnitude == "constant":
            mag = mu
        elif cfg.magnitude == "uniform":
            mag = torch.rand(mu.shape, generator=generator, device=self.device) * (2 * mu)
        else:
            noise = torch.randn(mu.shape, generator=generator, device=self.device)
            mag = (mu + noise * (cfg.magnitude_std * mu)).abs()
        if cfg.scale_children and self.levels:
            # the pairs are sorted by feature, then sample: a child finds its parent's pair
            # (which fires, or the child would not) by binary search on that order
            key = feats * n + rows
            depth = self.depth[feats]
            for level in range(1, len(self.levels) + 1):  # roots first: a parent is scaled
                at = (depth == level).nonzero().squeeze(1)
                parent = torch.searchsorted(key, self.parent[feats[at]] * n + rows[at])
                mag[at] = mag[at] * mag[parent]
        return feats, rows, mag

    def _activations(
        self,
        n: int,
        feats: Int[Tensor, " fired"],
        rows: Int[Tensor, " fired"],
        mag: Float[Tensor, " fired"],
        generator: torch.Generator,
    ) -> Float[Tensor, "batch hidden"]:
        # h = x D over the firing pairs only, sample by sample (an embedding bag weighted by the
        # magnitudes): a few rows of D per sample instead of all of them
        order = torch.sort(rows, stable=True).indices
        offsets = torch.cumsum(torch.bincount(rows, minlength=n), 0).roll(1)
        offsets[0] = 0
        h = torch.nn.functional.embedding_bag(
            feats[order], self.directions, offsets, mode="sum", per_sample_weights=mag[order]
        )
        if self.config.noise_std:
            noise = torch.randn(h.shape, generator=generator, device=self.device)
            h = h.add_(noise, alpha=self.config.noise_std)
        return h

    def embed(self, x: Float[Tensor, "batch feat"]) -> Float[Tensor, "batch hidden"]:
        """``x D`` without noise (e.g. a single feature's contribution)."""
        return x @ self.directions


def _levels(parents: list[int], device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """The children of each depth (1, 2, ...) with their parents, roots' children first."""
    depth = [0] * len(parents)
    for i in range(len(parents)):
        j, d = i, 0
        while parents[j] != -1:
            j, d = parents[j], d + 1
        depth[i] = d
    out = []
    for level in range(1, max(depth, default=0) + 1):
        children = [i for i, d in enumerate(depth) if d == level]
        out.append(
            (
                torch.tensor(children, dtype=torch.long, device=device),
                torch.tensor([parents[c] for c in children], dtype=torch.long, device=device),
            )
        )
    return out


def _one_per_group(
    alive: Bool[Tensor, " pair"], group: Int[Tensor, " pair"], generator: torch.Generator
) -> Bool[Tensor, " pair"]:
    """Keep, in every group, one of its alive members chosen uniformly at random (the first of
    the largest random scores), and none of the others."""
    score = torch.rand(alive.shape, generator=generator, device=alive.device)
    score = torch.where(alive, score, -1.0)
    _, inverse = torch.unique(group, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    best = torch.full((n_groups,), -1.0, device=alive.device)
    best.scatter_reduce_(0, inverse, score, "amax")
    position = torch.arange(len(alive), device=alive.device)
    tied = torch.where(alive & (score == best[inverse]), position, len(alive))
    first = torch.full((n_groups,), len(alive), device=alive.device, dtype=torch.long)
    first.scatter_reduce_(0, inverse, tied, "amin")
    return alive & (position == first[inverse])
