"""Section 3's closed forms against Monte Carlo, the exact expected loss against Monte Carlo, the
phase diagram's limits and boundaries, the extra feature's classifier, and bad input."""

import itertools
import math

import numpy as np
import pytest
import torch

from superposition import theory as T
from superposition.errors import ConfigError

D64 = torch.float64
POINTS = [(1.0, 0.3), (0.3, 2.0), (0.05, 1.0), (0.01, 5.0)]


def importance(n: int, r: float, inst: int = 1) -> torch.Tensor:
    out = torch.ones(inst, n, dtype=D64)
    out[:, -1] = r
    return out


# --------------------------------------------------------------------------------------------------
# the building blocks, by hand


def test_known_values() -> None:
    assert T.dropped_loss(1.0) == pytest.approx(1 / 12)
    assert T.pair_loss(0.5) == pytest.approx(0.25 / 6)  # the paper's W = [1, -1]: p^2 / 6
    a, b, f = T.optimal_pair(1.0)
    # dense: the best function of x1 - x2 is E[x1 | z] = (1 + z) / 2, linear, so f = 1/24
    assert (float(a), float(b)) == pytest.approx((0.5, 0.5), abs=1e-7)
    assert float(f) == pytest.approx(1 / 24, rel=1e-12)
    for p in [0.5, 0.1, 0.01]:
        f_opt = float(T.optimal_pair(p)[2])
        assert f_opt <= float(T.pair_loss(p)) + 1e-15  # optimising never hurts
        assert f_opt <= float(T.dropped_loss(p)) + 1e-15  # a = 0 is dropping the feature


# --------------------------------------------------------------------------------------------------
# every closed form against Monte Carlo (4 standard errors) and against the exact integrator


@pytest.mark.parametrize("nm", T.SUPPORTED, ids=str)
@pytest.mark.parametrize("optimise", [True, False])
def test_candidate_losses_match_monte_carlo(nm: tuple[int, int], optimise: bool) -> None:
    n, m = nm
    gen = torch.Generator().manual_seed(7)
    for name in T.phases(n, m):
        dens = [p for p, _ in POINTS]
        W, b = T.candidate_params(n, m, name, dens, optimise=optimise)
        imp = torch.stack([importance(n, r)[0] for _, r in POINTS])
        density = torch.tensor(dens, dtype=D64)[:, None].expand(-1, n)
        mc, se = T.expected_loss(
            W, b, density, imp, method="monte_carlo", samples=300_000, generator=gen
        )
        exact, zero = T.expected_loss(W, b, density, imp, method="exact")
        assert (zero == 0).all()
        for k, (p, r) in enumerate(POINTS):
            closed = T.candidate_loss(n, m, name, p, r, optimise=optimise)
            assert float(se[k]) > 0 or closed == 0
            assert abs(float(mc[k]) - closed) <= 4 * float(se[k]) + 1e-12, (name, p, r)
            assert float(exact[k]) == pytest.approx(closed, rel=1e-10, abs=1e-15), (name, p, r)


def test_paper_reduction_is_n_times_the_mean() -> None:
    for n, m in T.SUPPORTED:
        for name in T.phases(n, m):
            mean = T.candidate_loss(n, m, name, 0.2, 3.0)
            assert T.candidate_loss(n, m, name, 0.2, 3.0, reduction="sum") == pytest.approx(
                n * mean
            )
    W, b = T.candidate_params(3, 2, "superposition", [0.2])
    value = T.expected_loss(W, b, 0.2, importance(3, 3.0))[0]
    total = T.expected_loss(W, b, 0.2, importance(3, 3.0), reduction="sum")[0]
    assert float(total) == pytest.approx(3 * float(value))
    assert float(value) == pytest.approx(T.candidate_loss(3, 2, "superposition", 0.2, 3.0))


def test_grid_matches_pointwise() -> None:
    d, r = np.array([1.0, 0.2, 0.02]), np.array([0.1, 1.0, 7.0, 10.0])
    grid = T.candidate_losses(3, 2, d, r)
    assert tuple(grid) == T.PHASES
    for name in T.PHASES:
        assert grid[name].shape == (4, 3)
        for i, j in itertools.product(range(4), range(3)):
            assert grid[name][i, j] == pytest.approx(T.candidate_loss(3, 2, name, d[j], r[i]))


# --------------------------------------------------------------------------------------------------
# the expected loss of any W, b


