"""Running a sweep: points packed into chunks, chunks trained by a backend, the table at the end.

Points that can share one batched training (equal :func:`superposition.training.stack_key`) are
packed, whole, into as few chunks as the memory budget allows; a chunk is one
:func:`~superposition.training.train_many` call (:func:`train_chunk`), which returns its points'
results as plain data: arrays and dicts (:data:`PointRecord`), never a path. A :class:`Backend` runs
the chunks, :class:`LocalBackend` in this process one after another or the Ray backend of
:mod:`superposition.distributed` as tasks, and hands each chunk's records back to this process,
which checks them against the points' configs and writes them into the sweep folder, in its layout
(:mod:`superposition.sweep.folder`). So whoever trains needs no access to the folder.
"""

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from superposition import files
from superposition.config import RunConfig
from superposition.errors import ConfigError
from superposition.results import Run
from superposition.sweep.folder import (
    DEFAULT_LAYOUT,
    POINTS_DIR,
    TABLE_FILE,
    SweepResult,
    build_table,
    check_folder,
    check_layout,
    create_folder,
    done_points,
    point_dir,
    table_csv,
)
from superposition.sweep.grid import PathLike, SweepConfig

if TYPE_CHECKING:
    from superposition.loggers import Logger

# --------------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class Chunk:
    """Points trained together as one batched training."""

    points: tuple[int, ...]
    instances: int


def plan_chunks(
    sweep: SweepConfig,
    points: Sequence[int],
    *,
    parallel: int = 1,
    max_instances: int | None = None,
) -> list[Chunk]:
    """Pack ``points`` into as few chunks as the memory budget allows, whole points only.

    Points that can be stacked (same :func:`stack_key`) go together, in point order. With
    ``parallel`` > 1 (a backend that runs several chunks at once) a group is split into at least
    that many chunks where it has enough points; ``max_instances`` caps a chunk further.
    """
    from superposition.training import stack_key

    groups: dict[Any, list[int]] = {}
    for i in points:
        groups.setdefault(stack_key(sweep.point_config(i)), []).append(i)
    chunks: list[Chunk] = []
    for members in groups.values():
        first = sweep.point_config(members[0])
        total = sum(sweep.point_config(i).n_instances for i in members)
        cap = memory_capacity(first)
        if parallel > 1:
            cap = min(cap, math.ceil(total / parallel))
        if max_instances is not None:
            cap = min(cap, max_instances)
        current: list[int] = []
        size = 0
        for i in members:
            n = sweep.point_config(i).n_instances
            if current and size + n > cap:
                chunks.append(Chunk(tuple(current), size))
                current, size = [], 0
            current.append(i)
            size += n
        chunks.append(Chunk(tuple(current), size))
    return chunks


