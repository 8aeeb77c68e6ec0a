"""The SAE step's matmuls over the active latents only (CPU kernels for
:meth:`~superposition.sae.model.SparseAutoencoder.loss_and_grads`).

At a few dozen active latents out of a thousand, four of the step's five batched matmuls multiply
mostly zeros: the decoder's ``f W_dec``, its gradient ``f^T g``, ``g W_dec^T`` (whose entries
are only used where a latent is active) and the encoder's gradient ``dpre^T h`` (``dpre`` is zero
where a latent is silent). Here each of them is a loop over the active (instance, sample,
latent) triples, ``hidden`` values at a time. Only the encoder's ``W_enc h`` stays dense.

The formulas are the dense step's (see the model's module docstring); the sums run in a
different order, so the results agree to float rounding. :data:`MAX_DENSITY` says when the dense
matmuls are cheaper.
"""

from typing import no_type_check

import numpy as np
import torch

from superposition._types import Bool, Float, Int, Tensor
from superposition.jit import njit

FAST = {"reassoc", "contract"}
"""Only reassociation (the dot product and the row updates vectorise) and fused multiply-adds."""

MAX_DENSITY = 0.08
"""Share of active (sample, latent) pairs above which the dense matmuls are used (measured on
one core, 3 SAEs of width 1,024 in 256 dimensions, batch 1,024: the step took 78 ms sparse
against 115 ms dense at 2.8% active, 55 against 80 at 5.5%, 96 against 84 at 11%)."""


