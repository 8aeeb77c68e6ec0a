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

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from superposition import __version__
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


def init_params(config: RunConfig, instances: range) -> dict[str, torch.Tensor]:
    """Xavier-normal W (std sqrt(2 / (n + m)) per instance) and b = 0, as in the paper's notebook.

    Each instance draws from its own generator, so its initial weights do not depend on how the run
    is chunked. (The notebook applies torch's xavier_normal_ to the stacked [inst, ...] tensor,
    which makes the scale depend on the number of instances; we use the per-instance fan-in and
    fan-out.)
    """
    n, m = config.data.n_features, config.model.n_hidden
    std = math.sqrt(2.0 / (n + m))
    shapes = param_shapes(config, len(instances))
    out = {name: torch.zeros(shape) for name, shape in shapes.items()}
    for j, k in enumerate(instances):
        gen = torch.Generator().manual_seed(derive_seed(config.train.seed, "init", k))
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


def chunk_size(config: RunConfig, device: torch.device) -> int:
    budget = config.train.memory_budget_gb
    budget_bytes = budget * 2**30 if budget is not None else default_memory_budget(device)
    return max(1, min(config.n_instances, int(budget_bytes // bytes_per_instance(config))))


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
    from superposition.fastpaths import PATHS, choose_path

    cfg = config.train
    device = resolve_device(cfg.device)
    if path not in PATHS:
        raise ConfigError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
    if path == "auto":
        path = choose_path(config, device)
    elif path != "torch" and device.type != "cpu":
        raise ConfigError(f"the {path!r} path runs on the CPU only; use 'torch' or 'auto'")
    size = chunk_size(config, device)
    started = time.perf_counter()
    bar = _progress_bar(config, progress)
    parts = []
    for start in range(0, config.n_instances, size):
        instances = range(start, min(start + size, config.n_instances))
        parts.append(_train_chunk(config, instances, device, callbacks, bar, path))
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - started
    run = _merge(config, parts)
    run.info.update(
        {
            "version": __version__,
            "device": str(device),
            "path": path,
            "chunk_instances": size,
            "chunks": len(parts),
            "seconds": round(elapsed, 3),
            "steps_per_second": round(cfg.steps * len(parts) / elapsed, 2),
        }
    )
    return run


def _progress_bar(config: RunConfig, progress: bool | None) -> Any:
    import sys

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    chunks = math.ceil(config.n_instances / chunk_size(config, resolve_device(config.train.device)))
    return tqdm(total=config.train.steps * chunks, unit="step", desc="training", leave=False)


def _train_chunk(
    config: RunConfig,
    instances: range,
    device: torch.device,
    callbacks: Sequence[Callback],
    bar: Any,
    path: str,
) -> dict[str, Any]:
    cfg = config.train
    full_dist = FeatureDistribution.from_config(config, device)
    rows = slice(instances.start, instances.stop)
    dist = FeatureDistribution(
        density=full_dist.density[rows],
        correlated=full_dist.correlated,
        anticorrelated=full_dist.anticorrelated,
        signed=full_dist.signed,
    )
    importance = importance_from_config(config, device)[rows]
    flat = FlatParams(init_params(config, instances), device)
    model = ToyModel(config.model.kind, **flat.params)
    adam = AdamFlat(flat, cfg)
    step_grads = _step_function(config, path, instances, dist, importance, model, flat, device)
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
            info = StepInfo(step=step, instances=instances, loss=loss, model=model)
            for cb in callbacks:
                cb(info)
            if bar is not None:
                bar.update(step + 1 - reported)
                reported = step + 1
    if cfg.steps in snap_at:
        snapshot()
    eval_gen = torch.Generator(device=device).manual_seed(
        derive_seed(cfg.seed, "eval", instances.start, instances.stop)
    )
    final = evaluate(model, dist, importance, cfg.eval_samples, eval_gen)
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
    instances: range,
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
            derive_seed(cfg.seed, "data", instances.start, instances.stop)
        )

        def torch_step(step: int, with_loss: bool) -> torch.Tensor | None:
            x = dist.sample(cfg.batch_size, gen)
            return model.loss_and_grads(x, importance, flat.grads, with_loss=with_loss)

        return torch_step
    from superposition.fastpaths import FastStep, draw_key

    # one key for the whole run: instance k's stream depends on (key, step, k), not on chunking
    key = draw_key(torch.Generator().manual_seed(derive_seed(cfg.seed, "data-stream")))
    fast = FastStep(path, dist, importance, model, flat.grads, cfg.batch_size, key, instances.start)
    return lambda step, with_loss: fast(step, with_loss=with_loss)


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


def _merge(config: RunConfig, parts: list[dict[str, Any]]) -> Run:
    return Run(
        config=config,
        params={k: torch.cat([p["params"][k] for p in parts]) for k in parts[0]["params"]},
        loss=torch.cat([p["loss"] for p in parts]),
        history_steps=parts[0]["history_steps"],
        history_loss=torch.cat([p["history_loss"] for p in parts], dim=1),
        snapshots={
            k: torch.cat([p["snapshots"][k] for p in parts], dim=1) for k in parts[0]["snapshots"]
        },
    )
