"""Train many SAEs at once on a synthetic model's activations and score them against its known
features (layer 3).

The SAE instances are :func:`~superposition.sae.config.layout`'s (toy instance 0 stands for the
synthetic model): every dictionary size, coefficient or k, and seed. They share the toy trainer's
machinery (one flat parameter buffer, :class:`~superposition.training.AdamFlat`, the loop
:func:`~superposition.training.fit`, decoder rows back on the unit sphere after each update,
dead latents resampled), and differ in where the data comes from:

- **one data stream per seed**: instance j reads the batches of a generator seeded by
  ``(seed, "synthetic-data", its seed index)``, so instances with the same seed index (e.g. the
  same seed of different architectures, or of different k) see exactly the same samples, which
  are drawn once per step and shared; an instance's batches never depend on what else is trained;
- **resampling per instance** (:func:`~superposition.sae.train.resample_dead` with one generator
  per instance, on the instance's own batch): with resampling on, each instance's result depends
  only on its own configuration;
- **a target L0** for the architectures without a k (``relu_l1``, ``jumprelu``): their sparsity
  coefficient is steered during the first ``control_fraction`` of training by a multiplicative
  controller, ``lambda <- lambda exp(rate clip((L0_batch - target) / target, -1, 1))``, then
  frozen, so that all architectures are compared at matched L0 (SynthSAEBench sweeps the
  coefficient instead). The rate is small because JumpReLU's threshold moves only through Adam,
  about one learning rate per step: a faster controller winds the coefficient up while the
  threshold catches up, and L0 overshoots far below the target.
"""

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from superposition import __version__
from superposition._types import Float, Tensor
from superposition.config import TrainConfig
from superposition.errors import ConfigError
from superposition.rng import derive_seed
from superposition.sae.config import SAEConfig, SAEInstance, layout
from superposition.sae.groundtruth import GroundTruthScores
from superposition.sae.model import SparseAutoencoder
from superposition.sae.synthetic import SyntheticConfig, SyntheticModel
from superposition.sae.train import (
    cpu_settings,
    final_params,
    new_saes,
    normalize_decoder_,
    resample_dead,
    resample_generators,
)
from superposition.training import (
    AdamFlat,
    FlatParams,
    Hook,
    LossHistory,
    Progress,
    fit,
    lr_at,
    progress_bar,
    resolve_device,
)

CONTROL_RATE = 0.005
"""Step size of the L0 controller: the most the log-coefficient changes in one step (at a
relative L0 error of 1 or more; the error is clipped to [-1, 1])."""
EVAL_CHUNK = 2048


