"""Superposition, memorization and double descent (Henighan et al. 2023): the ReLU-output toy model
trained on finite training sets of T samples, over a log grid of T.

Setting (the paper's "Experimental Setup"): n sparse features (here n = 400 at density 0.01, four
active features per sample on average), m = 2 hidden dimensions (and, for the shift of the
test-loss peak with m, a second grid at m = 4), the ReLU output model
``ReLU(W^T W x + b)`` with uniform importance, full-batch AdamW with weight decay 0.01, a linear
warm-up and a cosine decay. Each T is one run (the training-set size is part of the data config);
its seeds train side by side, each on its own training set drawn from its seed. The paper's
inputs are rescaled to unit norm; ours are not (the library's ``finite`` source draws plain sparse
samples), so the hidden vectors of the training points have unequal norms and the measures below
look at directions.

Measures (pure functions below; the docs' page states them with the claims):

- *hidden vectors of the training points*: ``h_j = W^T x_j`` (:func:`hidden_points`);
- *dimensionality* of a training point, as the paper's feature dimensionality (Elhage et al. 2022,
  Section 4) applied to the ``h_j``: ``D_j = ||h_j||^2 / sum_k (h_j_hat . h_k)^2``
  (:func:`datapoint_dimensionality`);
- *typical dimensionality* of a set of vectors: the mean of their D weighted by their squared
  norms (:func:`typical_dimensionality`), so that vectors of negligible size count for little;
- *regular polygon*: the vectors of a set longer than a floor, sorted by angle in the plane, with
  every gap between neighbours within ``GAP_TOL`` of ``2 pi / k`` for k vectors, k >= 2
  (:func:`polygon`). Two vectors in the same direction leave a gap of 0: a polygon has one vector
  per vertex.
"""

import math
from dataclasses import dataclass

import torch

from superposition import geometry
from superposition._types import Float, Tensor
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.results import Claim, Run

NAME = "memorization"
TITLE = "Superposition, memorization and double descent (Henighan et al. 2023)"
SECTION = "Henighan et al. 2023"

N_FEATURES = 400
DENSITY = 0.01
N_HIDDEN = 2
WEIGHT_DECAY = 0.01
LR = 1e-2
SIZES = (3, 5, 8, 13, 20, 32, 50, 80, 128, 200, 320, 500, 800, 1280, 2000)
"""The training-set sizes T of the full settings (a log grid, about 1.6x apart)."""
QUICK_SIZES = (3, 5, 20, 100, 300, 1000, 2000)
EXTRA_HIDDEN = (4,)
"""The further hidden dimensions m trained over a grid of T, for the test-loss peak's shift with
m (the polygon claims stay about m = ``N_HIDDEN``, where the paper draws polygons)."""
QUICK_EXTRA_SIZES = (30, 100, 300, 1000)
"""The grid of T of the extra m in the quick preset: its middle, where the peaks lie, to stay
cheap (the full settings train the extra m over all of ``SIZES``)."""
STEPS, QUICK_STEPS = 4000, 1500
SEEDS, QUICK_SEEDS = 3, 2
EVAL_SAMPLES = 20_000

GAP_TOL = 0.25
"""A polygon's gaps between neighbouring directions may differ from ``2 pi / k`` by this
fraction of it."""
FEATURE_NORM = 0.5
"""A feature counts as a vertex when ``||W_i|| >= FEATURE_NORM`` (the represented features of
:func:`superposition.geometry.classify`)."""
POINT_NORM = 1e-6
"""A training point counts as a vertex when ``||h_j|| > POINT_NORM``: every point with an active
feature, whatever its size (only an all-zero sample has ``h_j = 0``)."""
ENDS = 2
"""Grid values counted as "small T" (the first ENDS) and "large T" (the last ENDS)."""
PEAK_RISE = 1.1
"""The test-loss peak must be at least this many times the test loss at both ends of the grid."""
CROSS_FACTOR = 4.0
"""The dimensionalities must cross within this factor of T of the test-loss peak."""


