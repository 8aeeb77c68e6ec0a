"""Polysemanticity and capacity (Scherlis et al. 2022): the optimal allocation exactly, capacity
as feature dimensionality, the quadratic loss against its closed form and Monte Carlo, training
it on the torch step, the claims and the figure on a tiny run, and bad input."""

import math

import numpy as np
import pytest
import torch

import superposition as sp
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution
from superposition.errors import ConfigError
from superposition.experiments import capacity as cap
from superposition.geometry import feature_dimensionality
from superposition.losses import MEAN_SQUARED_ERROR, Loss, get_loss
from superposition.models import ToyModel

D64 = torch.float64

# --------------------------------------------------------------------------------------------------
# the optimal allocation, exactly


def test_optimal_capacities_exact_cases() -> None:
    # equal importances share the budget equally when returns diminish (K > 3)
    np.testing.assert_allclose(cap.optimal_capacities([1.0] * 6, 3, 10.0), [0.5] * 6, rtol=1e-14)
    # two features in one neuron, v = (1, 1/2), A = 6: C = (mu - 2)/4 and (mu/2 - 2)/4 summing to
    # 1 give mu = 16/3, C = (5/6, 1/6); their marginal benefits are then equal
    c = cap.optimal_capacities([1.0, 0.5], 1, 7.0)
    np.testing.assert_allclose(c, [5 / 6, 1 / 6], rtol=1e-14)
    b = cap.marginal_benefit([1.0, 0.5], c, 7.0)
    assert b[0] == pytest.approx(b[1], rel=1e-14) and b[0] == pytest.approx(72 * 9 / 256)
    # a third, unimportant feature gets nothing; the others keep their solution
    np.testing.assert_allclose(cap.optimal_capacities([1.0, 0.5, 0.1], 1, 7.0), [5 / 6, 1 / 6, 0])
    # no diminishing returns (K <= 3): the m most important get a dimension, ties to the lower index
    for k in (1.0, 1.8, 3.0):
        assert cap.optimal_capacities([0.5, 1.0, 0.9, 0.2], 2, k).tolist() == [0, 1, 1, 0]
    assert cap.optimal_capacities([1.0, 1.0, 1.0], 2, 2.0).tolist() == [1, 1, 0]
    # room for everyone
    assert cap.optimal_capacities([1.0, 0.1], 3, 50.0).tolist() == [1, 1]
    # the experiment's K = 6 point: whole, fractions and none
    c6 = cap.optimal_capacities(0.8 ** np.arange(6), 3, 6.0)
    assert c6[0] == 1 and c6[-1] == 0 and cap.fractional(c6) == 4
    assert c6.sum() == pytest.approx(3, abs=1e-12)


@pytest.mark.parametrize("kurtosis", [4.0, 6.0, 18.0, 60.0])
def test_optimal_capacities_satisfy_kkt_and_beat_every_feasible_allocation(kurtosis: float) -> None:
    gen = np.random.default_rng(int(kurtosis))
    v = np.sort(gen.uniform(0.1, 1.0, 7))[::-1]
    c = cap.optimal_capacities(v, 3, kurtosis)
    assert c.sum() == pytest.approx(3, abs=1e-12)
    b = cap.marginal_benefit(v, c, kurtosis)
    part = (c > 0) & (c < 1)
    level = b[part].mean() if part.any() else None
    if level is not None:  # the fractional features share one benefit; whole above, none below
        np.testing.assert_allclose(b[part], level, rtol=1e-10)
        assert (b[c == 1] >= level * (1 - 1e-12)).all() and (b[c == 0] <= level * (1 + 1e-12)).all()
    best = cap.capacity_loss(v, c, kurtosis)
    for _ in range(200):  # random allocations on the budget's boundary, each capacity in [0, 1]
        x = gen.dirichlet(np.ones(7)) * 3
        while (x > 1).any():
            over = x > 1
            spare = (x[over] - 1).sum()
            x[over] = 1
            x[~over] += spare * gen.dirichlet(np.ones((~over).sum()))
        assert cap.capacity_loss(v, x, kurtosis) >= best - 1e-12


# --------------------------------------------------------------------------------------------------
# capacity, feature dimensionality, and the loss


def test_capacity_is_feature_dimensionality() -> None:
    W = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(0), dtype=D64)
    W[0, 2] = 0.0  # a dropped feature has capacity 0
    np.testing.assert_allclose(cap.capacities(W), feature_dimensionality(W), rtol=1e-12)
    assert float(cap.capacities(W)[0, 2]) == 0.0
    assert (cap.capacities(W).sum(-1) <= 3 + 1e-12).all()
    angles = torch.arange(3, dtype=D64) * 2 * math.pi / 3  # a triangle: 2/3 each
    tri = torch.stack([angles.cos(), angles.sin()], -1)[None]
    np.testing.assert_allclose(cap.capacities(tri)[0], [2 / 3] * 3, rtol=1e-12)


