"""Closed-form results of the paper's Section 3, "Superposition as a Phase Change", and the exact
expected loss of any tied model, so that a trained model and a theoretical candidate are scored on
the same number.

Conventions (the library's; see the docs' concepts page):

- features are independent; feature i is 0 with probability ``1 - p_i`` (``p_i`` its *density*)
  and otherwise uniform on [0, 1], so ``E[x_i] = p_i / 2``, ``E[x_i^2] = p_i / 3`` and
  ``Var(x_i) = p_i / 3 - p_i^2 / 4``;
- the ReLU output model is ``x'_i = ReLU(sum_j (W_i . W_j) x_j + b_i)`` (the paper's
  ``ReLU(W^T W x + b)`` with W stored ``[feat, hidden]``);
- the loss of one model is ``E[(1/n) sum_i I_i (x_i - x'_i)^2]``: the notebook's reduction, which
  is the paper's per-sample loss ``sum_i I_i (x_i - x'_i)^2`` divided by n. Every function here
  takes ``reduction="mean"`` (that number, the default, the one the trainer reports) or
  ``reduction="sum"`` (the paper's number, n times larger).

Section 3 varies one *extra* feature, the last one (index n - 1), whose importance is
``r = relative_importance`` times the others' (which are 1), against the density p shared by all
features. The candidate solutions and their losses (derivations below, in :func:`pair_loss`):

==========  =====================  =========================  ==================================
(n, m)      "not represented"      "dedicated dimension"      "superposition"
==========  =====================  =========================  ==================================
(2, 1)      W = [1, 0]: r V(p)     W = [0, 1]: V(p)           W = [1, -1]: (1 + r) f(p)
(3, 2)      rows e1, e2, 0: r V    rows e1, -e1, e2: 2 f      rows e1, e2, -e2: (1 + r) f
==========  =====================  =========================  ==================================

and, for (3, 2) only, a fourth, "dedicated dimension, other dropped": rows e1, 0, e2, loss V (the
extra feature and feature 1 get a dimension each, feature 2 is dropped). The paper's Section 3
names four regions for n = 3, m = 2, and this is the one the first three miss: with r > 1 it
always beats "not represented" (V < r V), and with the plain pair (below) it beats the pair
``2 f = p^2 / 3`` whenever ``p > 4/7``. (For n = 2, m = 1 "dedicated dimension" already drops the
other feature: there is no pair left to share a dimension.)

(paper's sum over features; divide by n for the notebook's reduction). ``V(p) = p/3 - p^2/4`` is
the loss of a dropped feature whose bias is its best constant, its mean ``p/2`` (a positive
constant passes the ReLU unchanged); a feature with a dimension of its own, norm 1 and bias 0, is
reconstructed exactly; ``f(p)`` is the loss of one member of an antipodal pair. For the pair the
theory optimises what a trained model can change without leaving the candidate's shape: one common
scale ``a = ||W_i||^2`` and one common bias ``b`` for both members, ``x'_1 = ReLU(a x_1 - a x_2 +
b)`` and symmetrically for ``x'_2``. Because x_1 and x_2 are exchangeable both members have the
same loss ``f(a, b; p)``, so the best (a, b) does not depend on r; ``f(p) = min_{a >= 0, b}
f(a, b; p)`` found by a deterministic zooming grid search on the closed form (no closed-form
optimum: f is piecewise cubic in b / a). ``optimise=False`` gives the paper's plain candidates
instead (a = 1, b = 0, ``f = p^2 / 6``). The two symmetric members could also get different
scales or biases when r != 1; the theory does not use that freedom (nor did the paper).

All losses are linear in r at a fixed density, so the phase diagram over (density, r) is exact up
to the search for f(p), and its boundaries are found by bisection on the closed forms.

:func:`expected_loss` scores any W, b: exactly for the linear model (from the moments of x),
exactly for the ReLU output model with n <= 3 (sum over the 2^n sparsity patterns of integrals of a
piecewise quadratic over the unit cube cut by the ReLU's hyperplane, done on simplices), and by
Monte Carlo with its standard error otherwise.
"""

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal, no_type_check

import numpy as np
import torch

from superposition._types import Float, Tensor
from superposition.data import FeatureDistribution
from superposition.errors import ConfigError
from superposition.geometry import feature_norms, superposition
from superposition.models import ToyModel

