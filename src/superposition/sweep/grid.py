"""A sweep's grid: named axes over config fields, and the points they make (no I/O, no torch).

An :class:`Axis` names a config field (bare, ``density``, or dotted, ``data.density``) and its
values: a list, :meth:`Axis.linspace` or :meth:`Axis.logspace`. A :class:`SweepConfig` is a base
:class:`RunConfig` and its axes; its points are their cartesian product, the first axis varying
slowest. Each point is the base config with the axis fields set (a per-group field such as
``density`` gets a one-value tuple, so a point is one group of ``base.train.instances`` seeds).
Every point's config is built when the sweep is, so a bad value is refused at once, named with its
axis.
"""

import dataclasses
import hashlib
import itertools
import json
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, no_type_check

import numpy as np

from superposition.config import GROUP_FIELDS, SECTIONS, RunConfig, is_finite_number
from superposition.errors import ConfigError

FIELD_SECTION: dict[str, str] = {
    f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
}
"""Section of every config field; bare field names are unique across sections."""
NOT_AXES: dict[str, str] = {
    "device": "where a sweep runs",
    "memory_budget_gb": "how a sweep is chunked",
}
"""Fields that say how a sweep runs rather than what it trains: set in the base, never axes."""
MAX_POINTS = 100_000
"""The most points a sweep may have: each is a config built and checked when the sweep is, a run
directory of several files and a row of the table; split a larger grid into several sweeps."""
PathLike = str | os.PathLike[str]


def _doc(text: str) -> Any:
    """A required dataclass field carrying its documentation."""
    return dataclasses.field(metadata={"doc": text})


# --------------------------------------------------------------------------------------------------
# axes


def _field_kind(name: str) -> str:
    """'int', 'float', 'str', 'bool', 'ints' or 'floats', from the field's annotation."""
    tp = next(f.type for f in dataclasses.fields(SECTIONS[FIELD_SECTION[name]]) if f.name == name)
    if get_origin(tp) in (Union, types.UnionType):
        tp = next(a for a in get_args(tp) if a is not type(None))
    if get_origin(tp) is Literal or tp is str:
        return "str"
    if get_origin(tp) is tuple:
        return "ints" if get_args(tp)[0] is int else "floats"
    kinds: dict[Any, str] = {bool: "bool", int: "int", float: "float"}
    return kinds[tp]


def _number(axis: str, value: Any, integer: bool) -> int | float:
    if not is_finite_number(value):
        raise ConfigError(f"axis {axis} has the value {value!r}; it takes finite numbers")
    if not integer:
        return float(value)
    rounded = round(value)
    if abs(value - rounded) > 1e-9 * max(1.0, abs(value)):
        raise ConfigError(f"axis {axis} has the value {value!r}; {axis} takes integers")
    return int(rounded)


def _coerce(axis: str, value: Any) -> Any:
    """One axis value in the type its field declares (a per-group field takes one number)."""
    kind = _field_kind(axis)
    if value is None:
        return None  # an optional field's default; the config's validation decides
    if kind in ("int", "float") or axis in GROUP_FIELDS:
        return _number(axis, value, integer=kind in ("int", "ints"))
    if kind in ("ints", "floats"):
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_number(axis, v, integer=kind == "ints") for v in items)
    if kind == "bool" and not isinstance(value, bool):
        raise ConfigError(f"axis {axis} has the value {value!r}; it takes true or false")
    if kind == "str" and not isinstance(value, str):
        raise ConfigError(f"axis {axis} has the value {value!r}; it takes names")
    return value


def resolve_field(name: str) -> str:
    """A config field's bare name from ``name`` or ``section.name``, or a ConfigError."""
    if not isinstance(name, str):
        raise ConfigError(f"an axis must name a config field, got {name!r}")
    bare = name
    if "." in name:
        section, bare = name.split(".", 1)
        if section not in SECTIONS or FIELD_SECTION.get(bare) != section:
            bare = ""
    if bare not in FIELD_SECTION:
        raise ConfigError(
            f"axis {name!r} is not a config field; known fields: {', '.join(sweepable_fields())}"
        )
    if bare in NOT_AXES:
        raise ConfigError(
            f"{bare} cannot be an axis: it says {NOT_AXES[bare]}, not what it trains; "
            "set it in the base config"
        )
    return bare


