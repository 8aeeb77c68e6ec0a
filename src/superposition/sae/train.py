"""Train many SAEs at once on the hidden activations of a trained toy model, then score them.

Each step samples fresh inputs from the toy run's own feature distribution for every SAE instance
(``FeatureDistribution.from_config(run.config)``, rows of the chosen toy instances), computes the
toy model's hidden activations ``h`` and takes one Adam step of every SAE on them: the parameters of
all instances live in one flat buffer (:class:`~superposition.training.FlatParams`), the optimiser
is the toy trainer's :class:`~superposition.training.AdamFlat` (plain Adam, no weight decay) and
the loop is the toy trainer's too (:func:`~superposition.training.fit`). After every
step the decoder rows are put back on the unit sphere: Sharkey et al. 2022 need it for the L1
penalty to mean anything, Gao et al. 2024 do the same for TopK, and we keep it for JumpReLU too so
that the three are scored on equal terms. Nothing is done per instance on the host.
"""

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from superposition import __version__
from superposition._types import Bool, Float, Tensor
from superposition.config import INSTANCES_WHY, MAX_INSTANCES, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError
from superposition.models import ToyModel
from superposition.results import Run
from superposition.rng import derive_seed, stream_key
from superposition.sae import metrics
from superposition.sae.config import SAEConfig, SAEInstance, layout
from superposition.sae.model import SparseAutoencoder
from superposition.sae.results import SAERun
from superposition.steps import EVAL_BATCH, cheapest
from superposition.training import (
    AdamFlat,
    FlatParams,
    Hook,
    LossHistory,
    Progress,
    Snapshots,
    budget_bytes,
    check_memory,
    describe_budget,
    fit,
    lr_at,
    progress_bar,
    resolve_device,
)

if TYPE_CHECKING:
    from superposition.loggers import Logger

RESAMPLE_ENCODER_SCALE = 0.2
"""Resampled encoder rows get this times the mean norm of the live ones (Bricken et al. 2023)."""


@dataclass
class SAEStepInfo:
    """What a callback sees at a logging step."""

    step: int
    loss: Float[Tensor, " inst"]
    sae: SparseAutoencoder


SAECallback = Callable[[SAEStepInfo], None]


@dataclass
class Setup:
    """Everything a training loop needs, gathered for the SAE instances on the ``inst`` axis."""

    instances: list[SAEInstance]
    toy_instances: list[int]
    toy: ToyModel
    dist: FeatureDistribution
    importance: Float[Tensor, "inst feat"]
    sae: SparseAutoencoder
    flat: FlatParams


def toy_instances_of(run: Run, config: SAEConfig) -> list[int]:
    """The toy instances whose activations are used: ``config.instance``, or best-of-N per group."""
    if config.instance is None:
        return run.best()
    if config.instance >= run.n_instances:
        raise ConfigError(
            f"instance must be below the run's {run.n_instances} instance(s), got {config.instance}"
        )
    return [config.instance]


def sae_bytes_per_instance(source: RunConfig, config: SAEConfig, n_latents: int) -> int:
    """Peak bytes one SAE instance of ``n_latents`` latents needs (float32): its parameters,
    gradients and Adam moments, its copy of the toy model, a step's [batch, feat], [batch, latent]
    and [batch, hidden] tensors (or the evaluation's, if larger), its decoder snapshots and its
    logged losses. Python integers: absurd sizes give absurd numbers, never an overflow."""
    n, m, lat = source.data.n_features, source.model.n_hidden, n_latents
    n_params = 2 * lat * m + 3 * lat + m
    toy = 2 * n * m + 3 * n
    step = config.batch_size * (2 * n + 6 * lat + 4 * m)
    evaluation = min(config.eval_samples, EVAL_BATCH) * (4 * n + 3 * lat + 3 * m)
    snapshots = config.snapshot_count(m) * lat * m
    n_log = config.steps // config.log_every + 2
    return 4 * (4 * n_params + toy + max(step, evaluation) + snapshots + n_log)


