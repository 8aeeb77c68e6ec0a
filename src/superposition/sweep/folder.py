"""A sweep's folder on disk, its table (``results.csv``) and :class:`SweepResult`.

Two layouts (:data:`LAYOUTS`), recorded in ``sweep.json``. The compact one, the default, keeps every
point's tensors in one file (:mod:`superposition.sweep.packed`)::

    DIR/sweep.json           the sweep (base config and axes), its id, the package version, the
                             points, the layout
    DIR/points.safetensors   every point's tensors; DIR/parts/ while the sweep runs
    DIR/metrics.json         each point's metrics
    DIR/results.csv          one row per point: axis values and metrics of the best seed (see
                             :func:`point_row`); written at the end, rebuilt when missing

The points layout writes one run directory per point (superposition.store), which any tool that
reads a run reads::

    DIR/sweep.json
    DIR/points/NNNN/      one complete run directory per point, atomic
    DIR/results.csv

A point is done when its batch is on disk (compact) or when its run directory is complete and holds
its own config (points).
"""

import csv
import datetime
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from superposition import __version__, _html, files
from superposition.config import SECTIONS, RunConfig
from superposition.errors import ConfigError, RunDirError, install_hint
from superposition.results import Run
from superposition.sweep.grid import Axis, PathLike, SweepConfig, plain

SWEEP_SCHEMA_VERSIONS = {"points": 1, "compact": 2}
"""The schema version of ``sweep.json`` per layout: the compact layout came later, so versions of
the package that know only run directories refuse its folders rather than misread them."""
SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"
TABLE_FILE = "results.csv"
LAYOUTS = ("compact", "points")
"""How a sweep folder keeps its points: all in one file, or a run directory each."""
DEFAULT_LAYOUT = "compact"


def check_layout(layout: object) -> str:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    return str(layout)


# --------------------------------------------------------------------------------------------------
# the output folder


def point_dir(out: PathLike, sweep: SweepConfig, index: int) -> Path:
    width = max(4, len(str(sweep.n_points - 1)))
    return Path(out) / POINTS_DIR / f"{index:0{width}d}"


def point_done(out: PathLike, sweep: SweepConfig, index: int) -> bool:
    """Whether point ``index`` has a complete run directory holding its own config."""
    from superposition.store import is_run_dir, read_config_json

    path = point_dir(out, sweep, index)
    if not is_run_dir(path):
        return False
    try:
        raw = read_config_json(path)
        config = RunConfig.from_dict({k: raw[k] for k in SECTIONS if k in raw})
    except (ConfigError, KeyError):
        return False
    return config == sweep.point_config(index)


def done_points(out: PathLike, sweep: SweepConfig) -> list[int]:
    """The points of ``sweep`` already on disk in the sweep folder ``out``, in its layout."""
    from superposition.sweep import packed

    if read_layout(out) == "compact":
        return packed.done_points(out, sweep)
    return [i for i in range(sweep.n_points) if point_done(out, sweep, i)]


def read_sweep_file(out: PathLike) -> dict[str, Any]:
    """``DIR/sweep.json``, checked for its schema, its id and its layout (``raw["layout"]``
    is set: sweep folders written before the compact layout are of the points layout)."""
    file = Path(out) / SWEEP_FILE
    raw = files.read_json(file)
    versions = SWEEP_SCHEMA_VERSIONS
    if not isinstance(raw, dict) or raw.get("schema_version") not in versions.values():
        raise RunDirError(
            f"{file} is not a sweep file of schema_version "
            f"{' or '.join(str(v) for v in versions.values())} written by superposition"
        )
    for key in ("sweep", "sweep_id"):
        if key not in raw:
            raise RunDirError(f"{file} has no {key!r}")
    layout = raw.setdefault("layout", "points")
    if versions.get(layout) != raw["schema_version"]:
        raise RunDirError(
            f"{file} has the layout {layout!r}, which schema_version {raw['schema_version']} "
            "does not have"
        )
    return raw


def read_layout(out: PathLike) -> str:
    """The layout of the sweep folder ``out`` (:data:`LAYOUTS`)."""
    return str(read_sweep_file(out)["layout"])


