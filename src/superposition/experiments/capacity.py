"""Scherlis, Sachan, Jermyn, Benton and Shlegeris 2022, "Polysemanticity and Capacity in Neural
Networks": how much of a dimension each feature gets, and why.

The paper's quadratic model: n independent, zero-mean features x_i; the target ``y = sum_i v_i
x_i^2`` (v_i the importance of feature i); the model ``y' = sum_k (W x)_k^2 + c``, one hidden layer
of m neurons with a quadratic activation summed by a fixed read-out, and the squared error. Here it
is the ``linear`` toy model read out by the ``quadratic`` loss (:mod:`superposition.losses`):
``sum_i x_i (W^T W x + b)_i = ||W x||^2 + b . x``, the constant c profiled out of each batch.

The **capacity** of feature i (the paper's definition) is ``C_i = (W_i . W_i)^2 / sum_j (W_i .
W_j)^2``, the fraction of a dimension it consumes: 1 with a dimension of its own, 0 when absent,
``sum_i C_i <= m``. It is Elhage et al. 2022's feature dimensionality ``D_i = ||W_i||^2 / sum_j
(W_i_hat . W_j)^2`` written another way (multiply above and below by ``||W_i||^2``).

The loss in closed form. With ``s = E[x^2]``, kurtosis ``K = E[x^4] / s^2``, ``A = K - 1``,
``w_i = ||W_i||^2`` and the best constant c, the odd moments vanish and

    L = s^2 [ A sum_i (w_i - v_i)^2 + 2 sum_{i != j} (W_i . W_j)^2 ]  (+ s ||b||^2),

and since ``sum_{j != i} (W_i . W_j)^2 = w_i^2 (1/C_i - 1)``, each feature's term depends on its own
norm and capacity alone. The best norm for a capacity gives (a minimum of ``a (v - w)^2 + e w^2``
over w is ``a e v^2 / (a + e)``)

    L_i(C) = s^2 2 A v_i^2 (1 - C) / (2 + (A - 2) C),
    -dL_i/dC = s^2 2 A^2 v_i^2 / (2 + (A - 2) C)^2.

The **marginal loss benefit** -dL_i/dC falls with C when A > 2 (excess kurtosis > 0): diminishing
returns, a convex problem, solved by equalising the benefit across the features that get a
fraction (water-filling) under ``0 <= C_i <= 1``, ``sum_i C_i = m``: ``C_i = clip((v_i mu - 2) / (A
- 2), 0, 1)`` with mu set by the budget. The most important features get 1, the next a fraction
linear in v_i, the least 0. When A <= 2 the benefit does not fall, the loss is concave (linear at
K = 3) in each C and the optimum is a vertex: the m most important features get a whole dimension
and the rest nothing. The larger the kurtosis, the wider the band of fractions: polysemanticity
grows with kurtosis.

Our features are the library's signed ones (present with probability p, then uniform on [-1, 1]):
``s = p/3``, ``E[x^4] = p/5``, ``K = 9 / (5 p)``: the sparser, the more kurtotic.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.geometry import feature_dimensionality, gram
from superposition.results import Claim, Run

NAME = "capacity"
TITLE = "Polysemanticity and capacity (Scherlis et al. 2022)"
SECTION = "Scherlis et al. 2022"
N_FEATURES, N_HIDDEN, DECAY = 6, 3, 0.8
"""Six features in three neurons, importances ``v_i = 0.8^i``."""
DENSITIES = (1.0, 0.3, 0.1, 0.03)
"""Densities of the signed features: kurtosis 1.8, 6, 18 and 60."""
TOLERANCE = 0.1
"""Claim: every trained capacity within this of the closed form's."""
LOSS_RATIO = 1.02
"""Claim: the trained model's exact expected loss at most this multiple of the closed-form least
loss."""
WHOLE, NONE = 0.95, 0.05
"""A capacity >= WHOLE counts as a whole dimension, <= NONE as none, between as a fraction."""


