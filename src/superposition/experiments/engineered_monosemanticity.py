"""Engineering monosemanticity: the architectural approach (Jermyn, Schiefer and Hubinger 2022,
"Engineering Monosemanticity in Toy Models").

Elhage et al. 2022 (Section 9) list making models without superposition, or with monosemantic
neurons, as one way out of polysemanticity. Jermyn et al. train toy models whose hidden layer is
ReLU neurons with biases and a linear read-out, and report that (i) equally good models (the same
loss) can differ in how monosemantic their neurons are, depending on which minimum training finds;
(ii) the more monosemantic minima have moderately negative neuron biases, so initialising the
biases negative engineers monosemantic models; (iii) more neurons give more monosemantic models.

Setting here: the ``mlp`` model ``h = ReLU(W^T G x + c)``, ``x' = W_dec h + b``: n = 12
independent features of density 0.05 (importance 1) read through a fixed random projection to
d = 6 dimensions (``G = P P^T``, the paper's feature decoder: the neurons must undo the overlap
the projection makes), trained with each of two neuron-bias initialisations (0 and
:data:`NEGATIVE`) and k = 6, 12, 24, 48 neurons, two seeds each.

Monosemanticity is read from each neuron's responses to one-feature inputs,
``r[i, n] = ReLU(W[i, n] + c[n])`` (feature i alone at its largest value, 1;
:func:`superposition.geometry.neuron_responses`): a neuron is **monosemantic** when its top
feature holds at least :data:`MONOSEMANTIC` of its squared responses, **dead** when it answers no
feature. A model's *monosemantic share* is the share of its live neurons that are monosemantic.
*Equal loss* means normalised held-out losses (loss over the loss of the all-zero output) within
:data:`EQUAL_LOSS`.
"""

import itertools

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.experiments.adversarial import spearman
from superposition.results import Claim, Run
from superposition.training import model_overlap

NAME = "engineered-monosemanticity"
TITLE = "Engineering monosemanticity: neuron count and neuron biases (Jermyn et al. 2022)"
SECTION = "Jermyn et al. 2022"
N_FEATURES = 12
N_INPUTS = 6
"""Dimensions of the fixed random projection the features are read through (d < n)."""
DENSITY = 0.05
NEURONS = (6, 12, 24, 48)
QUICK_NEURONS = (6, 24)
NEGATIVE = -0.3
"""The negative neuron-bias initialisation (the other route starts the biases at 0)."""
BIAS_INITS = (0.0, NEGATIVE)
MONOSEMANTIC = 0.9
"""A neuron is monosemantic when its top feature holds at least this share of its squared
responses (the threshold of the Section 7 experiment)."""
EQUAL_LOSS = 0.02
"""Two models have equal loss when their normalised losses differ by less than this."""
DIFFERENT = 0.25
"""Two models differ in monosemanticity when their monosemantic shares differ by at least this."""


def run_name(k: int, bias_init: float) -> str:
    return f"k{k}-bias{bias_init:g}"


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run per (neuron count, bias initialisation)."""
    out = {}
    for k, c0 in itertools.product(QUICK_NEURONS if quick else NEURONS, BIAS_INITS):
        out[run_name(k, c0)] = RunConfig(
            data=DataConfig(n_features=N_FEATURES, density=(DENSITY,)),
            model=ModelConfig(kind="mlp", n_hidden=k, hidden_bias_init=c0, n_inputs=N_INPUTS),
            train=TrainConfig(
                instances=2,
                steps=120 if quick else 3000,
                batch_size=256 if quick else 1024,
                eval_samples=1000 if quick else 10_000,
            ),
        )
    return out


def effective_encoder(run: Run) -> Float[Tensor, "inst feat hidden"]:
    """What feature i alone at value 1 adds to each neuron's pre-activation: ``G W`` through the
    input projection (``W`` without one)."""
    G = model_overlap(run.config)
    return run.W if G is None else G @ run.W


def responses(run: Run) -> Float[Tensor, "inst feat hidden"]:
    """Every instance's neuron responses to one-feature inputs at value 1."""
    return geometry.neuron_responses(effective_encoder(run), run.params.get("b_hidden"))


