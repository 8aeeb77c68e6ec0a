"""The driver of the fast CPU kernels (:mod:`superposition.kernels`): the same gradients as
:meth:`ToyModel.loss_and_grads` on a batch drawn from the same :class:`FeatureDistribution`,
computed without materialising the (mostly zero) input. :mod:`superposition.steps.cpu` wraps it
as the ``fused`` and ``sparse`` steps.

``fused``
    tiny models (``feat * hidden <= FUSED_MAX_WEIGHTS``), typically thousands of instances: one
    numba kernel per step, parallel over instances; each instance's batch is drawn (counter-based
    RNG, vectorised) into a small [feat, batch] buffer that stays in cache and its forward and
    backward pass run right there as vector loops over the batch. Batched matmuls on 2 x 1 matrices
    would be almost all overhead, and torch.rand alone costs more than this whole step.
``sparse``
    larger models: the sampler draws only the present features (geometric gaps) into CSR form;
    samples with no feature present are not computed (their output is act(b): they are counted
    into the bias gradient and the loss in closed form); ``x @ W`` and ``x^T @ dL/dh`` are sparse
    numba loops; the output gradient is one in-cache pass per sample; the dense products
    (``h @ W_dec^T``, ``(h^T g)^T``, ``g W_dec``) are batched matmuls into buffers allocated once.
"""

from dataclasses import dataclass

import numpy as np
import torch

from superposition.data import FeatureDistribution
from superposition.models import HIDDEN_RELU, OUTPUT_RELU, ToyModel

FUSED_MAX_WEIGHTS = 256
"""Largest ``feat * hidden`` trained by the fused per-sample kernel (above it, matmuls win)."""
DENSE_ABOVE = 0.1
"""Above this unit probability a coin per position is cheaper than geometric gaps..."""
DENSE_ABOVE_VECTOR = 0.005
"""... and above this one when the coins are vectorised (fused path, independent features only)."""


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return True


@dataclass(frozen=True)
class Units:
    """The distribution as coin-sharing units (an independent feature, a correlated set or an
    anticorrelated set), per instance: ``q[k, u]`` is unit u's probability of being active."""

    kind: np.ndarray
    start: np.ndarray
    size: np.ndarray
    q: np.ndarray
    qmax: np.ndarray
    inv_log: np.ndarray
    dense: np.ndarray
    signed: bool

    @classmethod
    def of(cls, dist: FeatureDistribution, dense_above: float = DENSE_ABOVE) -> "Units":
        from superposition import kernels

        density = dist.density.detach().to("cpu", torch.float64).numpy()
        rows: list[tuple[int, int, int]] = []  # (kind, first feature, size) per unit
        for k, first in dist.correlated_starts():
            rows.append((kernels.CORRELATED, first, k))
        for k, first in dist.anticorrelated_starts():
            rows.append((kernels.ANTICORRELATED, first, k))
        first_free = sum(dist.correlated) + sum(dist.anticorrelated)
        rows += [(kernels.INDEPENDENT, i, 1) for i in range(first_free, dist.n_features)]
        kind, start, size = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
        # a set's coin has its first member's density; an anticorrelated set is on k times as often
        q = density[:, start] * np.where(kind == kernels.ANTICORRELATED, size, 1)
        q = np.minimum(q, 1.0)
        qmax = q.max(axis=1)
        dense = qmax > dense_above
        with np.errstate(divide="ignore"):
            inv_log = np.where(dense, 0.0, 1.0 / np.log1p(-np.where(dense, 0.5, qmax)))
        return cls(kind, start, size, q, qmax, inv_log, dense, dist.signed)

    def args(self) -> tuple[np.ndarray, ...]:
        return (self.kind, self.start, self.size, self.q, self.qmax, self.inv_log, self.dense)


def fast_sample_dense(
    dist: FeatureDistribution, keys: np.ndarray, step: int, batch: int
) -> torch.Tensor:
    """``batch`` samples per instance drawn by the fast paths' sampler from the per-instance
    streams ``keys`` at counter ``step``, as a dense [inst, batch, feat] tensor."""
    from superposition import kernels

    units = Units.of(dist)
    x = np.zeros((dist.n_instances, dist.n_features, batch), np.float32)
    kernels.sample_dense(keys, step, *units.args(), units.signed, x)
    return torch.from_numpy(x).transpose(1, 2)


