"""Section 6, "Superposition and Adversarial Robustness": models in superposition are easier to
attack.

Setting (Elhage et al. 2022, Section 6): ReLU-output models, n = 20 features in m = 5
dimensions, importance 0.9**i, densities from dense (1) to sparse (0.02; 0.03 in the quick run),
best of several seeds per density. Each best model is attacked with a small L2 perturbation of
its input, a fixed fraction of the mean input norm, and the output is still scored against the
clean input.

The attack (per sample, per instance) is the stronger of two:

- projected gradient ascent on the loss with respect to the input (a few normalised steps from a
  random start on the budget sphere, drawn from an explicit generator), and
- the interference directions: gradients can be masked by the output ReLU (an inactive output has
  no gradient), so we also try every input basis direction ``+-e_j`` and every row of ``W^T W``
  (``+-G_i / ||G_i||``, the input direction that raises feature i's pre-activation the most through
  its interference with the others), scaled to the budget.

Vulnerability is how much the attack raises the loss, divided by what the same budget does to a
perfect reconstruction (the identity ``x' = x``): that model's loss rises by at most
``eps^2 max_i I_i / n`` (all the budget on the most important feature). An identity model has
vulnerability 1; a model whose features interfere amplifies the perturbation. The paper's claim:
vulnerability rises with superposition.
"""

import math

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.losses import per_sample_loss
from superposition.models import ToyModel
from superposition.results import Claim, Run
from superposition.rng import derive_seed

NAME = "adversarial"
TITLE = "Section 6: superposition and adversarial robustness"
SECTION = "Section 6"
RUN = "relu"

BUDGET = 0.1
"""L2 budget of the attack, as a fraction of the mean input norm (a small perturbation)."""
PGD_STEPS = 10
ATTACK_SAMPLES = 2048


def densities(quick: bool = False) -> tuple[float, ...]:
    """Dense to sparse: from no superposition to heavy superposition. Sparser still, the budget (a
    fraction of a mostly empty input's norm) becomes too small to cross the negative biases that
    keep inactive outputs at zero, and the measured vulnerability falls again."""
    if quick:
        return (1.0, 0.5, 0.3, 0.1, 0.05, 0.03)
    return (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02)


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run: n = 20, m = 5 ReLU models across densities, several seeds each."""
    config = RunConfig(
        data=DataConfig(n_features=20, density=densities(quick), importance_decay=(0.9,)),
        model=ModelConfig(kind="relu", n_hidden=5),
        train=TrainConfig(
            instances=3 if quick else 8,
            steps=2500 if quick else 10_000,
            batch_size=1024,
            eval_samples=10_000,
        ),
    )
    return {RUN: config}


# --------------------------------------------------------------------------------------------------
# the attack (pure functions on tensors)


def sample_loss(
    model: ToyModel,
    x_in: Float[Tensor, "inst batch feat"],
    target: Float[Tensor, "inst batch feat"],
    importance: Float[Tensor, "inst feat"],
) -> Float[Tensor, "inst batch"]:
    """The paper's per-sample loss divided by n: ``sum_i I_i (f(x_in)_i - target_i)^2 / n``."""
    return per_sample_loss(model.forward(x_in), target, importance) / x_in.shape[-1]


def budget(x: Float[Tensor, "inst batch feat"], fraction: float = BUDGET) -> Float[Tensor, " inst"]:
    """The attack's L2 budget per instance: ``fraction`` times the mean input norm."""
    return fraction * torch.linalg.vector_norm(x, dim=-1).mean(-1)


def _project(delta: Tensor, eps: Tensor) -> Tensor:
    """Shrink each sample's perturbation into the L2 ball of radius eps[inst]."""
    norm = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
    scale = torch.clamp(eps[:, None, None] / norm.clamp_min(1e-12), max=1.0)
    return delta * scale


