"""The compact layout of a sweep folder (the default): every point's tensors in one file.

::

    DIR/sweep.json           the sweep, its id, "layout": "compact" (schema_version 2)
    DIR/points.safetensors   every point's tensors, named "<point>/<name>" with the names of
                             superposition.store.run_tensors (W, b, history.loss, loss ...);
                             its metadata holds each point's Run.info
    DIR/metrics.json         per point what a run directory's metrics.json holds, a line each
    DIR/results.csv          the table (superposition.sweep.folder), as in every layout

A run directory per point costs six entries on disk (five files and a ``figures/`` folder), so a
1,600-point phase diagram was nearly ten thousand; here a finished sweep of any size is four files.

While the sweep runs, each batch of finished points (a chunk) is one file
``DIR/parts/<first point>-<random>.safetensors``, written atomically, holding those points'
tensors and, in its metadata, their info and metrics. A point is done when a part of this sweep
(or ``points.safetensors``) holds it, so an interrupted sweep keeps every finished batch. When every
point is done the parts are merged: ``metrics.json`` is written, then ``points.safetensors``, then
``parts/`` is removed, each step atomic, so a crash at any moment leaves a folder that the next run
of the same sweep finishes.
"""

import json
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from superposition import files
from superposition.errors import RunDirError
from superposition.results import Run
from superposition.sweep.grid import PathLike, SweepConfig

POINTS_FILE = "points.safetensors"
METRICS_FILE = "metrics.json"
PARTS_DIR = "parts"
PACK_SCHEMA_VERSION = "1"
"""Version of the file format of parts and ``points.safetensors`` (kept in their metadata)."""


def tensor_name(point: int, name: str) -> str:
    """The name of a point's tensor in a part or in ``points.safetensors``."""
    return f"{point}/{name}"


# --------------------------------------------------------------------------------------------------
# writing


def write_part(
    out: PathLike, sweep: SweepConfig, points: Sequence[tuple[int, Run, dict[str, Any]]]
) -> Path:
    """Write finished points (each its index, its run and its metrics) as one new part file,
    atomically; return its path."""
    from superposition.store import run_tensors

    tensors: dict[str, torch.Tensor] = {}
    about: dict[str, Any] = {}
    for i, run, metrics in points:
        tensors.update({tensor_name(i, k): v for k, v in run_tensors(run).items()})
        about[str(i)] = {"info": files.jsonable(run.info), "metrics": metrics}
    parts = Path(out) / PARTS_DIR
    parts.mkdir(exist_ok=True)
    first = min(i for i, _, _ in points)
    path = parts / f"{first:06d}-{secrets.token_hex(4)}.safetensors"
    metadata = {
        "schema_version": PACK_SCHEMA_VERSION,
        "sweep_id": sweep.sweep_id,
        "points": json.dumps(about, allow_nan=False),
    }
    files.write_safetensors(path, tensors, metadata=metadata)
    return path


def _part_files(out: PathLike) -> list[Path]:
    folder = Path(out) / PARTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.safetensors") if files.is_plain_name(p.name))


def _read_metadata(path: Path, sweep: SweepConfig) -> dict[str, Any] | None:
    """The points (index -> info and metrics) of a part of this sweep, or None for a file of
    another sweep or one that cannot be read (its points are trained again)."""
    try:
        with files.open_safetensors(path) as f:
            meta = f.metadata() or {}
        if meta.get("sweep_id") != sweep.sweep_id:
            return None
        if meta.get("schema_version") != PACK_SCHEMA_VERSION:
            return None
        about = files.parse_json(meta.get("points", ""), f"the metadata of {path}")
    except RunDirError:
        return None
    if not isinstance(about, dict):
        return None
    return about


def done_points(out: PathLike, sweep: SweepConfig) -> list[int]:
    """The points that ``points.safetensors`` or a part of this sweep holds."""
    if (Path(out) / POINTS_FILE).is_file():
        return PointStore(out, sweep).points
    done: set[int] = set()
    for part in _part_files(out):
        about = _read_metadata(part, sweep)
        if about is not None:
            done.update(int(k) for k in about if k.isdigit() and int(k) < sweep.n_points)
    return sorted(done)


