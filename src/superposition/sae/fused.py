"""The fused CPU step of ReLU-L1 SAEs: sample, toy model, SAE forward and backward in one kernel.

The torch step (:meth:`SparseAutoencoder.loss_and_grads`) materialises every tensor of the batch
for every instance: dense samples that are mostly zero, and batched matmuls whose inner sizes (the
toy model's few hidden dimensions, a handful of latents) are far too small for a BLAS to be
efficient. Here one thread takes one SAE instance at a time (numba ``prange`` over instances) and,
for each sample, draws only the features that are present (the toy trainer's sampler,
:func:`superposition.kernels.sample_instance`), adds up their rows of the toy model's ``W`` into
``h`` and runs the SAE on it in registers. A sample with no feature present has ``h = 0``, so all
of them share one forward pass, counted once and weighted by their number: at density 0.05 with
five features that is three samples in four.

The formulas are :meth:`SparseAutoencoder.loss_and_grads`'s (relu_l1 only). Sums over the batch
are kept in float64 and each instance is processed in sample order by one thread, so an instance's
gradients do not depend on which instances it is trained beside, nor on the thread count.
"""

from typing import no_type_check

import numpy as np
import torch

from superposition._types import Float, Tensor
from superposition.data import FeatureDistribution
from superposition.jit import njit, prange
from superposition.kernels import sample_instance, stream
from superposition.models import HIDDEN_RELU, ToyModel
from superposition.sae.model import SparseAutoencoder