# --------------------------------------------------------------------------------------------------
# the closed form


def signed_kurtosis(density: float) -> float:
    """``E[x^4] / E[x^2]^2 = 9 / (5 p)`` of a feature present with probability p, then uniform
    on [-1, 1] (``E[x^2] = p/3``, ``E[x^4] = p/5``)."""
    if not (isinstance(density, int | float) and 0 < density <= 1):
        raise ConfigError(f"density must be in (0, 1], got {density!r}")
    return 9 / (5 * float(density))


def _check(importance: object, n_hidden: int, kurtosis: float) -> np.ndarray:
    v = np.asarray(importance, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not (np.isfinite(v).all() and (v > 0).all()):
        raise ConfigError(f"importance must be a non-empty list of numbers > 0, got {importance!r}")
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 1:
        raise ConfigError(f"n_hidden must be an integer >= 1, got {n_hidden!r}")
    if not (isinstance(kurtosis, int | float) and math.isfinite(kurtosis) and kurtosis >= 1):
        raise ConfigError(f"kurtosis must be a finite number >= 1 (E[x^4] >= E[x^2]^2), got "
                          f"{kurtosis!r}")
    return v


def optimal_capacities(importance: object, n_hidden: int, kurtosis: float) -> np.ndarray:
    """The capacities minimising the quadratic model's loss (the module's closed form) for
    features of importances ``importance`` in ``n_hidden`` neurons, exactly.

    A = K - 1 > 2: ``C_i = clip((v_i mu - 2) / (A - 2), 0, 1)``, piecewise linear in mu, with mu
    solved exactly on the segment between breakpoints (``2 / v_i``, where feature i enters, and
    ``A / v_i``, where it fills) on which the capacities sum to m. A <= 2: the m most important
    features get 1 (ties to the lower index), the rest 0. With n <= m every feature gets 1.
    """
    v = _check(importance, n_hidden, kurtosis)
    n, m, a = v.size, n_hidden, kurtosis - 1
    if n <= m:
        return np.ones(n)
    if a <= 2:
        out = np.zeros(n)
        out[np.argsort(-v, kind="stable")[:m]] = 1.0
        return out

    def alloc(mu: float) -> np.ndarray:
        return np.asarray(np.clip((v * mu - 2) / (a - 2), 0.0, 1.0))

    breaks = np.sort(np.concatenate([2 / v, a / v]))
    sums = np.array([alloc(mu).sum() for mu in breaks])
    k = int(np.searchsorted(sums, m))  # first breakpoint whose sum reaches m (sums[-1] = n > m)
    lo = breaks[k - 1] if k > 0 else 0.0
    mid = (lo + breaks[k]) / 2  # inside the segment: which features are full, which fractional
    full = (v * mid - 2) >= (a - 2)
    part = ~full & (v * mid > 2)
    # on the segment: sum = #full + sum_part (v_i mu - 2) / (a - 2) = m
    mu = ((m - full.sum()) * (a - 2) + 2 * part.sum()) / v[part].sum()
    return alloc(float(mu))


def capacity_loss(
    importance: object, capacities: object, kurtosis: float, second_moment: float = 1.0
) -> float:
    """``sum_i L_i(C_i)``: the quadratic model's least loss with these capacities (the norms at
    their best), ``s^2 sum_i 2 A v_i^2 (1 - C_i) / (2 + (A - 2) C_i)``, s the features' second
    moment."""
    v = _check(importance, 1, kurtosis)
    c = np.asarray(capacities, dtype=np.float64)
    if c.shape != v.shape or not ((c >= 0) & (c <= 1)).all():
        raise ConfigError(f"capacities must be {v.size} numbers in [0, 1], got {capacities!r}")
    a = kurtosis - 1
    per = 2 * a * v**2 * (1 - c) / (2 + (a - 2) * c)
    return float(second_moment**2 * per.sum())


def marginal_benefit(importance: object, capacities: object, kurtosis: float) -> np.ndarray:
    """``-dL_i/dC_i = 2 A^2 v_i^2 / (2 + (A - 2) C_i)^2`` (second moment 1): what one more unit
    of capacity is worth to each feature."""
    v = _check(importance, 1, kurtosis)
    c = np.asarray(capacities, dtype=np.float64)
    a = kurtosis - 1
    return np.asarray(2 * a**2 * v**2 / (2 + (a - 2) * c) ** 2)


def capacities(W: torch.Tensor) -> torch.Tensor:
    """The paper's ``C_i = (W_i . W_i)^2 / sum_j (W_i . W_j)^2`` of each instance's features,
    ``[inst, feat]`` (0 for a zero feature)."""
    G = gram(W)
    diag = torch.diagonal(G, dim1=-2, dim2=-1)
    total = G.square().sum(-1)
    return torch.where(total > 0, diag.square() / torch.where(total > 0, total, 1.0), 0.0)


def expected_loss(
    W: torch.Tensor, b: torch.Tensor, importance: torch.Tensor, density: float
) -> torch.Tensor:
    """The exact expected ``quadratic`` loss of each instance (``[inst]``) on signed features of
    one density: ``s^2 [A sum_i (w_i - v_i)^2 + 2 sum_{i != j} (W_i . W_j)^2] + s ||b||^2``."""
    s, a = density / 3, signed_kurtosis(density) - 1
    G = gram(W.double())
    w = torch.diagonal(G, dim1=-2, dim2=-1)
    off = G.square().sum((-1, -2)) - w.square().sum(-1)
    mismatch = (w - importance.double()).square().sum(-1)
    return s**2 * (a * mismatch + 2 * off) + s * b.double().square().sum(-1)


# --------------------------------------------------------------------------------------------------
# the runs


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run: every density a group, several seeds each (best-of-N by held-out loss)."""
    return {
        "quadratic": RunConfig(
            data=DataConfig(
                n_features=N_FEATURES,
                density=DENSITIES,
                importance_decay=(DECAY,),
                signed=True,
            ),
            model=ModelConfig(kind="linear", n_hidden=N_HIDDEN),
            train=TrainConfig(
                loss="quadratic",
                instances=6 if quick else 12,
                steps=2000 if quick else 5000,
                lr=3e-3,
                # the closed form has no weight decay; the cosine decay quiets the last steps'
                # sampling noise, which is large for kurtotic features
                weight_decay=0.0,
                schedule="cosine",
                eval_samples=20_000,
            ),
        )
    }


@dataclass(frozen=True)
class Point:
    """One density: the closed form and the best trained instance."""

    density: float
    kurtosis: float
    theory: np.ndarray
    """The optimal capacities, most important feature first."""
    trained: np.ndarray
    """The best instance's capacities (the paper's definition)."""
    dimensionality: np.ndarray
    """The best instance's feature dimensionalities D_i (Elhage et al.), for comparison."""
    optimum: float
    """The closed-form least loss."""
    loss: float
    """The best instance's exact expected loss."""

    @property
    def error(self) -> float:
        return float(np.abs(self.trained - self.theory).max())


