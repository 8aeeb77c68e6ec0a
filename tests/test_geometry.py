"""Exact answers for the geometry measures on constructed embeddings, and the shape classifier."""

import dataclasses
import json
import math

import pytest
import torch
from jaxtyping import TypeCheckError

from superposition import geometry as g
from superposition.errors import ConfigError

TOL = 1e-6
D64 = torch.float64


# --------------------------------------------------------------------------------------------------
# constructions: each returns [feat, hidden]; stack / unsqueeze(0) to add the inst axis


def polygon(k: int, m: int = 2, phase: float = 0.0, radius: float = 1.0) -> torch.Tensor:
    a = torch.arange(k, dtype=D64) * 2 * math.pi / k + phase
    W = torch.zeros(k, m, dtype=D64)
    W[:, 0], W[:, 1] = radius * torch.cos(a), radius * torch.sin(a)
    return W


def tetrahedron() -> torch.Tensor:
    v = [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]
    return torch.tensor(v, dtype=D64) / math.sqrt(3)


def square_antiprism() -> torch.Tensor:
    # two squares at heights +-h turned 45 degrees; h = 1/sqrt(3) makes the 8 unit vectors tight
    h, rho = 1 / math.sqrt(3), math.sqrt(2 / 3)
    rows = [
        [rho * math.cos(t), rho * math.sin(t), z]
        for z, t0 in [(h, 0.0), (-h, math.pi / 4)]
        for t in [t0 + j * math.pi / 2 for j in range(4)]
    ]
    return torch.tensor(rows, dtype=D64)


def embed(W: torch.Tensor, m: int, offset: int = 0) -> torch.Tensor:
    """Place W's hidden coordinates at [offset, offset + W.shape[1]) of an m-dimensional space."""
    out = torch.zeros(W.shape[0], m, dtype=D64)
    out[:, offset : offset + W.shape[1]] = W
    return out


def tegum() -> torch.Tensor:
    """A triangle in dimensions 0-1 and an antipodal pair in dimension 2: 5 features in 3-D."""
    pair = torch.tensor([[1.0], [-1.0]], dtype=D64)
    return torch.cat([embed(polygon(3), 3), embed(pair, 3, offset=2)])


def rotation(m: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=D64))
    return q * torch.sign(torch.diagonal(r))


def noisy(W: torch.Tensor, scale: float = 0.01, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return W + scale * torch.randn(W.shape, generator=gen, dtype=D64)


def one(W: torch.Tensor) -> torch.Tensor:
    return W.unsqueeze(0)


# --------------------------------------------------------------------------------------------------
# norms, Gram matrix, superposition: worked by hand


def test_gram_and_norms_by_hand() -> None:
    W = one(torch.tensor([[1.0], [-2.0]], dtype=D64))
    assert torch.allclose(g.gram(W), torch.tensor([[[1.0, -2.0], [-2.0, 4.0]]], dtype=D64))
    assert torch.allclose(g.feature_norms(W), torch.tensor([[1.0, 2.0]], dtype=D64))
    W = one(torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]], dtype=D64))
    assert torch.allclose(g.feature_norms(W), torch.tensor([[5.0, 1.0, 0.0]], dtype=D64))
    assert torch.allclose(g.gram(W)[0, 0], torch.tensor([25.0, 4.0, 0.0], dtype=D64))


def test_superposition_by_hand() -> None:
    pair = one(torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=D64))
    assert torch.allclose(g.superposition(pair), torch.ones(1, 2, dtype=D64), atol=TOL)
    ortho = one(torch.eye(3, dtype=D64))
    assert torch.equal(g.superposition(ortho), torch.zeros(1, 3, dtype=D64))
    # unequal antipodal pair, norms 1 and 2: (W0_hat . W1)^2 = 4, (W1_hat . W0)^2 = 1
    uneven = one(torch.tensor([[1.0], [-2.0]], dtype=D64))
    assert torch.allclose(g.superposition(uneven), torch.tensor([[4.0, 1.0]], dtype=D64))
    # triangle of unit vectors: two neighbours at cos 120 degrees, 2 * 1/4 each
    tri = one(polygon(3))
    assert torch.allclose(g.superposition(tri), torch.full((1, 3), 0.5, dtype=D64), atol=TOL)


# --------------------------------------------------------------------------------------------------
# feature dimensionality: the paper's fractions