def check_folder(
    out: PathLike, sweep: SweepConfig, *, force: bool = False, layout: str | None = None
) -> str | None:
    """The layout of ``sweep`` when ``out`` already holds it (a resume), else None; refuse what
    must not be replaced.

    A folder holding a different sweep is refused unless ``force``, and one holding this sweep in
    another layout than ``layout`` (None: any) always; a file or a non-empty folder that is not a
    sweep is always refused: nothing but a sweep is ever deleted. Writes nothing.
    """
    target = Path(out)
    if target.is_dir() and (target / SWEEP_FILE).is_file():
        raw = read_sweep_file(target)
        if raw["sweep_id"] == sweep.sweep_id:
            if layout is not None and raw["layout"] != layout:
                raise ConfigError(
                    f"{target} holds this sweep in the {raw['layout']} layout, not {layout}; "
                    f"resume it in its own layout (--layout {raw['layout']}) or choose "
                    "another --out"
                )
            return str(raw["layout"])
        if not force:
            raise ConfigError(
                f"{target} holds a different sweep (id {raw['sweep_id']}, "
                f"{raw.get('describe', 'other axes')}); choose another --out or pass --force "
                "to replace it"
            )
    elif target.exists() and not (target.is_dir() and not any(target.iterdir())):
        what = "a file" if not target.is_dir() else "a folder that is not a sweep"
        raise ConfigError(f"{target} exists and is {what}; choose another --out or remove it")
    return None


def create_folder(out: PathLike, sweep: SweepConfig, layout: str = DEFAULT_LAYOUT) -> None:
    """Write a fresh sweep folder at ``out`` (replacing what :func:`check_folder` allowed): built
    under a hidden name and renamed into place, so it never looks like a sweep half made."""
    check_layout(layout)
    with files.atomic_folder(out) as tmp:
        if layout == "points":
            (tmp / POINTS_DIR).mkdir()
        _write_sweep_file(tmp, sweep, layout)


def _write_sweep_file(folder: Path, sweep: SweepConfig, layout: str) -> None:
    doc = {
        "schema_version": SWEEP_SCHEMA_VERSIONS[layout],
        "layout": layout,
        "sweep_id": sweep.sweep_id,
        "version": __version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "describe": sweep.describe(),
        "sweep": sweep.to_dict(),
        "points": [
            {
                "point": i,
                **({"dir": str(point_dir("", sweep, i))} if layout == "points" else {}),
                "values": {k: plain(v) for k, v in values.items()},
            }
            for i, values in enumerate(sweep.points)
        ],
    }
    files.write_json(folder / SWEEP_FILE, doc, atomic=False)  # folder: create_folder's temporary


# --------------------------------------------------------------------------------------------------
# the table


FIXED_COLUMNS = ("point",)
METRIC_COLUMNS = ("best_instance", "best_loss", "mean_loss", "dimensions_per_feature", "geometry")
PER_FEATURE = {
    "feature_norms": "norm",
    "feature_dimensionality": "dimensionality",
    "superposition": "superposition",
}
"""Geometry measures of the best seed: one column per feature (``norm_0`` ...), or, when the points
have different numbers of features, one JSON-list column each (``norm`` ...)."""


def table_columns(sweep: SweepConfig) -> list[str]:
    cols = [*FIXED_COLUMNS, *sweep.names, *METRIC_COLUMNS]
    n = sweep.common_n_features
    for prefix in PER_FEATURE.values():
        cols += [f"{prefix}_{i}" for i in range(n)] if n else [prefix]
    return cols


def point_row(sweep: SweepConfig, index: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One table row from a point's ``metrics.json``: its axis values, the best seed (by held-out
    loss), the best and mean loss over seeds, and the best seed's geometry."""
    loss = [math.nan if v is None else float(v) for v in metrics["loss"]]
    best = int(metrics["best"][0])
    geo = metrics["geometry"]
    dpf = geo["dimensions_per_feature"][best]
    row: dict[str, Any] = {"point": index, **sweep.point_values(index)}
    row.update(
        best_instance=best,
        best_loss=loss[best],
        mean_loss=float(np.mean(loss)),
        dimensions_per_feature=math.inf if dpf is None else float(dpf),
        geometry=geo["geometry"][best],
    )
    common = sweep.common_n_features is not None
    for key, prefix in PER_FEATURE.items():
        values = [math.nan if v is None else float(v) for v in geo[key][best]]
        if common:
            row.update({f"{prefix}_{i}": v for i, v in enumerate(values)})
        else:
            row[prefix] = tuple(values)
    return row


