"""Figures of the steering experiment: collateral change of ablating and steering one feature
against density, beside the superposition that causes it."""

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from superposition.experiments import steering as exp
from superposition.results import Run


def _describe(run: Run) -> str:
    cfg = run.config
    return (
        f"{cfg.model.kind} model, n={cfg.data.n_features}, m={cfg.model.n_hidden}, importance "
        f"{cfg.groups[0].importance_decay:g}^i, best of {cfg.train.instances} seeds per density; "
        f"steering strength {exp.ALPHA:g}"
    )


def collateral(sweep: Run, orthogonal: Run) -> Figure:
    """Left: collateral change of ablation and steering against density (log axis, sparser to
    the right), ablation's measured before the output ReLU too (grey, dashed), with the dense
    orthogonal model's as reference lines. Right: mean superposition
    of the represented features against density."""
    a = exp.intervene(sweep)
    o = exp.intervene(orthogonal)
    dens = a["density"].numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(dens, a["ablation"].numpy(), "o-", color="C3", label="ablation")
    left.plot(dens, a["steering"].numpy(), "s-", color="C0", label=f"steering (+{exp.ALPHA:g} W_i)")
    left.plot(
        dens,
        a["readout"].numpy(),
        "^--",
        color="0.5",
        label="ablation, before the output ReLU (not a claim)",
    )
    n_o = orthogonal.config.data.n_features
    for what, colour in (("ablation", "C3"), ("steering", "C0")):
        left.axhline(
            float(o[what][0]),
            color=colour,
            ls=":",
            lw=1,
            label=f"{what}, dense orthogonal model (n = m = {n_o})",
        )
    left.set_xscale("log")
    left.invert_xaxis()
    left.set_xlabel("feature density 1-S (sparser to the right)")
    left.set_ylabel("collateral change\n(others' mean |change| / own |change|)")
    left.legend(fontsize=7)
    right.plot(dens, a["superposition"].numpy(), "o-", color="0.3")
    right.set_xscale("log")
    right.invert_xaxis()
    right.set_xlabel("feature density 1-S (sparser to the right)")
    right.set_ylabel("mean superposition $\\sum_{j\\neq i}(\\hat W_i\\cdot W_j)^2$")
    for d, s, k in zip(dens, a["superposition"].numpy(), a["represented"].tolist(), strict=True):
        right.annotate(f"{k} repr.", (d, s), textcoords="offset points", xytext=(4, 4), fontsize=7)
    fig.suptitle(f"Interventions on one feature move the others: {_describe(sweep)}", fontsize=9)
    fig.tight_layout()
    return fig


FIGURES = {"collateral": lambda runs: collateral(runs[exp.SWEEP], runs[exp.ORTHOGONAL])}
