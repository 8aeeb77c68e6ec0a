"""The step: for one chunk of instances, sampling, loss and gradient, and held-out loss of a
(model, loss, data source) triple, behind one interface (:class:`Step`).

Implementations (:data:`STEPS`):

- ``torch`` (:class:`TorchStep`): anything, on any device;
- ``fused`` and ``sparse`` (:mod:`superposition.steps.cpu`): the paper's squared error on fresh
  samples, on the CPU, with numba kernels.

:func:`plan_steps` gives each instance the cheapest implementation that supports the work by its
estimated cost (size *and* the instance's density), never by a string threaded through the
training loop; :func:`choose_step` does the same for a whole chunk. A new implementation is
one subclass of :class:`Step` plus :func:`register_step`; a new loss or data source needs none
(:mod:`superposition.losses`, :mod:`superposition.steps.sources`): the torch step runs it.
"""

from superposition.errors import ConfigError
from superposition.steps.base import (
    EVAL_BATCH,
    Instances,
    Sampler,
    Step,
    StepSpec,
    cheapest,
    cheapest_per_instance,
)
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


def plan_steps(spec: StepSpec, name: str = "auto") -> list[tuple[range, type[Step]]]:
    """Which implementation trains which instances of ``spec``: with a ``name``, that one for
    all (refused when it cannot run the spec); with "auto", each instance's cheapest by its own
    estimated cost (its size and density), as runs of consecutive instances. An instance's step
    thus never depends on the instances stacked beside it."""
    if name != "auto":
        return [(range(spec.n_instances), choose_step(spec, name))]
    return cheapest_per_instance([cls for cls in STEPS.values() if cls.supports(spec)], spec)


for _cls in (TorchStep, FusedStep, SparseStep):
    register_step(_cls)

# the API in reading order (the docs list it so): choosing and registering steps and sources
# first, the interface a new step implements next, the implementations and internals last
__all__ = [
    "STEPS",
    "SOURCES",
    "choose_step",
    "plan_steps",
    "register_step",
    "register_source",
    "get_source",
    "Sampler",
    "Step",
    "StepSpec",
    "Source",
    "TorchStep",
    "FusedStep",
    "SparseStep",
    "cheapest",
    "Instances",
    "EVAL_BATCH",
]
