"""The command line: ``superposition train | inspect | reproduce | report | sweep | sae`` (layer 5).

Every config field becomes a flag of ``superposition train``, generated from the dataclasses with
the field's documentation as its help, so the two cannot drift apart. Bad input (a
:class:`ConfigError` or :class:`RunDirError`, a missing or malformed TOML file, a value that is not
a number) is printed as ``error: <sentence>`` on stderr with exit status 2, never a traceback, and
nothing is written.

Subcommands live in :data:`COMMANDS` (name -> :class:`Command`): a new one adds its arguments and
its ``run`` function there.
"""

import argparse
import dataclasses
import json
import math
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from superposition import __version__
from superposition.config import SECTIONS, RunConfig, _choice
from superposition.errors import ConfigError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line help, how it adds its arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


# --------------------------------------------------------------------------------------------------
# flags generated from the config dataclasses

FLAG_ALIASES: dict[str, tuple[str, ...]] = {"kind": ("--model",)}
"""Extra spellings of a field's flag."""
NEGATIVE_FLAGS: dict[str, str] = {"tied": "--untied"}
"""The 'off' spelling of boolean fields (default ``--no-NAME``)."""


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


def _field_kind(tp: Any) -> tuple[str, bool, tuple[str, ...]]:
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


def field_flags() -> list[FieldFlag]:
    """One :class:`FieldFlag` per field of every config section, in declaration order."""
    out = []
    seen: set[str] = set()
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in seen:  # pragma: no cover - guards future config changes
                raise RuntimeError(f"config field {f.name!r} appears in two sections")
            seen.add(f.name)
            kind, optional, choices = _field_kind(f.type)
            out.append(FieldFlag(section, f.name, kind, optional, choices))
    return out


def _default_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return " (default: " + (",".join(f"{v:g}" for v in value) if value else "none") + ")"
    if isinstance(value, bool):
        return f" (default: {'on' if value else 'off'})"
    if isinstance(value, float):
        return f" (default: {value:g})"
    return f" (default: {value})"


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = {name: cls() for name, cls in SECTIONS.items()}
    groups = {
        name: parser.add_argument_group(
            f"[{name}] {cls.__doc__.splitlines()[0] if cls.__doc__ else ''}".strip().rstrip(".")
        )
        for name, cls in SECTIONS.items()
    }
    for ff in field_flags():
        f = next(f for f in dataclasses.fields(SECTIONS[ff.section]) if f.name == ff.name)
        doc = f.metadata.get("doc", "")
        default = getattr(defaults[ff.section], ff.name)
        group = groups[ff.section]
        if ff.kind == "bool":
            group.add_argument(
                ff.flag,
                dest=ff.dest,
                action="store_const",
                const=True,
                default=argparse.SUPPRESS,
                help=(doc + _default_text(default)).replace("%", "%%"),
            )
            neg = NEGATIVE_FLAGS.get(ff.name, "--no-" + ff.name.replace("_", "-"))
            group.add_argument(
                neg,
                dest=ff.dest,
                action="store_const",
                const=False,
                default=argparse.SUPPRESS,
                help=f"The opposite of {ff.flag}.",
            )
            continue
        metavar = {
            "int": "N",
            "float": "X",
            "str": "NAME",
            "ints": "N[,N...]",
            "floats": "X[,X...]",
        }[ff.kind]
        if ff.choices:
            metavar = "{" + ",".join(ff.choices) + "}"
        group.add_argument(
            ff.flag,
            *FLAG_ALIASES.get(ff.name, ()),
            dest=ff.dest,
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=(doc + _default_text(default)).replace("%", "%%"),
        )


def _parse_int(flag: str, text: str) -> int:
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


def _parse_float(flag: str, text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} expects a number, got {text!r}") from None


def _parse_value(ff: FieldFlag, text: str) -> Any:
    if ff.optional and text.strip().lower() == "none":
        return None
    if ff.kind == "int":
        return _parse_int(ff.flag, text)
    if ff.kind == "float":
        return _parse_float(ff.flag, text)
    if ff.kind in ("ints", "floats"):
        if not text.strip():
            return ()
        parts = text.split(",")
        try:
            if ff.kind == "ints":
                return tuple(_parse_int(ff.flag, p) for p in parts)
            return tuple(_parse_float(ff.flag, p) for p in parts)
        except ConfigError:
            what = "integers" if ff.kind == "ints" else "numbers"
            raise ConfigError(
                f"{ff.flag} expects comma-separated {what} (e.g. 1,0.3,0.1), got {text!r}"
            ) from None
    return text