def test_the_closed_form_loss_is_the_models_expected_loss() -> None:
    # two equally important features in one neuron, K = 7 (density 9/35): the optimum gives each
    # half a dimension with norm^2 A v C / (A C + 2 (1 - C)) = 3/4, as an antipodal pair
    p = 9 / 35
    assert cap.signed_kurtosis(p) == pytest.approx(7.0)
    assert cap.optimal_capacities([1.0, 1.0], 1, 7.0).tolist() == [0.5, 0.5]
    W = torch.tensor([[[math.sqrt(0.75)], [-math.sqrt(0.75)]]], dtype=D64)
    value = cap.expected_loss(W, torch.zeros(1, 2), torch.ones(1, 2), p)
    assert float(value[0]) == pytest.approx(cap.capacity_loss([1, 1], [0.5, 0.5], 7.0, p / 3))
    # nothing represented: each feature costs s^2 A v^2, its square's variance
    zero = cap.expected_loss(torch.zeros(1, 2, 1), torch.zeros(1, 2), torch.ones(1, 2), p)
    assert float(zero[0]) == pytest.approx((p / 3) ** 2 * 6 * 2)
    assert cap.capacity_loss([1, 1], [0, 0], 7.0, p / 3) == pytest.approx(float(zero[0]))


def test_quadratic_loss_against_monte_carlo_and_autograd() -> None:
    gen = torch.Generator().manual_seed(3)
    inst, n, m, p = 3, 5, 2, 0.2
    W = torch.randn(inst, n, m, generator=gen, dtype=D64)
    b = 0.3 * torch.randn(inst, n, generator=gen, dtype=D64)
    imp = torch.rand(inst, n, generator=gen, dtype=D64) + 0.2
    model = ToyModel("linear", W, b)
    loss = get_loss("quadratic")
    dist = FeatureDistribution(density=torch.full((inst, n), p, dtype=D64), signed=True)
    values = torch.stack([model.loss(dist.sample(2048, gen), imp, loss) for _ in range(24)])
    mean, se = values.mean(0), values.std(0) / math.sqrt(len(values))
    exact = cap.expected_loss(W, b, imp, p) * (1 - 1 / 2048)  # the batch mean's own variance
    assert ((mean - exact).abs() <= 4 * se).all(), ((mean - exact) / se).tolist()
    # the closed-form gradient equals autograd's (the default Loss.output_grad)
    x = dist.sample(64, gen)
    out = model.forward(x)
    value, grad = loss.output_grad(out, x, imp)
    ref_value, ref_grad = Loss.output_grad(loss, out, x, imp)
    assert value is not None and ref_value is not None
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)
    assert loss is not MEAN_SQUARED_ERROR and loss.name == "quadratic"


# --------------------------------------------------------------------------------------------------
# training on the torch step, the claims and the figure on a tiny run


@pytest.fixture(scope="module")
def tiny() -> sp.Run:
    cfg = RunConfig(
        data=DataConfig(
            n_features=3, density=(1.0, 0.1), importance_decay=(0.5,), signed=True
        ),
        model=ModelConfig(kind="linear", n_hidden=1),
        train=TrainConfig(
            loss="quadratic", instances=2, steps=400, lr=2e-2, weight_decay=0.0,
            schedule="cosine", batch_size=256, eval_samples=2000, device="cpu",
        ),
    )
    return sp.train(cfg, progress=False)


def test_training_the_quadratic_model_finds_the_allocation(tiny: sp.Run) -> None:
    # density 1 (K = 1.8): the most important feature takes the neuron; density 0.1 (K = 18):
    # v = (1, 1/2, 1/4), A = 17: C = (12 v - 2) / 15 = (2/3, 4/15, 1/15) by water-filling
    pts = cap.points(tiny)
    np.testing.assert_allclose(pts[0].theory, [1, 0, 0])
    np.testing.assert_allclose(pts[1].theory, [2 / 3, 4 / 15, 1 / 15], rtol=1e-12)
    for pt in pts:
        assert pt.error <= 0.1, (pt.kurtosis, pt.trained, pt.theory)
        assert 1 - 1e-3 <= pt.loss / pt.optimum <= 1.05


def test_claims_and_figure_on_a_tiny_run(tiny: sp.Run) -> None:
    from superposition.plots.capacity import FIGURES

    claims = cap.claims({"quadratic": tiny})
    assert len(claims) == 4
    assert claims[0].holds and claims[1].holds
    assert "no density has all three kinds" in claims[2].measured and not claims[2].holds
    fig = FIGURES["capacities"]({"quadratic": tiny})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ConfigError, match="importance must be .* got \\[1.0, -1.0\\]"):
        cap.optimal_capacities([1.0, -1.0], 1, 5.0)
    with pytest.raises(ConfigError, match="n_hidden must be an integer >= 1, got 0"):
        cap.optimal_capacities([1.0], 0, 5.0)
    with pytest.raises(ConfigError, match="kurtosis must be .* >= 1 .* got 0.5"):
        cap.optimal_capacities([1.0], 1, 0.5)
    with pytest.raises(ConfigError, match="capacities must be 2 numbers in \\[0, 1\\]"):
        cap.capacity_loss([1.0, 1.0], [1.5, 0.0], 5.0)
    with pytest.raises(ConfigError, match="density must be in \\(0, 1\\], got 0.0"):
        cap.signed_kurtosis(0.0)
