"""The training loop: many instances at once, gradients in closed form, Adam(W) on one flat buffer.

Per step the loop samples a fresh batch where the model lives, computes every instance's loss
gradient and applies one fused Adam update to a single flat tensor that holds all parameters of all
instances. Nothing is done per instance on the host. The gradient step runs on one of the paths of
:mod:`superposition.fastpaths`: the generic torch path (:meth:`ToyModel.loss_and_grads` on a dense
batch; CUDA) or, on the CPU, numba kernels that only touch the present features. Instances that do
not fit the memory budget are trained in chunks, one after another, each with generators derived
from the seed, so a run is reproducible for the same config (and chunking, which the config
determines; the CPU fast paths do not even depend on the chunking).
"""

import dataclasses
import hashlib
import math
import os
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from superposition import __version__
from superposition._types import Float, Tensor
from superposition.config import RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError
from superposition.models import ToyModel
from superposition.results import Run

BETAS = (0.9, 0.999)
EPS = 1e-8


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from the run's seed and a purpose (stable across Python versions)."""
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def stream_key(seed: int, *keys: object) -> int:
    """The key of a counter-based stream of the CPU kernels (:mod:`superposition.kernels`), drawn
    from a generator seeded by ``derive_seed(seed, *keys)``: name the stream by what it feeds (an
    instance's identity, not its position), and it is the same whatever else is trained."""
    generator = torch.Generator().manual_seed(derive_seed(seed, *keys))
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use 'cpu'")
    return device


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based ``step``: linear warm-up, then constant, linear or cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = (step - cfg.warmup_steps) / span
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - progress)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


# --------------------------------------------------------------------------------------------------
# parameters


def param_shapes(config: RunConfig, n_inst: int) -> dict[str, tuple[int, ...]]:
    n, m = config.data.n_features, config.model.n_hidden
    shapes = {"W": (n_inst, n, m), "b": (n_inst, n)}
    if not config.model.is_tied:
        shapes["W_dec"] = (n_inst, n, m)
    return shapes


