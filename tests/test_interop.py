"""Interop: runs to and from ARENA's (and tms-kit's) layout and the paper notebook's layout.

Each layout gets an exact round trip, and a state dict built by hand in the foreign layout whose
forward pass, computed the foreign way (batch first, its axes), equals ours on the same input."""

import dataclasses

import pytest
import torch
from conftest import fake_run, tiny_config

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.interop import from_anthropic, from_arena, to_anthropic, to_arena
from superposition.models import ToyModel
from superposition.store import load_run, save_run


def _ours(run, x_batch_first):
    """Our forward pass on a [batch, inst, feat] input (ours is [inst, batch, feat])."""
    model = ToyModel(run.config.model.kind, **{"W_dec": None, **run.params})
    return model.forward(x_batch_first.transpose(0, 1)).transpose(0, 1)


def _input(n_inst, n, batch=7, signed=False, seed=3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n_inst, n, generator=gen)
    return 2 * x - 1 if signed else x


@pytest.mark.parametrize(
    ("kind", "to", "back"),
    [
        ("relu", to_arena, from_arena),
        ("privileged", to_arena, from_arena),
        ("abs", to_arena, from_arena),
        ("relu", to_anthropic, from_anthropic),
    ],
)
def test_round_trip_is_exact(kind, to, back, tmp_path):
    run = fake_run(tiny_config(kind))
    again = back(**to(run))
    assert again.config == run.config
    assert again.params.keys() == run.params.keys()
    for name, value in run.params.items():
        assert torch.equal(again.params[name], value), name
    assert torch.equal(again.loss, run.loss)
    save_run(again, tmp_path / "imported")  # a whole run: it can be saved and read back
    assert torch.equal(load_run(tmp_path / "imported").W, run.W)


def test_arena_layout_is_hidden_by_feature():
    run = fake_run(tiny_config("relu"))
    out = to_arena(run)
    W = out["state_dict"]["W"]
    assert W.shape == (4, 2, 5)  # [inst, d_hidden, feats]
    assert torch.equal(W[1, :, 3], run.W[1, 3])  # feature 3's direction is a column
    cfg = out["config"]
    assert (cfg["n_inst"], cfg["n_features"], cfg["d_hidden"]) == (4, 5, 2)
    assert cfg["model"] == "ToyModel"
    assert cfg["feature_probability"][:, 0].tolist() == pytest.approx([1.0, 1.0, 0.3, 0.3])
    assert cfg["feature_importance"][0].tolist() == pytest.approx([0.9**i for i in range(5)])
    computation = to_arena(fake_run(tiny_config("abs")))
    assert computation["state_dict"].keys() == {"W1", "W2", "b_final"}
    assert computation["config"]["model"] == "NeuronComputationModel"


def test_hand_built_arena_model_computes_what_ours_computes():
    gen = torch.Generator().manual_seed(0)
    n_inst, m, n = 3, 2, 5
    W = torch.randn(n_inst, m, n, generator=gen)  # ARENA: [inst, d_hidden, feats]
    b_final = torch.randn(n_inst, n, generator=gen) * 0.1
    probability = torch.tensor([0.5, 0.1, 0.02])[:, None].expand(n_inst, n)
    config = {"n_inst": n_inst, "n_features": n, "d_hidden": m, "feature_probability": probability}
    run = from_arena({"W": W, "b_final": b_final}, config)
    x = _input(n_inst, n)
    # ARENA's forward: h = W x per instance, out = ReLU(W^T h + b_final), batch first
    h = torch.einsum("ihf,bif->bih", W, x)
    theirs = torch.relu(torch.einsum("ihf,bih->bif", W, h) + b_final)
    torch.testing.assert_close(_ours(run, x), theirs)
    assert run.config.data.density == pytest.approx((0.5, 0.1, 0.02))
    assert run.config.train.instances == 1
    assert run.config.data.importance is None  # all ones: uniform importance
    assert torch.isfinite(run.loss).all() and run.info["imported_from"] == "ARENA"


