"""Config validation, derived facts (groups, instances, defaults) and the JSON round trip."""

import dataclasses
import json
import math

import pytest

from superposition.config import (
    GROUP_FIELDS,
    SCHEMA_VERSION,
    DataConfig,
    Group,
    ModelConfig,
    RunConfig,
    TrainConfig,
    field_docs,
)
from superposition.errors import ConfigError

# --------------------------------------------------------------------------------------------------
# DataConfig validation: each bad value raises ConfigError naming the field and the value


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"density": (0.0,)}, ["density", "0.0"]),
        ({"density": (-0.2,)}, ["density", "-0.2"]),
        ({"density": (1.5,)}, ["density", "1.5"]),
        ({"density": (0.5, 1.01)}, ["density", "1.01"]),
        ({"density": (math.nan,)}, ["density", "nan"]),
        ({"density": (math.inf,)}, ["density", "inf"]),
        ({"density": ()}, ["density"]),
        ({"n_features": 0}, ["n_features", "0"]),
        ({"n_features": -3}, ["n_features", "-3"]),
        ({"n_features": 2.5}, ["n_features", "2.5"]),
        ({"importance_decay": (0.0,)}, ["importance_decay", "0.0"]),
        ({"importance_decay": (-0.9,)}, ["importance_decay", "-0.9"]),
        ({"importance_decay": (math.nan,)}, ["importance_decay", "nan"]),
        ({"n_features": 3, "importance": (1.0, math.nan, 1.0)}, ["importance", "nan"]),
        ({"n_features": 3, "importance": (1.0, -2.0, 1.0)}, ["importance", "-2.0"]),
        ({"n_features": 3, "importance": (1.0, 0.5)}, ["importance", "n_features=3", "2"]),
        ({"n_features": 3, "feature_density": (1.0, 1.0)}, ["feature_density", "2"]),
        ({"n_features": 2, "feature_density": (1.0, -1.0)}, ["feature_density", "-1.0"]),
        (
            {"n_features": 2, "density": (0.5,), "feature_density": (1.0, 3.0)},
            ["feature 1", "1.5"],
        ),
        ({"n_features": 4, "anticorrelated": (3,), "density": (0.4,)}, ["anticorrelated", "1.2"]),
        ({"n_features": 4, "correlated": (3, 2)}, ["5", "n_features is 4"]),
        ({"n_features": 4, "correlated": (2,), "anticorrelated": (3,)}, ["5", "4"]),
        ({"n_features": 4, "correlated": (1,)}, ["correlated", "1"]),
        ({"signed": "yes"}, ["signed", "yes"]),
    ],
)
def test_data_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError) as info:
        DataConfig(**kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_anticorrelated_density_at_the_limit_is_allowed():
    # k * density == 1 is exactly allowed (the set is always active)
    cfg = DataConfig(n_features=4, anticorrelated=(4,), density=(0.25,))
    assert cfg.anticorrelated == (4,)
    with pytest.raises(ConfigError, match="anticorrelated"):
        DataConfig(n_features=4, anticorrelated=(4,), density=(0.25, 0.3))


def test_sets_may_cover_exactly_n_features():
    cfg = DataConfig(n_features=5, correlated=(2,), anticorrelated=(3,), density=(0.2,))
    assert sum(cfg.correlated) + sum(cfg.anticorrelated) == 5


def test_scalars_and_lists_become_tuples():
    cfg = DataConfig(
        n_features=3, density=0.5, importance_decay=[0.9, 0.7], importance=[1.0, 2.0, 3.0]
    )
    assert cfg.density == (0.5,)
    assert cfg.importance_decay == (0.9, 0.7)
    assert cfg.importance == (1.0, 2.0, 3.0)
    hash(cfg)  # frozen and hashable
    with pytest.raises(AttributeError):
        cfg.n_features = 4  # type: ignore[misc]


def test_feature_importances_and_densities():
    cfg = DataConfig(n_features=4, feature_density=(1.0, 0.5, 1.0, 0.25))
    assert cfg.feature_importances(0.9) == pytest.approx([1.0, 0.9, 0.81, 0.729])
    assert cfg.feature_densities(0.8) == pytest.approx([0.8, 0.4, 0.8, 0.2])
    explicit = DataConfig(n_features=3, importance=(3.0, 2.0, 1.0))
    assert explicit.feature_importances(0.5) == [3.0, 2.0, 1.0]


# --------------------------------------------------------------------------------------------------
# ModelConfig


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": "tanh"}, ["kind", "tanh"]),
        ({"kind": "RELU"}, ["kind", "RELU"]),
        ({"n_hidden": 0}, ["n_hidden", "0"]),
        ({"n_hidden": -1}, ["n_hidden", "-1"]),
        ({"kind": "abs", "tied": True}, ["abs", "tied"]),
        ({"tied": "no"}, ["tied", "no"]),
    ],
)
def test_model_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("kind", "tied", "expected"),
    [
        ("linear", None, True),
        ("relu", None, True),
        ("privileged", None, True),
        ("abs", None, False),
        ("abs", False, False),
        ("relu", False, False),
        ("linear", True, True),
    ],
)
def test_is_tied(kind, tied, expected):
    assert ModelConfig(kind=kind, tied=tied).is_tied is expected