def measures(run: Run) -> dict[str, Tensor]:
    """Per instance: ``loss`` (normalised by the all-zero output's, ``density / 3`` per feature),
    ``share`` (monosemantic share of the live neurons), ``live`` (live neurons), ``covered``
    (share of the features that own a monosemantic neuron) and ``bias`` (mean neuron bias)."""
    R = responses(run)
    mono = geometry.neuron_monosemanticity(R)  # [inst, hidden]
    live = mono > 0
    is_mono = mono >= MONOSEMANTIC
    n_inst, n_feat, _ = R.shape
    owner = R.pow(2).argmax(1)  # [inst, hidden]
    covered = torch.zeros(n_inst)
    for k in range(n_inst):
        covered[k] = len(set(owner[k][is_mono[k]].tolist())) / n_feat
    density = run.config.data.density[0]
    return {
        "loss": run.loss / (density / 3.0),
        "share": is_mono.sum(-1) / live.sum(-1).clamp_min(1),
        "live": live.sum(-1).float(),
        "covered": covered,
        "bias": run.params["b_hidden"].mean(-1),
    }


def table(runs: dict[str, Run]) -> list[dict[str, float]]:
    """One row per trained model: its neuron count, bias initialisation, seed and measures."""
    rows = []
    for run in runs.values():
        m = measures(run)
        for s in range(run.n_instances):
            rows.append(
                {
                    "k": float(run.config.model.n_hidden),
                    "bias_init": float(run.config.model.hidden_bias_init or 0.0),
                    "seed": float(s),
                    **{key: float(v[s]) for key, v in m.items()},
                }
            )
    return rows


def best_by_k(runs: dict[str, Run], bias_init: float) -> dict[int, dict[str, float]]:
    """For each neuron count, the measures of the best (lowest-loss) model of one route."""
    out: dict[int, dict[str, float]] = {}
    for row in table(runs):
        if row["bias_init"] != bias_init:
            continue
        k = int(row["k"])
        if k not in out or row["loss"] < out[k]["loss"]:
            out[k] = row
    return dict(sorted(out.items()))


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Equal loss with different monosemanticity; the monosemantic share against neuron count."""
    rows = table(runs)
    # the pair of models with equal loss and the largest difference in monosemantic share
    pair, gap = None, -1.0
    for a, b in itertools.combinations(rows, 2):
        if abs(a["loss"] - b["loss"]) < EQUAL_LOSS and abs(a["share"] - b["share"]) > gap:
            pair, gap = (a, b), abs(a["share"] - b["share"])

    def describe(r: dict[str, float]) -> str:
        return (
            f"k={int(r['k'])}, bias init {r['bias_init']:g}, seed {int(r['seed'])}: loss "
            f"{r['loss']:.3f}, {r['share']:.0%} of {int(r['live'])} live neurons monosemantic, "
            f"mean bias {r['bias']:+.2f}"
        )

    equal = (
        f"{describe(pair[0])}; {describe(pair[1])} (loss normalised by the all-zero output's)"
        if pair is not None
        else "no two models have equal loss"
    )
    out = [
        Claim(
            section=SECTION,
            text="Models with equal loss can differ in how monosemantic their neurons are.",
            measured=equal,
            holds=pair is not None and gap >= DIFFERENT,
        )
    ]
    parts, rhos = [], []
    for c0 in BIAS_INITS:
        best = best_by_k(runs, c0)
        ks = list(best)
        shares = torch.tensor([best[k]["share"] for k in ks])
        rho = spearman(torch.tensor(ks, dtype=torch.float64), shares.double())
        rhos.append(rho)
        parts.append(
            f"bias init {c0:g}: "
            + ", ".join(
                f"k={k}: {best[k]['share']:.0%} (covers {best[k]['covered']:.0%} of features, "
                f"loss {best[k]['loss']:.3f})"
                for k in ks
            )
            + f", rank correlation with k {rho:+.2f}"
        )
    out.append(
        Claim(
            section=SECTION,
            text="More neurons give a larger share of monosemantic neurons.",
            measured="best model per neuron count: " + "; ".join(parts),
            holds=all(r > 0.7 for r in rhos),
        )
    )
    return out
