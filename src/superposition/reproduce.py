"""Reproduce the paper's experiments by name: train the preset, save the run, draw its figures and
check its claims (layer 4: it draws, so it sits above the experiments).

Each experiment writes ``OUT/NAME/``, a complete run directory whose ``figures/`` holds PNG and SVG
files and whose ``claims.json`` says which of the paper's claims this run bears out. ``redraw``
rebuilds the figures and claims from the run directory alone, without training.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from superposition.errors import ConfigError
from superposition.experiments import EXPERIMENT_NAMES
from superposition.results import Claim, Run


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    module: ModuleType
    figures: dict[str, Callable[[Run], object]]


def _experiments() -> dict[str, Experiment]:
    from superposition.experiments import intro
    from superposition.plots import intro as intro_plots

    return {
        intro.NAME: Experiment(intro.NAME, intro.TITLE, intro, {"polygons": intro_plots.polygons}),
    }



def get(name: str) -> Experiment:
    if name not in EXPERIMENT_NAMES:
        raise ConfigError(
            f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENT_NAMES)}"
        )
    return _experiments()[name]


def reproduce(
    name: str, out: Path, *, quick: bool = False, force: bool = False, progress: bool | None = None
) -> tuple[Path, list[Claim]]:
    """Train experiment ``name``, save it as ``out/name`` with figures and claims; return both."""
    from superposition.store import is_run_dir, save_run
    from superposition.train import train

    exp = get(name)
    target = Path(out) / name
    if target.exists() and not force:
        what = "a run" if is_run_dir(target) else "other files"
        raise ConfigError(f"{target} already holds {what}; pass --force to replace it")
    run = train(exp.module.config(quick=quick), progress=progress)
    run.info["experiment"] = name
    run.info["quick"] = quick
    save_run(run, target, overwrite=force)
    return target, redraw(target, run)


def redraw(path: Path, run: Run | None = None) -> list[Claim]:
    """(Re)draw the figures and claims of an experiment's run directory, without training."""
    import matplotlib.pyplot as plt

    from superposition.store import load_run

    path = Path(path)
    run = run if run is not None else load_run(path)
    name = run.info.get("experiment")
    if name is None:
        raise ConfigError(f"{path} is a run but not one made by `superposition reproduce`")
    exp = get(str(name))
    figures = path / "figures"
    figures.mkdir(exist_ok=True)
    for fig_name, draw in exp.figures.items():
        fig = draw(run)
        for ext in ("png", "svg"):
            _atomic_savefig(fig, figures / f"{fig_name}.{ext}")
        plt.close(fig)  # type: ignore[arg-type]
    claims = exp.module.claims(run)
    tmp = path / ".claims.json.tmp"
    tmp.write_text(json.dumps([c.to_dict() for c in claims], indent=2) + "\n")
    os.replace(tmp, path / "claims.json")
    return claims


def _atomic_savefig(fig: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=150, format=path.suffix[1:])  # type: ignore[attr-defined]
    os.replace(tmp, path)