# --------------------------------------------------------------------------------------------------
# TrainConfig


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"steps": 100, "warmup_steps": 101}, ["warmup_steps", "101", "100"]),
        ({"steps": 100, "snapshot_steps": (0, 50, 150)}, ["snapshot step", "150", "100"]),
        ({"snapshot_steps": (-1,)}, ["snapshot step", "-1"]),
        ({"steps": 0}, ["steps", "0"]),
        ({"batch_size": 0}, ["batch_size", "0"]),
        ({"lr": 0.0}, ["lr", "0.0"]),
        ({"lr": math.nan}, ["lr", "nan"]),
        ({"optimizer": "sgd"}, ["optimizer", "sgd"]),
        ({"schedule": "step"}, ["schedule", "step"]),
        ({"weight_decay": -1.5}, ["weight_decay", "-1.5"]),
        ({"instances": 0}, ["instances", "0"]),
        ({"seed": -5}, ["seed", "-5"]),
        ({"log_every": 0}, ["log_every", "0"]),
        ({"eval_samples": 0}, ["eval_samples", "0"]),
        ({"device": "tpu"}, ["device", "tpu"]),
        ({"memory_budget_gb": 0.0}, ["memory_budget_gb", "0.0"]),
    ],
)
def test_train_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_train_config_limits_are_inclusive():
    cfg = TrainConfig(steps=100, warmup_steps=100, snapshot_steps=[0, 100])
    assert cfg.snapshot_steps == (0, 100)


# --------------------------------------------------------------------------------------------------
# RunConfig: groups, instances, signed, JSON


def test_groups_and_instances():
    cfg = RunConfig(
        data=DataConfig(density=(1.0, 0.3), importance_decay=(0.9, 0.7)),
        train=TrainConfig(instances=3),
    )
    assert cfg.n_groups == 4
    assert cfg.n_instances == 12
    # density varies slowest
    assert cfg.groups == (
        Group(density=1.0, importance_decay=0.9, relative_importance=1.0),
        Group(density=1.0, importance_decay=0.7, relative_importance=1.0),
        Group(density=0.3, importance_decay=0.9, relative_importance=1.0),
        Group(density=0.3, importance_decay=0.7, relative_importance=1.0),
    )
    assert [cfg.group_of(k) for k in range(12)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_group_is_frozen_documented_and_gives_its_values_by_name():
    group = RunConfig(data=DataConfig(density=0.3, relative_importance=2.0)).groups[0]
    assert (group.density, group.importance_decay, group.relative_importance) == (0.3, 1.0, 2.0)
    assert group.as_dict() == {"density": 0.3, "importance_decay": 1.0, "relative_importance": 2.0}
    assert tuple(group.as_dict()) == GROUP_FIELDS
    assert all(field_docs(Group)[name] for name in GROUP_FIELDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.density = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"density": 0.0}, r"density must be in \(0.0, 1.0\], got 0.0"),
        ({"importance_decay": -1.0}, r"importance_decay must be > 0, got -1.0"),
        ({"relative_importance": math.nan}, r"relative_importance must be a finite number"),
    ],
)
def test_group_refuses_bad_values(values, message):  # type: ignore[no-untyped-def]
    kwargs = {"density": 1.0, "importance_decay": 1.0, "relative_importance": 1.0, **values}
    with pytest.raises(ConfigError, match=message):
        Group(**kwargs)


