"""``superposition plot RUN|SWEEP --out DIR``: draw the figures of any run or sweep folder."""

import argparse
from pathlib import Path

from superposition.cli.common import EXIT_OK, Command
from superposition.files import check_destination

HELP = "Draw the figures of a run directory or a sweep folder as PNG and SVG."
DESCRIPTION = (
    "Draw the figures of a run directory (for the best instance of each group: W^T W with the "
    "bias, feature norms coloured by superposition, feature dimensionality, the polygons when "
    "n_hidden is 2, the loss curves) or of a sweep folder (a heatmap of results.csv columns over "
    "two axes, and the phase diagram with its theory where it applies) into --out, without "
    "retraining."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="RUN|SWEEP", help="A run directory or a sweep folder.")
    p.add_argument("--out", required=True, metavar="DIR", help="Folder to write the figures to.")


def check_out(out: Path) -> None:
    """Refuse a destination that is a file, before anything is drawn."""
    from superposition.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the figures")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_destination(out)
    check_out(out)

    from superposition.plots import draw  # matplotlib: only once the destination is known good

    written = draw(Path(args.folder), out)
    for path in written:
        print(path)
    return EXIT_OK


COMMAND = Command(help=HELP, add_arguments=add_arguments, run=run, description=DESCRIPTION)