PHASES = (
    "not represented",
    "dedicated dimension",
    "superposition",
    "dedicated dimension, other dropped",
)
"""What happens to the extra (last) feature, in a fixed order; labels index into it. The fourth
needs another pair of features (n >= 3): the extra feature has a dimension of its own and one of
the others is dropped instead of sharing a dimension with a third."""

SUPPORTED = ((2, 1), (3, 2))
"""The (n_features, n_hidden) pairs with candidate solutions."""

Reduction = Literal["mean", "sum"]


# --------------------------------------------------------------------------------------------------
# Input checks: one sentence naming the value and what is allowed


def _check_pair(n: int, m: int) -> None:
    if (n, m) not in SUPPORTED:
        raise ConfigError(
            f"candidate solutions exist for (n, m) in {SUPPORTED}, got (n, m) = ({n!r}, {m!r})"
        )


def _check_name(n: int, m: int, name: str) -> None:
    names = phases(n, m)
    if name not in names:
        raise ConfigError(f"unknown candidate {name!r} for n={n}, m={m}; expected one of {names}")


def _densities(value: object, what: str = "density") -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(arr) & (arr > 0) & (arr <= 1)
    if not ok.all():
        raise ConfigError(f"{what} must be in (0, 1], got {float(arr[~ok].flat[0])!r}")
    return arr


def _importances(value: object, what: str = "relative_importance") -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(arr) & (arr > 0)
    if not ok.all():
        raise ConfigError(f"{what} must be a finite number > 0, got {float(arr[~ok].flat[0])!r}")
    return arr


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


# --------------------------------------------------------------------------------------------------
# The two building blocks: a dropped feature, and one member of an antipodal pair


def dropped_loss(density: object) -> np.ndarray:
    """``V(p) = Var(x) = p/3 - p^2/4``: the loss of a feature with ``W_i = 0`` and its best bias.

    With W_i = 0 the output is the constant ReLU(b_i); the best constant under squared error is
    the mean ``p/2`` (positive, so the ReLU passes it), leaving the variance.
    """
    p = _densities(density)
    return np.asarray(p / 3 - p**2 / 4)


