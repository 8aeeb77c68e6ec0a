"""What every step implementation shares: the instances of a chunk, the description of the work
(:class:`StepSpec`) and the :class:`Step` interface with its held-out evaluation."""

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from superposition._types import Float, Tensor
from superposition.config import RunConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError
from superposition.losses import Loss
from superposition.models import ToyModel
from superposition.rng import stream_key

EVAL_BATCH = 4096
"""Samples per batch of the held-out evaluation."""

# The cost model's constants: seconds on a 2-core x86 CPU, fitted to timings of the torch, fused
# and sparse steps on models from 2 x 1 to 400 x 30 features at densities 0.01 to 1 (only their
# ratios decide anything; the fit is within a factor of about 1.5 everywhere measured)
FLOP = 3e-11
"""One multiply-add of a batched matmul."""
OP = 2.5e-5
"""One torch operation or kernel call, whatever its size (dispatch, threads, allocation)."""
MATMUL_PER_INSTANCE = 1e-5
"""The per-instance cost of a batched matmul and the dense sampler on small matrices."""

Sampler = Callable[[int, torch.Generator], Tensor]
"""A user's data source: ``sampler(batch, generator)`` returns a ``[batch, inst, feat]`` float
tensor of samples for every instance of the run."""


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
        """One key per instance for the counter-based streams of the CPU sampler."""
        return np.array([stream_key(seed, purpose, k) for seed, k in self.seeds], dtype=np.uint64)


@dataclass(frozen=True)
class StepSpec:
    """The work one step implementation is asked to do: a chunk of instances of one (model, loss,
    data source) triple on a device. Implementations say from it whether they can run it
    (:meth:`Step.supports`) and what it would cost (:meth:`Step.cost`)."""

    config: RunConfig
    """The template config of the chunk (shapes, model, training settings)."""
    instances: Instances
    """The chunk's instances."""
    device: torch.device
    loss: Loss
    source: str
    """The data source's registered name (``config.data.source``)."""
    sampler: Sampler | None = field(default=None, compare=False)
    """The user's sampler, for the "sampler" source."""

    @property
    def n_instances(self) -> int:
        return len(self.instances)

    def expected_present(self) -> Float[Tensor, " inst"]:
        """Each instance's expected number of present features per sample."""
        return self.instances.density.double().sum(dim=1)

    def expected_nonzero_rows(self) -> Float[Tensor, " inst"]:
        """Each instance's expected fraction of samples with a present feature (independent
        features; correlated sets make it smaller, which only favours the sparse step)."""
        log_absent = torch.log1p(-self.instances.density.clamp(max=1 - 1e-7).double()).sum(1)
        return 1.0 - log_absent.exp()