def flag_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config values given as flags, by section (flags not given are absent)."""
    out: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for ff in field_flags():
        if hasattr(args, ff.dest):
            raw = getattr(args, ff.dest)
            out[ff.section][ff.name] = raw if ff.kind == "bool" else _parse_value(ff, raw)
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML config file, with one-sentence errors for a missing, unreadable or malformed file."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None


def _as_field_types(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
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


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's config: the TOML file (if any) with the flags on top."""
    raw: dict[str, Any] = {}
    source = "command line"
    if args.config is not None:
        raw = read_toml(Path(args.config))
        source = str(args.config)
    flags = flag_values(args)
    merged: dict[str, Any] = dict(raw)
    for section, values in flags.items():
        base = raw.get(section, {})
        if not isinstance(base, Mapping):
            raise ConfigError(f"{source} section [{section}] must be a table, got {base!r}")
        merged[section] = {**_as_field_types(section, base), **values}
    # choices first, so a bad one gets its sentence even where the constructors are type-checked
    for ff in field_flags():
        table = merged.get(ff.section)
        if ff.choices and isinstance(table, Mapping) and ff.name in table:
            label = "model kind" if ff.name == "kind" else ff.name
            _choice(label, table[ff.name], ff.choices)
    return RunConfig.from_dict(merged, source=source)


# --------------------------------------------------------------------------------------------------
# train


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG.toml",
        help="TOML file with [data], [model] and [train] tables; flags override its values.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="Run directory to write.")
    p.add_argument("--force", action="store_true", help="Replace a run already at --out.")
    _add_progress(p)
    _add_config_flags(p)


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="No progress bar (default: shown on stderr when it is a terminal).",
    )


def _run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # bad input fails here, before torch is imported

    from superposition.store import check_target, save_run
    from superposition.training import train

    out = Path(args.out)
    check_target(out, overwrite=args.force, hint="--force")
    try:
        run = train(config, progress=False if args.no_progress else None)
        save_run(run, out, overwrite=args.force)
    except KeyboardInterrupt:
        print("interrupted: training stopped, nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_train_summary(run, out)
    return EXIT_OK


def _print_train_summary(run: Any, out: Path) -> None:
    from superposition import geometry

    cfg = run.config
    best = run.best()
    labels = [g.label for g in geometry.classify(run.W[best])]
    secs = run.info.get("seconds")
    took = f" in {secs:g} s" if isinstance(secs, int | float) else ""
    device = run.info.get("device", "")
    print(
        f"trained {cfg.n_instances} instance(s) of the {cfg.model.kind} model "
        f"(n_features={cfg.data.n_features}, n_hidden={cfg.model.n_hidden}): "
        f"{cfg.n_groups} group(s) x {cfg.train.instances} seed(s), {cfg.train.steps} steps"
        f"{took}{' on ' + device if device else ''}"
    )
    header = ("group", "density", "imp. decay", "best loss", "inst")
    print(
        "  ".join(f"{h:>{w}}" for h, w in zip(header, (5, 8, 10, 10, 4), strict=True)), "geometry"
    )
    for g, values in enumerate(cfg.groups):
        k = best[g]
        print(
            f"{g:>5}  {values['density']:>8g}  {values['importance_decay']:>10g}  "
            f"{_fmt(float(run.loss[k])):>10}  {k:>4}  {labels[g]}"
        )
    print(f"saved to {out}")


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}"


# --------------------------------------------------------------------------------------------------
# inspect


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="Run directory written by `superposition train`.")
    p.add_argument("--json", action="store_true", help="Print a JSON document instead of text.")


def inspect_dict(path: Path) -> dict[str, Any]:
    """What ``inspect --json`` prints: per-instance measures as lists of length ``instances``."""
    from superposition import geometry
    from superposition.store import _jsonable, load_run, read_config_json

    run = load_run(path)
    meta = read_config_json(path)
    cfg = run.config
    best = run.best()
    loss = run.loss.tolist()
    group_of = [cfg.group_of(i) for i in range(cfg.n_instances)]
    groups = [
        {
            **values,
            "instances": list(range(run.group_slice(g).start, run.group_slice(g).stop)),
            "best": best[g],
            "best_loss": loss[best[g]],
        }
        for g, values in enumerate(cfg.groups)
    ]
    doc = {
        "path": str(path),
        "version": meta.get("version"),
        "created_at": meta.get("created_at"),
        "config": cfg.to_dict(),
        "n_instances": cfg.n_instances,
        "n_groups": cfg.n_groups,
        "instances_per_group": cfg.train.instances,
        "loss": loss,
        "group": group_of,
        "density": [cfg.groups[g]["density"] for g in group_of],
        "importance_decay": [cfg.groups[g]["importance_decay"] for g in group_of],
        "relative_importance": [cfg.groups[g]["relative_importance"] for g in group_of],
        "bias": run.b.tolist(),
        **geometry.summary(run.W),
        "best": best,
        "groups": groups,
        "info": run.info,
    }
    result: dict[str, Any] = _jsonable(doc)
    return result


