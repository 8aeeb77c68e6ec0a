"""A ReLU layer reading tokens: the losses of hand-set solutions in closed form, and the measures
of a trained one (the ``cross-entropy`` experiment).

The setting: N tokens, equally likely, each given to the model as a one-hot vector (no sparsity:
exactly one feature is present in every sample); k neurons ``h = ReLU(W x)``; a linear readout
``W_dec h + b`` (the ``mlp`` model of :mod:`superposition.models`). Token t's hidden code is
``ReLU(W[t])``, its row of W through the ReLU.

**Cross-entropy** (the readout as logits over the N tokens, target the token itself). Tokens with
the same code get the same prediction, so the best a model can do is predict uniformly over the
tokens that share its code; the loss is then the conditional entropy of the token given its code,

    L = sum_g (n_g / N) ln n_g,

over the groups g of tokens sharing a code (:func:`partition_loss`). It is reached only in the
limit of large weights (the logits must separate the groups by an unbounded margin), so a trained
model with weight decay stays a little above it. Three families of hand-set solutions:

- *monosemantic*: each neuron fires on one token of its own (at any level) and is silent on the
  others, so the ``N - k`` remaining tokens share the all-zero code:
  ``((N - k) / N) ln(N - k)`` (:func:`monosemantic_loss`). N = 4, k = 1: ``(3/4) ln 3 ≈ 0.824``.
- *binary codes*: each neuron is on (at its one level) or off for each token, so tokens are
  grouped by their on/off pattern. ``L = ln N - H(code)`` is least when the groups are as equal
  as possible and as many as the patterns allow, ``min(2^k, N)`` (:func:`binary_code_loss`).
  N = 4, k = 1: two pairs, ``ln 2 ≈ 0.693``: a neuron firing on two tokens beats one firing on
  one, with no sparsity at all.
- *graded codes*: a neuron may fire at different levels on different tokens, and the logits,
  affine in the level, can pick out each level (logit_j(h) = c (j h - j^2 / 2) peaks at level
  h = j). Only the tokens on which every neuron is silent (z of them) still share a code:
  ``(z / N) ln z`` (:func:`graded_code_loss`), 0 when at most one token is silent. So the
  infimum of the loss is 0 for any N and k >= 1; what keeps a trained model above it is the
  size of its weights and the tokens its ReLU went silent on during training (a token whose
  weights into every neuron are negative gets no gradient through the ReLU and stays silent).

**Squared error** (the readout reconstructs the one-hot vector, the notebook's mean over the N
features): the best k-dimensional affine reconstruction of the tokens. Centred one-hot vectors
have N - 1 unit principal components, so the least loss is ``(N - 1 - k) / N^2`` for k < N
(:func:`squared_error_bound`), and the ReLU layer reaches it at finite weights (a one-hot input
lets the hidden code of each token be any non-negative vector, and the bias absorbs the shift),
whichever tokens each neuron fires on: squared error does not reward separating tokens.
"""

import math
from collections.abc import Sequence

import torch

from superposition._types import Float, Int, Tensor
from superposition.errors import ConfigError
from superposition.losses import get_loss
from superposition.models import ToyModel

RESPONDS = 0.1
"""A neuron *responds* to a token when its activation on it exceeds this fraction of the neuron's
largest activation over the tokens (and that largest activation is above 0)."""


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def partition_loss(sizes: Sequence[int]) -> float:
    """``sum_g (n_g / N) ln n_g`` with ``N = sum_g n_g``: the cross-entropy, in nats, of the best
    prediction when the tokens fall into groups of these sizes that the model cannot tell apart
    (uniform over the group; the conditional entropy of the token given its group)."""
    if not sizes:
        raise ConfigError("sizes must name at least one group, got none")
    for s in sizes:
        _check_int("a group size", s, 1)
    total = sum(sizes)
    return sum(s * math.log(s) for s in sizes) / total


