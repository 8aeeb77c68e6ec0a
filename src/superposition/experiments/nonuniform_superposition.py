"""Section 4, "Non-Uniform Superposition": one feature sparser or denser than the others.

Setting (Elhage et al. 2022, Section 4): the ReLU-output model, n = 5 features in m = 2
dimensions, equal importance, four features at density 0.05 and the fifth at that density times a
multiplier from 0.1 to 10 (one run per multiplier, many seeds each, best-of-N by held-out loss).

The paper's claims: with all five equally sparse the model stores a pentagon; changing the fifth
feature's density deforms it smoothly, until, when the fifth is a few times sparser, the solution
snaps to another polytope: two antipodal pairs (digons) with the fifth feature not represented. The
losses of the two geometries cross where the best solution changes.
"""

import math

import numpy as np

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "nonuniform-superposition"
TITLE = "Section 4: non-uniform superposition, one feature's density varied"
SECTION = "Section 4"

N_FEATURES = 5
N_HIDDEN = 2
DENSITY = 0.05
"""Density of the four unchanged features."""
VARIED = N_FEATURES - 1
"""The feature whose density is varied (the fifth)."""

PENTAGON = "pentagon"
DIGONS = "digons"
OTHER = "other"
KINDS = (PENTAGON, DIGONS)


def multipliers(quick: bool) -> tuple[float, ...]:
    """The fifth feature's density relative to the others, sparser first."""
    if quick:
        return (0.1, 0.2, 0.5, 1.0, 3.0)
    return tuple(float(f"{v:.2g}") for v in np.geomspace(0.1, 10.0, 13))


