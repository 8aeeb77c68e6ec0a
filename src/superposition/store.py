"""The run directory: a trained :class:`~superposition.results.Run` on disk, never as a pickle.

Layout of ``RUN/`` (schema version :data:`SCHEMA_VERSION`)::

    config.json          RunConfig.to_dict() ("schema_version", "data", "model", "train") plus
                         "version" (the package's), "created_at" (UTC) and "info" (Run.info)
    weights.safetensors  every parameter (W [inst, feat, hidden], b [inst, feat], W_dec if untied),
                         "snapshot.<param>" [snap, ...] and "snapshot_steps" [snap] if any
    history.safetensors  "steps" [log] (int64) and "loss" [log, inst]: the training-loss history
    metrics.json         held-out loss per instance, each instance's group and its values,
                         best-of-N per group and the geometry summary (superposition.geometry)
    figures/             drawn later (plots, reports); may be empty

Writing is atomic (:func:`superposition.files.atomic_folder`): everything goes into a hidden
sibling ``.NAME.tmp-<pid>-<random>``, is fsynced and then renamed into place, so a crash leaves only
that hidden folder, never a directory that looks complete. Stale temporary folders are ignored by
:func:`load_run` and removed by the next :func:`save_run` to the same place. Overwriting an existing
run renames it aside first, renames the new one in and only then deletes the old one.

Loading validates everything against ``config.json`` (files present, JSON parsable, known keys and
schema version, tensors readable and of the shapes the config implies) and raises
:class:`~superposition.errors.RunDirError` with one sentence naming the file and the problem.
Non-finite values in the weights are *not* refused: a diverged instance is a legitimate result, so
:func:`load_run` emits a :class:`RuntimeWarning` naming the instances instead.
"""

import datetime
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from superposition import __version__, files
from superposition.config import GROUP_FIELDS, RunConfig, param_shapes
from superposition.errors import ConfigError, RunDirError
from superposition.results import Run

SCHEMA_VERSION = 1
"""Version of the run-directory layout; :func:`load_run` refuses any other."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
HISTORY_FILE = "history.safetensors"
METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE, METRICS_FILE)

SNAPSHOT_PREFIX = "snapshot."
SNAPSHOT_STEPS = "snapshot_steps"
CONFIG_KEYS = ("schema_version", "version", "created_at", "data", "model", "train", "info")

PathLike = str | os.PathLike[str]
Where = tuple[str, str, str]
"""Where tensors were read, for error messages: the file (with its path), its short name and the
name of the file that holds the config."""


# --------------------------------------------------------------------------------------------------
# public API


def is_run_dir(path: PathLike) -> bool:
    """Whether ``path`` is a directory holding every file of a complete run (not validated)."""
    p = Path(path)
    return p.is_dir() and all((p / name).is_file() for name in REQUIRED_FILES)


def save_run(
    run: Run,
    path: PathLike,
    *,
    overwrite: bool = False,
    figures: Callable[[Run, Path], object] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``run`` to the run directory ``path`` atomically and return the path.

    An existing run at ``path`` is refused unless ``overwrite``; an empty directory is replaced;
    any other file or non-empty directory is always refused (nothing that is not a run is deleted).
    ``figures(run, figures_dir)``, when given (e.g. ``superposition.plots.draw_run``), draws into
    the temporary folder's ``figures/`` before the rename: the run appears with its figures or,
    when drawing fails, not at all. ``metrics``, when given, is :func:`metrics_dict` of ``run``
    computed already (by the process that trained it), written instead of computing it again.
    """
    target = Path(path)
    check_target(target, overwrite=overwrite)
    _check_run(run)
    with files.atomic_folder(target) as tmp:
        _write_contents(run, tmp, metrics)
        if figures is not None:
            figures(run, tmp / FIGURES_DIR)
    return target