def finish(out: PathLike, sweep: SweepConfig) -> None:
    """Merge the parts of a sweep whose every point is done into ``metrics.json`` and
    ``points.safetensors`` and remove them (nothing to do when that is done already)."""
    root = Path(out)
    target = root / POINTS_FILE
    for stale in root.glob(".*.tmp-*"):  # the files of a merge that was killed
        if stale.is_file():
            stale.unlink(missing_ok=True)
    if not target.is_file():
        tensors: dict[str, torch.Tensor] = {}
        about: dict[str, Any] = {}
        for part in _part_files(root):
            meta = _read_metadata(part, sweep)
            if meta is None:
                continue
            new = {k: v for k, v in meta.items() if k not in about}
            if not new:
                continue
            for name, t in files.read_safetensors(part).items():
                if name.split("/", 1)[0] in new:
                    tensors[name] = t
            about.update(new)
        missing = [i for i in range(sweep.n_points) if str(i) not in about]
        if missing:
            raise RunDirError(
                f"{root} is not finished: {len(missing)} of {sweep.n_points} points are missing "
                f"(the first is point {missing[0]}); run the sweep again to finish it"
            )
        metrics = [about[str(i)]["metrics"] for i in range(sweep.n_points)]
        files.write_text(root / METRICS_FILE, metrics_text(sweep, metrics))
        info = {str(i): about[str(i)]["info"] for i in range(sweep.n_points)}
        metadata = {
            "schema_version": PACK_SCHEMA_VERSION,
            "sweep_id": sweep.sweep_id,
            "info": json.dumps(info, allow_nan=False),
        }
        files.write_safetensors(target, tensors, metadata=metadata)
    shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    files.fsync_folder(root)


def metrics_text(sweep: SweepConfig, metrics: Sequence[Any]) -> str:
    """``metrics.json``: the sweep's id and a list with each point's metrics, one line each."""
    lines = ",\n".join("    " + json.dumps(m, allow_nan=False) for m in metrics)
    return (
        "{\n"
        f'  "schema_version": {PACK_SCHEMA_VERSION},\n'
        f'  "sweep_id": {json.dumps(sweep.sweep_id)},\n'
        f'  "points": [\n{lines}\n  ]\n'
        "}\n"
    )


# --------------------------------------------------------------------------------------------------
# reading


class PointStore:
    """The points of a finished compact sweep folder, each read when asked for."""

    def __init__(self, out: PathLike, sweep: SweepConfig):
        self.root = Path(out)
        self.sweep = sweep
        self.path = self.root / POINTS_FILE
        self._file = files.open_safetensors(self.path)
        meta = self._file.metadata() or {}
        if meta.get("sweep_id") != sweep.sweep_id:
            raise RunDirError(f"{self.path} holds another sweep than {self.root / 'sweep.json'}")
        info = files.parse_json(meta.get("info", "{}"), f"the metadata of {self.path}")
        if not isinstance(info, dict):
            raise RunDirError(f"the metadata of {self.path} has no info per point")
        self._info = info
        self._names: dict[int, list[str]] = {}
        for name in self._file.keys():  # noqa: SIM118 - safe_open is not iterable
            point, _, rest = name.partition("/")
            if not point.isdigit() or not rest or int(point) >= sweep.n_points:
                raise RunDirError(f"{self.path} has the tensor {name!r}, of no point of the sweep")
            self._names.setdefault(int(point), []).append(name)

    @property
    def points(self) -> list[int]:
        return sorted(self._names)

    def run(self, index: int) -> Run:
        """Point ``index``'s :class:`Run`, validated against its config in the sweep."""
        from superposition.store import run_from_tensors

        names = self._names.get(index)
        if names is None:
            raise RunDirError(f"{self.path} holds no tensors of point {index}")
        tensors = {name.partition("/")[2]: self._file.get_tensor(name) for name in names}
        info = self._info.get(str(index), {})
        where = (f"{self.path} (point {index})", f"point {index}", "sweep.json")
        return run_from_tensors(self.sweep.point_config(index), tensors, info, where)

    def metrics(self) -> list[dict[str, Any]]:
        """Each point's metrics: from ``metrics.json``, or computed again from the tensors when
        that file is missing."""
        from superposition.store import metrics_dict

        file = self.root / METRICS_FILE
        if not file.is_file():
            return [metrics_dict(self.run(i)) for i in range(self.sweep.n_points)]
        raw = files.read_json(file)
        points = raw.get("points") if isinstance(raw, dict) else None
        if (
            not isinstance(points, list)
            or len(points) != self.sweep.n_points
            or raw.get("sweep_id") != self.sweep.sweep_id
            or not all(isinstance(m, dict) for m in points)
        ):
            raise RunDirError(f"{file} does not hold this sweep's metrics; delete it to rebuild it")
        return points