def _int_poly(coeffs: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``int_lo^hi sum_k coeffs[k] z^k dz``, elementwise."""
    return sum(
        (c * (hi ** (k + 1) - lo ** (k + 1)) / (k + 1) for k, c in enumerate(coeffs)),
        start=np.zeros(np.broadcast(lo, hi, *coeffs).shape),
    )


def pair_loss(density: object, a: object = 1.0, b: object = 0.0) -> np.ndarray:
    """``f(a, b; p)``: the expected squared error of one member of an antipodal pair.

    The member is ``x'_1 = ReLU(a (x_1 - x_2) + b)`` with ``a >= 0`` (``a = ||W_1||^2``, and
    ``W_1 . W_2 = -a``), x_1 its own feature, x_2 its partner's. Split on which are present:

    - neither (probability ``(1-p)^2``): error ``ReLU(b)^2``;
    - only x_1 (``p (1-p)``): ``int_0^1 (x - ReLU(a x + b))^2 dx`` = 1/3 plus the integral of
      ``(a x + b)^2 - 2 x (a x + b)`` over ``x > -b/a`` (the ReLU's kink), clipped to [0, 1];
    - only x_2 (``p (1-p)``): ``int_0^1 ReLU(b - a y)^2 dy``, over ``y < b/a``;
    - both (``p^2``): with ``z = x_1 - x_2``, which has the triangular density ``1 - |z|`` on
      [-1, 1] and ``E[x_1 | z] = (1 + z) / 2``, the error is 1/3 plus the integral of
      ``(1 - |z|) (a z + b) ((a - 1) z + b - 1)`` over ``z > -b/a``, split at z = 0.

    Every piece is a polynomial integrated between clipped limits, so f is exact. Broadcasts over
    its arguments. ``pair_loss(p) = p^2 / 6``: the paper's W = [1, -1], b = 0.
    """
    p = _densities(density)
    a_ = np.maximum(np.asarray(a, dtype=np.float64), 0.0)
    b_ = np.asarray(b, dtype=np.float64)
    shape = np.broadcast_shapes(p.shape, a_.shape, b_.shape)
    p, a_, b_ = (np.atleast_1d(np.broadcast_to(x, shape)) for x in (p, a_, b_))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # the kink -b/a; a = 0 makes the output the constant ReLU(b): kink at -inf or +inf
        kink = np.where(a_ > 0, -b_ / np.where(a_ > 0, a_, 1.0), np.where(b_ > 0, -np.inf, np.inf))
    none = np.maximum(b_, 0.0) ** 2
    lo = np.clip(kink, 0.0, 1.0)
    only_own = 1 / 3 + _int_poly([b_**2, 2 * b_ * (a_ - 1), a_**2 - 2 * a_], lo, np.ones_like(lo))
    hi = np.clip(-kink, 0.0, 1.0)
    c = b_ - a_ * hi  # int_0^hi (b - a y)^2 dy = hi (b^2 + b c + c^2) / 3, no division by a
    only_partner = hi * (b_**2 + b_ * c + c**2) / 3
    g2, g1, g0 = a_ * (a_ - 1), a_ * (b_ - 1) + b_ * (a_ - 1), b_ * (b_ - 1)
    z0 = np.clip(kink, -1.0, 1.0)
    zero = np.zeros_like(z0)
    neg = _int_poly([g0, g1 + g0, g2 + g1, g2], np.minimum(z0, 0.0), zero)  # (1 + z) g(z)
    pos = _int_poly([g0, g1 - g0, g2 - g1, -g2], np.maximum(z0, 0.0), zero + 1)  # (1 - z) g(z)
    both = 1 / 3 + neg + pos
    loss = (1 - p) ** 2 * none + p * (1 - p) * (only_own + only_partner) + p**2 * both
    return loss.reshape(shape)


def optimal_pair(density: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, f)``: the scale and bias minimising :func:`pair_loss` at each density, and f.

    A deterministic zooming grid search (f is piecewise cubic, continuous and smooth enough that
    the grid's best point stays in the basin): a 61 x 61 grid on a in [0, 3], b in [-1.5, 1.5],
    then 45 rounds of a 9 x 9 grid centred on the best point, halving the spacing each round: f to
    rounding, (a, b) to about 1e-8 (the square root of rounding: f is flat at its minimum). At
    density 1 the optimum is a = b = 1/2, ``f = 1/24`` (the best linear fit: ``E[x_1 | z]`` is
    linear in z); as the density falls, a tends to 1 and b to 0 from above, the paper's candidate.
    """
    shape = _densities(density).shape
    p = _densities(density).reshape(-1)
    A, B = np.meshgrid(np.linspace(0, 3, 61), np.linspace(-1.5, 1.5, 61), indexing="ij")
    A, B = np.broadcast_to(A.reshape(1, -1), (len(p), A.size)), B.reshape(1, -1)
    B = np.broadcast_to(B, A.shape)
    step = 3 / 60
    offsets = np.arange(-4, 5, dtype=np.float64) / 2
    da, db = (o.reshape(1, -1) for o in np.meshgrid(offsets, offsets, indexing="ij"))
    for _ in range(46):
        best = np.argmin(pair_loss(p[:, None], A, B), axis=1)[:, None]
        a0, b0 = np.take_along_axis(A, best, 1), np.take_along_axis(B, best, 1)
        A, B = np.maximum(a0 + da * step, 0.0), b0 + db * step
        step /= 2
    a, b = a0[:, 0], b0[:, 0]
    return a.reshape(shape), b.reshape(shape), pair_loss(p, a, b).reshape(shape)


# --------------------------------------------------------------------------------------------------
# The candidates and their losses


@dataclass(frozen=True)
class Candidate:
    """One of the paper's candidate solutions for the extra (last) feature."""

    name: str
    """Its phase, one of :data:`PHASES`."""
    W: tuple[tuple[float, ...], ...]
    """The paper's embedding, ``[feat][hidden]`` (row i is feature i's direction), unit norms."""
    description: str
    """In words."""
    dropped: tuple[int, ...]
    """Features with W_i = 0: their bias is their mean p/2."""
    pair: tuple[int, ...] = field(default=())
    """The two features forming the antipodal pair, if any: common scale and bias optimised."""


_CANDIDATES = {
    (2, 1): (
        Candidate("not represented", ((1.0,), (0.0,)), "feature 1 gets the dimension", (1,)),
        Candidate("dedicated dimension", ((0.0,), (1.0,)), "feature 2 gets the dimension", (0,)),
        Candidate(
            "superposition", ((1.0,), (-1.0,)), "both, antipodal in one dimension", (), (0, 1)
        ),
    ),
    (3, 2): (
        Candidate(
            "not represented",
            ((1.0, 0.0), (0.0, 1.0), (0.0, 0.0)),
            "features 1 and 2 get a dimension each, feature 3 is dropped",
            (2,),
        ),
        Candidate(
            "dedicated dimension",
            ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0)),
            "features 1 and 2 antipodal in one dimension, feature 3 gets the other",
            (),
            (0, 1),
        ),
        Candidate(
            "superposition",
            ((1.0, 0.0), (0.0, 1.0), (0.0, -1.0)),
            "feature 1 gets a dimension, features 2 and 3 antipodal in the other",
            (),
            (1, 2),
        ),
        Candidate(
            "dedicated dimension, other dropped",
            ((1.0, 0.0), (0.0, 0.0), (0.0, 1.0)),
            "features 1 and 3 get a dimension each, feature 2 is dropped",
            (1,),
        ),
    ),
}


