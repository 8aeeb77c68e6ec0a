"""The exact loss of a regular k-gon in m = 2 (Chen et al. 2023): exact special cases against the
Section 3 closed forms and the exact n <= 3 integrator, Monte Carlo of the model's own loss for
the pentagon and hexagon, and bad input."""

import numpy as np
import pytest
import torch

from superposition import geometry, kgon, theory
from superposition.errors import ConfigError
from superposition.models import ToyModel


@pytest.mark.parametrize("p", [0.05, 0.3, 1.0])
@pytest.mark.parametrize(("a", "b"), [(1.0, 0.0), (0.8, -0.1), (1.3, 0.2)])
def test_digon_and_square_are_antipodal_pairs(p: float, a: float, b: float) -> None:
    # the 2-gon is an antipodal pair; in the square each feature's other partners sit at right
    # angles and do not interfere, so it is two antipodal pairs
    pair = theory.pair_loss(p, a, b)
    assert kgon.polygon_feature_loss(p, 2, a, b) == pytest.approx(pair, rel=1e-12, abs=1e-15)
    assert kgon.polygon_feature_loss(p, 4, a, b) == pytest.approx(pair, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("p", [0.05, 0.3, 1.0])
@pytest.mark.parametrize(("a", "b"), [(1.0, 0.0), (0.8, -0.1), (1.3, 0.2)])
def test_triangle_matches_the_exact_integrator(p: float, a: float, b: float) -> None:
    W, bias = kgon.kgon_weights(3, 3, a, b, p)
    exact, _ = theory.expected_loss(
        torch.tensor(W)[None], torch.tensor(bias)[None], p, method="exact", reduction="sum"
    )
    assert 3 * kgon.polygon_feature_loss(p, 3, a, b) == pytest.approx(float(exact), rel=1e-10)


@pytest.mark.parametrize(("k", "p", "a", "b"), [(5, 0.05, 1.3, -0.25), (6, 0.3, 0.8, -0.1),
                                                (6, 1.0, 1.0, 0.0), (7, 0.1, 1.2, -0.3)])
def test_pentagon_hexagon_heptagon_match_the_models_loss(
    k: int, p: float, a: float, b: float
) -> None:
    n = 7
    W, bias = kgon.kgon_weights(n, k, a, b, p)
    model = ToyModel("relu", torch.tensor(W)[None], torch.tensor(bias)[None])
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(1, 600_000, n, generator=gen, dtype=torch.float64)
    x = x * (torch.rand(1, 600_000, n, generator=gen, dtype=torch.float64) < p)
    per_sample = (model.forward(x) - x).square().sum(-1)[0]
    mc, se = float(per_sample.mean()), float(per_sample.std()) / 600_000**0.5
    closed = k * float(kgon.polygon_feature_loss(p, k, a, b)) + (n - k) * float(
        theory.dropped_loss(p)
    )
    # within 4 standard errors, and the estimate is sharp enough for that to mean something
    assert abs(closed - mc) < 4 * se
    assert se < 0.006 * mc


def test_optimal_polygons() -> None:
    p = np.array([0.05, 1.0])
    # one feature with a dimension to itself: a = 1, b = 0 reconstructs it exactly
    a1, b1, f1 = kgon.optimal_polygon(p, 1)
    assert np.allclose(f1, 0.0, atol=1e-15)
    assert np.allclose(a1, 1.0, atol=1e-6) and np.allclose(b1, 0.0, atol=1e-6)  # f is flat there
    assert np.allclose(kgon.kgon_loss(p, 6, 1), 5 * theory.dropped_loss(p) / 6, rtol=1e-12)
    assert np.allclose(kgon.kgon_loss(p, 6, 0, reduction="sum"), 6 * theory.dropped_loss(p))
    # the optimal digon is the optimal antipodal pair of Section 3 (a = b = 1/2 at density 1)
    _, _, f_pair = theory.optimal_pair(p)
    a2, b2, f2 = kgon.optimal_polygon(p, 2)
    assert np.allclose(f2, f_pair, rtol=1e-9)
    assert a2[1] == pytest.approx(0.5, abs=1e-6) and b2[1] == pytest.approx(0.5, abs=1e-6)
    # at high sparsity every added polygon vertex lowers the loss, down to the hexagon of n = 6
    losses = [float(kgon.kgon_loss(0.03, 6, k)) for k in range(7)]
    assert all(x > y for x, y in zip(losses, losses[1:], strict=False))


def test_the_weights_form_a_regular_polygon() -> None:
    W, bias = kgon.kgon_weights(6, 5, 1.5, -0.2, 0.05)
    D = geometry.feature_dimensionality(torch.tensor(W)[None])[0]
    assert torch.allclose(D[:5], torch.full((5,), 2 / 5, dtype=D.dtype))
    assert np.allclose(np.linalg.norm(W[:5], axis=1) ** 2, 1.5) and np.all(W[5] == 0)
    assert bias.tolist() == [-0.2] * 5 + [0.025]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kgon.kgon_loss(0.1, 6, 9), "k must be an integer from 0 to 8"),
        (lambda: kgon.kgon_loss(0.1, 3, 5), "n must be an integer >= max"),
        (lambda: kgon.kgon_loss(0.0, 6, 3), "density must be in"),
        (lambda: kgon.kgon_loss(0.1, 6, 3, reduction="max"), "reduction must be"),
        (lambda: kgon.polygon_feature_loss(1.5, 3, 1.0, 0.0), "density must be in"),
        (lambda: kgon.kgon_weights(2, 3, 1.0, 0.0, 0.1), "n must be an integer >= k"),
    ],
)
def test_bad_input_is_refused(call: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()  # type: ignore[operator]
