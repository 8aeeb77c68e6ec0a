"""The memorization experiment (Henighan et al. 2023): its measures on hand-made vectors (exact),
the redrawn training points, a tiny reproduce end to end, and bad input."""

import json
import math
from pathlib import Path

import pytest
import torch

import superposition as sp
from superposition.cli import main
from superposition.errors import ConfigError
from superposition.experiments import memorization as exp
from superposition.reproduce import redraw, reproduce


def _ring(k: int, norms: list[float] | None = None, turn: float = 0.3) -> torch.Tensor:
    """k vectors at evenly spaced angles (rotated by ``turn``), of the given norms."""
    angles = turn + 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    r = torch.tensor(norms or [1.0] * k, dtype=torch.float64)
    return torch.stack([r * torch.cos(angles), r * torch.sin(angles)], dim=-1)


# --------------------------------------------------------------------------------------------------
# measures on hand-made inputs


def test_polygon_of_evenly_spaced_directions_is_regular_whatever_the_norms() -> None:
    p = exp.polygon(_ring(5, [1.0, 2.0, 0.5, 3.0, 1.5]), min_norm=0.1)
    assert p.vertices == 5
    assert p.worst_gap == pytest.approx(0.0, abs=1e-12)
    assert p.regular
    # an antipodal pair is the regular 2-gon
    assert exp.polygon(_ring(2), min_norm=0.1).regular


def test_polygon_gaps_are_measured_exactly() -> None:
    # a square with one vertex turned by a tenth of the ideal gap: worst gap 0.1
    V = _ring(4, turn=0.0)
    d = 0.1 * math.pi / 2
    V[1] = torch.tensor([math.cos(math.pi / 2 + d), math.sin(math.pi / 2 + d)], dtype=torch.float64)
    p = exp.polygon(V, min_norm=0.1)
    assert p.worst_gap == pytest.approx(0.1, abs=1e-12)
    assert p.regular  # within GAP_TOL = 0.25
    # two vectors in one direction (angles 0, 0, pi): a gap of 0, one full ideal gap off
    V = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    p = exp.polygon(V, min_norm=0.1)
    assert (p.vertices, p.worst_gap, p.regular) == (3, pytest.approx(1.0, abs=1e-12), False)


def test_polygon_floor_drops_short_vectors() -> None:
    V = torch.cat([_ring(3), torch.tensor([[0.01, 0.0], [0.0, 0.0]], dtype=torch.float64)])
    assert exp.polygon(V, min_norm=0.1).vertices == 3
    assert exp.polygon(V, min_norm=0.1).regular
    lone = exp.polygon(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), min_norm=0.1)
    assert lone.vertices == 1 and lone.worst_gap == math.inf and not lone.regular
    with pytest.raises(ConfigError, match="a polygon needs two hidden dimensions, got 3"):
        exp.polygon(torch.zeros(4, 3), min_norm=0.1)


def test_datapoint_dimensionality_of_hand_made_points() -> None:
    # three one-feature points on the features of a triangle: h_j = W_j, D_j = 2/3 each
    W = _ring(3)[None]
    X = torch.eye(3, dtype=torch.float64)[None]
    assert torch.allclose(exp.hidden_points(W, X), W)
    D = exp.datapoint_dimensionality(W, 2.5 * X)
    assert torch.allclose(D, torch.full((1, 3), 2 / 3, dtype=torch.float64), atol=1e-12)
    # two points in one direction, norms 1 and 2: D = 1/5 and 4/5; a zero point: 0
    W = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    X = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    D = exp.datapoint_dimensionality(W, X)
    assert D.tolist() == [[pytest.approx(0.2), pytest.approx(0.8), 0.0]]
    # typical: weighted by squared norms, (1 * 0.2 + 4 * 0.8) / 5
    H = exp.hidden_points(W, X)
    assert exp.typical_dimensionality(H).tolist() == [pytest.approx(0.68, abs=1e-12)]
    assert exp.typical_dimensionality(3 * _ring(5)[None]).tolist() == [pytest.approx(0.4)]
    assert exp.typical_dimensionality(torch.zeros(1, 4, 2)).tolist() == [0.0]


def test_crossing_is_interpolated_in_log_t() -> None:
    assert exp.crossing([1, 4, 16], [1.0, -1.0, -2.0]) == pytest.approx(2.0, abs=1e-12)
    assert exp.crossing([10, 100, 1000], [0.5, 0.2, 0.0]) == pytest.approx(1000.0, abs=1e-9)
    assert exp.crossing([1, 4, 16], [1.0, 0.5, 0.1]) is None
    assert exp.crossing([1, 4, 16], [-1.0, 0.5, -0.1]) == pytest.approx(4 * 4 ** (5 / 6))


def test_training_loss_of_the_zero_model_is_the_mean_square() -> None:
    X = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]], dtype=torch.float64)
    zero = torch.zeros(1, 2, 2, dtype=torch.float64)
    assert exp.training_loss(zero, torch.zeros(1, 2, dtype=torch.float64), X).tolist() == [
        pytest.approx((1 + 0.25 + 0.25) / 4)
    ]


# --------------------------------------------------------------------------------------------------
# the redrawn training points


def test_redrawn_training_points_are_the_trained_ones() -> None:
    cfg = exp.config(7, n_features=12, density=0.2, steps=5, seeds=2)
    run = sp.train(cfg, progress=False)
    X = exp.training_points(cfg)
    assert X.shape == (2, 7, 12)
    assert not torch.equal(X[0], X[1])  # each seed its own set
    p = exp.measure(run)  # checks the recorded training loss against the redrawn set
    assert p.size == 7 and len(p.point_polygon) == 2
    run.dataset_loss = run.dataset_loss * 1.5  # type: ignore[operator]
    with pytest.raises(ConfigError, match="redrawn training points do not give"):
        exp.measure(run)


