"""The SAE directory: an :class:`~superposition.sae.results.SAERun` on disk, never as a pickle.

Layout of ``DIR/`` (schema version :data:`SAE_SCHEMA_VERSION`), like a run directory::

    config.json          "kind": "sae", "schema_version", "version" (the package's), "created_at",
                         "sae" (SAEConfig.to_dict()), "source" ({"path", "config": the toy run's
                         config, "instances": the toy instances used}), "instances" (each SAE
                         instance's toy instance, n_latents, coefficient, k, seed) and "info"
    weights.safetensors  W_enc, W_dec [inst, latent, hidden], b_enc [inst, latent], b_dec
                         [inst, hidden], log_threshold (JumpReLU), "toy.<param>" (the toy model's
                         parameters for the instances used), "snapshot.W_dec" and
                         "snapshot_steps" when kept
    history.safetensors  "steps" [log] and "loss" [log, inst]
    metrics.json         every score per SAE instance (lists of length inst) and one summary per
                         group of seeds
    figures/             drawn before the folder is renamed into place, when save_sae is given
                         a drawing function (the command line always does)

Writing is atomic like a run directory's (:func:`superposition.files.atomic_folder`): a hidden
temporary sibling, fsynced, renamed into place. Loading checks every file against ``config.json``
and raises :class:`~superposition.errors.RunDirError` with one sentence.
"""

import datetime
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from superposition import __version__, files, store
from superposition.config import RunConfig
from superposition.errors import ConfigError, RunDirError
from superposition.sae.config import SAEConfig, SAEInstance, layout
from superposition.sae.results import SCORE_KEYS, SAERun

SAE_SCHEMA_VERSION = 1
KIND = "sae"
CONFIG_KEYS = (
    "kind", "schema_version", "version", "created_at", "sae", "source", "instances", "info",
)  # fmt: skip
TOY_PREFIX = "toy."
PathLike = str | os.PathLike[str]


def is_sae_dir(path: PathLike) -> bool:
    """Whether ``path`` holds every file of an SAE directory and says it is one (not validated)."""
    p = Path(path)
    if not store.is_run_dir(p):
        return False
    try:
        raw = files.read_json(p / store.CONFIG_FILE)
    except RunDirError:
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND


def check_sae_target(target: Path, *, overwrite: bool, hint: str = "overwrite=True") -> None:
    """Refuse a toy-model run (never replaced by SAEs), an SAE directory unless ``overwrite``, a
    file or a non-empty folder."""
    if store.is_run_dir(target) and not is_sae_dir(target):
        raise RunDirError(
            f"{target} holds a toy-model run; write the SAEs to another folder"
        )
    store.check_target(target, overwrite=overwrite, hint=hint)


def save_sae(
    sae_run: SAERun,
    path: PathLike,
    *,
    overwrite: bool = False,
    figures: Callable[[SAERun, Path], object] | None = None,
) -> Path:
    """Write ``sae_run`` to the SAE directory ``path`` atomically and return the path.

    ``figures(sae_run, figures_dir)``, when given (e.g. ``superposition.plots.sae.draw_sae``),
    draws into the temporary folder's ``figures/`` before the rename: the directory appears with
    its figures or, when drawing fails or is interrupted, not at all.
    """
    target = Path(path)
    check_sae_target(target, overwrite=overwrite)
    with files.atomic_folder(target) as tmp:
        _write_contents(sae_run, tmp)
        if figures is not None:
            figures(sae_run, tmp / store.FIGURES_DIR)
    return target


def metrics_dict(sae_run: SAERun) -> dict[str, Any]:
    """The content of ``metrics.json``: each score per instance, and per group of seeds the mean
    and best MMCS and recovered fraction."""
    s = sae_run.scores
    out: dict[str, Any] = {"instances": [i.to_dict() for i in sae_run.instances]}
    for key in (*SCORE_KEYS, "resampled", "final_train_loss", "max_cosine", "represented"):
        if key in s:
            out[key] = files.jsonable(s[key].tolist())
    groups = []
    for first, members in sae_run.groups():
        mm = s["mmcs"][members]
        rf = s["recovered_fraction"][members]
        groups.append(
            {
                **{k: v for k, v in first.to_dict().items() if k != "seed"},
                "instances": members,
                "mmcs_mean": _num(mm.nanmean()),
                "mmcs_max": _num(mm.nan_to_num(-1.0).max()),
                "recovered_fraction_mean": _num(rf.nanmean()),
                "recovered_fraction_max": _num(rf.nan_to_num(-1.0).max()),
                "best": members[int(mm.nan_to_num(-2.0).argmax())],
            }
        )
    out["groups"] = groups
    return out


