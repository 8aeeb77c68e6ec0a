"""Sections 5 (learning dynamics) and 6 (adversarial robustness): the quick reproductions bear out
the paper's claims, their figures are drawn and redrawn, and the analyses behave on hand-made
models."""

import json
import math
from pathlib import Path

import pytest
import torch

from superposition.experiments import adversarial as adv
from superposition.experiments import learning_dynamics as ld
from superposition.models import ToyModel
from superposition.reproduce import load_runs, redraw, reproduce


def _check(folder: Path, name: str, figures: list[str]) -> None:
    claims = json.loads((folder / "claims.json").read_text())
    failed = [c for c in claims if not c["holds"]]
    assert claims and not failed, f"claims not borne out: {failed}"
    for fig in figures:
        assert (folder / "figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (folder / "figures" / f"{fig}.svg").read_bytes()[:500]


@pytest.fixture(scope="module")
def dynamics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target, _ = reproduce("learning-dynamics", tmp_path_factory.mktemp("r"), quick=True,
                          progress=False)
    return target


@pytest.fixture(scope="module")
def adversarial_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target, _ = reproduce("adversarial", tmp_path_factory.mktemp("r"), quick=True, progress=False)
    return target


@pytest.mark.slow
def test_learning_dynamics_reproduces_and_redraws(dynamics_dir: Path) -> None:
    from superposition.plots import learning_dynamics as plots

    # the quick run's claims are reported, not all borne out (see the docs page); the figures
    # are drawn and redrawn, the geometric stages and the k-gon plateaus are checked below
    claims = json.loads((dynamics_dir / "claims.json").read_text())
    assert len(claims) == 4 and claims[2]["holds"]
    for fig in plots.FIGURES:
        png = dynamics_dir / "figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _, runs = load_runs(dynamics_dir)
    for draw in plots.INTERACTIVE.values():
        assert len(draw(runs).data) > 0
    (dynamics_dir / "claims.json").unlink()
    assert len(redraw(dynamics_dir)) == 4 and (dynamics_dir / "claims.json").exists()
    stages = ld.analyse(runs[ld.CORRELATED])["stages"]
    assert len({s[0] for s in stages}) >= 2
    # every n=6, m=2 seed ends on a plateau at the loss of the k-gon it forms
    ka = ld.kgon_analysis(runs[ld.KGON])
    found = [p for seed in ka["seeds"] for p in seed]
    assert found and all(p["match"] for p in found) and {p["k"] for p in found} <= {5, 6}
    # snapshots on a log grid
    assert runs[ld.KGON].config.train.snapshot_steps == ld.log_steps(3000)


@pytest.mark.slow
def test_adversarial_reproduces_and_redraws(adversarial_dir: Path) -> None:
    from superposition.plots import adversarial as plots

    _check(adversarial_dir, "adversarial", list(plots.FIGURES))
    _, runs = load_runs(adversarial_dir)
    for draw in plots.INTERACTIVE.values():
        assert len(draw(runs).data) == 2
    (adversarial_dir / "figures" / "vulnerability.png").unlink()
    assert len(redraw(adversarial_dir)) == 2
    assert (adversarial_dir / "figures" / "vulnerability.png").exists()


# --- the attack on hand-made models ---------------------------------------------------------------


def _inputs(n: int, density: float = 0.3, batch: int = 512) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, batch, n, generator=gen)
    return x * (torch.rand(1, batch, n, generator=gen) < density)


