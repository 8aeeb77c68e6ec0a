"""What every command shares: the :class:`Command` record, exit statuses, the progress flag,
number formatting and the one-sentence error line.

Nothing here imports a command module, torch or a plotting library.
"""

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

NOTHING_SAVED = "interrupted: training stopped, nothing was saved"
"""What a command that trains says on stderr when Ctrl-C stops it before anything was written."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line help, how it adds its arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


def add_progress(p: argparse.ArgumentParser) -> None:
    """The ``--no-progress`` flag of the commands that train."""
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="No progress bar (default: shown on stderr when it is a terminal).",
    )


def progress(args: argparse.Namespace) -> bool | None:
    """The trainers' ``progress`` argument: off with ``--no-progress``, else their own choice
    (shown when stderr is a terminal)."""
    return False if args.no_progress else None


def fmt(x: float | None, digits: int = 4) -> str:
    """A number in ``digits`` significant digits; ``nan`` for None, NaN and infinities."""
    if x is None or not math.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}"


def print_error(message: object) -> None:
    """Bad input, as the command line reports it: one ``error:`` line on stderr."""
    print(f"error: {message}", file=sys.stderr)


def print_interrupted(message: str = NOTHING_SAVED) -> None:
    """What a command says on stderr when Ctrl-C stops it."""
    print(message, file=sys.stderr)