def _num(t: torch.Tensor) -> float | None:
    v = float(t)
    return v if math.isfinite(v) and v >= -1.0 else None


def _write_contents(sae_run: SAERun, tmp: Path) -> None:
    # atomic_folder renames the whole folder into place: its files need no rename of their own
    config = {
        "kind": KIND,
        "schema_version": SAE_SCHEMA_VERSION,
        "version": __version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sae": sae_run.config.to_dict(),
        "source": {
            "path": sae_run.source_path,
            "config": sae_run.source_config.to_dict(),
            "instances": sae_run.toy_instances,
        },
        "instances": [i.to_dict() for i in sae_run.instances],
        "info": files.jsonable(sae_run.info),
    }
    files.write_json(tmp / store.CONFIG_FILE, config, atomic=False)
    tensors = dict(sae_run.params)
    for k, v in sae_run.toy_params.items():
        tensors[TOY_PREFIX + k] = v
    if sae_run.snapshots:
        tensors["snapshot.W_dec"] = sae_run.snapshots["W_dec"]
        tensors["snapshot_steps"] = torch.tensor(sae_run.snapshot_steps, dtype=torch.int64)
    meta = {"kind": KIND}
    files.write_safetensors(tmp / store.WEIGHTS_FILE, tensors, metadata=meta, atomic=False)
    history = {"steps": sae_run.history_steps, "loss": sae_run.history_loss}
    files.write_safetensors(tmp / store.HISTORY_FILE, history, atomic=False)
    metrics = metrics_dict(sae_run)
    files.write_json(tmp / store.METRICS_FILE, metrics, compact_values=True, atomic=False)
    (tmp / store.FIGURES_DIR).mkdir()


# --------------------------------------------------------------------------------------------------
# reading


def load_sae(path: PathLike) -> SAERun:
    """Read and validate an SAE directory written by :func:`save_sae`."""
    root = Path(path)
    if not root.is_dir():
        raise RunDirError(f"SAE directory {root} does not exist")
    missing = [n for n in store.REQUIRED_FILES if not (root / n).is_file()]
    if missing:
        raise RunDirError(f"{root} is not a complete SAE directory: missing {', '.join(missing)}")
    file = root / store.CONFIG_FILE
    raw = files.read_json(file)
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise RunDirError(f"{root} is not an SAE directory ({file} does not say kind 'sae')")
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown:
        raise RunDirError(f"{file} has unknown key {unknown[0]!r}")
    if raw.get("schema_version") != SAE_SCHEMA_VERSION:
        raise RunDirError(
            f"{file} has schema_version {raw.get('schema_version')!r}; this version of "
            f"superposition reads SAE directories of schema_version {SAE_SCHEMA_VERSION}"
        )
    try:
        config = SAEConfig.from_dict(raw["sae"], source=f"{file} [sae]")
        source = raw["source"]
        store.check_stored_sizes(source["config"], root / store.WEIGHTS_FILE, TOY_PREFIX + "W")
        source_cfg = store.config_from_json(source["config"], root)
        toy_instances = [int(t) for t in source["instances"]]
        instances = [SAEInstance(**i) for i in raw["instances"]]
    except RunDirError:
        raise
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{file} is malformed ({exc.__class__.__name__}: {exc})") from None
    n_feat = source_cfg.data.n_features
    if instances != layout(config, toy_instances, n_feat):
        raise RunDirError(f"{file} lists SAE instances that do not match its sae config")
    tensors = files.read_safetensors(root / store.WEIGHTS_FILE)
    params, toy_params, snaps, snap_steps = _split(tensors, config, source_cfg, instances,
                                                   toy_instances, root)  # fmt: skip
    history = files.read_safetensors(root / store.HISTORY_FILE)
    if set(history) != {"steps", "loss"} or history["loss"].shape[1:] != (len(instances),):
        raise RunDirError(f"{root / store.HISTORY_FILE} must hold steps [log] and loss [log, inst]")
    metrics = files.read_json(root / store.METRICS_FILE)
    scores = _scores(metrics, len(instances), n_feat, root)
    return SAERun(
        config=config,
        source_config=source_cfg,
        source_path=source.get("path"),
        toy_instances=toy_instances,
        toy_params=toy_params,
        instances=instances,
        params=params,
        history_steps=history["steps"],
        history_loss=history["loss"],
        snapshot_steps=snap_steps,
        snapshots=snaps,
        scores=scores,
        info=dict(raw.get("info", {})),
    )