class FastStep:
    """One training step's gradients on the ``fused`` or ``sparse`` path, for one chunk.

    Writes the gradients into ``grads`` (views of the flat gradient buffer) and returns the
    per-instance loss when asked. ``keys`` holds one stream key per instance, so each instance's
    batches are the same however the run is stacked or chunked.
    """

    def __init__(
        self,
        path: str,
        dist: FeatureDistribution,
        importance: torch.Tensor,
        model: ToyModel,
        grads: dict[str, torch.Tensor],
        batch: int,
        keys: np.ndarray,
        scale: float | None = None,
    ):
        """``scale``: what an instance's summed squared error over the batch is divided by (the
        loss's reduction; default ``batch * feat``, the notebook's mean)."""
        from superposition import kernels

        if path not in ("fused", "sparse"):
            raise ValueError(f"FastStep runs the fused or sparse path, not {path!r}")
        self.k = kernels
        self.path = path
        vector = path == "fused" and not (dist.correlated or dist.anticorrelated)
        self.units = Units.of(dist, DENSE_ABOVE_VECTOR if vector else DENSE_ABOVE)
        self.model, self.grads, self.batch = model, grads, batch
        self.keys = keys.astype(np.uint64)
        n_inst, n_feat, n_hidden = model.W.shape
        self.scale = float(batch * n_feat) if scale is None else scale
        self.importance = importance
        self.coef = (importance * (2.0 / self.scale)).contiguous()
        self.flags = (HIDDEN_RELU[model.kind], OUTPUT_RELU[model.kind], model.kind == "abs")
        self.np = {
            "W": model.W.numpy(),
            "dec": model.decoder.numpy(),
            "b": model.b.numpy(),
            "coef": self.coef.numpy(),
            "imp": importance.numpy(),
            "gW": grads["W"].numpy(),
            "gdec": grads.get("W_dec", grads["W"]).numpy(),
            "gb": grads["b"].numpy(),
        }
        self.err = np.zeros(n_inst)
        # CSR capacity for the worst case (every feature present); pages never touched cost nothing
        self.idx = np.empty((n_inst, batch * n_feat), np.int32)
        self.val = np.empty((n_inst, batch * n_feat), np.float32)
        self.rowptr = np.empty((n_inst, batch + 1), np.int64)
        if path == "sparse":
            self.rowptr_nz = np.empty_like(self.rowptr)
            # flat storage: the first `rows` samples of each are contiguous [inst, rows, ...] views
            self.h_buf = torch.empty(n_inst * batch * n_hidden)
            self.out_buf = torch.empty(n_inst * batch * n_feat)
            self.gh_buf = torch.empty(n_inst * batch * n_hidden)
            # dL/dW_dec^T: h^T @ g reads g row by row, about twice as fast as g^T @ h
            self.gdec_t = torch.empty(n_inst, n_hidden, n_feat)

    def __call__(self, step: int, *, with_loss: bool) -> torch.Tensor | None:
        if self.path == "fused":
            return self._fused(step, with_loss)
        return self._sparse(step, with_loss)

    def _fused(self, step: int, with_loss: bool) -> torch.Tensor | None:
        a = self.np
        self.k.fused_step(
            self.keys, step, self.batch, *self.units.args(), self.units.signed,
            a["W"], a["dec"], a["b"], a["coef"], a["imp"], *self.flags, self.model.tied,
            with_loss, a["gW"], a["gdec"], a["gb"], self.err,
        )  # fmt: skip
        return torch.from_numpy(self.err / self.scale).float() if with_loss else None

    def sample_dense(self, step: int) -> torch.Tensor:
        """This step's batch as the fused path draws it, [inst, batch, feat]."""
        n_inst, n_feat, _ = self.model.W.shape
        x = np.zeros((n_inst, n_feat, self.batch), np.float32)
        self.k.sample_dense(
            self.keys, step, *self.units.args(), self.units.signed, x
        )  # fmt: skip
        return torch.from_numpy(x).transpose(1, 2)

    def sample_csr(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This step's batch in CSR form (the same batch the fused path draws)."""
        self.k.sample_csr(
            self.keys, step, *self.units.args(), self.units.signed,
            self.idx, self.val, self.rowptr,
        )  # fmt: skip
        return self.idx, self.val, self.rowptr

    def _sparse(self, step: int, with_loss: bool) -> torch.Tensor | None:
        hidden_relu, output_relu, abs_target = self.flags
        model, grads, k = self.model, self.grads, self.k
        n_inst, n_feat, n_hidden = model.W.shape
        idx, val, rowptr = self.sample_csr(step)
        # only samples with a present feature are computed; the all-zero ones (h = 0, output
        # act(b)) are counted into the bias gradient and the loss analytically by output_grad
        rows = max(1, int(k.compact_rows(rowptr, self.rowptr_nz)))
        rowptr = self.rowptr_nz
        h = self.h_buf[: n_inst * rows * n_hidden].view(n_inst, rows, n_hidden)
        out = self.out_buf[: n_inst * rows * n_feat].view(n_inst, rows, n_feat)
        gh = self.gh_buf[: n_inst * rows * n_hidden].view(n_inst, rows, n_hidden)
        k.sparse_xw(idx, val, rowptr, self.np["W"], h.numpy())
        if hidden_relu:
            h.relu_()
        dec = model.decoder
        torch.bmm(h, dec.transpose(1, 2), out=out)  # + b: in output_grad
        k.output_grad(
            idx, val, rowptr, out.numpy(), self.np["b"], self.np["coef"], self.np["imp"],
            self.batch - rows, output_relu, abs_target, self.np["gb"], self.err,
        )  # fmt: skip
        torch.bmm(h.transpose(1, 2), out, out=self.gdec_t)
        (grads["W"] if model.tied else grads["W_dec"]).copy_(self.gdec_t.transpose(1, 2))
        torch.bmm(out, dec, out=gh)
        if hidden_relu:
            gh.masked_fill_(h <= 0, 0.0)
        k.sparse_xtg(idx, val, rowptr, gh.numpy(), self.np["gW"], model.tied)
        return torch.from_numpy(self.err / self.scale).float() if with_loss else None
