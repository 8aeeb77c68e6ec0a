"""Flags generated from the config dataclasses, their parsing, and TOML config files.

Every field of a config section becomes one flag, with the field's documentation as its help, so
the two cannot drift apart. List-valued fields take comma-separated values; an optional field takes
``none``; a boolean field has an 'on' flag and an 'off' one (``--no-NAME`` unless
:data:`NEGATIVE_FLAGS` says otherwise). Values that do not parse raise :class:`ConfigError` with a
sentence naming the flag and what it expects.
"""

import argparse
import dataclasses
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from superposition.config import SECTIONS, RunConfig, check_choice
from superposition.errors import ConfigError

FLAG_ALIASES: dict[str, tuple[str, ...]] = {"kind": ("--model",)}
"""Extra spellings of a run-config field's flag."""
NEGATIVE_FLAGS: dict[str, str] = {"tied": "--untied"}
"""The 'off' spelling of boolean fields (default ``--no-NAME``)."""
METAVARS = {"int": "N", "float": "X", "str": "NAME", "ints": "N[,N...]", "floats": "X[,X...]"}
"""How the help shows a value of each kind of field."""


@dataclass(frozen=True)
class FieldFlag:
    """How one config field is spelled and parsed on the command line."""

    section: str
    name: str
    kind: str  # "int", "float", "str", "bool", "ints", "floats"
    optional: bool  # None is allowed (spelled "none" on the command line)
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return f"cfg__{self.section}__{self.name}"


def field_kind(tp: Any) -> tuple[str, bool, tuple[str, ...]]:
    """A field's type as (kind, optional, choices): the fields of :class:`FieldFlag`."""
    optional = False
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        tp = args[0] if len(args) == 1 else tp
    origin = get_origin(tp)
    if origin is Literal:
        return "str", optional, tuple(str(a) for a in get_args(tp))
    if origin is tuple:
        item = get_args(tp)[0]
        return ("ints" if item is int else "floats"), optional, ()
    if tp is bool:
        return "bool", optional, ()
    if tp is int:
        return "int", optional, ()
    if tp is float:
        return "float", optional, ()
    if tp is str:
        return "str", optional, ()
    raise TypeError(f"no command-line spelling for config field type {tp!r}")  # pragma: no cover


def dataclass_flags(section: str, cls: type) -> list[FieldFlag]:
    """One :class:`FieldFlag` per field of one config dataclass, in declaration order."""
    return [FieldFlag(section, f.name, *field_kind(f.type)) for f in dataclasses.fields(cls)]


def field_flags() -> list[FieldFlag]:
    """One :class:`FieldFlag` per field of every run-config section, in declaration order."""
    out = []
    seen: set[str] = set()
    for section, cls in SECTIONS.items():
        for ff in dataclass_flags(section, cls):
            if ff.name in seen:  # pragma: no cover - guards future config changes
                raise RuntimeError(f"config field {ff.name!r} appears in two sections")
            seen.add(ff.name)
            out.append(ff)
    return out


def default_text(value: Any) -> str:
    """The ``(default: ...)`` suffix of a field's help; empty when the default is None."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return " (default: " + (",".join(f"{v:g}" for v in value) if value else "none") + ")"
    if isinstance(value, bool):
        return f" (default: {'on' if value else 'off'})"
    if isinstance(value, float):
        return f" (default: {value:g})"
    return f" (default: {value})"


def section_title(name: str, cls: type) -> str:
    """An argument group's title: ``[section]`` and the first line of the dataclass's docstring."""
    return f"[{name}] {cls.__doc__.splitlines()[0] if cls.__doc__ else ''}".strip().rstrip(".")


def add_field_flag(
    group: Any, ff: FieldFlag, doc: str, default: Any, aliases: tuple[str, ...] = ()
) -> None:
    """Add one field's flag (and for a boolean its 'off' flag) to an argument group. Flags not
    given leave no attribute on the namespace, so the config's own default applies."""
    help_text = (doc + default_text(default)).replace("%", "%%")
    if ff.kind == "bool":
        common: dict[str, Any] = dict(dest=ff.dest, action="store_const", default=argparse.SUPPRESS)
        group.add_argument(ff.flag, const=True, help=help_text, **common)
        neg = NEGATIVE_FLAGS.get(ff.name, "--no-" + ff.name.replace("_", "-"))
        group.add_argument(neg, const=False, help=f"The opposite of {ff.flag}.", **common)
        return
    metavar = "{" + ",".join(ff.choices) + "}" if ff.choices else METAVARS[ff.kind]
    group.add_argument(
        ff.flag, *aliases, dest=ff.dest, metavar=metavar, default=argparse.SUPPRESS, help=help_text
    )


