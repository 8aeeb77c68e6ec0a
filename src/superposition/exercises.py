"""Exercises on superposition, answered by functions (layer 3: some of them train a model).

- :func:`pack_unit_vectors`: how many unit vectors fit in R^d with every pairwise ``|cos| <= eps``,
  found by optimisation, beside the Welch upper bound and the random (Johnson-Lindenstrauss) lower
  bound (:func:`welch_bound`, :func:`random_bound`);
- :func:`interference`: the expected interference between two features that share a dimension,
  in closed form, as a function of the density ``p = 1 - S``;
- :func:`rotated_losses` and :func:`random_rotation`: rotating the hidden space leaves the loss of
  the ReLU-output model unchanged (no privileged basis) and changes the loss of a model with a
  ReLU on its hidden layer (a privileged basis, Elhage et al. 2022, Section 7);
- :func:`analyze_superposition` (train a small ReLU-output model and summarise its geometry) and
  :func:`measure_interference` (how much a set of features interfere in a given W).

Features follow the paper (Elhage et al. 2022, Section 2): feature i is 0 with probability S and
otherwise uniform on [0, 1], independently.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError
from superposition.losses import get_loss
from superposition.models import ToyModel
from superposition.results import Run
from superposition.rng import derive_seed

TOLERANCE = 1e-6
"""A packing is accepted when its largest ``|cos|`` is at most ``eps + TOLERANCE`` (tight packings,
such as the icosahedron's six diagonals, meet the bound with equality)."""


def _check_d(d: object) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ConfigError(f"d must be an integer >= 1, got {d!r}")
    return d


def _check_eps(eps: object) -> float:
    ok = isinstance(eps, int | float) and not isinstance(eps, bool) and 0 < eps < 1
    if not ok:
        raise ConfigError(f"eps must be a number in (0, 1), got {eps!r}")
    return float(eps)  # type: ignore[arg-type]


def _check_density(density: object) -> float:
    ok = isinstance(density, int | float) and not isinstance(density, bool) and 0 < density <= 1
    if not ok:
        raise ConfigError(f"density must be a number in (0, 1], got {density!r}")
    return float(density)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# 1. almost-orthogonal unit vectors


def welch_bound(d: int, eps: float) -> float:
    """The most unit vectors R^d can hold with every ``|cos| <= eps``, by Welch's bound (Welch 1974,
    "Lower bounds on the maximum cross correlation of signals"): n vectors have
    ``max |cos| >= sqrt((n - d) / (d (n - 1)))``, so ``n <= d (1 - eps^2) / (1 - d eps^2)``
    when ``d eps^2 < 1``; ``inf`` otherwise (the bound then says nothing)."""
    d, eps = _check_d(d), _check_eps(eps)
    if d * eps**2 >= 1:
        return math.inf
    return d * (1 - eps**2) / (1 - d * eps**2)


def random_bound(d: int, eps: float) -> int:
    """How many unit vectors drawn at random from the sphere of R^d have every ``|cos| <= eps`` with
    positive probability, by the union bound: a pair has ``|cos| > eps`` with probability at most
    ``2 exp(-d eps^2 / 2)`` (the spherical cap bound, Ball 1997, "An elementary introduction to
    modern convex geometry", Lemma 2.2, the estimate behind Johnson and Lindenstrauss 1984), so n
    vectors work when ``n (n - 1) exp(-d eps^2 / 2) < 1``: the largest such n (at least 1)."""
    d, eps = _check_d(d), _check_eps(eps)
    # n (n - 1) < exp(d eps^2 / 2): solve the quadratic, then step down to a strict inequality
    limit = math.exp(d * eps**2 / 2)
    n = int((1 + math.sqrt(1 + 4 * limit)) / 2)
    while n > 1 and n * (n - 1) >= limit:
        n -= 1
    return max(n, 1)


@dataclass(frozen=True)
class Packing:
    """A set of unit vectors in R^d with every pairwise ``|cos| <= eps``, and the bounds."""

    d: int
    eps: float
    vectors: Float[Tensor, "count dim"]
    """The vectors found, one per row, unit norm."""
    max_cos: float
    """Their largest pairwise ``|cos|`` (0 for a single vector)."""
    welch: float
    """:func:`welch_bound` (an upper bound on the count)."""
    random: int
    """:func:`random_bound` (a lower bound on the count)."""

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    def as_dict(self) -> dict[str, Any]:
        """The record without the vectors (for tables and figures)."""
        return {
            "d": self.d,
            "eps": self.eps,
            "count": self.count,
            "max_cos": self.max_cos,
            "welch": self.welch,
            "random": self.random,
        }


def _max_cos(V: Tensor) -> float:
    if V.shape[0] < 2:
        return 0.0
    U = V / V.norm(dim=1, keepdim=True)
    C = (U @ U.T).abs()
    C.fill_diagonal_(0)
    return float(C.max())


def _optimise(V: Tensor, eps: float, steps: int) -> Tensor:
    # minimise the squared excess of |cos| over eps, on the sphere (the vectors are renormalised
    # in the forward pass); Adam on the raw coordinates, its step shrinking geometrically to a
    # thousandth so that tight packings (max |cos| = eps exactly) are approached to rounding
    V = V.clone().requires_grad_(True)
    opt = torch.optim.Adam([V], lr=0.02)
    off = 1 - torch.eye(V.shape[0], dtype=V.dtype)
    for t in range(steps):
        U = V / V.norm(dim=1, keepdim=True)
        excess = torch.relu((U @ U.T).abs() - eps) * off
        penalty = excess.square().sum()
        if float(penalty.detach()) == 0:
            break
        for group in opt.param_groups:
            group["lr"] = 0.02 * 1e-3 ** (t / steps)
        opt.zero_grad()
        penalty.backward()
        opt.step()
    out = V.detach()
    return out / out.norm(dim=1, keepdim=True)


def pack_unit_vectors(
    d: int,
    eps: float,
    *,
    max_count: int | None = None,
    attempts: int = 4,
    steps: int = 1500,
    seed: int = 0,
) -> Packing:
    """Find as many unit vectors in R^d as possible with every pairwise ``|cos| <= eps``.

    Grow the set one vector at a time, starting from an orthonormal basis (d vectors with cosine 0
    always fit): add a random vector, minimise the penalty ``sum_{i != j} max(0, |cos_ij| - eps)^2``
    over all the vectors, and accept the larger set when its largest ``|cos|`` is at most ``eps``
    (to :data:`TOLERANCE`); after ``attempts`` failed starts (the later ones re-drawing every
    vector), stop. The count is a lower bound on the true maximum (an optimiser can miss a
    packing), and never exceeds :func:`welch_bound`. ``max_count`` caps the search (default: the
    Welch bound, or ``4 d`` when that is infinite). Deterministic for a given ``seed``.
    """
    d, eps = _check_d(d), _check_eps(eps)
    for name, value, low in (("attempts", attempts, 1), ("steps", steps, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    welch = welch_bound(d, eps)
    cap = int(math.floor(welch + TOLERANCE)) if math.isfinite(welch) else 4 * d
    if max_count is not None:
        if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
            raise ConfigError(f"max_count must be an integer >= 1, got {max_count!r}")
        cap = min(cap, max_count)
    gen = torch.Generator().manual_seed(derive_seed(seed, "pack", d, eps))
    best = torch.eye(d, dtype=torch.float64)[: min(d, cap)]
    while best.shape[0] < cap:
        found = None
        for attempt in range(attempts):
            n = best.shape[0] + 1
            if attempt == 0:
                start = torch.cat([best, torch.randn(1, d, generator=gen, dtype=torch.float64)])
            else:
                start = torch.randn(n, d, generator=gen, dtype=torch.float64)
            V = _optimise(start, eps, steps)
            if _max_cos(V) <= eps + TOLERANCE:
                found = V
                break
        if found is None:
            break
        best = found
    return Packing(d, eps, best, _max_cos(best), welch, random_bound(d, eps))


# --------------------------------------------------------------------------------------------------
# 2. interference between two features sharing a dimension


@dataclass(frozen=True)
class Interference:
    """Closed forms for two features i, j with overlap ``W_i . W_j`` (Section 2's features)."""

    density: float
    overlap: float
    both_present: float
    """``P(x_i != 0 and x_j != 0) = p^2``: how often the two collide."""
    mean_square: float
    """``E[(overlap x_j)^2] = overlap^2 p / 3``: the squared interference on i's read-out."""
    mean_square_when_active: float
    """``E[(overlap x_j)^2 ; x_i != 0] = overlap^2 p^2 / 3``: the part that lands when i is
    itself present."""
    antipodal_relu_error: float
    """``E[(x_i - ReLU(x_i - x_j))^2] = p^2 / 6``: what an antipodal pair (overlap -1, bias 0)
    still costs feature i after the output ReLU removes the negative interference (only
    collisions hurt: then the error is ``min(x_i, x_j)^2``, of mean 1/6)."""


def interference(density: float, overlap: float = 1.0) -> Interference:
    """The expected interference between two independent features of density ``p`` (each 0 with
    probability ``S = 1 - p``, else uniform on [0, 1]; ``E[x] = p/2``, ``E[x^2] = p/3``) whose
    directions have dot product ``overlap`` (1 or -1 when they share a dimension)."""
    p = _check_density(density)
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, int | float)
        or not math.isfinite(overlap)
    ):
        raise ConfigError(f"overlap must be a finite number, got {overlap!r}")
    o2 = float(overlap) ** 2
    return Interference(
        density=p,
        overlap=float(overlap),
        both_present=p * p,
        mean_square=o2 * p / 3,
        mean_square_when_active=o2 * p * p / 3,
        antipodal_relu_error=p * p / 6,
    )


# --------------------------------------------------------------------------------------------------
# 3. privileged basis: rotate the hidden space


def random_rotation(m: int, generator: torch.Generator) -> Float[Tensor, "hidden hidden2"]:
    """A uniformly random rotation of R^m (QR of a Gaussian matrix, signs fixed; determinant +1)."""
    m = _check_d(m)
    A = torch.randn(m, m, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))[None, :]
    if torch.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    return Q