def load_run(path: PathLike) -> Run:
    """Read and validate a run directory written by :func:`save_run`."""
    root = Path(path)
    if not root.exists():
        raise RunDirError(f"run directory {root} does not exist")
    if not root.is_dir():
        raise RunDirError(f"{root} is a file, not a run directory")
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise RunDirError(f"{root} is not a complete run directory: missing {', '.join(missing)}")
    raw = read_config_json(root)
    check_stored_sizes(raw, root / WEIGHTS_FILE, "W")
    config = config_from_json(raw, root)
    info = raw.get("info", {})
    if not isinstance(info, dict):
        raise RunDirError(
            f"{root / CONFIG_FILE} has 'info' of type {type(info).__name__}; it must be an object"
        )

    tensors = files.read_safetensors(root / WEIGHTS_FILE)
    where = (str(root / WEIGHTS_FILE), WEIGHTS_FILE, CONFIG_FILE)
    params, snapshots = _split_weights(tensors, config, where)
    history = files.read_safetensors(root / HISTORY_FILE)
    where = (str(root / HISTORY_FILE), HISTORY_FILE, CONFIG_FILE)
    steps, hist_loss = _split_history(history, config, where)
    metrics = files.read_json(root / METRICS_FILE)
    loss = _loss_from_metrics(metrics, config, root)
    dataset_loss = None
    if isinstance(metrics, dict) and metrics.get("dataset_loss") is not None:
        dataset_loss = _loss_from_metrics(
            {"loss": metrics["dataset_loss"]}, config, root, key="dataset_loss"
        )

    bad = sorted({k for v in params.values() for k in _nonfinite_instances(v)})
    if bad:
        warnings.warn(
            f"{root / WEIGHTS_FILE} has non-finite weights in instance(s) {bad[:10]}"
            + (" ..." if len(bad) > 10 else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    return Run(
        config=config,
        params=params,
        loss=loss,
        history_steps=steps,
        history_loss=hist_loss,
        snapshots=snapshots,
        info=dict(info),
        dataset_loss=dataset_loss,
    )


HISTORY_PREFIX = "history."
LOSS_TENSORS = ("loss", "dataset_loss")


def run_tensors(run: Run) -> dict[str, torch.Tensor]:
    """Every tensor of ``run`` under one flat name each, for stores that keep many runs in one
    file or send them between processes: the parameters and snapshots as in
    ``weights.safetensors``, ``history.steps`` and ``history.loss``, ``loss`` and, for a finite
    training set, ``dataset_loss``. :func:`run_from_tensors` reads them back."""
    _check_run(run)
    tensors = dict(run.params)
    if run.snapshots:
        for k, v in run.snapshots.items():
            tensors[SNAPSHOT_PREFIX + k] = v
        tensors[SNAPSHOT_STEPS] = torch.tensor(snapshot_steps(run.config), dtype=torch.int64)
    tensors[HISTORY_PREFIX + "steps"] = run.history_steps.to(torch.int64)
    tensors[HISTORY_PREFIX + "loss"] = run.history_loss
    tensors["loss"] = run.loss
    if run.dataset_loss is not None:
        tensors["dataset_loss"] = run.dataset_loss
    return tensors


def run_from_tensors(
    config: RunConfig,
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
    where: Where,
) -> Run:
    """The :class:`Run` of ``config`` whose tensors :func:`run_tensors` named, validated as
    :func:`load_run` validates a run directory; ``where`` names the source in errors."""
    weights = {
        k: v
        for k, v in tensors.items()
        if not k.startswith(HISTORY_PREFIX) and k not in LOSS_TENSORS
    }
    params, snapshots = _split_weights(weights, config, where)
    history = {
        k[len(HISTORY_PREFIX) :]: v for k, v in tensors.items() if k.startswith(HISTORY_PREFIX)
    }
    steps, hist_loss = _split_history(history, config, where)
    source, short, config_file = where
    losses: dict[str, torch.Tensor] = {}
    for key in LOSS_TENSORS:
        if key not in tensors:
            if key == "loss":
                raise RunDirError(f"{source} has no tensor 'loss'")
            continue
        _check_float(tensors[key], key, source)
        _compare_shape(
            f"{short} has {key}", tensors[key], (config.n_instances,), config_file, "[inst]"
        )
        losses[key] = tensors[key]
    return Run(
        config=config,
        params=params,
        loss=losses["loss"],
        history_steps=steps,
        history_loss=hist_loss,
        snapshots=snapshots,
        info=dict(info),
        dataset_loss=losses.get("dataset_loss"),
    )


def read_config_json(path: PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a run directory, its keys and schema version checked."""
    root = Path(path)
    file = root / CONFIG_FILE
    raw = files.read_json(file)
    if not isinstance(raw, dict):
        raise RunDirError(f"{file} must hold a JSON object, got {type(raw).__name__}")
    if raw.get("kind") == "sae":  # superposition.sae.store's KIND (a layer above this one)
        raise RunDirError(
            f"{root} is an SAE directory written by `superposition sae`, not a toy-model run; "
            "read it in Python with superposition.sae.load_sae, and give this command the run "
            "the SAEs were trained on"
        )
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown:
        raise RunDirError(
            f"{file} has unknown key {unknown[0]!r}; known keys: {', '.join(CONFIG_KEYS)}"
        )
    if "schema_version" not in raw:
        raise RunDirError(f"{file} has no schema_version; it was not written by superposition")
    version = raw["schema_version"]
    if version != SCHEMA_VERSION:
        raise RunDirError(
            f"{file} has schema_version {version!r}, but this version of superposition reads "
            f"schema_version {SCHEMA_VERSION} only"
        )
    return raw


def check_stored_sizes(raw: Any, weights: Path, name: str) -> None:
    """Refuse a raw ``config.json`` whose n_features or n_hidden disagree with the shape of the
    tensor ``name`` ([inst, feat, hidden]) in the safetensors file ``weights``.

    Only the file's header is read, and this runs before the config is built: a corrupt size in
    ``config.json`` (say n_features = 10**9) is refused before anything of that size is
    allocated. A missing tensor is left to the full check that follows.
    """
    shape = files.safetensors_shapes(weights).get(name)
    if shape is None or not isinstance(raw, dict):
        return
    if len(shape) != 3:
        raise RunDirError(
            f"{weights} has {name} of shape {list(shape)}; it must be [inst, feat, hidden]"
        )
    data, model = raw.get("data"), raw.get("model")
    for section, key, axis in ((data, "n_features", 1), (model, "n_hidden", 2)):
        value = section.get(key) if isinstance(section, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value != shape[axis]:
            raise RunDirError(
                f"{weights} has {name} of shape {list(shape)} but {CONFIG_FILE} says "
                f"{key}={value} (axes [inst, feat, hidden])"
            )


def figures_dir(run_dir: PathLike) -> Path:
    """The ``figures/`` folder of a run directory (created when missing)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise RunDirError(f"run directory {root} does not exist")
    out = root / FIGURES_DIR
    out.mkdir(exist_ok=True)
    return out


def write_figure(
    run_dir: PathLike, name: str, content: bytes | str | Callable[[Path], object]
) -> Path:
    """Write ``figures/NAME`` of a run directory atomically and return its path.

    ``content`` is the file's bytes or text, or a function that writes a file at the path it is
    given (e.g. ``lambda p: fig.savefig(p)``; the temporary path keeps ``NAME``'s suffix, so the
    format inferred from the extension is right). The file appears complete or not at all.
    """
    if not name or name.startswith(".") or "/" in name or "\\" in name or name in ("..",):
        raise ConfigError(
            f"figure name must be a plain file name such as 'polygons.png', got {name!r}"
        )
    target = figures_dir(run_dir) / name
    with files.atomic_file(target) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        elif isinstance(content, str):
            tmp.write_text(content)
        else:
            content(tmp)
        if not tmp.is_file():
            raise RunDirError(f"the writer for figure {name!r} did not create a file")
    return target


# --------------------------------------------------------------------------------------------------
# what the files hold


def expected_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter tensor of a run with this config."""
    return param_shapes(config, config.n_instances)


PARAM_AXES = {
    "W": "[inst, feat, hidden]",
    "W_dec": "[inst, feat, hidden]",
    "b": "[inst, feat]",
    "b_hidden": "[inst, hidden]",
}
"""The axes of each parameter, as error messages name them."""


def snapshot_steps(config: RunConfig) -> list[int]:
    """The steps at which training keeps snapshots: the config's, sorted, without repeats."""
    return sorted(set(config.train.snapshot_steps))


def metrics_dict(run: Run) -> dict[str, Any]:
    """The content of ``metrics.json``: losses, groups, best-of-N and the geometry summary."""
    cfg = run.config
    k = cfg.train.instances
    loss = files.jsonable(run.loss.tolist())  # NaN (a diverged instance) becomes null
    best = run.best()
    groups = cfg.groups
    group_of = [cfg.group_of(i) for i in range(cfg.n_instances)]
    out: dict[str, Any] = {
        "loss": loss,
        "group": group_of,
        **{name: [getattr(groups[g], name) for g in group_of] for name in GROUP_FIELDS},
        "best": best,
        "groups": [
            {
                **group.as_dict(),
                "instances": list(range(g * k, (g + 1) * k)),
                "best": best[g],
                "best_loss": loss[best[g]],
            }
            for g, group in enumerate(groups)
        ],
    }
    if run.dataset_loss is not None:
        out["dataset_loss"] = files.jsonable(run.dataset_loss.tolist())
    try:
        from superposition import geometry
    except ImportError:  # pragma: no cover - geometry is part of the package
        return out
    out["geometry"] = files.jsonable(geometry.summary(run.W))
    return out


# --------------------------------------------------------------------------------------------------
# writing


def check_target(target: Path, *, overwrite: bool, hint: str = "overwrite=True") -> None:
    """Refuse a target holding a run (unless ``overwrite``), a file or a non-empty folder."""
    if not target.exists():
        return
    if is_run_dir(target):
        if not overwrite:
            raise RunDirError(f"{target} already holds a run; pass {hint} to replace it")
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    what = "a file" if not target.is_dir() else "a directory that is not a run"
    raise RunDirError(f"{target} exists and is {what}; choose another path or remove it")


def _check_run(run: Run) -> None:
    """Refuse to write what :func:`load_run` would refuse to read."""
    cfg = run.config
    for name, shape in expected_shapes(cfg).items():
        if name not in run.params:
            raise RunDirError(f"the run has no {name} but its config ({cfg.model.kind}) needs one")
        _compare_shape(
            f"the run has {name}", run.params[name], shape, "its config", PARAM_AXES[name]
        )
    extra = sorted(set(run.params) - set(expected_shapes(cfg)))
    if extra:
        raise RunDirError(f"the run has unexpected parameter {extra[0]!r} for its config")
    _compare_shape("the run has loss", run.loss, (cfg.n_instances,), "its config", "[inst]")
    steps = snapshot_steps(cfg)
    for name, snap in run.snapshots.items():
        if name not in run.params:
            raise RunDirError(f"the run has snapshots of unknown parameter {name!r}")
        shape = (len(steps), *run.params[name].shape)
        _compare_shape(
            f"the run has snapshots of {name}", snap, shape, "its config",
            "[snap, " + PARAM_AXES[name][1:],
        )  # fmt: skip


def _write_contents(run: Run, tmp: Path, metrics: dict[str, Any] | None = None) -> None:
    # atomic_folder renames the whole folder into place: its files need no rename of their own
    cfg = run.config
    config = {
        **cfg.to_dict(),
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "info": files.jsonable(run.info),
    }
    files.write_json(tmp / CONFIG_FILE, config, atomic=False)

    tensors = dict(run.params)
    if run.snapshots:
        for k, v in run.snapshots.items():
            tensors[SNAPSHOT_PREFIX + k] = v
        tensors[SNAPSHOT_STEPS] = torch.tensor(snapshot_steps(cfg), dtype=torch.int64)
    metadata = {"schema_version": str(SCHEMA_VERSION)}
    files.write_safetensors(tmp / WEIGHTS_FILE, tensors, metadata=metadata, atomic=False)
    history = {"steps": run.history_steps.to(torch.int64), "loss": run.history_loss}
    files.write_safetensors(tmp / HISTORY_FILE, history, atomic=False)

    metrics = metrics_dict(run) if metrics is None else metrics
    files.write_json(tmp / METRICS_FILE, metrics, compact_values=True, atomic=False)
    (tmp / FIGURES_DIR).mkdir()


# --------------------------------------------------------------------------------------------------
# reading


def config_from_json(raw: dict[str, Any], root: Path) -> RunConfig:
    """The :class:`RunConfig` in the raw ``config.json`` of the run directory ``root`` (its
    "data", "model" and "train" sections; JSON arrays become the tuples the fields declare);
    :class:`RunDirError` naming the file if a section is missing or a value is refused."""
    sections: dict[str, Any] = {
        k: {key: tuple(v) if isinstance(v, list) else v for key, v in raw[k].items()}
        if isinstance(raw[k], dict)
        else raw[k]
        for k in ("data", "model", "train")
        if k in raw
    }
    missing = [k for k in ("data", "model", "train") if k not in raw]
    if missing:
        raise RunDirError(f"{root / CONFIG_FILE} has no {missing[0]!r} section")
    try:
        return RunConfig.from_dict(sections, source=str(root / CONFIG_FILE))
    except RunDirError:
        raise
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


def _compare_shape(
    what: str, t: torch.Tensor, shape: tuple[int, ...], source: str, axes: str = ""
) -> None:
    if tuple(t.shape) != tuple(shape):
        raise RunDirError(
            f"{what} of shape {list(t.shape)} but {source} says {list(shape)}"
            + (f" {axes}" if axes else "")
        )


def _split_weights(
    tensors: dict[str, torch.Tensor], config: RunConfig, where: Where
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    shapes = expected_shapes(config)
    source, file, config_file = where
    for name, shape in shapes.items():
        if name not in tensors:
            raise RunDirError(
                f"{source} has no tensor {name!r}, which a {config.model.kind} "
                f"{'tied' if config.model.is_tied else 'untied'} model needs"
            )
        _check_float(tensors[name], name, source)
        _compare_shape(f"{file} has {name}", tensors[name], shape, config_file, PARAM_AXES[name])
    params = {name: tensors[name] for name in shapes}
    snapshots: dict[str, torch.Tensor] = {}
    steps = None
    for key, t in tensors.items():
        if key in shapes:
            continue
        if key == SNAPSHOT_STEPS:
            steps = t
            continue
        name = key[len(SNAPSHOT_PREFIX) :] if key.startswith(SNAPSHOT_PREFIX) else ""
        if name not in shapes:
            raise RunDirError(
                f"{source} has unexpected tensor {key!r}; expected "
                f"{', '.join(shapes)}, snapshot.<name> and snapshot_steps"
            )
        _check_float(t, key, source)
        snapshots[name] = t
    if snapshots:
        want = snapshot_steps(config)
        if steps is None:
            raise RunDirError(f"{source} has snapshots but no snapshot_steps tensor")
        if steps.dim() != 1 or steps.tolist() != want:
            raise RunDirError(
                f"{source} has snapshot_steps {steps.tolist()} but {config_file} says {want}"
            )
        for name, t in snapshots.items():
            _compare_shape(
                f"{file} has {SNAPSHOT_PREFIX}{name}",
                t,
                (len(want), *shapes[name]),
                f"{config_file} (with {len(want)} snapshot steps)",
                "[snap, " + PARAM_AXES[name][1:],
            )
    return params, snapshots


def _check_float(t: torch.Tensor, name: str, file: str) -> None:
    if not t.is_floating_point():
        raise RunDirError(f"{file} has {name} of dtype {t.dtype}; it must be a float tensor")


def _split_history(
    tensors: dict[str, torch.Tensor], config: RunConfig, where: Where
) -> tuple[torch.Tensor, torch.Tensor]:
    file, short, config_file = where
    for key in ("steps", "loss"):
        if key not in tensors:
            raise RunDirError(f"{file} has no tensor {key!r}")
    extra = sorted(set(tensors) - {"steps", "loss"})
    if extra:
        raise RunDirError(f"{file} has unexpected tensor {extra[0]!r}; expected steps and loss")
    steps, loss = tensors["steps"], tensors["loss"]
    if steps.dim() != 1 or steps.is_floating_point():
        raise RunDirError(
            f"{file} has steps of shape {list(steps.shape)} and dtype "
            f"{steps.dtype}; it must be a 1-D integer tensor"
        )
    _compare_shape(
        f"{short} has loss",
        loss,
        (steps.shape[0], config.n_instances),
        f"its steps and {config_file}",
        "[log, inst]",
    )
    return steps, loss


def _loss_from_metrics(
    metrics: Any, config: RunConfig, root: Path, key: str = "loss"
) -> torch.Tensor:
    file = root / METRICS_FILE
    if not isinstance(metrics, dict) or "loss" not in metrics:
        raise RunDirError(f"{file} must be a JSON object with a 'loss' list")
    values = metrics["loss"]
    if not isinstance(values, list) or not all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
    ):
        raise RunDirError(f"{file} has a {key!r} that is not a list of numbers")
    if len(values) != config.n_instances:
        raise RunDirError(
            f"{file} has {len(values)} values in {key!r} but {CONFIG_FILE} says "
            f"{config.n_instances} instances"
        )
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float32)


def _nonfinite_instances(t: torch.Tensor) -> list[int]:
    if t.numel() == 0:
        return []
    bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    return [int(i) for i in torch.nonzero(bad).flatten().tolist()]
