"""Sections 5 (learning dynamics) and 6 (adversarial robustness): the quick reproductions bear out
the paper's claims, their figures are drawn and redrawn, and the analyses behave on hand-made
models."""

import json
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

    _check(dynamics_dir, "learning-dynamics", list(plots.FIGURES))
    _, runs = load_runs(dynamics_dir)
    for draw in plots.INTERACTIVE.values():
        assert len(draw(runs).data) > 0
    (dynamics_dir / "claims.json").unlink()
    assert len(redraw(dynamics_dir)) == 3
    stages = ld.analyse(runs[ld.CORRELATED])["stages"]
    assert len({s[0] for s in stages}) >= 2


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


def test_plateaus_and_jumps_on_a_step_function_trace() -> None:
    steps = 100
    t = torch.arange(steps + 1)
    # feature 0 sits at 1/2 then jumps to 1; feature 1 sits at 2/5 then jumps to 2/3
    dims = torch.stack(
        [torch.where(t < 40, 0.5, 1.0), torch.where(t < 70, 0.4, 2 / 3)], dim=-1
    ).float()
    live = torch.ones_like(dims, dtype=torch.bool)
    share, chance = ld.near_fraction(dims, live)
    assert share == 1.0 and 0.2 < chance < 0.5
    moves = ld.movement(dims)
    assert ld.concentration(moves) == pytest.approx(1.0)
    # a loss that drops exactly at the jumps (and creeps down slowly elsewhere)
    loss = 1.0 - 0.001 * t.float() - 0.3 * (t >= 40).float() - 0.2 * (t >= 70).float()
    rho, ratio = ld.coincidence(moves, loss)
    assert ratio > 20  # (0.3 + 0.2 + 8 x 0.001) / 10 intervals vs 0.001
    assert rho > 0.2
    # steady drift is not concentrated
    drift = torch.linspace(0, 1, steps + 1)[:, None]
    assert ld.concentration(ld.movement(drift)) == pytest.approx(0.1, abs=0.02)


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
