"""The step: for one chunk of instances, sampling, loss and gradient, and held-out loss of a
(model, loss, data source) triple, behind one interface (:class:`Step`).

Implementations (:data:`STEPS`):

- ``torch`` (:class:`TorchStep`): anything, on any device;
- ``fused`` and ``sparse`` (:mod:`superposition.steps.cpu`): the paper's squared error on fresh
  samples, on the CPU, with numba kernels.

:func:`choose_step` takes the cheapest implementation that supports the work by an estimated cost
(size *and* density), never by a string threaded through the training loop. A new implementation is
one subclass of :class:`Step` plus :func:`register_step`; a new loss or data source needs none
(:mod:`superposition.losses`, :mod:`superposition.steps.sources`): the torch step runs it.
"""

from superposition.errors import ConfigError
from superposition.steps.base import EVAL_BATCH, Instances, Sampler, Step, StepSpec, cheapest
from superposition.steps.cpu import FusedStep, SparseStep
from superposition.steps.sources import SOURCES, Source, get_source, register_source
from superposition.steps.torch_step import TorchStep

STEPS: dict[str, type[Step]] = {}
"""Registered step implementations by name."""


def register_step(cls: type[Step]) -> type[Step]:
    """Make a step implementation available to :func:`choose_step` (by ``cls.name``)."""
    if not cls.name:
        raise ConfigError(f"step class {cls.__name__} needs a name")
    STEPS[cls.name] = cls
    return cls


def choose_step(spec: StepSpec, name: str = "auto") -> type[Step]:
    """The implementation to run ``spec``: ``name``, or with "auto" the supported one of least
    estimated cost. A named implementation that cannot run the spec is refused."""
    describe = (
        f"this training (model {spec.config.model.kind}, loss {spec.loss.name}, source "
        f"{spec.source}, device {spec.device})"
    )
    chosen: type[Step] = cheapest(STEPS, spec, name, describe=describe)
    return chosen


for _cls in (TorchStep, FusedStep, SparseStep):
    register_step(_cls)

__all__ = [
    "EVAL_BATCH",
    "SOURCES",
    "STEPS",
    "FusedStep",
    "Instances",
    "Sampler",
    "Source",
    "SparseStep",
    "Step",
    "StepSpec",
    "TorchStep",
    "cheapest",
    "choose_step",
    "get_source",
    "register_source",
    "register_step",
]