def _run_inspect(args: argparse.Namespace) -> int:
    path = Path(args.run)
    doc = inspect_dict(path)
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return EXIT_OK
    cfg = RunConfig.from_dict(doc["config"])
    d, m, t = cfg.data, cfg.model, cfg.train
    print(f"run {path}  (superposition {doc['version']}, saved {doc['created_at']})")
    print(
        f"  model: {m.kind}, n_features={d.n_features}, n_hidden={m.n_hidden}, "
        f"{'tied' if m.is_tied else 'untied'}, {'signed' if cfg.signed else 'unsigned'} inputs"
    )
    extras = []
    if d.importance is not None:
        extras.append("importance=" + ",".join(f"{v:g}" for v in d.importance))
    if d.feature_density is not None:
        extras.append("feature_density=" + ",".join(f"{v:g}" for v in d.feature_density))
    if d.correlated:
        extras.append(f"correlated={list(d.correlated)}")
    if d.anticorrelated:
        extras.append(f"anticorrelated={list(d.anticorrelated)}")
    if extras:
        print("  data: " + ", ".join(extras))
    print(
        f"  train: {t.steps} steps, batch {t.batch_size}, {t.optimizer} lr={t.lr:g} "
        f"wd={t.weight_decay:g} {t.schedule}, seed {t.seed}; "
        f"{cfg.n_instances} instance(s) = {cfg.n_groups} group(s) x {t.instances}"
    )
    for g, group in enumerate(doc["groups"]):
        k = group["best"]
        losses = " ".join(_fmt(doc["loss"][i]) for i in group["instances"])
        norms = ", ".join(_fmt(v, 2) if v is not None else "nan" for v in doc["feature_norms"][k])
        print(
            f"group {g}: density {group['density']:g}, importance_decay "
            f"{group['importance_decay']:g}"
        )
        print(f"  losses (instances {group['instances'][0]}-{group['instances'][-1]}): {losses}")
        print(
            f"  best: instance {k}, loss {_fmt(group['best_loss'])}, geometry: {doc['geometry'][k]}"
        )
        print(f"  feature norms of instance {k}: [{norms}]")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# reproduce


def experiment_names() -> tuple[str, ...]:
    """Names ``reproduce`` accepts, from the light ``superposition.experiments`` package (so that
    ``--help`` and ``--version`` do not import torch)."""
    from superposition.experiments import EXPERIMENT_NAMES

    return EXPERIMENT_NAMES


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "name",
        metavar="NAME",
        nargs="?",
        help=f"Experiment to reproduce: {', '.join(experiment_names())}.",
    )
    which.add_argument(
        "--all",
        action="store_true",
        help="Reproduce every experiment in the paper's order, then write DIR/report.html.",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="Folder in which to write the run DIR/NAME."
    )
    p.add_argument("--quick", action="store_true", help="Fewer seeds and steps (a quick look).")
    p.add_argument(
        "--force", action="store_true", help="Replace results already at DIR/NAME (every NAME)."
    )
    _add_progress(p)


def _print_claims(claims: Sequence[Any]) -> None:
    for c in claims:
        print(f"[{'holds' if c.holds else 'FAILS'}] {c.section}: {c.text}")
        print(f"         measured: {c.measured}")


