"""The cross-entropy experiment (a neuron polysemantic without sparsity) and the exercises:
hand-set token losses exactly, the quick experiment's claims, packings of almost-orthogonal
vectors, interference against Monte Carlo, rotations of the hidden space, and bad input."""

import json
import math
from pathlib import Path

import pytest
import torch

import superposition as sp
from superposition import exercises, tokens
from superposition.data import FeatureDistribution
from superposition.errors import ConfigError
from superposition.reproduce import redraw, reproduce

# --------------------------------------------------------------------------------------------------
# hand-set token solutions


def test_hand_set_token_losses_are_exact() -> None:
    assert tokens.monosemantic_loss(4, 1) == pytest.approx(0.75 * math.log(3), abs=1e-15)
    assert tokens.binary_code_loss(4, 1) == pytest.approx(math.log(2), abs=1e-15)
    assert tokens.partition_loss([2, 2]) == pytest.approx(math.log(2), abs=1e-15)
    assert tokens.partition_loss([1, 1, 1, 1]) == 0.0
    # two neurons give four on/off patterns: four tokens are told apart
    assert tokens.binary_code_loss(4, 2) == 0.0
    # 8 tokens, 2 neurons: four pairs; 6 tokens, 1 neuron: two triples
    assert tokens.binary_code_loss(8, 2) == pytest.approx(math.log(2), abs=1e-15)
    assert tokens.binary_code_loss(6, 1) == pytest.approx(math.log(3), abs=1e-15)
    assert tokens.monosemantic_loss(6, 2) == pytest.approx(4 / 6 * math.log(4), abs=1e-15)
    assert tokens.graded_code_loss(4, 2) == pytest.approx(0.5 * math.log(2), abs=1e-15)
    assert tokens.graded_code_loss(4, 1) == tokens.graded_code_loss(4, 0) == 0.0
    assert tokens.squared_error_bound(4, 1) == 2 / 16
    assert tokens.squared_error_bound(4, 3) == 0.0


def _one_neuron(levels: list[float], scale: float) -> dict[str, torch.Tensor]:
    """One neuron firing at ``levels`` on the tokens; logits c (j h - j^2/2) per distinct level
    (the graded readout of superposition.tokens), the silent tokens sharing level 0."""
    n = len(levels)
    W = torch.tensor(levels, dtype=torch.float64).view(1, n, 1)
    W_dec = torch.tensor(levels, dtype=torch.float64).view(1, n, 1) * scale
    b = -scale * torch.tensor(levels, dtype=torch.float64).square().view(1, n) / 2
    return {"W": W, "b": b, "W_dec": W_dec}


