"""The paper's qualitative outcomes on small configs (Elhage et al. 2022, intro and Section 2).

Each test trains a few instances per setting and looks at the best one by held-out loss (best-of-N,
as the paper does). The geometry is computed inline from the paper's formulas (Section 4) so that
these tests check the trainer, not the geometry module:

- feature norm ``||W_i||``;
- feature dimensionality ``D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2``.
"""

import math

import pytest
import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Run
from superposition.training import train

pytestmark = pytest.mark.slow


def _train(
    kind: str,
    n: int,
    m: int,
    density: tuple[float, ...],
    decay: float,
    *,
    instances: int = 6,
    steps: int = 3000,
    batch: int = 256,
    lr: float = 1e-2,
    seed: int = 0,
) -> Run:
    return train(
        RunConfig(
            data=DataConfig(n_features=n, density=density, importance_decay=(decay,)),
            model=ModelConfig(kind=kind, n_hidden=m),
            train=TrainConfig(
                steps=steps,
                batch_size=batch,
                instances=instances,
                lr=lr,
                seed=seed,
                eval_samples=30_000,
                device="cpu",
            ),
        )
    )


def _best(run: Run) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """For each density, the (W [feat, hidden], b [feat]) of the best instance of its group."""
    out = {}
    for group, k in zip(run.config.groups, run.best(), strict=True):
        out[group.density] = (run.W[k].double(), run.b[k].double())
    return out


def _norms(W: torch.Tensor) -> torch.Tensor:
    return W.norm(dim=-1)


def _dimensionality(W: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    G = W @ W.T
    sq = torch.diagonal(G)
    live = sq > eps**2
    safe = torch.where(live, sq, torch.ones_like(sq))
    overlap = (G**2 / safe[:, None]).sum(-1)  # sum_j (W_i_hat . W_j)^2 * ||W_i||^2 / ||W_i||^2
    return torch.where(live, sq / torch.where(live, overlap, torch.ones_like(overlap)), 0.0)


def _cos(W: torch.Tensor) -> torch.Tensor:
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T


# --------------------------------------------------------------------------------------------------
# Section 2: the linear model keeps the top m features, whatever the sparsity


def test_linear_model_keeps_the_top_m_features_at_any_density():
    n, m = 20, 5
    run = _train("linear", n, m, (1.0, 0.01), 0.7, instances=4)
    for density, (W, b) in _best(run).items():
        norms = _norms(W)
        assert (norms[:m] - 1).abs().max() < 0.1, (density, norms)
        assert norms[m:].max() < 0.15, (density, norms)
        # the kept features are orthonormal: no superposition, each has a whole dimension
        gram = W[:m] @ W[:m].T
        assert (gram - torch.eye(m, dtype=gram.dtype)).abs().max() < 0.1, (density, gram)
        D = _dimensionality(W)
        assert D[:m].min() > 0.9, (density, D)
        assert D.sum() <= m + 1e-6
        assert D[m:].max() < 0.05, (density, D)
        # a dropped feature is predicted by its mean, density / 2
        torch.testing.assert_close(
            b[m:], torch.full((n - m,), density / 2, dtype=b.dtype), atol=0.05, rtol=0.0
        )


# --------------------------------------------------------------------------------------------------
# Intro: ReLU output model, n = 5, m = 2, I = 0.9^i


@pytest.fixture(scope="module")
def relu_5_2() -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    return _best(_train("relu", 5, 2, (1.0, 0.3, 0.05), 0.9, instances=6))


def test_relu_5_2_dense_keeps_the_two_most_important_features_orthogonal(relu_5_2):
    W, b = relu_5_2[1.0]
    norms = _norms(W)
    assert (norms[:2] - 1).abs().max() < 0.1, norms
    assert norms[2:].max() < 0.3, norms
    assert abs(_cos(W)[0, 1].item()) < 0.1
    D = _dimensionality(W)
    assert D[:2].min() > 0.9, D
    # the dropped features are predicted by their mean, 1/2
    assert (b[2:] - 0.5).abs().max() < 0.15, b


def test_relu_5_2_moderate_density_gives_two_antipodal_pairs(relu_5_2):
    W, _ = relu_5_2[0.3]
    norms = _norms(W)
    represented = norms > 0.5
    assert represented.sum().item() == 4, norms
    # the dropped one is among the least important (which one varies: their importances are close)
    assert represented[:2].all(), norms
    assert norms[represented].min() > 0.8, norms
    D = _dimensionality(W)
    assert (D[represented] - 0.5).abs().max() < 0.08, D
    # every represented feature has an antipodal partner
    cos = _cos(W[represented])
    assert (cos.min(dim=-1).values < -0.95).all(), cos


def test_relu_5_2_sparse_gives_a_pentagon(relu_5_2):
    W, b = relu_5_2[0.05]
    norms = _norms(W)
    assert norms.min() > 0.8, norms
    D = _dimensionality(W)
    assert (D - 0.4).abs().max() < 0.06, D
    assert D.sum().item() == pytest.approx(2.0, abs=0.1)
    # the five directions are spread evenly around the circle: consecutive angles about 72 degrees
    angles = torch.atan2(W[:, 1], W[:, 0]).sort().values
    gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
    assert (gaps - 2 * math.pi / 5).abs().max() < math.radians(12), torch.rad2deg(gaps)
    # interference is filtered by negative biases
    assert b.max() < 0, b


# --------------------------------------------------------------------------------------------------
# Section 2: the ReLU model, n = 20, m = 5, I = 0.7^i, packs more features as sparsity grows


def test_relu_20_5_superposition_and_negative_biases_at_high_sparsity():
    n, m = 20, 5
    best = _best(_train("relu", n, m, (1.0, 0.003), 0.7, instances=4, batch=1024))

    W, b = best[1.0]
    norms = _norms(W)
    # dense: exactly the top m features, orthogonal, no negative biases
    assert (norms[:m] - 1).abs().max() < 0.1, norms
    assert norms[m:].max() < 0.3, norms
    assert _dimensionality(W)[:m].min() > 0.9
    assert b[:m].abs().max() < 0.05, b

    W, b = best[0.003]
    norms = _norms(W)
    represented = norms > 0.5
    count = int(represented.sum())
    assert count >= m + 4, norms
    # the most important features are among the represented ones
    assert represented[:m].all(), norms
    # superposition: more feature norm than dimensions, and features sharing dimensions
    assert (W**2).sum().item() > m + 3
    D = _dimensionality(W)
    assert D.sum().item() <= m + 1e-6
    assert D[represented].max() < 0.75, D
    # negative biases filter the interference
    assert b[represented].min() < -0.15, b
    assert b[represented].mean() < -0.05, b
