"""One module per paper section: its preset configs and the claims it checks (layer 3).

An experiment module ``superposition.experiments.<name with underscores>`` provides ``NAME``,
``TITLE``, ``SECTION``, ``configs(quick) -> dict[str, RunConfig]`` and
``claims(runs: dict[str, Run]) -> list[Claim]``; its figures live in ``superposition.plots`` under
the same module name (see :mod:`superposition.reproduce`).
"""

EXPERIMENT_NAMES: tuple[str, ...] = (
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
    "cross-entropy",
    "engineered-monosemanticity",
    "steering",
)
"""The experiments ``superposition reproduce`` knows: the paper's, in its order, then questions
beyond it."""
