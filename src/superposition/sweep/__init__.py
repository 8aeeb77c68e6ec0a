"""Sweeps: a labelled grid of configs, flattened onto the instance axis and trained in a few chunks.

A :class:`SweepConfig` is a base :class:`RunConfig` and named :class:`Axis` objects, each a config
field (``density``, ``relative_importance``, ``n_hidden``, ``seed``, ``lr`` ...) with a list of
values. Its *points* are the cartesian product of the axes, the first axis varying slowest; each
point is the base config with those fields set (a per-group field such as ``density`` gets a
one-value tuple, so a point is exactly one group of ``base.train.instances`` seeds).

Points keep the base seed unless ``seed`` is an axis, so a point's result depends on its own config
only, never on the grid around it: on the CPU's fused step (models with n_features x n_hidden <=
256, phase diagrams among them) a point of a sweep equals ``train(point_config)`` bit for bit, and
adding points does not change the others; larger models (the sparse and torch steps, whose dense
products are batched matmuls) agree to float rounding (~1e-7 relative).

Points that can share one batched training (equal :func:`superposition.training.stack_key`) are
packed, whole, into as few chunks as the memory budget allows; a chunk is one
:func:`~superposition.training.train_many` call. A backend runs the chunks: :class:`LocalBackend` in
this process one after another, or the Ray backend of :mod:`superposition.distributed` as tasks.
Each chunk's results come back to the process that runs the sweep as plain arrays and dicts, and
that process writes them, so the machines that train need no access to the sweep folder.

The output folder (:mod:`superposition.sweep.folder`) has two layouts. The compact one, the
default, is four files whatever the number of points (:mod:`superposition.sweep.packed`)::

    DIR/sweep.json           the sweep (base config and axes), its id, the package version, the
                             points, the layout
    DIR/points.safetensors   every point's tensors (DIR/parts/, one file per batch, while it runs)
    DIR/metrics.json         each point's metrics: losses, best-of-N, geometry of every seed
    DIR/results.csv          one row per point: axis values and metrics of the best seed (see
                             :func:`point_row`); written at the end, rebuilt when missing

``layout="points"`` writes one run directory per point instead, ``DIR/points/NNNN/``
(superposition.store), for tools that read run directories.

A point is done when its batch is on disk, so an interrupted sweep (Ctrl-C, a kill, a lost machine)
resumes by training only the points that are not done; since each point's result depends on its
config alone, the result equals an uninterrupted run's. Only one process should write to a sweep
folder at a time.

    >>> import superposition as sp
    >>> from superposition.sweep import Axis, SweepConfig, SweepResult, run_sweep
    >>> base = sp.RunConfig(data=sp.DataConfig(n_features=2), model=sp.ModelConfig(n_hidden=1),
    ...                     train=sp.TrainConfig(instances=3))
    >>> sweep = SweepConfig(base, (Axis.logspace("density", 0, -2, 40),
    ...                            Axis.logspace("relative_importance", -1, 1, 40)))
    >>> result = run_sweep(sweep, "runs/phase")                     # doctest: +SKIP
    >>> result.grid("norm_1")              # [40, 40]: the last feature's norm   # doctest: +SKIP
    >>> result.select(density=0.1, relative_importance=10.0, nearest=True)       # doctest: +SKIP
    >>> SweepResult.load("runs/phase").table()[0]                   # doctest: +SKIP

``superposition.distributed.ray_backend.RayBackend()`` as ``backend=`` runs the chunks on Ray.
"""

from superposition.sweep.folder import (
    DEFAULT_LAYOUT,
    LAYOUTS,
    POINTS_DIR,
    SWEEP_FILE,
    TABLE_FILE,
    SweepResult,
    done_points,
    point_dir,
    point_row,
    table_columns,
)
from superposition.sweep.grid import Axis, SweepConfig, sweepable_fields
from superposition.sweep.run import (
    Backend,
    Chunk,
    LocalBackend,
    PointRecord,
    Report,
    Write,
    memory_capacity,
    plan_chunks,
    run_sweep,
    train_chunk,
)

__all__ = [
    "DEFAULT_LAYOUT",
    "LAYOUTS",
    "POINTS_DIR",
    "SWEEP_FILE",
    "TABLE_FILE",
    "Axis",
    "Backend",
    "Chunk",
    "LocalBackend",
    "PointRecord",
    "Report",
    "SweepConfig",
    "SweepResult",
    "done_points",
    "memory_capacity",
    "plan_chunks",
    "point_dir",
    "point_row",
    "run_sweep",
    "sweepable_fields",
    "table_columns",
    "train_chunk",
    "Write",
]
