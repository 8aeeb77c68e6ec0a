"""Section 5, "Superposition and Learning Dynamics": feature dimensionalities over training.

Setting (Elhage et al. 2022, Section 5): weights are snapshot every few dozen steps and the
loss is recomputed at every snapshot on one fixed held-out sample (so the loss curve carries no
batch noise).

- ``correlated``: n = 6 features in m = 3 dimensions, two correlated sets of three, ReLU output;
  the paper shows it passing through several geometric stages, with the loss dropping at each
  transition.
- ``uniform``: uniform superposition, many features at a density where they are in superposition
  (n = 200, m = 20 in the full run; n = 20, m = 5 in the quick one); the paper plots every
  feature's dimensionality against training steps.

Measures (pure functions below, shared by figures and claims):

- *near a fraction*: the share of (snapshot, represented feature) pairs whose D_i lies within
  ``TOL`` of one of the named fractions (0, 3/8, 2/5, 1/2, 2/3, 3/4, 1), against the share of
  [0, 1] those windows cover (what values spread evenly would score);
- *jump concentration*: the share of all movement of D (sum over features of ``|D(t+1) - D(t)|``)
  that happens in the busiest 10% of snapshot intervals (0.1 for steady drift, near 1 for steps);
- *coincidence*: the Spearman correlation, over snapshot intervals, between how much D moves and how
  much the loss drops, and the loss drop in the busiest intervals against the median interval;
- *stages*: the :func:`superposition.geometry.classify` labels over snapshots, keeping those that
  last at least ``MIN_STAGE`` consecutive snapshots.
"""

import itertools
from typing import Any

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.models import ToyModel
from superposition.results import Claim, Run
from superposition.rng import derive_seed

NAME = "learning-dynamics"
TITLE = "Section 5: superposition and learning dynamics"
SECTION = "Section 5"
CORRELATED = "correlated"
UNIFORM = "uniform"

FRACTIONS: dict[str, float] = {
    "0": 0.0, "3/8": 3 / 8, "2/5": 2 / 5, "1/2": 1 / 2, "2/3": 2 / 3, "3/4": 3 / 4, "1": 1.0
}
"""Dimensionalities of the named equal-norm tight frames (Section 4), and 0 and 1."""
TOL = 0.03
TOP = 0.1
"""Share of snapshot intervals counted as the busiest."""
SKIP = 0.1
"""Share of the first snapshot intervals left out of the movement measures: everything moves while
the model leaves its random initialisation, which says nothing about jumps."""
MIN_STAGE = 5
EVAL_SAMPLES = 8192


def _train(steps: int, every: int, instances: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=1024,
        instances=instances,
        log_every=every,
        snapshot_steps=tuple(range(0, steps + 1, every)),
        eval_samples=10_000,
    )


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The two runs; ``quick`` shrinks the uniform model and trains fewer steps and seeds."""
    correlated = RunConfig(
        data=DataConfig(n_features=6, density=(0.03,), correlated=(3, 3)),
        model=ModelConfig(kind="relu", n_hidden=3),
        train=_train(4000 if quick else 10_000, 25, 3 if quick else 6),
    )
    n, m = (20, 5) if quick else (200, 20)
    uniform = RunConfig(
        data=DataConfig(n_features=n, density=(0.05,)),
        model=ModelConfig(kind="relu", n_hidden=m),
        train=_train(3000 if quick else 10_000, 25 if quick else 50, 1),
    )
    return {CORRELATED: correlated, UNIFORM: uniform}


# --------------------------------------------------------------------------------------------------
# measures (pure functions on tensors)


def snapshot_losses(run: Run, samples: int = EVAL_SAMPLES) -> Float[Tensor, "snap inst"]:
    """Every instance's loss at every snapshot, on one fixed held-out sample per instance."""
    cfg = run.config
    gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "learning-dynamics-eval"))
    x = FeatureDistribution.from_config(cfg).sample(samples, gen)
    importance = importance_from_config(cfg)
    W, b = run.snapshots["W"], run.snapshots["b"]
    dec = run.snapshots.get("W_dec")
    with torch.no_grad():
        return torch.stack(
            [
                ToyModel(cfg.model.kind, W[s], b[s], None if dec is None else dec[s]).loss(
                    x, importance
                )
                for s in range(W.shape[0])
            ]
        )


def near_fraction(
    dims: Float[Tensor, "snap feat"], live: Tensor, tol: float = TOL
) -> tuple[float, float]:
    """Share of live (snapshot, feature) pairs with D within ``tol`` of a named fraction, and the
    share of [0, 1] the same windows cover (the score of evenly spread values)."""
    frac = torch.tensor(list(FRACTIONS.values()), dtype=dims.dtype)
    close = ((dims[..., None] - frac).abs() <= tol).any(-1)
    share = float(close[live].float().mean()) if bool(live.any()) else 0.0
    grid = torch.linspace(0, 1, 10_001, dtype=torch.float64)
    chance = float(((grid[:, None] - frac.double()).abs() <= tol).any(-1).double().mean())
    return share, chance


def movement(dims: Float[Tensor, "snap feat"]) -> Float[Tensor, " interval"]:
    """How much the dimensionalities move in each snapshot interval, ``sum_i |D_i(t+1) - D_i(t)|``.
    """
    return (dims[1:] - dims[:-1]).abs().sum(-1)


