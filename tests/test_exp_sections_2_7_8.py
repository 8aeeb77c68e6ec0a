"""Sections 2, 7 and 8: `reproduce` each quick experiment once, check its claims, figures and
redraw; and the analysis helpers on hand-made weights."""

import importlib
import json
from pathlib import Path

import plotly.graph_objects as go
import pytest
import torch

from superposition.experiments import computation, demonstrating_superposition
from superposition.reproduce import load_runs, redraw, reproduce

NAMES = ("demonstrating-superposition", "privileged-basis", "computation")


@pytest.fixture(scope="module", params=NAMES)
def experiment_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("results")
    target, _ = reproduce(request.param, out, quick=True, progress=False)
    return target


@pytest.mark.slow
def test_quick_experiment_bears_out_every_claim_and_redraws(experiment_dir: Path) -> None:
    name = experiment_dir.name
    claims = json.loads((experiment_dir / "claims.json").read_text())
    assert claims, name
    failed = [c for c in claims if not c["holds"]]
    assert not failed, f"{name}: claims not borne out: {failed}"
    for c in claims:
        assert c["measured"] and any(ch.isdigit() for ch in c["measured"]), c

    module = importlib.import_module(f"superposition.plots.{name.replace('-', '_')}")
    for fig in module.FIGURES:
        png = experiment_dir / "figures" / f"{fig}.png"
        svg = experiment_dir / "figures" / f"{fig}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert b"<svg" in svg.read_bytes()[:1000], svg

    _, runs = load_runs(experiment_dir)
    assert module.INTERACTIVE
    for key, draw in module.INTERACTIVE.items():
        fig = draw(runs)
        assert isinstance(fig, go.Figure) and len(fig.data) > 0, key

    first = next(iter(module.FIGURES))
    (experiment_dir / "figures" / f"{first}.png").unlink()
    (experiment_dir / "claims.json").unlink()
    again = redraw(experiment_dir)
    assert (experiment_dir / "figures" / f"{first}.png").is_file()
    assert [c.to_dict() for c in again] == claims


# --------------------------------------------------------------------------------------------------
# Section 8 helpers


def test_sign_neurons_finds_relu_x_and_relu_minus_x_pairs() -> None:
    W = torch.tensor(
        [
            [1.0, -0.9, 0.0, 0.0, 0.05, 0.0],
            [0.0, 0.0, -1.1, 0.8, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0, -1.0],
        ]
    )
    assert computation.sign_neurons(W) == [(0, 1), (3, 2), (4, 5)]


def test_sign_neurons_reports_a_feature_without_a_negative_neuron() -> None:
    W = torch.tensor(
        [
            [1.0, -1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.7, 0.6, 0.0, 0.0],  # two ReLU(x) neurons, no ReLU(-x)
            [0.0, 0.0, 0.0, 0.0, 1.0, -1.0],
        ]
    )
    assert computation.sign_neurons(W) == [(0, 1), None, (4, 5)]
    # a neuron shared by two features is not monosemantic: it computes neither feature alone
    W[0, 1], W[2, 1] = -1.0, -1.0
    assert computation.sign_neurons(W)[0] is None


def _motif_weights() -> tuple[torch.Tensor, torch.Tensor]:
    # neuron 0 stores feature 0 (weight 1) and feature 1 (weight 0.5); the decoder reads feature 1
    # out of it with gain 2, so feature 0 alone adds +2 to output 1; neuron 1 fires on feature 0 and
    # writes -2 to output 1, cancelling it
    W = torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]])
    D = torch.tensor([[1.0, 0.0, 0.0], [2.0, -2.0, 0.0], [0.0, 0.0, 1.0]])
    return W, D


