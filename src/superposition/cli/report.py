"""``superposition report DIR``: the self-contained HTML report of a results folder, its figures
and claims redrawn from the run directories (no training)."""

import argparse
from pathlib import Path

from superposition.cli.common import EXIT_OK, Command
from superposition.errors import ConfigError
from superposition.files import check_destination

HELP = "Write the HTML report of a results folder (figures redrawn from the runs, no training)."
DESCRIPTION = (
    "Redraw every experiment's figures and claims from the run directories in DIR (no "
    "training) and write one self-contained HTML page, DIR/report.html: claims beside what "
    "was measured, interactive and static figures, and what is missing from DIR."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir", metavar="DIR", help="Results folder written by `superposition reproduce --out DIR`."
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="Where to write the HTML file (default: DIR/report.html, rewritten each time).",
    )
    p.add_argument(
        "--force", action="store_true", help="Replace a file that already exists at --out FILE."
    )
    p.add_argument(
        "--no-redraw",
        action="store_true",
        help="Show the figures and claims already in DIR instead of redrawing them from the runs.",
    )


def run(args: argparse.Namespace) -> int:
    from superposition import report

    out = Path(args.out) if args.out else None
    check_destination(out if out is not None else Path(args.dir) / report.REPORT_FILE)
    if out is not None and out.is_file() and not args.force:
        raise ConfigError(f"--out {out} already exists; pass --force to replace it")
    info = report.write_report(Path(args.dir), out=out, redraw=not args.no_redraw)
    for sec in info.sections:
        if sec.status == "ok":
            print(f"{sec.name}: {sec.holding} of {len(sec.claims)} claims hold")
        else:
            print(f"{sec.name}: {sec.status}. {sec.problem}")
    print(info.summary())
    print(f"report: {info.path}")
    return EXIT_OK


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
