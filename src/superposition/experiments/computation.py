"""Section 8, "Computation in Superposition": a ReLU hidden layer computing |x| of signed features.

Setting (Elhage et al. 2022, Section 8): the untied ``abs`` model, ``h = ReLU(W1 x)``,
``y' = ReLU(W2 h + b)``, target ``|x|``, features uniform in [-1, 1] when present.

* ``dense``: n = 3 features, m = 6 neurons, density 1. The paper's claim: every feature gets two
  neurons, one computing ReLU(x) and one ReLU(-x), whose sum is |x|.
* ``sparse``: n = 100, m = 40, importance 0.8**i over the Section 2 densities (quick: n = 20,
  m = 8, which keeps the ratio of neurons to features small enough to force superposition). The
  claims: neurons become polysemantic as sparsity grows, the most important features keeping
  monosemantic neurons longest; and at high sparsity the *asymmetric superposition* motif appears
  (see :func:`asymmetric_motifs` for the detection rule).

Our W stores the encoder W1 as ``W[feat, neuron]`` (row i: feature i's weights into the neurons) and
the decoder W2 as ``W_dec[feat, neuron]`` (row i: how each neuron writes to output i).
"""

from dataclasses import dataclass

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "computation"
TITLE = "Computation in superposition: the absolute-value model"
SECTION = "Section 8"
DENSE = "dense"
SPARSE = "sparse"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
"""The Section 2 densities."""
MONOSEMANTIC = 0.9
"""A neuron is monosemantic when one feature holds at least this share of its squared weights."""


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The two runs; ``quick`` shrinks the sparse model to 20 features in 8 neurons."""
    dense = RunConfig(
        data=DataConfig(n_features=3, density=(1.0,)),
        model=ModelConfig(kind="abs", n_hidden=6),
        train=TrainConfig(
            # a feature can get stuck with two same-sign neurons (a local minimum); best of many
            instances=12 if quick else 32,
            steps=2500 if quick else 10_000,
            eval_samples=10_000 if quick else 20_000,
        ),
    )
    n, m = (20, 8) if quick else (100, 40)
    sparse = RunConfig(
        data=DataConfig(n_features=n, density=DENSITIES, importance_decay=(0.8,)),
        model=ModelConfig(kind="abs", n_hidden=m),
        train=TrainConfig(
            # the full 100 x 40 model is costly at density 1: one seed there
            instances=2 if quick else 1,
            steps=2500 if quick else 10_000,
            eval_samples=10_000 if quick else 20_000,
        ),
    )
    return {DENSE: dense, SPARSE: sparse}


# --------------------------------------------------------------------------------------------------
# Analysis helpers (one instance at a time: W and W_dec are [feat, neuron])


def sign_neurons(
    W: Float[Tensor, "feat neuron"], threshold: float = MONOSEMANTIC
) -> list[tuple[int, int] | None]:
    """For each feature, a (ReLU(x) neuron, ReLU(-x) neuron) pair or None (Section 8, dense case).

    A neuron belongs to feature i when i holds at least ``threshold`` of its squared input weights
    (it is monosemantic for i); it computes ReLU(x_i) when its weight on i is positive and
    ReLU(-x_i) when negative. Feature i gets a pair when it owns a neuron of each sign (the
    strongest of each sign is reported).
    """
    share = geometry.neuron_monosemanticity(W[None])[0]
    dominant = W.pow(2).argmax(0)
    out: list[tuple[int, int] | None] = []
    for i in range(W.shape[0]):
        pos = [(float(W[i, k]), k) for k in range(W.shape[1])
               if int(dominant[k]) == i and float(share[k]) >= threshold and float(W[i, k]) > 0]
        neg = [(-float(W[i, k]), k) for k in range(W.shape[1])
               if int(dominant[k]) == i and float(share[k]) >= threshold and float(W[i, k]) < 0]
        out.append((max(pos)[1], max(neg)[1]) if pos and neg else None)
    return out


@dataclass(frozen=True)
class Motif:
    """One asymmetric superposition motif (Section 8)."""

    neuron: int
    """The neuron storing two features."""
    strong: int
    """The feature with the larger input weight on it."""
    weak: int
    """The feature with the smaller input weight."""
    ratio: float
    """weak / strong input weight (both taken on the sign that makes the neuron fire)."""
    inhibitor: int
    """The neuron that cancels the strong feature's interference on the weak one's output."""
    interference: float
    """What the storing neuron adds to the weak feature's output per unit of the strong feature."""
    cancelled: float
    """What the inhibitor adds there (negative), per unit of the strong feature."""

    def describe(self) -> str:
        return (
            f"neuron {self.neuron} stores features {self.strong} and {self.weak} "
            f"(weight ratio {self.ratio:.2f}); neuron {self.inhibitor} cancels "
            f"{-self.cancelled / self.interference:.0%} of the interference "
            f"({self.interference:+.2f} vs {self.cancelled:+.2f})"
        )


