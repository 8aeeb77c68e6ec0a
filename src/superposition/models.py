"""The toy models, batched over instances, with their loss gradients in closed form.

Every model is a two-layer map with W stored ``[inst, feat, hidden]`` (row ``W[k, i]`` is feature
i's direction; the paper writes it as the column W_i of an m x n matrix):

=============  =====================================  =====================================
kind           forward                                paper
=============  =====================================  =====================================
``linear``     x' = W^T W x + b                       Section 2, linear model
``relu``       x' = ReLU(W^T W x + b)                 Section 2, ReLU output model
``privileged`` h = ReLU(W x);  x' = ReLU(W^T h + b)   Section 7 (no hidden bias, on purpose)
``abs``        h = ReLU(W1 x); y' = ReLU(W2 h + b)    Section 8, target |x|, always untied
``mlp``        h = ReLU(W x);  x' = W_dec h + b       a ReLU layer and a linear readout
=============  =====================================  =====================================

Untied models carry a separate decoder ``W_dec`` with the same ``[inst, feat, hidden]`` layout
(row i reads feature i out of the hidden space). A model only computes: training, data and
plotting live elsewhere. The gradients are written by hand (:meth:`ToyModel.loss_and_grads`)
because autograd's book-keeping costs more than the maths at these sizes; the tests check them
against autograd.

The ``mlp`` model's output has no ReLU, so it can be read as logits (for the cross-entropy loss);
like ``privileged`` it has no hidden bias, and it is untied unless its config asks otherwise.
"""

from dataclasses import dataclass

import torch

from superposition._types import Float, Tensor
from superposition.losses import MEAN_SQUARED_ERROR, Loss

HIDDEN_RELU = {"linear": False, "relu": False, "privileged": True, "abs": True, "mlp": True}
OUTPUT_RELU = {"linear": False, "relu": True, "privileged": True, "abs": True, "mlp": False}


def _relu_backward(grad: Tensor, activated: Tensor) -> Tensor:
    # zero the gradient where the ReLU's output is 0 (one fused kernel instead of a mask multiply)
    return torch.ops.aten.threshold_backward(grad, activated, 0)


@dataclass
class ToyModel:
    """Parameters of many instances of one toy model; the tensors may be views of a flat buffer."""

    kind: str
    W: Float[Tensor, "inst feat hidden"]
    b: Float[Tensor, "inst feat"]
    W_dec: Float[Tensor, "inst feat hidden"] | None = None

    @property
    def decoder(self) -> Float[Tensor, "inst feat hidden"]:
        return self.W if self.W_dec is None else self.W_dec

    @property
    def tied(self) -> bool:
        return self.W_dec is None

    def params(self) -> dict[str, Tensor]:
        out = {"W": self.W, "b": self.b}
        if self.W_dec is not None:
            out["W_dec"] = self.W_dec
        return out

    def hidden(self, x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch hidden"]:
        h = torch.bmm(x, self.W)
        return torch.relu(h) if HIDDEN_RELU[self.kind] else h

    def forward(self, x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch feat"]:
        out = torch.baddbmm(self.b[:, None, :], self.hidden(x), self.decoder.transpose(1, 2))
        return torch.relu(out) if OUTPUT_RELU[self.kind] else out

    def target(self, x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch feat"]:
        return x.abs() if self.kind == "abs" else x

    def loss(
        self,
        x: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        loss: Loss = MEAN_SQUARED_ERROR,
    ) -> Float[Tensor, " inst"]:
        """The loss of each instance on the batch ``x`` (default: the importance-weighted squared
        error with the notebook's reduction, mean over batch and features; see
        :mod:`superposition.losses`)."""
        return loss.value(self.forward(x), self.target(x), importance)

    def loss_and_grads(
        self,
        x: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        grads: dict[str, Tensor],
        *,
        with_loss: bool = True,
        loss: Loss = MEAN_SQUARED_ERROR,
    ) -> Float[Tensor, " inst"] | None:
        """Write d(sum of per-instance losses)/d(param) into ``grads`` (same keys and shapes as
        :meth:`params`) and return the per-instance loss when ``with_loss``.

        Derivation: with o = W_dec h + b, the output x' = act(o) and g = dL/dx' from the loss
        (for the squared error, 2 I (x' - target) / scale), masked by the output ReLU into dL/do:
        dL/db = sum_batch g, dL/dW_dec = g^T h, dL/dh = g W_dec (masked by the hidden ReLU),
        dL/dW = x^T dL/dh, plus dL/dW_dec when tied.
        """
        dec = self.decoder
        h = self.hidden(x)
        out = torch.baddbmm(self.b[:, None, :], h, dec.transpose(1, 2))
        if OUTPUT_RELU[self.kind]:
            out.relu_()
        value, g = loss.output_grad(out, self.target(x), importance, with_loss=with_loss)
        if OUTPUT_RELU[self.kind]:
            g = _relu_backward(g, out)
        torch.sum(g, dim=1, out=grads["b"])
        g_dec = grads["W"] if self.tied else grads["W_dec"]
        torch.bmm(g.transpose(1, 2), h, out=g_dec)
        g_h = torch.bmm(g, dec)
        if HIDDEN_RELU[self.kind]:
            g_h = _relu_backward(g_h, h)
        if self.tied:
            grads["W"].baddbmm_(x.transpose(1, 2), g_h)
        else:
            torch.bmm(x.transpose(1, 2), g_h, out=grads["W"])
        return value