def add_dataclass_flags(parser: argparse.ArgumentParser, section: str, cls: type) -> None:
    """One argument group holding a flag per field of a config dataclass (no aliases)."""
    group = parser.add_argument_group(section_title(section, cls))
    defaults = cls()
    docs = {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}
    for ff in dataclass_flags(section, cls):
        add_field_flag(group, ff, docs[ff.name], getattr(defaults, ff.name))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per run-config field, in one argument group per section."""
    groups = {
        name: parser.add_argument_group(section_title(name, cls)) for name, cls in SECTIONS.items()
    }
    defaults = {name: cls() for name, cls in SECTIONS.items()}
    for ff in field_flags():
        f = next(f for f in dataclasses.fields(SECTIONS[ff.section]) if f.name == ff.name)
        add_field_flag(
            groups[ff.section],
            ff,
            f.metadata.get("doc", ""),
            getattr(defaults[ff.section], ff.name),
            FLAG_ALIASES.get(ff.name, ()),
        )


# --------------------------------------------------------------------------------------------------
# parsing values


def parse_int(flag: str, text: str) -> int:
    """An integer, also spelled as a float with no fraction (``1e3``)."""
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        value = float(s)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value.is_integer():
        return int(value)
    raise ConfigError(f"{flag} expects an integer, got {text!r}")


def parse_float(flag: str, text: str) -> float:
    """A number."""
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} expects a number, got {text!r}") from None


def parse_value(ff: FieldFlag, text: str) -> Any:
    """A non-boolean flag's text as the field's type."""
    if ff.optional and text.strip().lower() == "none":
        return None
    if ff.kind == "int":
        return parse_int(ff.flag, text)
    if ff.kind == "float":
        return parse_float(ff.flag, text)
    if ff.kind in ("ints", "floats"):
        if not text.strip():
            return ()
        parts = text.split(",")
        try:
            if ff.kind == "ints":
                return tuple(parse_int(ff.flag, p) for p in parts)
            return tuple(parse_float(ff.flag, p) for p in parts)
        except ConfigError:
            what = "integers" if ff.kind == "ints" else "numbers"
            raise ConfigError(
                f"{ff.flag} expects comma-separated {what} (e.g. 1,0.3,0.1), got {text!r}"
            ) from None
    return text


def dataclass_values(args: argparse.Namespace, flags: list[FieldFlag]) -> dict[str, Any]:
    """The values of the given flags that were passed, parsed, with their choices checked."""
    values: dict[str, Any] = {}
    for ff in flags:
        if hasattr(args, ff.dest):
            raw = getattr(args, ff.dest)
            values[ff.name] = raw if ff.kind == "bool" else parse_value(ff, raw)
            if ff.choices:
                check_choice(ff.name, values[ff.name], ff.choices)
    return values


def flag_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The run-config values given as flags, by section (flags not given are absent)."""
    out: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for ff in field_flags():
        if hasattr(args, ff.dest):
            raw = getattr(args, ff.dest)
            out[ff.section][ff.name] = raw if ff.kind == "bool" else parse_value(ff, raw)
    return out


# --------------------------------------------------------------------------------------------------
# TOML files


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML config file, with one-sentence errors for a missing, unreadable, malformed or
    hostile file (:func:`superposition.files.read_toml`)."""
    from superposition.files import read_toml as read

    return read(path, "config file")


def as_field_types(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """TOML arrays become tuples and a single number in a list-valued field a 1-tuple, the types
    the config fields declare."""
    kinds = {ff.name: ff.kind for ff in field_flags() if ff.section == section}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        elif kinds.get(key) in ("ints", "floats") and isinstance(value, int | float):
            value = (value,)
        out[key] = value
    return out


def merge_flags(
    raw: Mapping[str, Any], flags: Mapping[str, Mapping[str, Any]], source: str
) -> dict[str, Any]:
    """A TOML document's tables with the flags' values on top, section by section."""
    merged: dict[str, Any] = dict(raw)
    for section, values in flags.items():
        base = raw.get(section, {})
        if not isinstance(base, Mapping):
            raise ConfigError(f"{source} section [{section}] must be a table, got {base!r}")
        merged[section] = {**as_field_types(section, base), **values}
    return merged


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's config: the TOML file (if any) with the flags on top."""
    raw: dict[str, Any] = {}
    source = "command line"
    if args.config is not None:
        raw = read_toml(Path(args.config))
        source = str(args.config)
    merged = merge_flags(raw, flag_values(args), source)
    # choices first, so a bad one gets its sentence even where the constructors are type-checked
    for ff in field_flags():
        table = merged.get(ff.section)
        if ff.choices and isinstance(table, Mapping) and ff.name in table:
            label = "model kind" if ff.name == "kind" else ff.name
            check_choice(label, table[ff.name], ff.choices)
    return RunConfig.from_dict(merged, source=source)
