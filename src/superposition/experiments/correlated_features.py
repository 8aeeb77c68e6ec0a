"""Section 4, "Correlated and Anticorrelated Features": where correlated features go.

Setting (Elhage et al. 2022, Section 4): the ReLU-output model, equal importance, sparse
features grouped into sets (a correlated set shares one on/off coin; an anticorrelated set has at
most one member present), best-of-N by held-out loss:

- n = 4, m = 2, two correlated pairs: the members of a correlated pair are stored orthogonally
  (they are often present together, so they must not interfere), the two pairs in superposition;
- n = 4, m = 2, two anticorrelated pairs: each anticorrelated pair is stored antipodally (its
  members are never present together, so interfering costs nothing);
- n = 6, m = 2, three correlated pairs: the pairs sit side by side (the members of a pair adjacent
  in angle), and as density grows a pair collapses onto its principal component (both members on
  one direction);
- n = 20, m = 10, two correlated sets of 10: each set forms a local orthogonal basis, the two
  bases in superposition with each other.
"""

import math

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Claim, Run

NAME = "correlated-features"
TITLE = "Section 4: correlated and anticorrelated features"
SECTION = "Section 4"

CORRELATED = "correlated-pairs"
ANTICORRELATED = "anticorrelated-pairs"
THREE_PAIRS = "three-correlated-pairs"
LOCAL_BASES = "local-bases"

DENSITY = 0.05
"""Density of the four-feature cases (sparse enough that independent features would superpose)."""
LOCAL_DENSITY = 0.03
"""Density of the two sets of ten."""

ORTHOGONAL_TOL = 0.2
"""|cos| below this counts as orthogonal."""
ANTIPODAL_COS = -0.9
"""cos below this counts as antipodal."""
COLLAPSED_COS = 0.95
"""cos above this: the two features share one direction (the pair collapsed)."""
NORM_THRESHOLD = 0.5