def check(source: RunConfig, config: SAEConfig, device: torch.device | None = None) -> None:
    """Refuse, before anything is allocated, SAEs that do not fit: all instances train at once,
    so their count (toy instances x the config's sweep) must stay within
    :data:`~superposition.config.MAX_INSTANCES` and their memory within the budget
    (``config.memory_budget_gb``, default a quarter of the device's memory); one sentence names
    the sizes, the estimate and the limit."""
    device = device if device is not None else resolve_device(config.device)
    n_toy = 1 if config.instance is not None else source.n_groups
    total = n_toy * config.instances_per_toy_instance
    if total > MAX_INSTANCES:
        raise ConfigError(
            f"{n_toy} toy instance(s) x {config.sweep_description} make {total:,} SAE instances, "
            f"more than the {MAX_INSTANCES:,} one training may hold ({INSTANCES_WHY}); pass "
            "instance=K or sweep fewer values"
        )
    n_max = max(config.dictionary_sizes(source.data.n_features))
    check_memory(
        f"training {total:,} SAE instance(s) at once",
        total * sae_bytes_per_instance(source, config, n_max),
        budget_bytes(config.memory_budget_gb, device),
        describe_budget(config.memory_budget_gb, device),
        "use fewer or smaller SAEs",
        f" (n_latents up to {n_max}, batch_size {config.batch_size}, n_features "
        f"{source.data.n_features}, n_hidden {source.model.n_hidden})",
    )


def setup(
    run: Run,
    config: SAEConfig,
    device: torch.device,
    instances: Sequence[SAEInstance] | None = None,
) -> Setup:
    """Build the toy model, distribution, SAE and flat parameters for ``instances`` (default: the
    config's whole layout)."""
    n_feat, n_hidden = run.config.data.n_features, run.config.model.n_hidden
    toy_used = toy_instances_of(run, config)
    plan = list(instances) if instances is not None else layout(config, toy_used, n_feat)
    if config.uses_k:
        for inst in plan:
            if inst.k > inst.n_latents:
                raise ConfigError(
                    f"k={inst.k} is more than the dictionary size n_latents={inst.n_latents}"
                )
    idx = torch.tensor([i.toy_instance for i in plan], dtype=torch.long)
    toy = ToyModel(
        run.config.model.kind,
        **{k: v[idx].to(device) for k, v in run.params.items()},
    )
    full = FeatureDistribution.from_config(run.config, device)
    dist = full.select(idx.to(device))
    importance = importance_from_config(run.config, device)[idx.to(device)]
    flat, sae = new_saes(config, plan, n_hidden, device)
    return Setup(plan, toy_used, toy, dist, importance, sae, flat)


def new_saes(
    config: SAEConfig, plan: Sequence[SAEInstance], n_hidden: int, device: torch.device
) -> tuple[FlatParams, SparseAutoencoder]:
    """The SAE instances of ``plan`` on ``device``, freshly initialised (:func:`init_params`) in
    one flat parameter buffer, each masked to its own dictionary size."""
    n_max = max(i.n_latents for i in plan)
    flat = FlatParams(init_params(config, plan, n_max, n_hidden), device)
    mask = torch.arange(n_max, device=device)[None, :] < torch.tensor(
        [i.n_latents for i in plan], device=device
    )[:, None]
    sae = SparseAutoencoder(
        config.architecture,
        **flat.params,
        coefficient=torch.tensor([i.coefficient for i in plan], device=device),
        k=torch.tensor([i.k for i in plan], dtype=torch.long, device=device),
        mask=mask,
        bandwidth=config.bandwidth,
        prefixes=config.prefixes(n_max) if config.architecture == "matryoshka" else (),
    )
    return flat, sae


