"""``superposition explore``: serve the explorer's page on 127.0.0.1 until Ctrl-C.

The options are checked before anything is bound or trained; a port in use is one sentence on
stderr and exit status 2. Nothing is written until the page saves a run (under ``--out-dir``).
The server and torch are imported only when the command runs, so ``--help`` stays fast.
"""

import argparse
import math
import threading
from pathlib import Path

from superposition.cli.common import EXIT_OK, Command, print_interrupted
from superposition.errors import ConfigError

HELP = "Serve a local page to train small toy models and watch them learn."
DESCRIPTION = (
    "Serve a page on http://127.0.0.1:PORT/ (this machine only) to pick n_features, n_hidden, "
    "density, importance decay, correlation, model kind and seeds, train on the CPU and watch "
    "W^T W, the feature geometry and the loss update while it trains. The page's Save button "
    "writes the trained run as a run directory under --out-dir. Stop with Ctrl-C."
)
MAX_TIME_LIMIT = 3600.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="Port on 127.0.0.1 to serve on (default: 0, a free port, printed at start).",
    )
    p.add_argument(
        "--out-dir",
        default="explore-runs",
        metavar="DIR",
        help="Folder where saved runs go, one run directory each (default: ./explore-runs; "
        "created on the first save).",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="Stop any training that runs longer than this (default: 120; at most 3600).",
    )
    p.add_argument("--open", action="store_true", help="Open the page in the default web browser.")


def check_arguments(args: argparse.Namespace) -> Path:
    """Refuse bad options with one sentence; return the output folder."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535] (0: a free port), got {args.port}")
    if not (math.isfinite(args.time_limit) and 0 < args.time_limit <= MAX_TIME_LIMIT):
        raise ConfigError(
            f"--time-limit must be in (0, {MAX_TIME_LIMIT:g}] seconds, got {args.time_limit:g}"
        )
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is a file; give a folder")
    return out_dir


def run(args: argparse.Namespace) -> int:
    from superposition.explore.server import start_server

    out_dir = check_arguments(args)
    server = start_server(args.port, out_dir, time_limit=args.time_limit)
    print(f"superposition explore: serving on {server.url} (Ctrl-C to stop)", flush=True)
    print(f"saved runs go to {out_dir.resolve()}", flush=True)
    if args.open:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print_interrupted("superposition explore: stopped")
    finally:
        server.trainer.stop(": the explorer was shut down")
        server.server_close()
        server.trainer.wait(10.0)
    return EXIT_OK


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
