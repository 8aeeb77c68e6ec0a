"""The synthetic feature distribution: marginals, magnitudes, (anti)correlation, seeding, errors.

Every check is statistical (within a few standard errors) so that it holds whatever random stream
the sampler uses, and fails for a sampler with the wrong distribution.
"""

import math

import pytest
import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError

Z = 4.5  # standard errors allowed; hundreds of checks at 4.5 sigma still fail with p ~ 1e-3


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_rate(hits: torch.Tensor, p: torch.Tensor | float, n: int) -> None:
    """``hits`` (any shape) are counts out of n; each rate must be within Z standard errors of p."""
    p = torch.as_tensor(p, dtype=torch.float64)
    rate = hits.double() / n
    se = torch.sqrt(p * (1 - p) / n).clamp_min(1e-12)
    z = ((rate - p).abs() / se).max().item()
    assert z < Z, f"rate {rate} vs expected {p}: {z:.1f} standard errors off"


def _assert_mean(values: torch.Tensor, mean: float, var: float) -> None:
    n = values.numel()
    se = math.sqrt(var / n)
    got = values.double().mean().item()
    assert abs(got - mean) < Z * se, f"mean {got} vs {mean} (se {se})"


# --------------------------------------------------------------------------------------------------
# shape, seeding, marginals


def test_shape_and_dtype():
    dist = FeatureDistribution(density=torch.full((3, 7), 0.5))
    x = dist.sample(11, _gen())
    assert x.shape == (3, 11, 7)
    assert x.dtype == torch.float32
    assert dist.n_instances == 3
    assert dist.n_features == 7


