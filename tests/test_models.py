"""The toy models: forward formulas on hand-made weights, the loss, and the closed-form gradients
checked against autograd for every kind."""

import pytest
import torch

from superposition.models import ToyModel

VARIANTS = [
    ("linear", True),
    ("linear", False),
    ("relu", True),
    ("relu", False),
    ("privileged", True),
    ("privileged", False),
    ("abs", False),
    ("mlp", False),
    ("mlp", True),
]


def _random_model(kind: str, tied: bool, n_inst=3, n=6, m=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_inst, n, m, generator=g, dtype=dtype) * 0.7
    b = torch.randn(n_inst, n, generator=g, dtype=dtype) * 0.3  # mixed signs: ReLUs half active
    W_dec = None if tied else torch.randn(n_inst, n, m, generator=g, dtype=dtype) * 0.7
    return ToyModel(kind, W, b, W_dec)


def _random_input(kind: str, n_inst=3, batch=17, n=6, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_inst, batch, n, generator=g, dtype=dtype)
    x = x * (torch.rand(n_inst, batch, n, generator=g, dtype=dtype) < 0.6)  # sparse
    if kind == "abs":
        x = x * torch.where(torch.rand(x.shape, generator=g, dtype=dtype) < 0.5, -1.0, 1.0)
    return x


def _empty_grads(model: ToyModel) -> dict[str, torch.Tensor]:
    # filled with garbage: loss_and_grads must overwrite, not accumulate
    return {k: torch.full_like(v, 123.0) for k, v in model.params().items()}


@pytest.mark.parametrize(("kind", "tied"), VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_closed_form_gradients_match_autograd(kind, tied, dtype):
    model = _random_model(kind, tied, dtype=dtype)
    x = _random_input(kind, dtype=dtype)
    importance = torch.rand(3, 6, generator=torch.Generator().manual_seed(2), dtype=dtype) + 0.1

    leaves = {k: v.clone().requires_grad_(True) for k, v in model.params().items()}
    auto_model = ToyModel(kind, leaves["W"], leaves["b"], leaves.get("W_dec"))
    auto_loss = auto_model.loss(x, importance)
    auto_loss.sum().backward()

    grads = _empty_grads(model)
    loss = model.loss_and_grads(x, importance, grads)
    assert loss is not None
    assert set(grads) == set(leaves)
    rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-4, 1e-6)
    torch.testing.assert_close(loss, auto_loss.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(loss, model.loss(x, importance), rtol=rtol, atol=atol)
    for name, leaf in leaves.items():
        assert leaf.grad is not None
        assert leaf.grad.abs().max() > 0, name  # the check is not vacuous
        torch.testing.assert_close(grads[name], leaf.grad, rtol=rtol, atol=atol)
    # the parameters are untouched
    for name, value in model.params().items():
        assert torch.equal(value, leaves[name].detach())


@pytest.mark.parametrize(("kind", "tied"), VARIANTS)
def test_gradients_without_loss(kind, tied):
    model = _random_model(kind, tied)
    x = _random_input(kind)
    importance = torch.ones(3, 6, dtype=torch.float64)
    g1, g2 = _empty_grads(model), _empty_grads(model)
    assert model.loss_and_grads(x, importance, g2, with_loss=False) is None
    model.loss_and_grads(x, importance, g1)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name])


def test_gradients_of_instances_are_independent():
    """Changing one instance's input changes only that instance's gradients."""
    model = _random_model("relu", True)
    x = _random_input("relu")
    importance = torch.ones(3, 6, dtype=torch.float64)
    g1 = _empty_grads(model)
    model.loss_and_grads(x, importance, g1)
    x2 = x.clone()
    x2[1] = _random_input("relu", seed=9)[1]
    g2 = _empty_grads(model)
    model.loss_and_grads(x2, importance, g2)
    for name in g1:
        assert torch.equal(g1[name][[0, 2]], g2[name][[0, 2]])
        assert not torch.equal(g1[name][1], g2[name][1])


# --------------------------------------------------------------------------------------------------
# forward formulas on hand-made weights


def test_linear_identity_rows_returns_input_plus_bias():
    W = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    b = torch.tensor([[0.5, -2.0, 0.25]])
    model = ToyModel("linear", W, b)
    x = torch.tensor([[[0.1, 0.2, 0.3], [1.0, 0.0, 0.7]]])
    assert torch.equal(model.forward(x), x + b[:, None, :])
    assert torch.equal(model.hidden(x), x)


def test_linear_is_WtWx_plus_b():
    # two features in one dimension, antipodal: x' = (x0 - x1, x1 - x0) + b, negatives kept
    W = torch.tensor([[[1.0], [-1.0]]])
    b = torch.tensor([[0.0, 0.1]])
    x = torch.tensor([[[1.0, 0.0], [0.25, 0.75]]])
    out = ToyModel("linear", W, b).forward(x)
    expected = torch.tensor([[[1.0, -0.9], [-0.5, 0.6]]])
    torch.testing.assert_close(out, expected)