def rotated_losses(
    run: Run, rotation: Float[Tensor, "hidden hidden2"], *, samples: int = 20_000, seed: int = 0
) -> dict[str, Float[Tensor, " inst"]]:
    """Each instance's loss before and after rotating its hidden space: ``W -> W R`` (and
    ``W_dec -> W_dec R``), as ``{"before": [inst], "after": [inst]}``.

    Both are measured on the same ``samples`` samples of the run's feature distribution (drawn from
    a generator seeded by ``seed``), with the run's loss, so any difference comes from the
    rotation. The ReLU-output model reads ``W^T W`` (Section 2), which a rotation leaves alone:
    its loss is unchanged. A model with a ReLU on its hidden layer (``privileged``, ``mlp``,
    ``abs``) applies the ReLU coordinate by coordinate, so a rotation changes it (Section 7).
    """
    W = run.W
    m = W.shape[-1]
    R = torch.as_tensor(rotation, dtype=torch.float64)
    if R.shape != (m, m) or not torch.allclose(R.T @ R, torch.eye(m, dtype=R.dtype), atol=1e-6):
        raise ConfigError(
            f"rotation must be an orthogonal {m} x {m} matrix (R^T R = I), got shape "
            f"{tuple(R.shape)}"
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be an integer >= 1, got {samples!r}")
    cfg = run.config
    dist = FeatureDistribution.from_config(cfg)
    dist = FeatureDistribution(
        density=dist.density.double(),
        correlated=dist.correlated,
        anticorrelated=dist.anticorrelated,
        signed=dist.signed,
    )
    x = dist.sample(samples, torch.Generator().manual_seed(derive_seed(seed, "rotate")))
    importance = importance_from_config(cfg).double()
    loss = get_loss(cfg.train.loss)
    params = {k: v.detach().double() for k, v in run.params.items()}
    out = {}
    for name, turn in (("before", None), ("after", R)):
        p = dict(params)
        if turn is not None:
            p["W"] = p["W"] @ turn
            if "W_dec" in p:
                p["W_dec"] = p["W_dec"] @ turn
        model = ToyModel(cfg.model.kind, **p)
        with torch.no_grad():
            out[name] = model.loss(x, importance, loss)
    return out


# --------------------------------------------------------------------------------------------------
# 4. analyse a small model; measure interference


def analyze_superposition(
    n_features: int,
    n_hidden: int,
    sparsity: float,
    *,
    importance_decay: float = 1.0,
    seeds: int = 4,
    steps: int = 3000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a ReLU-output model (Section 2) on ``n_features`` features of sparsity S (density
    ``1 - S``) in ``n_hidden`` dimensions, keep the best of ``seeds`` seeds by held-out loss, and
    summarise it as a dict: ``loss``; ``dimensions_per_feature`` (the paper's D* = m / ||W||_F^2,
    Section 4); per feature ``feature_norms`` (||W_i||), ``feature_dimensionality`` (D_i, Section
    4) and ``superposition`` (sum_{j != i} (W_i_hat . W_j)^2, Section 2); ``represented`` (features
    of norm above 0.5); ``geometry`` (the arrangement's name); and ``W``, the weights as lists."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    config = RunConfig(
        data=DataConfig(
            n_features=n_features, density=(1.0 - sparsity,), importance_decay=(importance_decay,)
        ),
        model=ModelConfig(kind="relu", n_hidden=n_hidden),
        train=TrainConfig(instances=seeds, steps=steps, seed=seed, eval_samples=10_000),
    )
    from superposition.training import train

    run = train(config, progress=False)
    k = run.best()[0]
    W = run.W[k : k + 1].detach()
    summary = geometry.summary(W)
    norms = summary["feature_norms"][0]
    return {
        "n_features": n_features,
        "n_hidden": n_hidden,
        "sparsity": float(sparsity),
        "loss": float(run.loss[k]),
        "dimensions_per_feature": summary["dimensions_per_feature"][0],
        "feature_norms": norms,
        "feature_dimensionality": summary["feature_dimensionality"][0],
        "superposition": summary["superposition"][0],
        "represented": sum(1 for v in norms if v > 0.5),
        "geometry": summary["geometry"][0],
        "W": W[0].tolist(),
    }


def measure_interference(
    W: Float[Tensor, "feat hidden"], features: list[int] | None = None
) -> dict[str, Any]:
    """How much the given features (default: all) interfere in the embedding ``W`` [feat, hidden].

    Defined, for the set F: ``total`` = ``sum_{i != j in F} (W_i . W_j)^2`` (each unordered pair
    twice: the squared off-diagonal of the paper's ``W^T W`` restricted to F); ``per_feature`` =
    ``sum_{j in F, j != i} (W_i_hat . W_j)^2`` for each i in F, the paper's superposition measure
    (Section 2) restricted to F (how strongly the others activate i's direction, relative to i's
    own norm); ``max_abs_cos`` = the largest ``|cos|`` between two of them (0 for one feature or
    when one is zero); ``gram`` = ``W_F W_F^T`` as lists.
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise ConfigError(f"W must be a tensor [feat, hidden], got shape {shape}")
    n = W.shape[0]
    chosen = list(range(n)) if features is None else list(features)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ConfigError(f"features must be distinct indices, at least one, got {features!r}")
    for i in chosen:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise ConfigError(f"feature index must be an integer in [0, {n}), got {i!r}")
    V = W.detach()[chosen]
    G = geometry.gram(V[None])[0]
    off = 1 - torch.eye(len(chosen), dtype=G.dtype)
    per = geometry.superposition(V[None])[0]
    norms = geometry.feature_norms(V[None])[0]
    live = norms > geometry.EPS
    cos = G / torch.where(live, norms, torch.ones_like(norms)).outer(
        torch.where(live, norms, torch.ones_like(norms))
    )
    cos = cos * live[:, None] * live[None, :] * off
    return {
        "features": chosen,
        "total": float((G.square() * off).sum()),
        "per_feature": per.tolist(),
        "max_abs_cos": float(cos.abs().max()) if len(chosen) > 1 else 0.0,
        "gram": G.tolist(),
    }
