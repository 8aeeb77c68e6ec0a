"""Training: one generic loop (:func:`fit`) shared by the toy-model and the SAE trainers, and the
toy-model trainer on top of it (:func:`train`, :func:`train_many`).

Per step the loop asks a :class:`~superposition.steps.Step` for every instance's gradients (the
step owns sampling, loss and gradient for a chunk of instances; :func:`superposition.steps.
choose_step` picks its implementation by estimated cost), applies one fused Adam update to a single
flat tensor that holds all parameters of all instances, and calls its hooks: loss history,
snapshots, progress, early stop and the user's callbacks. Nothing is done per instance on the
host. Instances that do not fit the memory budget are trained in chunks, one after another, each
with random streams derived from its instances' seeds, so a run is reproducible for the same
config (on the CPU, whatever the chunking: every instance draws from its own streams).
"""

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from superposition import __version__
from superposition._types import Float, Tensor
from superposition.config import RunConfig, TrainConfig, param_shapes
from superposition.errors import ConfigError
from superposition.losses import Loss, get_loss
from superposition.models import ToyModel, input_overlap
from superposition.results import Run
from superposition.rng import derive_seed
from superposition.steps import (
    EVAL_BATCH,
    Instances,
    Sampler,
    Step,
    StepSpec,
    get_source,
    plan_steps,
)

BETAS = (0.9, 0.999)
EPS = 1e-8


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


def model_overlap(config: RunConfig, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The fixed input overlap ``G`` of an 'mlp' model with ``n_inputs`` (None otherwise)."""
    d = config.model.n_inputs
    return None if d is None else input_overlap(config.data.n_features, d, device=str(device))


def init_params(config: RunConfig, seeds: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Xavier-normal W (std sqrt(2 / (n + m)) per instance) and b = 0, as in the paper's notebook.

    ``seeds`` holds one (config seed, index within that config) pair per instance: each instance
    draws from its own generator, so its initial weights do not depend on how the run is chunked
    or stacked. (The notebook applies torch's xavier_normal_ to the stacked [inst, ...] tensor,
    which makes the scale depend on the number of instances; we use the per-instance fan-in and
    fan-out.) Neuron biases (the 'mlp' model) start at ``ModelConfig.hidden_bias_init``
    (default 0).
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
    if "b_hidden" in out:
        out["b_hidden"].fill_(config.model.hidden_bias_init or 0.0)
    return out


class FlatParams:
    """All parameters of a chunk in one contiguous buffer, with named views (and the same for the
    gradient and the Adam moments), so the optimiser is a handful of kernels per step."""

    def __init__(self, init: dict[str, torch.Tensor], device: torch.device):
        self.shapes = {k: tuple(v.shape) for k, v in init.items()}
        total = sum(v.numel() for v in init.values())
        self.flat = torch.empty(total, device=device)
        self.grad = torch.zeros(total, device=device)
        self.params = self.views(self.flat)
        self.grads = self.views(self.grad)
        for k, v in init.items():
            self.params[k].copy_(v)

    def views(self, buf: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views of a buffer laid out like the parameters (the gradient, Adam's moments)."""
        out, offset = {}, 0
        for k, shape in self.shapes.items():
            size = math.prod(shape)
            out[k] = buf[offset : offset + size].view(shape)
            offset += size
        return out


ROW_PARAMS = ("W", "W_dec")
"""The parameters whose rows are the features' directions (what negative weight decay acts on)."""


class AdamFlat:
    """Adam / AdamW (PyTorch's update rule) on one flat parameter buffer.

    Positive weight decay is the usual one, on every parameter: AdamW shrinks them by ``lr * wd``
    per step (decoupled), Adam adds ``wd * p`` to the gradient. Negative weight decay is Liu, Liu
    & Gore 2025's weight growth (the AdamW of their toy model): it acts on the feature rows
    ``W_i`` only and pulls each toward unit norm, the gradient of ``(|wd| / 2) (||W_i|| - 1)^2``,
    decoupled for AdamW and added to the gradient for Adam. A plain negative decay would grow the
    weights without bound.
    """

    def __init__(self, params: FlatParams, cfg: TrainConfig):
        self.p, self.g = params.flat, params.grad
        self.m = torch.zeros_like(self.p)
        self.v = torch.zeros_like(self.p)
        self.cfg = cfg
        self.t = 0
        self.rows = [(params.params[k], params.grads[k]) for k in ROW_PARAMS if k in params.params]

    def step(self, lr: float) -> None:
        self.t += 1
        b1, b2 = BETAS
        wd = self.cfg.weight_decay
        adamw = self.cfg.optimizer == "adamw"
        if wd > 0:
            if adamw:
                self.p.mul_(1.0 - lr * wd)
            else:
                self.g.add_(self.p, alpha=wd)
        elif wd < 0:
            for w, g in self.rows:
                # d/dW_i of (1/2)(||W_i|| - 1)^2 = (1 - 1/||W_i||) W_i: shrinks rows longer than
                # 1, grows shorter ones (by at most 1 per unit of lr * |wd| when ||W_i|| -> 0)
                norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True).add_(EPS)
                pull = w * (1.0 - 1.0 / norm)
                if adamw:
                    w.sub_(pull, alpha=-lr * wd)
                else:
                    g.add_(pull, alpha=-wd)
        self.m.lerp_(self.g, 1.0 - b1)
        self.v.mul_(b2).addcmul_(self.g, self.g, value=1.0 - b2)
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        denom = (self.v.sqrt() / math.sqrt(bc2)).add_(EPS)
        self.p.addcdiv_(self.m, denom, value=-lr / bc1)