def test_signed_defaults():
    assert RunConfig(model=ModelConfig(kind="abs")).signed is True
    assert RunConfig(model=ModelConfig(kind="relu")).signed is False
    assert RunConfig(model=ModelConfig(kind="linear")).signed is False
    assert RunConfig(model=ModelConfig(kind="privileged")).signed is False
    assert RunConfig(data=DataConfig(signed=True), model=ModelConfig(kind="relu")).signed is True
    assert RunConfig(data=DataConfig(signed=True), model=ModelConfig(kind="abs")).signed is True
    with pytest.raises(ConfigError, match="signed"):
        RunConfig(data=DataConfig(signed=False), model=ModelConfig(kind="abs"))


def _non_default_config() -> RunConfig:
    return RunConfig(
        data=DataConfig(
            n_features=7,
            density=(0.3, 0.1),
            importance_decay=(0.8, 0.5),
            relative_importance=(0.5, 2.0),
            importance=(7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0),
            feature_density=(1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2.0),
            correlated=(2,),
            anticorrelated=(3,),
            signed=True,
            source="finite",
            dataset_size=50,
        ),
        model=ModelConfig(kind="mlp", n_hidden=3, tied=True, hidden_bias_init=-0.1, n_inputs=2),
        train=TrainConfig(
            steps=500,
            batch_size=64,
            lr=3e-3,
            loss="mse_sum",
            optimizer="adam",
            weight_decay=0.05,
            schedule="cosine",
            warmup_steps=20,
            instances=4,
            seed=17,
            log_every=7,
            snapshot_steps=(0, 250, 500),
            eval_samples=321,
            device="cpu",
            memory_budget_gb=0.5,
        ),
    )


def test_every_field_of_the_round_trip_config_is_non_default():
    cfg = _non_default_config()
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        default = cls()
        for name in default.__dataclass_fields__:
            assert getattr(getattr(cfg, section), name) != getattr(default, name), (section, name)


def test_json_round_trip():
    cfg = _non_default_config()
    text = json.dumps(cfg.to_dict())
    back = RunConfig.from_dict(json.loads(text))
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION


def test_from_dict_defaults_and_partial_sections():
    assert RunConfig.from_dict({}) == RunConfig()
    cfg = RunConfig.from_dict({"model": {"kind": "abs", "n_hidden": 6}})
    assert cfg.model == ModelConfig(kind="abs", n_hidden=6)
    assert cfg.data == DataConfig()


def test_from_dict_rejects_unknown_key():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"data": {"n_featurez": 3}})
    assert "n_featurez" in str(info.value)
    assert "n_features" in str(info.value)  # the known keys are listed


def test_from_dict_rejects_unknown_section():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"optim": {"lr": 0.1}})
    assert "optim" in str(info.value)


def test_from_dict_rejects_wrong_schema_version():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"schema_version": 99, "data": {}})
    assert "99" in str(info.value)


def test_from_dict_rejects_non_tables():
    with pytest.raises(ConfigError):
        RunConfig.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="data"):
        RunConfig.from_dict({"data": 3})


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match="1.5"):
        RunConfig.from_dict({"data": {"density": [1.5]}})
