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
``mlp``        h = ReLU(W G x + c); x' = W_dec h + b  a ReLU layer and a linear readout
=============  =====================================  =====================================

Untied models carry a separate decoder ``W_dec`` with the same ``[inst, feat, hidden]`` layout
(row i reads feature i out of the hidden space). A model only computes: training, data and
plotting live elsewhere. The gradients are written by hand (:meth:`ToyModel.loss_and_grads`)
because autograd's book-keeping costs more than the maths at these sizes; the tests check them
against autograd.

The ``mlp`` model's output has no ReLU, so it can be read as logits (for the cross-entropy loss);
it is untied unless its config asks otherwise. By default, like ``privileged``, it has no hidden
bias and ``G`` is the identity. Two options follow Jermyn, Schiefer and Hubinger 2022,
"Engineering Monosemanticity in Toy Models" (a ReLU layer with biases and a linear read-out; we
keep the output bias ``b`` every model here has): neuron biases ``b_hidden`` ``[inst, hidden]``
(the ``c`` above), and their "feature decoder"'s fixed random projection ``P`` of the features
to d < n dimensions. ``G = P P^T`` (:func:`input_overlap`, ``[feat, feat]``) applies it while
keeping W's rows indexed by feature: ``W^T G x = (P^T W)^T (P^T x)``, so ``P^T W`` plays the
paper's first-layer matrix on the projected input.
"""

from dataclasses import dataclass

import torch

from superposition._types import Float, Tensor
from superposition.errors import ConfigError
from superposition.losses import MEAN_SQUARED_ERROR, Loss, relu_backward
from superposition.rng import derive_seed

HIDDEN_RELU = {"linear": False, "relu": False, "privileged": True, "abs": True, "mlp": True}
OUTPUT_RELU = {"linear": False, "relu": True, "privileged": True, "abs": True, "mlp": False}


def input_overlap(
    n_features: int, n_inputs: int, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Float[Tensor, "feat feat"]:
    """``G = P P^T`` for the fixed random projection ``P`` of n features to ``n_inputs``
    dimensions (rows: independent Gaussian directions, normalised to unit length; Jermyn et al.
    2022's feature decoder). ``G[i, j]`` is how much of feature j reaches input channel i; the
    diagonal is 1. ``P`` is drawn from a generator seeded by the shape alone, so it belongs to the
    model's architecture (every seed and instance share it) and a run directory rebuilds it."""
    for name, value in (("n_features", n_features), ("n_inputs", n_inputs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    seed = derive_seed(0, "mlp-input-projection", n_features, n_inputs)
    gen = torch.Generator().manual_seed(seed)
    P = torch.randn((n_features, n_inputs), generator=gen, dtype=torch.float64)
    P = P / torch.linalg.vector_norm(P, dim=1, keepdim=True)
    return (P @ P.T).to(dtype=dtype, device=device)


@dataclass
class ToyModel:
    """Parameters of many instances of one toy model; the tensors may be views of a flat buffer."""

    kind: str
    W: Float[Tensor, "inst feat hidden"]
    b: Float[Tensor, "inst feat"]
    W_dec: Float[Tensor, "inst feat hidden"] | None = None
    b_hidden: Float[Tensor, "inst hidden"] | None = None
    """The neurons' biases (the ``mlp`` model only)."""
    overlap: Float[Tensor, "feat feat"] | None = None
    """The fixed ``G = P P^T`` of an ``mlp`` model with an input projection (not trained; see
    :func:`input_overlap`); ``None``: the neurons read the features themselves."""

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
        if self.b_hidden is not None:
            out["b_hidden"] = self.b_hidden
        return out

    def encoder_input(
        self, x: Float[Tensor, "inst batch feat"]
    ) -> Float[Tensor, "inst batch feat"]:
        """What the first layer reads: ``x``, or ``G x`` through the input projection."""
        return x if self.overlap is None else x @ self.overlap

    def hidden(self, x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch hidden"]:
        x = self.encoder_input(x)
        if self.b_hidden is None:
            h = torch.bmm(x, self.W)
        else:
            h = torch.baddbmm(self.b_hidden[:, None, :], x, self.W)
        return torch.relu(h) if HIDDEN_RELU[self.kind] else h

    def output(self, h: Float[Tensor, "inst batch hidden"]) -> Float[Tensor, "inst batch feat"]:
        """The second layer: the output read from a hidden activation ``h`` (which an
        intervention may have edited, :mod:`superposition.interventions`)."""
        out = torch.baddbmm(self.b[:, None, :], h, self.decoder.transpose(1, 2))
        return torch.relu(out) if OUTPUT_RELU[self.kind] else out

    def forward(self, x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch feat"]:
        return self.output(self.hidden(x))

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
        dL/dW = x^T dL/dh, plus dL/dW_dec when tied; with neuron biases, dL/db_hidden = sum_batch
        dL/dh.
        """
        dec = self.decoder
        h = self.hidden(x)
        x_in = self.encoder_input(x)  # dL/dW reads what the first layer read
        if x.stride(1) == 1 and x.shape[2] > 1:
            # feature-major samples (the CPU sampler writes [inst, feat, batch]): the output in the
            # same layout, so every elementwise pass below reads its operands in memory order
            out = torch.baddbmm(self.b[:, :, None], dec, h.transpose(1, 2)).transpose(1, 2)
        else:
            out = torch.baddbmm(self.b[:, None, :], h, dec.transpose(1, 2))
        value, g = loss.preactivation_grad(
            out, self.target(x), importance, relu=OUTPUT_RELU[self.kind], with_loss=with_loss
        )
        torch.sum(g, dim=1, out=grads["b"])
        g_dec = grads["W"] if self.tied else grads["W_dec"]
        torch.bmm(g.transpose(1, 2), h, out=g_dec)
        g_h = torch.bmm(g, dec)
        if HIDDEN_RELU[self.kind]:
            g_h = relu_backward(g_h, h)
        if self.b_hidden is not None:
            torch.sum(g_h, dim=1, out=grads["b_hidden"])
        if self.tied:
            grads["W"].baddbmm_(x_in.transpose(1, 2), g_h)
        else:
            torch.bmm(x_in.transpose(1, 2), g_h, out=grads["W"])
        return value
