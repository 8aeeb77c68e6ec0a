"""Losses: one definition each, used by training, the experiments and the SAE metrics alike.

A loss compares a model's output ``out`` with its ``target`` (both ``[inst, batch, feat]``) under
per-instance, per-feature weights ``importance`` and returns one number per instance. Instances
never share a loss term: the trainer sums the per-instance losses, so each instance's gradient is
its own.

Built in (:data:`LOSSES`, looked up by name with :func:`get_loss`):

``mse``
    the importance-weighted squared error of Elhage et al. 2022, Section 2 ("Demonstrating
    Superposition"), ``sum_i I_i (x_i - x'_i)^2``, averaged over the batch *and the features* of an
    instance: the paper's notebook's reduction, i.e. the paper's per-sample loss divided by n.
``mse_sum``
    the same error summed over the features and averaged over the batch: the paper's per-sample
    loss as written.
``cross_entropy``
    the features treated as classes: the output is a vector of logits over the n features and the
    target, normalised to sum to one, is the class distribution (a one-hot target names one class).
    The importance weights each class's term: ``-sum_i I_i t_i log softmax(out)_i``, averaged over
    the batch. Samples whose target is all zero contribute nothing.

``quadratic``
    Scherlis et al. 2022, "Polysemanticity and Capacity in Neural Networks", their quadratic
    model: one scalar prediction per sample read from the linear model's output as
    ``y' = sum_i x_i out_i`` (with ``out = W^T W x + b`` that is ``||W x||^2 + b . x``: the
    hidden activations squared and summed, the paper's quadratic activation with a unit read-out),
    against the target ``y = sum_i I_i x_i^2`` (the importance weights each feature's square);
    the squared error ``(y' - y)^2`` with its batch mean removed, i.e. with the best constant
    output bias profiled out, averaged over the batch. Meant for the ``linear`` model (the
    target it reads is the input x); the per-feature ``b`` is a linear term whose optimum is 0
    for symmetric features.

A new loss is one subclass of :class:`Loss` that defines :meth:`Loss.value`, plus
``register_loss("name", MyLoss())``. Its gradient with respect to the output then comes from
autograd (:meth:`Loss.output_grad`); a loss that knows its gradient in closed form overrides it.
The model's own backward pass (:meth:`superposition.models.ToyModel.grads_from_output`) does the
rest, on any device.
"""

import torch

from superposition._types import Float, Tensor
from superposition.errors import ConfigError


def relu_backward(grad: Tensor, activated: Tensor) -> Tensor:
    """``grad`` zeroed where the ReLU's output ``activated`` is 0 (one fused kernel instead of a
    mask and a multiply)."""
    return torch.ops.aten.threshold_backward(grad, activated, 0)


