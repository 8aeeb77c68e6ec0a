"""Loggers: training's loss and geometry sent to Weights & Biases or TensorBoard as it goes.

A :class:`Logger` takes scalars named ``GROUP/METRIC`` at a training step. The trainers call it
through their callbacks (:func:`toy_callback` for :func:`superposition.training.train`, a sweep's
chunks and, with the decoder as W, the SAE trainer): at every logging step, for each *group* of
instances (the seeds of one density and importance, of one sweep point, of one SAE setting) it
logs the mean over the group of

``loss``
    the training loss at that step;
``feature_norm``
    ``||W_i||`` averaged over the features (about 1 represented, 0 not; Section 2);
``represented``
    how many features have ``||W_i|| >= 0.5``;
``dimensions_per_feature``
    ``D* = m / ||W||_F^2`` (Section 4: 1 for a dimension each, 1/2 for antipodal pairs);
``superposition``
    ``sum_{j != i} (W_i_hat . W_j)^2`` averaged over the features (Section 2).

The two backends are optional extras (``pip install 'toy-superposition[wandb]'`` or
``[tensorboard]``); :func:`open_logger` refuses a missing one with a sentence naming the extra,
before anything trains. A logger of your own is a subclass of :class:`Logger`.
"""

import importlib.util
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import RunConfig
from superposition.errors import ConfigError, install_hint

REPRESENTED_NORM = 0.5
"""A feature counts as represented when its norm is at least this (the shape classifier's)."""
METRICS = ("loss", "feature_norm", "represented", "dimensions_per_feature", "superposition")
"""What is logged for every group, in this order."""
BACKENDS = ("wandb", "tensorboard")
"""The loggers :func:`open_logger` builds; each is the extra of the same name."""
_MODULE = {"wandb": "wandb", "tensorboard": "tensorboard"}
# (what must be importable for each backend: torch.utils.tensorboard needs the tensorboard package)


class Logger:
    """Where scalars go. Subclass it and override :meth:`log` (and :meth:`close`)."""

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record ``scalars`` (named ``GROUP/METRIC``) at training step ``step``. Steps may come
        again from 0 when a run is trained in several chunks one after another."""
        raise NotImplementedError

    def describe(self, groups: Mapping[str, Mapping[str, Any]]) -> None:
        """What each group is (its density, sweep values ...), said once before training."""

    def close(self) -> None:
        """Flush and finish (called once, after training)."""

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TensorBoardLogger(Logger):
    """Event files under ``log_dir`` (``tensorboard --logdir LOG_DIR``), one scalar tag per
    ``GROUP/METRIC``; the groups' values go in as a text summary."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def describe(self, groups: Mapping[str, Mapping[str, Any]]) -> None:
        lines = [f"{name}: {dict(values)}" for name, values in groups.items()]
        self.writer.add_text("groups", "  \n".join(lines))

    def close(self) -> None:
        self.writer.close()


class WandbLogger(Logger):
    """A Weights & Biases run (``wandb.init``; ``WANDB_MODE=offline`` keeps it on disk). Chunks
    trained one after another each start again at step 0, so the x axis is a metric of its own,
    ``train_step``, and W&B's own step just counts the calls."""

    def __init__(
        self,
        *,
        project: str = "superposition",
        name: str | None = None,
        directory: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        import wandb

        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            dir=None if directory is None else str(directory),
            config=dict(config or {}),
            reinit="create_new",
        )
        self.run.define_metric("train_step")
        self.run.define_metric("*", step_metric="train_step")

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({"train_step": step, **scalars})

    def describe(self, groups: Mapping[str, Mapping[str, Any]]) -> None:
        self.run.config.update({"groups": {k: dict(v) for k, v in groups.items()}})

    def close(self) -> None:
        self.run.finish()


def check_backend(kind: str) -> None:
    """Refuse an unknown logger or one whose extra is not installed (one sentence)."""
    if kind not in BACKENDS:
        raise ConfigError(f"unknown logger {kind!r}; choose one of {', '.join(BACKENDS)}")
    if importlib.util.find_spec(_MODULE[kind]) is None:
        raise ConfigError(
            f"the {kind} logger needs the {kind!r} extra; install it with: {install_hint(kind)}"
        )


def open_logger(
    kind: str,
    *,
    log_dir: str | Path = "logs",
    name: str = "run",
    config: Mapping[str, Any] | None = None,
) -> Logger:
    """A ``"wandb"`` or ``"tensorboard"`` logger; TensorBoard writes to ``log_dir/name``, W&B
    keeps its files under ``log_dir`` (``log_dir/wandb/...``) with ``config`` as the run's."""
    check_backend(kind)
    if kind == "tensorboard":
        logger: Logger = TensorBoardLogger(Path(log_dir) / name)
        if config:
            logger.describe({"config": config})
        return logger
    return WandbLogger(name=name, directory=log_dir, config=config)


