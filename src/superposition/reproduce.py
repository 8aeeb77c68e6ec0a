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

import contextlib
import datetime
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from superposition import __version__, files
from superposition.config import RunConfig
from superposition.errors import ConfigError, RunDirError
from superposition.experiments import EXPERIMENT_NAMES
from superposition.results import Claim, Run
from superposition.workers import run_jobs, usable_cpus

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
    name: str,
    out: Path,
    *,
    quick: bool = False,
    force: bool = False,
    progress: bool | None = None,
    workers: int | None = 1,
    size: str | None = None,
) -> tuple[Path, list[Claim]]:
    """Train experiment ``name`` and write ``out/name`` (see the module docstring); ``workers``
    and ``size`` as in :func:`reproduce_many`."""
    done = reproduce_many(
        [name], out, quick=quick, force=force, progress=progress, workers=workers, size=size
    )
    return done[name]


def reproduce_many(
    names: Sequence[str],
    out: Path,
    *,
    quick: bool = False,
    force: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
    on_done: Callable[[str, Path, list[Claim]], None] | None = None,
    size: str | None = None,
) -> dict[str, tuple[Path, list[Claim]]]:
    """Train the experiments ``names`` and write ``out/NAME`` for each; return each one's folder
    and claims, and call ``on_done(name, folder, claims)`` as each is written.

    Every target is checked before anything is trained. With ``workers`` > 1 the runs train side
    by side in that many single-threaded processes, the longest (by the steps' cost model) first,
    and each experiment is written as soon as its last run is done; ``None`` means one process
    per CPU core, or 1 when the runs would train on CUDA. The weights do not depend on it: the
    same configs give the same batches and the CPU kernels' sums do not depend on the thread count.
    An interrupt or error stops every worker; experiments already written stay, the others leave
    nothing behind.

    ``size`` picks one of the sizes of an experiment that builds its own folder and has several
    sizes (its module's ``build`` and ``SIZES``: sae-bench's quick, standard and full) instead of
    what ``quick`` picks; it is refused for any other experiment and together with ``quick``.
    """
    from superposition.training import resolve_device

    out = Path(out)
    experiments = [get(n) for n in names]
    if size is not None:
        check_size(experiments, size, quick=quick)
    for exp in experiments:
        check_target(out / exp.name, force=force)
    built = [exp for exp in experiments if hasattr(exp.module, "build")]
    experiments = [exp for exp in experiments if exp not in built]
    configs = {exp.name: exp.module.configs(quick=quick) for exp in experiments}
    if workers is None:
        on_cuda = any(
            resolve_device(c.train.device).type == "cuda"
            for runs in configs.values()
            for c in runs.values()
        )
        workers = 1 if on_cuda else usable_cpus()
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    done: dict[str, tuple[Path, list[Claim]]] = {}

    def announce(exp: Experiment, claims: list[Claim]) -> None:
        done[exp.name] = (out / exp.name, claims)
        if on_done is not None:
            on_done(exp.name, *done[exp.name])

    for exp in built:  # it trains something other than toy runs: its record feeds the figures
        with files.atomic_folder(out / exp.name) as tmp:
            sized = {} if size is None else {"size": size}
            record = exp.module.build(tmp, quick=quick, progress=progress, **sized)
            _write_meta(exp, [], tmp, quick, **sized)
            claims = _draw(exp, record, tmp)
        announce(exp, claims)
    if not experiments:
        return done
    if workers == 1 or sum(len(c) for c in configs.values()) == 1:
        _train_here(experiments, configs, out, quick, progress, announce)
    else:
        _train_in_workers(experiments, configs, out, quick, progress, workers, announce)
    return done


def _train_here(
    experiments: Sequence[Experiment],
    configs: dict[str, dict[str, RunConfig]],
    out: Path,
    quick: bool,
    progress: bool | None,
    announce: Callable[[Experiment, list[Claim]], None],
) -> None:
    from superposition.training import train

    for exp in experiments:
        runs = {}
        for run_name, config in configs[exp.name].items():
            runs[run_name] = train(config, progress=progress)
            runs[run_name].info.update({"experiment": exp.name, "run": run_name, "quick": quick})
        with files.atomic_folder(out / exp.name) as tmp:
            claims = _write(exp, runs, tmp, quick)
        announce(exp, claims)