def init_params(
    config: SAEConfig, plan: Sequence[SAEInstance], n_max: int, n_hidden: int
) -> dict[str, Tensor]:
    """Unit-norm random decoder rows, the encoder initialised to the decoder (Gao et al. 2024),
    zero biases. An instance's initial weights depend only on its seed and dictionary size, so a
    sweep over coefficients starts every coefficient from the same dictionaries."""
    n = len(plan)
    out = {
        "W_enc": torch.zeros(n, n_max, n_hidden),
        "b_enc": torch.zeros(n, n_max),
        "W_dec": torch.zeros(n, n_max, n_hidden),
        "b_dec": torch.zeros(n, n_hidden),
    }
    if config.architecture == "jumprelu":
        out["log_threshold"] = torch.full((n, n_max), math.log(config.threshold_init))
    for j, inst in enumerate(plan):
        gen = torch.Generator().manual_seed(
            derive_seed(config.seed, "sae-init", inst.seed, inst.n_latents)
        )
        d = torch.randn((inst.n_latents, n_hidden), generator=gen)
        d /= d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out["W_dec"][j, : inst.n_latents] = d
        out["W_enc"][j, : inst.n_latents] = d
    return out


SMALL_STEP = 1 << 21
"""Elements of the largest per-step tensor below which a CPU step runs on one thread."""


class _CPUSettings:
    """How many :func:`cpu_settings` blocks are open (they may nest, or run in several threads
    at once: the leaderboard trains two architectures side by side)."""

    lock = threading.Lock()
    depth = 0
    threads = 1


@contextlib.contextmanager
def cpu_settings(device: torch.device, largest: int) -> Iterator[None]:
    """Settings of torch's CPU kernels while training, restored afterwards (they are global:
    the outermost block sets them, and restores them when it closes; blocks opened inside it,
    in this thread or another, keep them).

    - Denormal floats are flushed to zero: the Adam moments of latents that stop firing decay
      geometrically into the denormal range, where the CPU computes 10-30x slower (measured: a
      5-in-2 sweep fell from ~1000 to ~90 steps/s); their values are meaningless there anyway.
    - A step whose tensors are small (below :data:`SMALL_STEP` elements) runs on one thread: at
      these sizes the threads' synchronisation costs more than it saves, and on a busy machine
      every op waits for a descheduled thread (measured: 200 steps of 8 SAEs took 15 s with two
      threads on a loaded 2-core machine, 0.2 s with one).
    """
    if device.type != "cpu":
        yield
        return
    state = _CPUSettings
    with state.lock:
        outermost = state.depth == 0
        state.depth += 1
        if outermost:
            state.threads = torch.get_num_threads()
            torch.set_flush_denormal(True)
            if largest < SMALL_STEP:
                torch.set_num_threads(1)
    try:
        yield
    finally:
        with state.lock:
            state.depth -= 1
            if outermost:
                torch.set_flush_denormal(False)
                torch.set_num_threads(state.threads)


def _adam_config(config: SAEConfig) -> TrainConfig:
    return TrainConfig(
        steps=config.steps,
        lr=config.lr,
        optimizer="adam",
        weight_decay=0.0,
        schedule=config.schedule,
        device="cpu",
    )


def normalize_decoder_(W_dec: Float[Tensor, "inst latent hidden"]) -> None:
    """Put every decoder row back on the unit sphere (masked, all-zero rows stay zero)."""
    W_dec.div_(W_dec.norm(dim=-1, keepdim=True).clamp_min_(1e-12))


def snapshot_steps(config: SAEConfig, n_hidden: int) -> list[int]:
    count = config.snapshot_count(n_hidden)
    if count == 0:
        return []
    if count == 1:
        return [config.steps]
    return sorted({round(i * config.steps / (count - 1)) for i in range(count)})


# --------------------------------------------------------------------------------------------------
# the loop