def init_params(config: RunConfig, seeds: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Xavier-normal W (std sqrt(2 / (n + m)) per instance) and b = 0, as in the paper's notebook.

    ``seeds`` holds one (config seed, index within that config) pair per instance: each instance
    draws from its own generator, so its initial weights do not depend on how the run is chunked
    or stacked. (The notebook applies torch's xavier_normal_ to the stacked [inst, ...] tensor,
    which makes the scale depend on the number of instances; we use the per-instance fan-in and
    fan-out.)
    """
    n, m = config.data.n_features, config.model.n_hidden
    std = math.sqrt(2.0 / (n + m))
    shapes = param_shapes(config, len(seeds))
    out = {name: torch.zeros(shape) for name, shape in shapes.items()}
    for j, (seed, k) in enumerate(seeds):
        gen = torch.Generator().manual_seed(derive_seed(seed, "init", k))
        out["W"][j] = torch.randn((n, m), generator=gen) * std
        if "W_dec" in out:
            out["W_dec"][j] = torch.randn((n, m), generator=gen) * std
    return out


class FlatParams:
    """All parameters of a chunk in one contiguous buffer, with named views (and the same for the
    gradient and the Adam moments), so the optimiser is a handful of kernels per step."""

    def __init__(self, init: dict[str, torch.Tensor], device: torch.device):
        self.shapes = {k: tuple(v.shape) for k, v in init.items()}
        total = sum(v.numel() for v in init.values())
        self.flat = torch.empty(total, device=device)
        self.grad = torch.zeros(total, device=device)
        self.params = self._views(self.flat)
        self.grads = self._views(self.grad)
        for k, v in init.items():
            self.params[k].copy_(v)

    def _views(self, buf: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for k, shape in self.shapes.items():
            size = math.prod(shape)
            out[k] = buf[offset : offset + size].view(shape)
            offset += size
        return out


class AdamFlat:
    """Adam / AdamW (PyTorch's update rule) on one flat parameter buffer."""

    def __init__(self, params: FlatParams, cfg: TrainConfig):
        self.p, self.g = params.flat, params.grad
        self.m = torch.zeros_like(self.p)
        self.v = torch.zeros_like(self.p)
        self.cfg = cfg
        self.t = 0

    def step(self, lr: float) -> None:
        self.t += 1
        b1, b2 = BETAS
        wd = self.cfg.weight_decay
        if wd:
            if self.cfg.optimizer == "adamw":
                self.p.mul_(1.0 - lr * wd)
            else:
                self.g.add_(self.p, alpha=wd)
        self.m.lerp_(self.g, 1.0 - b1)
        self.v.mul_(b2).addcmul_(self.g, self.g, value=1.0 - b2)
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        denom = (self.v.sqrt() / math.sqrt(bc2)).add_(EPS)
        self.p.addcdiv_(self.m, denom, value=-lr / bc1)


# --------------------------------------------------------------------------------------------------
# chunking


def default_memory_budget(device: torch.device) -> float:
    """A quarter of the device's memory, in bytes."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 4
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 * 2**30


def bytes_per_instance(config: RunConfig) -> int:
    """Peak bytes one instance needs during a step (float32): about five [batch, feat] tensors
    (input, output, difference, gradient, a temporary) and four [batch, hidden] ones, plus
    parameters, gradients and Adam moments; and the held-out evaluation's own batches."""
    n, m, batch = config.data.n_features, config.model.n_hidden, config.train.batch_size
    n_params = sum(math.prod(s[1:]) for s in param_shapes(config, 1).values())
    step = 5 * batch * n + 4 * batch * m + 4 * n_params
    return 4 * max(step, 5 * min(config.train.eval_samples, EVAL_BATCH) * n)


def chunk_size(config: RunConfig, device: torch.device, instances: int | None = None) -> int:
    """How many of ``instances`` (default: the config's) one chunk may train within the budget."""
    budget = config.train.memory_budget_gb
    budget_bytes = budget * 2**30 if budget is not None else default_memory_budget(device)
    total = config.n_instances if instances is None else instances
    return max(1, min(total, int(budget_bytes // bytes_per_instance(config))))


# --------------------------------------------------------------------------------------------------
# the loop

EVAL_BATCH = 4096


@dataclass
class StepInfo:
    """What a callback sees at a logging step."""

    step: int
    instances: range
    loss: torch.Tensor
    model: ToyModel


Callback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class Instances:
    """What differs between the instances of one batched training: per-instance density and
    importance rows and the (config seed, index within that config) pair every random stream of
    the instance is derived from. Instances of compatible configs stack into one training."""

    density: Float[Tensor, "inst feat"]
    importance: Float[Tensor, "inst feat"]
    seeds: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, config: RunConfig) -> "Instances":
        seed = config.train.seed
        return cls(
            density=FeatureDistribution.from_config(config).density,
            importance=importance_from_config(config),
            seeds=tuple((seed, k) for k in range(config.n_instances)),
        )

    @classmethod
    def cat(cls, parts: Sequence["Instances"]) -> "Instances":
        return cls(
            density=torch.cat([p.density for p in parts]),
            importance=torch.cat([p.importance for p in parts]),
            seeds=tuple(s for p in parts for s in p.seeds),
        )

    def __len__(self) -> int:
        return len(self.seeds)

    def rows(self, sl: slice) -> "Instances":
        return Instances(self.density[sl], self.importance[sl], self.seeds[sl])

    def stream_keys(self, purpose: str) -> np.ndarray:
        """One key per instance for the fast paths' counter-based streams."""
        return np.array([stream_key(seed, purpose, k) for seed, k in self.seeds], dtype=np.uint64)


def stack_key(config: RunConfig) -> tuple[Any, ...]:
    """Configs with equal keys can train as one batched training: the same shapes, model, feature
    sets and training settings; density, importances and seeds may differ per instance."""
    train_cfg = dataclasses.replace(config.train, seed=0, instances=1)
    return (
        config.data.n_features,
        config.data.correlated,
        config.data.anticorrelated,
        config.signed,
        config.model.kind,
        config.model.n_hidden,
        config.model.is_tied,
        train_cfg,
    )


def train(
    config: RunConfig,
    *,
    progress: bool | None = None,
    callbacks: Sequence[Callback] = (),
    path: str = "auto",
) -> Run:
    """Train every instance of ``config`` and return the :class:`Run`.

    ``progress`` shows a progress bar (default: when stderr is a terminal). Callbacks are called at
    every logging step (``config.train.log_every``) with a :class:`StepInfo`. ``path`` forces one
    implementation of the step (see :mod:`superposition.fastpaths`; "auto" picks it from the config
    and device, and the choice is recorded in ``Run.info["path"]``).
    """
    return train_many([config], progress=progress, callbacks=callbacks, path=path)[0]


def train_many(
    configs: Sequence[RunConfig],
    *,
    progress: bool | None = None,
    callbacks: Sequence[Callback] = (),
    path: str = "auto",
) -> list[Run]:
    """Train compatible configs (equal :func:`stack_key`) as one batched training, their instances
    stacked on the ``inst`` axis and chunked by the memory budget; return one :class:`Run` each.

    Every instance's initial weights and random streams derive from its own config's seed and its
    index within that config, so on the CPU's fused path (n_features x n_hidden <= 256) each
    returned run is bit-identical to ``train(config)`` alone, however the configs were stacked or
    chunked; on the sparse path the batched matmuls round differently for different stackings (the
    data are the same; results agree to ~1e-7 relative). On CUDA the torch path draws each chunk's
    batches from one generator: results are reproducible for the same stacking and chunking.
    """
    from superposition.fastpaths import PATHS, choose_path

    if not configs:
        raise ConfigError("train_many needs at least one config")
    template = configs[0]
    key = stack_key(template)
    for i, c in enumerate(configs[1:], start=1):
        if stack_key(c) != key:
            raise ConfigError(
                f"config {i} cannot share a training with config 0: shapes, model, feature sets "
                "and training settings (all but seed, instances, density and importance) must agree"
            )
    cfg = template.train
    device = resolve_device(cfg.device)
    if path not in PATHS:
        raise ConfigError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
    if path == "auto":
        path = choose_path(template, device)
    elif path != "torch" and device.type != "cpu":
        raise ConfigError(f"the {path!r} path runs on the CPU only; use 'torch' or 'auto'")
    table = Instances.cat([Instances.of(c) for c in configs])
    size = chunk_size(template, device, len(table))
    started = time.perf_counter()
    bar = _progress_bar(template, progress, math.ceil(len(table) / size))
    parts = []
    for start in range(0, len(table), size):
        rows = range(start, min(start + size, len(table)))
        parts.append(_train_chunk(template, table, rows, device, callbacks, bar, path))
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - started
    info = {
        "version": __version__,
        "device": str(device),
        "path": path,
        "chunk_instances": size,
        "chunks": len(parts),
        "stacked_configs": len(configs),
        "seconds": round(elapsed, 3),
        "steps_per_second": round(cfg.steps * len(parts) / elapsed, 2),
    }
    merged = {k: torch.cat([p[k] for p in parts]) for k in ("loss",)}
    params = {k: torch.cat([p["params"][k] for p in parts]) for k in parts[0]["params"]}
    history = torch.cat([p["history_loss"] for p in parts], dim=1)
    snaps = {k: torch.cat([p["snapshots"][k] for p in parts], dim=1) for k in parts[0]["snapshots"]}
    runs, offset = [], 0
    for c in configs:
        sl = slice(offset, offset + c.n_instances)
        offset = sl.stop
        runs.append(
            Run(
                config=c,
                params={k: v[sl].clone() for k, v in params.items()},
                loss=merged["loss"][sl].clone(),
                history_steps=parts[0]["history_steps"],
                history_loss=history[:, sl].clone(),
                snapshots={k: v[:, sl].clone() for k, v in snaps.items()},
                info=dict(info),
            )
        )
    return runs


def _progress_bar(config: RunConfig, progress: bool | None, chunks: int) -> Any:
    import sys

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.train.steps * chunks, unit="step", desc="training", leave=False)


def _train_chunk(
    config: RunConfig,
    table: Instances,
    rows: range,
    device: torch.device,
    callbacks: Sequence[Callback],
    bar: Any,
    path: str,
) -> dict[str, Any]:
    cfg = config.train
    chunk = table.rows(slice(rows.start, rows.stop))
    dist = FeatureDistribution(
        density=chunk.density.to(device),
        correlated=config.data.correlated,
        anticorrelated=config.data.anticorrelated,
        signed=config.signed,
    )
    importance = chunk.importance.to(device)
    flat = FlatParams(init_params(config, chunk.seeds), device)
    model = ToyModel(config.model.kind, **flat.params)
    adam = AdamFlat(flat, cfg)
    step_grads = _step_function(config, path, chunk, rows, dist, importance, model, flat, device)
    snap_at = set(cfg.snapshot_steps)
    snapshots: dict[str, list[torch.Tensor]] = {k: [] for k in flat.params}
    log_steps: list[int] = []
    log_loss: list[torch.Tensor] = []
    reported = 0

    def snapshot() -> None:
        for k, v in flat.params.items():
            snapshots[k].append(v.detach().to("cpu", copy=True))

    for step in range(cfg.steps):
        if step in snap_at:
            snapshot()
        logging = step % cfg.log_every == 0 or step == cfg.steps - 1
        loss = step_grads(step, logging)
        adam.step(lr_at(step, cfg))
        if logging:
            assert loss is not None
            log_steps.append(step)
            log_loss.append(loss.to("cpu"))
            info = StepInfo(step=step, instances=rows, loss=loss, model=model)
            for cb in callbacks:
                cb(info)
            if bar is not None:
                bar.update(step + 1 - reported)
                reported = step + 1
    if cfg.steps in snap_at:
        snapshot()
    final = _final_loss(config, path, chunk, rows, dist, importance, model, device)
    return {
        "params": {k: v.detach().to("cpu", copy=True) for k, v in flat.params.items()},
        "loss": final.to("cpu"),
        "history_steps": torch.tensor(log_steps, dtype=torch.long),
        "history_loss": torch.stack(log_loss),
        "snapshots": {k: torch.stack(v) for k, v in snapshots.items() if v},
    }


def _step_function(
    config: RunConfig,
    path: str,
    chunk: Instances,
    rows: range,
    dist: FeatureDistribution,
    importance: torch.Tensor,
    model: ToyModel,
    flat: FlatParams,
    device: torch.device,
) -> Callable[[int, bool], torch.Tensor | None]:
    """``f(step, with_loss)``: write one step's gradients into ``flat.grad`` on the chosen path."""
    cfg = config.train
    if path == "torch":
        gen = torch.Generator(device=device).manual_seed(
            derive_seed(cfg.seed, "data", rows.start, rows.stop)
        )

        def torch_step(step: int, with_loss: bool) -> torch.Tensor | None:
            x = dist.sample(cfg.batch_size, gen)
            return model.loss_and_grads(x, importance, flat.grads, with_loss=with_loss)

        return torch_step
    from superposition.fastpaths import FastStep

    keys = chunk.stream_keys("data-stream")
    fast = FastStep(path, dist, importance, model, flat.grads, cfg.batch_size, keys)
    return lambda step, with_loss: fast(step, with_loss=with_loss)


def _final_loss(
    config: RunConfig,
    path: str,
    chunk: Instances,
    rows: range,
    dist: FeatureDistribution,
    importance: torch.Tensor,
    model: ToyModel,
    device: torch.device,
) -> torch.Tensor:
    """Held-out loss: on the CPU fast paths from per-instance streams (so it too is independent of
    stacking and chunking), on the torch path from the chunk's own generator."""
    samples = config.train.eval_samples
    if path == "torch":
        gen = torch.Generator(device=device).manual_seed(
            derive_seed(config.train.seed, "eval", rows.start, rows.stop)
        )
        return evaluate(model, dist, importance, samples, gen)
    from superposition.fastpaths import fast_sample_dense

    keys = chunk.stream_keys("eval-stream")
    # one instance at a time: torch's batched matmuls and reductions pick their kernels and
    # summation order by the whole tensor's shape, which would make an instance's held-out loss
    # depend (in its last bits) on the instances trained beside it
    alone = [
        ToyModel(model.kind, **{p: v[k : k + 1] for p, v in model.params().items()})
        for k in range(len(chunk))
    ]
    total = torch.zeros(len(chunk), dtype=torch.float64)
    with torch.no_grad():
        for i, done in enumerate(range(0, samples, EVAL_BATCH)):
            n = min(EVAL_BATCH, samples - done)
            x = fast_sample_dense(dist, keys, i, n)
            for k, one in enumerate(alone):
                total[k] += one.loss(x[k : k + 1], importance[k : k + 1]).double()[0] * n
    return (total / samples).float()


@torch.no_grad()
def evaluate(
    model: ToyModel,
    dist: FeatureDistribution,
    importance: torch.Tensor,
    samples: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mean loss of each instance over ``samples`` fresh samples, drawn in batches."""
    total = torch.zeros(dist.n_instances, device=importance.device)
    done = 0
    while done < samples:
        n = min(EVAL_BATCH, samples - done)
        total += model.loss(dist.sample(n, generator), importance) * n
        done += n
    return total / samples


class _CallableModule(types.ModuleType):
    """This module, callable as its :func:`train` function.

    ``superposition.train`` names both this module and the function ``sp.train(config)``; once
    anything imports the module, Python makes the module the package's ``train`` attribute, which
    would turn a user's second ``sp.train(config)`` into "'module' object is not callable"."""

    def __call__(
        self,
        config: RunConfig,
        *,
        progress: bool | None = None,
        callbacks: Sequence[Callback] = (),
        path: str = "auto",
    ) -> Run:
        return train(config, progress=progress, callbacks=callbacks, path=path)


sys.modules[__name__].__class__ = _CallableModule