def gradient_attack(
    model: ToyModel,
    x: Float[Tensor, "inst batch feat"],
    importance: Float[Tensor, "inst feat"],
    eps: Float[Tensor, " inst"],
    generator: torch.Generator,
    steps: int = PGD_STEPS,
) -> Float[Tensor, "inst batch feat"]:
    """Projected gradient ascent on each sample's loss w.r.t. its input; returns the best
    perturbation seen (norm <= eps), starting from a random point on the budget sphere."""
    dec = None if model.W_dec is None else model.W_dec.detach()
    model = ToyModel(model.kind, model.W.detach(), model.b.detach(), dec)
    start = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    delta = _project(start * 1e6, eps)  # onto the sphere
    best = delta.clone()
    best_loss = sample_loss(model, x + delta, x, importance)
    step = (2.5 / max(steps, 1)) * eps[:, None, None]
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        loss = sample_loss(model, x + d, x, importance)
        (grad,) = torch.autograd.grad(loss.sum(), d)
        g_norm = torch.linalg.vector_norm(grad, dim=-1, keepdim=True).clamp_min(1e-12)
        delta = _project(delta + step * grad / g_norm, eps)
        with torch.no_grad():
            now = sample_loss(model, x + delta, x, importance)
            better = now > best_loss
            best = torch.where(better[..., None], delta, best)
            best_loss = torch.where(better, now, best_loss)
    return best.detach()


def interference_directions(
    W: Float[Tensor, "inst feat hidden"],
) -> Float[Tensor, "inst cand feat"]:
    """Unit input directions that exploit interference: ``+-e_j`` and ``+-`` the rows of
    ``W^T W`` (row i raises feature i's pre-activation through every feature it overlaps)."""
    inst, n, _ = W.shape
    eye = torch.eye(n, dtype=W.dtype).expand(inst, n, n)
    G = geometry.gram(W)
    rows = G / torch.linalg.vector_norm(G, dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.cat([eye, -eye, rows, -rows], dim=1)


def direction_attack(
    model: ToyModel,
    x: Float[Tensor, "inst batch feat"],
    importance: Float[Tensor, "inst feat"],
    eps: Float[Tensor, " inst"],
) -> Float[Tensor, "inst batch feat"]:
    """For each sample, the best of the :func:`interference_directions` scaled to the budget."""
    dirs = interference_directions(model.W.detach()) * eps[:, None, None]
    best = torch.zeros_like(x)
    best_loss = sample_loss(model, x, x, importance)
    with torch.no_grad():
        for c in range(dirs.shape[1]):
            delta = dirs[:, c : c + 1, :].expand_as(x)
            now = sample_loss(model, x + delta, x, importance)
            better = now > best_loss
            best = torch.where(better[..., None], delta, best)
            best_loss = torch.where(better, now, best_loss)
    return best


def attack(
    model: ToyModel,
    x: Float[Tensor, "inst batch feat"],
    importance: Float[Tensor, "inst feat"],
    generator: torch.Generator,
    fraction: float = BUDGET,
    steps: int = PGD_STEPS,
) -> dict[str, Tensor]:
    """Attack every instance; per sample keep the stronger of the gradient and direction attacks.

    Returns per instance: ``eps`` (the budget), ``clean`` and ``adversarial`` mean losses,
    ``gradient`` and ``direction`` (each attack alone), ``max_norm`` (largest perturbation used)
    and ``vulnerability``: the loss increase divided by the identity model's worst case
    ``eps^2 max_i I_i / n``.
    """
    eps = budget(x, fraction)
    with torch.no_grad():
        clean = sample_loss(model, x, x, importance)
    d_grad = gradient_attack(model, x, importance, eps, generator, steps)
    d_dir = direction_attack(model, x, importance, eps)
    with torch.no_grad():
        l_grad = sample_loss(model, x + d_grad, x, importance)
        l_dir = sample_loss(model, x + d_dir, x, importance)
    adv = torch.maximum(torch.maximum(l_grad, l_dir), clean)
    use_grad = (l_grad >= l_dir)[..., None]
    delta = torch.where(use_grad, d_grad, d_dir)
    n = x.shape[-1]
    baseline = eps.square() * importance.amax(-1) / n
    return {
        "eps": eps,
        "clean": clean.mean(-1),
        "adversarial": adv.mean(-1),
        "gradient": l_grad.mean(-1),
        "direction": l_dir.mean(-1),
        "max_norm": torch.linalg.vector_norm(delta, dim=-1).amax(-1),
        "vulnerability": (adv.mean(-1) - clean.mean(-1)) / baseline.clamp_min(1e-30),
    }


def spearman(a: Float[Tensor, " n"], b: Float[Tensor, " n"]) -> float:
    """Spearman rank correlation (ties broken by order; enough for continuous measurements)."""

    def ranks(v: Tensor) -> Tensor:
        r = torch.empty_like(v, dtype=torch.float64)
        r[torch.argsort(v)] = torch.arange(len(v), dtype=torch.float64)
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum()) / denom if denom > 0 else 0.0


