"""The configuration of a dictionary-learning run: which SAEs to train on a toy model's activations.

One :class:`SAEConfig` describes a whole sweep. Its list-valued fields (``n_latents``,
``l1_coefficient`` and ``k``) are crossed with the chosen toy-model instances and ``seeds`` seeds;
every combination is one SAE instance on the ``inst`` axis, all trained at once by one trainer. The
layout (slowest first) is: toy instance, n_latents, coefficient, k, seed (see :func:`layout`).

Like :mod:`superposition.config`, every field documents itself (the command line builds its
``--help`` from the docs) and bad values are refused on construction with one sentence.
"""

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, no_type_check

from superposition.config import (
    EVAL_WHY,
    INSTANCES_WHY,
    MAX_EVAL_SAMPLES,
    MAX_INSTANCES,
    Schedule,
    as_json_lists,
    build_section,
    check_choice,
    check_in_range,
    check_int_at_least,
    check_int_at_most,
    check_nonempty_tuple,
    doc_field,
    freeze_tuple,
)
from superposition.errors import ConfigError

SAE_SCHEMA_VERSION = 1

Architecture = Literal["relu_l1", "topk", "jumprelu", "batchtopk", "matryoshka"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)

K_ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "matryoshka")
"""The architectures whose sparsity is a number k of active latents (no penalty)."""


OPTION_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "l1_coefficient": ("relu_l1", "jumprelu"),
    "k": K_ARCHITECTURES,
    "matryoshka_prefixes": ("matryoshka",),
    "threshold_init": ("jumprelu",),
    "bandwidth": ("jumprelu",),
}
"""The options that only some architectures use; given for another, they are refused (they would
be ignored silently)."""