# --------------------------------------------------------------------------------------------------
# the generic loop


class Hook:
    """Something the loop calls as it goes; override what you need.

    ``before_step(step)`` runs before step ``step``'s gradients (snapshots of the weights "at step
    s" are taken there), ``after_update(step)`` after the optimiser's update (an SAE puts its
    decoder rows back on the sphere there), ``on_log(step, loss)`` at every logging step with the
    per-instance training loss (return True to stop training after this step), and
    ``on_end(steps_done)`` once at the end.
    """

    def before_step(self, step: int) -> None:
        pass

    def after_update(self, step: int) -> None:
        pass

    def on_log(self, step: int, loss: Tensor) -> bool | None:
        return None

    def on_end(self, steps_done: int) -> None:
        pass


class LossHistory(Hook):
    """The logged steps and per-instance losses (on the CPU)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[Tensor] = []

    def on_log(self, step: int, loss: Tensor) -> None:
        self.steps.append(step)
        self.losses.append(loss.detach().to("cpu"))

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(steps [log], loss [log, inst])``."""
        return torch.tensor(self.steps, dtype=torch.long), torch.stack(self.losses)


class Snapshots(Hook):
    """Copies of parameters at the given steps (step s: before step s's update; the last step
    count: after training)."""

    def __init__(self, params: dict[str, Tensor], steps: Sequence[int]):
        self.params = params
        self.at = set(steps)
        self.copies: dict[str, list[Tensor]] = {k: [] for k in params}

    def _take(self) -> None:
        for k, v in self.params.items():
            self.copies[k].append(v.detach().to("cpu", copy=True))

    def before_step(self, step: int) -> None:
        if step in self.at:
            self._take()

    def on_end(self, steps_done: int) -> None:
        if steps_done in self.at:
            self._take()

    def tensors(self) -> dict[str, Tensor]:
        """Each parameter's copies on a leading ``snap`` axis (none when no step was asked)."""
        return {k: torch.stack(v) for k, v in self.copies.items() if v}


class Progress(Hook):
    """Advances a progress bar (anything with ``update(n)``) by the steps done at each log."""

    def __init__(self, bar: Any):
        self.bar = bar
        self.reported = 0

    def on_log(self, step: int, loss: Tensor) -> None:
        self.bar.update(step + 1 - self.reported)
        self.reported = step + 1


class EarlyStop(Hook):
    """Stops when no instance's logged loss improved by more than ``min_delta`` (relative) for
    ``patience`` logging steps in a row."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"patience must be an integer >= 1, got {patience!r}")
        if not math.isfinite(min_delta) or min_delta < 0:
            raise ConfigError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.patience, self.min_delta = patience, min_delta
        self.best: Tensor | None = None
        self.waited = 0
        self.stopped_at: int | None = None

    def on_log(self, step: int, loss: Tensor) -> bool:
        loss = loss.detach().to("cpu")
        if self.best is None or bool((loss < self.best * (1 - self.min_delta)).any()):
            self.best = loss if self.best is None else torch.minimum(self.best, loss)
            self.waited = 0
            return False
        self.waited += 1
        if self.waited >= self.patience:
            self.stopped_at = step
            return True
        return False


StepFunction = Callable[..., Tensor | None]
"""``f(step, with_loss=...)``: write one step's gradients, return the loss when asked."""