REPRESENTED = 0.5
"""Feature norm from which a feature counts as represented (as in Section 2's figures)."""


def mean_superposition(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, " inst"]:
    """The Section 2 superposition measure averaged over each instance's represented features
    (0 when none is represented)."""
    live = geometry.feature_norms(W) >= REPRESENTED
    return (geometry.superposition(W) * live).sum(-1) / live.sum(-1).clamp_min(1)


def analyse(run: Run, samples: int = ATTACK_SAMPLES) -> dict[str, Tensor]:
    """Attack each density's best instance on fresh samples of its own distribution.

    Per group: ``density``, ``superposition`` (mean of the Section 2 measure over the represented
    features, norm >= :data:`REPRESENTED`: a dropped feature keeps a tiny weight vector whose
    direction, and so its "superposition", means nothing),
    ``features_per_dim`` (``||W||_F^2 / m``) and the :func:`attack` results.
    """
    cfg = run.config
    best = run.best()
    W, b = run.W[best], run.b[best]
    dist = FeatureDistribution.from_config(cfg)
    dist = dist.select(best)
    importance = importance_from_config(cfg)[best]
    gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "adversarial-attack"))
    x = dist.sample(samples, gen)
    W_dec = run.params["W_dec"][best] if "W_dec" in run.params else None
    model = ToyModel(cfg.model.kind, W, b, W_dec)
    out = attack(model, x, importance, gen)
    out["density"] = torch.tensor([g.density for g in cfg.groups])
    out["superposition"] = mean_superposition(W)
    out["features_per_dim"] = 1.0 / geometry.dimensions_per_feature(W)
    return out


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Vulnerability rises with superposition: rank correlation across densities, and the sparsest
    model against the densest."""
    a = analyse(runs[RUN])
    dens, sup, vul = a["density"], a["superposition"], a["vulnerability"]
    rho = spearman(sup, vul)
    rho_d = spearman(-dens, vul)
    dense, sparse = int(torch.argmax(dens)), int(torch.argmin(dens))
    ratio = float(vul[sparse] / vul[dense].clamp_min(1e-12))
    table = "; ".join(
        f"1-S={float(d):g}: superposition {float(s):.2f}, vulnerability {float(v):.2f}"
        for d, s, v in zip(dens, sup, vul, strict=True)
    )
    return [
        Claim(
            section=SECTION,
            text="Vulnerability to small adversarial perturbations rises with superposition.",
            measured=(
                f"Spearman correlation across {len(dens)} densities: superposition vs "
                f"vulnerability {rho:.2f}, sparsity vs vulnerability {rho_d:.2f} ({table})"
            ),
            holds=rho > 0.7,
        ),
        Claim(
            section=SECTION,
            text="The sparse model (features in superposition) is several times more vulnerable "
            "than the dense one.",
            measured=(
                f"vulnerability {float(vul[sparse]):.2f} at 1-S={float(dens[sparse]):g} vs "
                f"{float(vul[dense]):.2f} at 1-S={float(dens[dense]):g}: {ratio:.1f}x "
                f"(attack budget {BUDGET:g} of the mean input norm)"
            ),
            holds=ratio >= 3.0,
        ),
    ]
