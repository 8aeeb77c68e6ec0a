"""``superposition train [CONFIG.toml] --out DIR``: train toy models and save a run directory.

Config values come from the TOML file and from one flag per config field (flags last). Bad input
fails before torch is imported, and a run directory is written only when training finished.
"""

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superposition.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    add_logging,
    add_progress,
    check_logging,
    fmt,
    open_logging,
    print_interrupted,
    progress,
)
from superposition.cli.flags import add_config_flags, config_from_args
from superposition.files import check_destination

HELP = "Train toy models from a TOML file and/or flags and save a run directory."
DESCRIPTION = (
    "Train every instance of a config and save the run directory at --out. Config values "
    "come from CONFIG.toml (tables [data], [model], [train]) and the flags below, flags last. "
    "List-valued fields take comma-separated values; each combination of density and "
    "importance_decay is a group of --instances seeds."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG.toml",
        help="TOML file with [data], [model] and [train] tables; flags override its values.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="Run directory to write.")
    p.add_argument("--force", action="store_true", help="Replace a run already at --out.")
    p.add_argument(
        "--plot", action="store_true", help="Draw the run's figures into DIR/figures (PNG, SVG)."
    )
    add_progress(p)
    add_logging(p)
    add_config_flags(p)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # bad input fails here, before torch is imported
    check_destination(args.out)

    from superposition.store import check_target, save_run
    from superposition.training import check, train

    check([config])  # an unknown loss or source, a training set over the budget: refused now
    out = Path(args.out)
    check_target(out, overwrite=args.force, hint="--force")
    check_logging(args)
    logger = open_logging(args, out.name, config.to_dict())
    try:
        callbacks = []
        if logger is not None:
            from superposition.loggers import run_callback

            callbacks.append(run_callback(logger, config))
        try:
            trained = train(config, progress=progress(args), callbacks=callbacks)
        finally:
            if logger is not None:
                logger.close()
        figures: Callable[..., object] | None = None
        if args.plot:
            from superposition.plots import draw_run

            figures = draw_run
        save_run(trained, out, overwrite=args.force, figures=figures)
    except KeyboardInterrupt:
        print_interrupted()
        return EXIT_INTERRUPTED
    print_summary(trained, out)
    return EXIT_OK


def print_summary(run: Any, out: Path) -> None:
    """One line on what was trained, then one per group: its best seed's loss and geometry."""
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
            f"{g:>5}  {values.density:>8g}  {values.importance_decay:>10g}  "
            f"{fmt(float(run.loss[k])):>10}  {k:>4}  {labels[g]}"
        )
    print(f"saved to {out}")


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
