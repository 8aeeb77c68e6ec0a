"""``superposition sweep SWEEP.toml --out DIR``: run a sweep file, locally or on Ray.

A sweep file is a run config (``[data]``, ``[model]``, ``[train]``: the base of every point) plus an
``[axes]`` table naming the config fields that vary, each a list, ``{linspace = [start, stop,
num]}`` or ``{logspace = [start, stop, num]}`` (powers of ten, as numpy's). The points are the
product of the axes, the first varying slowest. Flags such as ``--steps`` override the base.

Torch, the sweep engine and Ray are imported only when the command runs, so ``--help`` stays fast.
"""

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from superposition.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    add_logging,
    add_progress,
    check_logging,
    open_logging,
    print_interrupted,
    progress,
)
from superposition.cli.flags import (
    add_config_flags,
    flag_values,
    merge_flags,
    parse_int,
    read_toml,
)
from superposition.errors import ConfigError
from superposition.files import check_destination

HELP = "Run a sweep file: a labelled grid of configs, trained in a few batched chunks."
EXAMPLE = """\
example SWEEP.toml (Section 3's phase diagram):

  [data]
  n_features = 2
  [model]
  n_hidden = 1
  [train]
  instances = 3                                   # seeds per point (best-of-N)
  [axes]
  density = {logspace = [0, -2, 40]}              # 1 ... 0.01
  relative_importance = {logspace = [-1, 1, 40]}  # 0.1 ... 10

Writes DIR/sweep.json, DIR/points.safetensors (every point's weights and histories),
DIR/metrics.json (every seed's losses and geometry) and DIR/results.csv (one row per point: axis
values, best and mean loss, the best seed's norms, dimensionalities, superposition and geometry);
--layout points writes one run directory per point, DIR/points/NNNN/, instead of the first two.
Interrupted? Run the same command again: finished points are kept.
"""
DESCRIPTION = (
    "Train every point of a sweep file and write DIR/results.csv and every point's weights, in "
    "one file or (--layout points) one run directory per point. Points that fit together train "
    "as one batched training; a rerun of the same command resumes an interrupted sweep. "
    "--backend ray runs the chunks as Ray tasks (pip install 'toy-superposition[ray]'); their "
    "results come back through Ray, so the cluster needs no shared filesystem."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLE
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("sweep", metavar="SWEEP.toml", help="Sweep file: [data] [model] [train] [axes].")
    p.add_argument("--out", required=True, metavar="DIR", help="Sweep folder to write or resume.")
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="Where chunks train: 'local' (this process, default) or 'ray' (Ray tasks).",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to use (host:port, ray://host:port or auto); default: start a local one.",
    )
    p.add_argument(
        "--chunk-instances",
        metavar="N",
        type=positive_int,
        help="At most N instances per chunk (default: as many as the memory budget allows).",
    )
    p.add_argument(
        "--layout",
        choices=("compact", "points"),
        default=None,
        help="How DIR keeps the points: 'compact' (all in one file; the default for a new DIR) or "
        "'points' (a run directory each). A sweep being resumed keeps its own.",
    )
    p.add_argument(
        "--force", action="store_true", help="Replace a different sweep already at --out."
    )
    p.add_argument(
        "--plot",
        action="store_true",
        help="Draw the sweep's figures into DIR/figures (PNG, SVG) when it is complete.",
    )
    add_progress(p)
    add_logging(p)
    add_config_flags(p)


def positive_int(text: str) -> int:
    """``--chunk-instances``'s value: an integer >= 1 (argparse reports a refusal)."""
    value = parse_int("--chunk-instances", text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def sweep_from_args(args: argparse.Namespace) -> Any:
    """The sweep file with the base-config flags on top."""
    from superposition.sweep import SweepConfig

    path = Path(args.sweep)
    raw = read_toml(path)
    flags = flag_values(args)
    merged = merge_flags(raw, flags, str(path))
    sweep = SweepConfig.from_toml_dict(merged, source=str(path))
    given = {name for values in flags.values() for name in values}
    for name in sweep.names:
        if name in given:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} sets {name}, which is an axis of {path}; change the axis")
    return sweep


def run(args: argparse.Namespace) -> int:
    sweep = sweep_from_args(args)  # bad input fails here, before anything is written
    check_destination(args.out)
    from superposition.distributed import backend as make_backend
    from superposition.sweep import done_points, run_sweep

    if args.log is not None and args.backend != "local":
        raise ConfigError(
            f"--log watches training in this process, so it needs --backend local, "
            f"not {args.backend!r}"
        )
    check_logging(args)
    backend = make_backend(args.backend, address=args.address)
    out = Path(args.out)
    logger = open_logging(args, out.name, sweep.to_dict())
    try:
        try:
            result = run_sweep(
                sweep,
                out,
                backend=backend,
                progress=progress(args),
                force=args.force,
                max_chunk_instances=args.chunk_instances,
                layout=args.layout,
                logger=logger,
            )
        finally:
            if logger is not None:
                logger.close()
    except KeyboardInterrupt:
        done = len(done_points(out, sweep)) if (out / "sweep.json").is_file() else 0
        print_interrupted(
            f"interrupted: {done} of {sweep.n_points} points are finished and kept in {out}; "
            "run the same command again to train the rest"
        )
        return EXIT_INTERRUPTED
    print_summary(result)
    if args.plot:
        from superposition.plots import draw_sweep

        for path in draw_sweep(result, out / "figures"):
            print(path)
    return EXIT_OK


def print_summary(result: Any) -> None:
    """The sweep, how it was trained, the geometries found and where the results are."""
    sweep, info = result.sweep, result.info
    seeds = sweep.base.train.instances
    print(
        f"sweep {sweep.describe()}, {seeds} seed(s) each ({sweep.n_instances} instances), "
        f"id {sweep.sweep_id}"
    )
    kept = f"; {info['kept_points']} kept from an earlier run" if info["kept_points"] else ""
    print(
        f"trained {info['trained_points']} point(s) in {info['chunks']} chunk(s) on the "
        f"{info['backend']} backend in {info['seconds']:g} s{kept}"
    )
    labels = Counter(row["geometry"] for row in result.table())
    shown = ", ".join(f"{label} ({n})" for label, n in labels.most_common(6))
    print(f"geometry of the best seeds: {shown}{' ...' if len(labels) > 6 else ''}")
    print(f"results: {result.path / 'results.csv'} (one row per point)")
    if result.layout == "points":
        print(f"runs: {result.path / 'points'}/NNNN (one run directory per point)")
    else:
        print(
            f"runs: {result.path / 'points.safetensors'} (every point; SweepResult.load reads it)"
        )


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
