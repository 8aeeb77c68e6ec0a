"""Regular k-gons in m = 2, the critical points of Chen, Lau, Mendel, Wei & Murfet (2023),
"Dynamical versus Bayesian Phase Transitions in a Toy Model of Superposition", and their exact
expected loss under the library's independent features at any density.

The configuration: of n features, k have rows ``W_i = sqrt(a) (cos 2 pi i/k, sin 2 pi i/k)``
(a regular k-gon, ``a = ||W_i||^2``) and a common bias b; the other n - k are not represented
(``W_i = 0``) and their bias is their mean ``p/2``, so each costs ``V(p) = p/3 - p^2/4``
(:func:`superposition.theory.dropped_loss`). Chen et al. worked in the limit of high sparsity,
where one feature at a time is active; here every feature is independently active with
probability p (uniform on [0, 1] when active), the distribution of Elhage et al. (2022), so
several polygon features can interfere at once.

By the polygon's symmetry every polygon feature has the same loss. Feature 0 outputs
``ReLU(a x_0 + sum_j c_j x_j + b)`` with ``c_j = a cos(2 pi j / k)``. Condition on which of the
k - 1 other polygon features are active (set A, probability ``p^|A| (1-p)^(k-1-|A|)``):

- feature 0 inactive (probability 1 - p): error ``E[ReLU(c_A . x + b)^2]``;
- feature 0 active (p): error ``1/3 - 2 E[x_0 ReLU(a x_0 + c_A . x + b)] + E[ReLU(...)^2]``.

Both expectations over the unit cube have a closed form (the inclusion-exclusion formula for a
truncated power over a box, integrating one coordinate at a time): for non-zero coefficients c
on d coordinates,

    int_[0,1]^d ReLU(c . x + b)^r dx
        = r!/(r+d)! sum_{v in {0,1}^d} (-1)^(d-|v|) ReLU(c . v + b)^(r+d) / prod_j c_j,

and ``E[x_0 ReLU(y)] = (1/2) d/dc_0 E[ReLU(y)^2]``, differentiated term by term. Coordinates
with ``c_j = 0`` (partners at right angles, as in the square) drop out. The loss is therefore a
finite sum, exact to rounding; coefficients far from 0 keep the alternating sum well
conditioned, which holds for k <= ``MAX_K``.
"""

import itertools
import math

import numpy as np

from superposition.errors import ConfigError
from superposition.theory import dropped_loss

MAX_K = 8
"""Largest polygon handled (the alternating sum loses precision as cosines approach 0)."""
_ZERO = 1e-9
_MIN_A = 1e-3


def _check(n: int, k: int) -> None:
    if not (isinstance(k, int) and 1 <= k <= MAX_K):
        raise ConfigError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    if not (isinstance(n, int) and n >= k):
        raise ConfigError(f"n must be an integer >= k ({k}), got {n!r}")


def _density(value: object) -> np.ndarray:
    p = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(p) & (p > 0) & (p <= 1)
    if not ok.all():
        raise ConfigError(f"density must be in (0, 1], got {float(p[~ok].flat[0])!r}")
    return p