@pytest.mark.parametrize(
    ("W", "expected"),
    [
        (torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=D64), 1 / 2),
        (polygon(3), 2 / 3),
        (polygon(5), 2 / 5),
        (polygon(5, m=4, phase=0.3, radius=0.7), 2 / 5),
        (polygon(6), 2 / 6),
        (tetrahedron(), 3 / 4),
        (square_antiprism(), 3 / 8),
        (torch.eye(4, dtype=D64), 1.0),
    ],
    ids=[
        "pair",
        "triangle",
        "pentagon",
        "pentagon-embedded",
        "hexagon",
        "tetra",
        "antiprism",
        "basis",
    ],
)
def test_dimensionality_of_regular_shapes(W: torch.Tensor, expected: float) -> None:
    D = g.feature_dimensionality(one(W))
    assert torch.allclose(D, torch.full_like(D, expected), atol=TOL)
    # equal-norm tight frames fill their span exactly: sum_i D_i = rank
    rank = torch.linalg.matrix_rank(W)
    assert float(D.sum()) == pytest.approx(float(rank), abs=TOL)


def test_dimensionality_uneven_pair_by_hand() -> None:
    uneven = one(torch.tensor([[1.0], [-2.0]], dtype=D64))
    assert torch.allclose(g.feature_dimensionality(uneven), torch.tensor([[0.2, 0.8]], dtype=D64))


def test_tegum_product_keeps_each_factor() -> None:
    D = g.feature_dimensionality(one(tegum()))
    expected = torch.tensor([[2 / 3, 2 / 3, 2 / 3, 1 / 2, 1 / 2]], dtype=D64)
    assert torch.allclose(D, expected, atol=TOL)


def test_zero_features_give_zero_not_nan() -> None:
    W = one(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=D64))
    W.requires_grad_(True)
    D, S = g.feature_dimensionality(W), g.superposition(W)
    assert torch.allclose(D, torch.tensor([[0.5, 0.0, 1.0, 0.5]], dtype=D64))
    assert torch.allclose(S, torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=D64))
    (D.sum() + S.sum()).backward()
    assert W.grad is not None and torch.isfinite(W.grad).all()
    zero = torch.zeros(2, 3, 2)
    assert torch.equal(g.feature_dimensionality(zero), torch.zeros(2, 3))
    assert torch.equal(g.superposition(zero), torch.zeros(2, 3))
    assert torch.isinf(g.dimensions_per_feature(zero)).all()


def test_several_instances_at_once() -> None:
    W = torch.stack(
        [
            embed(polygon(5), 3),
            tegum(),
            torch.cat([torch.eye(3, dtype=D64), torch.zeros(2, 3, dtype=D64)]),
        ]
    )
    D = g.feature_dimensionality(W)
    expected = torch.tensor(
        [[0.4] * 5, [2 / 3] * 3 + [1 / 2] * 2, [1.0, 1.0, 1.0, 0.0, 0.0]], dtype=D64
    )
    assert torch.allclose(D, expected, atol=TOL)
    dpf = g.dimensions_per_feature(W)
    # m / ||W||_F^2 counts all m = 3 hidden dimensions, even where a pentagon uses only 2
    assert torch.allclose(dpf, torch.tensor([3 / 5, 3 / 5, 1.0], dtype=D64), atol=TOL)
    # batched answers equal the one-instance answers
    for k in range(3):
        assert torch.allclose(g.superposition(W[k : k + 1])[0], g.superposition(W)[k])


def test_dimensions_per_feature() -> None:
    assert float(g.dimensions_per_feature(one(polygon(5)))) == pytest.approx(2 / 5)
    assert float(g.dimensions_per_feature(one(polygon(4)))) == pytest.approx(1 / 2)
    assert float(g.dimensions_per_feature(one(2 * torch.eye(3, dtype=D64)))) == pytest.approx(1 / 4)


def test_dimensionality_bounds_on_random_w() -> None:
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(16, 12, 4, generator=gen, dtype=D64) * torch.rand(16, 12, 1, generator=gen)
    D = g.feature_dimensionality(W)
    assert (D >= 0).all() and (D <= 1 + TOL).all()
    assert (D.sum(-1) <= 4 + TOL).all()
    # a wrong formula (e.g. dropping the i = j term, or using cosines) breaks the bound or range
    assert (D.sum(-1) > 1).all()


def test_dimensionality_invariant_under_rotation_and_scale() -> None:
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(5, 8, 4, generator=gen, dtype=D64)
    Q = rotation(4)
    D = g.feature_dimensionality(W)
    assert torch.allclose(g.feature_dimensionality(W @ Q), D, atol=TOL)
    assert torch.allclose(g.feature_dimensionality(3.0 * W), D, atol=TOL)
    assert torch.allclose(g.superposition(W @ Q), g.superposition(W), atol=TOL)
    assert torch.allclose(g.superposition(3.0 * W), 9.0 * g.superposition(W), atol=TOL)
    assert not torch.allclose(D, torch.full_like(D, float(D.mean())))  # not trivially constant


