"""Configs: frozen dataclasses, one documented and validated field each, with a JSON round-trip.

A run is described by a :class:`RunConfig` made of a :class:`DataConfig` (the feature
distribution), a :class:`ModelConfig` and a :class:`TrainConfig`. Every field carries its
documentation in ``field.metadata["doc"]``; the command line builds its ``--help`` from it, so the
two never drift apart.

Fields that may vary per instance (``density``, ``importance_decay``, ``relative_importance``)
take a tuple of values. The run trains one *group* of ``TrainConfig.instances`` seeds for every
combination of those values (their cartesian product, density varying slowest), laid out on the
instance axis group after group.
"""

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, no_type_check

from superposition.errors import ConfigError

SCHEMA_VERSION = 1

MAX_INSTANCES = 100_000
"""The most instances one run (or one SAE training) may hold: each is set up, evaluated and
summarised on its own on the host (about 1.6 ms of CPU each on a 2-core machine, before any
training step), so more would take many minutes before the first step; split larger work into
several runs or a sweep."""
MAX_EVAL_SAMPLES = 10_000_000
"""The most held-out samples per instance (``eval_samples``): as many as 10,000 steps of batch
1,000 draw, so the evaluation never takes longer than a long training."""
INSTANCES_WHY = "each instance is set up and evaluated on its own on the host"
EVAL_WHY = "the held-out evaluation must not outlast a long training"

ModelKind = Literal["linear", "relu", "privileged", "abs", "mlp"]
Optimizer = Literal["adamw", "adam"]
Schedule = Literal["constant", "linear", "cosine"]

MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)