@pytest.mark.parametrize("kind", ["linear", "relu"])
@pytest.mark.parametrize("nm", [(1, 1), (2, 1), (3, 2), (3, 1), (4, 2)], ids=str)
def test_expected_loss_exact_matches_monte_carlo(kind: str, nm: tuple[int, int]) -> None:
    n, m = nm
    gen = torch.Generator().manual_seed(n * 10 + m)
    inst = 6
    W = torch.randn(inst, n, m, generator=gen, dtype=D64)
    b = 0.5 * torch.randn(inst, n, generator=gen, dtype=D64)
    density = 0.1 + 0.9 * torch.rand(inst, n, generator=gen, dtype=D64)
    imp = 0.2 + torch.rand(inst, n, generator=gen, dtype=D64)
    mc, se = T.expected_loss(
        W, b, density, imp, kind=kind, method="monte_carlo", samples=200_000, generator=gen
    )
    assert (se > 0).all()
    if kind == "relu" and n > 3:  # auto falls back to Monte Carlo with its error
        with pytest.raises(ConfigError, match="n <= 3"):
            T.expected_loss(W, b, density, imp, kind=kind, method="exact")
        value, err = T.expected_loss(W, b, density, imp, kind=kind, samples=1000, generator=gen)
        assert (err > 0).all()
        return
    exact, err = T.expected_loss(W, b, density, imp, kind=kind)
    assert (err == 0).all()
    assert ((mc - exact).abs() <= 4 * se).all(), ((mc - exact) / se).tolist()


def test_exact_relu_cuts_every_way() -> None:
    """The ReLU's hyperplane cuts a simplex with 0 to d + 1 vertices on its positive side; each
    case is integrated differently, so check them all against Monte Carlo on the simplex."""
    rng = np.random.default_rng(3)
    for d in (1, 2, 3):
        lam = rng.dirichlet(np.ones(d + 1), size=400_000)  # uniform on the simplex
        for inside in range(d + 2):
            L = np.concatenate([rng.uniform(0.2, 1, inside), rng.uniform(-1, -0.2, d + 1 - inside)])
            C = rng.normal(size=d + 1)
            exact = float(T._clipped(L[None], C[None])[0])
            Lx, Cx = lam @ L, lam @ C
            sample = np.where(Lx > 0, Lx * Cx, 0.0)
            se = sample.std() / math.sqrt(len(sample))
            assert abs(sample.mean() - exact) <= 4 * se + 1e-12, (d, inside)


def test_expected_loss_of_perfect_and_zero_models() -> None:
    eye = torch.eye(3, dtype=D64)[None]
    zeros = torch.zeros(1, 3, dtype=D64)
    for kind in ["linear", "relu"]:
        value, err = T.expected_loss(eye, zeros, 0.3, kind=kind)
        assert float(value) == pytest.approx(0.0, abs=1e-15) and float(err) == 0
    # W = 0 with b = p/2: every feature costs its variance
    value, _ = T.expected_loss(torch.zeros(1, 3, 2, dtype=D64), zeros + 0.15, 0.3)
    assert float(value) == pytest.approx(0.1 - 0.0225)


# --------------------------------------------------------------------------------------------------
# the phase diagram: the paper's limits


D_GRID = np.logspace(0, -2, 40)
R_GRID = np.logspace(-1, 1, 40)


@pytest.mark.parametrize("nm", T.SUPPORTED, ids=str)
@pytest.mark.parametrize("optimise", [True, False])
def test_phase_diagram_has_its_phases(nm: tuple[int, int], optimise: bool) -> None:
    diagram = T.phase_diagram(*nm, D_GRID, R_GRID, optimise=optimise)
    assert diagram.labels.shape == (40, 40)
    assert diagram.names == T.phases(*nm) == T.PHASES[: len(T.candidates(*nm))]
    # the fourth region (3, 2) shows with the plain pair only: the optimised pair costs 2 f <= V
    # (equal at density 1, where the tie goes to "dedicated dimension")
    four = nm == (3, 2) and not optimise
    assert set(np.unique(diagram.labels)) == ({0, 1, 2, 3} if four else {0, 1, 2})
    stacked = np.stack([diagram.losses[name] for name in diagram.names])
    chosen = np.take_along_axis(stacked, diagram.labels[None], 0)[0]
    assert np.all(chosen <= stacked.min(0) * (1 + 1e-9))


@pytest.mark.parametrize("optimise", [True, False])
def test_sparsity_is_necessary_for_superposition(optimise: bool) -> None:
    r = np.concatenate([R_GRID, [1.0]])
    losses = T.candidate_losses(2, 1, [1.0], r, optimise=optimise)
    others = np.minimum(losses["not represented"], losses["dedicated dimension"])
    assert np.all(losses["superposition"] >= others * (1 - 1e-12))
    assert not (T.phase_diagram(2, 1, [1.0], r, optimise=optimise).labels == 2).any()