def _split(
    tensors: dict[str, torch.Tensor],
    config: SAEConfig,
    source: RunConfig,
    instances: list[SAEInstance],
    toy_instances: list[int],
    root: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], list[int]]:
    file = root / store.WEIGHTS_FILE
    n, m = len(instances), source.model.n_hidden
    lat = max(i.n_latents for i in instances)
    want = {"W_enc": (n, lat, m), "b_enc": (n, lat), "W_dec": (n, lat, m), "b_dec": (n, m)}
    if config.architecture == "jumprelu":
        want["log_threshold"] = (n, lat)
    if config.architecture in ("batchtopk", "matryoshka"):
        want["threshold"] = (n,)
    t, f = len(toy_instances), source.data.n_features
    toy_want = {"W": (t, f, m), "b": (t, f)}
    if not source.model.is_tied:
        toy_want["W_dec"] = (t, f, m)
    want.update({TOY_PREFIX + k: v for k, v in toy_want.items()})
    for name, shape in want.items():
        if name not in tensors:
            raise RunDirError(f"{file} has no tensor {name!r}")
        if tuple(tensors[name].shape) != shape:
            raise RunDirError(
                f"{file} has {name} of shape {list(tensors[name].shape)} but config.json says "
                f"{list(shape)}"
            )
    extra = sorted(set(tensors) - set(want) - {"snapshot.W_dec", "snapshot_steps"})
    if extra:
        raise RunDirError(f"{file} has unexpected tensor {extra[0]!r}")
    params = {k: tensors[k] for k in want if not k.startswith(TOY_PREFIX)}
    toy = {k[len(TOY_PREFIX) :]: tensors[k] for k in want if k.startswith(TOY_PREFIX)}
    snaps: dict[str, torch.Tensor] = {}
    steps: list[int] = []
    if "snapshot.W_dec" in tensors:
        if "snapshot_steps" not in tensors:
            raise RunDirError(f"{file} has snapshots but no snapshot_steps tensor")
        steps = [int(s) for s in tensors["snapshot_steps"].tolist()]
        if tuple(tensors["snapshot.W_dec"].shape) != (len(steps), n, lat, m):
            raise RunDirError(f"{file} has snapshot.W_dec of the wrong shape")
        snaps["W_dec"] = tensors["snapshot.W_dec"]
    return params, toy, snaps, steps


def _scores(metrics: Any, n: int, n_feat: int, root: Path) -> dict[str, torch.Tensor]:
    file = root / store.METRICS_FILE
    if not isinstance(metrics, dict):
        raise RunDirError(f"{file} must hold a JSON object")
    out: dict[str, torch.Tensor] = {}
    for key in (*SCORE_KEYS, "resampled", "final_train_loss", "max_cosine", "represented"):
        values = metrics.get(key)
        if values is None:
            raise RunDirError(f"{file} has no {key!r}")
        try:
            t = torch.tensor(
                [[math.nan if v is None else v for v in row] if isinstance(row, list)
                 else (math.nan if row is None else row) for row in values],
                dtype=torch.bool if key == "represented" else torch.float32,
            )  # fmt: skip
        except (TypeError, ValueError):
            raise RunDirError(f"{file} has a {key!r} that is not a list of numbers") from None
        shape = (n, n_feat) if key in ("max_cosine", "represented") else (n,)
        if tuple(t.shape) != shape:
            raise RunDirError(
                f"{file} has {key!r} of shape {list(t.shape)}, expected {list(shape)}"
            )
        out[key] = t
    return out