def monosemantic_loss(n_tokens: int, n_neurons: int) -> float:
    """Each of the k neurons fires on one token of its own: the other ``N - k`` tokens share the
    silent code, ``((N - k) / N) ln(N - k)`` (0 when ``k >= N - 1``)."""
    n = _check_int("n_tokens", n_tokens, 2)
    k = _check_int("n_neurons", n_neurons, 1)
    rest = max(n - k, 1)
    return partition_loss([1] * (n - rest) + [rest])


def binary_code_loss(n_tokens: int, n_neurons: int) -> float:
    """The best on/off code: the tokens split as evenly as possible into ``min(2^k, N)`` groups
    (``L = ln N - H(code)`` is least for the most even code over the most patterns)."""
    n = _check_int("n_tokens", n_tokens, 2)
    k = _check_int("n_neurons", n_neurons, 1)
    groups = min(2 ** min(k, n), n)
    q, r = divmod(n, groups)
    return partition_loss([q + 1] * r + [q] * (groups - r))


def graded_code_loss(n_tokens: int, silent: int) -> float:
    """The limit when every token but the ``silent`` ones gets a code of its own (graded levels):
    ``(z / N) ln z`` for z silent tokens (0 for z <= 1)."""
    n = _check_int("n_tokens", n_tokens, 2)
    z = _check_int("silent", silent, 0)
    if z > n:
        raise ConfigError(f"silent must be at most n_tokens ({n}), got {z}")
    return 0.0 if z <= 1 else partition_loss([1] * (n - z) + [z])


def squared_error_bound(n_tokens: int, n_neurons: int) -> float:
    """``(N - 1 - k) / N^2`` (0 for ``k >= N - 1``): the least squared error (mean over the batch
    and the N features) of a k-neuron layer reconstructing one-hot tokens."""
    n = _check_int("n_tokens", n_tokens, 2)
    k = _check_int("n_neurons", n_neurons, 1)
    return max(n - 1 - k, 0) / n**2


# --------------------------------------------------------------------------------------------------
# measures of a trained model (W [inst, feat, hidden]: feature = token, hidden = neuron)


def activations(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat hidden"]:
    """Each neuron's activation on each token, ``ReLU(W[k, t, n])`` (the input is one-hot)."""
    return torch.relu(W)


def responds(
    W: Float[Tensor, "inst feat hidden"], fraction: float = RESPONDS
) -> Float[Tensor, "inst feat hidden"]:
    """Whether neuron n responds to token t: activation above ``fraction`` of the neuron's largest
    (a dead neuron responds to nothing). Returned as 0/1 floats."""
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be in (0, 1), got {fraction!r}")
    h = activations(W)
    top = h.amax(dim=1, keepdim=True)
    return ((h > fraction * top) & (top > 0)).to(W.dtype)


def tokens_per_neuron(
    W: Float[Tensor, "inst feat hidden"], fraction: float = RESPONDS
) -> Int[Tensor, "inst hidden"]:
    """How many tokens each neuron responds to (:func:`responds`)."""
    return responds(W, fraction).sum(dim=1).long()


def silent_tokens(W: Float[Tensor, "inst feat hidden"]) -> Int[Tensor, " inst"]:
    """How many tokens every neuron is silent on (activation exactly 0: the ReLU is off), the
    tokens that share the all-zero code and that :func:`graded_code_loss` counts. A token with a
    small but non-zero activation still has a code of its own, so this is not the complement of
    :func:`responds`, whose threshold is relative to the neuron's largest activation."""
    return (activations(W).amax(dim=2) == 0).sum(dim=1).long()


def expected_loss(
    params: dict[str, Tensor], loss: str = "cross_entropy", kind: str = "mlp"
) -> Float[Tensor, " inst"]:
    """The exact expected loss of each instance over N equally likely tokens: the loss of the
    model (``params`` as in :attr:`superposition.results.Run.params`) on the batch of all N
    one-hot tokens, each once."""
    W = params["W"]
    model = ToyModel(kind, W, params["b"], params.get("W_dec"))
    n_inst, n, _ = W.shape
    x = torch.eye(n, dtype=W.dtype, device=W.device).expand(n_inst, n, n)
    importance = torch.ones((n_inst, n), dtype=W.dtype, device=W.device)
    with torch.no_grad():
        return model.loss(x, importance, get_loss(loss))