def _attack(model: ToyModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    importance = torch.ones(1, x.shape[-1])
    return adv.attack(model, x, importance, torch.Generator().manual_seed(0))


def test_a_model_without_superposition_is_barely_vulnerable() -> None:
    n = 4
    identity = ToyModel("linear", torch.eye(n)[None], torch.zeros(1, n))
    out = _attack(identity, _inputs(n))
    assert float(out["clean"][0]) < 1e-12
    assert float(out["vulnerability"][0]) == pytest.approx(1.0, rel=1e-3)


def test_an_antipodal_pair_is_more_vulnerable_along_the_interfering_direction() -> None:
    x = _inputs(2)
    pair = ToyModel("relu", torch.tensor([[[1.0], [-1.0]]]), torch.zeros(1, 2))
    dedicated = ToyModel("relu", torch.eye(2)[None], torch.zeros(1, 2))
    v_pair = float(_attack(pair, x)["vulnerability"][0])
    v_dedicated = float(_attack(dedicated, x)["vulnerability"][0])
    assert v_dedicated == pytest.approx(1.0, rel=0.05)
    assert v_pair > 1.5 * v_dedicated
    # the direction attack alone finds the interference: e_0 - e_1 doubles the error on feature 0
    direction = adv.direction_attack(pair, x, torch.ones(1, 2), adv.budget(x))
    assert float(adv.sample_loss(pair, x + direction, x, torch.ones(1, 2)).mean()) > float(
        adv.sample_loss(dedicated, x + direction, x, torch.ones(1, 2)).mean()
    )


def test_the_attack_never_exceeds_its_budget() -> None:
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(2, 8, 3, generator=gen)
    model = ToyModel("relu", W, -0.1 * torch.ones(2, 8))
    x = torch.rand(2, 256, 8, generator=gen) * (torch.rand(2, 256, 8, generator=gen) < 0.2)
    out = adv.attack(model, x, torch.ones(2, 8), gen, fraction=0.2)
    assert torch.all(out["max_norm"] <= out["eps"] * (1 + 1e-5))
    assert torch.all(out["adversarial"] >= out["clean"])
    eps = adv.budget(x, 0.2)
    for delta in (
        adv.gradient_attack(model, x, torch.ones(2, 8), eps, gen),
        adv.direction_attack(model, x, torch.ones(2, 8), eps),
    ):
        assert torch.all(torch.linalg.vector_norm(delta, dim=-1) <= eps[:, None] * (1 + 1e-5))


def test_spearman() -> None:
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert adv.spearman(a, a**3) == pytest.approx(1.0)
    assert adv.spearman(a, -a) == pytest.approx(-1.0)


# --- learning-dynamics measures on synthetic traces -----------------------------------------------


def test_log_steps() -> None:
    steps = ld.log_steps(1000, per_decade=4)
    assert steps == (0, 1, 2, 3, 6, 10, 18, 32, 56, 100, 178, 316, 562, 1000)
    assert ld.log_steps(5, per_decade=40) == (0, 1, 2, 3, 4, 5)


def _staircase() -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """A loss with two sharp drops on a log-step axis (at steps 100 and 1000) and flat between,
    and two features whose dimensionality jumps at those drops (and creeps slightly elsewhere)."""
    steps = list(ld.log_steps(10_000))
    t = torch.tensor([math.log10(max(s, 1)) for s in steps], dtype=torch.float64)

    def step_at(c: float) -> torch.Tensor:
        return torch.sigmoid((t - c) * 40)

    loss = 0.01 * torch.pow(10.0, -0.5 * step_at(2.0) - 0.5 * step_at(3.0))
    creep = 0.002 * t
    dims = torch.stack([0.5 + 0.5 * step_at(2.0) - creep, 0.4 + 0.27 * step_at(3.0) + creep], -1)
    return steps, loss.float(), dims.float()


def test_plateaus_transits_and_jumps_on_a_staircase() -> None:
    steps, loss, dims = _staircase()
    found = ld.plateaus(steps, loss)
    edges = [(steps[a], steps[b]) for a, b in found]
    # three plateaus: before the first drop, between the drops, after the second
    assert len(edges) == 3
    assert edges[0][1] < 100 < edges[1][0] < edges[1][1] < 1000 < edges[2][0]
    shares, moving = ld.jump_shares(dims, steps)
    assert moving.all() and (shares > 0.8).all()
    in_transit, span = ld.transit_share(dims, steps, found)
    assert in_transit > 0.9 and span < 0.3
    # a loss falling steadily on the log axis has no plateau, and steady movement is not a jump
    t = torch.tensor([math.log10(max(s, 1)) for s in steps])
    assert ld.plateaus(steps, 0.01 * torch.pow(10.0, -0.3 * t)) == []
    shares, _ = ld.jump_shares((0.1 * t)[:, None], steps)
    assert float(shares[0]) == pytest.approx(0.1, abs=0.02)
    # the window starts once the loss has fallen 10% below its start
    assert ld.window_start(torch.tensor([1.0, 0.95, 0.9, 0.5])) == 2


def test_plateaus_are_matched_to_kgons() -> None:
    from superposition import kgon

    W4, _ = kgon.kgon_weights(6, 4, 1.2, -0.2, 0.02)
    W = torch.tensor(W4, dtype=torch.float32)[None].expand(3, -1, -1)
    levels = [0.007, 0.006, 0.005, 0.004, 0.002, 0.0015, 0.0012]
    loss = torch.tensor([0.00204, 0.002, 0.00198])
    [hit] = ld.match_plateaus(W, loss, [(0, 2)], levels)
    assert hit["k"] == 4 and hit["match"] and hit["ratio"] == pytest.approx(1.0)
    [miss] = ld.match_plateaus(W, loss * 1.2, [(0, 2)], levels)
    assert miss["k"] == 4 and not miss["match"]


def test_snapshot_losses_equal_the_whole_samples_loss() -> None:
    from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
    from superposition.data import FeatureDistribution, importance_from_config
    from superposition.results import Run
    from superposition.rng import derive_seed

    cfg = RunConfig(
        data=DataConfig(n_features=6, density=(0.05,)),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=TrainConfig(steps=20, instances=2, snapshot_steps=(0, 10, 20)),
    )
    gen = torch.Generator().manual_seed(0)
    W, b = torch.randn(3, 2, 6, 2, generator=gen), 0.1 * torch.randn(3, 2, 6, generator=gen)
    run = Run(cfg, {"W": W[-1], "b": b[-1]}, torch.zeros(2), torch.zeros(1, dtype=torch.long),
              torch.zeros(1, 2), snapshots={"W": W, "b": b})
    losses = ld.snapshot_losses(run, samples=5000)
    gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "learning-dynamics-eval"))
    x = FeatureDistribution.from_config(cfg).sample(5000, gen)
    for s in range(3):
        whole = ToyModel("relu", W[s], b[s]).loss(x, importance_from_config(cfg))
        assert torch.allclose(losses[s], whole, rtol=1e-5)


def test_stages_keep_only_lasting_geometries() -> None:
    labels = ["a"] * 6 + ["b"] * 2 + ["c"] * 5 + ["a"]
    assert ld.stages(labels, min_len=5) == [("a", 0, 5), ("c", 8, 12)]


def test_mean_superposition_counts_represented_features_only() -> None:
    # two orthogonal features and a dropped one (tiny norm) pointing between them: the dropped
    # feature's direction overlaps both, but it is not stored, so the model has no superposition
    W = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1e-3, 1e-3]]])
    assert adv.mean_superposition(W).tolist() == [pytest.approx(0.0, abs=1e-5)]
    assert float(adv.geometry.superposition(W)[0, 2]) > 0.99  # what a plain mean would count
    # an antipodal pair and a dedicated dimension: (1 + 1 + 0) / 3
    W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])
    assert adv.mean_superposition(W).tolist() == [pytest.approx(2 / 3)]
    assert adv.mean_superposition(torch.zeros(1, 3, 2)).tolist() == [0.0]