@njit(cache=True, fastmath=FAST, nogil=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _decode(inst, row, col, val, W_dec, out):  # type: ignore[no-untyped-def]
    n_hidden = out.shape[2]
    for p in range(inst.shape[0]):
        i, b, j, v = inst[p], row[p], col[p], val[p]
        for d in range(n_hidden):
            out[i, b, d] += v * W_dec[i, j, d]


@njit(cache=True, fastmath=FAST, nogil=True)
@no_type_check
def _backward(inst, row, col, val, g, h, W_dec, extra, gW_dec, gW_enc, gb_enc):  # type: ignore[no-untyped-def]
    n_hidden = g.shape[2]
    for p in range(inst.shape[0]):
        i, b, j, v = inst[p], row[p], col[p], val[p]
        g_pre = extra[i]
        for d in range(n_hidden):
            g_pre += g[i, b, d] * W_dec[i, j, d]
        gb_enc[i, j] += g_pre
        for d in range(n_hidden):
            gW_dec[i, j, d] += v * g[i, b, d]
            gW_enc[i, j, d] += g_pre * h[i, b, d]


@njit(cache=True, fastmath=FAST, nogil=True)
@no_type_check
def _backward_near(inst, row, col, val, near, g, h, W_dec, gW_dec, gW_enc, gb_enc, g_near):  # type: ignore[no-untyped-def]
    # JumpReLU: the active pairs as in _backward (no penalty term: it acts on the threshold),
    # and dL/df summed over the pairs near the threshold, for the threshold's gradient
    n_hidden = g.shape[2]
    for p in range(inst.shape[0]):
        i, b, j, v = inst[p], row[p], col[p], val[p]
        g_f = 0.0
        for d in range(n_hidden):
            g_f += g[i, b, d] * W_dec[i, j, d]
        if near[p]:
            g_near[i, j] += g_f
        if v != 0.0:
            gb_enc[i, j] += g_f
            for d in range(n_hidden):
                gW_dec[i, j, d] += v * g[i, b, d]
                gW_enc[i, j, d] += g_f * h[i, b, d]


@njit(cache=True, fastmath=FAST, nogil=True)
@no_type_check
def _decode_segments(inst, row, col, val, segment, W_dec, out):  # type: ignore[no-untyped-def]
    # Matryoshka: each segment's part of the reconstruction, out [segment, inst, batch, hidden]
    n_hidden = out.shape[3]
    for p in range(inst.shape[0]):
        i, b, j, v = inst[p], row[p], col[p], val[p]
        s = segment[j]
        for d in range(n_hidden):
            out[s, i, b, d] += v * W_dec[i, j, d]


@njit(cache=True, fastmath=FAST, nogil=True)
@no_type_check
def _backward_segments(inst, row, col, val, segment, G, h, W_dec, gW_dec, gW_enc, gb_enc):  # type: ignore[no-untyped-def]
    # Matryoshka: a latent of segment s sees G_s, the sum of the errors of the levels holding it
    n_hidden = G.shape[3]
    for p in range(inst.shape[0]):
        i, b, j, v = inst[p], row[p], col[p], val[p]
        s = segment[j]
        g_pre = 0.0
        for d in range(n_hidden):
            g_pre += G[s, i, b, d] * W_dec[i, j, d]
        gb_enc[i, j] += g_pre
        for d in range(n_hidden):
            gW_dec[i, j, d] += v * G[s, i, b, d]
            gW_enc[i, j, d] += g_pre * h[i, b, d]


class ActivePairs:
    """The active entries of ``f [inst, batch, latent]`` (and those marked in ``near``, where
    ``f`` may be 0), as index and value arrays."""

    def __init__(
        self,
        f: Float[Tensor, "inst batch latent"],
        near: Bool[Tensor, "inst batch latent"] | None = None,
    ):
        index = (f != 0).logical_or_(near).nonzero() if near is not None else f.nonzero()
        self.inst: Int[Tensor, " pair"] = index[:, 0].contiguous()
        self.row: Int[Tensor, " pair"] = index[:, 1].contiguous()
        self.col: Int[Tensor, " pair"] = index[:, 2].contiguous()
        self.val: Float[Tensor, " pair"] = f[self.inst, self.row, self.col]
        self.near = None if near is None else near[self.inst, self.row, self.col]
        self.shape = f.shape

    def active_count(self) -> Int[Tensor, "inst latent"]:
        """How many samples of the batch each latent is active on (``f != 0``)."""
        n_inst, _, n_lat = self.shape
        key = (self.inst * n_lat + self.col)[self.val != 0]
        return torch.bincount(key, minlength=n_inst * n_lat).view(n_inst, n_lat)

    def decode(
        self, W_dec: Float[Tensor, "inst latent hidden"], b_dec: Float[Tensor, "inst hidden"],
        n_batch: int,
    ) -> Float[Tensor, "inst batch hidden"]:  # fmt: skip
        """``f W_dec + b_dec``."""
        out = b_dec[:, None, :].expand(-1, n_batch, -1).contiguous()
        _decode(self.inst.numpy(), self.row.numpy(), self.col.numpy(), self.val.numpy(),
                _np(W_dec), out.numpy())  # fmt: skip
        return out

    def backward(
        self,
        g: Float[Tensor, "inst batch hidden"],
        h: Float[Tensor, "inst batch hidden"],
        W_dec: Float[Tensor, "inst latent hidden"],
        extra: Float[Tensor, " inst"],
        grads: dict[str, Tensor],
    ) -> None:
        """From ``g = dL/dh_hat``: ``dL/dW_dec = f^T g``; at each active pair ``dpre = g W_dec^T
        + extra`` (the ReLU-L1 penalty's ``lambda / batch``, or 0); ``dL/db_enc`` and
        ``dL/dW_enc = dpre^T h``, written into ``grads``."""
        out = [grads[key].zero_() for key in ("W_dec", "W_enc", "b_enc")]
        _backward(self.inst.numpy(), self.row.numpy(), self.col.numpy(), self.val.numpy(),
                  _np(g), _np(h), _np(W_dec), _np(extra), *(t.numpy() for t in out))  # fmt: skip


    def backward_near(
        self,
        g: Float[Tensor, "inst batch hidden"],
        h: Float[Tensor, "inst batch hidden"],
        W_dec: Float[Tensor, "inst latent hidden"],
        grads: dict[str, Tensor],
    ) -> Float[Tensor, "inst latent"]:
        """JumpReLU's :meth:`backward` (``dpre = g W_dec^T`` where active); returns ``dL/df``
        summed over the batch at the pairs marked near the threshold."""
        assert self.near is not None
        out = [grads[key].zero_() for key in ("W_dec", "W_enc", "b_enc")]
        g_near = torch.zeros_like(grads["b_enc"])
        _backward_near(self.inst.numpy(), self.row.numpy(), self.col.numpy(), self.val.numpy(),
                       self.near.numpy(), _np(g), _np(h), _np(W_dec), *(t.numpy() for t in out),
                       g_near.numpy())  # fmt: skip
        return g_near


    def nested(
        self,
        h: Float[Tensor, "inst batch hidden"],
        W_dec: Float[Tensor, "inst latent hidden"],
        b_dec: Float[Tensor, "inst hidden"],
        prefixes: tuple[int, ...],
        grads: dict[str, Tensor],
        *,
        with_loss: bool,
    ) -> Float[Tensor, " inst"] | None:
        """Matryoshka's loss (when ``with_loss``) and gradients, written into ``grads``: the
        error ``e_m`` of every prefix from the segments' parts of the reconstruction, ``G_s =
        sum_{m >= s} 2 e_m / batch``, then :meth:`backward`'s loop with ``G_s`` for a latent of
        segment s."""
        n_batch = h.shape[1]
        segment = torch.zeros(W_dec.shape[1], dtype=torch.long)
        for lo in prefixes[:-1]:
            segment[lo:] += 1
        parts = torch.zeros(len(prefixes), *h.shape)
        _decode_segments(self.inst.numpy(), self.row.numpy(), self.col.numpy(), self.val.numpy(),
                         segment.numpy(), _np(W_dec), parts.numpy())  # fmt: skip
        # in place (a few segments): e_m = b_dec - h + the parts up to m, the prefixes' errors
        parts[0].add_(b_dec[:, None, :] - h)
        for m in range(1, len(prefixes)):
            parts[m].add_(parts[m - 1])
        loss = parts.square().sum(-1).mean(-1).sum(0) if with_loss else None
        for m in range(len(prefixes) - 2, -1, -1):  # then G_s, summed from the last level
            parts[m].add_(parts[m + 1])
        G = parts.mul_(2.0 / n_batch)
        torch.sum(G[0], dim=1, out=grads["b_dec"])  # the first segment is in every level
        out = [grads[key].zero_() for key in ("W_dec", "W_enc", "b_enc")]
        _backward_segments(self.inst.numpy(), self.row.numpy(), self.col.numpy(),
                           self.val.numpy(), segment.numpy(), G.numpy(), _np(h), _np(W_dec),
                           *(t.numpy() for t in out))  # fmt: skip
        return loss


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def usable(f: Float[Tensor, "inst batch latent"], pairs: int | None = None) -> bool:
    """Whether the loops beat the dense matmuls for this ``f`` (on the CPU, few enough pairs:
    its non-zero entries unless ``pairs`` says how many)."""
    if f.device.type != "cpu" or f.dtype != torch.float32:
        return False
    count = int(torch.count_nonzero(f)) if pairs is None else pairs
    return count <= MAX_DENSITY * f.numel()
