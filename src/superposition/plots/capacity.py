"""Figure of the capacity experiment (Scherlis et al. 2022): each feature's capacity against its
importance rank at every kurtosis, trained (best seed) beside the closed-form optimum."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition.experiments import capacity as exp
from superposition.results import Run


def capacities(runs: dict[str, Run]) -> Figure:
    """Left: capacity of each feature (most important first) at each kurtosis, the closed form
    as lines, the best trained seed as dots. Right: the marginal loss benefit of each feature at
    its closed-form capacity, which the fractional features share (water-filling)."""
    run = runs["quadratic"]
    pts = exp.points(run)
    decay = run.config.data.importance_decay[0]
    v = np.array(run.config.data.feature_importances(decay))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(pts)))
    for p, c in zip(pts, colours, strict=True):
        x = np.arange(1, len(p.theory) + 1)
        label = f"kurtosis {p.kurtosis:.3g} (density {p.density:g})"
        left.plot(x, p.theory, "-", color=c, label=label)
        left.plot(x, p.trained, "o", color=c, markersize=5)
        benefit = exp.marginal_benefit(v, p.theory, p.kurtosis)
        right.plot(x, benefit / benefit.max(), "o-", color=c, markersize=4)
    left.axhspan(exp.NONE, exp.WHOLE, color="0.93", zorder=0)
    left.set_xlabel(f"feature, by importance (v_i = {decay:g}^i)")
    left.set_ylabel("capacity C_i = D_i")
    left.set_ylim(-0.05, 1.05)
    left.set_title("lines: closed-form optimum; dots: trained (best seed)", fontsize=9)
    left.legend(fontsize=7, loc="upper right")
    right.set_xlabel("feature, by importance")
    right.set_ylabel("marginal loss benefit at the optimum (relative)")
    right.set_yscale("log")
    right.set_title("fractional features share one benefit (water-filling)", fontsize=9)
    n, m = run.config.data.n_features, run.config.model.n_hidden
    fig.suptitle(f"Polysemanticity and capacity: the quadratic model, {n} features in {m} neurons")
    return fig


FIGURES = {"capacities": capacities}