def sweepable_fields() -> list[str]:
    return [name for name in FIELD_SECTION if name not in NOT_AXES]


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class Axis:
    """One named axis of a sweep: a config field and the values it takes, in order."""

    field: str = _doc("Config field, bare ('density') or dotted ('data.density').")
    values: tuple[Any, ...] = _doc("Values the field takes, at least one.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", resolve_field(self.field))
        values = self.values
        if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
            raise ConfigError(f"axis {self.field} must be a list of values, got {values!r}")
        if len(values) == 0:
            raise ConfigError(f"axis {self.field} is empty; give it at least one value")
        if len(values) > MAX_POINTS:
            raise ConfigError(
                f"axis {self.field} has {len(values):,} values, more than the {MAX_POINTS:,} "
                "points a sweep may have; use fewer values or split the sweep"
            )
        coerced = tuple(_coerce(self.field, v) for v in list(values))
        for i, v in enumerate(coerced):
            if v in coerced[:i]:
                raise ConfigError(f"axis {self.field} has the value {v!r} twice")
        object.__setattr__(self, "values", coerced)

    @classmethod
    def linspace(cls, name: str, start: float, stop: float, num: int) -> "Axis":
        """``num`` values evenly spaced from ``start`` to ``stop`` (numpy.linspace)."""
        return cls(name, _spaced(name, "linspace", start, stop, num))

    @classmethod
    def logspace(cls, name: str, start: float, stop: float, num: int) -> "Axis":
        """``num`` values from ``10**start`` to ``10**stop``, evenly spaced in log (numpy's)."""
        return cls(name, _spaced(name, "logspace", start, stop, num))

    @classmethod
    def from_spec(cls, name: str, spec: Any) -> "Axis":
        """An axis from its TOML/JSON spelling: a list, one value, or a table with one key of
        ``values = [...]``, ``linspace = [start, stop, num]``, ``logspace = [start, stop, num]``."""
        if isinstance(spec, Mapping):
            if len(spec) != 1 or next(iter(spec)) not in ("values", "linspace", "logspace"):
                raise ConfigError(
                    f"axis {name} must be a list or a table with one of values, linspace or "
                    f"logspace, got {dict(spec)!r}"
                )
            kind, arg = next(iter(spec.items()))
            if kind == "values":
                return cls(name, arg)
            if not isinstance(arg, list | tuple) or len(arg) != 3:
                raise ConfigError(f"axis {name}: {kind} takes [start, stop, num], got {arg!r}")
            return cls(name, _spaced(name, kind, *arg))
        if isinstance(spec, list | tuple):
            return cls(name, tuple(spec))
        return cls(name, (spec,))

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "values": [plain(v) for v in self.values]}

    def label(self, value: Any) -> str:
        """A value as written in the table: numbers plainly, tuples as JSON lists."""
        if isinstance(value, tuple):
            return json.dumps(list(value))
        return repr(value) if isinstance(value, float) else str(value)