def test_hand_set_models_approach_their_losses() -> None:
    # the model's exact loss over the four tokens tends to the partition loss as the logits grow
    fires_on_a = _one_neuron([1.0, 0.0, 0.0, 0.0], 60.0)
    graded = _one_neuron([3.0, 2.0, 1.0, 0.0], 60.0)
    loss_a = float(tokens.expected_loss(fires_on_a)[0])
    loss_graded = float(tokens.expected_loss(graded)[0])
    assert loss_a == pytest.approx(0.75 * math.log(3), abs=1e-6)
    assert loss_graded == pytest.approx(0.0, abs=1e-6)
    # two tokens at the same level cannot be told apart: ln 2
    both = _one_neuron([1.0, 1.0, 0.0, 0.0], 60.0)
    assert float(tokens.expected_loss(both)[0]) == pytest.approx(math.log(2), abs=1e-6)
    assert tokens.tokens_per_neuron(graded["W"]).tolist() == [[3]]
    assert tokens.silent_tokens(graded["W"]).tolist() == [1]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tokens.monosemantic_loss(1, 1), "n_tokens must be an integer >= 2, got 1"),
        (lambda: tokens.binary_code_loss(4, 0), "n_neurons must be an integer >= 1, got 0"),
        (lambda: tokens.graded_code_loss(4, 5), "silent must be at most n_tokens"),
        (lambda: exercises.pack_unit_vectors(3, 0.0), r"eps must be a number in \(0, 1\), got 0"),
        (lambda: exercises.pack_unit_vectors(3, 1.5), r"eps must be a number in \(0, 1\)"),
        (lambda: exercises.welch_bound(0, 0.1), "d must be an integer >= 1, got 0"),
        (lambda: exercises.interference(0.0), r"density must be a number in \(0, 1\]"),
        (lambda: exercises.analyze_superposition(5, 2, 1.0), r"sparsity must be .* \[0, 1\)"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(call, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        call()


def test_tokens_source_draws_one_hot_tokens_equally_often() -> None:
    cfg = sp.RunConfig(
        data=sp.DataConfig(n_features=4, source="tokens"),
        model=sp.ModelConfig(kind="mlp", n_hidden=1),
        train=sp.TrainConfig(instances=2, steps=3, batch_size=4000, loss="cross_entropy"),
    )
    from superposition.losses import get_loss
    from superposition.steps import Instances, StepSpec, get_source

    spec = StepSpec(
        cfg, Instances.of(cfg), torch.device("cpu"), get_loss("cross_entropy"), "tokens"
    )
    x = get_source("tokens")(spec).batch(0, 4000)
    assert x.shape == (2, 4000, 4)
    assert torch.equal(x.sum(-1), torch.ones(2, 4000)) and set(x.unique().tolist()) == {0.0, 1.0}
    share = x.mean(1)
    assert (share - 0.25).abs().max() < 0.03  # 4 standard errors of 4000 draws
    assert not torch.equal(x[0], x[1])  # each instance its own stream
    a, b = sp.train(cfg), sp.train(cfg)
    assert torch.equal(a.W, b.W) and a.info["step"] == "torch"
    with pytest.raises(ConfigError, match="data source 'tokens' draws one-hot tokens"):
        sp.train(sp.RunConfig(data=sp.DataConfig(n_features=4, source="tokens", correlated=(2,))))


# --------------------------------------------------------------------------------------------------
# the quick experiment


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target, _ = reproduce("cross-entropy", tmp_path_factory.mktemp("r"), quick=True, progress=False)
    return target


@pytest.mark.slow
def test_quick_cross_entropy_bears_out_its_claims_and_redraws(ce_dir: Path) -> None:
    claims = json.loads((ce_dir / "claims.json").read_text())
    assert len(claims) == 6
    failed = [c for c in claims if not c["holds"]]
    assert not failed, f"claims not borne out: {failed}"
    for name in ("neurons", "sweep"):
        assert (ce_dir / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ce_dir / "figures" / "sweep.png").unlink()
    again = redraw(ce_dir)
    assert (ce_dir / "figures" / "sweep.png").is_file()
    assert [c.to_dict() for c in again] == claims


# --------------------------------------------------------------------------------------------------
# exercises


@pytest.mark.parametrize(
    ("d", "eps", "count"), [(2, 0.1, 2), (3, 0.1, 3), (3, 1 / math.sqrt(5), 6)]
)
def test_packings_of_almost_orthogonal_vectors(d: int, eps: float, count: int) -> None:
    p = exercises.pack_unit_vectors(d, eps)
    assert p.count == count
    assert p.count <= math.floor(p.welch + exercises.TOLERANCE)
    U = p.vectors
    torch.testing.assert_close(U.norm(dim=1), torch.ones(count, dtype=U.dtype))
    C = (U @ U.T).abs() - torch.eye(count, dtype=U.dtype)
    assert float(C.max()) <= eps + exercises.TOLERANCE


def test_packing_bounds_and_figure() -> None:
    # Welch: 6 lines in R^3 at |cos| = 1/sqrt(5) (the icosahedron's diagonals) meet the bound
    assert exercises.welch_bound(3, 1 / math.sqrt(5)) == pytest.approx(6.0)
    assert exercises.welch_bound(100, 0.1) == math.inf
    # union bound: n (n - 1) < exp(d eps^2 / 2); d = 2000, eps = 0.1: exp(10) = 22026 -> 148
    assert exercises.random_bound(2000, 0.1) == 148
    from superposition.plots.exercises import packing_counts

    records = [exercises.pack_unit_vectors(d, 0.1, steps=300).as_dict() for d in (2, 3, 4)]
    fig = packing_counts(records)
    assert len(fig.axes[0].lines) == 4


def test_interference_closed_form_matches_monte_carlo() -> None:
    p, samples = 0.3, 400_000
    dist = FeatureDistribution(density=torch.full((1, 2), p, dtype=torch.float64))
    x = dist.sample(samples, torch.Generator().manual_seed(0))[0]
    xi, xj = x[:, 0], x[:, 1]
    got = exercises.interference(p, overlap=-1.0)
    checks = {
        "both_present": ((xi > 0) & (xj > 0)).double(),
        "mean_square": xj.square(),
        "mean_square_when_active": xj.square() * (xi > 0),
        "antipodal_relu_error": (xi - torch.relu(xi - xj)).square(),
    }
    for name, values in checks.items():
        se = float(values.std()) / math.sqrt(samples)
        assert abs(float(values.mean()) - getattr(got, name)) < 4 * se, name


def _hand_made_run(kind: str) -> sp.Run:
    """Features 0 and 1 on the two hidden units, the others dropped (no training needed)."""
    W = torch.zeros(1, 5, 2)
    W[0, 0, 0] = W[0, 1, 1] = 1.0
    config = sp.RunConfig(
        data=sp.DataConfig(n_features=5, density=0.3),
        model=sp.ModelConfig(kind=kind, n_hidden=2),
    )
    return sp.Run(
        config=config,
        params={"W": W, "b": torch.zeros(1, 5)},
        loss=torch.zeros(1),
        history_steps=torch.zeros(0, dtype=torch.long),
        history_loss=torch.zeros(0, 1),
    )


def test_rotating_the_hidden_space_changes_only_the_privileged_model() -> None:
    turn = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    plain = exercises.rotated_losses(_hand_made_run("relu"), turn)
    torch.testing.assert_close(plain["after"], plain["before"], rtol=1e-12, atol=0)
    priv = exercises.rotated_losses(_hand_made_run("privileged"), turn)
    assert ((priv["after"] - priv["before"]).abs() > 1e-3 * priv["before"]).all()
    rot = exercises.random_rotation(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(rot.T @ rot, torch.eye(4, dtype=rot.dtype))
    assert float(torch.det(rot)) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="rotation must be an orthogonal 2 x 2 matrix"):
        exercises.rotated_losses(_hand_made_run("relu"), torch.ones(2, 2))


def test_analyze_superposition_and_measure_interference() -> None:
    out = exercises.analyze_superposition(5, 2, 0.9, seeds=2, steps=400)
    W = torch.tensor(out["W"])
    assert out["dimensions_per_feature"] == pytest.approx(2 / float(W.square().sum()), rel=1e-5)
    assert sum(out["feature_dimensionality"]) <= 2 + 1e-5
    assert out["represented"] == sum(1 for v in out["feature_norms"] if v > 0.5)
    pair = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    both = exercises.measure_interference(pair, [0, 1])
    assert both["total"] == 2.0 and both["per_feature"] == [1.0, 1.0]
    assert both["max_abs_cos"] == 1.0
    apart = exercises.measure_interference(pair, [0, 2])
    assert apart["total"] == 0.0 and apart["max_abs_cos"] == 0.0
    with pytest.raises(ConfigError, match=r"feature index must be an integer in \[0, 3\)"):
        exercises.measure_interference(pair, [0, 3])