def fit(
    step_fn: StepFunction,
    optimizer: AdamFlat,
    *,
    steps: int,
    lr: Callable[[int], float],
    log_every: int,
    hooks: Sequence[Hook] = (),
) -> int:
    """Run up to ``steps`` optimisation steps; return how many ran (fewer when a hook stopped).

    Each step: ``before_step`` hooks, the gradients, the optimiser's update at ``lr(step)``,
    ``after_update`` hooks, and on logging steps (every ``log_every`` and the last) the loss to
    the ``on_log`` hooks.
    """
    done = 0
    for step in range(steps):
        for h in hooks:
            h.before_step(step)
        logging = step % log_every == 0 or step == steps - 1
        loss = step_fn(step, with_loss=logging)
        optimizer.step(lr(step))
        for h in hooks:
            h.after_update(step)
        done = step + 1
        if logging:
            assert loss is not None
            stop = [h.on_log(step, loss) for h in hooks]
            if any(stop):
                break
    for h in hooks:
        h.on_end(done)
    return done


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where stderr is no terminal, yet a bar shows)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and type(get()).__name__ == "ZMQInteractiveShell"


def progress_bar(
    total: int, desc: str, progress: bool | None, *, unit: str = "step", **options: Any
) -> Any:
    """The package's one kind of progress bar: tqdm's ``auto`` bar, a widget in Jupyter and text
    on a terminal, when ``progress`` (default: stderr is a terminal, or in a Jupyter kernel);
    else None. ``options`` go to tqdm (``initial``, ``bar_format``, ``leave`` ...)."""
    if progress is None:
        progress = sys.stderr.isatty() or in_notebook()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=desc, **{"leave": False, **options})


# --------------------------------------------------------------------------------------------------
# memory: the budget, the estimates and the chunks


def machine_memory(device: torch.device) -> int:
    """The bytes of memory ``device`` has: the GPU's, or the machine's physical memory."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def default_memory_budget(device: torch.device) -> float:
    """A quarter of the device's memory, in bytes."""
    return machine_memory(device) / 4


def budget_bytes(budget_gb: float | None, device: torch.device) -> float:
    """The bytes one training may use on ``device``: ``budget_gb`` GiB (default: a quarter of the
    device's memory), never more than the device has."""
    if budget_gb is None:
        return default_memory_budget(device)
    return float(min(budget_gb * 2**30, machine_memory(device)))


def memory_budget(config: RunConfig, device: torch.device) -> float:
    """The bytes a chunk may use: the config's budget or the device's default (at most what the
    device has)."""
    return budget_bytes(config.train.memory_budget_gb, device)


def gib(n_bytes: int | float) -> str:
    """A number of bytes in GiB, three significant digits, however large (a Python int can be
    beyond what a float holds: then a power of ten)."""
    try:
        return f"{n_bytes / 2**30:.3g} GiB"
    except OverflowError:
        return f"10^{int((int(n_bytes).bit_length() - 31) * math.log10(2))} GiB"


def describe_budget(budget_gb: float | None, device: torch.device) -> str:
    """The limit :func:`budget_bytes` sets, in words, with how to raise it."""
    total = gib(machine_memory(device))
    where = "the GPU's" if device.type == "cuda" else "this machine's"
    limit = gib(budget_bytes(budget_gb, device))
    if budget_gb is None:
        return (
            f"the memory budget of {limit} (a quarter of {where} {total}; memory_budget_gb "
            "raises it)"
        )
    if budget_gb * 2**30 >= machine_memory(device):
        return f"all of {where} {total} of memory"
    return f"the memory budget of {limit} (memory_budget_gb; {where} memory is {total})"


def check_memory(
    what: str, need: int, limit: int | float, limit_text: str, advice: str, detail: str = ""
) -> None:
    """Refuse ``need`` bytes above ``limit`` with one sentence: ``what`` (and ``detail``) names
    the values that need them, ``limit_text`` the limit, ``advice`` what to change."""
    if need > limit:
        raise ConfigError(
            f"{what} needs about {gib(need)}{detail}, more than {limit_text}; {advice}"
        )


