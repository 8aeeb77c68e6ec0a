"""Sparse autoencoders batched over instances, with their loss gradients in closed form.

Every SAE reads a toy model's hidden activation ``h`` (``hidden`` axis) into ``latent`` activations
``f`` and writes back a reconstruction::

    pre = W_enc h + b_enc          f = act(pre)          h_hat = W_dec^T f + b_dec

Both matrices are stored ``[inst, latent, hidden]`` like the toy model's ``W``: row ``W_dec[k, j]``
is latent j's *direction* in hidden space, the thing that is compared with the true features.
The loss of one instance is the squared error summed over ``hidden`` and averaged over the batch,
plus the sparsity penalty of its architecture, also averaged over the batch:

- ``relu_l1``: ``f = ReLU(pre)`` and ``lambda * sum_j f_j`` (Sharkey et al. 2022). The penalty
  only means something when the decoder rows cannot grow, so the trainer keeps them at unit norm.
- ``topk``: ``f = ReLU(TopK(pre))``, the k largest pre-activations kept (Gao et al. 2024); no
  penalty, the sparsity is fixed. At most k latents are active (fewer only when some of the k
  largest pre-activations are negative).
- ``jumprelu``: ``f = pre * H(pre - theta)`` with a learned threshold ``theta = exp(log_threshold)``
  per latent, and ``lambda * sum_j H(pre_j - theta_j)`` (an L0 penalty; Rajamanoharan et al. 2024).
  H has no useful derivative, so the threshold's gradient uses the paper's straight-through
  estimator: d/dtheta of both terms is replaced by a rectangle kernel of width ``bandwidth`` around
  the threshold, ``-(1/eps) K((pre - theta)/eps)`` for H and ``-(theta/eps) K(...)`` for the
  JumpReLU itself; the gradient reaching ``pre`` through f is ``H(pre - theta)``.
- ``batchtopk``: the ``k x batch`` largest pre-activations of the whole batch are kept, through a
  ReLU (Bussmann et al. 2024, *BatchTopK Sparse Autoencoders*): k active latents on average, more
  on a sample that needs them. At inference a sample cannot see its batch, so ``f = pre *
  H(pre - theta)`` with one threshold per instance, the running mean of the smallest kept
  pre-activation of the training batches (the paper's estimate). :attr:`training` switches.
- ``matryoshka``: BatchTopK latents, and the loss sums the squared error of every nested prefix
  ``f[:p] W_dec[:p]`` of the dictionary, ``p`` in ``prefixes`` (Bussmann et al. 2025, *Learning
  Multi-Level Features with Matryoshka Sparse Autoencoders*, Section 3): the first latents must
  reconstruct the input on their own, so they learn general features and the later ones refine
  them. With residuals ``e_m`` of prefix m and ``G_s = sum_{m >= s} 2 e_m / batch`` (the levels
  that contain segment s), latent segment s gets ``dL/dW_dec = f_s^T G_s`` and ``dL/df_s = G_s
  W_dec_s^T``.

Instances may have different dictionary sizes: all are padded to the largest and ``mask`` marks
the latents that exist; a masked latent never fires, gets no gradient and keeps zero weights.
The gradients are written by hand (like :meth:`ToyModel.loss_and_grads`); the tests check them
against autograd.
"""

from dataclasses import dataclass, field

import torch

from superposition._types import Bool, Float, Int, Tensor
from superposition.sae import sparse

SPARSE_STEP = ("relu_l1", "topk", "batchtopk")
"""Architectures whose step runs over the active latents only when they are few
(:mod:`superposition.sae.sparse`) with the same loop; JumpReLU (whose threshold gradient also
reads silent latents near it) and Matryoshka (one error per prefix) have loops of their own."""

_OFF = -1e30
"""Pre-activation of a masked latent: below any threshold, never in a top k, finite (no NaN)."""


SUBSAMPLE = 64
"""Batch top-k looks at every this-many-th pre-activation to guess its threshold."""


def _largest(x: Float[Tensor, " n"], k: int) -> tuple[Float[Tensor, " k"], Int[Tensor, " k"]]:
    """The ``k`` largest entries of ``x`` and their indices, unsorted: ``x.topk(k)``, found
    faster when k is a small share of a long x. A subsample's quantile, set a little low, gives
    a threshold that about 1.25 k entries pass; the top k of those is the answer (exact: all of
    the k largest are among them). When fewer than k pass, the full top-k is taken instead."""
    n = x.shape[0]
    if n < 16 * SUBSAMPLE or k * 8 > n:
        return x.topk(k, sorted=False)
    sample = x[::SUBSAMPLE]
    rank = max(1, int(sample.shape[0] * (1.0 - 1.25 * k / n)))
    cut = sample.kthvalue(rank).values
    candidates = (x >= cut).nonzero().squeeze(1)
    if candidates.shape[0] < k:
        return x.topk(k, sorted=False)
    values, j = x[candidates].topk(k, sorted=False)
    return values, candidates[j]


