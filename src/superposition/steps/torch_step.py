"""The generic step: any model, loss and data source, on any device, in plain torch ops.

It draws the batch from the chunk's :mod:`source <superposition.steps.sources>` and writes the
gradients with :meth:`ToyModel.loss_and_grads` (the model's backward pass in closed form, the loss's
output gradient from the loss itself or from autograd). It is the only step on CUDA and the one
every new loss or source runs on until someone writes a faster one.
"""

from collections.abc import Iterator

import torch

from superposition._types import Float, Tensor
from superposition.models import ToyModel
from superposition.steps.base import FLOP, MATMUL_PER_INSTANCE, OP, Step, StepSpec
from superposition.steps.sources import get_source

DENSE_PASSES = 14.0
"""Drawing a dense [batch, feat] batch and the elementwise passes over it (bias, activations, loss
gradient, masks), per element, in multiply-adds of a batched matmul."""
OPS = 15
"""Torch operations per step."""


class TorchStep(Step):
    name = "torch"

    @classmethod
    def supports(cls, spec: StepSpec) -> bool:
        return True

    fixed_cost = OPS * OP

    @classmethod
    def instance_costs(cls, spec: StepSpec) -> Float[Tensor, " inst"]:
        cfg = spec.config
        n, m, batch = cfg.data.n_features, cfg.model.n_hidden, cfg.train.batch_size
        # four batched products (encoder, decoder, and the two gradients' products), the dense
        # sampling and the elementwise passes
        flops = batch * (4 * n * m + DENSE_PASSES * n)
        one = 4 * MATMUL_PER_INSTANCE + flops * FLOP
        return torch.full((spec.n_instances,), one, dtype=torch.float64)

    def __init__(self, spec: StepSpec, model: ToyModel, grads: dict[str, Tensor]):
        super().__init__(spec, model, grads)
        self.source = get_source(spec.source)(spec)
        self.importance = spec.instances.importance.to(spec.device)
        self.batch = spec.config.train.batch_size

    def __call__(self, step: int, *, with_loss: bool) -> Float[Tensor, " inst"] | None:
        x = self.source.batch(step, self.batch)
        return self.model.loss_and_grads(
            x, self.importance, self.grads, with_loss=with_loss, loss=self.spec.loss
        )

    def held_out_batches(self, samples: int) -> Iterator[tuple[Tensor, int]]:
        return self.source.held_out(samples)

    def dataset(self) -> Float[Tensor, "inst sample feat"] | None:
        return self.source.dataset()
