"""Runs to and from the layouts of two other code bases: ARENA's exercises (and tms-kit) and the
paper's companion notebook (Elhage et al. 2022, the Colab linked from "Toy Models of
Superposition").

Both keep many instances on a leading axis, as we do, but store and name things differently
(docs/interop.md has the full table):

- ARENA 1.3.1 and tms-kit: ``W`` is ``[inst, hidden, feat]`` (``d_hidden``), the bias is
  ``b_final``, the Section 8 model has ``W1`` ``[inst, hidden, feat]`` and ``W2``
  ``[inst, feat, hidden]``; ``n_inst``, ``feature_probability`` (our density) and
  ``feature_importance`` (ARENA's model calls it ``importance``).
- The notebook: ``W`` is ``[inst, feat, hidden]`` like ours, the bias is ``b_final``;
  ``n_instances``, ``n_hidden``, ``feature_probability`` and ``importance``.
- Both feed batches as ``[batch, inst, feat]``; ours are ``[inst, batch, feat]``.

:func:`to_arena` and :func:`to_anthropic` return ``{"state_dict": ..., "config": ...}``: the
parameters under the other code's names and axes, and a config dict with its field names
(``feature_probability`` and the importance as full ``[inst, feat]`` tensors, ``model``: the name
of its class that computes the same forward pass). The config dict also carries our own config
and held-out losses under the key ``"superposition"``, so ``from_arena(**to_arena(run))`` gives the
run back exactly (weights, biases, config and loss; the loss history is not carried).

:func:`from_arena` and :func:`from_anthropic` read a state dict and config dict that the other code
wrote (without the ``"superposition"`` key): the instances become groups of equal density (our
layout, see :attr:`RunConfig.groups`), the importance must be the same for every instance, and the
held-out loss is evaluated afresh (:func:`superposition.training.held_out_loss`), so that best-of-N
works on imported weights. Training settings the other code does not record take our defaults
(the notebook's).
"""

import math
from collections.abc import Mapping
from typing import Any

import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError
from superposition.results import Run

ARENA_MODELS = {"ToyModel": "relu", "NeuronModel": "privileged", "NeuronComputationModel": "abs"}
"""ARENA 1.3.1's model classes (ToyModel was called Model in earlier versions; tms-kit's is
Model) and the model kind of ours that computes the same forward pass."""
ANTHROPIC_MODELS = {"Model": "relu"}
"""The companion notebook's model class: the ReLU output model of Section 2."""
EXTRA_KEY = "superposition"
"""Key of the config dict under which :func:`to_arena` and :func:`to_anthropic` keep our own
config and losses, for an exact round trip."""


# --------------------------------------------------------------------------------------------------
# ARENA / tms-kit: W [inst, hidden, feat]


def to_arena(run: Run) -> dict[str, Any]:
    """``run`` in ARENA's layout (also tms-kit's): ``{"state_dict": {"W": [inst, hidden, feat],
    "b_final": [inst, feat]}, "config": {...}}``; the Section 8 model has ``W1`` and ``W2``
    instead of ``W``. The config holds ARENA's ``ToyModelConfig`` fields (``n_inst``,
    ``n_features``, ``d_hidden``, ``n_correlated_pairs``, ``n_anticorrelated_pairs``), its model's
    ``feature_probability`` and ``feature_importance`` (``[inst, feat]``) and ``model``, the class
    name."""
    cfg = run.config
    model = _foreign_class(cfg, ARENA_MODELS, "ARENA")
    data = cfg.data
    for name in ("correlated", "anticorrelated"):
        sizes = getattr(data, name)
        if any(k != 2 for k in sizes):
            raise ConfigError(
                f"ARENA's data has {name} pairs only, but the run has {name} sets of sizes "
                f"{list(sizes)}"
            )
    if model == "NeuronComputationModel":
        state = {"W1": _t(run.W.transpose(1, 2)), "W2": _t(run.params["W_dec"])}
    else:
        state = {"W": _t(run.W.transpose(1, 2))}
    state["b_final"] = _t(run.b)
    config = {
        "n_inst": run.n_instances,
        "n_features": data.n_features,
        "d_hidden": cfg.model.n_hidden,
        "n_correlated_pairs": len(data.correlated),
        "n_anticorrelated_pairs": len(data.anticorrelated),
        "feature_probability": FeatureDistribution.from_config(cfg).density.clone(),
        "feature_importance": importance_from_config(cfg).clone(),
        "model": model,
        EXTRA_KEY: _extra(run),
    }
    return {"state_dict": state, "config": config}


