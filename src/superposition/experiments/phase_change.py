"""Section 3, "Superposition as a Phase Change": what happens to one extra feature.

Two models, n=2 features in m=1 dimension and n=3 in m=2, are trained over a grid of density (1 down
to 0.01) x the last feature's importance relative to the others (0.1 to 10), several seeds per
point, best-of-N by held-out loss. Each point's extra feature is classified as not represented,
given a dedicated dimension, or stored in superposition, and for n=3 also as given a dedicated
dimension while one of the other two is dropped (the paper's fourth region for n=3, m=2;
:func:`theory.classify_extra_feature`), and the empirical diagram is compared point by point with
the theoretical one (:func:`theory.phase_diagram`: the cheapest of the candidate solutions in
closed form, with the antipodal pair's scale and bias optimised; the paper's plain candidates are
reported beside it).

The whole grid is one run per model: density and relative importance are both per-group fields, so
every grid point trains side by side on the instance axis.
"""

from dataclasses import dataclass

import numpy as np

from superposition import theory
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "phase-change"
TITLE = "Superposition as a phase change"
SECTION = "Section 3"
MODELS = {"n2-m1": (2, 1), "n3-m2": (3, 2)}


def grid(points: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``points`` densities log-spaced from 1 to 0.01 and relative importances from 0.1 to 10."""
    densities = tuple(float(f"{d:.4g}") for d in np.geomspace(1.0, 0.01, points))
    importances = tuple(float(f"{r:.4g}") for r in np.geomspace(0.1, 10.0, points))
    return densities, importances


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run per model: the paper's 40 x 40 grid (quick: 12 x 12), 3 seeds per point."""
    densities, importances = grid(12 if quick else 40)
    return {
        name: RunConfig(
            data=DataConfig(n_features=n, density=densities, relative_importance=importances),
            model=ModelConfig(kind="relu", n_hidden=m),
            train=TrainConfig(
                instances=3,
                steps=4000 if quick else 10_000,
                lr=1e-3,
                eval_samples=10_000 if quick else 20_000,
            ),
        )
        for name, (n, m) in MODELS.items()
    }


@dataclass(frozen=True)
class Diagrams:
    """Empirical and theoretical phase labels of one model on its grid, ``[importance, density]``
    indices into :data:`theory.PHASES`."""

    n: int
    m: int
    densities: np.ndarray
    relative_importances: np.ndarray
    empirical: np.ndarray
    theoretical: np.ndarray
    """The cheapest candidate, the antipodal pair's scale and bias optimised."""
    extra_norm: np.ndarray
    """Norm of the extra feature in the best instance of each point."""
    plain: np.ndarray
    """The cheapest of the paper's plain candidates (the pair at scale 1, bias 0)."""

    @property
    def agreement(self) -> float:
        return float((self.empirical == self.theoretical).mean())

    @property
    def agreement_plain(self) -> float:
        return float((self.empirical == self.plain).mean())


def diagrams(run: Run) -> Diagrams:
    """Classify the best instance of every grid point and compute the theory on the same grid."""
    cfg = run.config
    densities = np.array(cfg.data.density)
    importances = np.array(cfg.data.relative_importance)
    best = run.best()
    labels = theory.classify_extra_feature(run.W[best])
    index = {name: i for i, name in enumerate(theory.PHASES)}
    # groups run density-major then relative importance: reshape to [density, importance]
    shape = (len(densities), len(importances))
    empirical = np.array([index[label] for label in labels]).reshape(shape).T
    norms = run.W[best][:, -1].norm(dim=-1).numpy().reshape(shape).T
    n, m = cfg.data.n_features, cfg.model.n_hidden
    theoretical = theory.phase_diagram(n, m, densities, importances).labels
    plain = theory.phase_diagram(n, m, densities, importances, optimise=False).labels
    return Diagrams(n, m, densities, importances, empirical, theoretical, norms, plain)


def claims(runs: dict[str, Run]) -> list[Claim]:
    out = []
    superposition = theory.PHASES.index("superposition")
    for run in runs.values():
        d = diagrams(run)
        n, m = run.config.data.n_features, run.config.model.n_hidden
        model = f"n={n}, m={m}"
        dense = d.densities == d.densities.max()
        dense_sup = int((d.empirical[:, dense] == superposition).sum())
        out.append(
            Claim(
                section=SECTION,
                text=f"Sparsity is necessary for superposition ({model}): with dense features the "
                "extra feature is never stored in superposition.",
                measured=f"{dense_sup} of {int(dense.sum()) * len(d.relative_importances)} "
                f"points at density {d.densities.max():g} in superposition",
                holds=dense_sup == 0,
            )
        )
        seen_ids = set(d.empirical.ravel().tolist())
        seen = [theory.PHASES[i] for i in sorted(seen_ids)]
        sparse_sup = int((d.empirical[:, d.densities <= 0.1] == superposition).sum())
        out.append(
            Claim(
                section=SECTION,
                text=f"There is a phase change ({model}): depending on density and relative "
                "importance the extra feature is not represented, gets a dedicated dimension, or "
                "is stored in superposition, which appears as features get sparse.",
                measured=f"phases seen: {', '.join(seen)}; {sparse_sup} points in superposition "
                "at density <= 0.1",
                holds={0, 1, 2} <= seen_ids and sparse_sup > 0,
            )
        )
        out.append(
            Claim(
                section=SECTION,
                text=f"The theory (the cheapest candidate solution) predicts the empirical phase "
                f"diagram ({model}).",
                measured=f"empirical and theoretical labels agree on {d.agreement:.0%} of "
                f"{d.empirical.size} grid points (with the paper's plain candidates: "
                f"{d.agreement_plain:.0%})",
                holds=d.agreement >= 0.75,
            )
        )
    return out