def train_sae(
    run: Run,
    config: SAEConfig,
    *,
    source_path: str | None = None,
    progress: bool | None = None,
    callbacks: Sequence[SAECallback] = (),
    path: str = "auto",
    logger: "Logger | None" = None,
) -> SAERun:
    """Train every SAE instance of ``config`` on ``run``'s activations and score it.

    ``progress`` shows a progress bar (default: when stderr is a terminal or in Jupyter);
    callbacks are called at every logging step with a :class:`SAEStepInfo`; ``logger``
    (:mod:`superposition.loggers`) gets each group of seeds' loss and decoder geometry
    (:func:`logger_callback`) at those steps.
    ``path`` picks the step's implementation:
    "fused" (relu_l1 on the CPU: :mod:`superposition.sae.fused`), "torch" (any architecture and
    device) or "auto" (fused where it applies); the choice is recorded in ``info["path"]``.
    """
    if not run.config.model.is_plain:
        raise ConfigError(
            "SAEs read the hidden layer of models without neuron biases or an input projection; "
            "this 'mlp' model (hidden_bias_init or n_inputs set) is not supported yet"
        )
    device = resolve_device(config.device)
    check(run.config, config, device)
    path = choose_path(config, device, path)
    s = setup(run, config, device)
    if logger is not None:
        callbacks = [*callbacks, logger_callback(logger, s.instances)]
    started = time.perf_counter()
    bar = progress_bar(config.steps, "training SAEs", progress)
    n_inst, n_lat, n_hidden = s.sae.W_dec.shape
    largest = n_inst * config.batch_size * max(n_lat, n_hidden, s.toy.W.shape[1])
    with cpu_settings(device, largest):
        history_steps, history_loss, snaps, resampled = train_loop(
            s, config, callbacks, bar, path=path
        )
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - started
        gen = torch.Generator(device=device).manual_seed(derive_seed(config.seed, "sae-eval"))
        scores = evaluate(s, config, gen)
    scores["resampled"] = resampled
    scores["final_train_loss"] = history_loss[-1]
    return SAERun(
        config=config,
        source_config=run.config,
        source_path=source_path,
        toy_instances=s.toy_instances,
        toy_params={k: v[s.toy_instances].clone() for k, v in run.params.items()},
        instances=s.instances,
        params=final_params(s.sae),
        history_steps=torch.tensor(history_steps, dtype=torch.long),
        history_loss=history_loss,
        snapshot_steps=snapshot_steps(config, run.config.model.n_hidden),
        snapshots={"W_dec": torch.stack(snaps)} if snaps else {},
        scores={k: v.to("cpu") for k, v in scores.items()},
        info={
            "version": __version__,
            "device": str(device),
            "seconds": round(elapsed, 3),
            "steps_per_second": round(config.steps / elapsed, 2),
            "path": path,
        },
    )


def final_params(sae: SparseAutoencoder) -> dict[str, Tensor]:
    """The trained parameters on the CPU, with BatchTopK's inference threshold."""
    out = {k: v.detach().to("cpu", copy=True) for k, v in sae.params().items()}
    if sae.threshold is not None:
        out["threshold"] = sae.threshold.detach().to("cpu", copy=True)
    return out


@dataclass(frozen=True)
class SAEStepSpec:
    """What an SAE step is asked to run: the SAEs of a config on a device."""

    config: SAEConfig
    device: torch.device


class TorchSAEStep:
    """The batched torch step (:meth:`SparseAutoencoder.loss_and_grads`): any architecture, any
    device."""

    name = "torch"

    @staticmethod
    def supports(spec: SAEStepSpec) -> bool:
        return True

    @staticmethod
    def cost(spec: SAEStepSpec) -> float:
        return 1.0


class FusedSAEStepChoice:
    """The fused CPU step (:mod:`superposition.sae.fused`): relu_l1 SAEs on the CPU. It draws only
    the present features and counts all-zero samples once, so where it runs it costs a fraction
    of the torch step (measured: 3-7x fewer seconds per step, ``benchmarks/bench_sae.py``)."""

    name = "fused"

    @staticmethod
    def supports(spec: SAEStepSpec) -> bool:
        return spec.device.type == "cpu" and spec.config.architecture == "relu_l1"

    @staticmethod
    def cost(spec: SAEStepSpec) -> float:
        return 0.3


SAE_STEPS = {"fused": FusedSAEStepChoice, "torch": TorchSAEStep}
"""The SAE step implementations, chosen like the toy trainer's (:func:`steps.cheapest`)."""


def choose_path(config: SAEConfig, device: torch.device, path: str = "auto") -> str:
    """The step implementation for ``config`` on ``device`` ("fused" or "torch")."""
    describe = f"{config.architecture} SAEs on {device.type} (it runs relu_l1 SAEs on the CPU only)"
    chosen = cheapest(SAE_STEPS, SAEStepSpec(config, device), path, what="path", describe=describe)
    return str(chosen.name)