def run_name(size: int, n_hidden: int = N_HIDDEN) -> str:
    """The name of the run with training-set size T and m hidden dimensions: ``T200`` for
    m = ``N_HIDDEN``, ``m4-T200`` for another m."""
    return f"T{size}" if n_hidden == N_HIDDEN else f"m{n_hidden}-T{size}"


def config(
    size: int,
    *,
    n_features: int = N_FEATURES,
    density: float = DENSITY,
    n_hidden: int = N_HIDDEN,
    steps: int = STEPS,
    seeds: int = SEEDS,
) -> RunConfig:
    """One point of the grid: ``seeds`` models trained full batch on their own T samples."""
    return RunConfig(
        data=DataConfig(
            n_features=n_features, density=(density,), source="finite", dataset_size=size
        ),
        model=ModelConfig(kind="relu", n_hidden=n_hidden),
        train=TrainConfig(
            steps=steps,
            batch_size=size,  # full batch, as in the paper
            lr=LR,
            weight_decay=WEIGHT_DECAY,
            schedule="cosine",
            warmup_steps=steps // 20,
            instances=seeds,
            log_every=max(1, steps // 50),
            eval_samples=EVAL_SAMPLES,
            # the training points are redrawn on the CPU for the figures and claims; the CPU's
            # per-instance streams make them the very samples the run was trained on
            device="cpu",
        ),
    )


def grid_configs(sizes: tuple[int, ...] | list[int], **kwargs: int | float) -> dict[str, RunConfig]:
    """One run per training-set size T in ``sizes`` (ascending, distinct); keyword arguments as
    :func:`config`. An empty grid, or T below 1, is refused."""
    sizes = list(sizes)
    if not sizes:
        raise ConfigError("the grid of training-set sizes T is empty; give at least one T >= 1")
    for t in sizes:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ConfigError(f"training-set size T must be an integer >= 1, got {t!r}")
    if sorted(set(sizes)) != sizes:
        raise ConfigError(f"training-set sizes T must be distinct and ascending, got {sizes}")
    m = int(kwargs.get("n_hidden", N_HIDDEN))
    return {run_name(t, m): config(t, **kwargs) for t in sizes}  # type: ignore[arg-type]


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """The grid over T at m = ``N_HIDDEN``, then one grid per m of ``EXTRA_HIDDEN``; ``quick``
    trains fewer sizes, seeds and steps."""
    if quick:
        out = grid_configs(QUICK_SIZES, steps=QUICK_STEPS, seeds=QUICK_SEEDS)
        for m in EXTRA_HIDDEN:
            out |= grid_configs(QUICK_EXTRA_SIZES, n_hidden=m, steps=QUICK_STEPS, seeds=QUICK_SEEDS)
        return out
    out = grid_configs(SIZES)
    for m in EXTRA_HIDDEN:
        out |= grid_configs(SIZES, n_hidden=m)
    return out


def of_hidden(runs: dict[str, Run], n_hidden: int = N_HIDDEN) -> dict[str, Run]:
    """The runs with m = ``n_hidden`` hidden dimensions."""
    return {k: r for k, r in runs.items() if r.config.model.n_hidden == n_hidden}


# --------------------------------------------------------------------------------------------------
# measures (pure functions)


def hidden_points(
    W: Float[Tensor, "inst feat hidden"], X: Float[Tensor, "inst sample feat"]
) -> Float[Tensor, "inst sample hidden"]:
    """``h_j = W^T x_j``: where each training point lands in the hidden space."""
    return X @ W


def datapoint_dimensionality(
    W: Float[Tensor, "inst feat hidden"], X: Float[Tensor, "inst sample feat"]
) -> Float[Tensor, "inst sample"]:
    """``D_j = ||h_j||^2 / sum_k (h_j_hat . h_k)^2`` over the training points (Henighan et al.
    2023): the feature dimensionality of Elhage et al. 2022, Section 4, with the hidden vectors
    of the training points in place of the features' ``W_i``. 0 for a point with ``h_j = 0``."""
    return geometry.feature_dimensionality(hidden_points(W, X))


def typical_dimensionality(
    V: Float[Tensor, "inst vec hidden"], eps: float = geometry.EPS
) -> Float[Tensor, " inst"]:
    """The dimensionality of a typical vector of the set: ``sum_j ||v_j||^2 D_j / sum_j
    ||v_j||^2``. ``2/k`` for a regular k-gon in two dimensions whatever its norms' scale; 0 when
    every vector is 0."""
    D = geometry.feature_dimensionality(V, eps)
    sq = V.square().sum(-1)
    total = sq.sum(-1)
    return torch.where(total > 0, (sq * D).sum(-1) / total.clamp_min(1e-300), total)


@dataclass(frozen=True)
class Polygon:
    """Whether one set of two-dimensional vectors forms a regular polygon."""

    vertices: int
    """Vectors above the norm floor."""
    worst_gap: float
    """The largest ``|gap - 2 pi / k| / (2 pi / k)`` between neighbouring directions (inf when
    fewer than two vectors are above the floor)."""

    @property
    def regular(self) -> bool:
        return self.vertices >= 2 and self.worst_gap <= GAP_TOL


def polygon(V: Float[Tensor, "vec hidden"], min_norm: float) -> Polygon:
    """The polygon the vectors of ``V`` longer than ``min_norm`` form in the plane (two hidden
    dimensions): their directions sorted by angle, and how far the gaps between neighbours are
    from equal (``2 pi / k``). Directions only: norms may differ."""
    if V.shape[-1] != 2:
        raise ConfigError(f"a polygon needs two hidden dimensions, got {V.shape[-1]}")
    V = V.detach().to("cpu", torch.float64)
    keep = torch.linalg.vector_norm(V, dim=-1) > min_norm
    U = V[keep]
    k = U.shape[0]
    if k < 2:
        return Polygon(k, math.inf)
    angles = torch.sort(torch.atan2(U[:, 1], U[:, 0])).values
    gaps = torch.diff(angles, append=angles[:1] + 2 * math.pi)
    ideal = 2 * math.pi / k
    return Polygon(k, float((gaps - ideal).abs().max()) / ideal)


def training_points(config: RunConfig) -> Float[Tensor, "inst sample feat"]:
    """The finite training sets a run of ``config`` was trained on, redrawn from its seed (on the
    CPU, where every instance's set comes from its own stream)."""
    from superposition.losses import get_loss
    from superposition.steps.base import Instances, StepSpec
    from superposition.steps.sources import FiniteSource

    if config.data.source != "finite" or config.train.device != "cpu":
        raise ConfigError(
            "the training points can be redrawn only for source 'finite' trained on device 'cpu'"
        )
    spec = StepSpec(
        config=config,
        instances=Instances.of(config),
        device=torch.device("cpu"),
        loss=get_loss(config.train.loss),
        source="finite",
        sampler=None,
    )
    return FiniteSource(spec).dataset()


def training_loss(
    W: Float[Tensor, "inst feat hidden"],
    b: Float[Tensor, "inst feat"],
    X: Float[Tensor, "inst sample feat"],
) -> Float[Tensor, " inst"]:
    """Mean squared error of the ReLU output model over the training points, mean over features
    (uniform importance): what :attr:`Run.dataset_loss` records, to check a redrawn set."""
    out = torch.relu((X @ W) @ W.transpose(-1, -2) + b[:, None, :])
    return (out - X).square().mean(dim=(-1, -2))


@dataclass(frozen=True)
class Point:
    """The measures of one training-set size T, one value per seed."""

    size: int
    test: list[float]
    """Held-out loss on fresh samples."""
    train: list[float]
    """Loss on the training set."""
    point_dim: list[float]
    """Typical dimensionality of the training points' hidden vectors."""
    feature_dim: list[float]
    """Typical dimensionality of the features."""
    point_polygon: list[Polygon]
    feature_polygon: list[Polygon]

    @staticmethod
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)