def bytes_per_instance(config: RunConfig) -> int:
    """Peak bytes one instance needs during a step (float32): about five [batch, feat] tensors
    (input, output, difference, gradient, a temporary) and four [batch, hidden] ones, plus
    parameters, gradients and Adam moments, a finite training set, and the held-out evaluation's
    own batches. Python integers throughout, so absurd sizes give an absurd number, not an
    overflow."""
    n, m, batch = config.data.n_features, config.model.n_hidden, config.train.batch_size
    n_params = sum(math.prod(s[1:]) for s in param_shapes(config, 1).values())
    dataset = (config.data.dataset_size or 0) * n if config.data.source == "finite" else 0
    if dataset:
        batch = min(batch, config.data.dataset_size or batch)
    step = 5 * batch * n + 4 * batch * m + 4 * n_params + 2 * dataset
    return 4 * max(step, 5 * min(config.train.eval_samples, EVAL_BATCH) * n + dataset)


HOST_BYTES_PER_INSTANCE = 4096
"""Bytes of Python bookkeeping per instance on the host (seeds, stream keys, per-instance
tensors), besides its results (measured: about 3 KiB per instance for a million instances)."""


def kept_bytes_per_instance(config: RunConfig) -> int:
    """Bytes one instance holds on the host until the run is returned: its parameters (three
    copies: the chunk's, the concatenation and the run's own), its snapshots, its logged losses,
    its density and importance rows, and :data:`HOST_BYTES_PER_INSTANCE`."""
    train_cfg, n = config.train, config.data.n_features
    n_params = sum(math.prod(s[1:]) for s in param_shapes(config, 1).values())
    n_log = train_cfg.steps // train_cfg.log_every + 2
    snaps = len(set(train_cfg.snapshot_steps))
    return 4 * (3 * n_params * (1 + snaps) + 3 * n_log + 2 * n) + HOST_BYTES_PER_INSTANCE


def check_sizes(configs: Sequence[RunConfig], device: torch.device | None = None) -> None:
    """Refuse, with one sentence naming the sizes, the estimate and the limit, a training that
    does not fit: one instance's step (with its finite training set) must fit the memory budget
    of ``device`` (default: the configs'), and what all instances keep until the run is returned
    must fit in half of the host's memory. Arithmetic on Python integers only: nothing is
    allocated, and absurd sizes give absurd estimates, never an overflow."""
    template = configs[0]
    device = device if device is not None else resolve_device(template.train.device)
    data, train_cfg = template.data, template.train
    sizes = (
        f"n_features {data.n_features}, n_hidden {template.model.n_hidden}, batch_size "
        f"{train_cfg.batch_size}"
    )
    budget = train_cfg.memory_budget_gb
    finite = data.source == "finite"
    check_memory(
        f"dataset_size {data.dataset_size}" if finite else "one instance",
        bytes_per_instance(template),
        budget_bytes(budget, device),
        describe_budget(budget, device),
        "use smaller sizes",
        f" per instance ({sizes})" if finite else f" to train ({sizes})",
    )
    total = sum(c.n_instances for c in configs)
    kept = sum(c.n_instances * kept_bytes_per_instance(c) for c in configs)
    host = machine_memory(torch.device("cpu"))
    check_memory(
        f"keeping the results of {total:,} instance{'s' if total != 1 else ''}",
        kept,
        host / 2,
        f"half of this machine's {gib(host)}",
        "train fewer instances, log less often or keep fewer snapshots",
        f" (steps {train_cfg.steps} logged every {train_cfg.log_every}, "
        f"{len(train_cfg.snapshot_steps)} snapshot(s))",
    )


