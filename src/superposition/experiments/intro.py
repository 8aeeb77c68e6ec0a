"""The paper's introduction figure: 5 features in 2 dimensions across densities.

Setting (Elhage et al. 2022, Introduction): n = 5, m = 2, ReLU-output model, importance
0.9**i, ten densities from 1 down to 1/20. The paper's claims: when features are dense the model
keeps the two most important ones, orthogonally; as they get sparser it stores four as two antipodal
pairs, and at high sparsity all five as a pentagon. Several seeds per density, best-of-N by held-out
loss.
"""

import numpy as np

from superposition import geometry
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "intro"
TITLE = "Introduction: five features in two dimensions"
RUN = "relu"


def densities(count: int = 10) -> tuple[float, ...]:
    """``count`` densities log-spaced from 1 down to 1/20, rounded for readable labels."""
    return tuple(float(f"{d:.3g}") for d in np.geomspace(1.0, 1.0 / 20, count))


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The preset (one run); ``quick`` keeps the ten densities with fewer seeds and steps."""
    config = RunConfig(
        data=DataConfig(n_features=5, density=densities(), importance_decay=(0.9,)),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=TrainConfig(
            instances=4 if quick else 8,
            steps=4000 if quick else 10_000,
            batch_size=1024,
            eval_samples=20_000,
        ),
    )
    return {RUN: config}


def _represented(run: Run, instance: int) -> list[int]:
    norms = geometry.feature_norms(run.W[instance : instance + 1])[0]
    return [i for i, v in enumerate(norms.tolist()) if v > 0.5]


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Check the introduction's three claims on the best instance of each density."""
    run = runs[RUN]
    best = run.best()
    cfg = run.config
    dens = [g.density for g in cfg.groups]
    W = run.W[best]
    shapes = geometry.classify(W)
    labels = [g.label for g in shapes]
    dims = geometry.feature_dimensionality(W)
    out = []

    dense = best[dens.index(max(dens))]
    kept = _represented(run, dense)
    cos = geometry.gram(run.W[dense : dense + 1])[0]
    orth = len(kept) == 2 and abs(float(cos[kept[0], kept[1]])) < 0.1
    out.append(
        Claim(
            section="Introduction",
            text="Dense features: the model keeps the two most important features, orthogonally.",
            measured=f"density {max(dens):g}: features {kept} represented ({labels[0]})",
            holds=orth and kept == [0, 1],
        )
    )

    pairs = [
        i
        for i, label in enumerate(labels)
        if label.startswith("2 antipodal pairs") and len(_represented(run, best[i])) == 4
    ]
    out.append(
        Claim(
            section="Introduction",
            text="At moderate sparsity four features are stored as two antipodal pairs.",
            measured=(
                "two antipodal pairs at density "
                + (", ".join(f"{dens[i]:g}" for i in pairs) if pairs else "none")
            ),
            holds=bool(pairs),
        )
    )

    sparse = dens.index(min(dens))
    d_sparse = dims[sparse]
    # a pentagon: all five features in one 2-D shape (it may be slightly deformed, as importance
    # decays, so the regular "pentagon" label is not required)
    comps = shapes[sparse].components
    pentagon = len(comps) == 1 and len(comps[0].features) == 5 and comps[0].rank == 2
    out.append(
        Claim(
            section="Introduction",
            text="At high sparsity all five features are stored, as a pentagon (D = 2/5 each).",
            measured=(
                f"density {min(dens):g}: {labels[sparse]}, dimensionalities "
                + ", ".join(f"{v:.2f}" for v in d_sparse.tolist())
            ),
            holds=pentagon,
        )
    )
    return out