class Loss:
    """A per-instance loss of a model's output against its target."""

    name: str = ""
    """The name the loss is registered under (set by :func:`register_loss`)."""

    def value(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
    ) -> Float[Tensor, " inst"]:
        """The loss of each instance over the batch."""
        raise NotImplementedError

    def output_grad(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        *,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch feat"]]:
        """The per-instance loss (``None`` unless ``with_loss``) and d(sum of per-instance
        losses)/d(out). By default from autograd on :meth:`value` (only through ``out``, so it is
        cheap)."""
        with torch.enable_grad():
            leaf = out.detach().requires_grad_(True)
            loss = self.value(leaf, target, importance)
            (grad,) = torch.autograd.grad(loss.sum(), leaf)
        return (loss.detach() if with_loss else None), grad

    def preactivation_grad(
        self,
        pre: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        *,
        relu: bool,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch feat"]]:
        """:meth:`output_grad` through the output's ReLU when ``relu``: the loss of
        ``act(pre)`` and its gradient with respect to ``pre``. ``pre`` may be overwritten."""
        if not relu:
            return self.output_grad(pre, target, importance, with_loss=with_loss)
        out = pre.relu_()
        value, grad = self.output_grad(out, target, importance, with_loss=with_loss)
        return value, relu_backward(grad, out)


class SquaredError(Loss):
    """Importance-weighted squared error (Section 2), mean over the batch; ``reduction`` "mean"
    also divides by the number of features (the notebook's), "sum" does not (the paper's)."""

    def __init__(self, reduction: str = "mean"):
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def scale(self, batch: int, n_feat: int) -> float:
        """What the summed squared error of one instance's batch is divided by."""
        return float(batch * n_feat if self.reduction == "mean" else batch)

    def value(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
    ) -> Float[Tensor, " inst"]:
        err = (out - target).square() * importance[:, None, :]
        return err.sum(dim=(1, 2)) / self.scale(out.shape[1], out.shape[2])

    def output_grad(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        *,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch feat"]]:
        # d/d out of sum I (out - t)^2 / scale = 2 I (out - t) / scale
        diff = out - target
        scale = self.scale(out.shape[1], out.shape[2])
        loss = None
        if with_loss:
            loss = (diff.square() * importance[:, None, :]).sum(dim=(1, 2)) / scale
        return loss, diff.mul_((importance * (2.0 / scale))[:, None, :])

    def preactivation_grad(
        self,
        pre: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        *,
        relu: bool,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch feat"]]:
        if not _feature_major_cpu(pre, target, importance):
            return super().preactivation_grad(
                pre, target, importance, relu=relu, with_loss=with_loss
            )
        # the CPU sampler's layout: one numba pass instead of four torch ones over the batch
        from superposition import kernels

        scale = self.scale(pre.shape[1], pre.shape[2])
        imp = importance.contiguous()
        coef = (imp * (2.0 / scale)).contiguous()
        err = torch.zeros(pre.shape[0], dtype=torch.float64)
        kernels.dense_output_grad(
            pre.transpose(1, 2).numpy(), target.transpose(1, 2).numpy(), coef.numpy(),
            imp.numpy(), relu, with_loss, err.numpy(),
        )  # fmt: skip
        return ((err / scale).float() if with_loss else None), pre


class CrossEntropy(Loss):
    """Features as classes: ``-sum_i I_i t_i log softmax(out)_i`` with ``t`` the target normalised
    to sum to one per sample, mean over the batch."""

    def value(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
    ) -> Float[Tensor, " inst"]:
        t = _class_distribution(target)
        logp = torch.log_softmax(out, dim=-1)
        return -(t * logp * importance[:, None, :]).sum(dim=(1, 2)) / out.shape[1]

    def output_grad(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        *,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch feat"]]:
        # with w_i = I_i t_i: d/dz_j of -sum_i w_i log p_i = (sum_i w_i) p_j - w_j
        t = _class_distribution(target)
        logp = torch.log_softmax(out, dim=-1)
        w = t * importance[:, None, :]
        batch = out.shape[1]
        loss = -(w * logp).sum(dim=(1, 2)) / batch if with_loss else None
        grad = (w.sum(-1, keepdim=True) * logp.exp() - w) / batch
        return loss, grad


def _feature_major_cpu(pre: Tensor, target: Tensor, importance: Tensor) -> bool:
    """Whether the fused CPU kernel can take these: float32 CPU tensors laid out [inst, feat,
    batch] in memory (transposed views), with numba there."""
    for t in (pre, target):
        if t.device.type != "cpu" or t.dtype != torch.float32 or t.requires_grad:
            return False
        if not t.transpose(1, 2).is_contiguous():
            return False
    if importance.device.type != "cpu" or importance.dtype != torch.float32:
        return False
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return True


class QuadraticTarget(Loss):
    """Scherlis et al. 2022's quadratic model: prediction ``sum_i x_i out_i``, target
    ``sum_i I_i x_i^2``, squared error about its batch mean (the best constant bias), mean over
    the batch. ``target`` is read as the input x (the linear model's target)."""

    @staticmethod
    def _centred_error(
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
    ) -> Float[Tensor, "inst batch"]:
        err = (target * (out - importance[:, None, :] * target)).sum(-1)
        return err - err.mean(-1, keepdim=True)

    def value(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
    ) -> Float[Tensor, " inst"]:
        return self._centred_error(out, target, importance).square().mean(-1)

    def output_grad(
        self,
        out: Float[Tensor, "inst batch feat"],
        target: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        *,
        with_loss: bool = True,
    ) -> tuple[Float[Tensor, " inst"] | None, Float[Tensor, "inst batch feat"]]:
        # d/d out_bi of mean_b (e_b - mean e)^2 = (2 / B) (e_b - mean e) x_bi: the centring's own
        # term vanishes because the centred errors sum to zero
        c = self._centred_error(out, target, importance)
        loss = c.square().mean(-1) if with_loss else None
        return loss, target * (c * (2.0 / out.shape[1]))[..., None]


def _class_distribution(target: Float[Tensor, "inst batch feat"]) -> Tensor:
    """Targets as class distributions: non-negative, each sample's summing to one (or all zero)."""
    t = target.clamp_min(0)
    total = t.sum(-1, keepdim=True)
    return torch.where(total > 0, t / total.clamp_min(1e-30), torch.zeros_like(t))


def per_sample_loss(
    out: Float[Tensor, "inst batch feat"],
    target: Float[Tensor, "inst batch feat"],
    importance: Float[Tensor, "inst feat"],
) -> Float[Tensor, "inst batch"]:
    """The paper's loss of each sample, ``sum_i I_i (x_i - x'_i)^2`` (Section 2), not averaged:
    what the adversarial experiment (Section 6) attacks and the SAE metrics compare."""
    return ((out - target).square() * importance[:, None, :]).sum(-1)


LOSSES: dict[str, Loss] = {}
"""Registered losses by name."""


def register_loss(name: str, loss: Loss) -> Loss:
    """Make ``loss`` available as ``TrainConfig(loss=name)``; returns it."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"a loss name must be an identifier, got {name!r}")
    if not isinstance(loss, Loss):
        raise ConfigError(f"register_loss needs a superposition.losses.Loss, got {loss!r}")
    loss.name = name
    LOSSES[name] = loss
    return loss


def get_loss(name: str) -> Loss:
    """The registered loss called ``name``; an unknown name is refused with the known ones."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; registered losses: {', '.join(LOSSES)}")
    return LOSSES[name]


register_loss("mse", SquaredError("mean"))
register_loss("mse_sum", SquaredError("sum"))
register_loss("cross_entropy", CrossEntropy())
register_loss("quadratic", QuadraticTarget())

MEAN_SQUARED_ERROR = LOSSES["mse"]
"""The default loss (the notebook's reduction)."""
