"""Reproduce the paper's experiments by name: train the presets, save the runs, draw the figures and
check the claims (layer 4: it draws, so it sits above the experiments).

Each experiment writes one folder, complete or absent (it is built under a hidden temporary name and
renamed when everything is in it)::

    OUT/NAME/
      experiment.json   name, title, quick or full, package version, the runs
      runs/RUN/         one run directory per trained config
      figures/          PNG and SVG of every figure
      claims.json       the paper's claims, what this run measured, whether each holds

:func:`redraw` rebuilds the figures and the claims from that folder alone, without training.

An experiment module (``superposition.experiments.NAME``) provides ``NAME``, ``TITLE``,
``configs(quick) -> dict[str, RunConfig]`` and ``claims(runs) -> list[Claim]``; its figures live in
``superposition.plots.NAME`` as ``FIGURES: dict[str, Callable[[dict[str, Run]], Figure]]``.
"""

import datetime
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from superposition import __version__, files
from superposition.errors import ConfigError, RunDirError
from superposition.experiments import EXPERIMENT_NAMES
from superposition.results import Claim, Run

EXPERIMENT_FILE = "experiment.json"
CLAIMS_FILE = "claims.json"


@dataclass(frozen=True)
class Experiment:
    name: str
    module: ModuleType
    figures: dict[str, Callable[[dict[str, Run]], Any]]

    @property
    def title(self) -> str:
        return str(self.module.TITLE)


def get(name: str) -> Experiment:
    """The experiment called ``name`` (ConfigError listing the known ones otherwise)."""
    if name not in EXPERIMENT_NAMES:
        raise ConfigError(
            f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENT_NAMES)}"
        )
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(f"superposition.experiments.{module_name}")
        plots = importlib.import_module(f"superposition.plots.{module_name}")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").endswith(module_name):
            raise
        raise ConfigError(f"experiment {name!r} is not available in this version yet") from None
    return Experiment(name, module, dict(plots.FIGURES))


def reproduce(
    name: str, out: Path, *, quick: bool = False, force: bool = False, progress: bool | None = None
) -> tuple[Path, list[Claim]]:
    """Train experiment ``name`` and write ``out/name`` (see the module docstring)."""
    from superposition.store import save_run
    from superposition.training import train

    exp = get(name)
    target = Path(out) / name
    check_target(target, force=force)
    configs = exp.module.configs(quick=quick)
    runs = {}
    for run_name, config in configs.items():
        run = train(config, progress=progress)
        run.info.update({"experiment": name, "run": run_name, "quick": quick})
        runs[run_name] = run
    with files.atomic_folder(target) as tmp:
        for run_name, run in runs.items():
            save_run(run, tmp / "runs" / run_name)
        meta = {
            "name": name,
            "title": exp.title,
            "quick": quick,
            "version": __version__,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "runs": list(runs),
        }
        files.write_json(tmp / EXPERIMENT_FILE, meta, atomic=False)
        claims = _draw(exp, runs, tmp)
    return target, claims


def load_runs(path: Path) -> tuple[Experiment, dict[str, Run]]:
    """The experiment and the runs of an experiment folder."""
    from superposition.store import load_run

    path = Path(path)
    meta_file = path / EXPERIMENT_FILE
    if not meta_file.is_file():
        raise RunDirError(f"{path} is not an experiment folder: it has no {EXPERIMENT_FILE}")
    meta = files.read_json(meta_file)
    try:
        names = [str(n) for n in meta["runs"]]
        exp = get(str(meta["name"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{meta_file} is not a valid experiment description ({exc})") from None
    for n in names:  # runs live in runs/: a path elsewhere is never followed
        if not files.is_plain_name(n):
            raise RunDirError(
                f"{meta_file} lists the run {n!r}; run names must be plain folder names inside "
                f"{path / 'runs'}"
            )
    return exp, {n: load_run(path / "runs" / n) for n in names}


def redraw(path: Path) -> list[Claim]:
    """(Re)draw the figures and claims of an experiment folder, without training."""
    exp, runs = load_runs(Path(path))
    return _draw(exp, runs, Path(path))


def _draw(exp: Experiment, runs: dict[str, Run], folder: Path) -> list[Claim]:
    import matplotlib.pyplot as plt

    from superposition.store import write_figure

    (folder / "figures").mkdir(exist_ok=True)
    for fig_name, draw in exp.figures.items():
        fig = draw(runs)

        def save(path: Path, fig: Any = fig) -> None:
            fig.savefig(path, dpi=150)

        for ext in ("png", "svg"):
            write_figure(folder, f"{fig_name}.{ext}", save)
        plt.close(fig)
    claims = exp.module.claims(runs)
    files.write_json(folder / CLAIMS_FILE, [c.to_dict() for c in claims])
    return list(claims)


def check_target(target: Path, *, force: bool) -> None:
    """Refuse to replace anything without ``force``, and never replace what we did not write."""
    if not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    ours = (target / EXPERIMENT_FILE).is_file()
    if not ours:
        raise ConfigError(
            f"{target} exists and is not a reproduced experiment; choose another --out"
        )
    if not force:
        raise ConfigError(f"{target} already holds this experiment's results; pass --force")
