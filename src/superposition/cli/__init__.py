"""The command line: ``superposition COMMAND``, one module per command (``train``, ``inspect``,
``plot``, ``reproduce``, ``report``, ``sweep``, ``sae``, ``sae-export``, ``explore``,
``warmup``).

Every config field becomes a flag, generated from the dataclasses with the field's documentation
as its help, so the two cannot drift apart. Bad input (a :class:`ConfigError` or
:class:`RunDirError`, a missing or malformed TOML file, a value that is not a number) is printed as
``error: <sentence>`` on stderr with exit status 2, never a traceback, and nothing is written.

One module per command (``superposition.cli.train`` ...) defines ``COMMAND``, a
:class:`~superposition.cli.common.Command`: its help, how it adds its arguments and what it runs.
Command modules import only the shared modules (:mod:`~superposition.cli.common`,
:mod:`~superposition.cli.flags`) and the library, never each other. A new command is a new module
and one line in :data:`COMMANDS`. Each command imports torch and the plotting libraries only when it
runs, so ``superposition --help`` stays fast.
"""

import argparse
import sys
from collections.abc import Sequence

from superposition import __version__
from superposition.cli import (
    explore,
    inspect,
    plot,
    report,
    reproduce,
    sae,
    sae_export,
    sweep,
    train,
    warmup,
)
from superposition.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    print_error,
    print_interrupted,
)
from superposition.errors import ConfigError

COMMANDS: dict[str, Command] = {
    "train": train.COMMAND,
    "inspect": inspect.COMMAND,
    "plot": plot.COMMAND,
    "reproduce": reproduce.COMMAND,
    "report": report.COMMAND,
    "sweep": sweep.COMMAND,
    "sae": sae.COMMAND,
    "sae-export": sae_export.COMMAND,
    "explore": explore.COMMAND,
    "warmup": warmup.COMMAND,
}
"""The subcommands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``superposition`` parser with one subparser per entry of :data:`COMMANDS`."""
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
        print_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_interrupted("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `superposition inspect RUN --json | head`
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