# --------------------------------------------------------------------------------------------------
# end to end, on a tiny grid


def _tiny(quick: bool = False) -> dict[str, sp.RunConfig]:
    return exp.grid_configs([3, 5, 48, 160], n_features=40, density=0.05, steps=150, seeds=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exp, "configs", _tiny)
        target, _ = reproduce("memorization", tmp_path_factory.mktemp("m"), progress=False)
    return target


@pytest.mark.slow
def test_tiny_reproduce_writes_runs_figures_and_claims(tiny_dir: Path) -> None:
    assert sorted(p.name for p in (tiny_dir / "runs").iterdir()) == ["T160", "T3", "T48", "T5"]
    claims = json.loads((tiny_dir / "claims.json").read_text())
    assert len(claims) == 4 and all(isinstance(c["holds"], bool) for c in claims)
    for name in ("geometry", "loss", "dimensionality", "loss_by_m"):
        assert (tiny_dir / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tiny_dir / "figures" / "loss.png").unlink()
    assert [c.to_dict() for c in redraw(tiny_dir)] == claims
    assert (tiny_dir / "figures" / "loss.png").is_file()


@pytest.mark.slow
def test_tiny_grid_memorizes_small_sets_and_not_large_ones(tiny_dir: Path) -> None:
    from superposition.store import load_run

    small = exp.measure(load_run(tiny_dir / "runs" / "T3"))
    large = exp.measure(load_run(tiny_dir / "runs" / "T160"))
    # three points are fitted almost exactly and the fit does not carry over to fresh samples
    assert all(tr < te / 10 for tr, te in zip(small.train, small.test, strict=True))
    assert all(te < 1.5 * tr for tr, te in zip(large.train, large.test, strict=True))
    # and three points take more of the plane each than 160 do
    assert min(small.point_dim) > max(large.point_dim)


# --------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ([], "the grid of training-set sizes T is empty"),
        ([0, 3], "training-set size T must be an integer >= 1, got 0"),
        ([5, 3], r"must be distinct and ascending, got \[5, 3\]"),
    ],
)
def test_bad_grid_is_refused_in_one_sentence(sizes: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        exp.grid_configs(sizes)


def test_cli_refuses_a_training_set_of_zero_samples(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    code = main(["train", "--source", "finite", "--dataset-size", "0", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "dataset_size must be an integer >= 1, got 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# the grid over m


def test_configs_add_a_grid_at_m4_and_keep_the_m2_names() -> None:
    for quick, sizes, extra in (
        (False, exp.SIZES, exp.SIZES),
        (True, exp.QUICK_SIZES, exp.QUICK_EXTRA_SIZES),
    ):
        cfgs = exp.configs(quick)
        want = [f"T{t}" for t in sizes] + [f"m4-T{t}" for t in extra]
        assert list(cfgs) == want
        for name, cfg in cfgs.items():
            assert cfg.model.n_hidden == (4 if name.startswith("m4-") else 2)
            assert f"T{cfg.data.dataset_size}" == name.removeprefix("m4-")
    assert exp.run_name(200) == "T200" and exp.run_name(200, 3) == "m3-T200"


def _fake(size: int, m: int, test: list[float]) -> sp.Run:
    """A run with only what the loss curves read: its config and held-out losses."""
    cfg = exp.config(size, n_features=4, n_hidden=m, seeds=len(test))
    return sp.Run(
        config=cfg,
        params={"W": torch.zeros(len(test), 4, m), "b": torch.zeros(len(test), 4)},
        loss=torch.tensor(test),
        history_steps=torch.zeros(0, dtype=torch.long),
        history_loss=torch.zeros(0, len(test)),
    )


def test_loss_curves_and_peak_sizes_on_hand_made_runs() -> None:
    runs = {
        "T10": _fake(10, 2, [1.0, 3.0]),
        "T3": _fake(3, 2, [1.0, 1.0]),
        "T30": _fake(30, 2, [1.0, 1.0]),
        "m4-T30": _fake(30, 4, [5.0, 5.0]),
        "m4-T10": _fake(10, 4, [1.0, 1.0]),
    }
    curves = exp.loss_curves(runs)
    assert curves == {2: [(3, 1.0), (10, 2.0), (30, 1.0)], 4: [(10, 1.0), (30, 5.0)]}
    assert exp.peak_sizes(curves) == {2: 10, 4: 30}
    assert list(exp.of_hidden(runs, 4)) == ["m4-T30", "m4-T10"]
    # a tie goes to the first (smallest) T
    assert exp.peak_sizes({3: [(5, 2.0), (8, 2.0), (13, 1.0)]}) == {3: 5}


@pytest.mark.parametrize(
    ("peaks", "holds"),
    [
        ({2: 200, 4: 500}, True),
        ({2: 200, 3: 200, 5: 800}, True),  # equal at one step, larger at the end
        ({2: 200, 4: 200}, False),  # not strictly larger at the largest m
        ({2: 200, 3: 100, 5: 800}, False),  # falls on the way
        ({4: 500, 2: 200}, True),  # order of the dict does not matter
        ({2: 200}, False),  # one m shows nothing
    ],
)
def test_peak_moves_out(peaks: dict[int, int], holds: bool) -> None:
    assert exp.peak_moves_out(peaks) is holds
