"""``superposition reproduce NAME|--all|--group GROUP --out DIR``: one experiment, or a group of
them followed by the HTML report: train, save, draw the figures and check the claims."""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superposition.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    add_progress,
    print_interrupted,
    progress,
)
from superposition.errors import ConfigError
from superposition.files import check_destination

HELP = "Reproduce one of the paper's experiments: train, save, draw figures, check claims."


def experiment_names() -> tuple[str, ...]:
    """Names ``reproduce`` accepts, from the light ``superposition.experiments`` package (so that
    ``--help`` and ``--version`` do not import torch)."""
    from superposition.experiments import EXPERIMENT_NAMES

    return EXPERIMENT_NAMES


def group_names() -> tuple[str, ...]:
    """The groups ``--group`` accepts (from the light ``superposition.experiments`` package)."""
    from superposition.experiments import GROUPS

    return tuple(GROUPS)


def add_arguments(p: argparse.ArgumentParser) -> None:
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
        help="Reproduce the paper's experiments in its order and the questions it leaves open, "
        "then write DIR/report.html.",
    )
    which.add_argument(
        "--group",
        metavar="GROUP",
        help=f"Reproduce one group of experiments ({', '.join(group_names())}), then write "
        "DIR/report.html.",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="Folder in which to write the run DIR/NAME."
    )
    p.add_argument("--quick", action="store_true", help="Fewer seeds and steps (a quick look).")
    p.add_argument(
        "--size",
        metavar="SIZE",
        help="For an experiment with several sizes, which one (sae-bench: quick, standard, "
        "full; default standard, or quick with --quick).",
    )
    p.add_argument(
        "--force", action="store_true", help="Replace results already at DIR/NAME (every NAME)."
    )
    p.add_argument(
        "--workers",
        default=None,
        metavar="N",
        help="Processes that train runs side by side, one thread each (default: one per CPU "
        "core, or 1 when training on CUDA). The results do not depend on it.",
    )
    add_progress(p)


def workers_count(text: str | None) -> int | None:
    """``--workers``: a whole number of at least 1 (``None`` when not given)."""
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--workers must be a whole number >= 1, got {text!r}")
    return n


def print_claims(claims: Sequence[Any]) -> None:
    """Each claim checked, whether it holds, and what was measured."""
    for c in claims:
        print(f"[{'holds' if c.holds else 'FAILS'}] {c.section}: {c.text}")
        print(f"         measured: {c.measured}")


def run(args: argparse.Namespace) -> int:
    check_destination(args.out)  # before any work, for one experiment and --all alike

    from superposition import reproduce

    if args.all or args.group is not None:
        return run_all(args, selected(args))
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
            progress=progress(args),
            workers=workers_count(args.workers),
            size=args.size,
        )
    except KeyboardInterrupt:
        print_interrupted()
        return EXIT_INTERRUPTED
    print_claims(claims)
    print(f"saved to {target} (figures in {target / 'figures'})")
    return EXIT_OK


def selected(args: argparse.Namespace) -> tuple[str, ...]:
    """The experiments of ``--all`` or ``--group``."""
    from superposition.experiments import ALL, GROUPS

    if args.group is None:
        return ALL
    if args.group not in GROUPS:
        raise ConfigError(f"unknown group {args.group!r}; known groups: {', '.join(GROUPS)}")
    return GROUPS[args.group]


def run_all(args: argparse.Namespace, names: Sequence[str]) -> int:
    """``reproduce --all`` or ``--group``: the available experiments of ``names`` in order, then
    the report."""
    from superposition import report, reproduce

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    report.load_plotly_js()  # the report needs plotly: say so before training, not after
    available, skipped = [], []
    for name in names:
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
    finished: list[str] = []

    def on_done(name: str, target: Path, claims: Sequence[Any]) -> None:
        finished.append(name)
        print(f"== {len(finished)}/{len(available)} {name}")
        print_claims(claims)
        print(f"saved to {target}")

    try:
        reproduce.reproduce_many(
            available,
            out,
            quick=args.quick,
            force=args.force,
            progress=progress(args),
            workers=workers_count(args.workers),
            on_done=on_done,
            size=args.size,
        )
    except KeyboardInterrupt:
        done = ", ".join(finished) or "none"
        print_interrupted(f"interrupted: finished experiments ({done}) are in {out}")
        return EXIT_INTERRUPTED
    info = report.write_report(out)
    print(f"report: {info.path}")
    print(info.summary())
    return EXIT_OK


COMMAND = Command(HELP, add_arguments, run)