def doc_field(default: Any, doc: str) -> Any:
    """A dataclass field carrying its documentation (read by the CLI and :func:`field_docs`)."""
    return field(default=default, metadata={"doc": doc})


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a config class to its one-line documentation."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------------------------------
# validation helpers: each raises ConfigError with one sentence naming the value and what is allowed


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (not a bool) that a float can hold: finite, and for
    an int not beyond the largest float (where ``math.isfinite`` would raise OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_finite(name: str, value: Any) -> None:
    """Refuse anything but a finite int or float (bools included)."""
    if not is_finite_number(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")


def check_int_at_least(name: str, value: Any, low: int) -> None:
    """Refuse anything but an integer >= ``low`` (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def check_int_at_most(name: str, value: int, high: int, why: str) -> None:
    """Refuse an integer above ``high``, saying ``why`` that is the limit (call after
    :func:`check_int_at_least`)."""
    if value > high:
        raise ConfigError(f"{name} must be at most {high:,} ({why}), got {value}")


def check_in_range(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False
) -> None:
    """Refuse anything but a finite number in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    check_finite(name, value)
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Refuse a value that is not one of ``allowed``, listing them."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _name(what: str, value: Any) -> None:
    # registered names are checked where the registries live (superposition.training.check):
    # this layer only knows their form
    if not isinstance(value, str) or not value.isidentifier():
        raise ConfigError(f"{what} must be a registered name (an identifier), got {value!r}")


def freeze_tuple(obj: Any, name: str) -> None:
    """Freeze the list-valued field ``name`` of the frozen dataclass ``obj`` into a tuple (one
    number becomes a one-value tuple), so configs hash and compare by value; call it from
    ``__post_init__``."""
    value = getattr(obj, name)
    if isinstance(value, list):
        object.__setattr__(obj, name, tuple(value))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        object.__setattr__(obj, name, (value,))


def check_nonempty_tuple(name: str, value: Any) -> None:
    """Refuse anything but a non-empty tuple (run :func:`freeze_tuple` first)."""
    if not isinstance(value, tuple) or len(value) == 0:
        raise ConfigError(f"{name} must be a non-empty list of numbers, got {value!r}")


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """The per-group values of one group of instances (see :attr:`RunConfig.groups`): the run
    trains ``TrainConfig.instances`` seeds with these values, one after another on ``inst``."""

    density: float = field(
        metadata={"doc": "Probability that a feature is non-zero, 1 - S, in (0, 1]."}
    )
    importance_decay: float = field(
        metadata={"doc": "Importance profile I_i = r**i of this group, r > 0."}
    )
    relative_importance: float = field(
        metadata={"doc": "Multiplier of the last feature's importance in this group, > 0."}
    )

    def __post_init__(self) -> None:
        check_in_range("density", self.density, 0.0, 1.0, low_open=True)
        for name in ("importance_decay", "relative_importance"):
            value = getattr(self, name)
            check_finite(name, value)
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        """The values by field name, in :data:`GROUP_FIELDS` order (for tables and JSON)."""
        return {name: getattr(self, name) for name in GROUP_FIELDS}


GROUP_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Group))
"""The fields that take one value per group (``density``, ``importance_decay``,
``relative_importance``): a tuple in :class:`DataConfig`, one number in a :class:`Group`."""


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class DataConfig:
    """The synthetic feature distribution (paper, Section 2 "Demonstrating Superposition")."""

    n_features: int = doc_field(5, "Number of input features (the paper's n).")
    density: tuple[float, ...] = doc_field(
        (1.0,),
        "Probability that a feature is non-zero, 1 - S, in (0, 1]. A list trains one group of "
        "instances per value.",
    )
    importance_decay: tuple[float, ...] = doc_field(
        (1.0,),
        "Importance profile I_i = r**i for feature i = 0..n-1, r > 0 (1 = uniform importance). "
        "A list trains one group of instances per value.",
    )
    relative_importance: tuple[float, ...] = doc_field(
        (1.0,),
        "Importance of the last feature relative to the profile (its importance is multiplied by "
        "this, > 0): the extra feature of Section 3's phase diagrams. A list trains one group of "
        "instances per value.",
    )
    importance: tuple[float, ...] | None = doc_field(
        None,
        "Explicit per-feature importances (n values, each > 0); overrides importance_decay "
        "(relative_importance still multiplies the last one).",
    )
    feature_density: tuple[float, ...] | None = doc_field(
        None,
        "Per-feature multipliers of the density (n values > 0), e.g. to make one feature sparser "
        "than the others; each feature's density = density * multiplier must stay in (0, 1].",
    )
    correlated: tuple[int, ...] = doc_field(
        (),
        "Sizes of correlated feature sets, taken in order from feature 0: the members of a set are "
        "all present or all absent together (one shared coin), magnitudes independent.",
    )
    anticorrelated: tuple[int, ...] = doc_field(
        (),
        "Sizes of anticorrelated feature sets, placed after the correlated ones: at most one "
        "member is present; the set is active with probability k*p and then one member is chosen "
        "uniformly, so each member's marginal density stays p.",
    )
    signed: bool | None = doc_field(
        None,
        "Present features are uniform in [-1, 1] instead of [0, 1]. Default: signed for the 'abs' "
        "model, unsigned otherwise.",
    )
    source: str = doc_field(
        "fresh",
        "Where training samples come from: 'fresh' (new samples every step), 'finite' (a "
        "training set of dataset_size samples per instance, drawn once from the seed), 'tokens' "
        "(one-hot samples, each feature equally likely: n_features tokens; density is ignored) "
        "or 'sampler' (a callable passed to superposition.train in Python); more can be "
        "registered.",
    )
    dataset_size: int | None = doc_field(
        None,
        "Samples in the finite training set (T, >= 1) of source 'finite'; each step uses "
        "batch_size of them, or all when batch_size >= T (full batch).",
    )

    def __post_init__(self) -> None:
        for name in (
            "density", "importance_decay", "relative_importance", "importance", "feature_density"
        ):
            freeze_tuple(self, name)
        for name in ("correlated", "anticorrelated"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        n = self.n_features
        check_int_at_least("n_features", n, 1)
        check_nonempty_tuple("density", self.density)
        for d in self.density:
            check_in_range("density", d, 0.0, 1.0, low_open=True)
        check_nonempty_tuple("importance_decay", self.importance_decay)
        for name in ("importance_decay", "relative_importance"):
            values = getattr(self, name)
            check_nonempty_tuple(name, values)
            for r in values:
                check_finite(name, r)
                if r <= 0:
                    raise ConfigError(f"{name} must be > 0, got {r!r}")
        for name in ("importance", "feature_density"):
            values = getattr(self, name)
            if values is None:
                continue
            if len(values) != n:
                raise ConfigError(
                    f"{name} must have one value per feature (n_features={n}), got {len(values)}"
                )
            for v in values:
                check_finite(name, v)
                if v <= 0:
                    raise ConfigError(f"{name} values must be > 0, got {v!r}")
        for name in ("correlated", "anticorrelated"):
            for k in getattr(self, name):
                check_int_at_least(f"{name} set size", k, 2)
        used = sum(self.correlated) + sum(self.anticorrelated)
        if used > n:
            raise ConfigError(
                f"correlated and anticorrelated sets cover {used} features but n_features is {n}"
            )
        for d in self.density:
            # without feature_density every feature has the density d, checked above (and
            # n_features may be far too large to list: the memory check refuses it later)
            for i, p in enumerate(self.feature_densities(d) if self.feature_density else ()):
                if not 0 < p <= 1:
                    raise ConfigError(
                        f"feature {i} would have density {p:g} (density {d:g} x feature_density); "
                        "it must be in (0, 1]"
                    )
            for k in self.anticorrelated:
                if k * d > 1:
                    raise ConfigError(
                        f"an anticorrelated set of {k} features at density {d:g} would need "
                        f"probability {k * d:g} > 1 of being active; use density <= {1 / k:g}"
                    )
        if self.signed is not None and not isinstance(self.signed, bool):
            raise ConfigError(f"signed must be true or false, got {self.signed!r}")
        _name("source", self.source)
        if self.source == "finite":
            if self.dataset_size is None:
                raise ConfigError("source 'finite' needs dataset_size, the number of samples T")
            check_int_at_least("dataset_size", self.dataset_size, 1)
        elif self.dataset_size is not None:
            raise ConfigError(
                f"dataset_size applies to source 'finite' only, not {self.source!r}; drop it or "
                "set source = 'finite'"
            )

    def feature_densities(self, density: float) -> list[float]:
        """Per-feature density for one group's density value."""
        scale = self.feature_density or (1.0,) * self.n_features
        return [density * s for s in scale]

    def feature_importances(self, decay: float, relative: float = 1.0) -> list[float]:
        """Per-feature importance for one group (Section 2: I_i = r**i; Section 3: the last
        feature's importance times ``relative``)."""
        if self.importance is not None:
            values = list(self.importance)
        else:
            values = [decay**i for i in range(self.n_features)]
        values[-1] *= relative
        return values


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class ModelConfig:
    """Which toy model (Elhage et al. 2022, Sections 2, 7 and 8) and its size."""

    kind: ModelKind = doc_field(
        "relu",
        "Model: 'linear' (W^T W x + b), 'relu' (ReLU(W^T W x + b)), 'privileged' (ReLU hidden "
        "layer, Section 7), 'abs' (computation model with target |x|, Section 8) or 'mlp' (ReLU "
        "hidden layer and a linear readout W_dec h + b, e.g. logits for cross-entropy; its "
        "neurons may have biases and read the features through a projection, Jermyn et al. "
        "2022).",
    )
    n_hidden: int = doc_field(2, "Hidden dimensions or neurons (the paper's m).")
    tied: bool | None = doc_field(
        None,
        "Share W between encoder and decoder. Default: tied, except the 'abs' model, which is "
        "always untied, and the 'mlp' model, untied unless asked.",
    )
    hidden_bias_init: float | None = doc_field(
        None,
        "Give the 'mlp' model's neurons biases of their own, starting at this value (Jermyn et "
        "al. 2022 find that moderately negative neuron biases go with more monosemantic "
        "neurons). Default: no neuron biases.",
    )
    n_inputs: int | None = doc_field(
        None,
        "Input dimensions of the 'mlp' model: the features reach its neurons through a fixed "
        "random projection to this many dimensions, as in Jermyn et al. 2022's feature decoder "
        "(>= 1). Default: the neurons read the features themselves.",
    )

    def __post_init__(self) -> None:
        check_choice("model kind", self.kind, MODEL_KINDS)
        check_int_at_least("n_hidden", self.n_hidden, 1)
        if self.tied is not None and not isinstance(self.tied, bool):
            raise ConfigError(f"tied must be true or false, got {self.tied!r}")
        if self.kind == "abs" and self.tied:
            raise ConfigError(
                "the 'abs' model is untied by construction; leave tied unset or false"
            )
        if self.hidden_bias_init is not None:
            if self.kind != "mlp":
                raise ConfigError(
                    f"hidden_bias_init applies to the 'mlp' model only, not {self.kind!r}; drop "
                    "it or set kind = 'mlp'"
                )
            check_finite("hidden_bias_init", self.hidden_bias_init)
        if self.n_inputs is not None:
            if self.kind != "mlp":
                raise ConfigError(
                    f"n_inputs applies to the 'mlp' model only, not {self.kind!r}; drop it or set "
                    "kind = 'mlp'"
                )
            check_int_at_least("n_inputs", self.n_inputs, 1)

    @property
    def is_tied(self) -> bool:
        return self.kind not in ("abs", "mlp") if self.tied is None else self.tied

    @property
    def has_hidden_bias(self) -> bool:
        """Whether the neurons carry biases of their own (an 'mlp' model with
        ``hidden_bias_init``)."""
        return self.kind == "mlp" and self.hidden_bias_init is not None

    @property
    def is_plain(self) -> bool:
        """Whether the model is one of the two-layer maps without neuron biases or an input
        projection (what the fast CPU kernels and the SAEs compute)."""
        return not self.has_hidden_bias and self.n_inputs is None


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the paper notebook's."""

    steps: int = doc_field(10_000, "Optimisation steps (fresh samples every step).")
    batch_size: int = doc_field(1024, "Samples per step and instance.")
    lr: float = doc_field(1e-3, "Peak learning rate.")
    loss: str = doc_field(
        "mse",
        "Loss: 'mse' (importance-weighted squared error, mean over batch and features: the "
        "notebook's), 'mse_sum' (summed over features: the paper's per-sample loss), "
        "'cross_entropy' (features as classes); more can be registered.",
    )
    optimizer: Optimizer = doc_field(
        "adamw", "'adamw' (the notebook's, decoupled weight decay) or 'adam'."
    )
    weight_decay: float = doc_field(
        0.01,
        "Weight decay in [-1, 1] (AdamW: decoupled; Adam: added to the gradient). Positive: "
        "every parameter shrinks toward 0. Negative: each feature's row of W is pulled toward "
        "unit norm instead, the weight growth of Liu, Liu & Gore 2025 that drives strong "
        "superposition.",
    )
    schedule: Schedule = doc_field(
        "constant", "Learning-rate schedule after warm-up: 'constant', 'linear' or 'cosine' decay."
    )
    warmup_steps: int = doc_field(0, "Steps of linear warm-up from 0 to lr.")
    instances: int = doc_field(
        1, "Independently seeded instances per group (best-of-N selects among them)."
    )
    seed: int = doc_field(0, "Seed from which every random generator of the run is derived.")
    log_every: int = doc_field(100, "Record the per-instance loss every this many steps.")
    snapshot_steps: tuple[int, ...] = doc_field(
        (), "Steps at which to keep a copy of all weights (for learning dynamics)."
    )
    eval_samples: int = doc_field(
        20_000, "Held-out samples per instance for the final loss used by best-of-N."
    )
    device: str = doc_field("auto", "'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available).")
    memory_budget_gb: float | None = doc_field(
        None,
        "Memory a training chunk may use, in GiB; more instances are split into chunks. "
        "Default: a quarter of the machine's (or the GPU's) memory.",
    )

    def __post_init__(self) -> None:
        freeze_tuple(self, "snapshot_steps")
        check_int_at_least("steps", self.steps, 1)
        check_int_at_least("batch_size", self.batch_size, 1)
        check_in_range("lr", self.lr, 0.0, 10.0, low_open=True)
        _name("loss", self.loss)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_in_range("weight_decay", self.weight_decay, -1.0, 1.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int_at_least("warmup_steps", self.warmup_steps, 0)
        if self.warmup_steps > self.steps:
            raise ConfigError(
                f"warmup_steps must be <= steps ({self.steps}), got {self.warmup_steps}"
            )
        check_int_at_least("instances", self.instances, 1)
        check_int_at_most("instances", self.instances, MAX_INSTANCES, INSTANCES_WHY)
        check_int_at_least("seed", self.seed, 0)
        check_int_at_least("log_every", self.log_every, 1)
        for s in self.snapshot_steps:
            check_int_at_least("snapshot step", s, 0)
            if s > self.steps:
                raise ConfigError(f"snapshot step {s} is after the last step ({self.steps})")
        check_int_at_least("eval_samples", self.eval_samples, 1)
        check_int_at_most("eval_samples", self.eval_samples, MAX_EVAL_SAMPLES, EVAL_WHY)
        if not isinstance(self.device, str) or not (
            self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")
        ):
            raise ConfigError(
                f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}"
            )
        if self.memory_budget_gb is not None:
            check_in_range("memory_budget_gb", self.memory_budget_gb, 0.0, 1e6, low_open=True)


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: data, model and training settings."""

    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "Feature distribution."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "Model."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"doc": "Training."})

    def __post_init__(self) -> None:
        if self.model.kind == "abs" and self.data.signed is False:
            raise ConfigError(
                "the 'abs' model computes |x| and needs signed inputs; drop signed=false"
            )
        if self.n_instances > MAX_INSTANCES:
            data = self.data
            raise ConfigError(
                f"{len(data.density)} density x {len(data.importance_decay)} importance_decay x "
                f"{len(data.relative_importance)} relative_importance value(s) x instances "
                f"{self.train.instances} make {self.n_instances:,} instances, more than the "
                f"{MAX_INSTANCES:,} one run may hold ({INSTANCES_WHY}); split them into several "
                "runs or a sweep"
            )

    # ---- derived facts ------------------------------------------------------------------------

    @property
    def signed(self) -> bool:
        return self.model.kind == "abs" if self.data.signed is None else self.data.signed

    @property
    def groups(self) -> tuple[Group, ...]:
        """One :class:`Group` per group of instances, in their order on the instance axis: the
        product of the per-group fields, density varying slowest."""
        data = self.data
        return tuple(
            Group(density=d, importance_decay=r, relative_importance=q)
            for d, r, q in itertools.product(
                data.density, data.importance_decay, data.relative_importance
            )
        )

    @property
    def n_groups(self) -> int:
        data = self.data
        return len(data.density) * len(data.importance_decay) * len(data.relative_importance)

    @property
    def n_instances(self) -> int:
        return self.n_groups * self.train.instances

    def group_of(self, instance: int) -> int:
        return instance // self.train.instances

    # ---- JSON round trip ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "data": as_json_lists(dataclasses.asdict(self.data)),
            "model": as_json_lists(dataclasses.asdict(self.model)),
            "train": as_json_lists(dataclasses.asdict(self.train)),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "config") -> "RunConfig":
        """Build from nested sections; unknown sections or keys are refused by name."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source} must be a table of sections, got {type(raw).__name__}")
        sections: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        extra = set(raw) - set(sections) - {"schema_version", "version"}
        if extra:
            raise ConfigError(
                f"{source} has unknown section {sorted(extra)[0]!r}; allowed: data, model, train"
            )
        version = raw.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"{source} has schema_version {version!r}; this version of superposition reads "
                f"{SCHEMA_VERSION}"
            )
        parts: dict[str, Any] = {}
        for name, section_cls in sections.items():
            values = raw.get(name, {})
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source} section {name!r} must be a table")
            parts[name] = build_section(section_cls, values, source=f"{source} [{name}]")
        return cls(**parts)


def build_section(section_cls: type, values: Mapping[str, Any], *, source: str) -> Any:
    """Construct one config section, refusing unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(section_cls)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"{source} has unknown key {key!r}; known keys: {', '.join(sorted(known))}"
            )
    try:
        return section_cls(**values)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{source}: {exc}") from None


def as_json_lists(obj: Any) -> Any:
    """``obj`` with every tuple turned into a list, nested dicts and lists included, so JSON
    output (and comparing it with JSON read back) is stable."""
    if isinstance(obj, dict):
        return {k: as_json_lists(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_json_lists(v) for v in obj]
    return obj


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def param_shapes(config: RunConfig, n_inst: int) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter tensor of ``n_inst`` instances of ``config``'s model (what the
    trainer allocates and a run directory must hold)."""
    n, m = config.data.n_features, config.model.n_hidden
    shapes = {"W": (n_inst, n, m), "b": (n_inst, n)}
    if not config.model.is_tied:
        shapes["W_dec"] = (n_inst, n, m)
    if config.model.has_hidden_bias:
        shapes["b_hidden"] = (n_inst, m)
    return shapes