def measure(run: Run) -> Point:
    """All measures of one run; refuses a run whose redrawn training set does not give back the
    training loss it recorded."""
    X = training_points(run.config)
    W, b = run.W.double(), run.b.double()
    X = X.double()
    if run.dataset_loss is not None:
        redrawn = training_loss(W, b, X)
        if not torch.allclose(redrawn, run.dataset_loss.double(), rtol=1e-3, atol=1e-9):
            raise ConfigError(
                "the redrawn training points do not give the run's recorded training loss "
                f"({redrawn.tolist()} vs {run.dataset_loss.tolist()}); was it trained elsewhere?"
            )
    H = hidden_points(W, X)
    size = run.config.data.dataset_size
    assert size is not None
    return Point(
        size=size,
        test=run.loss.tolist(),
        train=[] if run.dataset_loss is None else run.dataset_loss.tolist(),
        point_dim=typical_dimensionality(H).tolist(),
        feature_dim=typical_dimensionality(W).tolist(),
        point_polygon=[polygon(h, POINT_NORM) for h in H],
        feature_polygon=[polygon(w, FEATURE_NORM) for w in W],
    )


def points(runs: dict[str, Run]) -> list[Point]:
    """The measures of every run with m = ``N_HIDDEN`` (the polygons need a plane), in order of
    T."""
    return sorted((measure(run) for run in of_hidden(runs).values()), key=lambda p: p.size)