def _spaced(name: str, kind: str, start: Any, stop: Any, num: Any) -> tuple[float, ...]:
    for what, v in (("start", start), ("stop", stop)):
        if not is_finite_number(v):
            raise ConfigError(f"axis {name}: {kind} {what} must be a finite number, got {v!r}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"axis {name}: {kind} num must be an integer >= 1, got {num!r}")
    if num > MAX_POINTS:  # refused before numpy allocates the values
        raise ConfigError(
            f"axis {name}: {kind} [{start}, {stop}, {num}] makes {num:,} values, more than the "
            f"{MAX_POINTS:,} points a sweep may have; use a smaller num or split the sweep"
        )
    fn = np.linspace if kind == "linspace" else np.logspace
    with np.errstate(over="ignore"):  # an overflow is refused below, in one sentence
        values: list[float] = fn(float(start), float(stop), num).tolist()
    if not all(math.isfinite(v) for v in values):
        what = f"10^{max(start, stop)}" if kind == "logspace" else "an infinite step"
        raise ConfigError(
            f"axis {name}: {kind} [{start}, {stop}, {num}] reaches {what}, beyond the largest "
            "float (about 1.8e308); use smaller "
            + ("exponents (at most 308)" if kind == "logspace" else "values")
        )
    return tuple(values)


def spec_length(name: str, spec: Any) -> int:
    """How many values an axis spec (see :meth:`Axis.from_spec`) makes, read from the spec
    without making them (1 where the spec is malformed: :meth:`Axis.from_spec` says why)."""
    if isinstance(spec, Mapping) and len(spec) == 1:
        kind, arg = next(iter(spec.items()))
        if kind == "values" and isinstance(arg, list | tuple):
            return len(arg)
        if kind in ("linspace", "logspace") and isinstance(arg, list | tuple) and len(arg) == 3:
            num = arg[2]
            return num if isinstance(num, int) and not isinstance(num, bool) and num > 0 else 1
        return 1
    return len(spec) if isinstance(spec, list | tuple) else 1


def check_point_count(counts: Mapping[str, int]) -> None:
    """Refuse a grid of more than :data:`MAX_POINTS` points, given each axis's number of values
    (counted before any value is made)."""
    total = math.prod(counts.values())
    if total > MAX_POINTS:
        shape = " x ".join(f"{n:,} {name}" for name, n in counts.items())
        grid = f"{shape} values" if len(counts) == 1 else f"{shape} = {total:,} points"
        raise ConfigError(
            f"the sweep has {grid}, more than the {MAX_POINTS:,} points a sweep may have; use "
            "fewer values or split it into several sweeps"
        )


def plain(v: Any) -> Any:
    """A value as JSON holds it (tuples as lists)."""
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------------------------------
# the sweep


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class SweepConfig:
    """A base config and the axes along which it varies; the points are their product."""

    base: RunConfig = _doc("Config of every point, apart from the axis fields.")
    axes: tuple[Axis, ...] = _doc("Named axes; the first varies slowest.")
    _configs: tuple[RunConfig, ...] = dataclasses.field(
        default=(), init=False, repr=False, compare=False
    )
    """Every point's config, built (and so validated) once."""
    common_n_features: int | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    """The number of features when every point has the same, else None."""
    _id: str = dataclasses.field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base, RunConfig):
            raise ConfigError(f"a sweep's base must be a RunConfig, got {type(self.base).__name__}")
        axes = tuple(self.axes) if isinstance(self.axes, list | tuple) else self.axes
        if not isinstance(axes, tuple) or not all(isinstance(a, Axis) for a in axes):
            raise ConfigError(f"a sweep's axes must be a list of Axis, got {self.axes!r}")
        if not axes:
            raise ConfigError("a sweep needs at least one axis, e.g. [axes] density = [1, 0.1]")
        object.__setattr__(self, "axes", axes)
        check_point_count({a.field: len(a.values) for a in axes})
        names = [a.field for a in axes]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"the sweep has two axes over {name}; merge their values")
        for name in GROUP_FIELDS:
            values = getattr(self.base.data, name)
            if name not in names and len(values) > 1:
                raise ConfigError(
                    f"the base config has {len(values)} values of {name}, but a sweep point is "
                    f"one group; make {name} an axis instead"
                )
        # each axis value alone first, so a bad value is blamed on its own axis ...
        for axis in axes:
            for v in axis.values:
                try:
                    _with_values(self.base, {axis.field: v})
                except ConfigError as exc:
                    raise ConfigError(f"axis {axis.field} value {v!r}: {exc}") from None
        # ... then the combinations (e.g. n_features against an explicit importance)
        configs = []
        for i, values in enumerate(itertools.product(*(a.values for a in axes))):
            point = dict(zip(names, values, strict=True))
            try:
                configs.append(_with_values(self.base, point))
            except ConfigError as exc:
                raise ConfigError(f"sweep point {i} ({_describe(point)}): {exc}") from None
        object.__setattr__(self, "_configs", tuple(configs))
        ns = {c.data.n_features for c in configs}
        object.__setattr__(self, "common_n_features", ns.pop() if len(ns) == 1 else None)
        doc = self.to_dict()
        doc["base"]["train"].pop("memory_budget_gb", None)
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        object.__setattr__(self, "_id", hashlib.sha256(text.encode()).hexdigest()[:16])

    # ---- the grid -------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.field for a in self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)

    @property
    def points(self) -> list[dict[str, Any]]:
        """Each point's axis values, in order (first axis slowest)."""
        return [self.point_values(i) for i in range(self.n_points)]

    def point_values(self, index: int) -> dict[str, Any]:
        position = np.unravel_index(index, self.shape)
        return {a.field: a.values[int(j)] for a, j in zip(self.axes, position, strict=True)}

    def point_config(self, index: int) -> RunConfig:
        if not 0 <= index < self.n_points:
            raise ConfigError(f"point {index} is not in the sweep; it has {self.n_points} points")
        config: RunConfig = self._configs[index]
        return config

    @property
    def n_instances(self) -> int:
        return sum(c.n_instances for c in self._configs)

    # ---- JSON round trip and identity -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "axes": [a.to_dict() for a in self.axes]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "sweep") -> "SweepConfig":
        """From :meth:`to_dict`'s form: ``{"base": {...}, "axes": [{"field", "values"}, ...]}``."""
        if not isinstance(raw, Mapping) or set(raw) != {"base", "axes"}:
            raise ConfigError(f"{source} must be an object with the keys base and axes")
        if not isinstance(raw["axes"], list) or not all(
            isinstance(a, Mapping) and set(a) == {"field", "values"} for a in raw["axes"]
        ):
            raise ConfigError(f"{source} axes must be a list of {{field, values}} objects")
        base = RunConfig.from_dict(raw["base"], source=f"{source} base")
        check_point_count({str(a["field"]): spec_length("", a["values"]) for a in raw["axes"]})
        return cls(base, tuple(Axis(a["field"], a["values"]) for a in raw["axes"]))

    @classmethod
    def from_toml_dict(cls, raw: Mapping[str, Any], *, source: str = "sweep file") -> "SweepConfig":
        """From a sweep file's tables: ``[data] [model] [train]`` (the base) and ``[axes]``."""
        extra = sorted(set(raw) - {*SECTIONS, "axes", "schema_version"})
        if extra:
            raise ConfigError(
                f"{source} has unknown table {extra[0]!r}; allowed: data, model, train, axes"
            )
        specs = raw.get("axes")
        if not isinstance(specs, Mapping) or not specs:
            raise ConfigError(
                f"{source} has no [axes] table; add one, e.g. [axes] density = [1, 0.1]"
            )
        base = RunConfig.from_dict({k: v for k, v in raw.items() if k != "axes"}, source=source)
        flat = _flat_axes(specs)
        check_point_count({n: spec_length(n, s) for n, s in flat.items()})
        return cls(base, tuple(Axis.from_spec(n, s) for n, s in flat.items()))

    @classmethod
    def from_toml(cls, path: PathLike) -> "SweepConfig":
        from superposition.files import read_toml

        return cls.from_toml_dict(read_toml(path, "sweep file"), source=str(path))

    @property
    def sweep_id(self) -> str:
        """A stable hash of everything that decides the results (not the memory budget)."""
        return self._id

    def describe(self) -> str:
        """E.g. ``density x relative_importance = 40 x 40 points``."""
        return f"{' x '.join(self.names)} = {' x '.join(map(str, self.shape))} points"


def _flat_axes(specs: Mapping[str, Any]) -> dict[str, Any]:
    """TOML reads ``data.density = [...]`` as a nested table; flatten it to ``"data.density"``."""
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        nested = name in SECTIONS and isinstance(spec, Mapping)
        if nested and not set(spec) & {"values", "linspace", "logspace"}:
            out.update({f"{name}.{k}": v for k, v in spec.items()})
        else:
            out[name] = spec
    return out


def _with_values(base: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """The base config with the given fields set (per-group fields as one-value tuples)."""
    changes: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for name, v in values.items():
        changes[FIELD_SECTION[name]][name] = (v,) if name in GROUP_FIELDS else v
    sections = {s: dataclasses.replace(getattr(base, s), **c) for s, c in changes.items()}
    return RunConfig(**sections)


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={plain(v)!r}" for k, v in values.items())