# --------------------------------------------------------------------------------------------------
# neurons (Section 7)


def neuron_w() -> torch.Tensor:
    # columns are neurons: dead | feature 2 dominant (0.6, 0.8) | monosemantic f0 | f1 and f2 tied
    cols = [[0.0, 0.0, 0.0], [0.6, 0.0, 0.8], [1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]
    return one(torch.tensor(cols, dtype=D64).T)  # [1, feat=3, hidden=4]


def test_neuron_monosemanticity_by_hand() -> None:
    W = neuron_w()
    share = g.neuron_monosemanticity(W)
    assert torch.allclose(share, torch.tensor([[0.0, 0.64, 1.0, 0.5]], dtype=D64))
    assert g.monosemantic_neurons(W).tolist() == [1]
    assert g.monosemantic_neurons(W, threshold=0.6).tolist() == [2]
    assert g.monosemantic_neurons(W, threshold=0.5).tolist() == [3]
    # a negative weight counts by its square: 9 / (9 + 1)
    W2 = one(torch.tensor([[-3.0], [1.0]], dtype=D64))
    assert float(g.neuron_monosemanticity(W2)) == pytest.approx(0.9)


def test_neuron_weights_and_order() -> None:
    W = neuron_w()
    weights = g.neuron_feature_weights(W)
    assert weights.shape == (1, 4, 3)
    assert torch.equal(weights[0, 1], torch.tensor([0.6, 0.0, 0.8], dtype=D64))
    # dominant feature 0 (neuron 2), then feature 1 (neuron 3, tie goes to the lower index),
    # then feature 2 (neuron 1), dead neuron 0 last
    assert g.neuron_order(W).tolist() == [[2, 3, 1, 0]]
    # same dominant feature: the more monosemantic neuron first
    W2 = one(torch.tensor([[0.8, 1.0, 0.0], [0.6, 0.0, 1.0]], dtype=D64))  # neurons (0.64, 1, f1)
    assert g.neuron_order(W2).tolist() == [[1, 0, 2]]


def test_monosemantic_basis_and_threshold_check() -> None:
    W = one(torch.cat([torch.eye(3, dtype=D64), torch.zeros(2, 3, dtype=D64)]))
    assert g.monosemantic_neurons(W).tolist() == [3]
    with pytest.raises(ConfigError):
        g.monosemantic_neurons(W, threshold=1.5)


# --------------------------------------------------------------------------------------------------
# the shape classifier


def label(W: torch.Tensor, **kwargs: float) -> str:
    return g.classify(one(W), **kwargs)[0].label


SHAPES = [
    (torch.tensor([[1.0], [-1.0]], dtype=D64), "antipodal pair"),
    (polygon(3), "triangle"),
    (polygon(5), "pentagon"),
    (polygon(6), "hexagon"),
    (polygon(7, phase=0.4), "heptagon"),
    (polygon(9), "9-gon"),
    (embed(polygon(5, phase=1.0), 5), "pentagon"),
    (tetrahedron(), "tetrahedron"),
    (square_antiprism(), "square antiprism"),
    (polygon(4), "2 antipodal pairs"),  # the square: two orthogonal pairs do not interact
    (torch.cat([torch.eye(3), -torch.eye(3)]).to(D64), "3 antipodal pairs"),  # the octahedron
    (tegum(), "1 triangle + 1 antipodal pair"),
    (
        torch.cat([polygon(4), torch.zeros(1, 2, dtype=D64)]),
        "2 antipodal pairs + 1 not represented",
    ),
    (
        torch.cat([torch.eye(5), torch.zeros(15, 5)]).to(D64),
        "5 dedicated dimensions + 15 not represented",
    ),
    (torch.tensor([[1.0], [0.0]], dtype=D64), "1 dedicated dimension + 1 not represented"),
    (torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=D64), "2 features in 1 dimension"),
    (torch.zeros(3, 2, dtype=D64), "3 not represented"),
]


@pytest.mark.parametrize(("W", "expected"), SHAPES, ids=[s[1] for s in SHAPES])
def test_classify_shapes(W: torch.Tensor, expected: str) -> None:
    assert label(W) == expected


@pytest.mark.parametrize(("W", "expected"), SHAPES, ids=[s[1] for s in SHAPES])
def test_classify_noisy_and_rotated(W: torch.Tensor, expected: str) -> None:
    m = W.shape[1]
    assert label(noisy(W) @ rotation(m, seed=5)) == expected
    # norms may differ a little: the shape is about directions
    scale = 1 + 0.1 * torch.rand(W.shape[0], 1, generator=torch.Generator().manual_seed(2))
    assert label(W * scale.to(D64)) == expected