def candidates(n: int, m: int) -> tuple[Candidate, ...]:
    """The paper's candidate solutions for n features in m dimensions, in :data:`PHASES` order:
    three for (2, 1), four for (3, 2)."""
    _check_pair(n, m)
    return _CANDIDATES[(n, m)]


def phases(n: int, m: int) -> tuple[str, ...]:
    """The names of :func:`candidates` (n, m): the first three of :data:`PHASES` for (2, 1), all
    four for (3, 2). A prefix of :data:`PHASES`, so a label indexes into either."""
    return tuple(c.name for c in candidates(n, m))


def _candidate(n: int, m: int, name: str) -> Candidate:
    _check_pair(n, m)
    _check_name(n, m, name)
    return _CANDIDATES[(n, m)][PHASES.index(name)]


def _pair_f(p: np.ndarray, optimise: bool) -> np.ndarray:
    return optimal_pair(p)[2] if optimise else pair_loss(p)


def _loss_from_parts(
    c: Candidate, v: np.ndarray, f: np.ndarray, r: np.ndarray, n: int, reduction: str
) -> np.ndarray:
    """Sum over features of importance x loss: dropped features V, pair members f, the rest 0."""
    total = np.zeros(np.broadcast(v, f, r).shape)
    for i in c.dropped:
        total = total + (r if i == n - 1 else 1.0) * v
    for i in c.pair:
        total = total + (r if i == n - 1 else 1.0) * f
    return np.asarray(total / n if reduction == "mean" else total)


def candidate_loss(
    n: int,
    m: int,
    name: str,
    density: float,
    relative_importance: float,
    *,
    optimise: bool = True,
    reduction: Reduction = "mean",
) -> float:
    """The expected loss of one candidate at one point, in closed form (see the module's table)."""
    c = _candidate(n, m, name)
    _check_reduction(reduction)
    p, r = _densities(density), _importances(relative_importance)
    return float(_loss_from_parts(c, dropped_loss(p), _pair_f(p, optimise), r, n, reduction))


def candidate_losses(
    n: int,
    m: int,
    densities: object,
    relative_importances: object,
    *,
    optimise: bool = True,
    reduction: Reduction = "mean",
) -> dict[str, np.ndarray]:
    """Every candidate's loss on a grid: ``{name: array [len(relative_importances),
    len(densities)]}`` (rows are r, columns density, as on the paper's plots)."""
    _check_pair(n, m)
    _check_reduction(reduction)
    p = _densities(densities).reshape(1, -1)
    r = _importances(relative_importances).reshape(-1, 1)
    v, f = dropped_loss(p), _pair_f(p, optimise)
    return {c.name: _loss_from_parts(c, v, f, r, n, reduction) for c in candidates(n, m)}


def candidate_params(
    n: int, m: int, name: str, densities: object, *, optimise: bool = True
) -> tuple[Float[Tensor, "inst feat hidden"], Float[Tensor, "inst feat"]]:
    """The candidate's W and b at each density (float64, one instance per density), ready for
    :func:`expected_loss`: dropped features get bias p/2, the pair its optimal (a, b) (or a = 1,
    b = 0 without ``optimise``), other features norm 1 and bias 0."""
    c = _candidate(n, m, name)
    p = _densities(densities).reshape(-1)
    a, b = optimal_pair(p)[:2] if optimise else (np.ones_like(p), np.zeros_like(p))
    W = torch.tensor(c.W, dtype=torch.float64).expand(len(p), n, m).clone()
    bias = torch.zeros(len(p), n, dtype=torch.float64)
    for i in c.dropped:
        bias[:, i] = torch.from_numpy(p / 2)
    for i in c.pair:
        W[:, i] *= torch.from_numpy(np.sqrt(a))[:, None]
        bias[:, i] = torch.from_numpy(b)
    return W, bias


