"""The explorer's form: its fields, the explorer's bounds on them, and the config it builds.

The page sends the fields as typed (strings); :func:`parse_form` turns them into a
:class:`~superposition.config.RunConfig` or raises :class:`ConfigError` with one sentence naming
the field, the value and what is allowed. The bounds keep one request from occupying the machine
for long: a page may ask for at most :data:`MAX_WORK` weight-steps, and the training itself is
stopped after the server's time limit (see :mod:`superposition.explore.job`).
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from superposition.config import MODEL_KINDS, DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError

CORRELATIONS = ("none", "correlated", "anticorrelated")
MAX_BODY = 16 * 1024
"""Largest request body the server reads, in bytes."""
MAX_WORK = 10**8
"""Largest n_features x n_hidden x instances x steps one training may ask for."""
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Field:
    """One control of the form: how it is labelled, parsed and bounded."""

    name: str
    label: str
    kind: str  # "int", "float" or "choice"
    default: str
    low: int | float | None = None
    high: int | float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""
    own_limit: bool = True  # the bounds are the explorer's, narrower than the config's

    def allowed(self) -> str:
        """What the field accepts, in words (shown on the page and in error messages)."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        what = "an integer" if self.kind == "int" else "a number"
        if self.low is None or self.high is None:
            return what
        bracket = "(" if self.low_open else "["
        return f"{what} in {bracket}{self.low:g}, {self.high:g}]"


FIELDS: tuple[Field, ...] = (
    Field("n_features", "features n", "int", "5", 1, 100, help="input features (the paper's n)"),
    Field("n_hidden", "hidden m", "int", "2", 1, 50, help="hidden dimensions (the paper's m)"),
    Field(
        "density",
        "density",
        "float",
        "0.1",
        0,
        1,
        low_open=True,
        help="probability that a feature is non-zero (1 - S)",
        own_limit=False,
    ),
    Field(
        "importance_decay",
        "importance decay r",
        "float",
        "0.9",
        0,
        2,
        low_open=True,
        help="importance profile I_i = r^i (1 = uniform)",
    ),
    Field(
        "correlation",
        "correlation",
        "choice",
        "none",
        choices=CORRELATIONS,
        help="features in sets of the size below: present together, or at most one at a time",
    ),
    Field("set_size", "features per set", "int", "2", 2, 100, help="size of each feature set"),
    Field("kind", "model", "choice", "relu", choices=MODEL_KINDS, help="which toy model"),
    Field("instances", "seeds", "int", "4", 1, 16, help="models trained at once (best-of-N)"),
    Field("seed", "first seed", "int", "0", 0, 2**31 - 1, help="seed of the whole training"),
    Field("steps", "steps", "int", "5000", 1, 20_000, help="optimisation steps"),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}


def _shown(value: Any) -> str:
    """A submitted value for a message, cut short so a huge value cannot flood the page."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_value(field: Field, value: Any) -> int | float | str:
    """One field's value (a string from the page, or a JSON number), checked against its bounds."""
    parsed: int | float | str
    if field.kind == "choice":
        if value not in field.choices:
            raise ConfigError(f"{field.name} must be {field.allowed()}; got {_shown(value)}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{field.name} must be {field.allowed()}, got {_shown(value)}")
    if field.kind == "int":
        if isinstance(value, float) and value.is_integer():
            parsed = int(value)
        elif isinstance(value, int):
            parsed = value
        elif isinstance(value, str) and _INT.fullmatch(value.strip()):
            parsed = int(value.strip())
        else:
            raise ConfigError(f"{field.name} must be {field.allowed()}, got {_shown(value)}")
    else:
        try:
            parsed = float(value)
        except ValueError:
            raise ConfigError(
                f"{field.name} must be {field.allowed()}, got {_shown(value)}"
            ) from None
        if not math.isfinite(parsed):
            raise ConfigError(f"{field.name} must be {field.allowed()}, got {_shown(value)}")
    if field.low is not None and field.high is not None:
        above_low = parsed > field.low if field.low_open else parsed >= field.low
        if not (above_low and parsed <= field.high):
            where = " (the explorer's limit)" if field.own_limit else ""
            raise ConfigError(f"{field.name} must be {field.allowed()}{where}, got {_shown(value)}")
    return parsed


def parse_form(raw: Any) -> tuple[RunConfig, dict[str, Any]]:
    """The config a submitted form asks for, and the parsed values (for the page to show).

    Missing fields take their defaults; unknown fields are refused by name. Values are checked
    against the explorer's bounds first, then by the config classes themselves, so their messages
    (e.g. an anticorrelated set too dense to exist) reach the page unchanged.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("the request must be a JSON object of form fields")
    unknown = sorted(set(raw) - set(FIELD_BY_NAME))
    if unknown:
        raise ConfigError(
            f"unknown field {_shown(unknown[0])}; the form has {', '.join(FIELD_BY_NAME)}"
        )
    v: dict[str, Any] = {f.name: parse_value(f, raw.get(f.name, f.default)) for f in FIELDS}
    n, m, k = int(v["n_features"]), int(v["n_hidden"]), int(v["set_size"])
    sets: tuple[int, ...] = ()
    if v["correlation"] != "none":
        if k > n:
            raise ConfigError(
                f"set_size {k} is larger than n_features {n}; use at most {n} features per set"
            )
        sets = (k,) * (n // k)
    work = n * m * int(v["instances"]) * int(v["steps"])
    if work > MAX_WORK:
        raise ConfigError(
            f"this training is too large for the explorer: n_features x n_hidden x seeds x steps "
            f"= {work:.3g}, at most {MAX_WORK:.0g}; lower one of them"
        )
    steps = int(v["steps"])
    config = RunConfig(
        data=DataConfig(
            n_features=n,
            density=(float(v["density"]),),
            importance_decay=(float(v["importance_decay"]),),
            correlated=sets if v["correlation"] == "correlated" else (),
            anticorrelated=sets if v["correlation"] == "anticorrelated" else (),
        ),
        model=ModelConfig(kind=v["kind"], n_hidden=m),
        train=TrainConfig(
            steps=steps,
            instances=int(v["instances"]),
            seed=int(v["seed"]),
            # a few hundred points of loss history, and frequent redraws of small trainings
            log_every=min(20, max(1, steps // 500)),
            device="cpu",
        ),
    )
    return config, v