def loss_curves(runs: dict[str, Run]) -> dict[int, list[tuple[int, float]]]:
    """For each m, its ``(T, test loss)`` pairs in order of T, the test loss a mean over seeds."""
    out: dict[int, list[tuple[int, float]]] = {}
    for run in runs.values():
        size = run.config.data.dataset_size
        assert size is not None
        out.setdefault(run.config.model.n_hidden, []).append((size, float(run.loss.mean())))
    return {m: sorted(curve) for m, curve in sorted(out.items())}


def peak_sizes(curves: dict[int, list[tuple[int, float]]]) -> dict[int, int]:
    """For each m, the T of its largest test loss over its grid (the first, on a tie)."""
    return {m: max(curve, key=lambda point: point[1])[0] for m, curve in curves.items()}


def peak_moves_out(peaks: dict[int, int]) -> bool:
    """Whether the test-loss peak sits at larger T for larger m: its T non-decreasing in m and
    strictly larger at the largest m than at the smallest. False with fewer than two m."""
    ts = [peaks[m] for m in sorted(peaks)]
    steps = zip(ts, ts[1:], strict=False)
    return len(ts) >= 2 and all(a <= b for a, b in steps) and ts[-1] > ts[0]


def crossing(sizes: list[int], difference: list[float]) -> float | None:
    """The first T where ``difference`` (datapoints' minus features' dimensionality) goes from
    positive to not positive, interpolated linearly in log T; None when it never does."""
    for i in range(len(sizes) - 1):
        a, c = difference[i], difference[i + 1]
        if a > 0 >= c:
            t = a / (a - c)
            return math.exp(math.log(sizes[i]) + t * (math.log(sizes[i + 1]) - math.log(sizes[i])))
    return None


def _share(flags: list[bool]) -> str:
    return f"{sum(flags)} of {len(flags)}"