def build_table(out: PathLike, sweep: SweepConfig) -> list[dict[str, Any]]:
    """The table rebuilt from the points on disk, in the folder's layout (every point must be
    done, and a compact folder's parts merged: :func:`superposition.sweep.packed.finish`)."""
    from superposition.store import METRICS_FILE
    from superposition.sweep import packed

    if read_layout(out) == "compact":
        _check_finished(out, sweep)
        metrics = packed.PointStore(out, sweep).metrics()
        return [point_row(sweep, i, m) for i, m in enumerate(metrics)]
    _check_finished(out, sweep)
    return [
        point_row(sweep, i, files.read_json(point_dir(out, sweep, i) / METRICS_FILE))
        for i in range(sweep.n_points)
    ]


def _check_finished(out: PathLike, sweep: SweepConfig) -> None:
    from superposition.sweep import packed

    if read_layout(out) == "compact":
        if (Path(out) / packed.POINTS_FILE).is_file():
            return
        done = set(packed.done_points(out, sweep))
    else:
        done = {i for i in range(sweep.n_points) if point_done(out, sweep, i)}
    missing = [i for i in range(sweep.n_points) if i not in done]
    if missing:
        raise RunDirError(
            f"{out} is not finished: {len(missing)} of {sweep.n_points} points are missing "
            f"(the first is point {missing[0]}); run the sweep again to finish it"
        )
    if read_layout(out) == "compact":
        raise RunDirError(
            f"{out} is not finished: its points are trained but not yet merged into "
            f"{packed.POINTS_FILE}; run the sweep again to finish it"
        )


def _cell(value: Any) -> str:
    if isinstance(value, tuple):
        return json.dumps([_cell_number(v) for v in value])
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _cell_number(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else str(v)


def table_csv(sweep: SweepConfig, rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = table_columns(sweep)
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in cols])
    return buf.getvalue()