def _cube_terms(c: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For coefficient vectors c (``[..., d]``, all non-zero) and bias b (``[...]``): the sum over
    cube vertices of ``(-1)^(d-|v|) ReLU(c . v + b)^e`` divided by ``prod c``, as a pair for the
    powers e = d + 2 and e = d + 1 weighted by ``v_0`` (the two pieces of the formulas above)."""
    d = c.shape[-1]
    top = np.zeros(np.broadcast_shapes(c.shape[:-1], b.shape))
    first = np.zeros_like(top)
    for v in itertools.product((0.0, 1.0), repeat=d):
        vv = np.asarray(v)
        g = np.maximum((c * vv).sum(-1) + b, 0.0)
        sign = -1.0 if (d - int(vv.sum())) % 2 else 1.0
        top = top + sign * g ** (d + 2)
        first = first + sign * vv[0] * g ** (d + 1)
    prod = np.prod(c, axis=-1)
    return np.asarray(top / prod), np.asarray(first / prod)


def _relu_sq(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``E[ReLU(c . x + b)^2]`` for x uniform on the unit cube (``c`` may hold zeros)."""
    keep = [j for j in range(c.shape[-1]) if np.all(np.abs(c[..., j]) > _ZERO)]
    if not keep:
        return np.asarray(np.maximum(b, 0.0) ** 2)
    d = len(keep)
    top, _ = _cube_terms(c[..., keep], b)
    return np.asarray(2 * top / math.factorial(d + 2))


def _own_terms(a: np.ndarray, c: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E[ReLU(y)^2]`` and ``E[x_0 ReLU(y)]`` for ``y = a x_0 + c . x + b`` (a > 0)."""
    keep = [j for j in range(c.shape[-1]) if np.all(np.abs(c[..., j]) > _ZERO)]
    full = np.concatenate([a[..., None] * np.ones(c.shape[:-1] + (1,)), c[..., keep]], -1)
    d = full.shape[-1]
    top, first = _cube_terms(full, b)
    sq = 2 * top / math.factorial(d + 2)
    cross = ((d + 2) * first - top / a) / math.factorial(d + 2)
    return np.asarray(sq), np.asarray(cross)


def polygon_feature_loss(density: object, k: int, a: object, b: object) -> np.ndarray:
    """Expected squared error of one feature of a regular k-gon with squared norm ``a`` and bias
    ``b`` when the k polygon features are independently active with probability ``density``.

    Broadcasts over density, a and b. ``a`` is floored at 1e-3 (the formula divides by it).
    """
    _check(k, k)
    p = _density(density)
    a_ = np.maximum(np.asarray(a, dtype=np.float64), _MIN_A)
    b_ = np.asarray(b, dtype=np.float64)
    shape = np.broadcast_shapes(p.shape, a_.shape, b_.shape)
    p, a_, b_ = (np.broadcast_to(x, shape) for x in (p, a_, b_))
    cos = np.cos(2 * np.pi * np.arange(1, k) / k)
    total = np.zeros(shape)
    for size in range(k):
        for A in itertools.combinations(range(k - 1), size):
            prob = p**size * (1 - p) ** (k - 1 - size)
            c = a_[..., None] * cos[list(A)] if A else np.zeros(shape + (0,))
            off = _relu_sq(c, b_)
            sq, cross = _own_terms(a_, c, b_)
            total = total + prob * ((1 - p) * off + p * (1 / 3 - 2 * cross + sq))
    return np.asarray(total)


def optimal_polygon(density: object, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, f)``: squared norm and bias minimising :func:`polygon_feature_loss` (the k-gon
    "with the optimal norm and bias" of Chen et al. 2023), and the minimum f.

    A deterministic zooming grid search, as :func:`superposition.theory.optimal_pair`: a 31 x 31
    grid on a in [0, 3], b in [-1.5, 1.5], then 40 rounds of a 9 x 9 grid around the best point,
    halving the spacing each round.
    """
    _check(k, k)
    shape = _density(density).shape
    p = _density(density).reshape(-1, 1)
    A, B = (g.reshape(1, -1) for g in np.meshgrid(np.linspace(0, 3, 31), np.linspace(-1.5, 1.5, 31),
                                                  indexing="ij"))
    step = 3 / 30
    offsets = np.arange(-4, 5, dtype=np.float64) / 2
    da, db = (o.reshape(1, -1) for o in np.meshgrid(offsets, offsets, indexing="ij"))
    for _ in range(41):
        A = np.maximum(A, _MIN_A)
        best = np.argmin(polygon_feature_loss(p, k, A, B), axis=1)[:, None]
        a0, b0 = np.take_along_axis(np.broadcast_to(A, (len(p), A.shape[1])), best, 1), \
            np.take_along_axis(np.broadcast_to(B, (len(p), B.shape[1])), best, 1)
        A, B = a0 + da * step, b0 + db * step
        step /= 2
    a, b = a0[:, 0], b0[:, 0]
    f = polygon_feature_loss(p[:, 0], k, a, b)
    return a.reshape(shape), b.reshape(shape), f.reshape(shape)


def kgon_loss(density: object, n: int, k: int, reduction: str = "mean") -> np.ndarray:
    """Expected loss of the optimal regular k-gon among n features in m = 2: k features on the
    polygon with their best common norm and bias (:func:`optimal_polygon`), n - k not represented
    with their bias at the mean. ``reduction="mean"`` divides by n (the trainer's loss), "sum" is
    the paper's per-sample loss. k = 0 is the all-dropped model."""
    if not (isinstance(k, int) and 0 <= k <= MAX_K):
        raise ConfigError(f"k must be an integer from 0 to {MAX_K}, got {k!r}")
    if not (isinstance(n, int) and n >= max(k, 1)):
        raise ConfigError(f"n must be an integer >= max(k, 1), got {n!r}")
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    p = _density(density)
    polygon = k * optimal_polygon(p, k)[2] if k else np.zeros_like(p)
    total = polygon + (n - k) * dropped_loss(p)
    return np.asarray(total / n if reduction == "mean" else total)


def kgon_weights(
    n: int, k: int, a: float, b: float, density: float
) -> tuple[np.ndarray, np.ndarray]:
    """``W [feat, hidden=2]`` and ``b [feat]`` of the configuration :func:`kgon_loss` scores:
    features 0..k-1 on the regular k-gon of squared norm a with bias b, the rest at W_i = 0 with
    bias ``density / 2``."""
    _check(n, k)
    angle = 2 * np.pi * np.arange(k) / k
    W = np.zeros((n, 2))
    W[:k] = math.sqrt(max(a, 0.0)) * np.stack([np.cos(angle), np.sin(angle)], -1)
    bias = np.full(n, float(density) / 2)
    bias[:k] = b
    return W, bias