def test_asymmetric_motif_is_found_with_its_inhibitor() -> None:
    W, D = _motif_weights()
    [motif] = computation.asymmetric_motifs(W, D)
    assert (motif.neuron, motif.strong, motif.weak, motif.inhibitor) == (0, 0, 1, 1)
    assert motif.ratio == pytest.approx(0.5)
    assert motif.interference == pytest.approx(2.0)
    assert motif.cancelled == pytest.approx(-2.0)
    assert "neuron 1 cancels 100%" in motif.describe()


def test_asymmetric_motif_works_on_negative_halves() -> None:
    W, D = _motif_weights()
    W[0] = -W[0]  # the ReLU(-x) half of feature 0 now drives both neurons
    [motif] = computation.asymmetric_motifs(W, D)
    assert (motif.neuron, motif.strong, motif.weak, motif.inhibitor) == (0, 0, 1, 1)


def test_no_motif_without_inhibition_or_asymmetry() -> None:
    W, D = _motif_weights()
    no_inhibitor = D.clone()
    no_inhibitor[1, 1] = 0.0
    assert computation.asymmetric_motifs(W, no_inhibitor) == []
    weak_inhibitor = D.clone()
    weak_inhibitor[1, 1] = -0.5  # cancels a quarter of the interference
    assert computation.asymmetric_motifs(W, weak_inhibitor) == []
    symmetric = W.clone()
    symmetric[1, 0] = 1.0  # equal weights: not asymmetric
    assert computation.asymmetric_motifs(symmetric, D) == []
    wrong_sign = W.clone()
    wrong_sign[0, 1] = -1.0  # the would-be inhibitor fires on the other half of feature 0
    assert computation.asymmetric_motifs(wrong_sign, D) == []


def test_monosemantic_share_splits_neurons() -> None:
    W = torch.tensor([[1.0, 0.7, 0.0], [0.0, 0.7, 0.0], [0.1, 0.0, 0.0]])
    mono, poly = computation.monosemantic_share(W)
    assert mono == [0]  # neuron 2 is dead, neuron 1 shared by features 0 and 1
    assert poly == [0]


def test_longest_monosemantic_compares_the_last_survivors_with_the_first_set() -> None:
    # dense to sparse: features 0-3 start monosemantic, 1 and 3 keep it longest (density 2)
    start, survivors, last = computation.longest_monosemantic([[0, 1, 2, 3, 3], [1, 3], [3, 1], []])
    assert (start, survivors, last) == ([0, 1, 2, 3], [1, 3], 2)
    # no monosemantic neuron past the densest: the last density is the densest itself
    assert computation.longest_monosemantic([[4, 5], [], []]) == ([4, 5], [4, 5], 0)
    assert computation.longest_monosemantic([[], []]) == ([], [], 0)


# --------------------------------------------------------------------------------------------------
# Section 2 helpers


def test_represented_and_superposed_features() -> None:
    W = torch.zeros(6, 2)
    W[0] = torch.tensor([1.0, 0.0])
    W[1] = torch.tensor([-1.0, 0.0])  # antipodal with feature 0
    W[2] = torch.tensor([0.0, 1.0])  # its own dimension
    W[3] = torch.tensor([0.0, 0.2])  # too short to count
    assert demonstrating_superposition.represented(W) == [0, 1, 2]
    assert demonstrating_superposition.superposed(W) == [0, 1]


def test_quick_configs_keep_the_papers_models_and_sizes() -> None:
    for quick in (True, False):
        ds = demonstrating_superposition.configs(quick)
        assert ds["linear"].model.kind == "linear" and ds["relu"].model.kind == "relu"
        assert (ds["relu"].data.n_features, ds["relu"].model.n_hidden) == (20, 5)
        assert (ds["relu-80"].data.n_features, ds["relu-80"].model.n_hidden) == (80, 20)
        comp = computation.configs(quick)
        assert (comp["dense"].data.n_features, comp["dense"].model.n_hidden) == (3, 6)
        assert comp["sparse"].signed and comp["sparse"].model.kind == "abs"
    full = computation.configs(False)["sparse"]
    assert (full.data.n_features, full.model.n_hidden) == (100, 40)
