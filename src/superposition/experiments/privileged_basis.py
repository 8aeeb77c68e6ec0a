"""Section 7, "Superposition in a Privileged Basis": neurons, monosemantic and polysemantic.

Setting (Elhage et al. 2022, Section 7): the privileged model ``h = ReLU(W x)``,
``x' = ReLU(W^T h + b)`` (tied, no hidden bias), n = 10 features, m = 5 neurons, importance
0.75**i, a range of densities, best of several seeds per density by held-out loss. The hidden ReLU
makes the neuron basis privileged, so one can ask whether a neuron responds to one feature
(monosemantic) or several (polysemantic). The paper's claim: when features are dense the neurons
are monosemantic, and they become polysemantic as sparsity grows.

A neuron's monosemanticity is the share of its squared weights held by its largest feature
(:func:`superposition.geometry.neuron_monosemanticity`); it is monosemantic at
:data:`MONOSEMANTIC` or more.
"""

import torch

from superposition import geometry
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "privileged-basis"
TITLE = "Superposition in a privileged basis: monosemantic and polysemantic neurons"
SECTION = "Section 7"
RUN = "privileged"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
"""The Section 2 densities (full run)."""
QUICK_DENSITIES = (1.0, 0.3, 0.03, 0.003)
MONOSEMANTIC = 0.9
"""A neuron is monosemantic when one feature holds at least this share of its squared weights."""


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The one run; ``quick`` trains fewer densities and seeds. Both keep 10,000 steps: in the dense
    regime the hidden ReLU barely penalises a rotated basis (pre-activations are mostly positive),
    so the neurons align with the features only slowly."""
    config = RunConfig(
        data=DataConfig(
            n_features=10, density=QUICK_DENSITIES if quick else DENSITIES,
            importance_decay=(0.75,),
        ),
        model=ModelConfig(kind="privileged", n_hidden=5),
        train=TrainConfig(
            instances=2 if quick else 8,
            steps=10_000,
            eval_samples=10_000 if quick else 20_000,
        ),
    )
    return {RUN: config}


def monosemantic_fraction(run: Run) -> list[float]:
    """Per group, the share of the best instance's live neurons that are monosemantic."""
    out = []
    for k in run.best():
        share = geometry.neuron_monosemanticity(run.W[k : k + 1])[0]
        live = share > 0
        mono = share >= MONOSEMANTIC
        out.append(float(mono.sum()) / max(1, int(live.sum())))
    return out


def mean_monosemanticity(run: Run) -> list[float]:
    """Per group, the best instance's mean neuron monosemanticity over live neurons."""
    out = []
    for k in run.best():
        share = geometry.neuron_monosemanticity(run.W[k : k + 1])[0]
        live = share > 0
        out.append(float(share[live].mean()) if bool(live.any()) else 0.0)
    return out


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Section 7's claims on the best instance of each density."""
    run = runs[RUN]
    dens = [g.density for g in run.config.groups]
    order = sorted(range(len(dens)), key=lambda g: -dens[g])  # dense to sparse
    frac = monosemantic_fraction(run)
    mean = mean_monosemanticity(run)
    dense, sparse = order[0], order[-1]
    seq = [mean[g] for g in order]
    ranks = torch.tensor([[float(r) for r in range(len(order))], seq])
    trend = float(torch.corrcoef(ranks)[0, 1]) if len(set(seq)) > 1 else 0.0
    m = run.config.model.n_hidden
    k = run.best()[dense]
    share = geometry.neuron_monosemanticity(run.W[k : k + 1])[0]
    owners = sorted(int(i) for i in run.W[k].pow(2).argmax(0)[share >= MONOSEMANTIC])
    return [
        Claim(
            section=SECTION,
            text="When features are dense, each neuron represents a single feature (monosemantic).",
            measured=(
                f"density {dens[dense]:g}: {frac[dense]:.0%} of the {m} neurons monosemantic "
                f"(features {owners}), mean monosemanticity {mean[dense]:.2f}"
            ),
            holds=frac[dense] >= 0.8,
        ),
        Claim(
            section=SECTION,
            text="As sparsity grows, neurons become polysemantic.",
            measured=(
                "monosemantic share / mean monosemanticity from dense to sparse: "
                + ", ".join(f"{dens[g]:g}: {frac[g]:.0%} / {mean[g]:.2f}" for g in order)
                + f" (correlation with sparsity rank {trend:+.2f})"
            ),
            holds=frac[sparse] < frac[dense] and mean[sparse] < mean[dense] - 0.2 and trend < -0.5,
        ),
    ]
