"""Open questions as experiments: engineered monosemanticity (Jermyn et al. 2022's ReLU neurons
with biases) and steering (ablating or steering one feature moves the others). The 'mlp' model's
gradients, the interventions' exact answers, the quick experiments' outcomes, bad input."""

import json
import math
from pathlib import Path

import pytest
import torch

from superposition import geometry, interventions
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.experiments import engineered_monosemanticity as em
from superposition.experiments import steering
from superposition.models import ToyModel, input_overlap
from superposition.reproduce import redraw, reproduce
from superposition.store import load_run, save_run
from superposition.training import train

# --------------------------------------------------------------------------------------------------
# the 'mlp' model: ReLU neurons with biases, linear read-out


def _mlp(seed: int = 0, n_inst: int = 2, n: int = 5, k: int = 4) -> ToyModel:
    gen = torch.Generator().manual_seed(seed)
    return ToyModel(
        "mlp",
        torch.randn(n_inst, n, k, generator=gen, dtype=torch.float64),
        torch.randn(n_inst, n, generator=gen, dtype=torch.float64),
        torch.randn(n_inst, n, k, generator=gen, dtype=torch.float64),
        0.3 * torch.randn(n_inst, k, generator=gen, dtype=torch.float64),
    )


def test_mlp_model_computes_relu_neurons_with_biases_and_a_linear_read_out() -> None:
    model = _mlp()
    x = torch.rand(2, 7, 5, dtype=torch.float64)
    h = torch.relu(x @ model.W + model.b_hidden[:, None, :])
    assert torch.equal(model.hidden(x), h)
    expected = h @ model.decoder.transpose(1, 2) + model.b[:, None, :]
    torch.testing.assert_close(model.forward(x), expected)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("projected", [False, True])
def test_mlp_gradients_match_autograd(tied: bool, projected: bool) -> None:
    base = _mlp()
    params = base.params()
    if tied:
        del params["W_dec"]
    overlap = input_overlap(5, 3, dtype=torch.float64) if projected else None
    model = ToyModel("mlp", **params, overlap=overlap)
    x = torch.rand(2, 9, 5, dtype=torch.float64)
    importance = torch.rand(2, 5, dtype=torch.float64) + 0.5
    grads = {k: torch.zeros_like(v) for k, v in model.params().items()}
    loss = model.loss_and_grads(x, importance, grads)
    leaves = {k: v.clone().requires_grad_(True) for k, v in model.params().items()}
    auto = ToyModel("mlp", **leaves, overlap=overlap)
    auto_loss = auto.loss(x, importance)
    auto_loss.sum().backward()
    assert loss is not None
    torch.testing.assert_close(loss, auto_loss.detach())
    assert "b_hidden" in grads
    for k, v in leaves.items():
        torch.testing.assert_close(grads[k], v.grad, msg=k)


def test_input_overlap_is_a_fixed_gram_of_unit_directions() -> None:
    G = input_overlap(6, 3, dtype=torch.float64)
    torch.testing.assert_close(torch.diagonal(G), torch.ones(6, dtype=torch.float64))
    assert torch.equal(G, G.T) and torch.equal(G, input_overlap(6, 3, dtype=torch.float64))
    assert int(torch.linalg.matrix_rank(G)) == 3  # the projection's dimension
    with pytest.raises(ConfigError, match="n_inputs must be an integer >= 1, got 0"):
        input_overlap(6, 0)


def test_mlp_trains_with_its_bias_init_and_round_trips(tmp_path: Path) -> None:
    config = RunConfig(
        data=DataConfig(n_features=4, density=(0.5,)),
        model=ModelConfig(kind="mlp", n_hidden=3, hidden_bias_init=-0.25),
        train=TrainConfig(steps=1, instances=2, eval_samples=100, batch_size=16, device="cpu"),
    )
    run = train(config, progress=False)
    assert run.info["step"] == "torch"  # the fast CPU kernels have no neuron biases
    assert run.params["b_hidden"].shape == (2, 3)
    # one Adam step moves each bias by at most lr from its initial value
    assert float((run.params["b_hidden"] + 0.25).abs().max()) <= 1.01e-3
    save_run(run, tmp_path / "run")
    back = load_run(tmp_path / "run")
    assert torch.equal(back.params["b_hidden"], run.params["b_hidden"])