@dataclass
class SparseAutoencoder:
    """Parameters and per-instance settings of many SAEs; the tensors may be views of a buffer."""

    architecture: str
    W_enc: Float[Tensor, "inst latent hidden"]
    b_enc: Float[Tensor, "inst latent"]
    W_dec: Float[Tensor, "inst latent hidden"]
    b_dec: Float[Tensor, "inst hidden"]
    coefficient: Float[Tensor, " inst"]
    """Sparsity coefficient lambda of each instance (unused by topk)."""
    k: Int[Tensor, " inst"]
    """Active latents per sample of each instance (topk only)."""
    mask: Bool[Tensor, "inst latent"]
    """Which latents exist (smaller dictionaries are padded to the largest)."""
    log_threshold: Float[Tensor, "inst latent"] | None = None
    """JumpReLU only: log of the per-latent threshold (the log keeps it positive)."""
    bandwidth: float = 0.01
    prefixes: tuple[int, ...] = ()
    """Matryoshka only: the nested dictionary sizes, increasing, the last the padded width."""
    threshold: Float[Tensor, " inst"] | None = None
    """BatchTopK and Matryoshka: the inference threshold (running mean of the smallest kept
    pre-activation); created at zero when not given."""
    training: bool = field(default=True, init=False)
    """BatchTopK and Matryoshka: batch top-k while training, the threshold otherwise."""
    threshold_decay: float = field(default=0.99, init=False)
    """Weight of the old value in the threshold's running mean."""
    active_count: Int[Tensor, "inst latent"] | None = field(default=None, init=False)
    """After a step over the active latents only (:mod:`superposition.sae.sparse`): how many
    samples of its batch each latent was active on (None after a dense step)."""

    def __post_init__(self) -> None:
        self.padded = not bool(self.mask.all())
        self.batch_topk = self.architecture in ("batchtopk", "matryoshka")
        uses_k = self.architecture == "topk" or self.batch_topk
        self.k_max = int(self.k.max()) if uses_k else 0
        self.ragged_k = uses_k and bool((self.k != self.k_max).any())
        self.ks: list[int] = [int(k) for k in self.k.tolist()] if uses_k else []
        if self.batch_topk and self.threshold is None:
            self.threshold = torch.zeros(self.mask.shape[0], device=self.mask.device)
        self._threshold_seen = False
        if self.architecture == "matryoshka" and (
            not self.prefixes or self.prefixes[-1] != self.mask.shape[1]
        ):
            self.prefixes = (*self.prefixes, self.mask.shape[1])

    def params(self) -> dict[str, Tensor]:
        out = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.log_threshold is not None:
            out["log_threshold"] = self.log_threshold
        return out

    # ---- forward --------------------------------------------------------------------------------

    def preactivations(
        self, h: Float[Tensor, "inst batch hidden"]
    ) -> Float[Tensor, "inst batch latent"]:
        pre = torch.baddbmm(self.b_enc[:, None, :], h, self.W_enc.transpose(1, 2))
        if self.padded:
            pre.masked_fill_(~self.mask[:, None, :], _OFF)
        return pre

    def activate(
        self, pre: Float[Tensor, "inst batch latent"]
    ) -> Float[Tensor, "inst batch latent"]:
        if self.architecture == "relu_l1":
            return torch.relu(pre)
        if self.batch_topk:
            return self._batch_topk(pre) if self.training else self._thresholded(pre)
        if self.architecture == "topk":
            return self._keep_largest(pre, self.ks)
        assert self.log_threshold is not None
        theta = self.log_threshold.exp()[:, None, :]
        return torch.where(pre > theta, pre, torch.zeros((), device=pre.device))

    def _batch_topk(
        self, pre: Float[Tensor, "inst batch latent"]
    ) -> Float[Tensor, "inst batch latent"]:
        n_inst, n_batch, n_lat = pre.shape
        flat = pre.reshape(n_inst, n_batch * n_lat)
        out = torch.zeros_like(flat)
        for i, k in enumerate(self.ks):
            values, index = _largest(flat[i], min(k * n_batch, flat.shape[1]))
            out[i].scatter_(0, index, values.relu_())
        return out.reshape(pre.shape)

    def _keep_largest(
        self, pre: Float[Tensor, "inst row latent"], keep: list[int]
    ) -> Float[Tensor, "inst row latent"]:
        """ReLU of the ``keep[i]`` largest entries of each row of instance i, zeros elsewhere.
        The order of the kept entries does not matter, so they are not sorted; an instance with
        a smaller count selects its entries among the largest count's (a top-k of a top-k),
        which costs little next to the first selection."""
        most = max(keep)
        values, index = pre.topk(most, dim=-1, sorted=False)
        out = torch.zeros_like(pre)
        if not self.ragged_k:
            return out.scatter_(-1, index, values.relu_())
        for i, k in enumerate(keep):
            v, j = values[i], index[i]
            if k < most:
                v, kept = v.topk(k, dim=-1, sorted=False)
                j = j.gather(-1, kept)
            out[i].scatter_(-1, j, v.relu())
        return out

    def _thresholded(
        self, pre: Float[Tensor, "inst batch latent"]
    ) -> Float[Tensor, "inst batch latent"]:
        assert self.threshold is not None
        theta = self.threshold.clamp_min(0.0)[:, None, None]
        return torch.where(pre > theta, pre, torch.zeros((), device=pre.device))

    @torch.no_grad()
    def update_threshold(self, f: Float[Tensor, "inst batch latent"]) -> None:
        """Fold the smallest positive kept activation of a training batch into the running mean
        of the inference threshold (Bussmann et al. 2024, Section 3)."""
        assert self.threshold is not None
        smallest = torch.where(f > 0, f, torch.inf).flatten(1).min(-1).values
        smallest = torch.where(smallest.isfinite(), smallest, self.threshold)
        if not self._threshold_seen:
            self.threshold.copy_(smallest)
            self._threshold_seen = True
        else:
            self.threshold.mul_(self.threshold_decay).add_(
                smallest, alpha=1.0 - self.threshold_decay
            )

    def encode(self, h: Float[Tensor, "inst batch hidden"]) -> Float[Tensor, "inst batch latent"]:
        return self.activate(self.preactivations(h))

    def decode(self, f: Float[Tensor, "inst batch latent"]) -> Float[Tensor, "inst batch hidden"]:
        return torch.baddbmm(self.b_dec[:, None, :], f, self.W_dec)

    def forward(self, h: Float[Tensor, "inst batch hidden"]) -> Float[Tensor, "inst batch hidden"]:
        return self.decode(self.encode(h))

    def loss(self, h: Float[Tensor, "inst batch hidden"]) -> Float[Tensor, " inst"]:
        """Reconstruction error plus sparsity penalty of each instance (see the module doc)."""
        pre = self.preactivations(h)
        f = self.activate(pre)
        if self.architecture == "matryoshka":
            errors = [
                (self._prefix_decode(f, p) - h).square().sum(-1).mean(-1) for p in self.prefixes
            ]
            return torch.stack(errors).sum(0)
        err = (self.decode(f) - h).square().sum(-1).mean(-1)
        return err + self.coefficient * self._penalty(pre, f)

    def _prefix_decode(
        self, f: Float[Tensor, "inst batch latent"], p: int
    ) -> Float[Tensor, "inst batch hidden"]:
        return torch.baddbmm(self.b_dec[:, None, :], f[..., :p], self.W_dec[:, :p])

    def _penalty(
        self, pre: Float[Tensor, "inst batch latent"], f: Float[Tensor, "inst batch latent"]
    ) -> Float[Tensor, " inst"]:
        if self.architecture == "relu_l1":
            return f.sum(-1).mean(-1)
        if self.architecture == "jumprelu":
            return (f != 0).sum(-1).mean(-1, dtype=f.dtype)
        return torch.zeros(f.shape[0], device=f.device)

    # ---- backward -------------------------------------------------------------------------------

    def loss_and_grads(
        self,
        h: Float[Tensor, "inst batch hidden"],
        grads: dict[str, Tensor],
        *,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch latent"]]:
        """Write d(sum of per-instance losses)/d(param) into ``grads`` (keys of :meth:`params`);
        return the per-instance loss (when ``with_loss``) and the latent activations.

        With e = h_hat - h and g = 2 e / batch: dL/db_dec = sum_batch g, dL/dW_dec = f^T g,
        dL/df = g W_dec^T; then through the activation to dL/dpre (plus lambda / batch where a
        relu_l1 latent is active), dL/dW_enc = dpre^T h and dL/db_enc = sum_batch dpre.
        """
        n_batch = h.shape[1]
        self.active_count = None
        pre = self.preactivations(h)
        f = self.activate(pre)
        if self.batch_topk and self.training:
            self.update_threshold(f)
        # the k architectures have at most k active latents per sample (on average, for batch
        # top-k): that bound decides without counting
        bound = sum(self.ks) * n_batch if self.ks else None
        if self.architecture == "matryoshka" and sparse.usable(f, bound):
            pairs = sparse.ActivePairs(f)
            self.active_count = pairs.active_count()
            loss = pairs.nested(h, self.W_dec, self.b_dec, self.prefixes, grads,
                                with_loss=with_loss)  # fmt: skip
            return loss, f
        if self.architecture == "matryoshka":
            loss, g_f = self._nested_backward(h, f, grads, with_loss=with_loss)
            g_pre = torch.where(f != 0, g_f, 0.0)
            torch.sum(g_pre, dim=1, out=grads["b_enc"])
            torch.bmm(g_pre.transpose(1, 2), h, out=grads["W_enc"])
            return loss, f
        if self.architecture in SPARSE_STEP and sparse.usable(f, bound):
            return self._sparse_loss_and_grads(h, pre, f, grads, with_loss=with_loss), f
        if self.architecture == "jumprelu" and f.device.type == "cpu":
            near = self._near_threshold(pre)
            if sparse.usable(f, int(((f != 0) | near).sum())):
                return self._sparse_jumprelu(h, pre, f, near, grads, with_loss=with_loss), f
        diff = self.decode(f).sub_(h)
        loss = None
        if with_loss:
            loss = diff.square().sum(-1).mean(-1) + self.coefficient * self._penalty(pre, f)
        g = diff.mul_(2.0 / n_batch)
        torch.sum(g, dim=1, out=grads["b_dec"])
        torch.bmm(f.transpose(1, 2), g, out=grads["W_dec"])
        g_f = torch.bmm(g, self.W_dec.transpose(1, 2))
        active = f != 0
        if self.architecture == "relu_l1":
            g_f += (self.coefficient / n_batch)[:, None, None]
            g_pre = torch.where(active, g_f, 0.0)  # one pass, no float copy of the mask
        elif self.architecture in ("topk", "batchtopk"):
            g_pre = torch.where(active, g_f, 0.0)
        else:
            g_pre = self._jumprelu_backward(pre, g_f, active, grads["log_threshold"], n_batch)
        torch.sum(g_pre, dim=1, out=grads["b_enc"])
        torch.bmm(g_pre.transpose(1, 2), h, out=grads["W_enc"])
        return loss, f

    def _sparse_loss_and_grads(
        self,
        h: Float[Tensor, "inst batch hidden"],
        pre: Float[Tensor, "inst batch latent"],
        f: Float[Tensor, "inst batch latent"],
        grads: dict[str, Tensor],
        *,
        with_loss: bool,
    ) -> Float[Tensor, " inst"] | None:
        """:meth:`loss_and_grads` with the decoder and the gradients' matmuls over the active
        latents only (:mod:`superposition.sae.sparse`): the same formulas."""
        n_batch = h.shape[1]
        pairs = sparse.ActivePairs(f)
        loss, g = self._sparse_residual(pairs, h, pre, f, grads, with_loss=with_loss)
        extra = (
            self.coefficient / n_batch
            if self.architecture == "relu_l1"
            else torch.zeros_like(self.coefficient)
        )
        pairs.backward(g, h, self.W_dec, extra, grads)
        return loss

    def _sparse_residual(
        self,
        pairs: sparse.ActivePairs,
        h: Float[Tensor, "inst batch hidden"],
        pre: Float[Tensor, "inst batch latent"],
        f: Float[Tensor, "inst batch latent"],
        grads: dict[str, Tensor],
        *,
        with_loss: bool,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch hidden"]]:
        """The sparse step's start, shared by every architecture: the active counts, the loss
        (when ``with_loss``) and ``g = dL/dh_hat = 2 (h_hat - h) / batch``, whose sum over the
        batch is written as ``b_dec``'s gradient."""
        n_batch = h.shape[1]
        self.active_count = pairs.active_count()
        diff = pairs.decode(self.W_dec, self.b_dec, n_batch).sub_(h)
        loss = None
        if with_loss:
            loss = diff.square().sum(-1).mean(-1) + self.coefficient * self._penalty(pre, f)
        g = diff.mul_(2.0 / n_batch)
        torch.sum(g, dim=1, out=grads["b_dec"])
        return loss, g

    def _near_threshold(
        self, pre: Float[Tensor, "inst batch latent"]
    ) -> Bool[Tensor, "inst batch latent"]:
        """JumpReLU: where the rectangle kernel of the threshold's gradient is non-zero."""
        assert self.log_threshold is not None
        theta = self.log_threshold.exp()
        return (pre - theta[:, None, :]).abs() < self.bandwidth / 2

    def _sparse_jumprelu(
        self,
        h: Float[Tensor, "inst batch hidden"],
        pre: Float[Tensor, "inst batch latent"],
        f: Float[Tensor, "inst batch latent"],
        near: Bool[Tensor, "inst batch latent"],
        grads: dict[str, Tensor],
        *,
        with_loss: bool,
    ) -> Float[Tensor, " inst"] | None:
        """JumpReLU's :meth:`loss_and_grads` over the active pairs and those near the threshold
        (:mod:`superposition.sae.sparse`); the threshold's gradient as in
        :meth:`_jumprelu_backward`."""
        assert self.log_threshold is not None
        n_batch, eps = h.shape[1], self.bandwidth
        pairs = sparse.ActivePairs(f, near)
        loss, g = self._sparse_residual(pairs, h, pre, f, grads, with_loss=with_loss)
        g_near = pairs.backward_near(g, h, self.W_dec, grads)
        theta = self.log_threshold.exp()
        g_theta = -g_near * (theta / eps)
        g_theta -= near.sum(1) * (self.coefficient / (n_batch * eps))[:, None]
        torch.mul(g_theta, theta, out=grads["log_threshold"])
        return loss

    def _nested_backward(
        self,
        h: Float[Tensor, "inst batch hidden"],
        f: Float[Tensor, "inst batch latent"],
        grads: dict[str, Tensor],
        *,
        with_loss: bool,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch latent"]]:
        """Matryoshka's loss (every prefix's squared error, summed) and its gradients for the
        decoder, writing them into ``grads``; returns the loss and dL/df (see the module doc)."""
        n_batch = h.shape[1]
        bounds = list(zip((0, *self.prefixes[:-1]), self.prefixes, strict=True))
        residual = self.b_dec[:, None, :] - h
        errors = []
        for lo, hi in bounds:  # the residual of each prefix, built segment by segment
            residual = torch.baddbmm(residual, f[..., lo:hi], self.W_dec[:, lo:hi])
            errors.append(residual)
        loss: Tensor | None = None
        if with_loss:
            loss = torch.stack([e.square().sum(-1).mean(-1) for e in errors]).sum(0)
        g_f = torch.empty_like(f)
        suffix = torch.zeros_like(h)
        for (lo, hi), e in zip(reversed(bounds), reversed(errors), strict=True):
            suffix = suffix.add_(e, alpha=2.0 / n_batch)  # G_s: the levels containing segment s
            torch.bmm(f[..., lo:hi].transpose(1, 2), suffix, out=grads["W_dec"][:, lo:hi])
            torch.bmm(suffix, self.W_dec[:, lo:hi].transpose(1, 2), out=g_f[..., lo:hi])
        torch.sum(suffix, dim=1, out=grads["b_dec"])
        return loss, g_f

    def _jumprelu_backward(
        self,
        pre: Float[Tensor, "inst batch latent"],
        g_f: Float[Tensor, "inst batch latent"],
        active: Bool[Tensor, "inst batch latent"],
        g_log_threshold: Float[Tensor, "inst latent"],
        n_batch: int,
    ) -> Float[Tensor, "inst batch latent"]:
        # Rajamanoharan et al. 2024, straight-through estimator with a rectangle kernel:
        # dJumpReLU/dtheta ~ -(theta/eps) K, dH/dtheta ~ -(1/eps) K, K = 1 on |pre - theta| < eps/2
        assert self.log_threshold is not None
        eps = self.bandwidth
        theta = self.log_threshold.exp()
        near = ((pre - theta[:, None, :]).abs() < eps / 2).to(pre.dtype)
        g_theta = -(g_f * near).sum(1) * (theta / eps)
        g_theta -= near.sum(1) * (self.coefficient / (n_batch * eps))[:, None]
        torch.mul(g_theta, theta, out=g_log_threshold)  # chain rule through theta = exp(log)
        return torch.where(active, g_f, 0.0)