# --------------------------------------------------------------------------------------------------
# what is logged


def instance_metrics(
    loss: Float[Tensor, " inst"], W: Float[Tensor, "inst feat hidden"]
) -> dict[str, Float[Tensor, " inst"]]:
    """Each of :data:`METRICS` per instance (on the CPU, float64)."""
    W = W.detach().to("cpu", torch.float64)
    norms = geometry.feature_norms(W)
    return {
        "loss": loss.detach().to("cpu", torch.float64),
        "feature_norm": norms.mean(-1),
        "represented": (norms >= REPRESENTED_NORM).sum(-1).double(),
        "dimensions_per_feature": geometry.dimensions_per_feature(W),
        "superposition": geometry.superposition(W).mean(-1),
    }


class GroupLog:
    """Per-instance metrics gathered into group means and sent to a logger.

    ``groups`` maps a group's name to its instances (rows of the trained ``inst`` axis). A group
    is logged at a step once all its instances have been seen at that step, so a group split over
    chunks that train one after another is still logged once, whole.
    """

    def __init__(self, logger: Logger, groups: Mapping[str, Sequence[int]]):
        self.logger = logger
        self.group_of: dict[int, str] = {}
        self.size: dict[str, int] = {}
        for name, rows in groups.items():
            self.size[name] = len(rows)
            for r in rows:
                self.group_of[r] = name
        self.pending: dict[tuple[str, int], list[dict[str, float]]] = {}

    def add(
        self,
        step: int,
        rows: Sequence[int],
        loss: Float[Tensor, " inst"],
        W: Float[Tensor, "inst feat hidden"],
    ) -> None:
        """Metrics of instances ``rows`` (in the order of ``loss`` and ``W``) at ``step``."""
        per = instance_metrics(loss, W)
        done: dict[str, float] = {}
        for j, row in enumerate(rows):
            name = self.group_of.get(row)
            if name is None:
                continue
            seen = self.pending.setdefault((name, step), [])
            seen.append({k: float(v[j]) for k, v in per.items()})
            if len(seen) == self.size[name]:
                del self.pending[(name, step)]
                for metric in METRICS:
                    values = [s[metric] for s in seen if math.isfinite(s[metric])]
                    done[f"{name}/{metric}"] = sum(values) / len(values) if values else math.nan
        if done:
            self.logger.log(step, done)


def toy_groups(config: RunConfig, prefix: str = "", offset: int = 0) -> dict[str, range]:
    """A run's groups of seeds (:attr:`RunConfig.groups`) as ``{prefix}group{g}`` -> its rows,
    from row ``offset`` on."""
    seeds = config.train.instances
    return {
        f"{prefix}group{g}": range(offset + g * seeds, offset + (g + 1) * seeds)
        for g in range(config.n_groups)
    }


def toy_group_values(config: RunConfig, prefix: str = "") -> dict[str, dict[str, float]]:
    """What each of :func:`toy_groups`'s groups is: its density and importance."""
    return {
        f"{prefix}group{g}": {
            "density": group.density,
            "importance_decay": group.importance_decay,
            "relative_importance": group.relative_importance,
        }
        for g, group in enumerate(config.groups)
    }


def toy_callback(logger: Logger, groups: Mapping[str, Sequence[int]]) -> Callable[[Any], None]:
    """A callback for :func:`superposition.training.train_many` that logs each group's loss and
    geometry at every logging step (``groups``: name -> rows of the stacked ``inst`` axis)."""
    log = GroupLog(logger, groups)

    def on_log(info: Any) -> None:  # a superposition.training.StepInfo
        log.add(info.step, info.instances, info.loss, info.model.W)

    return on_log


def run_callback(logger: Logger, config: RunConfig) -> Callable[[Any], None]:
    """A callback for :func:`superposition.training.train` ``(config, callbacks=[...])``: each of
    the run's groups of seeds (``group0``, ``group1`` ... in :attr:`RunConfig.groups` order) is
    described to ``logger`` now and logged at every logging step."""
    logger.describe(toy_group_values(config))
    return toy_callback(logger, toy_groups(config))


__all__ = [
    "BACKENDS",
    "METRICS",
    "GroupLog",
    "Logger",
    "TensorBoardLogger",
    "WandbLogger",
    "check_backend",
    "instance_metrics",
    "open_logger",
    "run_callback",
    "toy_callback",
    "toy_group_values",
    "toy_groups",
]