def chunk_size(config: RunConfig, device: torch.device, instances: int | None = None) -> int:
    """How many of ``instances`` (default: the config's) one chunk may train within the budget."""
    total = config.n_instances if instances is None else instances
    return max(1, min(total, int(memory_budget(config, device) // bytes_per_instance(config))))


# --------------------------------------------------------------------------------------------------
# the toy-model trainer


@dataclass
class StepInfo:
    """What a callback sees at a logging step. Set ``stop = True`` to end training after it."""

    step: int
    instances: range
    loss: torch.Tensor
    model: ToyModel
    stop: bool = field(default=False)


Callback = Callable[[StepInfo], None]


class _Callbacks(Hook):
    """The user's callbacks, called with a :class:`StepInfo` at each logging step."""

    def __init__(self, callbacks: Sequence[Callback], rows: range, model: ToyModel):
        self.callbacks, self.rows, self.model = callbacks, rows, model

    def on_log(self, step: int, loss: Tensor) -> bool:
        info = StepInfo(step=step, instances=self.rows, loss=loss, model=self.model)
        for cb in self.callbacks:
            cb(info)
        return info.stop


def stack_key(config: RunConfig) -> tuple[Any, ...]:
    """Configs with equal keys can train as one batched training: the same shapes, model, feature
    sets, data source, loss and training settings; density, importances and seeds may differ per
    instance."""
    train_cfg = dataclasses.replace(config.train, seed=0, instances=1)
    data = config.data
    return (
        data.n_features,
        data.correlated,
        data.anticorrelated,
        data.source,
        data.dataset_size,
        config.signed,
        config.model.kind,
        config.model.n_hidden,
        config.model.is_tied,
        config.model.hidden_bias_init,
        config.model.n_inputs,
        train_cfg,
    )


def check(
    configs: Sequence[RunConfig], *, sampler: Sampler | None = None, step: str = "auto"
) -> None:
    """Refuse, before anything is allocated or written, what :func:`train_many` would refuse:
    configs that cannot share a training, an unknown loss, data source or step, a device that is
    not there, sizes that do not fit the memory budget (:func:`check_sizes`), a sampler without
    its source."""
    if not configs:
        raise ConfigError("train_many needs at least one config")
    template = configs[0]
    key = stack_key(template)
    for i, c in enumerate(configs[1:], start=1):
        if stack_key(c) != key:
            raise ConfigError(
                f"config {i} cannot share a training with config 0: shapes, model, feature sets, "
                "data source, loss and training settings (all but seed, instances, density and "
                "importance) must agree"
            )
    get_loss(template.train.loss)
    get_source(template.data.source)
    device = resolve_device(template.train.device)
    if step != "auto":
        from superposition.steps import STEPS

        if step not in STEPS:
            raise ConfigError(f"step must be one of auto, {', '.join(STEPS)}; got {step!r}")
    check_sizes(configs, device)
    data = template.data
    if (sampler is None) != (data.source != "sampler"):
        if sampler is None:
            raise ConfigError(
                "data source 'sampler' needs a sampler: pass sampler=fn, with fn(batch, "
                "generator) returning a [batch, inst, feat] tensor"
            )
        raise ConfigError(
            f"a sampler was passed but the data source is {data.source!r}; set "
            "DataConfig(source='sampler')"
        )
    if sampler is not None:
        total = sum(c.n_instances for c in configs)
        if chunk_size(template, device, total) < total:
            raise ConfigError(
                f"a sampler draws every instance at once, but {total} instances do not fit one "
                "chunk of the memory budget; raise memory_budget_gb or train fewer instances"
            )


def train(
    config: RunConfig,
    *,
    progress: bool | None = None,
    callbacks: Sequence[Callback] = (),
    hooks: Sequence[Hook] = (),
    sampler: Sampler | None = None,
    step: str = "auto",
) -> Run:
    """Train every instance of ``config`` and return the :class:`Run`.

    ``progress`` shows a progress bar (default: when stderr is a terminal or in Jupyter). Callbacks
    are called at every logging step (``config.train.log_every``) with a :class:`StepInfo` (set its
    ``stop`` to end training); ``hooks`` are :class:`Hook` objects for finer control (e.g.
    :class:`EarlyStop`); a logger (:mod:`superposition.loggers`) comes in as a callback,
    :func:`superposition.loggers.run_callback`. ``sampler`` is the data of
    ``DataConfig(source="sampler")``: ``sampler(batch, generator)`` returns a
    ``[batch, inst, feat]`` tensor. ``step`` forces one implementation of the step
    (:data:`superposition.steps.STEPS`; "auto" picks the cheapest that can run the config), and the
    choice is recorded in ``Run.info["step"]``.
    """
    return train_many(
        [config], progress=progress, callbacks=callbacks, hooks=hooks, sampler=sampler, step=step
    )[0]


def train_many(
    configs: Sequence[RunConfig],
    *,
    progress: bool | None = None,
    callbacks: Sequence[Callback] = (),
    hooks: Sequence[Hook] = (),
    sampler: Sampler | None = None,
    step: str = "auto",
) -> list[Run]:
    """Train compatible configs (equal :func:`stack_key`) as one batched training, their instances
    stacked on the ``inst`` axis and chunked by the memory budget; return one :class:`Run` each.

    Every instance's initial weights and random streams derive from its own config's seed and its
    index within that config, so on the CPU's fused step (n_features x n_hidden <= 256) each
    returned run is bit-identical to ``train(config)`` alone, however the configs were stacked or
    chunked; on the sparse and torch steps the batched matmuls round differently for different
    stackings (the data are the same; results agree to ~1e-7 relative). On CUDA the chunk draws
    from one generator: results are reproducible for the same stacking and chunking.
    """
    check(configs, sampler=sampler, step=step)
    template = configs[0]
    device = resolve_device(template.train.device)
    loss = get_loss(template.train.loss)
    table = Instances.cat([Instances.of(c) for c in configs])
    size = chunk_size(template, device, len(table))
    started = time.perf_counter()
    work = _plan(configs, table, device, sampler, step)
    loss = get_loss(template.train.loss)
    n_chunks = math.ceil(len(table) / size)
    bar = progress_bar(template.train.steps * len(work), "training", progress)
    parts = [
        _train_chunk(spec, step_cls, rows, callbacks, hooks, bar)
        for spec, step_cls, rows in work
    ]
    chosen = [step_cls.name for _, step_cls, _ in work]
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - started
    steps_done = min(p["steps_done"] for p in parts)
    info = {
        "version": __version__,
        "device": str(device),
        "step": ",".join(dict.fromkeys(chosen)),
        "loss": loss.name,
        "source": template.data.source,
        "chunk_instances": size,
        "chunks": n_chunks,
        "stacked_configs": len(configs),
        "steps_done": steps_done,
        "seconds": round(elapsed, 3),
        "steps_per_second": round(sum(p["steps_done"] for p in parts) / elapsed, 2),
    }
    cat = lambda key: torch.cat([p[key] for p in parts])  # noqa: E731
    final = cat("loss")
    dataset_loss = cat("dataset_loss") if parts[0]["dataset_loss"] is not None else None
    params = {k: torch.cat([p["params"][k] for p in parts]) for k in parts[0]["params"]}
    # chunks stopped early by a hook may have logged fewer steps: keep the common prefix
    n_log = min(len(p["history_steps"]) for p in parts)
    history = torch.cat([p["history_loss"][:n_log] for p in parts], dim=1)
    snaps = {k: torch.cat([p["snapshots"][k] for p in parts], dim=1) for k in parts[0]["snapshots"]}
    runs, offset = [], 0
    for c in configs:
        sl = slice(offset, offset + c.n_instances)
        offset = sl.stop
        runs.append(
            Run(
                config=c,
                params={k: v[sl].clone() for k, v in params.items()},
                loss=final[sl].clone(),
                history_steps=parts[0]["history_steps"][:n_log],
                history_loss=history[:, sl].clone(),
                snapshots={k: v[:, sl].clone() for k, v in snaps.items()},
                info=dict(info),
                dataset_loss=None if dataset_loss is None else dataset_loss[sl].clone(),
            )
        )
    return runs


def held_out_loss(
    config: RunConfig, params: dict[str, Tensor], *, sampler: Sampler | None = None
) -> Float[Tensor, " inst"]:
    """Each instance's loss on ``config.train.eval_samples`` fresh held-out samples, for weights
    made elsewhere (imported, edited by hand): the number :func:`train` records as ``Run.loss``
    and best-of-N compares. Evaluated on the CPU with the generic torch step."""
    get_source(config.data.source)
    if config.data.source == "sampler" and sampler is None:
        raise ConfigError("data source 'sampler' needs a sampler to evaluate on: pass sampler=fn")
    device = torch.device("cpu")
    table = Instances.of(config)
    spec = _spec(config, table, range(len(table)), device, get_loss(config.train.loss), sampler)
    on_device = {k: v.to(device, torch.float32) for k, v in params.items()}
    model = ToyModel(config.model.kind, **on_device, overlap=model_overlap(config, device))
    step_cls = plan_steps(spec, "torch")[0][1]
    return step_cls(spec, model, {}).held_out_loss(config.train.eval_samples)


def estimated_seconds(configs: Sequence[RunConfig], *, step: str = "auto") -> float:
    """Estimated seconds that :func:`train_many` would take on ``configs``: each planned step's
    cost model (:meth:`Step.cost`) times the steps, with no timing. Good for ordering work (the
    longest first), not as a promise: the models were fitted on one machine. ``configs`` must be
    able to share a training (see :func:`check`)."""
    device = resolve_device(configs[0].train.device)
    table = Instances.cat([Instances.of(c) for c in configs])
    work = _plan(configs, table, device, None, step)
    return configs[0].train.steps * sum(cls.cost(spec) for spec, cls, _ in work)


def _plan(
    configs: Sequence[RunConfig],
    table: Instances,
    device: torch.device,
    sampler: Sampler | None,
    step: str,
) -> list[tuple[StepSpec, type[Step], range]]:
    """Chunks by the memory budget; within a chunk, runs of instances that share a step (each
    instance's cheapest, so its step never depends on what it is stacked with)."""
    template = configs[0]
    loss = get_loss(template.train.loss)
    size = chunk_size(template, device, len(table))
    work: list[tuple[StepSpec, type[Step], range]] = []
    for start in range(0, len(table), size):
        chunk = range(start, min(start + size, len(table)))
        spec = _spec(template, table, chunk, device, loss, sampler)
        for rows, step_cls in plan_steps(spec, step):
            part = range(chunk.start + rows.start, chunk.start + rows.stop)
            work.append((_spec(template, table, part, device, loss, sampler), step_cls, part))
    return work


def _spec(
    config: RunConfig,
    table: Instances,
    rows: range,
    device: torch.device,
    loss: Loss,
    sampler: Sampler | None,
) -> StepSpec:
    return StepSpec(
        config=config,
        instances=table.rows(slice(rows.start, rows.stop)),
        device=device,
        loss=loss,
        source=config.data.source,
        sampler=sampler,
    )


def _train_chunk(
    spec: StepSpec,
    step_cls: type[Step],
    rows: range,
    callbacks: Sequence[Callback],
    hooks: Sequence[Hook],
    bar: Any,
) -> dict[str, Any]:
    config = spec.config
    cfg = config.train
    flat = FlatParams(init_params(config, spec.instances.seeds), spec.device)
    model = ToyModel(config.model.kind, **flat.params, overlap=model_overlap(config, spec.device))
    step = step_cls(spec, model, flat.grads)
    history = LossHistory()
    snapshots = Snapshots(flat.params, cfg.snapshot_steps)
    own: list[Hook] = [snapshots, history]
    if callbacks:
        own.append(_Callbacks(callbacks, rows, model))
    if bar is not None:
        own.append(Progress(bar))
    done = fit(
        step,
        AdamFlat(flat, cfg),
        steps=cfg.steps,
        lr=lambda s: lr_at(s, cfg),
        log_every=cfg.log_every,
        hooks=[*own, *hooks],
    )
    history_steps, history_loss = history.tensors()
    return {
        "params": {k: v.detach().to("cpu", copy=True) for k, v in flat.params.items()},
        "loss": step.held_out_loss(cfg.eval_samples),
        "dataset_loss": step.dataset_loss(),
        "history_steps": history_steps,
        "history_loss": history_loss,
        "snapshots": snapshots.tensors(),
        "steps_done": done,
    }


# the API in reading order (the docs list it so): what a user calls first, the loop's parts after
__all__ = [
    "train",
    "train_many",
    "held_out_loss",
    "estimated_seconds",
    "check",
    "StepInfo",
    "Callback",
    "Hook",
    "EarlyStop",
    "LossHistory",
    "Snapshots",
    "Progress",
    "fit",
    "StepFunction",
    "stack_key",
    "chunk_size",
    "memory_budget",
    "default_memory_budget",
    "bytes_per_instance",
    "resolve_device",
    "lr_at",
    "progress_bar",
    "param_shapes",
    "init_params",
    "FlatParams",
    "AdamFlat",
    "ROW_PARAMS",
    "BETAS",
    "EPS",
]