# --------------------------------------------------------------------------------------------------
# The phase diagram and its boundaries

TIE = 1e-12
"""Relative difference under which two losses tie; a tie goes to the first in :data:`PHASES`
order, so rounding cannot draw slivers at exact ties such as the triple point (p = 1, r = 1)."""


def _cheapest(losses: np.ndarray) -> np.ndarray:
    """Index (along the first axis) of the cheapest candidate, ties going to the first."""
    best = losses.min(axis=0)
    return np.argmax(losses <= best + TIE * np.abs(best), axis=0)


@dataclass(frozen=True)
class PhaseDiagram:
    """The cheapest candidate at each (relative importance, density) of a grid."""

    n: int
    m: int
    densities: np.ndarray
    """Columns, ``[len(d)]``."""
    relative_importances: np.ndarray
    """Rows, ``[len(r)]``."""
    names: tuple[str, ...]
    """The candidates (:func:`phases`, a prefix of :data:`PHASES`); labels index into it."""
    labels: np.ndarray
    """``[len(r), len(d)]`` int: index into ``names`` of the cheapest candidate (ties, within a
    relative :data:`TIE`, go to the first)."""
    losses: dict[str, np.ndarray]
    """Each candidate's loss, ``[len(r), len(d)]``, notebook reduction."""
    optimise: bool = True
    """Whether the antipodal pair's scale and bias were optimised."""


def phase_diagram(
    n: int, m: int, densities: object, relative_importances: object, *, optimise: bool = True
) -> PhaseDiagram:
    """The theoretical phase diagram of the extra feature (Section 3): the cheapest candidate."""
    losses = candidate_losses(n, m, densities, relative_importances, optimise=optimise)
    names = phases(n, m)
    stacked = np.stack([losses[name] for name in names])
    return PhaseDiagram(
        n=n,
        m=m,
        densities=_densities(densities).reshape(-1),
        relative_importances=_importances(relative_importances).reshape(-1),
        names=names,
        labels=_cheapest(stacked),
        losses=losses,
        optimise=optimise,
    )


@dataclass(frozen=True)
class Boundary:
    """Where, at one density, the cheapest candidate changes as the relative importance grows."""

    density: float
    relative_importance: float
    below: str
    """The cheapest candidate just below ``relative_importance``."""
    above: str
    """The cheapest candidate just above it."""


def boundaries(diagram: PhaseDiagram, *, iterations: int = 60) -> list[Boundary]:
    """Every change of phase along r at each density of the diagram, located by bisection on the
    closed forms (in log r) between the grid rows where the label changes, to ``2^-iterations`` of
    a grid step: far finer than the grid. When bisection lands on a third phase between two rows,
    the search goes on from there, so consecutive boundaries chain from each row's label to the
    next; a phase that appears and vanishes between two rows of equal label is missed. Sorted by
    the diagram's density order, then by r."""
    n, cands = diagram.n, candidates(diagram.n, diagram.m)
    r, labels = diagram.relative_importances, diagram.labels
    rows, cols = np.nonzero(labels[1:] != labels[:-1])
    dens = diagram.densities[cols]
    v, f = dropped_loss(dens), _pair_f(dens, diagram.optimise)

    def cheapest(rr: np.ndarray) -> np.ndarray:
        return _cheapest(np.stack([_loss_from_parts(c, v, f, rr, n, "mean") for c in cands]))

    found: list[tuple[int, Boundary]] = []
    lo, hi_end = np.log(r[rows]), np.log(r[rows + 1])
    start, goal = labels[rows, cols], labels[rows + 1, cols]
    todo = np.ones(len(rows), dtype=bool)
    for _ in range(len(PHASES)):  # each pass finds the next change in every unfinished bracket
        hi = hi_end.copy()
        for _ in range(iterations):
            mid = (lo + hi) / 2
            same = cheapest(np.exp(mid)) == start
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        above = cheapest(np.exp(hi))
        for k in np.nonzero(todo)[0]:
            rk = float(np.exp((lo[k] + hi[k]) / 2))
            found.append(
                (int(cols[k]), Boundary(float(dens[k]), rk, PHASES[start[k]], PHASES[above[k]]))
            )
        todo &= above != goal
        if not todo.any():
            break
        lo, start = np.where(todo, hi, hi_end), np.where(todo, above, goal)
    found.sort(key=lambda cb: (cb[0], cb[1].relative_importance))
    return [b for _, b in found]


