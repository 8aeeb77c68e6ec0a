"""One module per paper section: its preset configs and the claims it checks (layer 3).

An experiment module ``superposition.experiments.<name with underscores>`` provides ``NAME``,
``TITLE``, ``SECTION``, ``configs(quick) -> dict[str, RunConfig]`` and
``claims(runs: dict[str, Run]) -> list[Claim]``; its figures live in ``superposition.plots`` under
the same module name (see :mod:`superposition.reproduce`).

The experiments come in groups (:data:`GROUPS`): the paper's, the questions it leaves open,
the papers that followed it, and the benchmarks. ``superposition reproduce --all`` runs :data:`ALL`
(the paper and its open questions, minutes on a laptop); ``--group follow-ups`` the follow-up
papers and ``--group benchmarks`` the benchmarks, each of which takes longer.
"""

PAPER: tuple[str, ...] = (
    "intro",
    "demonstrating-superposition",
    "phase-change",
    "uniform-superposition",
    "nonuniform-superposition",
    "correlated-features",
    "learning-dynamics",
    "adversarial",
    "privileged-basis",
    "computation",
)
"""The paper's experiments, in its order."""

QUESTIONS: tuple[str, ...] = (
    "cross-entropy",
    "engineered-monosemanticity",
    "steering",
)
"""Questions the paper leaves open."""

FOLLOW_UPS: tuple[str, ...] = ("capacity", "memorization", "scaling")
"""Experiments of the papers that followed it."""

BENCHMARKS: tuple[str, ...] = ("sae-bench",)
"""Benchmarks: sparse autoencoders scored against known ground truth."""

GROUPS: dict[str, tuple[str, ...]] = {
    "paper": PAPER,
    "questions": QUESTIONS,
    "follow-ups": FOLLOW_UPS,
    "benchmarks": BENCHMARKS,
}
"""The experiments by group, for ``superposition reproduce --group NAME``."""

ALL: tuple[str, ...] = PAPER + QUESTIONS
"""What ``superposition reproduce --all`` runs: the paper and the questions it leaves open."""

EXPERIMENT_NAMES: tuple[str, ...] = PAPER + QUESTIONS + FOLLOW_UPS + BENCHMARKS
"""The experiments ``superposition reproduce`` knows: the paper's, in its order, then questions
beyond it, the follow-up papers and the benchmarks."""