def _train_in_workers(
    experiments: Sequence[Experiment],
    configs: dict[str, dict[str, RunConfig]],
    out: Path,
    quick: bool,
    progress: bool | None,
    workers: int,
    announce: Callable[[Experiment, list[Claim]], None],
) -> None:
    from superposition.store import load_run
    from superposition.training import estimated_seconds, progress_bar

    # each experiment's folder is filled under its hidden temporary name: the workers save their
    # runs into it, and it is renamed into place once the last run is in and the figures drawn
    folders = {exp.name: files.atomic_folder(out / exp.name) for exp in experiments}
    tmps: dict[str, Path] = {}
    waiting = {exp.name: set(configs[exp.name]) for exp in experiments}
    by_name = {exp.name: exp for exp in experiments}
    jobs = [
        (name, run_name, quick, str(Path("runs") / run_name))
        for name, runs in configs.items()
        for run_name in runs
    ]
    cost = {job: estimated_seconds([configs[job[0]][job[1]]]) for job in jobs}
    jobs.sort(key=lambda job: -cost[job])
    bar = progress_bar(len(jobs), "runs", progress)
    try:
        for name, folder in folders.items():
            tmps[name] = folder.__enter__()
        jobs = [(n, r, q, str(tmps[n] / sub)) for n, r, q, sub in jobs]

        def on_run(k: int) -> None:
            name, run_name = jobs[k][0], jobs[k][1]
            if bar is not None:
                bar.update(1)
            waiting[name].discard(run_name)
            if waiting[name]:
                return
            runs = {r: load_run(tmps[name] / "runs" / r) for r in configs[name]}
            claims = _write(by_name[name], runs, tmps[name], quick)
            folders.pop(name).__exit__(None, None, None)
            announce(by_name[name], claims)

        threads = max(1, usable_cpus() // workers)
        run_jobs(
            "superposition.reproduce:train_job",
            jobs,
            workers=workers,
            threads=threads,
            on_done=on_run,
        )
    except BaseException as exc:
        for folder in folders.values():  # removes the temporary folders of unfinished experiments
            with contextlib.suppress(BaseException):
                folder.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        if bar is not None:
            bar.close()


def train_job(name: str, run_name: str, quick: bool, path: str) -> None:
    """Train run ``run_name`` of experiment ``name`` and save it at ``path`` (a worker's job)."""
    from superposition.store import save_run
    from superposition.training import train

    run = train(get(name).module.configs(quick=quick)[run_name], progress=False)
    run.info.update({"experiment": name, "run": run_name, "quick": quick})
    save_run(run, path)


def _write(exp: Experiment, runs: dict[str, Run], folder: Path, quick: bool) -> list[Claim]:
    from superposition.store import save_run

    for run_name, run in runs.items():
        if not (folder / "runs" / run_name).is_dir():
            save_run(run, folder / "runs" / run_name)
    _write_meta(exp, list(runs), folder, quick)
    return _draw(exp, runs, folder)


def check_size(experiments: Sequence[Experiment], size: str, *, quick: bool) -> None:
    """Refuse ``size`` unless every experiment has it among its ``SIZES``, and with ``quick``."""
    if quick:
        raise ConfigError("give --quick or --size, not both (--size quick is the quick run)")
    for exp in experiments:
        if not _sized(exp):
            raise ConfigError(f"experiment {exp.name!r} has no sizes; --size applies to "
                              f"{', '.join(sized_experiments())}")  # fmt: skip
        sizes = exp.module.SIZES
        if size not in sizes:
            raise ConfigError(
                f"size must be one of {', '.join(sizes)} for {exp.name}; got {size!r}"
            )


def sized_experiments() -> list[str]:
    """The experiments that have several sizes (a ``build`` and ``SIZES`` in their module)."""
    from superposition.experiments import EXPERIMENT_NAMES

    return [n for n in EXPERIMENT_NAMES if _sized(get(n))]


def _sized(exp: Experiment) -> bool:
    return hasattr(exp.module, "build") and hasattr(exp.module, "SIZES")


def _write_meta(
    exp: Experiment, run_names: list[str], folder: Path, quick: bool, size: str | None = None
) -> None:
    meta = {
        "name": exp.name,
        "title": exp.title,
        "quick": quick,
        **({} if size is None else {"size": size}),
        "version": __version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "runs": run_names,
    }
    files.write_json(folder / EXPERIMENT_FILE, meta, atomic=False)


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
    if hasattr(exp.module, "load"):  # an experiment with its own record instead of runs
        return _draw(exp, exp.module.load(Path(path)), Path(path))
    return _draw(exp, runs, Path(path))


def _draw(exp: Experiment, runs: Any, folder: Path) -> list[Claim]:
    """Draw the figures and check the claims of ``runs`` (a dict of runs, or the record of an
    experiment with its own ``build``/``load``) into ``folder``."""
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
