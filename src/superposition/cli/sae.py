"""``superposition sae RUN --out DIR``: SAEs trained on a toy run's activations.

Every :class:`~superposition.sae.config.SAEConfig` field is a flag, generated from the dataclass
with the field's documentation as its help (the same spelling rules as ``superposition train``:
list-valued fields take comma-separated values, ``none`` for an optional field). Bad input is one
sentence on stderr, exit status 2, nothing written.
"""

import argparse
from pathlib import Path
from typing import Any

from superposition.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    add_logging,
    add_progress,
    check_logging,
    fmt,
    open_logging,
    print_interrupted,
    progress,
)
from superposition.cli.flags import add_dataclass_flags, dataclass_flags, dataclass_values
from superposition.errors import ConfigError, RunDirError
from superposition.files import check_destination
from superposition.sae.config import SAEConfig, check_options_apply

HELP = "Train sparse autoencoders on a toy run's hidden activations and score them."
DESCRIPTION = (
    "Train SAEs on the hidden activations of the toy-model run RUN (its best-of-N instance of "
    "each group, or --instance K) and score them against the true feature directions: MMCS, "
    "fraction recovered, L0, dead and dense latents, FVU and the toy model's loss with the "
    "reconstruction spliced in. Every combination of --n-latents, --l1-coefficient (or --k for "
    "topk) and --seeds is one SAE instance; all are trained at once. The SAE directory at --out "
    "holds config.json, weights.safetensors, metrics.json and figures/."
)
SECTION = "sae"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run", metavar="RUN", nargs="?", help="Toy-model run directory (superposition train)."
    )
    p.add_argument(
        "--bench",
        metavar="SIZE",
        choices=("quick", "standard", "full"),
        help="Instead of RUN: the SAE leaderboard. Every architecture at matched L0 on a "
        "standard synthetic model of SIZE (quick: 512 features in 64 dimensions, width 128; "
        "standard: 4096 in 256, width 1024; full: 16384 in 768, width 4096), scored against its "
        "known features; writes results.json, table.md, claims.json and figures/ to --out.",
    )
    p.add_argument(
        "--synthetic",
        metavar="FILE",
        help="With --bench: a TOML file whose keys (SyntheticConfig fields: n_features, "
        "n_hidden, density_profile, mean_active, correlation_rank, hierarchy_roots, parents, "
        "densities, magnitude, noise_std, seed, ...) replace those of the size's synthetic model.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="SAE directory to write.")
    p.add_argument("--force", action="store_true", help="Replace an SAE directory at --out.")
    add_progress(p)
    add_logging(p)
    add_dataclass_flags(p, SECTION, SAEConfig)


def config_from_args(args: argparse.Namespace) -> SAEConfig:
    """The SAE config: its defaults with the flags on top."""
    flags = dataclass_flags(SECTION, SAEConfig)
    values = dataclass_values(args, flags)
    spelled = {ff.name: ff.flag for ff in flags}
    check_options_apply(values, spell=spelled.__getitem__)
    return SAEConfig.from_dict(values, source="command line")


def run_bench(args: argparse.Namespace) -> int:
    """``--bench SIZE``: the leaderboard (:mod:`superposition.sae.bench`)."""
    flags = dataclass_flags(SECTION, SAEConfig)
    given = [ff.flag for ff in flags if ff.name in dataclass_values(args, flags)]
    if args.run is not None or given:
        what = args.run if args.run is not None else given[0]
        raise ConfigError(
            f"--bench trains its own preset SAEs on a synthetic model; leave out {what}"
        )
    check_destination(args.out)
    from superposition.files import read_toml
    from superposition.sae.bench import (
        check_bench_target,
        run_bench,
        synthetic_override,
        table,
        write_bench,
    )

    synthetic = None
    if args.synthetic is not None:
        values = read_toml(args.synthetic, "synthetic model file")
        synthetic = synthetic_override(args.bench, values, f"synthetic model file {args.synthetic}")
    out = Path(args.out)
    check_bench_target(out, overwrite=args.force)

    def draw(result: Any, folder: Path) -> None:
        from superposition.plots.sae_bench import draw

        draw(result, folder)

    def done(arch: str, seconds: float) -> None:
        print(f"  {arch}: {seconds:.0f} s", flush=True)

    try:
        result = run_bench(
            args.bench, synthetic=synthetic, progress=progress(args), on_done=done
        )
        write_bench(result, out, overwrite=args.force, figures=draw)
    except KeyboardInterrupt:
        print_interrupted()
        return EXIT_INTERRUPTED
    print(table(result), end="")
    print(f"saved to {out}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.bench is not None:
        return run_bench(args)
    if args.synthetic is not None:
        raise ConfigError("--synthetic applies to --bench only")
    if args.run is None:
        raise ConfigError("give a toy-model run directory RUN, or --bench SIZE")
    config = config_from_args(args)  # bad values fail here, before torch is imported
    check_destination(args.out)
    source, out = Path(args.run), Path(args.out)

    from superposition.sae.store import check_sae_target, is_sae_dir, save_sae
    from superposition.sae.train import train_sae
    from superposition.store import load_run

    if is_sae_dir(source):
        raise RunDirError(
            f"{source} is an SAE directory, not a toy-model run; pass the run it was trained on"
        )
    if source.is_dir() and not (source / "config.json").is_file():
        raise RunDirError(f"{source} is not a toy-model run directory (it has no config.json)")
    toy = load_run(source)
    check_sae_target(out, overwrite=args.force, hint="--force")
    check_logging(args)
    figures: list[str] = []

    def draw(sae_run: Any, folder: Path) -> None:
        from superposition.plots.sae import draw_sae

        figures.extend(p.name for p in draw_sae(sae_run, folder))

    logger = open_logging(args, out.name, config.to_dict())
    try:
        try:
            sae_run = train_sae(
                toy, config, source_path=str(source), progress=progress(args), logger=logger
            )
        finally:
            if logger is not None:
                logger.close()
        # the figures are drawn inside the folder before it is renamed into place: killed at any
        # moment, the command leaves a complete SAE directory (figures included) or none
        save_sae(sae_run, out, overwrite=args.force, figures=draw)
    except KeyboardInterrupt:
        print_interrupted()
        return EXIT_INTERRUPTED
    print_summary(sae_run, out, figures)
    return EXIT_OK


def print_summary(sae_run: Any, out: Path, figures: list[str]) -> None:
    """One line on what was trained, then one per SAE group: MMCS and fraction recovered."""
    from superposition.sae.store import metrics_dict

    cfg, src = sae_run.config, sae_run.source_config
    secs = sae_run.info.get("seconds")
    print(
        f"trained {sae_run.n_instances} {cfg.architecture} SAE instance(s) on the {src.model.kind} "
        f"toy model (n_features={src.data.n_features}, n_hidden={src.model.n_hidden}), toy "
        f"instance(s) {sae_run.toy_instances}, {cfg.steps} steps"
        + (f" in {secs:g} s" if isinstance(secs, int | float) else "")
    )
    sweep = "k" if cfg.architecture == "topk" else "lambda"
    header = ("toy", "latents", sweep, "MMCS mean", "MMCS max", "recov. mean", "recov. max")
    widths = (4, 7, 8, 9, 8, 11, 10)
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for g in metrics_dict(sae_run)["groups"]:
        value = g["k"] if cfg.architecture == "topk" else g["coefficient"]
        cells = (
            str(g["toy_instance"]), str(g["n_latents"]), f"{value:g}", fmt(g["mmcs_mean"], 3),
            fmt(g["mmcs_max"], 3), fmt(g["recovered_fraction_mean"], 3),
            fmt(g["recovered_fraction_max"], 3),
        )  # fmt: skip
        print("  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    print(f"saved to {out}" + (f" (figures: {', '.join(figures)})" if figures else ""))


COMMAND = Command(HELP, add_arguments, run, DESCRIPTION)