def concentration(moves: Float[Tensor, " interval"], top: float = TOP) -> float:
    """Share of all movement in the busiest ``top`` share of intervals."""
    k = max(1, round(top * len(moves)))
    total = float(moves.sum())
    return float(torch.topk(moves, k).values.sum()) / total if total > 0 else 0.0


def spearman(a: Float[Tensor, " n"], b: Float[Tensor, " n"]) -> float:
    """Spearman rank correlation (ties broken by order)."""

    def ranks(v: Tensor) -> Tensor:
        r = torch.empty(len(v), dtype=torch.float64)
        r[torch.argsort(v)] = torch.arange(len(v), dtype=torch.float64)
        return r - r.mean()

    ra, rb = ranks(a), ranks(b)
    denom = float((ra.square().sum() * rb.square().sum()).sqrt())
    return float((ra * rb).sum()) / denom if denom > 0 else 0.0


def coincidence(
    moves: Float[Tensor, " interval"], loss: Float[Tensor, " snap"], top: float = TOP
) -> tuple[float, float]:
    """Whether D moves when the loss drops: the Spearman correlation between movement and loss
    drop over intervals, and the mean loss drop in the busiest ``top`` intervals divided by the
    median interval's drop."""
    drop = loss[:-1] - loss[1:]
    rho = spearman(moves, drop)
    k = max(1, round(top * len(moves)))
    busiest = torch.topk(moves, k).indices
    median = float(drop.median())
    ratio = float(drop[busiest].mean()) / median if median > 0 else float("inf")
    return rho, ratio


def stages(labels: list[str], min_len: int = MIN_STAGE) -> list[tuple[str, int, int]]:
    """Runs of one geometry label lasting at least ``min_len`` snapshots: (label, first, last)."""
    out, pos = [], 0
    for label, group in itertools.groupby(labels):
        length = len(list(group))
        if length >= min_len:
            out.append((label, pos, pos + length - 1))
        pos += length
    return out


def analyse(run: Run, instance: int | None = None) -> dict[str, Any]:
    """All the measures for one instance (default: the best of the first group)."""
    k = run.best()[0] if instance is None else instance
    W = run.snapshots["W"][:, k]
    dims = geometry.feature_dimensionality(W)
    live = geometry.feature_norms(W) >= 0.5
    loss = snapshot_losses(run)[:, k]
    skip = round(SKIP * (len(dims) - 1))
    moves = movement(dims)[skip:]
    share, chance = near_fraction(dims, live)
    rho, ratio = coincidence(moves, loss[skip:])
    labels = [g.label for g in geometry.classify(W)]
    return {
        "instance": k,
        "steps": list(run.config.train.snapshot_steps),
        "dims": dims,
        "loss": loss,
        "moves": moves,
        "near_fraction": share,
        "chance": chance,
        "concentration": concentration(moves),
        "spearman": rho,
        "drop_ratio": ratio,
        "labels": labels,
        "stages": stages(labels),
    }


def _summary(name: str, a: dict[str, Any]) -> str:
    return (
        f"{name}: D near a named fraction {a['near_fraction']:.0%} of the time (evenly spread "
        f"values: {a['chance']:.0%}); after the first {SKIP:.0%} of training, the busiest "
        f"{TOP:.0%} of intervals hold "
        f"{a['concentration']:.0%} of D's movement; movement vs loss drop Spearman "
        f"{a['spearman']:.2f}, loss drop in the busiest intervals {a['drop_ratio']:.1f}x the median"
    )


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Plateaus and jumps (judged on the n = 6 model, the uniform one reported alongside), jumps
    with loss drops, and at least two geometric stages."""
    corr = analyse(runs[CORRELATED])
    uni = analyse(runs[UNIFORM])
    cfg_u = runs[UNIFORM].config
    plateau = corr["near_fraction"] >= 2 * corr["chance"] and corr["concentration"] >= 2 * TOP
    names = [s[0] for s in corr["stages"]]
    distinct = list(dict.fromkeys(names))
    return [
        Claim(
            section=SECTION,
            text="Feature dimensionalities sit on plateaus at named fractions and move in jumps "
            "(judged on the n=6, m=3 model).",
            measured=_summary("n=6, m=3", corr)
            + "; "
            + _summary(f"uniform n={cfg_u.data.n_features}, m={cfg_u.model.n_hidden}", uni),
            holds=plateau,
        ),
        Claim(
            section=SECTION,
            text="The large changes of dimensionality coincide with drops in the loss.",
            measured=_summary("n=6, m=3", corr),
            holds=corr["spearman"] > 0.3 and corr["drop_ratio"] > 2,
        ),
        Claim(
            section=SECTION,
            text="The n=6, m=3 model with two correlated sets of three passes through several "
            "geometric stages.",
            measured=(
                f"stages lasting >= {MIN_STAGE} snapshots: "
                + " -> ".join(
                    f"{lab} (steps {corr['steps'][a]}-{corr['steps'][b]})"
                    for lab, a, b in corr["stages"]
                )
            ),
            holds=len(distinct) >= 2,
        ),
    ]
