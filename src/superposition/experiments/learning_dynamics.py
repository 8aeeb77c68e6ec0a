"""Section 5, "Superposition and Learning Dynamics", with the k-gon critical points of Chen, Lau,
Mendel, Wei & Murfet (2023), "Dynamical versus Bayesian Phase Transitions in a Toy Model of
Superposition".

Weights are kept on a logarithmic grid of steps (``PER_DECADE`` snapshots a decade, as the paper's
figures put training steps on a log axis), and the loss at every snapshot is recomputed on one
fixed held-out sample per instance, so the loss curve carries no batch noise.

Runs:

- ``correlated``: n = 6 features in m = 3 dimensions, two correlated sets of three, ReLU output
  (the paper's Section 5 example of geometric stages);
- ``uniform``: uniform superposition, n = 200, m = 20 (n = 20, m = 5 in the quick run);
- ``kgon``: n = 6, m = 2, independent features at density 0.02 (Chen et al.'s setting; they work
  in the high-sparsity limit), many seeds; its loss plateaus are matched to the exact losses of
  regular k-gons (:mod:`superposition.kgon`).

Measures (pure functions below; every threshold is fixed here, before any full run):

- *window*: the analysis starts at the first snapshot whose loss is at most ``LEFT_INIT`` times
  the initial loss (before that a loss falling linearly in steps looks flat on a log axis);
- *plateaus* of the loss: the slope of log10(loss) against log10(step), fitted by least squares
  over the snapshots within ``HALF_WINDOW`` decades of each snapshot, is above ``-FLAT`` (the loss
  falls by less than ``10^FLAT - 1``, about 12%, per decade); plateaus are maximal runs of such
  snapshots lasting at least ``MIN_PLATEAU`` decades; *transits* are the stretches between two
  consecutive plateaus;
- *jumps*: for each feature that moves (its ``sum |D_i(t+1) - D_i(t)|`` in the window at least
  ``MOVING``), the share of its movement in the busiest ``TOP_SPAN`` of the window's log-step span
  (intervals ranked by movement per decade); 0.1 for movement spread evenly over log steps, near 1
  for a jump;
- *coincidence*: the share of all features' movement in the window that falls in loss transits,
  beside the share of the window's log-step span the transits take;
- *stages*: :func:`superposition.geometry.classify` labels over snapshots, keeping those that last
  at least ``MIN_STAGE`` consecutive snapshots;
- *k-gon plateaus*: for each plateau of each ``kgon`` seed, k = the number of features with norm
  at least ``LIVE`` at the plateau's middle snapshot, and the ratio of the plateau's median loss to
  the exact loss of the optimal regular k-gon (:func:`superposition.kgon.kgon_loss`); it matches
  when within ``MATCH``.
"""

import itertools
import math
from typing import Any

import numpy as np
import torch

from superposition import geometry, kgon
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.models import ToyModel
from superposition.results import Claim, Run
from superposition.rng import derive_seed
from superposition.steps.base import one_thread

NAME = "learning-dynamics"
TITLE = "Section 5: superposition and learning dynamics (with Chen et al. 2023's k-gons)"
SECTION = "Section 5"
CHEN = "Chen et al. 2023"
CORRELATED = "correlated"
UNIFORM = "uniform"
KGON = "kgon"
KGON_DENSITY = 0.02

FRACTIONS: dict[str, float] = {
    "0": 0.0, "3/8": 3 / 8, "2/5": 2 / 5, "1/2": 1 / 2, "2/3": 2 / 3, "3/4": 3 / 4, "1": 1.0
}
"""Dimensionalities of the named equal-norm tight frames (Section 4), and 0 and 1."""
TOL = 0.03
PER_DECADE = 40
LEFT_INIT = 0.9
HALF_WINDOW = 0.1
FLAT = 0.05
MIN_PLATEAU = 0.2
MOVING = 0.1
TOP_SPAN = 0.1
JUMP_SHARE = 0.5
TRANSIT_SHARE = 0.75
TRANSIT_SPAN = 0.5
MIN_STAGE = 5
LIVE = 0.5
MATCH = 0.05
MATCH_SHARE = 0.75
EVAL_BUDGET = 2_000_000
"""Held-out sample size times n per instance (100,000 samples for n = 6, 10,000 for n = 200)."""