# --------------------------------------------------------------------------------------------------
# Classifying a (trained) W the same way


@no_type_check  # validated below, which gives the user one clear sentence
def classify_extra_feature(
    W: Float[Tensor, "inst feat hidden"],
    *,
    norm_threshold: float = 0.5,
    interference_threshold: float = 0.25,
) -> list[str]:
    """The phase of the last feature in each instance, named as in :data:`PHASES`.

    "not represented" when ``||W_last|| < norm_threshold``; otherwise "superposition" when its
    superposition ``sum_{j != last} (W_last_hat . W_j)^2`` (Section 2; 1 for an antipodal
    partner of norm 1) exceeds ``interference_threshold``; otherwise (nearly orthogonal to every
    other feature) "dedicated dimension, other dropped" when there are at least two other
    features (n >= 3) and one of them has a norm under ``norm_threshold``, and "dedicated
    dimension" when not. With n = 2 there is one other feature and nothing for it to share a
    dimension with, so its fate does not split the label (as for the candidates of (2, 1)).
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 3 or W.shape[1] < 2:
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise ConfigError(f"W must be a tensor [inst, feat >= 2, hidden], got shape {shape}")
    for what, value in [
        ("norm_threshold", norm_threshold),
        ("interference_threshold", interference_threshold),
    ]:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{what} must be a finite number > 0, got {value!r}")
    W = W.detach().to(torch.float64)
    norms = feature_norms(W)
    norm = norms[:, -1].tolist()
    interference = superposition(W)[:, -1].tolist()
    other_dropped = ((norms[:, :-1] < norm_threshold).any(-1) & (W.shape[1] >= 3)).tolist()
    return [
        PHASES[0]
        if nv < norm_threshold
        else PHASES[2]
        if s > interference_threshold
        else PHASES[3]
        if dropped
        else PHASES[1]
        for nv, s, dropped in zip(norm, interference, other_dropped, strict=True)
    ]


# --------------------------------------------------------------------------------------------------
# The expected loss of any W, b: exact (linear; ReLU with n <= 3) or Monte Carlo


def _linear_exact(
    G: Float[Tensor, "inst feat feat"],
    b: Float[Tensor, "inst feat"],
    p: Float[Tensor, "inst feat"],
) -> Float[Tensor, "inst feat"]:
    """``E[(x_i - x'_i)^2]`` of the linear model: with e = (1 - G) x - b, independence gives
    ``E[e_i^2] = sum_j A_ij^2 Var(x_j) + (sum_j A_ij E[x_j] - b_i)^2``, A = 1 - G."""
    A = torch.eye(G.shape[-1], dtype=G.dtype) - G
    mean = A @ (p / 2)[..., None]
    return (A**2 @ (p / 3 - p**2 / 4)[..., None])[..., 0] + (mean[..., 0] - b) ** 2


def _clipped(L: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``(1 / vol T) int_{T and L > 0} L C`` over a d-simplex T, exactly, L and C affine, given
    their values at T's d + 1 vertices (last axis).

    On any simplex, with barycentric coordinates ``lambda ~ Dirichlet(1, ..., 1)`` and
    ``E[lambda_i lambda_j] = (1 + [i = j]) / ((d + 1)(d + 2))``, the mean of a product of affine
    functions is ``(sum_i L_i sum_j C_j + sum_i L_i C_i) / ((d + 1)(d + 2))``. The part of T where
    L > 0 is cut into simplices whose vertices are T's vertices and the points where L = 0 on its
    edges: with k vertices inside, k = 1 a corner simplex, k = d the whole minus the outer corner,
    and k = 2 in a tetrahedron a wedge, cut into three tetrahedra.
    """
    d = L.shape[-1] - 1
    if d == 0:
        return np.where(L[..., 0] > 0, L[..., 0] * C[..., 0], 0.0)
    order = np.argsort(-L, axis=-1, kind="stable")
    L, C = np.take_along_axis(L, order, -1), np.take_along_axis(C, order, -1)
    inside = (L > 0).sum(-1)
    eye = np.eye(d + 1)

    def mean(M: np.ndarray) -> np.ndarray:  # M [..., d+1, d+1]: barycentric rows of a simplex
        a, c = M @ L[..., None], M @ C[..., None]
        vol = np.abs(np.linalg.det(M))
        return (
            vol * (a.sum((-1, -2)) * c.sum((-1, -2)) + (a * c).sum((-1, -2))) / ((d + 1) * (d + 2))
        )

    def cut(i: int, q: int) -> np.ndarray:  # the point on edge (i, q) where L = 0
        den = L[..., i] - L[..., q]
        s = np.clip(L[..., i] / np.where(den != 0, den, 1.0), 0.0, 1.0)[..., None]
        return (1 - s) * eye[i] + s * eye[q]

    def simplex(*rows: np.ndarray) -> np.ndarray:
        return np.stack(np.broadcast_arrays(*rows), axis=-2)

    full = mean(np.broadcast_to(eye, L.shape + (d + 1,)))
    result = np.where(inside == d + 1, full, 0.0)
    corner = mean(simplex(eye[0], *[cut(0, q) for q in range(1, d + 1)]))
    result = np.where(inside == 1, corner, result)
    if d >= 2:
        outer = mean(simplex(eye[d], *[cut(d, q) for q in range(d)]))
        result = np.where(inside == d, full - outer, result)
    if d == 3:
        a_, b_ = eye[0], eye[1]
        ac, ad, bc, bd = cut(0, 2), cut(0, 3), cut(1, 2), cut(1, 3)
        wedge = mean(simplex(a_, ac, ad, b_)) + mean(simplex(ac, ad, b_, bc))
        wedge = wedge + mean(simplex(ad, b_, bc, bd))
        result = np.where(inside == 2, wedge, result)
    return result


def _relu_exact(G: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``E[(x_i - ReLU(sum_j G_ij x_j + b_i))^2]`` per instance and feature, exactly (n <= 3).

    Sum over the sparsity patterns S (present features, probability ``prod_S p prod_not S (1-p)``);
    within a pattern x_S is uniform on the unit cube and the error is ``t^2 + 1[L > 0] L (L - 2t)``
    with L the pre-activation and t = x_i (0 when i is absent): ``int t^2 = 1/3`` and the rest is
    integrated on the cube's k! Kuhn simplices ``0 <= x_s1 <= ... <= x_sk <= 1`` by
    :func:`_clipped`.
    """
    n_inst, n = b.shape
    total = np.zeros((n_inst, n))
    for k in range(n + 1):
        for S in itertools.combinations(range(n), k):
            prob = np.prod(np.where(np.isin(np.arange(n), S), p, 1 - p), axis=-1)  # [inst]
            err = np.zeros((n_inst, n))
            for sigma in itertools.permutations(range(k)):
                walk = [S[s] for s in sigma]  # vertex v_j has the first j of these set to 1
                L = np.stack([b + G[:, :, walk[:j]].sum(-1) for j in range(k + 1)], -1)
                t = np.array([[float(i in walk[:j]) for j in range(k + 1)] for i in range(n)])
                err += _clipped(L, L - 2 * t) / math.factorial(k)
            err += np.isin(np.arange(n), S) / 3
            total += prob[:, None] * err
    return total


def _monte_carlo(
    model: ToyModel,
    p: Float[Tensor, "inst feat"],
    importance: Float[Tensor, "inst feat"],
    samples: int,
    generator: torch.Generator,
) -> tuple[Float[Tensor, " inst"], Float[Tensor, " inst"]]:
    """Mean and standard error of the per-sample loss ``(1/n) sum_i I_i (x_i - x'_i)^2``."""
    dist = FeatureDistribution(density=p)
    n_inst, n = p.shape
    chunk = max(1, min(samples, 4_000_000 // (n_inst * n)))
    total = torch.zeros(n_inst, dtype=torch.float64)
    total_sq = torch.zeros(n_inst, dtype=torch.float64)
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        x = dist.sample(size, generator)
        err = (model.forward(x) - model.target(x)).square()
        per_sample = (err * importance[:, None, :]).mean(-1)
        total += per_sample.sum(-1)
        total_sq += per_sample.square().sum(-1)
        done += size
    mean = total / samples
    var = (total_sq - samples * mean**2).clamp_min(0) / max(samples - 1, 1)
    return mean, (var / samples).sqrt()


def _as_inst_feat(value: object, what: str, n_inst: int, n: int) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64)
    try:
        return torch.broadcast_to(t, (n_inst, n)).clone()
    except RuntimeError:
        raise ConfigError(
            f"{what} must broadcast to [inst, feat] = [{n_inst}, {n}], got shape {tuple(t.shape)}"
        ) from None


@no_type_check  # validated below, which gives the user one clear sentence
def expected_loss(
    W: Float[Tensor, "inst feat hidden"],
    b: Float[Tensor, "inst feat"],
    density: Float[Tensor, "inst feat"] | float,
    importance: Float[Tensor, "inst feat"] | float = 1.0,
    *,
    kind: str = "relu",
    W_dec: Float[Tensor, "inst feat hidden"] | None = None,
    method: str = "auto",
    samples: int = 200_000,
    generator: torch.Generator | None = None,
    reduction: Reduction = "mean",
) -> tuple[Float[Tensor, " inst"], Float[Tensor, " inst"]]:
    """The expected loss of each instance under independent features, and its standard error.

    Returns two float64 tensors ``[inst]``: the value and its standard error (0 when exact).
    ``density`` and ``importance`` broadcast to ``[inst, feat]``. ``reduction="mean"`` is the
    notebook's loss (what the trainer reports), ``"sum"`` the paper's (n times larger).

    ``method``:

    - ``"exact"``: the linear model from the first two moments of x (any n); the ReLU output
      model ("relu") by exact integration over the 2^n sparsity patterns, n <= 3 (see
      :func:`_relu_exact`); exact to rounding;
    - ``"monte_carlo"``: ``samples`` fresh samples per instance from ``generator`` (a fixed
      ``torch.Generator`` seeded 0 when None, so the answer is reproducible); any kind but "abs";
    - ``"auto"``: exact where possible, else Monte Carlo.

    ``W_dec`` (untied models) reads feature i out with its own row: ``G_ij = W_dec_i . W_j``.
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 3:
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise ConfigError(f"W must be a tensor [inst, feat, hidden], got shape {shape}")
    n_inst, n, _ = W.shape
    if not isinstance(b, torch.Tensor) or tuple(b.shape) != (n_inst, n):
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ConfigError(f"b must be a tensor [inst, feat] = [{n_inst}, {n}], got shape {shape}")
    if W_dec is not None and tuple(W_dec.shape) != tuple(W.shape):
        raise ConfigError(f"W_dec must have W's shape {tuple(W.shape)}, got {tuple(W_dec.shape)}")
    if kind not in ("linear", "relu", "privileged"):
        raise ConfigError(f"kind must be 'linear', 'relu' or 'privileged', got {kind!r}")
    if method not in ("auto", "exact", "monte_carlo"):
        raise ConfigError(f"method must be 'auto', 'exact' or 'monte_carlo', got {method!r}")
    if not (isinstance(samples, int) and samples >= 2):
        raise ConfigError(f"samples must be an integer >= 2, got {samples!r}")
    _check_reduction(reduction)
    p = _as_inst_feat(density, "density", n_inst, n)
    _densities(p.numpy())
    importance_ = _as_inst_feat(importance, "importance", n_inst, n)
    if not torch.isfinite(importance_).all() or (importance_ < 0).any():
        bad = importance_[~(torch.isfinite(importance_) & (importance_ >= 0))][0].item()
        raise ConfigError(f"importance must be a finite number >= 0, got {bad!r}")
    W64 = W.detach().to("cpu", torch.float64)
    dec = W64 if W_dec is None else W_dec.detach().to("cpu", torch.float64)
    b64 = b.detach().to("cpu", torch.float64)
    exact_ok = kind == "linear" or (kind == "relu" and n <= 3)
    if method == "exact" and not exact_ok:
        raise ConfigError(
            f"method 'exact' covers the linear model and the relu model with n <= 3, got kind "
            f"{kind!r} with n = {n}; use method='monte_carlo'"
        )
    scale = 1.0 if reduction == "sum" else 1.0 / n
    if exact_ok and method != "monte_carlo":
        G = dec @ W64.transpose(1, 2)
        if kind == "linear":
            per_feature = _linear_exact(G, b64, p)
        else:
            per_feature = torch.from_numpy(_relu_exact(G.numpy(), b64.numpy(), p.numpy()))
        value = (per_feature * importance_).sum(-1) * scale
        return value, torch.zeros_like(value)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    model = ToyModel(kind, W64, b64, None if W_dec is None else dec)
    mean, err = _monte_carlo(model, p, importance_, samples, gen)
    return mean * scale * n, err * scale * n