def stream_keys(config: SAEConfig, instances: Sequence[SAEInstance]) -> np.ndarray:
    """One key per SAE instance for the fused step's counter-based streams, derived from what the
    instance is (not where it sits on the ``inst`` axis), so its batches are the same whatever it
    is trained beside."""
    return np.array(
        [
            stream_key(config.seed, "sae-data-stream", *dataclasses.astuple(inst))
            for inst in instances
        ],
        dtype=np.uint64,
    )


class _Step:
    """One SAE step on a :class:`Setup`: the gradients of every instance, on the torch step
    (activations drawn with a ``torch.Generator``) or the fused one (:class:`FusedSAEStep`, batches
    from per-instance streams); it records which latents fired, for resampling."""

    def __init__(self, s: Setup, config: SAEConfig, path: str):
        device = s.flat.flat.device
        self.s, self.batch = s, config.batch_size
        self.gen = torch.Generator(device=device).manual_seed(derive_seed(config.seed, "sae-data"))
        self.fired = torch.zeros_like(s.sae.mask)
        self.track = bool(config.resample_dead_every)
        self.h: Tensor | None = None
        self.fused = None
        if path == "fused":
            from superposition.sae.fused import FusedSAEStep

            keys = stream_keys(config, s.instances)
            self.fused = FusedSAEStep(s.sae, s.toy, s.dist, s.flat.grads, config.batch_size, keys)
            self.fired_np = self.fired.numpy()  # shares memory: the kernel ORs into it
        elif path != "torch":
            raise ConfigError(f"train_loop runs path 'torch' or 'fused', not {path!r}")

    def activations(self) -> Tensor:
        """A fresh batch of the toy model's hidden activations (the torch step's data)."""
        return self.s.toy.hidden(self.s.dist.sample(self.batch, self.gen))

    def __call__(self, step: int, *, with_loss: bool) -> Tensor | None:
        if self.fused is not None:
            self.h = None
            return self.fused(step, self.fired_np, with_loss=with_loss)
        self.h = self.activations()
        loss, f = self.s.sae.loss_and_grads(self.h, self.s.flat.grads, with_loss=with_loss)
        if self.track:
            self.fired |= (f != 0).any(dim=1)
        return loss


class _Resample(Hook):
    """After each update: decoder rows back on the unit sphere; every ``resample_dead_every``
    steps (in the first half of training) dead latents resampled."""

    def __init__(self, step: _Step, adam: AdamFlat, config: SAEConfig):
        self.step, self.adam, self.config = step, adam, config
        s = step.s
        self.gens = resample_generators(config, s.instances, s.flat.flat.device)
        self.resampled = torch.zeros(len(s.instances), dtype=torch.long, device=s.flat.flat.device)

    def after_update(self, step: int) -> None:
        s, every = self.step.s, self.config.resample_dead_every
        normalize_decoder_(s.sae.W_dec)
        if every and (step + 1) % every == 0 and step + 1 <= self.config.steps // 2:
            h = self.step.h if self.step.h is not None else self.step.activations()
            dead = ~self.step.fired & s.sae.mask
            self.resampled += resample_dead(s.sae, self.adam, s.flat, h, dead, self.gens)
            self.step.fired.zero_()


def logger_callback(logger: "Logger", instances: Sequence[SAEInstance]) -> SAECallback:
    """A callback that sends each group of SAE seeds (``sae0``, ``sae1`` ..., the instances that
    differ only by seed, in ``inst`` order) to ``logger``: the loss and the geometry of the
    decoder rows as the dictionary's W (:func:`superposition.loggers.instance_metrics`; dead
    latents are rows too, so ``represented`` counts the live ones)."""
    from superposition.loggers import GroupLog

    names: dict[tuple[Any, ...], str] = {}
    groups: dict[str, list[int]] = {}
    values: dict[str, dict[str, Any]] = {}
    for j, inst in enumerate(instances):
        name = names.setdefault(inst.group_key, f"sae{len(names)}")
        groups.setdefault(name, []).append(j)
        values[name] = {k: v for k, v in inst.to_dict().items() if k != "seed"}
    logger.describe(values)
    log = GroupLog(logger, groups)
    every = range(len(instances))

    def on_log(info: SAEStepInfo) -> None:
        log.add(info.step, every, info.loss, info.sae.W_dec)

    return on_log