def memory_capacity(config: RunConfig) -> int:
    """How many instances of this config one training chunk may hold (the memory budget)."""
    from superposition.training import bytes_per_instance, memory_budget, resolve_device

    budget = memory_budget(config, resolve_device(config.train.device))
    return max(1, int(budget // bytes_per_instance(config)))


def _check_points(sweep: SweepConfig) -> None:
    """What training would refuse, refused before the folder is made: an unknown loss or source
    (one config per kind of training is enough to see it) and, for every point, sizes that do not
    fit the memory budget (:func:`~superposition.training.check_sizes`: arithmetic only)."""
    from superposition.training import check, check_sizes, resolve_device, stack_key

    seen: set[Any] = set()
    device = resolve_device(sweep.base.train.device)  # an axis never sets the device
    for i in range(sweep.n_points):
        config = sweep.point_config(i)
        key = stack_key(config)
        try:
            if key not in seen:
                seen.add(key)
                check([config])
            else:
                check_sizes([config], device)
        except ConfigError as exc:
            values = ", ".join(f"{k}={v!r}" for k, v in sweep.point_values(i).items())
            raise ConfigError(f"sweep point {i} ({values}): {exc}") from None


# --------------------------------------------------------------------------------------------------
# training one chunk (what every backend runs)


SAVE_THREADS = 8
"""Point directories written at once (points layout)."""
Report = Callable[[float], None]
"""Called with a number of points (possibly fractional) newly trained."""
PointRecord = dict[str, Any]
"""One trained point as plain data, as a backend returns it: ``{"point": index, "tensors": {name:
numpy array} (superposition.store.run_tensors' names), "info": dict, "metrics": dict}``, the
metrics being what a run directory's ``metrics.json`` holds."""
Write = Callable[[Sequence[PointRecord]], None]
"""Called by a backend, in the process that runs the sweep, with the records of a finished chunk."""


def train_chunk(
    sweep: SweepConfig,
    points: Sequence[int],
    report: Report | None = None,
    logger: "Logger | None" = None,
) -> list[PointRecord]:
    """Train ``points`` of ``sweep`` as one batched training and return their records.

    ``report`` hears progress in points as training advances (at the logging steps): nine tenths
    of a point for training, the last tenth comes once it is written. ``logger`` gets each
    point's groups (``point{i}/group{g}``) loss and geometry at the logging steps.
    """
    from superposition.store import metrics_dict, run_tensors
    from superposition.training import Callback, StepInfo, train_many

    configs = [sweep.point_config(i) for i in points]
    steps = configs[0].train.steps
    per_instance = len(points) / sum(c.n_instances for c in configs)
    trained: dict[int, int] = {}  # instance-steps done, per internal chunk of train_many
    reported = 0.0

    def on_log(info: StepInfo) -> None:
        nonlocal reported
        if report is None:
            return
        trained[info.instances.start] = len(info.instances) * (info.step + 1)
        done = TRAINED_SHARE * per_instance * sum(trained.values()) / steps
        report(done - reported)
        reported = done

    callbacks: list[Callback] = [on_log]
    if logger is not None:
        from superposition.loggers import toy_callback, toy_groups

        groups: dict[str, range] = {}
        offset = 0
        for i, c in zip(points, configs, strict=True):
            groups.update(toy_groups(c, prefix=f"point{i}/", offset=offset))
            offset += c.n_instances
        callbacks.append(toy_callback(logger, groups))
    runs = train_many(configs, progress=False, callbacks=callbacks)
    return [
        {
            "point": i,
            "tensors": {k: v.detach().cpu().numpy() for k, v in run_tensors(run).items()},
            "info": files.jsonable(run.info),
            "metrics": metrics_dict(run),
        }
        for i, run in zip(points, runs, strict=True)
    ]


TRAINED_SHARE = 0.9
"""The share of a point's progress that its training reports; writing it reports the rest."""


def record_run(sweep: SweepConfig, record: PointRecord) -> Run:
    """The :class:`Run` in a point's record, its tensors checked against the point's config, with
    ``info["sweep"]`` saying which point of which sweep it is."""
    import numpy as np
    import torch

    from superposition.store import run_from_tensors

    i = record["point"]
    if not isinstance(i, int) or not 0 <= i < sweep.n_points:
        raise ConfigError(f"a backend returned a record of point {i!r}, which is not in the sweep")
    # a copy: arrays from Ray's object store are read-only views that live as long as the ref
    tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in record["tensors"].items()}
    where = (f"the record of point {i}", f"the record of point {i}", "the sweep")
    run = run_from_tensors(sweep.point_config(i), tensors, dict(record["info"]), where)
    run.info["sweep"] = {"id": sweep.sweep_id, "point": i, "values": sweep.point_values(i)}
    return run


def write_records(
    out: Path, sweep: SweepConfig, layout: str, records: Sequence[PointRecord]
) -> None:
    """Write finished points into the sweep folder ``out``: one part file of the batch (compact),
    or a run directory each (points); each atomic."""
    from superposition.store import save_run
    from superposition.sweep.packed import write_part

    runs = [record_run(sweep, r) for r in records]
    if layout == "compact":
        write_part(
            out,
            sweep,
            [(r["point"], run, r["metrics"]) for r, run in zip(records, runs, strict=True)],
        )
        return

    def save(run: Run, metrics: dict[str, Any]) -> None:
        path = point_dir(out, sweep, run.info["sweep"]["point"])
        save_run(run, path, overwrite=True, metrics=metrics)

    # each save waits for a few fsyncs: overlapping them makes a thousand points cheap to write
    with ThreadPoolExecutor(max_workers=SAVE_THREADS) as pool:
        list(pool.map(save, runs, [r["metrics"] for r in records]))


# --------------------------------------------------------------------------------------------------
# backends


@runtime_checkable
class Backend(Protocol):
    """Runs a sweep's chunks, each :func:`train_chunk` wherever it runs, and hands their records
    to ``write`` in this process."""

    name: str

    def open(self) -> int:
        """Get ready (start or connect); return how many chunks it runs at once."""
        ...

    def run(
        self, sweep: SweepConfig, chunks: Sequence[Chunk], report: Report, write: Write
    ) -> None:
        """Train every chunk and pass each one's records to ``write`` as it finishes; return when
        all are written (or raise)."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """In this process, chunk after chunk (each chunk uses all of torch's and numba's threads);
    with a ``logger``, each point's loss and geometry go to it as the chunks train."""

    name = "local"

    def __init__(self, logger: "Logger | None" = None):
        self.logger = logger

    def open(self) -> int:
        return 1

    def run(
        self, sweep: SweepConfig, chunks: Sequence[Chunk], report: Report, write: Write
    ) -> None:
        for chunk in chunks:
            write(train_chunk(sweep, chunk.points, report, self.logger))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# running a sweep


def run_sweep(
    sweep: SweepConfig,
    out: PathLike,
    *,
    backend: Backend | None = None,
    progress: bool | None = None,
    force: bool = False,
    max_chunk_instances: int | None = None,
    layout: str | None = None,
    logger: "Logger | None" = None,
) -> SweepResult:
    """Train every point of ``sweep`` that ``out`` does not hold yet, then write the table.

    ``backend`` defaults to :class:`LocalBackend`; ``progress`` shows a bar over points (default:
    when stderr is a terminal); ``force`` replaces a folder that holds a different sweep;
    ``max_chunk_instances`` caps a chunk below the memory budget (smaller chunks lose less to an
    interruption but cost a little more overall). ``layout`` is how a new folder keeps its points:
    "compact" (all in one file, the default) or "points" (a run directory each); a folder being
    resumed keeps its own, and naming another is refused. ``logger`` (:mod:`superposition.loggers`)
    gets every trained point's groups (``point{i}/group{g}``) loss and geometry as they train; it
    watches training in this process, so it needs the local backend.
    """
    if max_chunk_instances is not None and (
        isinstance(max_chunk_instances, bool)
        or not isinstance(max_chunk_instances, int)
        or max_chunk_instances < 1
    ):
        raise ConfigError(
            f"max_chunk_instances must be an integer >= 1, got {max_chunk_instances!r}"
        )
    if layout is not None:
        check_layout(layout)
    _check_points(sweep)
    backend = backend if backend is not None else LocalBackend()
    if logger is not None:
        if not isinstance(backend, LocalBackend):
            raise ConfigError(
                f"a logger watches training in this process, so it needs the local backend, "
                f"not {backend.name!r}"
            )
        backend.logger = logger
    started = time.perf_counter()
    root = Path(out)
    existing = check_folder(root, sweep, force=force, layout=layout)
    resumed = existing is not None
    layout = existing or layout or DEFAULT_LAYOUT
    if resumed:  # what a killed run was writing when it died
        from superposition.sweep.packed import PARTS_DIR

        for folder in (root, root / POINTS_DIR, root / PARTS_DIR):
            files.remove_stale_in(folder)
    done = set(done_points(root, sweep)) if resumed else set()
    todo = [i for i in range(sweep.n_points) if i not in done]
    chunks: list[Chunk] = []
    # the backend first: a cluster that does not answer leaves nothing behind
    parallel = backend.open() if todo else 1
    try:
        if not resumed:
            create_folder(root, sweep, layout)
        if todo:
            chunks = plan_chunks(sweep, todo, parallel=parallel, max_instances=max_chunk_instances)
            if logger is not None:
                logger.describe(_group_values(sweep, todo))
            with _bar(sweep.n_points, len(done), progress) as report:

                def write(records: Sequence[PointRecord]) -> None:
                    write_records(root, sweep, layout, records)
                    report((1 - TRAINED_SHARE) * len(records))

                backend.run(sweep, chunks, report, write)
    finally:
        if todo:
            backend.close()
    if layout == "compact":
        from superposition.sweep.packed import finish

        finish(root, sweep)
    rows = build_table(root, sweep)
    files.write_text(root / TABLE_FILE, table_csv(sweep, rows))
    info = {
        "backend": backend.name,
        "layout": layout,
        "points": sweep.n_points,
        "trained_points": len(todo),
        "kept_points": len(done),
        "chunks": len(chunks),
        "chunk_instances": [c.instances for c in chunks],
        "seconds": round(time.perf_counter() - started, 3),
    }
    return SweepResult(root, sweep, rows, info)


def _group_values(sweep: SweepConfig, points: Sequence[int]) -> dict[str, dict[str, Any]]:
    """What each logged group is: its point's axis values and its own density and importance."""
    from superposition.loggers import toy_group_values

    out: dict[str, dict[str, Any]] = {}
    for i in points:
        for name, values in toy_group_values(sweep.point_config(i), f"point{i}/").items():
            out[name] = {**sweep.point_values(i), **values}
    return out


class _bar:
    """A progress bar over points (fractional updates while a chunk trains), or nothing."""

    def __init__(self, total: int, initial: int, progress: bool | None):
        from superposition.training import progress_bar

        self.tqdm: Any = progress_bar(
            total,
            "sweep",
            progress,
            unit="point",
            initial=initial,
            leave=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total} points [{elapsed}<{remaining}]",
        )

    def __enter__(self) -> Report:
        return self.report

    def report(self, points: float) -> None:
        if self.tqdm is not None and points > 0:
            self.tqdm.update(points)

    def __exit__(self, *exc: object) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