def test_relu_clips_negative_outputs():
    W = torch.tensor([[[1.0], [-1.0]]])
    b = torch.tensor([[0.0, 0.1]])
    x = torch.tensor([[[1.0, 0.0], [0.25, 0.75]]])
    out = ToyModel("relu", W, b).forward(x)
    expected = torch.tensor([[[1.0, 0.0], [0.0, 0.6]]])
    torch.testing.assert_close(out, expected)
    # the hidden layer of the ReLU-output model is linear (may be negative)
    torch.testing.assert_close(ToyModel("relu", W, b).hidden(x), torch.tensor([[[1.0], [-0.5]]]))


def test_privileged_applies_hidden_relu():
    # W rows: feature 0 -> (1, 0), feature 1 -> (-1, 1)
    W = torch.tensor([[[1.0, 0.0], [-1.0, 1.0]]])
    b = torch.tensor([[0.0, 0.0]])
    x = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    priv = ToyModel("privileged", W, b)
    # x = e1: h = relu((-1, 1)) = (0, 1); x' = relu(W h) = relu((0, 1)) = (0, 1)
    # x = e0: h = relu((1, 0)) = (1, 0); x' = relu((1, -1)) = (1, 0)
    torch.testing.assert_close(priv.hidden(x), torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    torch.testing.assert_close(priv.forward(x), torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    # without the hidden ReLU (the relu model), x = e1 gives relu(W W^T e1) = relu((-1, 2))
    torch.testing.assert_close(
        ToyModel("relu", W, b).forward(x[:, :1]), torch.tensor([[[0.0, 2.0]]])
    )


def test_untied_decoder_is_used():
    W = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    W_dec = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    b = torch.zeros(1, 2)
    x = torch.tensor([[[1.0, 1.0]]])
    model = ToyModel("linear", W, b, W_dec)
    assert not model.tied
    assert model.decoder is W_dec
    torch.testing.assert_close(model.forward(x), torch.tensor([[[2.0, 3.0]]]))
    assert ToyModel("linear", W, b).tied
    assert set(model.params()) == {"W", "b", "W_dec"}
    assert set(ToyModel("linear", W, b).params()) == {"W", "b"}


def test_abs_model_target_and_exact_circuit():
    # one feature, two neurons ReLU(x) and ReLU(-x), decoder sums them: y' = |x| exactly
    W = torch.tensor([[[1.0, -1.0]]])
    W_dec = torch.tensor([[[1.0, 1.0]]])
    b = torch.zeros(1, 1)
    model = ToyModel("abs", W, b, W_dec)
    x = torch.tensor([[[-0.7], [0.0], [0.4], [-1.0]]])
    torch.testing.assert_close(model.target(x), x.abs())
    torch.testing.assert_close(model.forward(x), x.abs())
    hidden = torch.tensor([[[0.0, 0.7], [0.0, 0.0], [0.4, 0.0], [0.0, 1.0]]])
    torch.testing.assert_close(model.hidden(x), hidden)
    assert model.loss(x, torch.ones(1, 1)).item() == 0.0
    # the other kinds reconstruct x itself
    assert torch.equal(ToyModel("relu", W, b).target(x), x)


def test_loss_is_importance_weighted_mean_over_batch_and_features():
    W = torch.zeros(2, 2, 1)
    b = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    importance = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    x = torch.tensor([[[1.0, 1.0], [0.0, 2.0]], [[0.0, 0.0], [0.5, 0.0]]])
    loss = ToyModel("linear", W, b).loss(x, importance)
    # instance 0: x' = 0, errors 1, 1, 0, 4 weighted 1, .5, 1, .5 -> (1 + .5 + 0 + 2) / 4
    # instance 1: x' = (1, 0), errors 1, 0, .25, 0 weighted 2, 1 -> (2 + .5) / 4
    torch.testing.assert_close(loss, torch.tensor([3.5 / 4, 2.5 / 4]))


# --------------------------------------------------------------------------------------------------
# shape annotations are checked at run time


def test_wrong_ndim_input_raises():
    model = _random_model("relu", True, dtype=torch.float32)
    with pytest.raises(TypeError):
        model.forward(torch.rand(17, 6))
    with pytest.raises(TypeError):
        model.loss(torch.rand(3, 17, 6), torch.ones(3, 6, 1))


def test_wrong_ndim_parameters_raise():
    with pytest.raises(TypeError):
        ToyModel("relu", torch.rand(6, 4), torch.zeros(3, 6))
    with pytest.raises(TypeError):
        ToyModel("relu", torch.rand(3, 6, 4), torch.zeros(3, 6, 1))
