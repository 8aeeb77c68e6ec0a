"""The SAE leaderboard: every architecture trained at matched L0 on one standard synthetic model
and scored against its features (layer 3; figures in :mod:`superposition.plots.sae_bench`).

Three sizes (:data:`SIZES`): ``quick`` (512 features in 64 dimensions, width 128: a minute or
two), ``standard`` (4,096 in 256, width 1,024) and ``full`` (16,384 in 768, width 4,096, the
scale of SynthSAEBench-16k). Each architecture trains all its target L0s at once on the same
data stream (:mod:`superposition.sae.synthetic_train`); the k architectures get ``k = L0``, the
penalty architectures a coefficient steered to it. On a CPU two architectures train side by
side, one core each (:func:`run_bench`'s ``workers``).

:func:`run_bench` returns a :class:`BenchResult`; :func:`write_bench` writes ``results.json``
(every instance's labels and scores), ``weights.safetensors`` (every SAE's weights),
``table.md``, ``claims.json`` and ``figures/``; :func:`load_bench` reads ``results.json`` back,
enough to redraw the figures, and :func:`load_bench_params` one architecture's weights (e.g. for
:func:`superposition.sae.export.export_saelens`).
"""

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superposition import __version__, files
from superposition.config import build_section
from superposition.errors import ConfigError, RunDirError
from superposition.results import Claim
from superposition.sae.config import ARCHITECTURES, K_ARCHITECTURES, SAEConfig
from superposition.sae.synthetic import SyntheticConfig

if TYPE_CHECKING:
    import torch

RESULTS_FILE = "results.json"
WEIGHTS_FILE = "weights.safetensors"
TABLE_FILE = "table.md"
CLAIMS_FILE = "claims.json"

PUBLISHED = {
    "matryoshka": {"f1": 0.879, "mcc": 0.793},
    "batchtopk": {"f1": 0.732, "mcc": 0.757},
    "jumprelu": {"f1": 0.732, "mcc": 0.753},
    "relu_l1": {"f1": 0.556, "mcc": 0.604},
}
"""SynthSAEBench-16k, width-4096 SAEs at L0 = 25 (Chanin and Garriga-Alonso 2026)."""

OFF_TARGET = 0.25
"""An SAE whose L0 is further than this (relative) from its target is flagged in the table."""

SLOWEST_FIRST = ("jumprelu", "matryoshka", "batchtopk", "topk", "relu_l1")
"""The architectures by the time a step takes (measured at the standard size, one core each)."""

SCORES = ("f1", "mcc", "explained_variance", "l0", "precision", "recall", "uniqueness", "dead",
          "shrinkage", "absorption", "parent_missed", "hedging")  # fmt: skip


@dataclass(frozen=True)
class BenchSize:
    """One size of the leaderboard: the synthetic model and how the SAEs train."""

    synthetic: SyntheticConfig
    width: int
    targets: tuple[int, ...]
    """The L0s every architecture is trained at (the middle one is the leaderboard's)."""
    steps: int
    batch_size: int
    lr: float
    eval_samples: int


def _model(n: int, d: int, active: float, roots: int, depth: int, rank: int, strength: float):
    return SyntheticConfig(
        n_features=n, n_hidden=d, density_profile="zipf", zipf_exponent=0.5, mean_active=active,
        correlation_rank=rank, correlation_strength=strength, hierarchy_roots=roots,
        hierarchy_children=4, hierarchy_depth=depth, mutually_exclusive=True,
        scale_children=True, magnitude="folded_normal", magnitude_mean=1.0,
        magnitude_spread=0.1, magnitude_std=0.5, seed=0,
    )  # fmt: skip


SIZES: dict[str, BenchSize] = {
    "quick": BenchSize(_model(512, 64, 8.0, 8, 2, 8, 0.3), 128, (4, 8, 16), 1500, 512, 3e-3,
                       16_384),  # fmt: skip
    "standard": BenchSize(_model(4096, 256, 25.0, 64, 2, 25, 0.3), 1024, (12, 25, 50), 4000,
                          1024, 1e-3, 32_768),  # fmt: skip
    "full": BenchSize(_model(16_384, 768, 34.0, 128, 3, 25, 0.1), 4096, (25,), 8000, 2048,
                      5e-4, 65_536),  # fmt: skip
}
"""The leaderboard's sizes."""