def _either(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_options_apply(given: Mapping[str, Any], *, spell: Callable[[str], str] = str) -> None:
    """Refuse an option of ``given`` (the values a user set, by field name) that its
    architecture (``given``'s, else the default ``relu_l1``) does not use; ``spell`` formats the
    option's name as the user wrote it (e.g. as a flag)."""
    architecture = given.get("architecture", "relu_l1")
    for name, users in OPTION_ARCHITECTURES.items():
        if name in given and architecture in ARCHITECTURES and architecture not in users:
            raise ConfigError(
                f"{spell(name)} applies to {_either(users)} SAEs only, not to "
                f"{architecture}; leave it out or choose another architecture"
            )


@no_type_check  # validated by __post_init__, which gives the user one clear sentence
@dataclass(frozen=True)
class SAEConfig:
    """Sparse autoencoders trained on the hidden activations of a toy model."""

    architecture: Architecture = doc_field(
        "relu_l1",
        "'relu_l1' (ReLU latents, L1 penalty, unit-norm decoder rows; Sharkey et al. 2022), "
        "'topk' (the k largest latents are kept; Gao et al. 2024), 'jumprelu' (a learned "
        "threshold per latent and an L0 penalty; Rajamanoharan et al. 2024), 'batchtopk' (the "
        "k x batch largest latents of a batch are kept, a threshold at inference; Bussmann et "
        "al. 2024) or 'matryoshka' (BatchTopK latents, every prefix of the dictionary in "
        "matryoshka_prefixes reconstructs the input on its own; Bussmann et al. 2025).",
    )
    n_latents: tuple[int, ...] | None = doc_field(
        None,
        "Dictionary size(s), each >= 1; a list sweeps them (smaller dictionaries are padded to "
        "the largest and their unused latents masked). Default: the toy model's n_features.",
    )
    l1_coefficient: tuple[float, ...] = doc_field(
        (0.3,),
        "Sparsity coefficient(s) lambda >= 0: of the L1 penalty for relu_l1, of the L0 penalty for "
        "jumprelu; topk has none. A list sweeps them.",
    )
    k: tuple[int, ...] = doc_field(
        (1,),
        "Active latents per sample for topk, batchtopk and matryoshka (on average over a batch "
        "for the last two; each >= 1); a list sweeps them.",
    )
    matryoshka_prefixes: tuple[int, ...] | None = doc_field(
        None,
        "Matryoshka: the sizes of the nested inner dictionaries, increasing, each below every "
        "n_latents (the whole dictionary is always the last). Default: 1/8, 1/4 and 1/2 of the "
        "smallest dictionary.",
    )
    threshold_init: float = doc_field(
        0.01, "JumpReLU: initial threshold of every latent (> 0)."
    )
    bandwidth: float = doc_field(
        0.01,
        "JumpReLU: width of the rectangle kernel of the straight-through estimator of the "
        "threshold's gradient (> 0).",
    )
    seeds: int = doc_field(4, "Independently initialised SAEs per combination of the sweep.")
    instance: int | None = doc_field(
        None,
        "Toy-model instance whose activations are used. Default: the best-of-N instance of every "
        "group of the run (one set of SAEs per group).",
    )
    steps: int = doc_field(5000, "Optimisation steps (fresh toy-model activations every step).")
    batch_size: int = doc_field(1024, "Activations per step and SAE instance.")
    lr: float = doc_field(1e-2, "Peak learning rate of Adam.")
    schedule: Schedule = doc_field(
        "linear",
        "Learning-rate schedule: 'constant', 'linear' or 'cosine' decay to 0 at the last step.",
    )
    resample_dead_every: int = doc_field(
        1000,
        "Every this many steps (during the first half of training), latents that did not fire "
        "since the last check are re-initialised towards badly reconstructed inputs (Bricken et "
        "al. 2023); 0 = never.",
    )
    seed: int = doc_field(0, "Seed from which every random generator of the SAE run is derived.")
    log_every: int = doc_field(100, "Record the per-instance training loss every this many steps.")
    snapshots: int | None = doc_field(
        None,
        "Evenly spaced copies of the decoder kept during training (for the animation); 0 = none. "
        "Default: 24 when the toy model has n_hidden <= 3, else none.",
    )
    eval_samples: int = doc_field(
        20_000, "Fresh samples per SAE instance for the final scores."
    )
    recovery_threshold: float = doc_field(
        0.95,
        "A true feature counts as recovered when some decoder direction has cosine similarity "
        "above this with it, in (0, 1].",
    )
    dense_threshold: float = doc_field(
        0.5, "A latent counts as dense when it fires on more than this fraction of samples."
    )
    device: str = doc_field("auto", "'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available).")
    memory_budget_gb: float | None = doc_field(
        None,
        "Memory the SAE training may use, in GiB (all instances train at once). Default: a "
        "quarter of the machine's (or the GPU's) memory.",
    )

    def __post_init__(self) -> None:
        for name in ("n_latents", "l1_coefficient", "k"):
            freeze_tuple(self, name)
        if self.matryoshka_prefixes is not None:
            freeze_tuple(self, "matryoshka_prefixes")
        check_choice("architecture", self.architecture, ARCHITECTURES)
        if self.n_latents is not None:
            check_nonempty_tuple("n_latents", self.n_latents)
            for n in self.n_latents:
                check_int_at_least("n_latents", n, 1)
        check_nonempty_tuple("l1_coefficient", self.l1_coefficient)
        for c in self.l1_coefficient:
            check_in_range("l1_coefficient", c, 0.0, 1e6)
        check_nonempty_tuple("k", self.k)
        for k in self.k:
            check_int_at_least("k", k, 1)
        if not self.uses_k and len(self.k) > 1:
            raise ConfigError(
                f"k applies to the {', '.join(K_ARCHITECTURES)} architectures only; "
                f"{self.architecture} got a sweep k={list(self.k)}"
            )
        if self.uses_k and len(self.l1_coefficient) > 1:
            raise ConfigError(
                f"{self.architecture} has no sparsity penalty; sweep k instead of "
                f"l1_coefficient={list(self.l1_coefficient)}"
            )
        if self.uses_k and self.n_latents is not None:
            small = [n for n in self.n_latents if n < max(self.k)]
            if small:
                raise ConfigError(
                    f"k={max(self.k)} is more than the dictionary size n_latents={small[0]}"
                )
        if self.matryoshka_prefixes is not None:
            check_prefixes(self.matryoshka_prefixes, self.n_latents)
        check_in_range("threshold_init", self.threshold_init, 0.0, 1e6, low_open=True)
        check_in_range("bandwidth", self.bandwidth, 0.0, 1e6, low_open=True)
        check_int_at_least("seeds", self.seeds, 1)
        check_int_at_most("seeds", self.seeds, MAX_INSTANCES, INSTANCES_WHY)
        if self.instance is not None:
            check_int_at_least("instance", self.instance, 0)
        check_int_at_least("steps", self.steps, 1)
        check_int_at_least("batch_size", self.batch_size, 1)
        check_in_range("lr", self.lr, 0.0, 10.0, low_open=True)
        check_choice("schedule", self.schedule, ("constant", "linear", "cosine"))
        check_int_at_least("resample_dead_every", self.resample_dead_every, 0)
        check_int_at_least("seed", self.seed, 0)
        check_int_at_least("log_every", self.log_every, 1)
        if self.snapshots is not None:
            check_int_at_least("snapshots", self.snapshots, 0)
        check_int_at_least("eval_samples", self.eval_samples, 1)
        check_int_at_most("eval_samples", self.eval_samples, MAX_EVAL_SAMPLES, EVAL_WHY)
        check_in_range("recovery_threshold", self.recovery_threshold, 0.0, 1.0, low_open=True)
        check_in_range("dense_threshold", self.dense_threshold, 0.0, 1.0)
        if not isinstance(self.device, str) or not (
            self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")
        ):
            raise ConfigError(
                f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}"
            )
        if self.memory_budget_gb is not None:
            check_in_range("memory_budget_gb", self.memory_budget_gb, 0.0, 1e6, low_open=True)
        per_toy = self.instances_per_toy_instance
        if per_toy > MAX_INSTANCES:
            raise ConfigError(
                f"{self.sweep_description} make {per_toy:,} SAE instances per toy instance, more "
                f"than the {MAX_INSTANCES:,} one training may hold ({INSTANCES_WHY}); sweep "
                "fewer values"
            )

    # ---- derived facts ------------------------------------------------------------------------

    @property
    def instances_per_toy_instance(self) -> int:
        """How many SAE instances :func:`layout` makes for each toy instance."""
        sizes = len(self.n_latents) if self.n_latents is not None else 1
        swept = len(self.k) if self.uses_k else len(self.l1_coefficient)
        return sizes * swept * self.seeds

    @property
    def sweep_description(self) -> str:
        """E.g. ``2 n_latents x 3 l1_coefficient value(s) x seeds 4``."""
        sizes = len(self.n_latents) if self.n_latents is not None else 1
        swept = (
            f"{len(self.k)} k" if self.uses_k
            else f"{len(self.l1_coefficient)} l1_coefficient"
        )  # fmt: skip
        return f"{sizes} n_latents x {swept} value(s) x seeds {self.seeds}"

    @property
    def uses_k(self) -> bool:
        """Whether the architecture's sparsity is k (no penalty coefficient)."""
        return self.architecture in K_ARCHITECTURES

    def prefixes(self, n_latents: int) -> tuple[int, ...]:
        """Matryoshka's nested dictionary sizes for a dictionary of ``n_latents`` (the inner ones
        and ``n_latents`` itself, increasing)."""
        inner = self.matryoshka_prefixes
        if inner is None:
            inner = tuple(sorted({max(1, n_latents // d) for d in (8, 4, 2)} - {n_latents}))
        check_prefixes(inner, (n_latents,))
        return (*inner, n_latents)

    def dictionary_sizes(self, n_features: int) -> tuple[int, ...]:
        """The swept dictionary sizes, the toy model's n_features when none was given."""
        return self.n_latents if self.n_latents is not None else (n_features,)

    def snapshot_count(self, n_hidden: int) -> int:
        if self.snapshots is not None:
            return self.snapshots
        return 24 if n_hidden <= 3 else 0

    # ---- JSON round trip ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = as_json_lists(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "SAE config") -> "SAEConfig":
        """Build from a JSON/TOML table; unknown keys are refused by name, lists become tuples."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source} must be a table, got {type(raw).__name__}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        result: SAEConfig = build_section(cls, values, source=source)
        return result


def check_prefixes(prefixes: tuple[int, ...], sizes: tuple[int, ...] | None) -> None:
    """Refuse Matryoshka prefixes that are not strictly increasing integers >= 1 below every
    dictionary size in ``sizes`` (when known)."""
    for p in prefixes:
        check_int_at_least("matryoshka_prefixes", p, 1)
    if any(b <= a for a, b in zip(prefixes, prefixes[1:], strict=False)):
        raise ConfigError(
            f"matryoshka_prefixes must be strictly increasing, got {list(prefixes)}"
        )
    if sizes is not None and prefixes and prefixes[-1] >= min(sizes):
        raise ConfigError(
            f"matryoshka_prefixes must stay below the dictionary size {min(sizes)} (the whole "
            f"dictionary is always the last level), got {list(prefixes)}"
        )


@dataclass(frozen=True)
class SAEInstance:
    """What one SAE instance on the ``inst`` axis is: its toy instance and its sweep values."""

    toy_instance: int
    n_latents: int
    coefficient: float
    k: int
    seed: int

    @property
    def group_key(self) -> tuple[int, int, float, int]:
        """Everything but the seed: the instances that differ only by seed form one group."""
        return (self.toy_instance, self.n_latents, self.coefficient, self.k)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def layout(config: SAEConfig, toy_instances: list[int], n_features: int) -> list[SAEInstance]:
    """Every SAE instance, toy instance slowest, then n_latents, coefficient, k; seed fastest.

    The coefficient is recorded as 0 for the k architectures (no penalty) and k as 0 for the other
    architectures (they do not use it), so that labels say what was really trained.
    """
    coefficients = (0.0,) if config.uses_k else config.l1_coefficient
    ks = config.k if config.uses_k else (0,)
    return [
        SAEInstance(t, n, float(c), k, s)
        for t, n, c, k, s in itertools.product(
            toy_instances,
            config.dictionary_sizes(n_features),
            coefficients,
            ks,
            range(config.seeds),
        )
    ]