class _Callbacks(Hook):
    def __init__(self, callbacks: Sequence[SAECallback], sae: SparseAutoencoder):
        self.callbacks, self.sae = callbacks, sae

    def on_log(self, step: int, loss: Tensor) -> None:
        info = SAEStepInfo(step=step, loss=loss, sae=self.sae)
        for cb in self.callbacks:
            cb(info)


def train_loop(
    s: Setup,
    config: SAEConfig,
    callbacks: Sequence[SAECallback] = (),
    bar: Any = None,
    *,
    path: str = "torch",
) -> tuple[list[int], Tensor, list[Tensor], Tensor]:
    """Run ``config.steps`` steps on a :class:`Setup` with the toy trainer's loop
    (:func:`superposition.training.fit`); return the logged steps, the logged losses [log, inst],
    the decoder snapshots and the number of resampled latents per instance.

    ``path`` is "torch" (activations drawn with a ``torch.Generator`` and
    :meth:`SparseAutoencoder.loss_and_grads`) or "fused" (:class:`FusedSAEStep`; the batches then
    come from per-instance streams, and a torch batch is drawn only where dead latents are
    resampled)."""
    adam_cfg = _adam_config(config)
    adam = AdamFlat(s.flat, adam_cfg)
    step = _Step(s, config, path)
    history = LossHistory()
    snapshots = Snapshots({"W_dec": s.sae.W_dec}, snapshot_steps(config, s.toy.W.shape[-1]))
    resample = _Resample(step, adam, config)
    hooks: list[Hook] = [snapshots, resample, history, _Callbacks(callbacks, s.sae)]
    if bar is not None:
        hooks.append(Progress(bar))
    fit(
        step,
        adam,
        steps=config.steps,
        lr=lambda i: lr_at(i, adam_cfg),
        log_every=config.log_every,
        hooks=hooks,
    )
    steps, losses = history.tensors()
    return steps.tolist(), losses, snapshots.copies["W_dec"], resample.resampled.to("cpu")