def three_pair_densities(quick: bool) -> tuple[float, ...]:
    """Sparse enough for the pairs to sit side by side (the first pair collapses near 0.01) up to
    dense enough for all three to collapse."""
    return (0.005, 0.04, 0.4) if quick else (0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The four settings, one run each (the three pairs over several densities)."""
    steps = 3000 if quick else 10_000
    seeds = 8 if quick else 16

    def make(
        n: int, m: int, density: tuple[float, ...], *, instances: int = seeds,
        correlated: tuple[int, ...] = (), anticorrelated: tuple[int, ...] = (),
    ) -> RunConfig:
        return RunConfig(
            data=DataConfig(
                n_features=n, density=density, correlated=correlated,
                anticorrelated=anticorrelated,
            ),
            model=ModelConfig(kind="relu", n_hidden=m),
            train=TrainConfig(
                instances=instances, steps=steps, batch_size=1024,
                eval_samples=100_000,  # the three pairs' rival solutions differ by < 1% in loss
            ),
        )

    return {
        CORRELATED: make(4, 2, (DENSITY,), correlated=(2, 2)),
        ANTICORRELATED: make(4, 2, (DENSITY,), anticorrelated=(2, 2)),
        THREE_PAIRS: make(6, 2, three_pair_densities(quick), correlated=(2, 2, 2)),
        LOCAL_BASES: make(20, 10, (LOCAL_DENSITY,), instances=2 if quick else 4,
                          correlated=(10, 10)),
    }


def feature_sets(config: RunConfig) -> list[list[int]]:
    """The correlated sets, then the anticorrelated ones, as lists of feature indices."""
    out, start = [], 0
    for k in (*config.data.correlated, *config.data.anticorrelated):
        out.append(list(range(start, start + k)))
        start += k
    return out


# --------------------------------------------------------------------------------------------------
# analysis (pure functions of W, tested on hand-made weights)


def cosines(w: Float[Tensor, "feat hidden"]) -> Float[Tensor, "feat feat"]:
    """``cos(W_i, W_j)``; rows and columns of zero features are 0."""
    w = w.detach().double()
    norms = torch.linalg.vector_norm(w, dim=-1)
    unit = w / torch.where(norms > geometry.EPS, norms, torch.ones_like(norms))[:, None]
    return unit @ unit.T


def pair_cosines(w: Float[Tensor, "feat hidden"], sets: list[list[int]]) -> list[float]:
    """The cosine between the two members of each two-feature set."""
    cos = cosines(w)
    return [float(cos[s[0], s[1]]) for s in sets if len(s) == 2]


def side_by_side(w: Float[Tensor, "feat 2"], sets: list[list[int]]) -> bool:
    """Whether, going round the plane, the members of every set are adjacent (no feature of
    another set between them) and every feature is represented (Section 4: correlated pairs sit
    side by side)."""
    norms = torch.linalg.vector_norm(w, dim=-1)
    if bool((norms < NORM_THRESHOLD).any()):
        return False
    angles = torch.atan2(w[:, 1], w[:, 0]).tolist()
    order = sorted(range(len(angles)), key=lambda i: angles[i])
    k = len(order)
    for s in sets:
        pos = sorted(order.index(i) for i in s)
        # a set is contiguous on the circle when at most one gap between its members' positions
        # (cyclically) is longer than one step
        gaps = [(pos[(j + 1) % len(pos)] - pos[j]) % k for j in range(len(pos))]
        if sum(g > 1 for g in gaps) > 1:
            return False
    return True


def collapsed(w: Float[Tensor, "feat hidden"], sets: list[list[int]]) -> list[bool]:
    """For each pair: whether its two members point the same way (cos > :data:`COLLAPSED_COS`),
    i.e. the pair is stored as its principal component."""
    return [c > COLLAPSED_COS for c in pair_cosines(w, sets)]


def within_set_overlap(w: Float[Tensor, "feat hidden"], sets: list[list[int]]) -> float:
    """The largest ``|cos|`` between two represented members of the same set (0 for a set whose
    members are mutually orthogonal)."""
    cos = cosines(w).abs()
    live = (torch.linalg.vector_norm(w, dim=-1) >= NORM_THRESHOLD).tolist()
    within = 0.0
    for s in sets:
        for a, i in enumerate(s):
            for j in s[a + 1 :]:
                if live[i] and live[j]:
                    within = max(within, float(cos[i, j]))
    return within


def share_in_other_sets(w: Float[Tensor, "feat hidden"], sets: list[list[int]]) -> float:
    """How far the sets share their dimensions: for each represented feature, the squared length
    of its unit direction's projection onto the span of the other sets' represented features,
    averaged over features.

    1 when every feature lies in the space the other sets span (two complete bases of the same
    space are wholly in superposition with each other, whatever their relative rotation); 0 when
    the sets sit in orthogonal subspaces (no superposition between sets). Unlike a mean ``|cos|``
    across sets, it does not depend on whether a feature overlaps one partner strongly (as the
    best models do: near-antipodal pairs across the sets) or many partners weakly.
    """
    w = w.detach().double()
    norms = torch.linalg.vector_norm(w, dim=-1)
    live = norms >= NORM_THRESHOLD
    shares = []
    for k, s in enumerate(sets):
        others = [j for t, o in enumerate(sets) if t != k for j in o if bool(live[j])]
        if not others:
            continue
        # orthonormal basis of the other sets' span (rank from the singular values)
        u, sv, _ = torch.linalg.svd(w[others].T, full_matrices=False)
        basis = u[:, sv > 1e-6 * sv.max()]
        for i in s:
            if bool(live[i]):
                unit = w[i] / norms[i]
                shares.append(float((basis.T @ unit).square().sum()))
    return sum(shares) / len(shares) if shares else math.nan


SHARED_SPAN = 0.5
"""A mean share above this: the sets' features mostly lie in each other's span (superposed)."""


def _best(run: Run) -> list[Tensor]:
    return [run.W[b].detach() for b in run.best()]


def _represented(w: Tensor) -> int:
    return int((geometry.feature_norms(w[None])[0] >= NORM_THRESHOLD).sum())


def claims(runs: dict[str, Run]) -> list[Claim]:
    """One claim per setting, measured from the best model's cosines."""
    out = []

    run = runs[CORRELATED]
    w = _best(run)[0]
    sets = feature_sets(run.config)
    cos = pair_cosines(w, sets)
    out.append(
        Claim(
            section=SECTION,
            text="The two features of a correlated pair are stored orthogonally (n=4, m=2).",
            measured=(
                f"{_represented(w)} of 4 features represented; cos within each pair "
                + ", ".join(f"{c:+.2f}" for c in cos)
            ),
            holds=_represented(w) == 4 and all(abs(c) < ORTHOGONAL_TOL for c in cos),
        )
    )

    run = runs[ANTICORRELATED]
    w = _best(run)[0]
    sets = feature_sets(run.config)
    cos = pair_cosines(w, sets)
    out.append(
        Claim(
            section=SECTION,
            text="The two features of an anticorrelated pair are stored antipodally (n=4, m=2).",
            measured=(
                f"{_represented(w)} of 4 features represented; cos within each pair "
                + ", ".join(f"{c:+.2f}" for c in cos)
            ),
            holds=_represented(w) == 4 and all(c < ANTIPODAL_COS for c in cos),
        )
    )

    run = runs[THREE_PAIRS]
    sets = feature_sets(run.config)
    dens = [g.density for g in run.config.groups]
    ws = _best(run)
    sparse, dense = dens.index(min(dens)), dens.index(max(dens))
    side = side_by_side(ws[sparse], sets)
    counts = [sum(collapsed(w, sets)) for w in ws]
    means = [sum(pair_cosines(w, sets)) / len(sets) for w in ws]
    out.append(
        Claim(
            section=SECTION,
            text="Three correlated pairs in two dimensions (sparse) sit side by side: the members "
            "of each pair are adjacent in angle.",
            measured=(
                f"density {dens[sparse]:g}: pairs adjacent: {side}; cos within each pair "
                + ", ".join(f"{c:+.2f}" for c in pair_cosines(ws[sparse], sets))
            ),
            holds=side,
        )
    )
    # Not every pair collapses at the same density (the first may already have at the sparsest),
    # so the claim is that collapse spreads: most pairs collapsed at the densest, more than at the
    # sparsest, and the pairs' members closer on average.
    out.append(
        Claim(
            section=SECTION,
            text="As density grows, correlated pairs collapse onto their principal component "
            "(both members on one direction).",
            measured="collapsed pairs (mean cos within pairs) by density: "
            + ", ".join(
                f"{d:g}: {c} of {len(sets)} ({m:+.2f})"
                for d, c, m in zip(dens, counts, means, strict=True)
            ),
            holds=2 * counts[dense] > len(sets)
            and counts[dense] > counts[sparse]
            and means[dense] > means[sparse],
        )
    )

    run = runs[LOCAL_BASES]
    w = _best(run)[0]
    sets = feature_sets(run.config)
    within = within_set_overlap(w, sets)
    share = share_in_other_sets(w, sets)
    n = run.config.data.n_features
    out.append(
        Claim(
            section=SECTION,
            text="Two correlated sets of 10 in 10 dimensions each form a local orthogonal basis, "
            "the two bases in superposition with each other.",
            measured=(
                f"{_represented(w)} of {n} features represented; largest |cos| within a set "
                f"{within:.2f}; share of each feature in the other set's span {share:.2f} "
                "(0: separate subspaces, 1: fully superposed)"
            ),
            holds=_represented(w) == n and within < ORTHOGONAL_TOL and share > SHARED_SPAN,
        )
    )
    return out