def run_name(multiplier: float) -> str:
    return f"fifth-x{multiplier:g}"


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run per multiplier; ``quick`` uses fewer multipliers, seeds and steps."""
    out = {}
    for mult in multipliers(quick):
        out[run_name(mult)] = RunConfig(
            data=DataConfig(
                n_features=N_FEATURES,
                density=(DENSITY,),
                feature_density=(1.0,) * VARIED + (mult,),
            ),
            model=ModelConfig(kind="relu", n_hidden=N_HIDDEN),
            train=TrainConfig(
                instances=8 if quick else 16,
                steps=3000 if quick else 10_000,
                batch_size=1024,
                eval_samples=20_000,
            ),
        )
    return out


def multiplier_of(run: Run) -> float:
    """The varied feature's density relative to the others, read from the run's config."""
    scale = run.config.data.feature_density or (1.0,) * run.config.data.n_features
    return float(scale[VARIED] / scale[0])


# --------------------------------------------------------------------------------------------------
# analysis (pure functions of W, tested on hand-made weights)


def solution_kind(W: Float[Tensor, "inst feat hidden"], varied: int = VARIED) -> list[str]:
    """Name each instance's solution: ``"pentagon"`` when all five features are represented in one
    2-D shape (regular or deformed), ``"digons"`` when the ``varied`` feature is not represented and
    the four others form two antipodal pairs, ``"other"`` otherwise (e.g. a triangle with dead
    features, a square)."""
    out = []
    n = W.shape[1]
    for shape in geometry.classify(W):
        comps = shape.components
        if len(comps) == 1 and len(comps[0].features) == n and comps[0].rank == 2:
            out.append(PENTAGON)
        elif (
            shape.not_represented == (varied,)
            and len(comps) == 2
            and all(c.name == "antipodal pair" for c in comps)
        ):
            out.append(DIGONS)
        else:
            out.append(OTHER)
    return out


def class_losses(
    kinds: list[str], loss: Float[Tensor, " inst"]
) -> dict[str, float]:
    """The lowest held-out loss among the instances of each solution kind (NaN when none)."""
    out = {}
    for kind in KINDS:
        picked = [float(v) for k, v in zip(kinds, loss.tolist(), strict=True) if k == kind]
        out[kind] = min(picked) if picked else math.nan
    return out


def crossings(mults: list[float], a: list[float], b: list[float]) -> list[tuple[float, float]]:
    """Intervals ``(m_lo, m_hi)`` of consecutive multipliers where ``a - b`` changes sign (points
    where either is NaN are skipped)."""
    pts = [(m, x - y) for m, x, y in zip(mults, a, b, strict=True) if not math.isnan(x - y)]
    return [
        (m0, m1) for (m0, d0), (m1, d1) in zip(pts, pts[1:], strict=False) if (d0 < 0) != (d1 < 0)
    ]


def sweep(runs: dict[str, Run]) -> dict[str, list]:
    """Per multiplier (ascending): the best solution's kind and, per kind, the lowest loss."""
    ordered = sorted(runs.values(), key=multiplier_of)
    rows: dict[str, list] = {"multiplier": [], "best": [], PENTAGON: [], DIGONS: []}
    for run in ordered:
        kinds = solution_kind(run.W)
        best = run.best()[0]
        losses = class_losses(kinds, run.loss)
        rows["multiplier"].append(multiplier_of(run))
        rows["best"].append(kinds[best])
        for kind in KINDS:
            rows[kind].append(losses[kind])
    return rows


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Pentagon when equal; two digons when the fifth is sparser; the loss curves cross there."""
    rows = sweep(runs)
    mults, best = rows["multiplier"], rows["best"]
    by_mult = dict(zip(mults, best, strict=True))
    equal = min(mults, key=lambda v: abs(math.log(v)))
    out = [
        Claim(
            section=SECTION,
            text="When all five features are equally sparse the model stores them as a pentagon.",
            measured=f"fifth feature at {equal:g}x: best solution {by_mult[equal]}",
            holds=math.isclose(equal, 1.0) and by_mult[equal] == PENTAGON,
        )
    ]
    # one switch on the sparser side: digons at every multiplier below it, a (deformed) pentagon
    # from it up to equal density (denser fifth features are another story: not part of the claim)
    sparser = [(m, k) for m, k in zip(mults, best, strict=True) if m <= 1.0]
    digon_at = [m for m, k in sparser if k == DIGONS]
    pent_at = [m for m, k in sparser if k == PENTAGON]
    switch = None
    if digon_at and pent_at and max(digon_at) < min(pent_at):
        switch = (max(digon_at), min(pent_at))
    clean = switch is not None and len(digon_at) + len(pent_at) == len(sparser)
    out.append(
        Claim(
            section=SECTION,
            text=(
                "When the fifth feature is a few times sparser than the others the pentagon snaps "
                "to two antipodal pairs (digons), the fifth feature not represented."
            ),
            measured=(
                "best solution per multiplier: "
                + ", ".join(f"{m:g}x {k}" for m, k in zip(mults, best, strict=True))
                + (f"; switch between {switch[0]:g}x and {switch[1]:g}x" if switch else "")
            ),
            holds=clean,
        )
    )
    cross = crossings(mults, rows[PENTAGON], rows[DIGONS])
    both = sum(
        1 for p, d in zip(rows[PENTAGON], rows[DIGONS], strict=True) if not math.isnan(p - d)
    )
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The losses of the pentagon and digon solutions cross where the best solution "
                "changes."
            ),
            measured=(
                f"both geometries found at {both} of {len(mults)} multipliers; lowest losses cross "
                + (
                    ", ".join(f"between {a:g}x and {b:g}x" for a, b in cross)
                    if cross
                    else "nowhere"
                )
                + (f"; best solution switches between {switch[0]:g}x and {switch[1]:g}x"
                   if switch else "; no single switch of the best solution")
            ),
            holds=switch is not None and len(cross) == 1 and cross[0] == switch,
        )
    )
    return out


def best_weights(run: Run) -> Float[Tensor, "feat hidden"]:
    """The best instance's W (one group per run)."""
    return run.W[run.best()[0]].detach()

