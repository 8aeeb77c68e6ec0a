"""SynthSAEBench (Chanin and Garriga-Alonso 2026): SAE architectures compared at matched L0 on
synthetic activations whose features are known (:mod:`superposition.sae.bench`).

Unlike the paper's experiments this one trains SAEs, not toy models: it has no toy-run configs,
and ``build`` fills the experiment folder itself (``results.json``, ``table.md``,
``claims.json``, ``figures/``); ``redraw`` redraws the figures and claims from ``results.json``.
``--quick`` is the leaderboard's quick size, the full settings its standard size (4,096
features in 256 dimensions, SAEs of width 1,024).
"""

from pathlib import Path

from superposition.config import RunConfig
from superposition.results import Claim, Run

NAME = "sae-bench"
TITLE = "SAE architectures judged on ground truth"
SECTION = "SynthSAEBench, Table 2"


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """No toy runs: the SAEs train on a synthetic model (see :func:`build`)."""
    return {}


def claims(runs: dict[str, Run]) -> list[Claim]:
    """The claims live in the folder's ``claims.json`` (written by :func:`build`)."""
    return []


def build(folder: Path, *, quick: bool, progress: bool | None = None) -> list[Claim]:
    """Train the leaderboard (quick or standard size) and write it into ``folder``."""
    from superposition.plots.sae_bench import draw
    from superposition.sae.bench import fill_folder, run_bench

    result = run_bench("quick" if quick else "standard", progress=progress)
    return fill_folder(result, Path(folder), draw)


def redraw(folder: Path) -> list[Claim]:
    """Redraw the figures and claims from ``results.json``."""
    from superposition.plots.sae_bench import draw
    from superposition.sae.bench import fill_folder, load_bench

    return fill_folder(load_bench(Path(folder)), Path(folder), draw)
