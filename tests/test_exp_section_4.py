"""Section 4, "The Geometry of Superposition": uniform superposition, non-uniform superposition and
correlated features reproduce the paper's claims (quick presets), write and redraw their figures;
and the analysis helpers on hand-made weights."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import fake_run

from superposition import geometry
from superposition.experiments import correlated_features as corr
from superposition.experiments import nonuniform_superposition as nonuni
from superposition.experiments import uniform_superposition as uni
from superposition.reproduce import get, load_runs, redraw, reproduce

SECTION_4 = ("uniform-superposition", "nonuniform-superposition", "correlated-features")


@pytest.fixture(scope="module", params=SECTION_4)
def reproduced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    target, _ = reproduce(request.param, out, quick=True, progress=False)
    return target


@pytest.mark.slow
def test_quick_presets_bear_out_the_papers_claims(reproduced: Path) -> None:
    claims = json.loads((reproduced / "claims.json").read_text())
    assert claims and all(c["section"] == "Section 4" for c in claims)
    failed = [c for c in claims if not c["holds"]]
    assert not failed, f"claims not borne out: {failed}"


@pytest.mark.slow
def test_figures_are_written_and_redrawn_without_training(reproduced: Path) -> None:
    exp, runs = load_runs(reproduced)
    assert exp.figures
    for name in exp.figures:
        png = reproduced / "figures" / f"{name}.png"
        svg = reproduced / "figures" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in svg.read_bytes()[:500]
        png.unlink()
    before = json.loads((reproduced / "claims.json").read_text())
    (reproduced / "claims.json").unlink()
    claims = redraw(reproduced)
    assert [c.to_dict() for c in claims] == before
    assert all((reproduced / "figures" / f"{n}.png").is_file() for n in exp.figures)


@pytest.mark.slow
def test_interactive_figures_build(reproduced: Path) -> None:
    import importlib

    import plotly.graph_objects as go

    exp, runs = load_runs(reproduced)
    plots = importlib.import_module(f"superposition.plots.{exp.name.replace('-', '_')}")
    assert plots.INTERACTIVE
    for draw in plots.INTERACTIVE.values():
        fig = draw(runs)
        assert isinstance(fig, go.Figure)
        assert len(fig.data) > 0
        assert fig.layout.title.text


def test_experiments_declare_their_section() -> None:
    for name in SECTION_4:
        exp = get(name)
        assert name == exp.module.NAME and exp.module.SECTION == "Section 4"
        quick, full = exp.module.configs(quick=True), exp.module.configs(quick=False)

        def cost(configs: dict) -> int:
            return sum(c.n_instances * c.train.steps for c in configs.values())

        assert cost(quick) < cost(full)


# --------------------------------------------------------------------------------------------------
# uniform superposition: dimensions per feature, fractions, plateaus


def _polygon(k: int, scale: float = 1.0) -> torch.Tensor:
    t = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return scale * torch.stack([torch.cos(t), torch.sin(t)], -1)


def test_dimensionalities_of_hand_made_polytopes_sit_at_the_named_fractions() -> None:
    # an antipodal pair, a dead feature and a pentagon, in orthogonal planes of 4 dimensions
    W = torch.zeros(1, 8, 4, dtype=torch.float64)
    W[0, 0, 0], W[0, 1, 0] = 1.0, -1.0
    W[0, 3:8, 2:4] = _polygon(5)
    D = geometry.feature_dimensionality(W)
    rep = uni.represented(W)
    assert rep[0].tolist() == [True, True, False] + [True] * 5
    idx, dist = uni.nearest_fraction(D)
    labels = [uni.FRACTIONS[i][2] for i in idx[0][rep[0]].tolist()]
    assert labels == ["antipodal pair"] * 2 + ["pentagon"] * 5
    share, count = uni.fraction_share(D, rep)
    assert (share, count) == (1.0, 7)
    # a feature at 0.6 is near no fraction
    share, count = uni.fraction_share(torch.tensor([[0.6, 0.5]]), torch.tensor([[True, True]]))
    assert (share, count) == (0.5, 2)
    assert 0.3 < uni.chance_share(0.345) < 0.6


def test_plateau_finds_the_longest_run_of_consecutive_values_near_a_level() -> None:
    values = [1.0, 0.98, 0.8, 0.55, 0.5, 0.47, 0.3, 0.51]
    assert uni.plateau(values, 1.0) == [0, 1]
    assert uni.plateau(values, 0.5) == [3, 4, 5]
    assert uni.plateau(values, 0.2) == []


# --------------------------------------------------------------------------------------------------
# non-uniform superposition: pentagon or digons


def test_solution_kind_tells_pentagons_from_digons() -> None:
    pentagon = _polygon(5)
    deformed = _polygon(5) * torch.tensor([[1.0], [1.0], [1.0], [1.0], [0.6]])
    digons = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1], [0.01, 0.02]], dtype=torch.float64)
    digons_wrong_dead = digons[[4, 0, 1, 2, 3]]  # the dead feature is the first, not the fifth
    triangle = torch.cat([_polygon(3), torch.zeros(2, 2, dtype=torch.float64)])
    W = torch.stack([pentagon, deformed, digons, digons_wrong_dead, triangle])
    assert nonuni.solution_kind(W) == ["pentagon", "pentagon", "digons", "other", "other"]


def test_class_losses_and_crossings() -> None:
    kinds = ["pentagon", "digons", "pentagon", "other"]
    losses = nonuni.class_losses(kinds, torch.tensor([3.0, 2.0, 1.0, 0.5]))
    assert losses == {"pentagon": 1.0, "digons": 2.0}
    assert math.isnan(nonuni.class_losses(["other"], torch.tensor([1.0]))["digons"])
    mults = [0.1, 0.2, 0.5, 1.0]
    assert nonuni.crossings(mults, [3.0, 2.5, 1.0, 1.0], [2.0, 2.0, 2.0, 3.0]) == [(0.2, 0.5)]
    assert nonuni.crossings(mults, [3.0, math.nan, 1.0, 1.0], [2.0, 2.0, 2.0, 3.0]) == [
        (0.1, 0.5)
    ]


# --------------------------------------------------------------------------------------------------
# correlated features: orthogonal, antipodal, side by side, collapsed, local bases

PAIRS = [[0, 1], [2, 3], [4, 5]]


def test_side_by_side_needs_each_pair_adjacent_in_angle() -> None:
    hexagon = _polygon(6)
    assert corr.side_by_side(hexagon, PAIRS)  # pairs at neighbouring vertices
    interleaved = hexagon[[0, 2, 1, 3, 4, 5]]  # 0 and 1 two vertices apart, 2 between them
    assert not corr.side_by_side(interleaved, PAIRS)
    turned = _polygon(6) @ torch.tensor(
        [[math.cos(math.pi / 6), math.sin(math.pi / 6)],
         [-math.sin(math.pi / 6), math.cos(math.pi / 6)]], dtype=torch.float64
    )  # vertices at 30, 90, ..., 330 degrees: features 2 and 3 straddle the +-pi cut
    assert corr.side_by_side(turned, PAIRS)
    assert not corr.side_by_side(turned, [[1, 2], [0, 3], [4, 5]])
    dead = hexagon.clone()
    dead[5] = 0
    assert not corr.side_by_side(dead, PAIRS)


def test_collapsed_pairs_share_a_direction() -> None:
    w = torch.tensor(
        [[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0], [-1.0, 0.01]],
        dtype=torch.float64,
    )
    assert corr.collapsed(w, PAIRS) == [True, False, True]
    cos = corr.pair_cosines(w, PAIRS)
    assert cos[1] == pytest.approx(math.sqrt(0.5))


def test_two_bases_of_one_space_are_orthogonal_within_and_wholly_shared() -> None:
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    sets = [[0, 1, 2, 3], [4, 5, 6, 7]]
    w = torch.cat([torch.eye(4, dtype=torch.float64), q.T])  # two bases of the same 4-D space
    assert corr.within_set_overlap(w, sets) < 1e-9
    assert corr.share_in_other_sets(w, sets) == pytest.approx(1.0)
    # the second basis antipodal to the first (|cos| 1 for one partner, 0 for the rest): still
    # wholly superposed, though a mean |cos| across the sets would be only 0.25
    assert corr.share_in_other_sets(torch.cat([torch.eye(4), -torch.eye(4)]), sets) == (
        pytest.approx(1.0)
    )
    # two bases of orthogonal 2-D subspaces of a 4-D space: nothing shared
    apart = torch.cat([torch.eye(4)[:2], torch.eye(4)[2:]])
    assert corr.share_in_other_sets(apart, [[0, 1], [2, 3]]) == pytest.approx(0.0)
    # half of each feature in the other set's span
    tilted = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert corr.share_in_other_sets(tilted, [[0], [1, 2]]) == pytest.approx((0.5 + 0 + 0.5) / 3)
    # an anticorrelated-style antipodal pair has |cos| 1 within its set
    pair = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert corr.within_set_overlap(pair, [[0, 1]]) == pytest.approx(1.0)
    assert corr.pair_cosines(pair, [[0, 1]]) == [pytest.approx(-1.0)]


def test_nonuniform_claims_fail_when_the_pentagon_never_snaps() -> None:
    runs = {}
    for name, config in nonuni.configs(quick=True).items():
        run = fake_run(config)
        run.params["W"] = _polygon(5).float().expand(config.n_instances, 5, 2).clone()
        runs[name] = run
    held = [c.holds for c in nonuni.claims(runs)]
    assert held == [True, False, False]