def fractional(c: np.ndarray) -> int:
    """Features with a fraction of a dimension, strictly between NONE and WHOLE."""
    return int(((c > NONE) & (c < WHOLE)).sum())


def points(run: Run) -> list[Point]:
    """The closed form against the best trained instance at every density of ``run``."""
    cfg = run.config
    v = np.array(cfg.data.feature_importances(cfg.data.importance_decay[0]))
    out = []
    best = run.best()
    W, b = run.W[best].detach().double(), run.b[best].detach().double()
    imp = torch.from_numpy(v)[None].expand(len(best), -1)
    for g, density in enumerate(cfg.data.density):
        k = signed_kurtosis(density)
        theory = optimal_capacities(v, cfg.model.n_hidden, k)
        loss = expected_loss(W[g : g + 1], b[g : g + 1], imp[g : g + 1], density)
        out.append(
            Point(
                density=density,
                kurtosis=k,
                theory=theory,
                trained=capacities(W[g : g + 1])[0].numpy(),
                dimensionality=feature_dimensionality(W[g : g + 1])[0].numpy(),
                optimum=capacity_loss(v, theory, k, density / 3),
                loss=float(loss[0]),
            )
        )
    return out


def claims(runs: dict[str, Run]) -> list[Claim]:
    run = runs["quadratic"]
    pts = points(run)
    m = run.config.model.n_hidden
    same = max(float(np.abs(p.trained - p.dimensionality).max()) for p in pts)
    budget = max(float(p.trained.sum()) for p in pts)
    worst = max(pts, key=lambda p: p.error)
    ratio = max(p.loss / p.optimum for p in pts)
    below = min(p.loss / p.optimum for p in pts)
    counts = [fractional(p.trained) for p in pts]
    theory_counts = [fractional(p.theory) for p in pts]
    # the density whose optimum has all three kinds: whole, fractional and none
    mixed = [p for p in pts if p.theory.max() >= WHOLE and p.theory.min() <= NONE
             and fractional(p.theory) > 0]
    shape = [
        p.trained[0] >= WHOLE and p.trained[-1] <= NONE and fractional(p.trained) > 0
        and bool(np.all(np.diff(p.trained) <= 0.05))
        for p in mixed
    ]
    fmt = ", ".join
    return [
        Claim(
            section=SECTION,
            text="A feature's capacity (W_i . W_i)^2 / sum_j (W_i . W_j)^2 is its feature "
            "dimensionality D_i, and the capacities sum to at most the number of neurons.",
            measured=f"largest |C_i - D_i| over the trained models {same:.1e}; largest sum of "
            f"capacities {budget:.3f} for m = {m}",
            holds=same <= 1e-5 and budget <= m + 1e-4,
        ),
        Claim(
            section=SECTION,
            text="Trained capacities follow the closed-form optimal allocation (equal marginal "
            "loss benefit): at every kurtosis, every feature within "
            f"{TOLERANCE} of it, and the loss within {LOSS_RATIO - 1:.0%} of the closed-form "
            "least loss (never below it).",
            measured=f"largest capacity error {worst.error:.3f} (kurtosis {worst.kurtosis:.3g}: "
            f"trained {fmt(f'{c:.2f}' for c in worst.trained)} vs closed form "
            f"{fmt(f'{c:.2f}' for c in worst.theory)}); loss / least loss from {below:.4f} "
            f"to {ratio:.4f}",
            holds=worst.error <= TOLERANCE and ratio <= LOSS_RATIO and below >= 1 - 1e-3,
        ),
        Claim(
            section=SECTION,
            text="With diminishing returns the most important features get a whole dimension, "
            "the middle ones a fraction and the least none, in order of importance.",
            measured=fmt(
                f"kurtosis {p.kurtosis:.3g}: {fmt(f'{c:.2f}' for c in p.trained)}" for p in mixed
            ) or "no density has all three kinds in the closed form",
            holds=bool(mixed) and all(shape),
        ),
        Claim(
            section=SECTION,
            text="More kurtosis, more polysemanticity: the number of features with a fraction "
            "of a dimension does not fall as the kurtosis grows, and is larger at the largest "
            "kurtosis than at the smallest.",
            measured=f"fractional features at kurtosis {fmt(f'{p.kurtosis:.3g}' for p in pts)}: "
            f"{fmt(str(c) for c in counts)} (closed form {fmt(str(c) for c in theory_counts)})",
            holds=all(b >= a for a, b in zip(counts, counts[1:], strict=False))
            and counts[-1] > counts[0],
        ),
    ]
