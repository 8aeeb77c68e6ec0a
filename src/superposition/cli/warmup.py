"""``superposition warmup``: compile the CPU kernels now, once per install, instead of during the
first training (see :mod:`superposition.warmup`)."""

import argparse

from superposition.cli.common import EXIT_OK, Command

HELP = "Compile the CPU kernels ahead of time (once per install; later runs load them)."
DESCRIPTION = (
    "numba compiles the CPU kernels the first time they run (up to a minute) and caches them on "
    "disk. This runs each kernel once on tiny models so that the first real training, the "
    "explorer's first Train included, starts at once. With a warm cache it takes a second or two."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from superposition.warmup import main

    main()
    return EXIT_OK


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
