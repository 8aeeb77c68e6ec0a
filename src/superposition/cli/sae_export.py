"""``superposition sae-export SRC --out DIR``: one trained SAE as a folder SAELens loads.

SRC is an SAE directory (``superposition sae RUN``; ``--instance`` picks the SAE) or an SAE
leaderboard (``superposition sae --bench``; ``--architecture`` and ``--target-l0`` pick it). The
folder is written by :func:`superposition.sae.export.export_saelens`. Bad input is one sentence on
stderr, exit status 2, nothing written.
"""

import argparse
from pathlib import Path
from typing import Any

from superposition.cli.common import EXIT_OK, Command
from superposition.errors import ConfigError, RunDirError
from superposition.files import check_destination
from superposition.sae.config import ARCHITECTURES

HELP = "Export one trained SAE to a folder that SAELens loads (SAE.load_from_disk)."
DESCRIPTION = (
    "Write one SAE of SRC as a SAELens folder (cfg.json and sae_weights.safetensors) that "
    "sae_lens.SAE.load_from_disk reads and whose encode and decode compute what ours do. SRC is "
    "an SAE directory written by `superposition sae RUN` (choose the SAE with --instance) or an "
    "SAE leaderboard written by `superposition sae --bench` (choose it with --architecture and "
    "--target-l0)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src",
        metavar="SRC",
        help="SAE directory (superposition sae RUN) or SAE leaderboard "
        "(superposition sae --bench).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="SAELens folder to write (new).")
    p.add_argument(
        "--instance",
        type=int,
        metavar="K",
        help='For an SAE directory: which SAE instance (default 0; the "instances" list of its '
        "config.json gives each one's n_latents, coefficient, k and seed).",
    )
    p.add_argument(
        "--architecture",
        metavar="A",
        help=f"For a leaderboard: the SAE's architecture ({', '.join(ARCHITECTURES)}).",
    )
    p.add_argument(
        "--target-l0",
        type=int,
        metavar="T",
        help="For a leaderboard: the target L0 the SAE was trained at.",
    )


def run(args: argparse.Namespace) -> int:
    src, out = Path(args.src), Path(args.out)
    if args.architecture is not None and args.architecture not in ARCHITECTURES:
        raise ConfigError(
            f"unknown architecture {args.architecture!r}; known: {', '.join(ARCHITECTURES)}"
        )
    check_destination(args.out)
    from superposition.sae.export import check_export_target

    check_export_target(out)  # before reading SRC
    if not src.exists():
        raise RunDirError(f"{src} does not exist")

    from superposition.sae.bench import RESULTS_FILE
    from superposition.sae.store import is_sae_dir
    from superposition.store import is_run_dir

    if is_sae_dir(src):
        what = from_sae_dir(src, out, args)
    elif (src / RESULTS_FILE).is_file():
        what = from_leaderboard(src, out, args)
    elif is_run_dir(src):
        raise RunDirError(
            f"{src} is a toy-model run, not an SAE directory; train SAEs on it with "
            "`superposition sae RUN --out DIR` and export those"
        )
    else:
        raise RunDirError(
            f"{src} is neither an SAE directory (superposition sae RUN --out DIR) nor an SAE "
            "leaderboard (superposition sae --bench SIZE --out DIR)"
        )
    print(f"wrote {what} to {out} in SAELens's format (cfg.json, sae_weights.safetensors)")
    print(f"load it with: sae_lens.SAE.load_from_disk({str(out)!r})")
    return EXIT_OK


def from_sae_dir(src: Path, out: Path, args: argparse.Namespace) -> str:
    """Export instance ``--instance`` of an SAE directory; what was written, in words."""
    if args.architecture is not None or args.target_l0 is not None:
        flag = "--architecture" if args.architecture is not None else "--target-l0"
        raise ConfigError(
            f"{flag} applies to a leaderboard; {src} is an SAE directory: choose with --instance"
        )
    from superposition.sae.export import export_saelens
    from superposition.sae.store import load_sae

    sae_run = load_sae(src)
    k = 0 if args.instance is None else args.instance
    n = len(sae_run.instances)
    if not 0 <= k < n:
        raise ConfigError(f"--instance {k} is out of range: {src} holds SAE instances 0..{n - 1}")
    inst, arch = sae_run.instances[k], sae_run.config.architecture
    export_saelens(arch, sae_run.params, k, inst.n_latents, out, k=inst.k)
    return f"the {arch} SAE instance {k} of {src} ({inst.n_latents} latents{_k(arch, inst.k)})"


def from_leaderboard(src: Path, out: Path, args: argparse.Namespace) -> str:
    """Export the ``--architecture`` SAE at ``--target-l0`` of a leaderboard; what was written."""
    if args.instance is not None:
        raise ConfigError(
            f"--instance applies to an SAE directory; {src} is an SAE leaderboard: choose with "
            "--architecture and --target-l0"
        )
    from superposition.sae.bench import load_bench, load_bench_params
    from superposition.sae.export import export_saelens

    result = load_bench(src)
    held: dict[str, list[int]] = {}
    for r in result.rows:
        held.setdefault(str(r.get("architecture")), []).append(int(r.get("target_l0", 0)))
    listing = "; ".join(f"{a} at {', '.join(str(t) for t in ts)}" for a, ts in held.items())
    if args.architecture is None or args.target_l0 is None:
        raise ConfigError(
            f"{src} is an SAE leaderboard: choose an SAE with --architecture and --target-l0 "
            f"(it holds {listing})"
        )
    rows = [
        r for r in result.rows
        if r.get("architecture") == args.architecture and r.get("target_l0") == args.target_l0
    ]  # fmt: skip
    if not rows:
        raise ConfigError(
            f"{src} has no {args.architecture} SAE at target L0 {args.target_l0}; it holds "
            f"{listing}"
        )
    row: dict[str, Any] = rows[0]
    params = load_bench_params(src, args.architecture)  # refuses a folder without weights
    arch, n_latents, k = args.architecture, int(row["n_latents"]), int(row["k"] or 0)
    export_saelens(arch, params, int(row["instance"]), n_latents, out, k=k)
    return (
        f"the {arch} SAE at target L0 {args.target_l0} of {src} ({n_latents} latents"
        f"{_k(arch, k)}, L0 {float(row['l0']):.1f})"
    )


def _k(architecture: str, k: int) -> str:
    return f", k = {k}" if architecture == "topk" else ""


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