def _run_reproduce(args: argparse.Namespace) -> int:
    from superposition import reproduce

    if args.all:
        return _run_reproduce_all(args)
    if args.name not in experiment_names():
        raise ConfigError(
            f"unknown experiment {args.name!r}; known experiments: {', '.join(experiment_names())}"
        )
    try:
        target, claims = reproduce.reproduce(
            args.name,
            Path(args.out),
            quick=args.quick,
            force=args.force,
            progress=False if args.no_progress else None,
        )
    except KeyboardInterrupt:
        print("interrupted: training stopped, nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_claims(claims)
    print(f"saved to {target} (figures in {target / 'figures'})")
    return EXIT_OK


def _run_reproduce_all(args: argparse.Namespace) -> int:
    from superposition import report, reproduce

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    report._plotly_js()  # the report needs plotly: say so before training, not after
    available, skipped = [], []
    for name in experiment_names():
        try:
            reproduce.get(name)
        except ConfigError:
            skipped.append(name)
            continue
        available.append(name)
    # every target is checked before anything is trained: a refusal after an hour of training,
    # or a folder half-filled by --all, would be worse than refusing at once
    refusals, existing = [], []
    for name in available:
        try:
            reproduce.check_target(out / name, force=args.force)
        except ConfigError as exc:
            if (out / name / reproduce.EXPERIMENT_FILE).is_file():
                existing.append(name)
            else:
                refusals.append(str(exc))
    if existing:
        refusals.append(
            f"{out} already holds results of {', '.join(existing)}; pass --force to replace them"
        )
    if refusals:
        raise ConfigError("; ".join(refusals) + " (nothing was trained)")
    for name in skipped:
        print(f"skipping {name}: not available in this version yet")
    for k, name in enumerate(available, 1):
        print(f"== {k}/{len(available)} {name}")
        try:
            target, claims = reproduce.reproduce(
                name,
                out,
                quick=args.quick,
                force=args.force,
                progress=False if args.no_progress else None,
            )
        except KeyboardInterrupt:
            done = ", ".join(available[: k - 1]) or "none"
            print(
                f"interrupted: {name} was not saved; finished experiments ({done}) are in {out}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        _print_claims(claims)
        print(f"saved to {target}")
    info = report.write_report(out)
    print(f"report: {info.path}")
    print(info.summary())
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# report


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir", metavar="DIR", help="Results folder written by `superposition reproduce --out DIR`."
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="Where to write the HTML file (default: DIR/report.html).",
    )
    p.add_argument(
        "--no-redraw",
        action="store_true",
        help="Show the figures and claims already in DIR instead of redrawing them from the runs.",
    )


def _run_report(args: argparse.Namespace) -> int:
    from superposition import report

    info = report.write_report(
        Path(args.dir),
        out=Path(args.out) if args.out else None,
        redraw=not args.no_redraw,
    )
    for sec in info.sections:
        if sec.status == "ok":
            print(f"{sec.name}: {sec.holding} of {len(sec.claims)} claims hold")
        else:
            print(f"{sec.name}: {sec.status}. {sec.problem}")
    print(info.summary())
    print(f"report: {info.path}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# the parser and main


from superposition import cli_explore, cli_sae, cli_sweep  # noqa: E402 - they import cli lazily

COMMANDS: dict[str, Command] = {
    "train": Command(
        "Train toy models from a TOML file and/or flags and save a run directory.",
        _add_train,
        _run_train,
        "Train every instance of a config and save the run directory at --out. Config values "
        "come from CONFIG.toml (tables [data], [model], [train]) and the flags below, flags last. "
        "List-valued fields take comma-separated values; each combination of density and "
        "importance_decay is a group of --instances seeds.",
    ),
    "inspect": Command(
        "Summarise a run directory (text, or JSON with --json).",
        _add_inspect,
        _run_inspect,
    ),
    "reproduce": Command(
        "Reproduce one of the paper's experiments: train, save, draw figures, check claims.",
        _add_reproduce,
        _run_reproduce,
    ),
    "report": Command(
        "Write the HTML report of a results folder (figures redrawn from the runs, no training).",
        _add_report,
        _run_report,
        "Redraw every experiment's figures and claims from the run directories in DIR (no "
        "training) and write one self-contained HTML page, DIR/report.html: claims beside what "
        "was measured, interactive and static figures, and what is missing from DIR.",
    ),
    "sweep": Command(cli_sweep.HELP, cli_sweep.add_arguments, cli_sweep.run, cli_sweep.DESCRIPTION),
    "sae": Command(cli_sae.HELP, cli_sae.add_arguments, cli_sae.run, cli_sae.DESCRIPTION),
    "explore": Command(
        cli_explore.HELP, cli_explore.add_arguments, cli_explore.run, cli_explore.DESCRIPTION
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superposition",
        description="Toy models of superposition (Elhage et al. 2022): train, inspect, reproduce.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"superposition {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            allow_abbrev=False,
        )
        cmd.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return COMMANDS[args.command].run(args)
    except ConfigError as exc:  # RunDirError is a ConfigError
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `superposition inspect RUN --json | head`
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
