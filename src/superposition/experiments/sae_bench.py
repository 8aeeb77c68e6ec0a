"""SynthSAEBench (Chanin and Garriga-Alonso 2026): SAE architectures compared at matched L0 on
synthetic activations whose features are known (:mod:`superposition.sae.bench`).

Unlike the paper's experiments this one trains SAEs, not toy models: it has no toy-run configs.
:func:`build` trains the leaderboard and writes ``results.json`` and ``table.md`` into the
experiment folder and returns the record; :func:`load` reads it back; the figures
(:mod:`superposition.plots.sae_bench`) and :func:`claims` take that record. ``--quick`` is the
leaderboard's quick size, the full settings its standard size (4,096 features in 256
dimensions, SAEs of width 1,024); ``--size full`` is SynthSAEBench-16k's scale (16,384 features
in 768 dimensions, width 4,096: a GPU's work).
"""

from pathlib import Path
from typing import Any

from superposition.config import RunConfig
from superposition.results import Claim
from superposition.sae import bench

NAME = "sae-bench"
TITLE = "SAE architectures judged on ground truth"
SECTION = "SynthSAEBench, Table 2"
SIZES = tuple(bench.SIZES)
"""The sizes ``reproduce sae-bench --size`` accepts."""


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """No toy runs: the SAEs train on a synthetic model (see :func:`build`)."""
    return {}


def build(
    folder: Path, *, quick: bool, progress: bool | None = None, size: str | None = None
) -> bench.BenchResult:
    """Train the leaderboard (``size``; by default quick or standard, as ``quick`` says) and
    write its results into ``folder``."""
    if size is None:
        size = "quick" if quick else "standard"
    result = bench.run_bench(size, progress=progress)
    bench.fill_folder(result, Path(folder))
    return result


def load(folder: Path) -> bench.BenchResult:
    """The leaderboard written by :func:`build`."""
    return bench.load_bench(Path(folder))


def claims(record: Any) -> list[Claim]:
    """The published orderings checked on the leaderboard (:func:`superposition.sae.bench.claims`);
    nothing for anything but a leaderboard record."""
    return bench.claims(record) if isinstance(record, bench.BenchResult) else []