def claims(runs: dict[str, Run]) -> list[Claim]:
    """The four claims about m = ``N_HIDDEN``, and a fifth about the peak's shift with m when the
    runs hold more than one m (see the docs' page for their measures)."""
    pts = points(runs)
    small, large = pts[:ENDS], pts[-ENDS:]
    out = []

    def regimes(group: list[Point], data_first: bool) -> tuple[list[bool], str]:
        ok, rows = [], []
        for p in group:
            for dp, fp in zip(p.point_polygon, p.feature_polygon, strict=True):
                want, other = (dp, fp) if data_first else (fp, dp)
                ok.append(want.regular and not other.regular)
            rows.append(
                f"T={p.size}: points "
                + ", ".join(f"{q.vertices}v/{q.worst_gap:.2f}" for q in p.point_polygon)
                + "; features "
                + ", ".join(f"{q.vertices}v/{q.worst_gap:.2f}" for q in p.feature_polygon)
            )
        return ok, "; ".join(rows)

    ok, text = regimes(small, data_first=True)
    out.append(
        Claim(
            section=SECTION,
            text=(
                "With few training points (small T) the training points' hidden vectors form a "
                "regular polygon, one point per vertex (the data points are stored in "
                "superposition), while the features do not."
            ),
            measured=(
                f"{_share(ok)} seeds at the {ENDS} smallest T show it (vertices/worst gap as a "
                f"fraction of 2pi/k, regular when <= {GAP_TOL}): {text}"
            ),
            holds=sum(ok) > len(ok) / 2,
        )
    )
    ok, text = regimes(large, data_first=False)
    out.append(
        Claim(
            section=SECTION,
            text=(
                "With many training points (large T) the features form a regular polygon (the "
                "features are stored in superposition, as with unlimited data), while the "
                "training points' hidden vectors do not."
            ),
            measured=f"{_share(ok)} seeds at the {ENDS} largest T show it: {text}",
            holds=sum(ok) > len(ok) / 2,
        )
    )
    test = [Point.mean(p.test) for p in pts]
    train = [Point.mean(p.train) if p.train else math.nan for p in pts]
    peak = max(range(len(pts)), key=test.__getitem__)
    ends = max(test[0], test[-1])
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The test loss is not monotone in T: it peaks between the two regimes, above both "
                "the small-T and the large-T test loss (double descent in the data set size), "
                "while the training loss stays below it."
            ),
            measured=(
                f"mean test loss peaks at T={pts[peak].size} ({test[peak]:.3e}) vs "
                f"{test[0]:.3e} at T={pts[0].size} and {test[-1]:.3e} at T={pts[-1].size} "
                f"(ratio {test[peak] / ends:.2f}, needs >= {PEAK_RISE}); training loss there "
                f"{train[peak]:.3e}; test by T: "
                + ", ".join(f"{p.size}: {v:.2e}" for p, v in zip(pts, test, strict=True))
            ),
            holds=ENDS <= peak < len(pts) - ENDS and test[peak] >= PEAK_RISE * ends,
        )
    )
    diff = [Point.mean(p.point_dim) - Point.mean(p.feature_dim) for p in pts]
    sizes = [p.size for p in pts]
    cross = crossing(sizes, diff)
    near = cross is not None and 1 / CROSS_FACTOR <= cross / sizes[peak] <= CROSS_FACTOR
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The dimensionality of the training points falls and that of the features rises "
                "with T, and they cross where the test loss peaks."
            ),
            measured=(
                f"typical dimensionality points - features: {diff[0]:+.3f} at T={sizes[0]}, "
                f"{diff[-1]:+.3f} at T={sizes[-1]}; first crossing at T="
                + ("none" if cross is None else f"{cross:.0f}")
                + f", test-loss peak at T={sizes[peak]} (needs a factor <= {CROSS_FACTOR:g}); "
                + "by T: "
                + ", ".join(f"{t}: {d:+.2f}" for t, d in zip(sizes, diff, strict=True))
            ),
            holds=diff[0] > 0 and diff[-1] < 0 and near,
        )
    )
    curves = loss_curves(runs)
    if len(curves) > 1:
        peaks = peak_sizes(curves)
        out.append(
            Claim(
                section=SECTION,
                text=(
                    "The test-loss peak of double descent sits at larger T for more hidden "
                    "dimensions m."
                ),
                measured=(
                    "T of each m's largest mean test loss over its grid: "
                    + ", ".join(f"m={m}: T={t}" for m, t in peaks.items())
                    + " (needs non-decreasing in m, strictly larger at the largest m); test by T: "
                    + "; ".join(
                        f"m={m}: " + ", ".join(f"{t}: {v:.2e}" for t, v in curve)
                        for m, curve in curves.items()
                    )
                ),
                holds=peak_moves_out(peaks),
            )
        )
    return out