def from_arena(state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> Run:
    """A :class:`Run` from ARENA's (or tms-kit's) state dict and config dict (see
    :func:`to_arena`; ``n_instances`` is read for ``n_inst`` and ARENA's ``importance`` for
    ``feature_importance``; ``model`` defaults to ``ToyModel``)."""
    kind = _kind(config, ARENA_MODELS, "ToyModel", "ARENA")
    if kind == "abs":
        W = _param(state_dict, "W1", 3).transpose(1, 2)
        params = {"W": W, "W_dec": _param(state_dict, "W2", 3)}
    else:
        params = {"W": _param(state_dict, "W", 3).transpose(1, 2)}
    params["b"] = _param(state_dict, "b_final", 2)
    params = {k: v.contiguous() for k, v in params.items()}
    sets = {
        "correlated": (2,) * _int(config, "n_correlated_pairs", 0),
        "anticorrelated": (2,) * _int(config, "n_anticorrelated_pairs", 0),
    }
    sizes = {
        "n_inst": _first(config, ("n_inst", "n_instances")),
        "n_features": config.get("n_features"),
        "d_hidden": config.get("d_hidden"),
    }
    importance = _first(config, ("feature_importance", "importance"))
    return _build(params, config, kind, sizes, sets, importance, "ARENA")


# --------------------------------------------------------------------------------------------------
# the paper's notebook: W [inst, feat, hidden], as ours


def to_anthropic(run: Run) -> dict[str, Any]:
    """``run`` in the companion notebook's layout: ``{"state_dict": {"W": [inst, feat, hidden],
    "b_final": [inst, feat]}, "config": {...}}`` with the notebook's ``Config`` fields
    (``n_features``, ``n_hidden``, ``n_instances``), its model's ``feature_probability`` and
    ``importance`` (``[inst, feat]``) and ``model`` ("Model", its ReLU output model)."""
    cfg = run.config
    model = _foreign_class(cfg, ANTHROPIC_MODELS, "the notebook")
    if cfg.data.correlated or cfg.data.anticorrelated:
        raise ConfigError(
            "the notebook's Model samples independent features; this run has correlated or "
            "anticorrelated sets"
        )
    config = {
        "n_features": cfg.data.n_features,
        "n_hidden": cfg.model.n_hidden,
        "n_instances": run.n_instances,
        "feature_probability": FeatureDistribution.from_config(cfg).density.clone(),
        "importance": importance_from_config(cfg).clone(),
        "model": model,
        EXTRA_KEY: _extra(run),
    }
    return {"state_dict": {"W": _t(run.W), "b_final": _t(run.b)}, "config": config}


def from_anthropic(state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> Run:
    """A :class:`Run` from the notebook's state dict and config dict (see :func:`to_anthropic`;
    ``feature_probability`` and ``importance`` may have any shape that broadcasts to
    ``[inst, feat]``, as in the notebook, e.g. ``[inst, 1]`` and ``[1, feat]``)."""
    kind = _kind(config, ANTHROPIC_MODELS, "Model", "the notebook")
    params = {
        "W": _param(state_dict, "W", 3).contiguous(),
        "b": _param(state_dict, "b_final", 2).contiguous(),
    }
    sizes = {
        "n_instances": config.get("n_instances"),
        "n_features": config.get("n_features"),
        "n_hidden": config.get("n_hidden"),
    }
    importance = config.get("importance")
    return _build(params, config, kind, sizes, {}, importance, "the notebook")


# --------------------------------------------------------------------------------------------------
# shared


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu").clone().contiguous()


def _extra(run: Run) -> dict[str, Any]:
    return {"config": run.config.to_dict(), "loss": run.loss.tolist()}


def _foreign_class(cfg: RunConfig, classes: dict[str, str], who: str) -> str:
    kind, tied = cfg.model.kind, cfg.model.is_tied
    for name, k in classes.items():
        if k == kind and tied == (kind != "abs"):
            return name
    allowed = ", ".join(f"{k} ({name})" for name, k in classes.items())
    tying = "tied" if tied else "untied"
    raise ConfigError(
        f"{who} has no model for a {tying} {kind!r} run; it has {allowed}, with the Section 8 "
        "model untied and the others tied"
    )


def _kind(config: Mapping[str, Any], classes: dict[str, str], default: str, who: str) -> str:
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config must be a dict, got {type(config).__name__}")
    name = config.get("model", default)
    if name not in classes:
        raise ConfigError(f"model must be one of {', '.join(classes)} ({who}); got {name!r}")
    return classes[name]


def _param(state: Mapping[str, Any], name: str, ndim: int) -> torch.Tensor:
    if not isinstance(state, Mapping) or name not in state:
        keys = sorted(state) if isinstance(state, Mapping) else []
        raise ConfigError(f"the state dict has no {name!r}; it has {keys}")
    value = torch.as_tensor(state[name]).detach().to("cpu", torch.float32).clone()
    if value.ndim != ndim:
        raise ConfigError(
            f"{name} must have {ndim} axes with instances first, got shape {list(value.shape)}"
        )
    return value


def _int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be an integer >= 0, got {value!r}")
    return value


def _first(config: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in config:
            return config[key]
    return None


def _build(
    params: dict[str, torch.Tensor],
    config: Mapping[str, Any],
    kind: str,
    sizes: dict[str, Any],
    sets: dict[str, tuple[int, ...]],
    importance: Any,
    who: str,
) -> Run:
    n_inst, n, m = params["W"].shape
    shapes = dict(zip(sizes, (n_inst, n, m), strict=True))
    for key, value in sizes.items():
        if value is not None and value != shapes[key]:
            raise ConfigError(
                f"the config says {key}={value!r} but the weights have {shapes[key]} "
                f"(W as {who} stores it)"
            )
    for name, value in params.items():
        want = (n_inst, n) if name == "b" else (n_inst, n, m)
        if tuple(value.shape) != want:
            raise ConfigError(
                f"{name} has shape {list(value.shape)}, but W implies {list(want)} ({who}'s axes)"
            )
    extra = config.get(EXTRA_KEY)
    if extra is not None:
        run_config, loss = _carried(extra, kind, n_inst, n, m)
        return _run(run_config, params, loss, who)
    probability = config.get("feature_probability", 1.0)
    density = _per_instance(probability, "feature_probability", n_inst, n)
    weights = _per_instance(1.0 if importance is None else importance, "importance", n_inst, n)
    if not torch.equal(weights, weights[:1].expand_as(weights)):
        raise ConfigError(
            "the importance differs between instances; superposition varies it only through "
            "importance_decay and relative_importance, so import each importance separately"
        )
    top = density.max(dim=1).values
    profile = density / top[:, None]
    if not torch.allclose(profile, profile[:1].expand_as(profile), rtol=1e-6, atol=0.0):
        raise ConfigError(
            "feature_probability must be one per-feature profile scaled per instance, as in "
            "superposition's density x feature_density; it differs in shape between instances"
        )
    per_group = _block(top.tolist())
    row = weights[0].tolist()
    data = DataConfig(
        n_features=n,
        density=tuple(top.tolist()[::per_group]),
        importance=None if all(v == 1.0 for v in row) else tuple(row),
        feature_density=None if bool((profile[0] == 1).all()) else tuple(profile[0].tolist()),
        correlated=sets.get("correlated", ()),
        anticorrelated=sets.get("anticorrelated", ()),
    )
    run_config = RunConfig(
        data=data,
        model=ModelConfig(kind=kind, n_hidden=m),  # type: ignore[arg-type]
        train=TrainConfig(instances=per_group),
    )
    from superposition.training import held_out_loss

    loss = held_out_loss(run_config, params)
    return _run(run_config, params, loss, who)


def _carried(extra: Any, kind: str, n_inst: int, n: int, m: int) -> tuple[RunConfig, torch.Tensor]:
    if not isinstance(extra, Mapping) or not isinstance(extra.get("config"), Mapping):
        raise ConfigError(f"config[{EXTRA_KEY!r}] must be a dict with our config under 'config'")
    run_config = RunConfig.from_dict(extra["config"], source=f"config[{EXTRA_KEY!r}]")
    got = (run_config.n_instances, run_config.data.n_features, run_config.model.n_hidden)
    if got != (n_inst, n, m) or run_config.model.kind != kind:
        raise ConfigError(
            f"config[{EXTRA_KEY!r}] describes a {run_config.model.kind} model of shape "
            f"{list(got)} but the weights are a {kind} model of shape {[n_inst, n, m]}"
        )
    loss = torch.tensor(extra.get("loss", [math.nan] * n_inst), dtype=torch.float32)
    if loss.shape != (n_inst,):
        raise ConfigError(f"config[{EXTRA_KEY!r}]['loss'] must hold {n_inst} numbers")
    return run_config, loss


def _per_instance(value: Any, name: str, n_inst: int, n: int) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    try:
        return t.broadcast_to((n_inst, n)).clone()
    except RuntimeError:
        raise ConfigError(
            f"{name} of shape {list(t.shape)} does not broadcast to [inst, feat] = {[n_inst, n]}"
        ) from None


def _block(values: list[float]) -> int:
    """The most instances per group: the largest k dividing the count such that each run of k
    consecutive instances shares one value (so equal densities become one group of seeds)."""
    count = len(values)
    for k in range(count, 0, -1):
        if count % k == 0 and all(len(set(values[i : i + k])) == 1 for i in range(0, count, k)):
            return k
    return 1


def _run(config: RunConfig, params: dict[str, torch.Tensor], loss: torch.Tensor, who: str) -> Run:
    n_inst = config.n_instances
    return Run(
        config=config,
        params=params,
        loss=loss,
        history_steps=torch.zeros(0, dtype=torch.long),
        history_loss=torch.zeros(0, n_inst),
        info={"imported_from": who},
    )