@pytest.mark.parametrize("nm", T.SUPPORTED, ids=str)
def test_limits(nm: tuple[int, int]) -> None:
    n, m = nm
    label = {
        (p, r): T.PHASES[int(T.phase_diagram(n, m, [p], [r]).labels[0, 0])]
        for p, r in [(0.02, 0.9), (0.01, 0.5), (0.7, 0.1), (1.0, 0.1), (0.5, 10.0), (1.0, 10.0)]
    }
    assert label[(0.02, 0.9)] == "superposition"  # sparse, extra nearly as important
    assert label[(0.01, 0.5)] == "superposition"
    assert label[(0.7, 0.1)] == "not represented"  # unimportant at moderate density
    assert label[(1.0, 0.1)] == "not represented"
    assert label[(1.0, 10.0)] == "dedicated dimension"  # far more important
    assert label[(0.5, 10.0)] == "dedicated dimension"
    if nm == (2, 1):  # at r = 1 the antipodal pair wins once sparse enough
        assert label_at(2, 1, 0.05, 1.0) == "superposition"


def label_at(n: int, m: int, p: float, r: float, optimise: bool = True) -> str:
    return T.PHASES[int(T.phase_diagram(n, m, [p], [r], optimise=optimise).labels[0, 0])]


@pytest.mark.parametrize("nm", T.SUPPORTED, ids=str)
@pytest.mark.parametrize("optimise", [True, False])
def test_boundaries_agree_with_the_grid(nm: tuple[int, int], optimise: bool) -> None:
    diagram = T.phase_diagram(*nm, D_GRID, R_GRID, optimise=optimise)
    found = T.boundaries(diagram)
    assert found
    for j, p in enumerate(D_GRID):
        column = [T.PHASES[k] for k in diagram.labels[:, j]]
        here = [b for b in found if b.density == p]
        # walking up r, the boundaries chain from the first row's label to the last's
        current = column[0]
        for bnd in here:
            assert bnd.below == current and bnd.above != bnd.below
            current = bnd.above
            # each boundary lies where the grid changes, and the closed forms change there
            eps = 1e-7
            assert label_at(*nm, p, bnd.relative_importance * (1 - eps), optimise) == bnd.below
            assert label_at(*nm, p, bnd.relative_importance * (1 + eps), optimise) == bnd.above
            i = np.searchsorted(R_GRID, bnd.relative_importance)
            assert column[i - 1] != column[i] or column[i - 1] == bnd.below
        assert current == column[-1]
        assert len(here) >= sum(column[i] != column[i + 1] for i in range(39))


def test_the_fourth_candidate_of_3_2_in_closed_form() -> None:
    """Rows e1, 0, e2: only feature 2 (importance 1) is lost, at its variance V, whatever r."""
    name = "dedicated dimension, other dropped"
    assert T.phases(3, 2)[-1] == name and T.phases(2, 1) == T.PHASES[:3]
    assert T.candidate_loss(3, 2, name, 1.0, 5.0, reduction="sum") == pytest.approx(1 / 12)
    assert T.candidate_loss(3, 2, name, 1.0, 0.1) == pytest.approx(1 / 36)
    assert T.candidate_loss(3, 2, name, 0.5, 2.0) == pytest.approx((1 / 6 - 1 / 16) / 3)
    assert T.candidate_loss(3, 2, name, 0.3, 2.0, optimise=False) == T.candidate_loss(
        3, 2, name, 0.3, 2.0
    )
    W, b = T.candidate_params(3, 2, name, [0.4])
    assert W[0].tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    assert b[0].tolist() == pytest.approx([0.0, 0.2, 0.0])
    with pytest.raises(ConfigError, match="unknown candidate 'dedicated dimension, other"):
        T.candidate_loss(2, 1, name, 0.5, 1.0)


def test_plain_candidates_no_longer_drop_an_important_dense_feature() -> None:
    """With the paper's plain candidates (pair at a = 1, b = 0, 2 f = p^2 / 3), the dense r > 1
    corner of (3, 2) goes to the fourth candidate (V < r V, and V < p^2 / 3 once p > 4/7), never
    to "not represented"; the boundary with "dedicated dimension" at large r is p = 4/7."""
    labels = T.phase_diagram(3, 2, D_GRID, R_GRID, optimise=False).labels
    assert not (labels[R_GRID > 1] == 0).any()
    for p, r in [(1.0, 2.0), (1.0, 1.5), (0.8, 3.0), (0.6, 10.0)]:
        assert label_at(3, 2, p, r, optimise=False) == "dedicated dimension, other dropped"
    assert label_at(3, 2, 0.55, 10.0, optimise=False) == "dedicated dimension"
    d = np.array([4 / 7 * (1 + 1e-6), 4 / 7 * (1 - 1e-6)])
    assert T.phase_diagram(3, 2, d, [10.0], optimise=False).labels.tolist() == [[3, 1]]
    # r < 1 and dense: dropping the extra feature is cheapest (r V < V), as before
    assert label_at(3, 2, 1.0, 0.5, optimise=False) == "not represented"
    # (2, 1) keeps its three candidates and labels
    assert T.phase_diagram(2, 1, [1.0], [2.0], optimise=False).labels.tolist() == [[1]]