class Step:
    """One training step of a chunk: sampling, loss and gradient, and the held-out loss.

    An implementation writes the gradients of the sum of per-instance losses into ``grads`` (views
    of the flat gradient buffer) when called, and returns the per-instance loss on logging steps.
    """

    name: ClassVar[str] = ""

    @classmethod
    def supports(cls, spec: StepSpec) -> bool:
        """Whether this implementation can run ``spec`` (model, loss, source, device)."""
        raise NotImplementedError

    fixed_cost: ClassVar[float] = 0.0
    """Estimated seconds of one step that do not grow with the instances (operations launched)."""

    @classmethod
    def instance_costs(cls, spec: StepSpec) -> Float[Tensor, " inst"]:
        """Estimated seconds each instance adds to one step: a model of the arithmetic and memory
        traffic from the sizes and each instance's density, not a timing."""
        raise NotImplementedError

    @classmethod
    def cost(cls, spec: StepSpec) -> float:
        """Estimated seconds of one step of the whole spec."""
        return cls.fixed_cost + float(cls.instance_costs(spec).sum())

    def __init__(self, spec: StepSpec, model: ToyModel, grads: dict[str, Tensor]):
        self.spec = spec
        self.model = model
        self.grads = grads

    def __call__(self, step: int, *, with_loss: bool) -> Float[Tensor, " inst"] | None:
        raise NotImplementedError

    def held_out_batches(self, samples: int) -> Any:
        """Iterate over ``(inputs [inst, n, feat], n)`` batches of fresh held-out samples."""
        raise NotImplementedError

    def dataset(self) -> Float[Tensor, "inst sample feat"] | None:
        """The finite training set, when the source has one."""
        return None

    @torch.no_grad()
    def held_out_loss(self, samples: int) -> Float[Tensor, " inst"]:
        """Mean loss of each instance over ``samples`` fresh samples (the loss best-of-N uses)."""
        return self._mean_loss(self.held_out_batches(samples), samples)

    @torch.no_grad()
    def dataset_loss(self) -> Float[Tensor, " inst"] | None:
        """Mean loss of each instance over its finite training set (``None`` without one)."""
        data = self.dataset()
        if data is None:
            return None
        n = data.shape[1]
        starts = range(0, n, EVAL_BATCH)
        batches = ((data[:, i : i + EVAL_BATCH], min(EVAL_BATCH, n - i)) for i in starts)
        return self._mean_loss(batches, n)

    def _mean_loss(self, batches: Any, samples: int) -> Float[Tensor, " inst"]:
        model, loss = self.model, self.spec.loss
        importance = self.spec.instances.importance.to(model.W.device)
        if model.W.device.type != "cpu":
            total = torch.zeros(model.W.shape[0], device=model.W.device)
            for x, n in batches:
                total += model.loss(x, importance, loss) * n
            return (total / samples).to("cpu")
        # on the CPU one instance at a time, on one thread: torch's batched matmuls and
        # reductions pick their kernels and summation order by the whole tensor's shape and split
        # large sums across threads, which would make an instance's held-out loss depend (in its
        # last bits) on the instances trained beside it and on the thread count
        with one_thread():
            return self._mean_loss_alone(batches, samples, importance)

    def _mean_loss_alone(
        self, batches: Any, samples: int, importance: Float[Tensor, "inst feat"]
    ) -> Float[Tensor, " inst"]:
        model, loss = self.model, self.spec.loss
        alone = [
            ToyModel(
                model.kind,
                **{p: v[k : k + 1] for p, v in model.params().items()},
                overlap=model.overlap,
            )
            for k in range(model.W.shape[0])
        ]
        total64 = torch.zeros(len(alone), dtype=torch.float64)
        for x, n in batches:
            for k, one in enumerate(alone):
                total64[k] += one.loss(x[k : k + 1], importance[k : k + 1], loss).double()[0] * n
        return (total64 / samples).float()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU operations in the block on one thread (sums then do not depend on the
    thread count), restoring the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cheapest(
    implementations: Mapping[str, Any],
    spec: Any,
    name: str = "auto",
    *,
    what: str = "step",
    describe: str = "",
) -> Any:
    """``implementations[name]``, or with "auto" the one of least estimated ``cost(spec)`` among
    those that ``supports(spec)``: how the toy trainer and the SAE trainer choose their steps.
    A name that is not registered, or whose implementation cannot run ``spec`` (``describe``
    says what the spec is), is refused in one sentence."""
    if name != "auto":
        if name not in implementations:
            raise ConfigError(
                f"{what} must be one of auto, {', '.join(implementations)}; got {name!r}"
            )
        if not implementations[name].supports(spec):
            raise ConfigError(f"the {name!r} {what} cannot run {describe}; use 'auto'")
        return implementations[name]
    usable = [cls for cls in implementations.values() if cls.supports(spec)]
    return min(usable, key=lambda cls: cls.cost(spec))


def cheapest_per_instance(
    implementations: Sequence[type[Step]], spec: StepSpec
) -> list[tuple[range, type[Step]]]:
    """Each instance's cheapest implementation by its own estimated cost (so it does not depend
    on what the instance is trained beside), as runs of consecutive instances sharing one."""
    costs = torch.stack([cls.instance_costs(spec).double() for cls in implementations])
    best = costs.argmin(dim=0).tolist()
    runs: list[tuple[range, type[Step]]] = []
    start = 0
    for k in range(1, len(best) + 1):
        if k == len(best) or best[k] != best[start]:
            runs.append((range(start, k), implementations[best[start]]))
            start = k
    return runs


def batches_of(samples: int) -> list[int]:
    """Sizes of the held-out batches for ``samples`` samples."""
    return [min(EVAL_BATCH, samples - done) for done in range(0, samples, EVAL_BATCH)]