def asymmetric_motifs(
    W: Float[Tensor, "feat neuron"],
    W_dec: Float[Tensor, "feat neuron"],
    *,
    min_ratio: float = 0.2,
    max_ratio: float = 0.8,
    min_cancel: float = 0.5,
    min_pair_share: float = 0.5,
) -> list[Motif]:
    """Find the asymmetric superposition motif in one abs model (Section 8).

    Detection rule. A signed feature (i, s) drives neuron n with ``a = ReLU(s * W[i, n])``.

    1. *Storage*: neuron n's two largest drives come from two different features, the strong one
       i (drive a) and the weak one j (drive c), with ``min_ratio <= c / a <= max_ratio`` (both
       stored, unequally), the two hold at least ``min_pair_share`` of n's squared input weights
       (n stores mainly these two), and n writes positively to both outputs (``W_dec[i, n] > 0``
       and ``W_dec[j, n] > 0``).
    2. *Harmful interference*: when i alone is active, n adds ``W_dec[j, n] * a`` (> 0) to the weak
       feature's output; the output ReLU cannot remove positive interference.
    3. *Inhibition*: another neuron k that fires on the same signed feature (i, s) writes
       negatively to output j, cancelling at least ``min_cancel`` of it:
       ``W_dec[j, k] * ReLU(s * W[i, k]) <= -min_cancel * W_dec[j, n] * a``.

    Each (storing neuron, inhibitor) is reported once, with its best-cancelling inhibitor.
    """
    W = W.detach().to(torch.float64)
    D = W_dec.detach().to(torch.float64)
    n_feat, n_neur = W.shape
    found = []
    for n in range(n_neur):
        col = W[:, n].abs()
        if n_feat < 2 or float(col.max()) <= 0:
            continue
        top = torch.argsort(col, descending=True)[:2].tolist()
        i, j = top
        a, c = float(col[i]), float(col[j])
        if not (min_ratio <= c / a <= max_ratio):
            continue
        if a * a + c * c < min_pair_share * float(col.pow(2).sum()):
            continue
        if not (float(D[i, n]) > 0 and float(D[j, n]) > 0):
            continue
        s = 1.0 if float(W[i, n]) > 0 else -1.0
        interference = float(D[j, n]) * a
        drives = torch.relu(s * W[i])  # how (i, s) drives every neuron
        cancel = D[j] * drives
        cancel[n] = 0.0
        k = int(torch.argmin(cancel))
        if float(cancel[k]) <= -min_cancel * interference:
            found.append(Motif(n, i, j, c / a, k, interference, float(cancel[k])))
    return found


def monosemantic_share(
    W: Float[Tensor, "feat neuron"], threshold: float = MONOSEMANTIC
) -> tuple[list[int], list[int]]:
    """Dominant features of the live monosemantic neurons and of the live polysemantic ones."""
    share = geometry.neuron_monosemanticity(W[None])[0]
    dominant = W.pow(2).argmax(0)
    mono = [int(dominant[k]) for k in range(W.shape[1]) if float(share[k]) >= threshold]
    poly = [int(dominant[k]) for k in range(W.shape[1]) if 0 < float(share[k]) < threshold]
    return mono, poly


