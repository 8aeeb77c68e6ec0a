"""The fast CPU steps: the paper's squared error on fresh samples, computed by numba kernels that
only touch the present features (see :mod:`superposition.fastpaths` for the kernels' driver).

``fused``
    tiny models (``feat * hidden <= FUSED_MAX_WEIGHTS``), typically thousands of instances: one
    kernel per step, parallel over instances, each instance's batch drawn and its forward and
    backward pass run in cache.
``sparse``
    larger models: only present features are drawn (CSR), all-zero samples are counted in closed
    form, the sparse products are numba loops and the dense ones batched matmuls. It wins while
    samples are sparse; on dense data the torch step's plain matmuls are cheaper, and the cost
    model (:meth:`SparseStep.cost` against :meth:`TorchStep.cost`) picks between them.

Both draw from the instances' own counter-based streams, so an instance's result does not depend
on what it is stacked or chunked with (bit for bit on the fused step; to the rounding of the
batched matmuls on the sparse step).
"""

from collections.abc import Iterator

import numpy as np
import torch

from superposition._types import Float, Tensor
from superposition.fastpaths import FUSED_MAX_WEIGHTS, FastStep, numba_available
from superposition.losses import SquaredError
from superposition.models import ToyModel
from superposition.steps.base import FLOP, MATMUL_PER_INSTANCE, OP, Step, StepSpec
from superposition.steps.sources import FreshSource

SPARSE_ENTRY = 36.0
"""One present feature in the CSR sampler and the sparse products, per hidden unit, in
multiply-adds of a batched matmul (numba loops over scattered indices)."""
ROW_PASSES = 6.0
"""The output-gradient pass over a [feat] row of a sample with a present feature, per element."""
OPS = 10
"""Torch operations and kernel calls per sparse step."""
FUSED_WEIGHT = 6.0
"""The fused kernel's cost per sample and weight (forward and backward, scalar loops), in
multiply-adds of a batched matmul..."""
FUSED_FEATURE = 17.0
"""... per sample and feature (sampling, bias, output gradient) ..."""
FUSED_INSTANCE = 1e-7
"""... and per instance, in seconds (stream set-up, buffers, the thread's share)."""


class _CpuStep(Step):
    """What both fast CPU steps share: what they support and how they are driven."""

    path = ""

    @classmethod
    def supports(cls, spec: StepSpec) -> bool:
        return (
            spec.device.type == "cpu"
            and spec.source == "fresh"
            # the kernels compute no neuron biases and no input projection
            and spec.config.model.is_plain
            and isinstance(spec.loss, SquaredError)
            and numba_available()
        )

    def __init__(self, spec: StepSpec, model: ToyModel, grads: dict[str, Tensor]):
        super().__init__(spec, model, grads)
        self.source = FreshSource(spec)
        loss = spec.loss
        assert isinstance(loss, SquaredError)  # supports() admits no other loss
        scale = loss.scale(spec.config.train.batch_size, spec.config.data.n_features)
        self.fast = FastStep(
            self.path,
            self.source.dist,
            spec.instances.importance,
            model,
            grads,
            spec.config.train.batch_size,
            self.source.keys,  # the instances' data streams, derived once by the source
            scale=scale,
        )

    def __call__(self, step: int, *, with_loss: bool) -> Float[Tensor, " inst"] | None:
        return self.fast(step, with_loss=with_loss)

    def held_out_batches(self, samples: int) -> Iterator[tuple[Tensor, int]]:
        return self.source.held_out(samples)

    def drawn_batch(self, step: int) -> Float[Tensor, "inst batch feat"]:
        """The batch this step draws at ``step``, dense (for checks; the step never builds it)."""
        if self.path == "fused":
            return self.fast.sample_dense(step).contiguous()
        from superposition import kernels

        idx, val, rowptr = self.fast.sample_csr(step)
        n_inst, n_feat, _ = self.model.W.shape
        x = np.zeros((n_inst, self.fast.batch, n_feat), np.float32)
        kernels.csr_to_dense(idx, val, rowptr, x)
        return torch.from_numpy(x)


class FusedStep(_CpuStep):
    name = "fused"
    path = "fused"

    @classmethod
    def supports(cls, spec: StepSpec) -> bool:
        cfg = spec.config
        small = cfg.data.n_features * cfg.model.n_hidden <= FUSED_MAX_WEIGHTS
        return small and super().supports(spec)

    fixed_cost = OP

    @classmethod
    def instance_costs(cls, spec: StepSpec) -> Float[Tensor, " inst"]:
        cfg = spec.config
        n, m, batch = cfg.data.n_features, cfg.model.n_hidden, cfg.train.batch_size
        # one kernel call; per sample a forward and backward pass over every weight, in cache
        flops = batch * (FUSED_WEIGHT * n * m + FUSED_FEATURE * n)
        one = FUSED_INSTANCE + flops * FLOP
        return torch.full((spec.n_instances,), one, dtype=torch.float64)


class SparseStep(_CpuStep):
    name = "sparse"
    path = "sparse"

    fixed_cost = OPS * OP

    @classmethod
    def instance_costs(cls, spec: StepSpec) -> Float[Tensor, " inst"]:
        cfg = spec.config
        n, m, batch = cfg.data.n_features, cfg.model.n_hidden, cfg.train.batch_size
        rows = batch * spec.expected_nonzero_rows()
        present = batch * spec.expected_present()
        # the batched products over the samples with a present feature (three, the encoder's
        # being sparse: about two dense ones), the sparse products and sampler over the present
        # features, the output-gradient pass
        flops = 2 * rows * n * m + SPARSE_ENTRY * present * m + ROW_PASSES * rows * n
        return 3 * MATMUL_PER_INSTANCE + flops * FLOP
