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

Instances may have different dictionary sizes: all are padded to the largest and ``mask`` marks
the latents that exist; a masked latent never fires, gets no gradient and keeps zero weights.
The gradients are written by hand (like :meth:`ToyModel.loss_and_grads`); the tests check them
against autograd.
"""

from dataclasses import dataclass

import torch

from superposition._types import Bool, Float, Int, Tensor

_OFF = -1e30
"""Pre-activation of a masked latent: below any threshold, never in a top k, finite (no NaN)."""


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

    def __post_init__(self) -> None:
        self.padded = not bool(self.mask.all())
        self.k_max = int(self.k.max()) if self.architecture == "topk" else 0
        self.ragged_k = self.architecture == "topk" and bool((self.k != self.k_max).any())

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
        if self.architecture == "topk":
            values, index = pre.topk(self.k_max, dim=-1)
            values = values.relu()
            if self.ragged_k:  # instances with a smaller k drop their trailing values
                rank = torch.arange(self.k_max, device=pre.device)
                values = values * (rank < self.k[:, None, None])
            return torch.zeros_like(pre).scatter_(-1, index, values)
        assert self.log_threshold is not None
        theta = self.log_threshold.exp()[:, None, :]
        return torch.where(pre > theta, pre, torch.zeros((), device=pre.device))

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
        err = (self.decode(f) - h).square().sum(-1).mean(-1)
        return err + self.coefficient * self._penalty(pre, f)

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
        pre = self.preactivations(h)
        f = self.activate(pre)
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
            g_pre = (g_f + (self.coefficient / n_batch)[:, None, None]) * active
        elif self.architecture == "topk":
            g_pre = g_f * active
        else:
            g_pre = self._jumprelu_backward(pre, g_f, active, grads["log_threshold"], n_batch)
        torch.sum(g_pre, dim=1, out=grads["b_enc"])
        torch.bmm(g_pre.transpose(1, 2), h, out=grads["W_enc"])
        return loss, f

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
        return g_f * active