def longest_monosemantic(mono: list[list[int]]) -> tuple[list[int], list[int], int]:
    """Given the dominant features of the monosemantic neurons at each density, dense to sparse:
    the features with one at the densest, those of them that still have one at the sparsest
    density where any feature does, and that density's position."""
    start = sorted(set(mono[0]))
    last = max((p for p, m in enumerate(mono) if m), default=0)
    survivors = sorted(set(mono[last]) & set(start))
    return start, survivors, last


def _features(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


# --------------------------------------------------------------------------------------------------


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Section 8's claims on the best instance of each group."""
    out = []
    dense = runs[DENSE]
    k = dense.best()[0]
    pairs = sign_neurons(dense.W[k])
    n = dense.config.data.n_features
    got = [f"feature {i}: neurons {p}" for i, p in enumerate(pairs) if p is not None]
    out.append(
        Claim(
            section=SECTION,
            text=(
                "Dense features, n=3 in m=6 neurons: each feature gets a ReLU(x) neuron and a "
                "ReLU(-x) neuron."
            ),
            measured=(
                f"{sum(p is not None for p in pairs)} of {n} features have a monosemantic "
                f"positive-weight and negative-weight neuron ({'; '.join(got) or 'none'})"
            ),
            holds=all(p is not None for p in pairs),
        )
    )

    sparse = runs[SPARSE]
    best = sparse.best()
    dens = [g.density for g in sparse.config.groups]
    m = sparse.config.model.n_hidden
    split = [monosemantic_share(sparse.W[i]) for i in best]
    counts = [len(mono) for mono, _ in split]
    order = sorted(range(len(dens)), key=lambda g: -dens[g])  # dense to sparse
    c_dense, c_sparse = counts[order[0]], counts[order[-1]]
    trend = float(
        torch.corrcoef(torch.tensor([[float(g) for g in range(len(order))],
                                     [float(counts[g]) for g in order]]))[0, 1]
    ) if len(set(counts)) > 1 else 0.0
    out.append(
        Claim(
            section=SECTION,
            text="Neurons become polysemantic as sparsity grows.",
            measured=(
                "monosemantic neurons (of "
                f"{m}) from dense to sparse: "
                + ", ".join(f"{dens[g]:g}: {counts[g]}" for g in order)
                + f" (correlation with sparsity rank {trend:+.2f})"
            ),
            holds=c_dense >= m // 2 and c_sparse < c_dense and trend < 0,
        )
    )

    # "Longest" read directly: the features whose monosemantic neurons survive to the sparsest
    # density that has any are compared with all the features that had one in the densest model.
    # (Comparing the dominant features of monosemantic and polysemantic neurons at one density
    # instead is confounded: the most important features dominate polysemantic neurons too.)
    start, survivors, last = longest_monosemantic([split[g][0] for g in order])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The most important features keep monosemantic neurons longest as sparsity grows."
            ),
            measured=(
                f"features with a monosemantic neuron at density {dens[order[0]]:g}: "
                f"{_features(start)} (mean index {mean(start):.1f}); the last to keep one, at "
                f"density {dens[order[last]]:g}: {_features(survivors)} (mean index "
                f"{mean(survivors):.1f}; lower index = more important)"
                if start and survivors
                else "no monosemantic neuron in the densest model"
            ),
            holds=bool(start) and bool(survivors) and last > 0 and mean(survivors) < mean(start),
        )
    )

    W_dec = sparse.params["W_dec"]
    motifs = [
        (dens[g], motif)
        for g, i in enumerate(best)
        if dens[g] < 1
        for motif in asymmetric_motifs(sparse.W[i], W_dec[i])
    ]
    shown = "; ".join(f"density {d:g}: {mo.describe()}" for d, mo in motifs[:3])
    out.append(
        Claim(
            section=SECTION,
            text=(
                "Asymmetric superposition: a neuron stores two features with unequal weights and "
                "another neuron inhibits the harmful interference."
            ),
            measured=(
                f"{len(motifs)} motif(s) found in the sparse models"
                + (f", e.g. {shown}" if motifs else "")
            ),
            holds=bool(motifs),
        )
    )
    return out