def sae_config(size: BenchSize, architecture: str, device: str = "auto") -> SAEConfig:
    """The SAEs of one architecture: one instance per target L0."""
    common: dict[str, Any] = dict(
        architecture=architecture, n_latents=(size.width,), seeds=1, steps=size.steps,
        batch_size=size.batch_size, lr=size.lr, eval_samples=size.eval_samples,
        resample_dead_every=max(size.steps // 8, 1), log_every=max(size.steps // 20, 1),
        device=device,
    )  # fmt: skip
    if architecture in K_ARCHITECTURES:
        return SAEConfig(k=size.targets, **common)
    # one distinct starting coefficient per target (the controller moves it): a lower L0 starts
    # from a larger coefficient
    middle = size.targets[len(size.targets) // 2]
    start = 0.05 if architecture == "relu_l1" else 0.01
    coefficients = tuple(start * middle / t for t in size.targets)
    extra: dict[str, Any] = (
        {"threshold_init": 0.1, "bandwidth": 0.05} if architecture == "jumprelu" else {}
    )
    return SAEConfig(l1_coefficient=coefficients, **common, **extra)


@dataclass
class BenchResult:
    """Every instance of the leaderboard: its architecture, target L0 and scores."""

    size: str
    rows: list[dict[str, Any]]
    """One per SAE: ``architecture``, ``instance`` (its index on that architecture's ``inst``
    axis; absent in folders written before the weights were kept), labels and scores."""
    info: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, "torch.Tensor"]] = field(default_factory=dict)
    """Each architecture's trained parameters, ``[inst, ...]`` on the CPU (``W_enc`` ...); empty
    when read back by :func:`load_bench` (:func:`load_bench_params` reads them)."""

    def at_target(self, target: int) -> dict[str, dict[str, Any]]:
        """Each architecture's row at ``target``."""
        return {r["architecture"]: r for r in self.rows if r["target_l0"] == target}

    @property
    def leaderboard_target(self) -> int:
        targets = sorted({int(r["target_l0"]) for r in self.rows})
        return targets[len(targets) // 2]


def synthetic_override(size: str, values: dict[str, Any], source: str) -> SyntheticConfig:
    """The synthetic model of ``size`` with the fields in ``values`` replaced (lists become
    tuples); unknown keys and bad values are refused with one sentence naming ``source``."""
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    merged = dict(SIZES[size].synthetic.__dict__)
    merged.update({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    result: SyntheticConfig = build_section(SyntheticConfig, merged, source=source)
    return result


def default_workers(device: str = "auto", architectures: int = len(ARCHITECTURES)) -> int:
    """Architectures trained side by side: one per CPU core, at most two (the machine this
    aims at), one on an accelerator."""
    from superposition.training import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(2, os.cpu_count() or 1, architectures))


def run_bench(
    size: str,
    *,
    synthetic: SyntheticConfig | None = None,
    architectures: Sequence[str] = ARCHITECTURES,
    device: str = "auto",
    progress: bool | None = None,
    on_done: Callable[[str, float], None] | None = None,
    workers: int | None = None,
) -> BenchResult:
    """Train and score every architecture at every target L0 of ``size`` (on ``synthetic``
    instead of the size's model when given; the SAEs keep the size's settings).

    ``workers`` architectures train at once (default :func:`default_workers`), each in a thread
    of its own whose tensor operations run on one core: on a shared machine a single operation
    split across two cores waits for whichever core is busy elsewhere, two architectures side
    by side do not wait for each other. Every architecture reads its own data stream and
    generators, so its scores do not depend on ``workers``."""
    from superposition.sae.synthetic import SyntheticModel
    from superposition.sae.synthetic_train import train_synthetic
    from superposition.sae.train import cpu_settings
    from superposition.training import resolve_device

    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    for a in architectures:
        if a not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {a!r}; known: {', '.join(ARCHITECTURES)}")
    if workers is None:
        workers = default_workers(device, len(architectures))
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number of at least 1, got {workers!r}")
    spec = SIZES[size]
    if synthetic is not None:
        spec = dataclasses.replace(spec, synthetic=synthetic)
    for t in spec.targets:
        if t > spec.width:
            raise ConfigError(f"target L0 {t} is more than the SAE width {spec.width}")
    dev = resolve_device(device)
    model = SyntheticModel(spec.synthetic, dev)
    seconds: dict[str, float] = {}
    stop = threading.Event()

    params: dict[str, dict[str, torch.Tensor]] = {}

    def train(arch: str) -> list[dict[str, Any]]:
        cfg = sae_config(spec, arch, str(dev))
        targets = None if cfg.uses_k else [float(t) for t in spec.targets]
        run = train_synthetic(model, cfg, target_l0=targets, progress=progress, stop=stop)
        seconds[arch] = float(run.info["seconds"])
        params[arch] = run.params
        if on_done is not None:
            on_done(arch, seconds[arch])
        rows = []
        for j, inst in enumerate(run.instances):
            row: dict[str, Any] = {
                "architecture": arch,
                "instance": j,
                "target_l0": spec.targets[j],
                "n_latents": inst.n_latents,
                "k": inst.k,
                "coefficient": None if run.coefficient is None or cfg.uses_k
                else float(run.coefficient[j]),  # fmt: skip
            }
            row.update({key: float(run.scores[key][j]) for key in SCORES})
            rows.append(row)
        return rows

    started = time.perf_counter()
    if workers == 1:
        per_arch = [train(arch) for arch in architectures]
    else:
        # one core per operation (the outermost CPU settings hold for every thread)
        # the slowest architectures first, so that the last one to finish is a short one
        order = sorted(architectures, key=lambda a: (SLOWEST_FIRST + (a,)).index(a))
        with cpu_settings(dev, 0), ThreadPoolExecutor(workers) as pool:
            futures = {arch: pool.submit(train, arch) for arch in order}
            try:
                wait(futures.values(), return_when=FIRST_EXCEPTION)
                for future in futures.values():  # the first failure, without waiting for the rest
                    if future.done() and future.exception() is not None:
                        future.result()
                per_arch = [futures[arch].result() for arch in architectures]
            except BaseException:
                stop.set()  # the running threads stop at their next step, the others never start
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    info = {
        "version": __version__,
        "device": str(dev),
        "seconds": seconds,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "workers": workers,
        "synthetic": dict(spec.synthetic.__dict__),
        "width": spec.width,
        "steps": spec.steps,
        "batch_size": spec.batch_size,
    }
    rows = [row for arch_rows in per_arch for row in arch_rows]
    kept = {arch: params[arch] for arch in architectures}
    return BenchResult(size, rows, files.jsonable(info), kept)


def claims(result: BenchResult) -> list[Claim]:
    """The published orderings, checked at the leaderboard's target L0 (measures stated in the
    docs before any full run)."""
    target = result.leaderboard_target
    rows = result.at_target(target)
    out: list[Claim] = []
    needed = ("matryoshka", "batchtopk", "jumprelu", "relu_l1")
    if not all(a in rows for a in needed):
        return out
    for key, name in (("f1", "F1"), ("mcc", "MCC")):
        values = {a: rows[a][key] for a in needed}
        best, worst = max(values, key=values.__getitem__), min(values, key=values.__getitem__)
        shown = ", ".join(f"{a} {v:.3f}" for a, v in sorted(values.items(), key=lambda x: -x[1]))
        out.append(
            Claim(
                "SynthSAEBench, Table 2",
                f"At matched L0, Matryoshka SAEs score the highest {name} and ReLU-L1 SAEs the "
                "lowest of Matryoshka, BatchTopK, JumpReLU and ReLU-L1.",
                f"{name} at L0 target {target}: {shown}",
                best == "matryoshka" and worst == "relu_l1",
            )
        )
    m, b = rows["matryoshka"]["absorption"], rows["batchtopk"]["absorption"]
    out.append(
        Claim(
            "Bussmann et al. 2025, Section 5",
            "Matryoshka SAEs absorb less than BatchTopK SAEs of the same width and L0.",
            f"absorption at L0 target {target}: matryoshka {m:.3f}, batchtopk {b:.3f}",
            m < b,
        )
    )
    return out


def table(result: BenchResult) -> str:
    """A Markdown table: one row per architecture at the leaderboard's L0, best F1 first, with
    the published F1 / MCC where there is one."""
    target = result.leaderboard_target
    rows = sorted(result.at_target(target).values(), key=lambda r: -r["f1"])
    head = ("architecture", "L0", "F1", "MCC", "expl. var.", "absorption", "hedging", "dead",
            "published F1 / MCC")  # fmt: skip
    lines = [
        f"SAEs of width {result.info.get('width')} at target L0 {target} ({result.size} size)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        pub = PUBLISHED.get(r["architecture"])
        cells = (
            r["architecture"], f"{r['l0']:.1f}", f"{r['f1']:.3f}", f"{r['mcc']:.3f}",
            f"{r['explained_variance']:.3f}", f"{r['absorption']:.3f}", f"{r['hedging']:.3f}",
            f"{int(r['dead'])}", f"{pub['f1']:.3f} / {pub['mcc']:.3f}" if pub else "-",
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    off = [r["architecture"] for r in rows if abs(r["l0"] - target) > OFF_TARGET * target]
    if off:
        lines += ["", f"L0 more than {OFF_TARGET:.0%} off the target (not matched): "
                  + ", ".join(off)]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_bench(
    result: BenchResult,
    out: Path,
    *,
    overwrite: bool = False,
    figures: Callable[[BenchResult, Path], object] | None = None,
) -> Path:
    """Write the leaderboard folder atomically: results.json, weights.safetensors, table.md,
    claims.json and the figures (``figures(result, folder)``, e.g.
    :func:`superposition.plots.sae_bench.draw`)."""
    out = Path(out)
    check_bench_target(out, overwrite=overwrite)
    with files.atomic_folder(out) as tmp:
        fill_folder(result, tmp, figures)
    return out


def fill_folder(
    result: BenchResult,
    folder: Path,
    figures: Callable[[BenchResult, Path], object] | None = None,
) -> list[Claim]:
    """Write results.json, weights.safetensors (when ``result`` holds weights) and table.md
    into ``folder`` (being built); with ``figures``, also claims.json and figures/. Returns the
    claims."""
    files.write_json(
        folder / RESULTS_FILE,
        {"kind": "sae-bench", "size": result.size, "rows": result.rows, "info": result.info},
        atomic=False,
    )
    if result.params:
        # one file, every architecture's tensors under "<architecture>.<name>"
        tensors = {
            f"{arch}.{name}": t for arch, ps in result.params.items() for name, t in ps.items()
        }
        files.write_safetensors(
            folder / WEIGHTS_FILE, tensors, metadata={"kind": "sae-bench"}, atomic=False
        )
    files.write_text(folder / TABLE_FILE, table(result), atomic=False)
    checked = claims(result)
    if figures is not None:
        files.write_json(folder / CLAIMS_FILE, [c.to_dict() for c in checked], atomic=False)
        (folder / "figures").mkdir(exist_ok=True)
        figures(result, folder / "figures")
    return checked


def check_bench_target(out: Path, *, overwrite: bool) -> None:
    """Refuse a file, a non-empty folder that is not a leaderboard, or a leaderboard unless
    ``overwrite``."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not (out / RESULTS_FILE).is_file():
        raise ConfigError(f"{out} exists and is not an SAE leaderboard; choose another --out")
    if not overwrite:
        raise ConfigError(f"{out} already holds an SAE leaderboard; pass --force to replace it")


def load_bench(path: Path) -> BenchResult:
    """Read a leaderboard folder's results.json."""
    file = Path(path) / RESULTS_FILE
    if not file.is_file():
        raise RunDirError(f"{path} is not an SAE leaderboard: it has no {RESULTS_FILE}")
    raw = files.read_json(file)
    if not isinstance(raw, dict) or raw.get("kind") != "sae-bench":
        raise RunDirError(f"{file} is not an SAE leaderboard's results")
    rows = raw.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RunDirError(f"{file} has no list of result rows")
    return BenchResult(str(raw.get("size")), rows, dict(raw.get("info", {})))


def load_bench_params(path: Path, architecture: str) -> dict[str, "torch.Tensor"]:
    """The weights of one architecture's SAEs in the leaderboard folder ``path`` (``[inst, ...]``,
    instance j being the row with ``"instance": j``); only that architecture's tensors are read."""
    folder = Path(path)
    result = load_bench(folder)
    file = folder / WEIGHTS_FILE
    if not file.is_file():
        raise RunDirError(
            f"{folder} holds no SAE weights (written before leaderboards kept them); run the "
            "leaderboard again to export its SAEs"
        )
    rows = [r for r in result.rows if r.get("architecture") == architecture]
    if any("instance" not in r for r in rows):
        raise RunDirError(
            f"{folder / RESULTS_FILE} does not say which SAE of {WEIGHTS_FILE} each row is "
            "(a row without \"instance\")"
        )
    n = len(rows)
    prefix = architecture + "."
    with files.open_safetensors(file) as f:
        keys = list(f.keys())
        params = {k[len(prefix) :]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
    if not params:
        held = sorted({k.split(".", 1)[0] for k in keys})
        raise RunDirError(
            f"{file} has no weights of architecture {architecture!r}; it holds "
            + (", ".join(held) or "none")
        )
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        if name not in params:
            raise RunDirError(f"{file} has no tensor {prefix + name!r}")
    for name, t in params.items():
        if t.shape[0] != n:
            raise RunDirError(
                f"{file} has {prefix + name} for {t.shape[0]} SAEs but {RESULTS_FILE} lists {n}"
            )
    return params