@njit(inline="always", cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _sample_grads(
    h: np.ndarray,
    weight: float,
    n_lat: np.int64,
    W_enc: np.ndarray,
    b_enc: np.ndarray,
    W_dec: np.ndarray,
    b_dec: np.ndarray,
    coef: float,
    inv_batch: float,
    f: np.ndarray,
    e: np.ndarray,
    gWe: np.ndarray,
    gbe: np.ndarray,
    gWd: np.ndarray,
    gbd: np.ndarray,
    fired: np.ndarray,
) -> float:
    """Add ``weight`` copies of one sample's gradients; return their loss (error + penalty)."""
    n_hidden = h.shape[0]
    penalty = 0.0
    for j in range(n_lat):
        pre = b_enc[j]
        for d in range(n_hidden):
            pre += W_enc[j, d] * h[d]
        f[j] = pre if pre > 0.0 else 0.0
        penalty += f[j]
    err = 0.0
    for d in range(n_hidden):
        out = b_dec[d]
        for j in range(n_lat):
            out += f[j] * W_dec[j, d]
        e[d] = out - h[d]
        err += e[d] * e[d]
    # g = 2 e / batch is dL/dh_hat; the latents only see it where they are active
    for d in range(n_hidden):
        e[d] *= 2.0 * inv_batch
        gbd[d] += weight * e[d]
    for j in range(n_lat):
        if f[j] > 0.0:
            fired[j] = True
            g_pre = coef * inv_batch
            for d in range(n_hidden):
                gWd[j, d] += weight * f[j] * e[d]
                g_pre += e[d] * W_dec[j, d]
            gbe[j] += weight * g_pre
            for d in range(n_hidden):
                gWe[j, d] += weight * g_pre * h[d]
    return weight * (err + coef * penalty)


@njit(cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _instance_step(
    batch: np.int64,
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
    toy_W: np.ndarray,
    hidden_relu: bool,
    n_lat: np.int64,
    W_enc: np.ndarray,
    b_enc: np.ndarray,
    W_dec: np.ndarray,
    b_dec: np.ndarray,
    coef: float,
    g_W_enc: np.ndarray,
    g_b_enc: np.ndarray,
    g_W_dec: np.ndarray,
    g_b_dec: np.ndarray,
    fired: np.ndarray,
) -> float:
    """One instance's gradients from its CSR batch; returns its loss summed over the batch."""
    n_hidden = toy_W.shape[1]
    n_max = W_enc.shape[0]
    gWe = np.zeros((n_max, n_hidden))
    gbe = np.zeros(n_max)
    gWd = np.zeros((n_max, n_hidden))
    gbd = np.zeros(n_hidden)
    h = np.empty(n_hidden)
    f = np.empty(n_max)
    e = np.empty(n_hidden)
    inv_batch = 1.0 / batch
    loss = 0.0
    empty = 0
    for s in range(batch):
        a, b = rowptr[s], rowptr[s + 1]
        if a == b:
            empty += 1
            continue
        for d in range(n_hidden):
            h[d] = 0.0
        for p in range(a, b):
            v = val[p]
            i = idx[p]
            for d in range(n_hidden):
                h[d] += v * toy_W[i, d]
        if hidden_relu:
            for d in range(n_hidden):
                h[d] = max(h[d], 0.0)
        loss += _sample_grads(
            h, 1.0, n_lat, W_enc, b_enc, W_dec, b_dec, coef, inv_batch, f, e,
            gWe, gbe, gWd, gbd, fired,
        )  # fmt: skip
    if empty:
        for d in range(n_hidden):
            h[d] = 0.0
        loss += _sample_grads(
            h, float(empty), n_lat, W_enc, b_enc, W_dec, b_dec, coef, inv_batch, f, e,
            gWe, gbe, gWd, gbd, fired,
        )  # fmt: skip
    for j in range(n_max):  # masked latents (j >= n_lat) get exactly zero
        g_b_enc[j] = gbe[j]
        for d in range(n_hidden):
            g_W_enc[j, d] = gWe[j, d]
            g_W_dec[j, d] = gWd[j, d]
    for d in range(n_hidden):
        g_b_dec[d] = gbd[d]
    return loss


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def relu_l1_step(
    keys: np.ndarray,
    step: np.int64,
    kind: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    q: np.ndarray,
    qmax: np.ndarray,
    inv_log: np.ndarray,
    dense: np.ndarray,
    signed: bool,
    toy_W: np.ndarray,
    hidden_relu: bool,
    n_lat: np.ndarray,
    W_enc: np.ndarray,
    b_enc: np.ndarray,
    W_dec: np.ndarray,
    b_dec: np.ndarray,
    coef: np.ndarray,
    g_W_enc: np.ndarray,
    g_b_enc: np.ndarray,
    g_W_dec: np.ndarray,
    g_b_dec: np.ndarray,
    fired: np.ndarray,
    loss: np.ndarray,
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
) -> None:
    """Every instance's gradients for step ``step`` (its batch drawn from its own stream)."""
    batch = rowptr.shape[1] - 1
    for k in prange(keys.shape[0]):
        sample_instance(
            stream(keys[k], step), batch, kind, start, size, q[k], qmax[k],
            inv_log[k], dense[k], signed, idx[k], val[k], rowptr[k],
        )  # fmt: skip
        loss[k] = _instance_step(
            batch, idx[k], val[k], rowptr[k], toy_W[k], hidden_relu, n_lat[k],
            W_enc[k], b_enc[k], W_dec[k], b_dec[k], coef[k],
            g_W_enc[k], g_b_enc[k], g_W_dec[k], g_b_dec[k], fired[k],
        ) / batch  # fmt: skip


class FusedSAEStep:
    """The fused step for one :class:`Setup`'s instances: writes the gradients into ``grads`` (the
    flat buffer's views), ORs the latents that fired into ``fired`` and returns the loss."""

    def __init__(
        self,
        sae: SparseAutoencoder,
        toy: ToyModel,
        dist: FeatureDistribution,
        grads: dict[str, Tensor],
        batch: int,
        keys: np.ndarray,
    ) -> None:
        from superposition.fastpaths import Units

        if sae.architecture != "relu_l1":
            raise ValueError(f"the fused SAE step is relu_l1 only, not {sae.architecture!r}")
        self.units = Units.of(dist)
        self.keys = keys.astype(np.uint64)
        n_inst, n_feat = dist.density.shape
        self.toy_W = toy.W.detach().contiguous().numpy()
        self.hidden_relu = HIDDEN_RELU[toy.kind]
        self.n_lat = sae.mask.sum(-1).numpy().astype(np.int64)
        self.coef = sae.coefficient.double().numpy()
        self.params = [sae.W_enc.numpy(), sae.b_enc.numpy(), sae.W_dec.numpy(), sae.b_dec.numpy()]
        self.grads = [grads[n].numpy() for n in ("W_enc", "b_enc", "W_dec", "b_dec")]
        self.loss = np.zeros(n_inst)
        # CSR capacity for the worst case (every feature present); untouched pages cost nothing
        self.idx = np.empty((n_inst, batch * n_feat), np.int32)
        self.val = np.empty((n_inst, batch * n_feat), np.float32)
        self.rowptr = np.empty((n_inst, batch + 1), np.int64)

    def __call__(
        self, step: int, fired: np.ndarray, *, with_loss: bool = True
    ) -> Float[Tensor, " inst"] | None:
        relu_l1_step(
            self.keys, step, *self.units.args(), self.units.signed, self.toy_W, self.hidden_relu,
            self.n_lat, *self.params, self.coef, *self.grads, fired, self.loss,
            self.idx, self.val, self.rowptr,
        )  # fmt: skip
        return torch.from_numpy(self.loss).float() if with_loss else None
