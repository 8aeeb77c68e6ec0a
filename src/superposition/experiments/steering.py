"""Ablating or steering one feature moves the others: interventions on a model in superposition.

A question Elhage et al. 2022 raise (Section 9, "Discussion"): if features are stored in
superposition, an edit aimed at one feature's direction cannot leave the others alone. Setting:
the paper's ReLU-output model (Section 2), n = 20 features in m = 5 dimensions, importance
0.7**i, densities from dense (1) to sparse (0.01), best of several seeds per density; and a
dense model with as many dimensions as features (n = m = 5), whose features are orthogonal.

For each best model and each represented feature i (``||W_i|| >= REPRESENTED``):

- **ablation** projects ``u_i = W_i / ||W_i||`` out of the hidden activation, on samples of the
  model's own distribution in which feature i is present (uniform in [0, 1]);
- **steering** adds ``ALPHA * W_i`` to the hidden activation, on samples in which feature i is
  absent (switching it on).

Collateral change (:func:`superposition.interventions.collateral_change`): the other features'
mean absolute output change per unit of feature i's own, averaged over the represented features.
"""

import functools
import math

import torch

from superposition import geometry, interventions
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution
from superposition.experiments.adversarial import mean_superposition, spearman
from superposition.models import ToyModel
from superposition.results import Claim, Run
from superposition.rng import derive_seed

NAME = "steering"
TITLE = "Ablating or steering one feature moves the others"
SECTION = "Section 9 (open question)"
SWEEP = "relu-sweep"
ORTHOGONAL = "orthogonal"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01)
QUICK_DENSITIES = (1.0, 0.1, 0.01)
ALPHA = 1.0
"""Steering strength: add ``ALPHA * W_i``, what feature i at value ALPHA would add."""
REPRESENTED = 0.5
"""Feature norm from which a feature counts as represented (as in Section 2's figures)."""
SAMPLES = 4096
"""Samples per feature and intervention."""
NONE = 0.02
"""The dense, orthogonal model shows no collateral change: below this share of the intended one."""


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The density sweep (n = 20, m = 5) and the dense orthogonal model (n = m = 5)."""
    train = TrainConfig(
        instances=2 if quick else 4, steps=3000 if quick else 10_000, eval_samples=10_000
    )
    sweep = RunConfig(
        data=DataConfig(
            n_features=20,
            density=QUICK_DENSITIES if quick else DENSITIES,
            importance_decay=(0.7,),
        ),
        model=ModelConfig(kind="relu", n_hidden=5),
        train=train,
    )
    orthogonal = RunConfig(
        data=DataConfig(n_features=5, density=(1.0,), importance_decay=(0.7,)),
        model=ModelConfig(kind="relu", n_hidden=5),
        train=train,
    )
    return {SWEEP: sweep, ORTHOGONAL: orthogonal}


def _with_feature(
    x: Float[Tensor, "inst batch feat"], feature: int, present: bool, generator: torch.Generator
) -> Float[Tensor, "inst batch feat"]:
    x = x.clone()
    if present:
        x[:, :, feature] = 1.0 - torch.rand(x.shape[:2], generator=generator)  # in (0, 1]
    else:
        x[:, :, feature] = 0.0
    return x


def intervene(run: Run, samples: int = SAMPLES) -> dict[str, Tensor]:
    """Ablate and steer every represented feature of each group's best instance.

    Per group: ``density``, ``superposition`` (mean Section 2 measure over represented features),
    ``represented`` (how many), ``ablation`` and ``steering`` (collateral change, mean over the
    represented features; NaN when none is represented) and ``readout`` (the collateral change
    of ablation measured on the outputs' pre-activations, before the output ReLU: reported
    beside the claims, not checked).
    """
    cfg = run.config
    best = run.best()
    W, b = run.W[best], run.b[best]
    dec = run.params["W_dec"][best] if "W_dec" in run.params else None
    model = ToyModel(cfg.model.kind, W, b, dec)
    full = FeatureDistribution.from_config(cfg)
    dist = full.select(best)
    gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "steering"))
    live = geometry.feature_norms(W) >= REPRESENTED  # [group, feat]
    n_groups, n = live.shape
    ablation = torch.zeros(n_groups, n)
    steering = torch.zeros(n_groups, n)
    readout = torch.zeros(n_groups, n)
    with torch.no_grad():
        for i in range(n):
            if not bool(live[:, i].any()):
                continue
            x = dist.sample(samples, gen)
            on = _with_feature(x, i, True, gen)
            off = _with_feature(x, i, False, gen)
            d_abl = interventions.output_change(
                model, on, functools.partial(interventions.ablate_feature, W=W, feature=i)
            )
            d_steer = interventions.output_change(
                model,
                off,
                functools.partial(interventions.steer_feature, W=W, feature=i, alpha=ALPHA),
            )
            d_read = interventions.readout_change(
                model, on, functools.partial(interventions.ablate_feature, W=W, feature=i)
            )
            ablation[:, i] = interventions.collateral_change(d_abl, i)
            readout[:, i] = interventions.collateral_change(d_read, i)
            steering[:, i] = interventions.collateral_change(d_steer, i)
    count = live.sum(-1)

    def mean_over_live(values: Tensor) -> Tensor:
        total = torch.where(live, values.nan_to_num(0.0), 0.0).sum(-1)
        return torch.where(count > 0, total / count.clamp_min(1), math.nan)

    return {
        "density": torch.tensor([g.density for g in cfg.groups]),
        "superposition": mean_superposition(W),
        "represented": count,
        "ablation": mean_over_live(ablation),
        "steering": mean_over_live(steering),
        "readout": mean_over_live(readout),
    }


def claims(runs: dict[str, Run]) -> list[Claim]:
    """No collateral change when features are dense and orthogonal; collateral change that grows
    with superposition as density falls."""
    ortho = intervene(runs[ORTHOGONAL])
    sweep = intervene(runs[SWEEP])
    o_abl, o_steer = float(ortho["ablation"][0]), float(ortho["steering"][0])
    dens, sup = sweep["density"], sweep["superposition"]
    dense, sparse = int(torch.argmax(dens)), int(torch.argmin(dens))
    table = "; ".join(
        f"1-S={float(d):g}: superposition {float(s):.2f}, ablation {float(a):.3f}, "
        f"steering {float(st):.3f}, ablation before the output ReLU {float(r):.3f}"
        for d, s, a, st, r in zip(
            dens, sup, sweep["ablation"], sweep["steering"], sweep["readout"], strict=True
        )
    )
    out = [
        Claim(
            section=SECTION,
            text="When features are dense and orthogonal, ablating or steering one feature "
            "leaves the others unchanged.",
            measured=(
                f"n = m = {runs[ORTHOGONAL].config.model.n_hidden}, density 1: collateral change "
                f"{o_abl:.4f} (ablation), {o_steer:.4f} (steering) of the intended change "
                f"(no collateral change: below {NONE:g})"
            ),
            holds=o_abl < NONE and o_steer < NONE,
        )
    ]
    for what in ("ablation", "steering"):
        c = sweep[what]
        rho = spearman(-dens, c)
        out.append(
            Claim(
                section=SECTION,
                text=f"Collateral change of {what} grows with superposition as density falls.",
                measured=(
                    f"Spearman correlation of sparsity and collateral change {rho:+.2f}; "
                    f"{float(c[sparse]):.3f} at 1-S={float(dens[sparse]):g} vs "
                    f"{float(c[dense]):.3f} at 1-S={float(dens[dense]):g} ({table})"
                ),
                holds=rho > 0.7 and float(c[sparse]) > float(c[dense]) + NONE,
            )
        )
    return out
