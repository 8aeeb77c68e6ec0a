"""Superposition and neural scaling (Liu, Liu & Gore 2025, "Superposition Yields Robust Neural
Scaling"): the loss of the ReLU-output toy model against its width m, in weak and in strong
superposition.

Setting (the paper's toy model, smaller): n features whose frequencies follow a power law,
``p_i ∝ i^-alpha`` (i = 1 ... n), normalised so that one feature is present per sample on
average (``sum_i p_i = 1``); the ReLU-output model ``ReLU(W^T W x + b)`` of Elhage et al. 2022
with m hidden dimensions; the mean squared error. Weight decay is the knob: positive decay
(AdamW's) lets only the most frequent features keep a direction (weak superposition), negative
decay pulls every feature's row of W toward unit norm, so all features are represented and
overlap (strong superposition; see :class:`superposition.training.AdamFlat`).

Measures (see the docs page for the bars):

- a feature is **represented** when its row of W has norm above :data:`REPRESENTED` (1/2);
- the **exponent** of a regime is ``a`` of the least-squares line ``log L = log c - a log m``
  through the (m, held-out loss) points (:func:`power_law_fit`);
- the **weak-superposition account** (the paper's): in weak superposition the loss is that of
  the features left out, so it scales as their total frequency ``sum_{i > k} p_i``; with
  ``k ∝ m`` and ``n -> infinity`` this gives the exponent ``alpha - 1`` (for alpha > 1).
  :func:`tail_mass` is that sum for our finite n.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.results import Claim, Run

NAME = "scaling"
TITLE = "Superposition and neural scaling: loss against width in weak and strong superposition"
SECTION = "Liu, Liu & Gore 2025"

N_FEATURES = 1000
"""Features n (the paper's n = 1000 of its weight-decay sweeps)."""
QUICK_FEATURES = 400
ALPHAS = (1.0, 1.25)
"""Exponents of the feature frequencies, ``p_i ∝ i^-alpha``."""
QUICK_ALPHAS = (1.25,)
WIDTHS = (8, 11, 16, 23, 32, 45)
"""Hidden dimensions m, log-spaced (factor sqrt 2)."""
QUICK_WIDTHS = (6, 12, 24)
WEIGHT_DECAYS = (-1.0, 0.0, 1.0)
"""Weight decays: -1 (strong superposition), 0 and 1 (weak superposition)."""
STRONG, WEAK = -1.0, 1.0
"""The weight decays of the two regimes whose exponents the claims compare."""
REPRESENTED = 0.5
"""A feature is represented when its row of W is longer than this."""
STRONG_TOLERANCE = 0.25
"""The strong-superposition exponent is near 1 when within this of it (see the docs page)."""
ACCOUNT_TOLERANCE = 0.15
"""The weak-superposition exponent agrees with the account when within this of it."""
SEPARATION = 0.3
"""The weak exponent differs from the strong one when they are this far apart."""


def frequencies(n: int, alpha: float) -> list[float]:
    """``p_i = i^-alpha / sum_j j^-alpha`` for i = 1 ... n: the feature frequencies."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    if not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"alpha must be a finite number >= 0, got {alpha!r}")
    w = [(i + 1) ** -alpha for i in range(n)]
    total = sum(w)
    return [v / total for v in w]


def tail_mass(p: Sequence[float], kept: int) -> float:
    """``sum_{i > kept} p_i``: how often a feature outside the ``kept`` most frequent is present
    (the weak-superposition account of the loss, up to a constant)."""
    return float(sum(sorted(p, reverse=True)[kept:]))


@dataclass(frozen=True)
class PowerLaw:
    """``L = c * m^-exponent``, fitted by least squares on log-log axes."""

    exponent: float
    prefactor: float
    stderr: float
    """Standard error of the exponent (0 with two points)."""

    def __call__(self, m: float) -> float:
        return self.prefactor * m**-self.exponent


def power_law_fit(m: Sequence[int | float], loss: Sequence[float]) -> PowerLaw:
    """The least-squares line through ``(log m, log loss)``: ``L = c m^-a``. Needs two or more
    distinct positive m and positive losses."""
    x = np.log(np.asarray(m, dtype=np.float64))
    y_raw = np.asarray(loss, dtype=np.float64)
    if len(x) != len(y_raw) or len(x) < 2 or len(set(x.tolist())) < 2:
        raise ConfigError(
            f"a power-law fit needs two or more distinct widths with a loss each, got {len(x)} "
            f"widths and {len(y_raw)} losses"
        )
    if not (np.isfinite(y_raw).all() and (y_raw > 0).all()):
        raise ConfigError(f"a power-law fit needs finite losses > 0, got {y_raw.tolist()}")
    y = np.log(y_raw)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    dof = len(x) - 2
    spread = float(((x - x.mean()) ** 2).sum())
    stderr = math.sqrt(float((resid**2).sum()) / dof / spread) if dof > 0 else 0.0
    return PowerLaw(exponent=-float(slope), prefactor=math.exp(float(intercept)), stderr=stderr)


def run_name(alpha: float, weight_decay: float, m: int) -> str:
    """The name of the run at (alpha, weight decay, m)."""
    return f"a{alpha:g}-wd{weight_decay:+g}-m{m}"


def config(n: int, alpha: float, weight_decay: float, m: int, *, steps: int) -> RunConfig:
    """The run at (alpha, weight decay, m) with n features, trained ``steps`` steps."""
    p = frequencies(n, alpha)
    return RunConfig(
        # density p_1 times the multipliers i^-alpha: feature i is present with probability p_i
        data=DataConfig(n_features=n, density=(p[0],), feature_density=tuple(v / p[0] for v in p)),
        model=ModelConfig(kind="relu", n_hidden=m),
        train=TrainConfig(
            steps=steps,
            batch_size=1024,
            # the paper's peak rate, warm-up and cosine decay (to 0 here, to 5% there)
            lr=1e-2,
            schedule="cosine",
            warmup_steps=steps // 10,
            weight_decay=weight_decay,
            instances=1,
            eval_samples=10_000,
            log_every=100,
        ),
    )


def configs(quick: bool = False) -> dict[str, RunConfig]:
    """One run per (alpha, weight decay, m), one seed each (as the paper); ``quick`` trains
    fewer features, widths, steps and one alpha."""
    n = QUICK_FEATURES if quick else N_FEATURES
    steps = 1000 if quick else 2000
    out = {}
    for alpha in QUICK_ALPHAS if quick else ALPHAS:
        for wd in WEIGHT_DECAYS:
            for m in QUICK_WIDTHS if quick else WIDTHS:
                out[run_name(alpha, wd, m)] = config(n, alpha, wd, m, steps=steps)
    return out


# --------------------------------------------------------------------------------------------------
# measures


@dataclass(frozen=True)
class Point:
    """One run's measures."""

    alpha: float
    weight_decay: float
    m: int
    loss: float
    """Held-out loss of the best seed."""
    represented: int
    """Features whose row of W is longer than :data:`REPRESENTED`."""
    n: int

    @property
    def fraction(self) -> float:
        return self.represented / self.n


def alpha_of(run: Run) -> float:
    """The frequency exponent alpha of a run, read back from its per-feature densities."""
    scale = run.config.data.feature_density
    if scale is None or len(scale) < 2:
        return 0.0
    return -math.log(scale[1] / scale[0]) / math.log(2.0)


def measure(run: Run) -> Point:
    best = run.best()[0]
    norms = run.W[best].norm(dim=-1)
    return Point(
        alpha=round(alpha_of(run), 6),
        weight_decay=run.config.train.weight_decay,
        m=run.config.model.n_hidden,
        loss=float(run.loss[best]),
        represented=int((norms > REPRESENTED).sum()),
        n=run.config.data.n_features,
    )


def points(runs: dict[str, Run]) -> list[Point]:
    """Every run's measures, sorted by alpha, weight decay, m."""
    return sorted((measure(r) for r in runs.values()), key=lambda p: (p.alpha, p.weight_decay, p.m))


def series(runs: dict[str, Run]) -> dict[tuple[float, float], list[Point]]:
    """The points of each (alpha, weight decay), in order of m."""
    out: dict[tuple[float, float], list[Point]] = {}
    for p in points(runs):
        out.setdefault((p.alpha, p.weight_decay), []).append(p)
    return out


def fit(pts: Sequence[Point]) -> PowerLaw:
    """The power law of one series' loss against m."""
    return power_law_fit([p.m for p in pts], [p.loss for p in pts])


def account(pts: Sequence[Point]) -> PowerLaw:
    """The power law of the weak-superposition account: each run's left-out frequency mass,
    ``sum_{i > k} p_i`` with k its number of represented features, against m."""
    masses = []
    for p in pts:
        mass = tail_mass(frequencies(p.n, p.alpha), p.represented)
        masses.append(max(mass, 1e-300))
    return power_law_fit([p.m for p in pts], masses)


def claims(runs: dict[str, Run]) -> list[Claim]:
    """The claims of the scaling experiment (see the docs' page for their measures)."""
    by = series(runs)
    alphas = sorted({a for a, _ in by})
    out = []
    strong = {a: fit(by[(a, STRONG)]) for a in alphas}
    weak = {a: fit(by[(a, WEAK)]) for a in alphas}
    near = {a: abs(strong[a].exponent - 1.0) <= STRONG_TOLERANCE for a in alphas}
    out.append(
        Claim(
            section=SECTION,
            text=(
                f"In strong superposition (weight decay {STRONG:g}) the loss falls as 1/m: the "
                f"fitted exponent is within {STRONG_TOLERANCE} of 1 for every alpha."
            ),
            measured="; ".join(
                f"alpha {a:g}: exponent {strong[a].exponent:.2f} ± {strong[a].stderr:.2f}"
                for a in alphas
            ),
            holds=all(near.values()),
        )
    )
    apart = {a: abs(weak[a].exponent - strong[a].exponent) >= SEPARATION for a in alphas}
    rising = all(weak[a].exponent < weak[b].exponent for a, b in itertools.pairwise(alphas))
    asymptote = ", ".join(f"{a - 1:g}" for a in alphas)
    out.append(
        Claim(
            section=SECTION,
            text=(
                f"In weak superposition (weight decay {WEAK:g}) the exponent differs from the "
                f"strong one (by {SEPARATION} or more) and depends on alpha: it grows with alpha "
                f"(the paper's alpha - 1 as n -> infinity: {asymptote})."
            ),
            measured="; ".join(
                f"alpha {a:g}: weak {weak[a].exponent:.2f} ± {weak[a].stderr:.2f} vs strong "
                f"{strong[a].exponent:.2f}"
                for a in alphas
            ),
            holds=all(apart.values()) and (rising or len(alphas) == 1),
        )
    )
    acc = {a: account(by[(a, WEAK)]) for a in alphas}
    agree = {a: abs(weak[a].exponent - acc[a].exponent) <= ACCOUNT_TOLERANCE for a in alphas}
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The weak-superposition exponent is the paper's account: within "
                f"{ACCOUNT_TOLERANCE} of the exponent of the left-out frequency mass "
                "sum_{i > k} p_i (k the represented features of each run)."
            ),
            measured="; ".join(
                f"alpha {a:g}: loss {weak[a].exponent:.2f} vs account {acc[a].exponent:.2f} "
                f"(represented k = {', '.join(str(p.represented) for p in by[(a, WEAK)])})"
                for a in alphas
            ),
            holds=all(agree.values()),
        )
    )
    decays = sorted({wd for _, wd in by})
    rows, ok = [], True
    for a in alphas:
        for i, m in enumerate(p.m for p in by[(a, decays[0])]):
            fr = [by[(a, wd)][i].fraction for wd in decays]
            ok = ok and all(x >= y for x, y in itertools.pairwise(fr))
            rows.append(f"alpha {a:g} m {m}: " + "/".join(f"{v:.2f}" for v in fr))
    out.append(
        Claim(
            section=SECTION,
            text=(
                "The fraction of represented features (row norm > 1/2) grows as weight decay goes "
                "negative: at every alpha and m it never falls from one weight decay to the next "
                "smaller one, and it is higher at the most negative than at the most positive."
            ),
            measured=f"fraction at weight decay {'/'.join(f'{d:g}' for d in decays)}: "
            + "; ".join(rows),
            holds=ok
            and all(
                by[(a, decays[0])][i].fraction > by[(a, decays[-1])][i].fraction
                for a in alphas
                for i in range(len(by[(a, decays[0])]))
            ),
        )
    )
    return out