def test_mlp_config_errors() -> None:
    with pytest.raises(ConfigError, match="hidden_bias_init applies to the 'mlp' model only"):
        ModelConfig(kind="relu", hidden_bias_init=-0.1)
    with pytest.raises(ConfigError, match="hidden_bias_init must be a finite number, got nan"):
        ModelConfig(kind="mlp", hidden_bias_init=float("nan"))
    with pytest.raises(ConfigError, match="n_inputs must be an integer >= 1, got 0"):
        ModelConfig(kind="mlp", n_inputs=0)
    with pytest.raises(ConfigError, match="n_inputs applies to the 'mlp' model only"):
        ModelConfig(kind="privileged", n_inputs=3)
    plain = ModelConfig(kind="mlp")
    assert plain.is_plain and not plain.has_hidden_bias and not plain.is_tied


# --------------------------------------------------------------------------------------------------
# neuron responses and monosemanticity


def test_neuron_responses_let_a_negative_bias_silence_weaker_features() -> None:
    # one neuron with weights 1.0 and 0.5 on two features: polysemantic by its weights, but a bias
    # of -0.5 silences the weaker feature, so it answers one feature only
    W = torch.tensor([[[1.0], [0.5]]])
    plain = geometry.neuron_monosemanticity(geometry.neuron_responses(W))
    assert float(plain[0, 0]) == pytest.approx(1.0 / 1.25)
    biased = geometry.neuron_responses(W, torch.tensor([[-0.5]]))
    assert torch.equal(biased, torch.tensor([[[0.5], [0.0]]]))
    assert float(geometry.neuron_monosemanticity(biased)[0, 0]) == 1.0


def test_neuron_responses_bad_input() -> None:
    W = torch.ones(1, 3, 2)
    with pytest.raises(ConfigError, match="value must be a finite number > 0, got -1.0"):
        geometry.neuron_responses(W, value=-1.0)


# --------------------------------------------------------------------------------------------------
# interventions: exact answers


def _orthogonal_model() -> ToyModel:
    # 4 features on the axes of a 5-dimensional hidden space (exactly orthogonal rows)
    W = torch.zeros(1, 4, 5)
    for i in range(4):
        W[0, i, i] = 1.0 + 0.1 * i
    return ToyModel("relu", W, torch.full((1, 4), -0.05))


def test_ablation_and_steering_on_orthogonal_features_change_nothing_else() -> None:
    model = _orthogonal_model()
    x = torch.rand(1, 64, 4, generator=torch.Generator().manual_seed(0))
    for i in range(4):
        ablate = interventions.output_change(
            model, x, lambda h, i=i: interventions.ablate_feature(h, model.W, i)
        )
        steer = interventions.output_change(
            model, x, lambda h, i=i: interventions.steer_feature(h, model.W, i, 1.0)
        )
        for delta in (ablate, steer):
            others = torch.cat([delta[..., :i], delta[..., i + 1 :]], dim=-1)
            assert torch.equal(others, torch.zeros_like(others))
            assert float(interventions.collateral_change(delta, i)[0]) == 0.0
        # ablation removes the feature entirely: its output falls to ReLU(b) = 0
        assert torch.equal(
            model.output(interventions.ablate_feature(model.hidden(x), model.W, i))[..., i],
            torch.zeros(1, 64),
        )


def test_antipodal_pair_ablation_moves_the_partner_by_exactly_its_overlap() -> None:
    # features 0 and 1 antipodal in one dimension: ablating 0 removes all of h = x_0 - x_1, so
    # both outputs (h and -h, linear model) fall to 0: each moves by exactly as much as the other
    W = torch.tensor([[[1.0], [-1.0]]])
    model = ToyModel("linear", W, torch.zeros(1, 2))
    x = torch.tensor([[[0.0, 0.5], [0.25, 0.0]]])
    delta = interventions.output_change(model, x, lambda h: interventions.ablate_feature(h, W, 0))
    torch.testing.assert_close(delta, torch.tensor([[[0.5, -0.5], [-0.25, 0.25]]]))
    # mean |change| of the other feature over mean |change| of the ablated one
    assert float(interventions.collateral_change(delta, 0)[0]) == pytest.approx(1.0)
    # a linear model has no output non-linearity: the read-out moves exactly as the output does
    readout = interventions.readout_change(
        model, x, lambda h: interventions.ablate_feature(h, W, 0)
    )
    torch.testing.assert_close(readout, delta)


