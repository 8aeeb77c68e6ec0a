"""Section 4, "Uniform Superposition": how many dimensions each feature gets as sparsity grows.

Setting (Elhage et al. 2022, Section 4, and its notebook): the ReLU-output model, every feature
equally important (I = 1) and equally sparse, one model per density over a log-spaced range of
1/(1-S). The paper used n = 400, m = 30; its notebook n = 200, m = 20 with 20 densities, which the
full preset follows; the quick preset shrinks the model to n = 50, m = 5.

The paper's claims:

- the dimensions per feature, ``m / ||W||_F^2``, is "sticky": it stays at 1 while features are
  dense (m features, one dimension each) and again at 1/2 over a range of sparsity (antipodal
  pairs), instead of falling smoothly;
- the feature dimensionalities ``D_i`` cluster at the fractions of equal-norm tight frames: 1
  (a dedicated dimension), 3/4 (tetrahedron), 2/3 (triangle), 1/2 (antipodal pair), 2/5
  (pentagon), 3/8 (square antiprism).
"""

from dataclasses import dataclass

import numpy as np
import torch

from superposition import geometry
from superposition._types import Bool, Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "uniform-superposition"
TITLE = "Section 4: uniform superposition, dimensions per feature and feature dimensionality"
SECTION = "Section 4"
RUN = "relu"

FRACTIONS: tuple[tuple[float, str, str], ...] = (
    (1.0, "1", "dedicated dimension"),
    (3 / 4, "3/4", "tetrahedron"),
    (2 / 3, "2/3", "triangle"),
    (1 / 2, "1/2", "antipodal pair"),
    (2 / 5, "2/5", "pentagon"),
    (3 / 8, "3/8", "square antiprism"),
)
"""The fractions the paper names (Section 4, "Feature Dimensionality"): value, label, polytope.
Each is m/k for k equal-norm vectors forming a tight frame of m dimensions."""

FRACTION_TOL = 0.03
"""A dimensionality within this distance of a fraction counts as sitting at it."""
PLATEAU_TOL = 0.06
"""Dimensions per feature within this distance of 1 or 1/2 counts as on the plateau."""
NORM_THRESHOLD = 0.5
"""Features with a shorter ``W_i`` are not represented (as in :func:`geometry.classify`)."""


def densities(count: int, lowest: float) -> tuple[float, ...]:
    """``count`` densities log-spaced from 1 down to ``lowest``, rounded for readable labels."""
    return tuple(float(f"{d:.3g}") for d in np.geomspace(1.0, lowest, count))


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run, one group per density. The paper shows one model per density, as the full preset
    does; the quick preset's small model (m = 5) moves in coarse steps, so it keeps the best of two
    seeds, lest one stuck in a poorer arrangement break the curve."""
    if quick:
        n, m, dens, steps, seeds = 50, 5, densities(12, 1 / 16), 3000, 2
    else:
        n, m, dens, steps, seeds = 200, 20, densities(20, 1 / 200), 10_000, 1
    config = RunConfig(
        data=DataConfig(n_features=n, density=dens),
        model=ModelConfig(kind="relu", n_hidden=m),
        train=TrainConfig(instances=seeds, steps=steps, batch_size=1024, eval_samples=10_000),
    )
    return {RUN: config}


# --------------------------------------------------------------------------------------------------
# analysis (pure functions of W, tested on hand-made weights)


def represented(
    W: Float[Tensor, "inst feat hidden"], threshold: float = NORM_THRESHOLD
) -> Bool[Tensor, "inst feat"]:
    """Which features are represented (``||W_i|| >= threshold``)."""
    return geometry.feature_norms(W) >= threshold


def nearest_fraction(D: Float[Tensor, "inst feat"]) -> tuple[Tensor, Tensor]:
    """Index into :data:`FRACTIONS` of the fraction nearest each ``D_i``, and the distance to it."""
    values = torch.tensor([f[0] for f in FRACTIONS], dtype=D.dtype)
    dist = (D[..., None] - values).abs()
    best = dist.min(-1)
    return best.indices, best.values


def fraction_share(
    D: Float[Tensor, "inst feat"], mask: Bool[Tensor, "inst feat"], tol: float = FRACTION_TOL
) -> tuple[float, int]:
    """Among the features selected by ``mask``, the share whose dimensionality lies within ``tol``
    of a named fraction, and how many features were selected."""
    _, dist = nearest_fraction(D)
    picked = dist[mask]
    if picked.numel() == 0:
        return 0.0, 0
    return float((picked <= tol).double().mean()), int(picked.numel())


def chance_share(low: float, tol: float = FRACTION_TOL) -> float:
    """The share of [low, 1] within ``tol`` of a named fraction: what :func:`fraction_share` would
    give if dimensionalities were spread evenly over that interval, instead of clustering."""
    grid = np.linspace(low, 1.0, 100_001)
    values = np.array([f[0] for f in FRACTIONS])
    return float((np.abs(grid[:, None] - values).min(-1) <= tol).mean())


def plateau(values: list[float], level: float, tol: float = PLATEAU_TOL) -> list[int]:
    """The longest run of consecutive indices whose value is within ``tol`` of ``level`` (the
    first such run on ties; empty when none)."""
    best: list[int] = []
    current: list[int] = []
    for i, v in enumerate(values):
        if abs(v - level) <= tol:
            current.append(i)
            if len(current) > len(best):
                best = list(current)
        else:
            current = []
    return best


@dataclass(frozen=True)
class Measures:
    """Per density (the best instance of each group, in group order)."""

    density: list[float]
    dpf: list[float]
    """Dimensions per feature, ``m / ||W||_F^2``."""
    D: Float[Tensor, "inst feat"]
    """Feature dimensionalities."""
    represented: Bool[Tensor, "inst feat"]

    @property
    def x(self) -> list[float]:
        """``1/(1-S)``, the paper's x axis."""
        return [1.0 / d for d in self.density]


