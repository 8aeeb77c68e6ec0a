"""Every figure of a run or a sweep, written as PNG and SVG files with stable names.

A run (:func:`draw_run`; see :mod:`superposition.plots.runs`)::

    gram.png            W^T W and b of each group's best instance (Section 2)
    norms.png           ||W_i|| coloured by superposition (Section 2)
    dimensionality.png  feature dimensionalities against the group axis (Section 4)
    polygons.png        feature directions in the hidden plane, only when n_hidden == 2
    loss.png            training loss curves

A sweep (:func:`draw_sweep`; see :mod:`superposition.plots.sweeps`)::

    heatmap-<column>.png   each column of DEFAULT_COLUMNS over the first two varying axes
    phase-diagram.png      when the sweep varies density and relative_importance only (Section 3)

each with its ``.svg`` beside it. Every figure is drawn before anything is written, so a failure
writes nothing; each file is then written under a hidden temporary name and renamed into place, so
a file is complete or absent. Existing files of the same names are replaced.
"""

import io
import os
import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from superposition.errors import ConfigError, RunDirError
from superposition.plots.phase_change import phase_diagrams
from superposition.plots.runs import RUN_FIGURES
from superposition.plots.sweeps import DEFAULT_COLUMNS, heatmap
from superposition.results import Run
from superposition.sweep.folder import SWEEP_FILE, SweepResult

FORMATS = ("png", "svg")
DPI = 150
PathLike = str | os.PathLike[str]


def run_figure_names(run: Run) -> list[str]:
    """The figures :func:`draw_run` draws for this run (file names without the extension)."""
    return [name for name in RUN_FIGURES if name != "polygons" or run.config.model.n_hidden == 2]


def draw_run(run: Run, out_dir: PathLike) -> list[Path]:
    """Draw every figure of ``run`` into ``out_dir`` (created if missing); the paths written."""
    if not isinstance(run, Run):
        raise ConfigError(f"draw_run draws a Run, got {type(run).__name__}")
    figures: dict[str, Callable[[], Figure]] = {
        name: partial(RUN_FIGURES[name], run) for name in run_figure_names(run)
    }
    return _write(_render(figures), Path(out_dir))


def phase_diagram_applies(result: SweepResult) -> bool:
    """Whether a sweep gets a phase diagram: its only axes with more than one value are density
    and relative_importance (two values each at least), one group per point, n_features >= 2."""
    axes = {a.field: len(a.values) for a in result.sweep.axes}
    config = result.sweep.point_config(0)
    return (
        axes.get("density", 0) >= 2
        and axes.get("relative_importance", 0) >= 2
        and all(k <= 1 for f, k in axes.items() if f not in ("density", "relative_importance"))
        and config.n_groups == 1
        and config.data.n_features >= 2
    )


def sweep_figure_names(result: SweepResult) -> list[str]:
    """The figures :func:`draw_sweep` draws for this sweep (file names without the extension)."""
    names = [f"heatmap-{c}" for c in DEFAULT_COLUMNS]
    return names + (["phase-diagram"] if phase_diagram_applies(result) else [])


def draw_sweep(result: SweepResult, out_dir: PathLike) -> list[Path]:
    """Draw every figure of a finished sweep into ``out_dir`` (created if missing); the paths
    written."""
    if not isinstance(result, SweepResult):
        raise ConfigError(f"draw_sweep draws a SweepResult, got {type(result).__name__}")
    figures: dict[str, Callable[[], Figure]] = {
        f"heatmap-{c}": partial(heatmap, result, c) for c in DEFAULT_COLUMNS
    }
    if phase_diagram_applies(result):
        figures["phase-diagram"] = partial(phase_diagrams, result)
    return _write(_render(figures), Path(out_dir))


def draw(path: PathLike, out_dir: PathLike) -> list[Path]:
    """Draw the figures of a run directory (:func:`draw_run`) or of a sweep folder
    (:func:`draw_sweep`) found at ``path`` into ``out_dir``; RunDirError when it is neither."""
    from superposition.store import CONFIG_FILE, is_run_dir, load_run

    root = Path(path)
    if (root / SWEEP_FILE).is_file():
        return draw_sweep(SweepResult.load(root), out_dir)
    if is_run_dir(root) or (root / CONFIG_FILE).is_file():
        return draw_run(load_run(root), out_dir)  # an incomplete run: load_run says what lacks
    run_dir, sweep = f"a run directory (with {CONFIG_FILE})", f"a sweep folder (with {SWEEP_FILE})"
    if not root.exists():
        raise RunDirError(f"{root} does not exist; give {run_dir} or {sweep}")
    raise RunDirError(f"{root} is neither {run_dir} nor {sweep}")


def _render(figures: dict[str, Callable[[], Figure]]) -> dict[str, bytes]:
    """Each figure drawn, saved in every format in memory and closed: file name -> bytes."""
    out = {}
    for name, make in figures.items():
        fig = make()
        try:
            for ext in FORMATS:
                buf = io.BytesIO()
                # no date in the SVG, so that redrawing the same run gives the same file
                meta = {"Date": None} if ext == "svg" else {}
                fig.savefig(buf, format=ext, dpi=DPI, metadata=meta)
                out[f"{name}.{ext}"] = buf.getvalue()
        finally:
            plt.close(fig)
    return out


def _write(files: dict[str, bytes], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        target = out_dir / name
        tmp = out_dir / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(target)
    return written