@torch.no_grad()
def resample_dead(
    sae: SparseAutoencoder,
    adam: AdamFlat,
    flat: FlatParams,
    h: Float[Tensor, "inst batch hidden"],
    dead: Bool[Tensor, "inst latent"],
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Re-initialise dead latents towards inputs the SAE reconstructs badly (Bricken et al. 2023):
    for each dead latent draw a sample of ``h`` with probability proportional to its squared
    reconstruction error, point the decoder row along that input, the encoder row along it too
    (scaled to 0.2 x the mean norm of the live encoder rows, so the latent fires on it), zero its
    encoder bias and its Adam moments. Returns the number of latents resampled per instance.

    Instance k draws only from ``generators[k]`` and its own rows of ``h``, so what it gets does
    not depend on the other instances trained beside it."""
    n_dead = dead.sum(-1)
    if not bool(n_dead.any()):
        return n_dead
    weight = (h - sae.forward(h)).square().sum(-1) + 1e-12  # all exact: uniform over samples
    direction = torch.zeros(sae.W_dec.shape, device=h.device)
    for k in torch.nonzero(n_dead).squeeze(-1).tolist():  # only at resampling steps
        rows = torch.nonzero(dead[k]).squeeze(-1)
        pick = torch.multinomial(weight[k], len(rows), replacement=True, generator=generators[k])
        chosen = h[k, pick]
        random = torch.randn(chosen.shape, generator=generators[k], device=h.device)
        norm = chosen.norm(dim=-1, keepdim=True)
        chosen = torch.where(norm > 1e-6, chosen / norm.clamp_min(1e-12), random)
        direction[k, rows] = chosen / chosen.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    live = sae.mask & ~dead
    enc_norm = sae.W_enc.norm(dim=-1)
    mean_live = (enc_norm * live).sum(-1) / live.sum(-1).clamp_min(1)
    mean_live = torch.where(live.any(-1), mean_live, torch.ones_like(mean_live))
    d = dead[..., None]
    sae.W_dec.copy_(torch.where(d, direction, sae.W_dec))
    enc = direction * (RESAMPLE_ENCODER_SCALE * mean_live)[:, None, None]
    sae.W_enc.copy_(torch.where(d, enc, sae.W_enc))
    sae.b_enc.masked_fill_(dead, 0.0)
    # forget the optimiser's memory of the old latents, so they start afresh
    for moments in (adam.m, adam.v):
        views = flat.views(moments)
        for name in ("W_enc", "W_dec"):
            views[name].masked_fill_(d, 0.0)
        views["b_enc"].masked_fill_(dead, 0.0)
        if "log_threshold" in views:
            views["log_threshold"].masked_fill_(dead, 0.0)
    return n_dead


def resample_generators(
    config: SAEConfig, instances: Sequence[SAEInstance], device: torch.device
) -> list[torch.Generator]:
    """One resampling generator per SAE instance, seeded by what the instance is (its labels),
    not by where it sits on the ``inst`` axis."""
    return [
        torch.Generator(device=device).manual_seed(
            derive_seed(config.seed, "sae-resample", *dataclasses.astuple(inst))
        )
        for inst in instances
    ]


# --------------------------------------------------------------------------------------------------
# scores


@torch.no_grad()
def evaluate(s: Setup, config: SAEConfig, generator: torch.Generator) -> dict[str, Tensor]:
    """Every score of :mod:`superposition.sae.metrics` for each instance, on fresh samples."""
    sae, toy = s.sae, s.toy
    sae.training = False  # BatchTopK and Matryoshka infer with their threshold
    n_inst = len(s.instances)
    dev = s.importance.device
    zeros = lambda: torch.zeros(n_inst, device=dev)  # noqa: E731
    err, sum_h2, toy_loss, spl_loss, l0 = (zeros() for _ in range(5))
    sum_h = torch.zeros(n_inst, toy.W.shape[-1], device=dev)
    fires = torch.zeros(sae.mask.shape, device=dev)
    done = 0
    while done < config.eval_samples:
        n = min(EVAL_BATCH, config.eval_samples - done)
        x = s.dist.sample(n, generator)
        h = toy.hidden(x)
        f = sae.encode(h)
        h_hat = sae.decode(f)
        err += (h_hat - h).square().sum(dim=(1, 2))
        sum_h += h.sum(dim=1)
        sum_h2 += h.square().sum(dim=(1, 2))
        active = f != 0
        fires += active.sum(1)
        l0 += active.sum(dim=(1, 2))
        toy_loss += toy.loss(x, s.importance) * n
        spl_loss += metrics.spliced_loss(toy, x, h_hat, s.importance) * n
        done += n
    total = config.eval_samples
    variance = sum_h2 - sum_h.square().sum(-1) / total  # sum over samples of |h - mean h|^2
    true = toy.W
    counted = metrics.represented(true)
    max_cos = metrics.max_cosine(sae.W_dec, true, sae.mask)
    fire_rate = fires / total
    dead = ((fires == 0) & sae.mask).sum(-1)
    n_latents = sae.mask.sum(-1)
    fvu = err / variance.clamp_min(1e-30)
    return {
        "mmcs": metrics.mmcs(max_cos, counted),
        "recovered_fraction": metrics.recovered_fraction(
            max_cos, counted, config.recovery_threshold
        ),
        "max_cosine": max_cos,
        "represented": counted,
        "l0": l0 / total,
        "dead": dead,
        "dead_fraction": dead / n_latents,
        "dense": ((fire_rate > config.dense_threshold) & sae.mask).sum(-1),
        "mse": err / total,
        "fvu": fvu,
        "toy_loss": toy_loss / total,
        "spliced_loss": spl_loss / total,
        "loss_increase": (spl_loss - toy_loss) / total,
    }