def test_same_seed_same_samples_different_seed_different_samples():
    dist = FeatureDistribution(
        density=torch.full((2, 9), 0.3), correlated=(2,), anticorrelated=(3,), signed=True
    )
    a = dist.sample(100, _gen(5))
    b = dist.sample(100, _gen(5))
    c = dist.sample(100, _gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # consecutive draws from one generator differ
    g = _gen(5)
    assert not torch.equal(dist.sample(100, g), dist.sample(100, g))


@pytest.mark.parametrize("p", [1.0, 0.5, 0.1, 0.01])
def test_marginal_density_uniform(p):
    n = 40_000
    dist = FeatureDistribution(density=torch.full((2, 6), p))
    x = dist.sample(n, _gen(1))
    _assert_rate((x != 0).sum(dim=1), p, n)


def test_marginal_density_per_instance_and_per_feature():
    n = 40_000
    density = torch.tensor(
        [
            [1.0, 0.5, 0.2, 0.05, 0.01],
            [0.01, 0.05, 0.2, 0.5, 1.0],
            [0.3, 0.3, 0.9, 0.002, 0.7],
        ]
    )
    x = FeatureDistribution(density=density).sample(n, _gen(2))
    _assert_rate((x != 0).sum(dim=1), density, n)


def test_density_one_is_always_present():
    x = FeatureDistribution(density=torch.ones(2, 4)).sample(5000, _gen())
    assert (x != 0).all()


def test_from_config_lays_out_groups_and_feature_densities():
    cfg = RunConfig(
        data=DataConfig(
            n_features=3,
            density=(0.5, 0.1),
            importance_decay=(0.9, 0.7),
            feature_density=(1.0, 0.5, 2.0),
        ),
        train=TrainConfig(instances=2),
    )
    dist = FeatureDistribution.from_config(cfg)
    expected = torch.tensor([[0.5, 0.25, 1.0]] * 4 + [[0.1, 0.05, 0.2]] * 4)
    assert torch.allclose(dist.density, expected)
    assert dist.signed is False
    n = 20_000
    x = dist.sample(n, _gen(3))
    _assert_rate((x != 0).sum(dim=1), expected, n)


# --------------------------------------------------------------------------------------------------
# magnitudes


@pytest.mark.parametrize("p", [1.0, 0.3, 0.02])
def test_present_magnitudes_uniform_on_unit_interval(p):
    x = FeatureDistribution(density=torch.full((2, 5), p)).sample(40_000, _gen(4))
    present = x[x != 0]
    assert present.numel() > 3000
    assert present.min() >= 0
    assert present.max() <= 1
    _assert_mean(present, 0.5, 1 / 12)
    # variance 1/12 (the variance of x^2 for U[0,1] is 4/45)
    second = present.double().square()
    _assert_mean(second, 1 / 3, 4 / 45)
    # histogram: each tenth of [0, 1] holds a tenth of the values
    hist = torch.histc(present, bins=10, min=0.0, max=1.0)
    _assert_rate(hist, 0.1, present.numel())


def test_absent_features_are_exactly_zero_and_values_nonnegative():
    x = FeatureDistribution(density=torch.full((2, 5), 0.2)).sample(10_000, _gen(4))
    assert (x >= 0).all()
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("p", [1.0, 0.2])
def test_signed_magnitudes_uniform_on_symmetric_interval(p):
    n = 40_000
    dist = FeatureDistribution(density=torch.full((2, 5), p), signed=True)
    x = dist.sample(n, _gen(5))
    _assert_rate((x != 0).sum(dim=1), p, n)
    present = x[x != 0]
    assert present.min() >= -1
    assert present.max() <= 1
    _assert_mean(present, 0.0, 1 / 3)
    _assert_mean(present.double().square(), 1 / 3, 4 / 45)
    _assert_rate((present < 0).sum(), 0.5, present.numel())
    hist = torch.histc(present, bins=8, min=-1.0, max=1.0)
    _assert_rate(hist, 1 / 8, present.numel())


def test_from_config_signed_for_abs_model():
    cfg = RunConfig(data=DataConfig(n_features=4, density=(0.5,)), model=ModelConfig(kind="abs"))
    x = FeatureDistribution.from_config(cfg).sample(20_000, _gen())
    assert (x < 0).any()
    _assert_rate((x < 0).sum(dim=1), 0.25, 20_000)


# --------------------------------------------------------------------------------------------------
# independence, correlated and anticorrelated sets


def _both(x: torch.Tensor, i: int, j: int) -> torch.Tensor:
    return ((x[..., i] != 0) & (x[..., j] != 0)).sum(dim=1)


def test_independent_features_are_independent():
    n, p = 50_000, 0.3
    x = FeatureDistribution(density=torch.full((3, 4), p)).sample(n, _gen(6))
    for i, j in [(0, 1), (1, 2), (0, 3)]:
        _assert_rate(_both(x, i, j), p * p, n)
    # magnitudes of features present together are uncorrelated
    both = (x[..., 0] != 0) & (x[..., 1] != 0)
    a, b = x[..., 0][both].double(), x[..., 1][both].double()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(corr) < Z / math.sqrt(a.numel())


def test_correlated_set():
    n, p = 40_000, 0.2
    # features 0-2 one correlated set, 3-4 another, 5-6 independent
    dist = FeatureDistribution(density=torch.full((2, 7), p), correlated=(3, 2))
    x = dist.sample(n, _gen(7))
    on = x != 0
    # members always present or absent together
    assert torch.equal(on[..., 0], on[..., 1])
    assert torch.equal(on[..., 0], on[..., 2])
    assert torch.equal(on[..., 3], on[..., 4])
    # each set present with probability p, and the two sets independent of each other and of others
    _assert_rate(on.sum(dim=1), p, n)
    _assert_rate(_both(x, 0, 3), p * p, n)
    _assert_rate(_both(x, 0, 5), p * p, n)
    _assert_rate(_both(x, 5, 6), p * p, n)
    # magnitudes independent given present, and uniform
    given = on[..., 0]
    mags = x[given][:, :3].double()  # [present samples, 3]
    corr = torch.corrcoef(mags.T)
    bound = Z / math.sqrt(mags.shape[0])
    assert (corr - torch.eye(3, dtype=corr.dtype)).abs().max() < bound
    _assert_mean(mags, 0.5, 1 / 12)


def test_correlated_set_signed():
    n, p = 20_000, 0.4
    x = FeatureDistribution(density=torch.full((1, 3), p), correlated=(3,), signed=True).sample(
        n, _gen(8)
    )
    on = x != 0
    assert torch.equal(on[..., 0], on[..., 2])
    present = x[on]
    _assert_mean(present, 0.0, 1 / 3)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_anticorrelated_set(k):
    n, p = 40_000, 0.15
    # one correlated pair first, then the anticorrelated set, then two independent features
    n_feat = 2 + k + 2
    dist = FeatureDistribution(
        density=torch.full((2, n_feat), p), correlated=(2,), anticorrelated=(k,)
    )
    x = dist.sample(n, _gen(9))
    on = x != 0
    members = on[..., 2 : 2 + k]
    # never two present together
    assert members.sum(dim=-1).max() <= 1
    # each member's marginal is p, the set is active with probability k p
    _assert_rate(members.sum(dim=1), p, n)
    _assert_rate(members.any(dim=-1).sum(dim=1), k * p, n)
    # the rest of the features are unaffected
    _assert_rate(on.sum(dim=1), p, n)
    assert torch.equal(on[..., 0], on[..., 1])
    _assert_rate(_both(x, 2, 2 + k), p * p, n)  # a member and an independent feature
    # magnitudes of members are uniform on [0, 1] whichever member is chosen
    for i in range(2, 2 + k):
        vals = x[..., i][on[..., i]]
        assert vals.min() >= 0
        assert vals.max() <= 1
        _assert_mean(vals, 0.5, 1 / 12)


def test_anticorrelated_set_always_active_at_density_one_over_k():
    n = 20_000
    x = FeatureDistribution(density=torch.full((1, 4), 0.25), anticorrelated=(4,)).sample(
        n, _gen(10)
    )
    on = x != 0
    assert torch.equal(on.sum(dim=-1), torch.ones(1, n, dtype=torch.long))
    _assert_rate(on.sum(dim=1), 0.25, n)


def test_anticorrelated_signed():
    n, p = 40_000, 0.2
    x = FeatureDistribution(density=torch.full((1, 3), p), anticorrelated=(3,), signed=True).sample(
        n, _gen(11)
    )
    on = x != 0
    assert on.sum(dim=-1).max() <= 1
    _assert_rate(on.sum(dim=1), p, n)
    present = x[on]
    assert present.min() >= -1
    assert present.max() <= 1
    _assert_mean(present, 0.0, 1 / 3)
    _assert_rate((present < 0).sum(), 0.5, present.numel())


# --------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan, math.inf])
def test_bad_density_raises(bad):
    density = torch.full((2, 3), 0.5)
    density[1, 2] = bad
    with pytest.raises(ConfigError) as info:
        FeatureDistribution(density=density)
    assert "density" in str(info.value)
    assert str(bad) in str(info.value)


def test_sets_covering_too_many_features_raise():
    with pytest.raises(ConfigError, match="5"):
        FeatureDistribution(density=torch.full((1, 4), 0.1), correlated=(3,), anticorrelated=(2,))


def test_anticorrelated_density_too_high_raises():
    density = torch.full((2, 4), 0.2)
    density[1] = 0.4  # 3 * 0.4 > 1 in the second instance only
    with pytest.raises(ConfigError, match="anticorrelated"):
        FeatureDistribution(density=density, anticorrelated=(3,))


# --------------------------------------------------------------------------------------------------
# importance


def test_importance_from_config_decay():
    cfg = RunConfig(
        data=DataConfig(n_features=4, density=(1.0, 0.5), importance_decay=(0.9, 0.5)),
        train=TrainConfig(instances=2),
    )
    imp = importance_from_config(cfg)
    assert imp.shape == (8, 4)
    r09 = torch.tensor([0.9**i for i in range(4)])
    r05 = torch.tensor([0.5**i for i in range(4)])
    # groups: (1.0, .9), (1.0, .5), (.5, .9), (.5, .5), two instances each
    for k, row in enumerate([r09, r09, r05, r05, r09, r09, r05, r05]):
        assert torch.allclose(imp[k], row), k


def test_importance_from_config_explicit_overrides_decay():
    cfg = RunConfig(
        data=DataConfig(n_features=3, importance_decay=(0.5,), importance=(3.0, 1.0, 2.0)),
        train=TrainConfig(instances=3),
    )
    imp = importance_from_config(cfg)
    assert torch.equal(imp, torch.tensor([[3.0, 1.0, 2.0]] * 3))


def test_importance_uniform_by_default():
    imp = importance_from_config(RunConfig(data=DataConfig(n_features=6)))
    assert torch.equal(imp, torch.ones(1, 6))