def log_steps(steps: int, per_decade: int = PER_DECADE) -> tuple[int, ...]:
    """Step 0, then ``round(10^(j / per_decade))`` for j = 0, 1, ... up to ``steps`` (duplicates
    among the first steps dropped), and the last step."""
    grid = {0, steps}
    j = 0
    while (s := round(10 ** (j / per_decade))) <= steps:
        grid.add(s)
        j += 1
    return tuple(sorted(grid))


def _train(steps: int, instances: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=1024,
        instances=instances,
        log_every=max(1, steps // 100),
        snapshot_steps=log_steps(steps),
        eval_samples=10_000,
    )


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The three runs; ``quick`` shrinks the uniform model and trains fewer steps and seeds."""
    correlated = RunConfig(
        data=DataConfig(n_features=6, density=(0.03,), correlated=(3, 3)),
        model=ModelConfig(kind="relu", n_hidden=3),
        train=_train(3000 if quick else 10_000, 3 if quick else 6),
    )
    n, m = (20, 5) if quick else (200, 20)
    uniform = RunConfig(
        data=DataConfig(n_features=n, density=(0.05,)),
        model=ModelConfig(kind="relu", n_hidden=m),
        train=_train(3000 if quick else 10_000, 1),
    )
    polygons = RunConfig(
        data=DataConfig(n_features=6, density=(KGON_DENSITY,)),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=_train(3000 if quick else 10_000, 6 if quick else 16),
    )
    return {CORRELATED: correlated, UNIFORM: uniform, KGON: polygons}


# --------------------------------------------------------------------------------------------------
# measures (pure functions on tensors)


_CACHE: list[tuple[Tensor, int, Tensor]] = []
"""The last few :func:`snapshot_losses` results, keyed by the snapshot tensor itself (figures and
claims all ask for them)."""


def snapshot_losses(run: Run, samples: int | None = None) -> Float[Tensor, "snap inst"]:
    """Every instance's loss at every snapshot, on one fixed held-out sample per instance.

    Samples with no active feature all have the same loss (the model's output at x = 0), so only
    the rows with an active feature are evaluated one by one and the all-zero rows are counted:
    the same number as the whole sample's loss, several times faster at low density.
    """
    cfg = run.config
    if samples is None:
        samples = max(1000, EVAL_BUDGET // cfg.data.n_features)
    W, b = run.snapshots["W"], run.snapshots["b"]
    for key, size, value in _CACHE:
        if key is W and size == samples:
            return value
    gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "learning-dynamics-eval"))
    x = FeatureDistribution.from_config(cfg).sample(samples, gen)
    active = (x != 0).any(-1)
    rows = max(1, int(active.sum(-1).max()))
    order = torch.argsort(active.to(torch.int8), dim=1, descending=True, stable=True)[:, :rows]
    busy = torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
    zero = torch.zeros_like(busy[:, :1])
    importance = importance_from_config(cfg)
    dec = run.snapshots.get("W_dec")
    out = []
    # many small products: one thread avoids the threads' synchronisation, which dominates them
    # (and makes the sums independent of the thread count)
    with torch.no_grad(), one_thread():
        for s in range(W.shape[0]):
            model = ToyModel(cfg.model.kind, W[s], b[s], None if dec is None else dec[s])
            total = model.loss(busy, importance) * rows
            out.append((total + model.loss(zero, importance) * (samples - rows)) / samples)
    value = torch.stack(out)
    _CACHE[:] = [*_CACHE[-7:], (W, samples, value)]
    return value


def window_start(loss: Float[Tensor, " snap"], left: float = LEFT_INIT) -> int:
    """First snapshot whose loss is at most ``left`` times the first one's (0 if none is)."""
    below = torch.nonzero(loss <= left * loss[0]).flatten()
    return int(below[0]) if len(below) else 0


def log_slopes(steps: list[int], loss: Float[Tensor, " snap"],
               half_window: float = HALF_WINDOW) -> Float[Tensor, " snap"]:
    """Least-squares slope of log10(loss) against log10(step) over the snapshots within
    ``half_window`` decades of each one (NaN at step 0 and where fewer than 3 points fit)."""
    t = torch.tensor([math.log10(s) if s > 0 else float("nan") for s in steps], dtype=torch.float64)
    y = torch.log10(loss.double().clamp_min(1e-30))
    out = torch.full((len(steps),), float("nan"), dtype=torch.float64)
    for j in range(len(steps)):
        if steps[j] == 0:
            continue
        near = (t - t[j]).abs() <= half_window + 1e-12
        if int(near.sum()) < 3:
            continue
        tt, yy = t[near] - t[near].mean(), y[near] - y[near].mean()
        out[j] = (tt * yy).sum() / tt.square().sum()
    return out


def plateaus(
    steps: list[int], loss: Float[Tensor, " snap"], start: int = 0
) -> list[tuple[int, int]]:
    """Loss plateaus from snapshot ``start`` on: maximal runs of snapshots with log-log slope above
    ``-FLAT`` lasting at least ``MIN_PLATEAU`` decades, as (first, last) snapshot indices."""
    slope = log_slopes(steps, loss)
    flat = [j >= start and steps[j] > 0 and bool(slope[j] > -FLAT) for j in range(len(steps))]
    out, pos = [], 0
    for is_flat, group in itertools.groupby(flat):
        length = len(list(group))
        first, last = pos, pos + length - 1
        if is_flat and math.log10(steps[last]) - math.log10(steps[first]) >= MIN_PLATEAU:
            out.append((first, last))
        pos += length
    return out


def _widths(steps: list[int], start: int) -> Float[Tensor, " interval"]:
    """Width in decades of each snapshot interval from ``start`` on."""
    t = torch.tensor([math.log10(max(s, 1)) for s in steps[start:]], dtype=torch.float64)
    return t[1:] - t[:-1]


def jump_shares(
    dims: Float[Tensor, "snap feat"], steps: list[int], start: int = 0, top: float = TOP_SPAN
) -> tuple[Float[Tensor, " feat"], Tensor]:
    """Per feature, the share of its movement in the window (from snapshot ``start``) that falls in
    the busiest ``top`` of the window's log-step span, ranking intervals by movement per decade;
    and which features move at least ``MOVING``."""
    moves = (dims[start + 1:] - dims[start:-1]).abs().double()
    width = _widths(steps, start)
    total = moves.sum(0)
    span = float(width.sum())
    shares = torch.zeros(dims.shape[1], dtype=torch.float64)
    for i in range(dims.shape[1]):
        if total[i] <= 0 or span <= 0:
            continue
        rate = moves[:, i] / width.clamp_min(1e-12)
        order = torch.argsort(rate, descending=True)
        covered = torch.cumsum(width[order], 0)
        # whole intervals until the top share of the span is reached, then a fraction of the next
        take = torch.clamp((top * span - (covered - width[order])) / width[order].clamp_min(1e-12),
                           0.0, 1.0)
        shares[i] = (take * moves[order, i]).sum() / total[i]
    return shares, total >= MOVING


def transit_share(
    dims: Float[Tensor, "snap feat"], steps: list[int], found: list[tuple[int, int]],
    start: int = 0,
) -> tuple[float, float]:
    """Share of all features' movement from snapshot ``start`` on that falls in transits (the
    intervals between consecutive plateaus), and the share of the log-step span they take."""
    moves = (dims[start + 1:] - dims[start:-1]).abs().double().sum(-1)
    width = _widths(steps, start)
    in_transit = torch.zeros(len(moves), dtype=torch.bool)
    for (_, end), (nxt, _) in itertools.pairwise(found):
        in_transit[end - start:nxt - start] = True
    total, span = float(moves.sum()), float(width.sum())
    share = float(moves[in_transit].sum()) / total if total > 0 else 0.0
    return share, (float(width[in_transit].sum()) / span if span > 0 else 0.0)


def near_fraction(
    dims: Float[Tensor, "snap feat"], live: Tensor, tol: float = TOL
) -> tuple[float, float]:
    """Share of live (snapshot, feature) pairs with D within ``tol`` of a named fraction, and the
    share of [0, 1] the same windows cover (the score of evenly spread values)."""
    frac = torch.tensor(list(FRACTIONS.values()), dtype=dims.dtype)
    close = ((dims[..., None] - frac).abs() <= tol).any(-1)
    share = float(close[live].float().mean()) if bool(live.any()) else 0.0
    grid = torch.linspace(0, 1, 10_001, dtype=torch.float64)
    chance = float(((grid[:, None] - frac.double()).abs() <= tol).any(-1).double().mean())
    return share, chance


def stages(labels: list[str], min_len: int = MIN_STAGE) -> list[tuple[str, int, int]]:
    """Runs of one geometry label lasting at least ``min_len`` snapshots: (label, first, last)."""
    out, pos = [], 0
    for label, group in itertools.groupby(labels):
        length = len(list(group))
        if length >= min_len:
            out.append((label, pos, pos + length - 1))
        pos += length
    return out


def kgon_levels(n: int, density: float) -> list[float]:
    """Exact loss of the optimal regular k-gon among n features, k = 0 .. min(n, 8)."""
    return [float(kgon.kgon_loss(density, n, k)) for k in range(min(n, kgon.MAX_K) + 1)]


def match_plateaus(
    W: Float[Tensor, "snap feat hidden"], loss: Float[Tensor, " snap"],
    found: list[tuple[int, int]], levels: list[float],
) -> list[dict[str, Any]]:
    """For each plateau: k (features with norm >= ``LIVE`` at its middle snapshot), its median
    loss, the k-gon level and their ratio, and whether they match within ``MATCH``."""
    out = []
    for first, last in found:
        mid = (first + last) // 2
        k = int((geometry.feature_norms(W[mid][None])[0] >= LIVE).sum())
        value = float(loss[first:last + 1].median())
        level = levels[k] if k < len(levels) else float("nan")
        ratio = value / level
        out.append({"first": first, "last": last, "k": k, "loss": value, "level": level,
                    "ratio": ratio, "match": abs(ratio - 1) <= MATCH})
    return out


def analyse(run: Run, instance: int | None = None,
            losses: Float[Tensor, "snap inst"] | None = None,
            with_stages: bool = True) -> dict[str, Any]:
    """All the measures for one instance (default: the best of the first group); the geometry
    labels and stages only ``with_stages`` (they classify every snapshot)."""
    k = run.best()[0] if instance is None else instance
    steps = list(run.config.train.snapshot_steps)
    W = run.snapshots["W"][:, k]
    dims = geometry.feature_dimensionality(W)
    live = geometry.feature_norms(W) >= LIVE
    loss = (snapshot_losses(run) if losses is None else losses)[:, k]
    start = window_start(loss)
    found = plateaus(steps, loss, start)
    shares, moving = jump_shares(dims, steps, start)
    in_transit, transit_span = transit_share(dims, steps, found, start)
    near, chance = near_fraction(dims[start:], live[start:])
    labels = [g.label for g in geometry.classify(W)] if with_stages else []
    return {
        "instance": k,
        "steps": steps,
        "dims": dims,
        "loss": loss,
        "start": start,
        "plateaus": found,
        "jump_shares": shares,
        "moving": moving,
        "jump_median": float(shares[moving].median()) if bool(moving.any()) else 0.0,
        "transit_share": in_transit,
        "transit_span": transit_span,
        "near_fraction": near,
        "chance": chance,
        "labels": labels,
        "stages": stages(labels),
    }


def analyse_all(run: Run) -> list[dict[str, Any]]:
    """:func:`analyse` for every instance, sharing one pass over the snapshots' losses."""
    losses = snapshot_losses(run)
    return [analyse(run, i, losses, with_stages=False) for i in range(run.n_instances)]


def kgon_analysis(run: Run) -> dict[str, Any]:
    """Every ``kgon`` seed's plateaus matched to the k-gon levels."""
    cfg = run.config
    levels = kgon_levels(cfg.data.n_features, cfg.data.density[0])
    losses = snapshot_losses(run)
    steps = list(cfg.train.snapshot_steps)
    seeds = []
    for i in range(run.n_instances):
        loss = losses[:, i]
        found = plateaus(steps, loss, window_start(loss))
        seeds.append(match_plateaus(run.snapshots["W"][:, i], loss, found, levels))
    return {"levels": levels, "losses": losses, "steps": steps, "seeds": seeds}


def _median(values: list[float] | list[int]) -> float:
    return float(np.median(values)) if values else 0.0


def _dynamics(name: str, runs_a: list[dict[str, Any]]) -> str:
    def med(key: str) -> float:
        return _median([a[key] for a in runs_a])

    return (
        f"{name} (median over {len(runs_a)} seeds): "
        f"{_median([len(a['plateaus']) for a in runs_a]):.0f} loss plateaus; a moving feature's "
        f"busiest {TOP_SPAN:.0%} of log-steps hold {med('jump_median'):.0%} of its movement; "
        f"transits hold {med('transit_share'):.0%} of all movement in {med('transit_span'):.0%} "
        f"of the log-step span; D near a named fraction {med('near_fraction'):.0%} of the time "
        f"(evenly spread values: {runs_a[0]['chance']:.0%})"
    )


def claims(runs: dict[str, Run]) -> list[Claim]:
    """Jumps and their coincidence with loss drops (judged on the n = 6, m = 3 model over its
    seeds, the others reported), several geometric stages, and Chen et al.'s k-gon plateaus."""
    corr = analyse_all(runs[CORRELATED])
    uni = analyse_all(runs[UNIFORM])
    poly = analyse_all(runs[KGON])
    cfg_u = runs[UNIFORM].config
    best = analyse(runs[CORRELATED])
    report = "; ".join([
        _dynamics("n=6, m=3 correlated", corr),
        _dynamics(f"uniform n={cfg_u.data.n_features}, m={cfg_u.model.n_hidden}", uni),
        _dynamics("n=6, m=2", poly),
    ])
    jumps = _median([a["jump_median"] for a in corr])
    transit = _median([a["transit_share"] for a in corr])
    span = _median([a["transit_span"] for a in corr])
    distinct = list(dict.fromkeys(s[0] for s in best["stages"]))
    ka = kgon_analysis(runs[KGON])
    found = [p for seed in ka["seeds"] for p in seed]
    matched = sum(p["match"] for p in found)
    multi = sum(len(seed) >= 2 for seed in ka["seeds"])
    sequences = ", ".join(
        "->".join(f"{p['k']}{'' if p['match'] else '?'}" for p in seed) or "none"
        for seed in ka["seeds"]
    )
    return [
        Claim(
            section=SECTION,
            text="Feature dimensionalities move in jumps (judged on the n=6, m=3 model).",
            measured=report,
            holds=jumps >= JUMP_SHARE,
        ),
        Claim(
            section=SECTION,
            text="The jumps in dimensionality coincide with drops in the loss (judged on the "
            "n=6, m=3 model).",
            measured=_dynamics("n=6, m=3 correlated", corr),
            holds=transit >= TRANSIT_SHARE and 0 < span <= TRANSIT_SPAN,
        ),
        Claim(
            section=SECTION,
            text="The n=6, m=3 model with two correlated sets of three passes through several "
            "geometric stages.",
            measured=(
                f"best seed, stages lasting >= {MIN_STAGE} snapshots: "
                + " -> ".join(
                    f"{lab} (steps {best['steps'][a]}-{best['steps'][b]})"
                    for lab, a, b in best["stages"]
                )
            ),
            holds=len(distinct) >= 2,
        ),
        Claim(
            section=CHEN,
            text="With n=6, m=2, training passes through plateaus whose losses are those of "
            "regular k-gons, more than one per run.",
            measured=(
                f"{len(found)} plateaus over {len(ka['seeds'])} seeds, {matched} within "
                f"{MATCH:.0%} of the k-gon loss for their number k of represented features; "
                f"{multi} seeds with two or more plateaus; k per plateau and seed (? = no match): "
                f"{sequences}; k-gon losses k=0..6: "
                + ", ".join(f"{v:.5f}" for v in ka["levels"])
            ),
            holds=bool(found) and matched >= MATCH_SHARE * len(found)
            and multi >= len(ka["seeds"]) / 2,
        ),
    ]