def measures(run: Run) -> Measures:
    """The measures of every density's best instance."""
    W = run.W[run.best()].detach().double()
    return Measures(
        density=[g.density for g in run.config.groups],
        dpf=geometry.dimensions_per_feature(W).tolist(),
        D=geometry.feature_dimensionality(W),
        represented=represented(W),
    )


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Sticky dimensions per feature at 1 and 1/2; dimensionalities clustered at the fractions."""
    meas = measures(runs[RUN])
    dens, dpf, D, rep = meas.density, meas.dpf, meas.D, meas.represented
    order = sorted(range(len(dens)), key=lambda i: -dens[i])  # densest first
    dpf_sorted = [dpf[i] for i in order]
    x_sorted = [1.0 / dens[i] for i in order]

    def span(run_: list[int]) -> str:
        if not run_:
            return "none"
        vals = ", ".join(f"{dpf_sorted[i]:.2f}" for i in run_)
        return f"1/(1-S) = {x_sorted[run_[0]]:.3g} to {x_sorted[run_[-1]]:.3g} ({vals})"

    out = []
    one = plateau(dpf_sorted, 1.0)
    sticks_one = len(one) >= 2 and one[0] == 0
    half = plateau(dpf_sorted, 0.5)
    sticks_half = len(half) >= 2
    out.append(
        Claim(
            section=SECTION,
            text=(
                "Dimensions per feature m/||W||_F^2 is sticky: it stays at 1 while features are "
                "dense, then at 1/2 over a range of sparsity, rather than falling smoothly."
            ),
            measured=(
                f"within {PLATEAU_TOL:g} of 1 at {len(one)} consecutive densities, {span(one)}; "
                f"within {PLATEAU_TOL:g} of 1/2 at {len(half)}, {span(half)}"
            ),
            holds=sticks_one and sticks_half,
        )
    )

    # only dimensionalities at or above the smallest named fraction can sit at one
    low = FRACTIONS[-1][0] - FRACTION_TOL
    mask = rep & (low <= D)
    share, count = fraction_share(D, mask)
    chance = chance_share(low)
    idx, dist = nearest_fraction(D)
    near = mask & (dist <= FRACTION_TOL)
    counts = [int((near & (idx == k)).sum()) for k in range(len(FRACTIONS))]
    named = ", ".join(
        f"{label} ({poly}) {c}" for (_, label, poly), c in zip(FRACTIONS, counts, strict=True) if c
    )
    out.append(
        Claim(
            section=SECTION,
            text=(
                "Feature dimensionalities D_i cluster at the fractions of regular polytopes: 1, "
                "3/4 tetrahedron, 2/3 triangle, 1/2 antipodal pair, 2/5 pentagon, 3/8 square "
                "antiprism."
            ),
            measured=(
                f"{share:.0%} of the {count} represented features with D_i >= {low:.3g} lie within "
                f"{FRACTION_TOL:g} of a fraction (evenly spread values would give {chance:.0%}); "
                f"{named or 'none'}"
            ),
            holds=count > 0 and share >= 0.7 and share >= chance + 0.2,
        )
    )
    return out