def parse_table(sweep: SweepConfig, text: str, *, source: str) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` with the types :func:`point_row` gives them."""
    reader = csv.DictReader(io.StringIO(text))
    cols = table_columns(sweep)
    if reader.fieldnames != cols:
        raise RunDirError(f"{source} does not have this sweep's columns; delete it to rebuild it")
    labels = {a.field: {a.label(v): v for v in a.values} for a in sweep.axes}
    rows = []
    try:
        for raw in reader:
            row: dict[str, Any] = {}
            for c in cols:
                text_value = raw[c]
                if c in labels:
                    row[c] = labels[c][text_value]
                elif c in ("point", "best_instance"):
                    row[c] = int(text_value)
                elif c == "geometry":
                    row[c] = text_value
                elif text_value.startswith("["):
                    row[c] = tuple(float(v) for v in files.parse_json(text_value, source))
                else:
                    row[c] = float(text_value)
            rows.append(row)
    except (KeyError, ValueError, TypeError):
        raise RunDirError(f"{source} is damaged; delete it to rebuild it") from None
    if [r["point"] for r in rows] != list(range(sweep.n_points)):
        raise RunDirError(f"{source} does not list every point once; delete it to rebuild it")
    return rows


# --------------------------------------------------------------------------------------------------
# results


class SweepResult:
    """A finished sweep folder: labelled points, the table, each point's :class:`Run`."""

    def __init__(
        self,
        path: PathLike,
        sweep: SweepConfig,
        rows: list[dict[str, Any]],
        info: dict[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.sweep = sweep
        self._rows = rows
        self.info = info or {}
        """How the last :func:`run_sweep` went: points trained and kept, chunks, seconds."""
        self._layout: str | None = None
        self._store: Any = None  # the compact layout's PointStore, opened on the first run()

    @property
    def layout(self) -> str:
        """How the folder keeps its points (:data:`LAYOUTS`), read from its ``sweep.json``."""
        if self._layout is None:
            self._layout = read_layout(self.path)
        return self._layout

    @classmethod
    def load(cls, path: PathLike) -> "SweepResult":
        """Read a sweep folder; its table comes from ``results.csv`` or, when that is missing,
        from the point folders (the sweep must be finished)."""
        root = Path(path)
        if not (root / SWEEP_FILE).is_file():
            raise RunDirError(f"{root} is not a sweep folder: it has no {SWEEP_FILE}")
        raw = read_sweep_file(root)
        sweep = SweepConfig.from_dict(raw["sweep"], source=str(root / SWEEP_FILE))
        if sweep.sweep_id != raw["sweep_id"]:
            raise RunDirError(f"{root / SWEEP_FILE} has a sweep_id that does not match its sweep")
        table = root / TABLE_FILE
        if raw["layout"] == "compact":
            _check_finished(root, sweep)
        if table.is_file():
            rows = parse_table(sweep, table.read_text(encoding="utf-8"), source=str(table))
        else:
            rows = build_table(root, sweep)
        return cls(root, sweep, rows)

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.sweep.points

    @property
    def axes(self) -> dict[str, tuple[Any, ...]]:
        return {a.field: a.values for a in self.sweep.axes}

    def table(self) -> list[dict[str, Any]]:
        """One row per point (the content of ``results.csv``)."""
        return [dict(r) for r in self._rows]

    def grid(self, metric: str) -> np.ndarray:
        """A table column shaped like the axes (``[len(axis_0), len(axis_1), ...]``)."""
        cols = table_columns(self.sweep)
        if metric not in cols:
            raise ConfigError(f"no column {metric!r} in the table; columns: {', '.join(cols)}")
        values = [r[metric] for r in self._rows]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        array = np.array(values, dtype=float if numeric else object)
        return array.reshape(self.sweep.shape)

    def index(self, *, nearest: bool = False, **values: Any) -> int:
        """The point with these axis values (every axis with more than one value must be given);
        ``nearest`` takes the closest value of a numeric axis instead of refusing."""
        unknown = sorted(set(values) - set(self.sweep.names))
        if unknown:
            raise ConfigError(
                f"{unknown[0]!r} is not an axis of this sweep; axes: {', '.join(self.sweep.names)}"
            )
        position = []
        for axis in self.sweep.axes:
            if axis.field not in values:
                if len(axis.values) > 1:
                    raise ConfigError(
                        f"give a value of {axis.field} too (it has {len(axis.values)} values)"
                    )
                position.append(0)
                continue
            position.append(_find(axis, values[axis.field], nearest))
        return int(np.ravel_multi_index(position, self.sweep.shape))

    def select(self, *, nearest: bool = False, **values: Any) -> Run:
        """The run of the point with these axis values (see :meth:`index`), all its seeds."""
        return self.run(self.index(nearest=nearest, **values))

    def run(self, index: int) -> Run:
        """Point ``index``'s run (all its seeds), read from the folder in its layout."""
        from superposition.store import load_run
        from superposition.sweep.packed import PointStore

        self.sweep.point_config(index)  # range check
        if self.layout == "points":
            return load_run(point_dir(self.path, self.sweep, index))
        if self._store is None:
            self._store = PointStore(self.path, self.sweep)
        return self._store.run(index)

    def runs(self) -> Iterator[tuple[dict[str, Any], Run]]:
        """Every point's values and run, loaded one at a time."""
        for i, values in enumerate(self.sweep.points):
            yield values, self.run(i)

    def to_dataframe(self) -> Any:
        """The table as a pandas ``DataFrame``, one row per point (needs pandas: ``pip install
        'toy-superposition[pandas]'``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                f"SweepResult.to_dataframe needs pandas; install it with {install_hint('pandas')}"
            ) from None
        return pd.DataFrame(self.table(), columns=table_columns(self.sweep))

    def __repr__(self) -> str:
        axes = ", ".join(f"{a.field}[{len(a.values)}]" for a in self.sweep.axes)
        seeds = self.sweep.base.train.instances
        losses = [r["best_loss"] for r in self._rows if math.isfinite(r.get("best_loss", math.nan))]
        best = f", best loss {min(losses):.4g} to {max(losses):.4g}" if losses else ""
        return (
            f"SweepResult({str(self.path)!r}: {self.sweep.n_points} points over {axes}, "
            f"{seeds} seed(s) each{best})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: the axes, the first rows of the table and a small figure (the best
        seed's geometry over the first two axes with more than one value, or best loss along
        the only such axis)."""
        return _sweep_html(self)


SHOWN_COLUMNS = ("best_loss", "mean_loss", "dimensions_per_feature", "geometry")
"""Table columns the notebook view shows beside the axis values (the per-feature ones are left
to :meth:`SweepResult.table`)."""


def _ends(axis: Axis) -> tuple[str, str]:
    return _show(axis, axis.values[0]), _show(axis, axis.values[-1])


def _sweep_html(result: SweepResult) -> str:
    sweep, rows = result.sweep, result._rows
    axes_rows = []
    for a in sweep.axes:
        shown = [_show(a, v) for v in a.values]
        values = ", ".join(shown if len(shown) <= 6 else [*shown[:3], "…", *shown[-2:]])
        axes_rows.append([a.field, len(a.values), values])
    columns = ["point", *sweep.names, *SHOWN_COLUMNS]
    by_name = {a.field: a for a in sweep.axes}
    body = [
        [_show(by_name[c], r[c]) if c in by_name else r[c] for c in columns]
        for r in rows[: _html.MAX_ROWS]
    ]
    seeds = sweep.base.train.instances
    about = f"{sweep.n_points} points × {seeds} seeds, in {result.path}"
    if isinstance(result.info.get("seconds"), int | float):
        about += f"; trained in {result.info['seconds']:.1f} s"
    return (
        _html.heading(f"Sweep over {', '.join(sweep.names)}")
        + _html.note(about)
        + (
            _html.side_by_side(
                _html.table(["axis", "count", "values"], axes_rows)
                + _html.table(columns, body, more=len(rows) - len(body))
                + _html.note(
                    "best seed of each point (lowest held-out loss); all columns: .table()"
                ),
                _sweep_figure(result),
            )
        )
    )


def _show(axis: Axis, value: Any) -> str:
    """An axis value for the eye: numbers short, the rest as the table writes them."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _html.number(value)
    return axis.label(value)


def _sweep_figure(result: SweepResult) -> str:
    sweep = result.sweep
    varying = [k for k, a in enumerate(sweep.axes) if len(a.values) > 1]
    geometry = result.grid("geometry")
    if len(varying) >= 2:
        # the first two varying axes; any other axis at its first value
        i, j = varying[:2]
        index = tuple(slice(None) if k in (i, j) else 0 for k in range(len(sweep.axes)))
        labels = geometry[index]
        a, b = sweep.axes[i], sweep.axes[j]
        caption = "geometry of the best seed" + (
            "; other axes at their first value" if len(varying) > 2 else ""
        )
        figure = _html.category_grid(
            labels,
            x_name=a.field,
            x_ends=_ends(a),
            y_name=b.field,
            y_ends=_ends(b),
            title=f"geometry over {a.field} and {b.field}",
        )
        return _html.heading(caption) + figure
    # one varying axis (or none): best loss along it, points coloured by geometry
    k = varying[0] if varying else 0
    axis = sweep.axes[k]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis.values)
    x = np.asarray(axis.values if numeric else range(len(axis.values)), dtype=float)
    loss = result.grid("best_loss").reshape(-1)
    return _html.heading("best loss, coloured by geometry") + _html.line(
        x,
        loss,
        [str(g) for g in geometry.reshape(-1)],
        x_name=axis.field,
        y_name="best loss",
        title=f"best loss along {axis.field}",
    )


def _find(axis: Axis, value: Any, nearest: bool) -> int:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    for j, v in enumerate(axis.values):
        if v == value or (
            numeric and isinstance(v, int | float) and math.isclose(v, value, rel_tol=1e-9)
        ):
            return j
    if nearest and numeric and all(isinstance(v, int | float) for v in axis.values):
        return int(np.argmin([abs(v - value) for v in axis.values]))
    shown = ", ".join(axis.label(v) for v in axis.values[:8]) + (
        " ..." if len(axis.values) > 8 else ""
    )
    hint = "; pass nearest=True to take the closest" if numeric else ""
    raise ConfigError(f"{axis.field}={value!r} is not on the axis (values: {shown}){hint}")