def test_unrepresented_feature_has_no_direction_to_ablate() -> None:
    W = torch.tensor([[[0.0, 0.0], [0.6, 0.8]]])
    h = torch.tensor([[[0.3, 0.4]]])
    assert torch.equal(interventions.ablate_feature(h, W, 0), h)
    torch.testing.assert_close(interventions.feature_direction(W, 1), torch.tensor([[0.6, 0.8]]))
    delta = torch.zeros(1, 3, 2)
    assert math.isnan(float(interventions.collateral_change(delta, 0)[0]))


def test_intervention_bad_input() -> None:
    W = torch.ones(1, 3, 2)
    h = torch.ones(1, 4, 2)
    with pytest.raises(ConfigError, match=r"feature must be an integer in \[0, 2\] .* got 3"):
        interventions.ablate_feature(h, W, 3)
    with pytest.raises(ConfigError, match="feature must be an integer .* got -1"):
        interventions.steer_feature(h, W, -1, 1.0)
    with pytest.raises(ConfigError, match="alpha must be a finite number, got inf"):
        interventions.steer_feature(h, W, 1, float("inf"))
    with pytest.raises(ConfigError, match="collateral change needs at least 2 features, got 1"):
        interventions.collateral_change(torch.ones(1, 4, 1), 0)


# --------------------------------------------------------------------------------------------------
# the quick experiments, end to end


@pytest.fixture(scope="module")
def steering_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target, _ = reproduce(
        "steering", tmp_path_factory.mktemp("results"), quick=True, progress=False
    )
    return target


def test_quick_steering_finds_no_collateral_change_when_orthogonal(steering_dir: Path) -> None:
    claims = json.loads((steering_dir / "claims.json").read_text())
    assert claims[0]["holds"], claims[0]
    assert (steering_dir / "figures" / "collateral.png").read_bytes()[:4] == b"\x89PNG"
    again = redraw(steering_dir)
    assert [c.to_dict() for c in again] == claims


def test_quick_steering_collateral_is_larger_when_sparse(steering_dir: Path) -> None:
    from superposition.reproduce import load_runs

    _, runs = load_runs(steering_dir)
    a = steering.intervene(runs[steering.SWEEP])
    dense, sparse = int(torch.argmax(a["density"])), int(torch.argmin(a["density"]))
    assert float(a["superposition"][sparse]) > float(a["superposition"][dense]) + 0.5
    for what in ("ablation", "steering"):
        assert float(a[what][sparse]) > float(a[what][dense]), what


@pytest.fixture(scope="module")
def engineered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target, _ = reproduce(
        "engineered-monosemanticity",
        tmp_path_factory.mktemp("results"),
        quick=True,
        progress=False,
    )
    return target


def test_quick_engineered_monosemanticity_claims_and_figures(engineered_dir: Path) -> None:
    claims = json.loads((engineered_dir / "claims.json").read_text())
    assert len(claims) == 2
    for c in claims:
        assert any(ch.isdigit() for ch in c["measured"]), c
    for fig in ("monosemanticity", "neurons"):
        assert (engineered_dir / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    assert [c.to_dict() for c in redraw(engineered_dir)] == claims


def test_quick_engineered_monosemanticity_more_neurons_lower_loss(engineered_dir: Path) -> None:
    from superposition.reproduce import load_runs

    _, runs = load_runs(engineered_dir)
    assert set(runs) == {em.run_name(k, c0) for k in em.QUICK_NEURONS for c0 in em.BIAS_INITS}
    for c0 in em.BIAS_INITS:
        best = em.best_by_k(runs, c0)
        few, many = best[min(best)], best[max(best)]
        # k = 6 neurons for 12 features cannot undo the projection; 24 can do better
        assert many["loss"] < few["loss"], (c0, best)
        for row in best.values():
            assert 0.0 <= row["share"] <= 1.0 and 0 < row["live"] <= row["k"]
    # the negative initialisation leaves neuron biases negative on average
    neg = runs[em.run_name(max(em.QUICK_NEURONS), em.NEGATIVE)].params["b_hidden"]
    assert float(neg.mean()) < 0


def test_saes_refuse_the_mlp_model() -> None:
    from conftest import fake_run

    from superposition.sae import SAEConfig, train_sae

    for options in ({"hidden_bias_init": 0.0}, {"n_inputs": 2}):
        model = ModelConfig(kind="mlp", n_hidden=3, **options)  # type: ignore[arg-type]
        config = RunConfig(data=DataConfig(n_features=4), model=model)
        with pytest.raises(ConfigError, match="this 'mlp' model .* is not supported yet"):
            train_sae(fake_run(config), SAEConfig(steps=1))