def test_boundary_is_exact_for_the_plain_pair() -> None:
    """Plain candidates, n=2, m=1: superposition vs not represented where r V = (1 + r) p^2/6."""
    p = 0.3
    v, f = p / 3 - p**2 / 4, p**2 / 6
    diagram = T.phase_diagram(2, 1, [p], R_GRID, optimise=False)
    lower = [b for b in T.boundaries(diagram) if b.below == "not represented"]
    assert len(lower) == 1
    assert lower[0].above == "superposition"
    assert lower[0].relative_importance == pytest.approx(f / (v - f), rel=1e-9)


# --------------------------------------------------------------------------------------------------
# the classifier of the extra feature


@pytest.mark.parametrize("nm", T.SUPPORTED, ids=str)
def test_classify_candidates_returns_their_names(nm: tuple[int, int]) -> None:
    cands = T.candidates(*nm)
    assert tuple(c.name for c in cands) == T.phases(*nm)
    W = torch.stack([torch.tensor(c.W, dtype=D64) for c in cands])
    assert T.classify_extra_feature(W) == list(T.phases(*nm))
    # the optimised candidates too (the pair's norm shrinks to 1/sqrt(2) when dense)
    for name in T.phases(*nm):
        Wp, _ = T.candidate_params(*nm, name, [1.0, 0.1, 0.01])
        assert T.classify_extra_feature(Wp.float()) == [name] * 3


def test_classify_noisy_and_rotated() -> None:
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=D64)
    W = (
        torch.tensor(
            [
                [[1.0, 0.0], [0.0, 1.0], [0.05, 0.1]],  # small: not represented
                [[1.0, 0.0], [-1.0, 0.0], [0.1, 0.9]],  # nearly orthogonal: dedicated
                [[1.0, 0.0], [0.0, 1.0], [0.2, -0.9]],
                [[0.9, 0.1], [0.1, -0.2], [-0.1, 1.0]],  # another feature small: dropped
            ],
            dtype=D64,
        )
        @ rot
    )
    assert T.classify_extra_feature(W) == list(T.PHASES)


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ConfigError, match="density must be in \\(0, 1\\], got 1.5"):
        T.candidate_loss(2, 1, "superposition", 1.5, 1.0)
    with pytest.raises(ConfigError, match="density must be in \\(0, 1\\], got 0.0"):
        T.phase_diagram(2, 1, [0.5, 0.0], [1.0])
    with pytest.raises(ConfigError, match="relative_importance must be .* > 0, got -1.0"):
        T.candidate_losses(3, 2, [0.5], [1.0, -1.0])
    with pytest.raises(ConfigError, match="relative_importance .* got 0.0"):
        T.candidate_loss(2, 1, "superposition", 0.5, 0.0)
    with pytest.raises(ConfigError, match="unknown candidate 'square'"):
        T.candidate_loss(2, 1, "square", 0.5, 1.0)
    with pytest.raises(ConfigError, match=r"\(n, m\) = \(4, 2\)"):
        T.candidates(4, 2)
    with pytest.raises(ConfigError, match=r"\(n, m\) = \(3, 1\)"):
        T.phase_diagram(3, 1, [0.5], [1.0])
    W, b = torch.zeros(2, 3, 2), torch.zeros(2, 3)
    with pytest.raises(ConfigError, match=r"W must be a tensor .* got shape \(3, 2\)"):
        T.expected_loss(W[0], b, 0.5)
    with pytest.raises(ConfigError, match=r"b must be a tensor .* got shape \(2, 2\)"):
        T.expected_loss(W, b[:, :2], 0.5)
    with pytest.raises(ConfigError, match="density must be in \\(0, 1\\], got 2.0"):
        T.expected_loss(W, b, 2.0)
    with pytest.raises(ConfigError, match="density must broadcast"):
        T.expected_loss(W, b, torch.full((2, 4), 0.5))
    with pytest.raises(ConfigError, match="kind must be"):
        T.expected_loss(W, b, 0.5, kind="abs")
    with pytest.raises(ConfigError, match="method must be"):
        T.expected_loss(W, b, 0.5, method="quadrature")
    with pytest.raises(ConfigError, match="importance must be .* got -1.0"):
        T.expected_loss(W, b, 0.5, -1.0)
    with pytest.raises(ConfigError, match=r"W must be a tensor \[inst, feat >= 2, hidden\]"):
        T.classify_extra_feature(torch.zeros(3, 2))
    with pytest.raises(ConfigError, match="norm_threshold must be"):
        T.classify_extra_feature(W, norm_threshold=-1.0)