def test_hand_built_arena_computation_model():
    gen = torch.Generator().manual_seed(1)
    n_inst, m, n = 2, 6, 3
    W1 = torch.randn(n_inst, m, n, generator=gen)  # [inst, d_hidden, feats]
    W2 = torch.randn(n_inst, n, m, generator=gen)  # [inst, feats, d_hidden]
    b_final = torch.randn(n_inst, n, generator=gen) * 0.1
    config = {
        "n_inst": n_inst, "n_features": n, "d_hidden": m, "model": "NeuronComputationModel",
        "feature_probability": 1.0, "importance": torch.tensor([1.0, 0.8, 0.64]),
    }  # fmt: skip
    run = from_arena({"W1": W1, "W2": W2, "b_final": b_final}, config)
    x = _input(n_inst, n, signed=True)
    h = torch.relu(torch.einsum("ihf,bif->bih", W1, x))
    theirs = torch.relu(torch.einsum("ifh,bih->bif", W2, h) + b_final)
    torch.testing.assert_close(_ours(run, x), theirs)
    assert run.config.model.kind == "abs"
    assert run.config.train.instances == 2  # equal densities: one group of two seeds
    assert run.config.data.importance == pytest.approx((1.0, 0.8, 0.64))


def test_hand_built_notebook_model_computes_what_ours_computes():
    gen = torch.Generator().manual_seed(2)
    n_inst, n, m = 4, 5, 2
    W = torch.randn(n_inst, n, m, generator=gen)  # the notebook: [inst, feat, hidden]
    b_final = torch.randn(n_inst, n, generator=gen) * 0.1
    config = {
        "n_features": n, "n_hidden": m, "n_instances": n_inst,
        # as the notebook builds them: [inst, 1] and [1, feat], broadcast over the batch
        "feature_probability": (20 ** -torch.linspace(0, 1, n_inst))[:, None],
        "importance": (0.9 ** torch.arange(n))[None, :],
    }  # fmt: skip
    run = from_anthropic({"W": W, "b_final": b_final}, config)
    x = _input(n_inst, n)
    hidden = torch.einsum("bif,ifh->bih", x, W)
    theirs = torch.relu(torch.einsum("bih,ifh->bif", hidden, W) + b_final)
    torch.testing.assert_close(_ours(run, x), theirs)
    assert run.config.data.density[-1] == pytest.approx(1 / 20)
    assert len(run.config.data.density) == n_inst


def test_bad_foreign_input_is_refused():
    W = torch.zeros(2, 2, 5)
    b = torch.zeros(2, 5)
    with pytest.raises(ConfigError, match="n_inst=3 but the weights have 2"):
        from_arena({"W": W, "b_final": b}, {"n_inst": 3})
    with pytest.raises(ConfigError, match="no 'b_final'"):
        from_arena({"W": W}, {})
    with pytest.raises(ConfigError, match="model must be one of ToyModel"):
        from_arena({"W": W, "b_final": b}, {"model": "Transformer"})
    with pytest.raises(ConfigError, match="importance differs between instances"):
        from_arena({"W": W, "b_final": b}, {"importance": torch.rand(2, 5) + 0.1})
    linear = fake_run(tiny_config("linear"))
    with pytest.raises(ConfigError, match="no model for a tied 'linear' run"):
        to_arena(linear)
    with pytest.raises(ConfigError, match="no model for a tied 'privileged' run"):
        to_anthropic(fake_run(tiny_config("privileged")))
    triple = dataclasses.replace(tiny_config(), data=DataConfig(n_features=5, correlated=(3,)))
    with pytest.raises(ConfigError, match="correlated pairs only"):
        to_arena(fake_run(RunConfig(triple.data, triple.model, TrainConfig(instances=1))))
    untied = RunConfig(DataConfig(), ModelConfig(kind="relu", tied=False), TrainConfig())
    with pytest.raises(ConfigError, match="untied 'relu'"):
        to_arena(fake_run(untied))