@dataclass
class SyntheticSAERun:
    """SAEs trained on a synthetic model: every instance's labels, weights and scores (CPU)."""

    config: SAEConfig
    synthetic: SyntheticConfig
    instances: list[SAEInstance]
    params: dict[str, Tensor]
    scores: dict[str, Tensor]
    history_steps: Tensor
    history_loss: Tensor
    target_l0: list[float] | None = None
    """The L0 each instance's coefficient was steered to (penalty architectures only)."""
    coefficient: Tensor | None = None
    """The final sparsity coefficient of each instance (after the L0 controller)."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return len(self.instances)


class _DataStreams:
    """The batches of every instance: one generator per distinct seed index, each batch drawn
    once and shared by the instances that read that stream."""

    def __init__(self, model: SyntheticModel, config: SAEConfig, instances: Sequence[SAEInstance]):
        self.model, self.batch = model, config.batch_size
        seeds = sorted({inst.seed for inst in instances})
        self.gens = {
            s: torch.Generator(device=model.device).manual_seed(
                derive_seed(config.seed, "synthetic-data", s)
            )
            for s in seeds
        }
        self.row = torch.tensor([seeds.index(inst.seed) for inst in instances])
        self.single = len(seeds) == 1

    def __call__(self) -> Float[Tensor, "inst batch hidden"]:
        hs = [self.model.activations(self.batch, g) for g in self.gens.values()]
        if self.single:  # one copy per instance: the batched matmuls want them contiguous
            return hs[0].expand(len(self.row), -1, -1).contiguous()
        return torch.stack(hs)[self.row.to(hs[0].device)]


class _Step:
    def __init__(self, sae: SparseAutoencoder, flat: FlatParams, streams: _DataStreams):
        self.sae, self.flat, self.streams = sae, flat, streams
        self.fired = torch.zeros_like(sae.mask)
        self.h: Tensor | None = None
        self.l0: Tensor | None = None

    def __call__(self, step: int, *, with_loss: bool) -> Tensor | None:
        self.h = self.streams()
        loss, f = self.sae.loss_and_grads(self.h, self.flat.grads, with_loss=with_loss)
        count = self.sae.active_count  # [inst, latent], from the sparse step's pairs
        if count is None:
            count = torch.count_nonzero(f, dim=1)
        self.fired |= count > 0
        self.l0 = count.sum(1) / f.shape[1]
        return loss


class _AfterUpdate(Hook):
    """Decoder rows back on the sphere; dead latents resampled; the L0 controller."""

    def __init__(
        self,
        step: _Step,
        adam: AdamFlat,
        config: SAEConfig,
        instances: Sequence[SAEInstance],
        target_l0: Tensor | None,
        control_steps: int,
    ):
        self.step, self.adam, self.config = step, adam, config
        self.gens = resample_generators(config, instances, step.flat.flat.device)
        self.resampled = torch.zeros(len(instances), dtype=torch.long)
        self.target, self.control_steps = target_l0, control_steps

    def after_update(self, step: int) -> None:
        sae, every = self.step.sae, self.config.resample_dead_every
        normalize_decoder_(sae.W_dec)
        if self.target is not None and step < self.control_steps and self.step.l0 is not None:
            error = (self.step.l0 - self.target) / self.target
            sae.coefficient.mul_(torch.exp(CONTROL_RATE * error.clamp(-1.0, 1.0)))
        if every and (step + 1) % every == 0 and step + 1 <= self.config.steps // 2:
            assert self.step.h is not None
            dead = ~self.step.fired & sae.mask
            h = self.step.h.contiguous()
            n = resample_dead(sae, self.adam, self.step.flat, h, dead, self.gens)
            self.resampled += n.cpu()
            self.step.fired.zero_()


class _Stop(Hook):
    """Interrupts the training once ``event`` is set (another architecture's thread failed)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def after_update(self, step: int) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt


def train_synthetic(
    model: SyntheticModel,
    config: SAEConfig,
    *,
    target_l0: float | Sequence[float] | None = None,
    control_fraction: float = 1.0,
    progress: bool | None = None,
    eval_seed: int | None = None,
    stop: threading.Event | None = None,
) -> SyntheticSAERun:
    """Train every SAE instance of ``config`` on ``model``'s activations and score it against
    the model's features (:class:`~superposition.sae.groundtruth.GroundTruthScores`).

    ``target_l0`` (one value, or one per instance of the layout) steers the coefficient of
    ``relu_l1`` and ``jumprelu`` SAEs towards that L0 during the first ``control_fraction`` of
    the steps (the k architectures ignore it). The
    evaluation samples come from a generator seeded by ``eval_seed`` (default: the config's seed),
    the same samples for every instance. Setting ``stop`` (from another thread) interrupts the
    training at its next step with :class:`KeyboardInterrupt`.
    """
    device = resolve_device(config.device)
    if device != model.device:
        raise ConfigError(
            f"the synthetic model lives on {model.device} but the SAE config asks for {device}; "
            "build the model on the SAEs' device"
        )
    if not 0.0 <= control_fraction <= 1.0:
        raise ConfigError(f"control_fraction must be in [0, 1], got {control_fraction}")
    plan = layout(config, [0], model.n_features)
    targets = None
    if target_l0 is not None and not config.uses_k:
        values = [float(target_l0)] * len(plan) if isinstance(target_l0, int | float) else [
            float(t) for t in target_l0]  # fmt: skip
        if len(values) != len(plan):
            raise ConfigError(
                f"target_l0 has {len(values)} values for {len(plan)} SAE instances"
            )
        for t, inst in zip(values, plan, strict=True):
            if not 0 < t <= inst.n_latents:
                raise ConfigError(
                    f"target_l0={t:g} must be above 0 and at most the dictionary size "
                    f"{inst.n_latents}"
                )
        targets = torch.tensor(values, device=device)
    n_max = max(i.n_latents for i in plan)
    if config.uses_k and max(i.k for i in plan) > n_max:
        raise ConfigError(f"k={max(i.k for i in plan)} is more than the dictionary size {n_max}")
    flat, sae = new_saes(config, plan, model.n_hidden, device)
    adam_cfg = TrainConfig(
        steps=config.steps, lr=config.lr, optimizer="adam", weight_decay=0.0,
        schedule=config.schedule, device="cpu",
    )  # fmt: skip
    adam = AdamFlat(flat, adam_cfg)
    step = _Step(sae, flat, _DataStreams(model, config, plan))
    history = LossHistory()
    after = _AfterUpdate(
        step, adam, config, plan, targets, math.ceil(control_fraction * config.steps)
    )
    hooks: list[Hook] = [after, history]
    if stop is not None:
        hooks.append(_Stop(stop))
    bar = progress_bar(config.steps, f"training {config.architecture} SAEs", progress)
    if bar is not None:
        hooks.append(Progress(bar))
    largest = len(plan) * config.batch_size * max(n_max, model.n_hidden, model.n_features)
    started = time.perf_counter()
    with cpu_settings(device, largest):  # one thread for small steps, no denormals
        try:
            fit(step, adam, steps=config.steps, lr=lambda i: lr_at(i, adam_cfg),
                log_every=config.log_every, hooks=hooks)  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - started
        scores = evaluate(model, sae, config, eval_seed if eval_seed is not None else config.seed)
    scores["resampled"] = after.resampled.float()
    steps, losses = history.tensors()
    return SyntheticSAERun(
        config=config,
        synthetic=model.config,
        instances=plan,
        params=final_params(sae),
        scores={k: v.detach().to("cpu") for k, v in scores.items()},
        history_steps=steps,
        history_loss=losses,
        target_l0=None if targets is None else targets.tolist(),
        coefficient=sae.coefficient.detach().to("cpu").clone(),
        info={
            "version": __version__,
            "device": str(device),
            "seconds": round(elapsed, 3),
            "steps_per_second": round(config.steps / elapsed, 2),
        },
    )


@torch.no_grad()
def evaluate(
    model: SyntheticModel, sae: SparseAutoencoder, config: SAEConfig, seed: int
) -> dict[str, Tensor]:
    """Ground-truth scores of every instance on ``config.eval_samples`` fresh samples."""
    sae.training = False
    gen = torch.Generator(device=model.device).manual_seed(derive_seed(seed, "synthetic-eval"))
    scores = GroundTruthScores(sae.W_dec, sae.mask, model.directions, model.parent)
    done = 0
    while done < config.eval_samples:
        n = min(EVAL_CHUNK, config.eval_samples - done)
        batch = model.sample(n, gen)
        h = batch.h.expand(sae.mask.shape[0], -1, -1)
        f = sae.encode(h)
        scores.update(batch.x, batch.h, f, sae.decode(f), sae.b_dec)
        done += n
    return scores.result()


def instance_labels(run: SyntheticSAERun) -> list[dict[str, Any]]:
    """Each instance's labels, for tables and JSON."""
    return [dataclasses.asdict(i) for i in run.instances]
