"""What every command shares: the :class:`Command` record, exit statuses, the progress flag,
number formatting and the one-sentence error line.

Nothing here imports a command module, torch or a plotting library.
"""

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def add_logging(p: argparse.ArgumentParser) -> None:
    """The ``--log`` and ``--log-dir`` flags of the commands that train."""
    p.add_argument(
        "--log",
        choices=("wandb", "tensorboard"),
        help="Send each group's loss and geometry to Weights & Biases or TensorBoard as it trains "
        "(needs the extra of the same name).",
    )
    p.add_argument(
        "--log-dir",
        default="logs",
        metavar="DIR",
        help="Where the logger writes: TensorBoard's event files in DIR/NAME (NAME: --out's "
        "folder name), W&B's files in DIR/wandb (default: logs).",
    )


def check_logging(args: argparse.Namespace) -> None:
    """Refuse ``--log`` whose extra is missing (a ConfigError naming it), before any training."""
    if args.log is not None:
        from superposition.loggers import check_backend

        check_backend(args.log)


def open_logging(args: argparse.Namespace, name: str, config: dict[str, Any]) -> Any:
    """The logger ``--log`` asks for (None without it)."""
    if args.log is None:
        return None
    from superposition.loggers import open_logger

    return open_logger(args.log, log_dir=args.log_dir, name=name, config=config)