def test_classify_components() -> None:
    geo = g.classify(one(torch.cat([tegum(), torch.zeros(1, 3, dtype=D64)])))[0]
    assert geo.not_represented == (5,)
    assert [(c.features, c.rank, c.name, c.regular) for c in geo.components] == [
        ((0, 1, 2), 2, "triangle", True),
        ((3, 4), 1, "antipodal pair", True),
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        geo.label = "x"  # type: ignore[misc]


def test_classify_deformed_shapes_get_count_names() -> None:
    bent = polygon(5).clone()
    bent[0] = torch.tensor([math.cos(0.4), math.sin(0.4)], dtype=D64)  # 23 degrees off
    geo = g.classify(one(bent))[0]
    assert geo.label == "5 features in 2 dimensions"
    assert not geo.components[0].regular
    # two triangles turned 30 degrees apart: a tight frame of 6, but not a hexagon
    two_triangles = torch.cat([polygon(3), polygon(3, phase=math.pi / 6)])
    assert label(two_triangles) == "6 features in 2 dimensions"
    # a tetrahedron with one vertex flipped is no longer centred
    flipped = tetrahedron() * torch.tensor([[1.0], [1.0], [1.0], [-1.0]], dtype=D64)
    assert label(flipped) == "4 features in 3 dimensions"
    # a tetrahedron stretched along z is centred but no longer a tight frame (D = 0.57, not 3/4)
    a, c = math.sqrt(0.4), math.sqrt(0.6)
    stretched = torch.tensor([[a, 0, c], [-a, 0, c], [0, a, -c], [0, -a, -c]], dtype=D64)
    assert label(stretched) == "4 features in 3 dimensions"
    # a nearly antipodal pair 30 degrees off is two features in a plane, not a digon
    off = torch.tensor([[1.0, 0.0], [-math.cos(0.5), math.sin(0.5)]], dtype=D64)
    assert label(off) == "2 features in 2 dimensions"


def test_classify_several_instances_and_threshold() -> None:
    W = torch.stack(
        [embed(polygon(5), 3), tegum(), torch.cat([tetrahedron(), 0.1 * tetrahedron()[:1]])]
    )
    labels = [geo.label for geo in g.classify(W)]
    assert labels == [
        "pentagon",
        "1 triangle + 1 antipodal pair",
        "1 tetrahedron + 1 not represented",
    ]
    small = 0.4 * W
    assert g.classify(small)[0].label == "5 not represented"
    assert g.classify(small, norm_threshold=0.3)[0].label == "pentagon"
    with pytest.raises(ConfigError):
        g.classify(W, norm_threshold=-1.0)


# --------------------------------------------------------------------------------------------------
# summary and shape checking


def test_summary_is_plain_json() -> None:
    W = torch.stack([embed(polygon(5), 3), tegum(), torch.zeros(5, 3, dtype=D64)]).float()
    s = g.summary(W.requires_grad_(True))
    assert set(s) == {
        "feature_norms",
        "feature_dimensionality",
        "superposition",
        "dimensions_per_feature",
        "geometry",
    }
    json.dumps(s, allow_nan=False)
    assert s["geometry"] == ["pentagon", "1 triangle + 1 antipodal pair", "5 not represented"]
    assert s["dimensions_per_feature"][2] is None
    assert s["dimensions_per_feature"][0] == pytest.approx(3 / 5, abs=1e-6)
    assert s["feature_dimensionality"][1] == pytest.approx([2 / 3] * 3 + [0.5] * 2, abs=1e-6)


@pytest.mark.parametrize(
    "fn",
    [
        g.gram,
        g.feature_norms,
        g.superposition,
        g.feature_dimensionality,
        g.dimensions_per_feature,
        g.neuron_monosemanticity,
        g.classify,
    ],
)
def test_wrong_shape_is_rejected(fn: object) -> None:
    with pytest.raises(TypeCheckError):
        fn(torch.ones(3, 2))  # type: ignore[operator]


def test_label_of_a_lone_unnamed_shape_has_no_stray_count() -> None:
    # two features in 2-D at 60 degrees (not antipodal, not regular) plus three unused features
    W = torch.zeros(1, 5, 2)
    W[0, 0] = torch.tensor([1.0, 0.0])
    W[0, 1] = torch.tensor([0.5, 3**0.5 / 2])
    label = g.classify(W)[0].label
    assert label == "2 features in 2 dimensions + 3 not represented"
