"""Section 2, "Demonstrating Superposition": a linear and a ReLU-output model across sparsity.

Setting (Elhage et al. 2022, Section 2): n = 20 features in m = 5 dimensions, importance 0.7**i,
densities 1 - S in {1, .3, .1, .03, .01, .003, .001}; the linear model ``W^T W x + b`` against the
ReLU-output model ``ReLU(W^T W x + b)``; and a larger ReLU-output model, n = 80 in m = 20 with
importance 0.9**i. The paper's claims: the linear model keeps the m most important features
whatever the sparsity (norm about 1, no superposition), and so does the ReLU model when features
are dense; as they get sparser the ReLU model represents more features, first as antipodal pairs,
then (almost) all of them in superposition, with negative biases; the larger model looks the same.
Best-of-N by held-out loss per density.
"""

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "demonstrating-superposition"
TITLE = "Demonstrating superposition: linear and ReLU-output models across sparsity"
SECTION = "Section 2"
LINEAR = "linear"
RELU = "relu"
LARGE = "relu-80"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
REPRESENTED = 0.5
"""A feature is represented when ``||W_i|| >= REPRESENTED`` (about 1 when it is, 0 when not)."""
SUPERPOSED = 0.1
"""A feature is in superposition when ``sum_{j != i} (W_i_hat . W_j)^2 > SUPERPOSED``."""


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The three runs. ``quick`` trains fewer seeds and steps, the linear model with a larger
    learning rate, and the larger model at three sparse densities only."""
    small = DataConfig(n_features=20, density=DENSITIES, importance_decay=(0.7,))
    eval_samples = 10_000 if quick else 20_000
    linear = RunConfig(
        data=small,
        model=ModelConfig(kind="linear", n_hidden=5),
        # the linear model has no local minima to escape: one seed per density suffices, and quick
        # takes larger steps
        train=TrainConfig(
            instances=1 if quick else 2, steps=1500 if quick else 10_000,
            lr=3e-3 if quick else 1e-3, eval_samples=eval_samples,
        ),
    )
    relu = RunConfig(
        data=small,
        model=ModelConfig(kind="relu", n_hidden=5),
        train=TrainConfig(
            instances=3 if quick else 8, steps=2500 if quick else 10_000,
            eval_samples=eval_samples,
        ),
    )
    large = RunConfig(
        data=DataConfig(
            n_features=80,
            # quick: the sparse end only (on the CPU a step of this model at density >= 0.03 costs
            # more than ten at 0.01)
            density=(0.01, 0.003, 0.001) if quick else DENSITIES,
            importance_decay=(0.9,),
        ),
        model=ModelConfig(kind="relu", n_hidden=20),
        train=TrainConfig(
            # one seed: the claim is a count of represented features, not a fragile geometry, and
            # a dense step of this model is costly
            instances=1, steps=1000 if quick else 10_000,
            eval_samples=eval_samples,
        ),
    )
    return {LINEAR: linear, RELU: relu, LARGE: large}


def represented(W: Float[Tensor, "feat hidden"]) -> list[int]:
    """Features with norm at least :data:`REPRESENTED` (one instance)."""
    norms = geometry.feature_norms(W[None])[0]
    return [i for i, v in enumerate(norms.tolist()) if v >= REPRESENTED]


def superposed(W: Float[Tensor, "feat hidden"]) -> list[int]:
    """Represented features in superposition (one instance)."""
    sup = geometry.superposition(W[None])[0]
    return [i for i in represented(W) if float(sup[i]) > SUPERPOSED]


def _densities(run: Run) -> list[float]:
    return [g.density for g in run.config.groups]


def _keeps_top_m(run: Run) -> tuple[bool, list[str]]:
    """Whether every density's best model represents exactly the m most important features,
    none of them in superposition; and one line per density."""
    m = run.config.model.n_hidden
    ok, lines = True, []
    for d, k in zip(_densities(run), run.best(), strict=True):
        rep, sup = represented(run.W[k]), superposed(run.W[k])
        good = rep == list(range(m)) and not sup
        ok &= good
        lines.append(f"{d:g}: {len(rep)} represented" + (f", {len(sup)} superposed" if sup else ""))
    return ok, lines


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Section 2's claims on the best instance of each density."""
    out = []
    lin = runs[LINEAR]
    m = lin.config.model.n_hidden
    ok, lines = _keeps_top_m(lin)
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The linear model represents the m most important features, without "
                "superposition, whatever the sparsity."
            ),
            measured=f"m={m}; per density: " + "; ".join(lines),
            holds=ok,
        )
    )

    relu = runs[RELU]
    best = relu.best()
    dens = _densities(relu)
    dense = dens.index(max(dens))
    W_dense = relu.W[best[dense]]
    rep, sup = represented(W_dense), superposed(W_dense)
    out.append(
        Claim(
            section=SECTION,
            text="When features are dense, the ReLU-output model also keeps the top m features.",
            measured=(
                f"density {dens[dense]:g}: features {rep} represented, {len(sup)} in superposition"
            ),
            holds=rep == list(range(m)) and not sup,
        )
    )

    shapes = geometry.classify(relu.W[best], REPRESENTED)
    n_rep = [len(represented(relu.W[k])) for k in best]
    order = sorted(range(len(dens)), key=lambda g: -dens[g])  # dense to sparse
    # antipodal stage: more than m features, every interfering set an antipodal pair
    pairs_at = [
        g
        for g in order
        if n_rep[g] > m
        and all(c.name in ("dedicated dimension", "antipodal pair") for c in shapes[g].components)
    ]
    # packed stage: more features than antipodal pairs can hold (2m)
    packed_at = [g for g in order if n_rep[g] > 2 * m]
    stages = bool(pairs_at) and bool(packed_at) and order.index(pairs_at[0]) < order.index(
        packed_at[0]
    )
    out.append(
        Claim(
            section=SECTION,
            text=(
                "As sparsity grows the ReLU-output model represents more features in "
                "superposition, first as antipodal pairs, then more than pairs can hold."
            ),
            measured=(
                "represented features per density: "
                + ", ".join(f"{dens[g]:g}: {n_rep[g]}" for g in order)
                + "; antipodal-pairs only at "
                + (", ".join(f"{dens[g]:g} ({shapes[g].label})" for g in pairs_at) or "none")
            ),
            holds=stages,
        )
    )

    sparse = order[-1]
    W_sparse, b_sparse = relu.W[best[sparse]], relu.b[best[sparse]]
    rep_s = represented(W_sparse)
    neg = [i for i in rep_s if float(b_sparse[i]) < 0]
    n = relu.config.data.n_features
    out.append(
        Claim(
            section=SECTION,
            text=(
                "At high sparsity most features are represented, in superposition, with negative "
                "biases (which filter the interference)."
            ),
            measured=(
                f"density {dens[sparse]:g}: {len(rep_s)} of {n} features represented, "
                f"{len(superposed(W_sparse))} in superposition, {len(neg)} of them with a "
                f"negative bias (mean bias {float(b_sparse[rep_s].mean()) if rep_s else 0.0:+.3f})"
            ),
            holds=len(rep_s) > n / 2
            and len(superposed(W_sparse)) == len(rep_s)
            and len(neg) >= 0.8 * len(rep_s),
        )
    )

    big = runs[LARGE]
    dens_b = _densities(big)
    order_b = sorted(range(len(dens_b)), key=lambda g: -dens_b[g])
    n_rep_b = [len(represented(big.W[k])) for k in big.best()]
    m_b = big.config.model.n_hidden
    seq = [n_rep_b[g] for g in order_b]
    out.append(
        Claim(
            section=SECTION,
            text=(
                f"The larger model (n={big.config.data.n_features}, m={m_b}) behaves the same: "
                "the number of represented features grows with sparsity, beyond m."
            ),
            measured="represented features per density: "
            + ", ".join(f"{dens_b[g]:g}: {n_rep_b[g]}" for g in order_b),
            # grows (up to one feature of noise between neighbours) and ends beyond m; at density
            # 1 it should be about m
            holds=seq[-1] > max(m_b, seq[0])
            and all(b >= a - 1 for a, b in zip(seq, seq[1:], strict=False))
            and (1.0 not in dens_b or abs(n_rep_b[dens_b.index(1.0)] - m_b) <= 1),
        )
    )
    return out
