"""``python -m superposition``: the same command line as the ``superposition`` script."""

import sys

from superposition.cli import main

if __name__ == "__main__":
    sys.exit(main())
