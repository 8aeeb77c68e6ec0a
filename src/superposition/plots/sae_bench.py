"""Figures of the SAE leaderboard (:mod:`superposition.sae.bench`): results in, figures out.

- :func:`scores_against_l0`: F1, MCC and explained variance against the measured L0, one line
  per architecture (one point per target L0), the published SynthSAEBench-16k values at L0 = 25
  as crosses where the model is that size.
- :func:`absorption`: absorption, the parent latent's misses and hedging by architecture at the
  leaderboard's L0.
"""

import matplotlib

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter  # noqa: E402

from superposition.sae.bench import PUBLISHED, BenchResult  # noqa: E402

COLOURS = {
    "relu_l1": "tab:grey",
    "topk": "tab:orange",
    "jumprelu": "tab:green",
    "batchtopk": "tab:blue",
    "matryoshka": "tab:red",
}


def scores_against_l0(result: BenchResult) -> Figure:
    """Three panels (F1, MCC, explained variance) against L0, a line per architecture."""
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.8))
    archs = list(dict.fromkeys(r["architecture"] for r in result.rows))
    full = result.info.get("synthetic", {}).get("n_features") == 16_384
    for ax, (key, label) in zip(
        axes, (("f1", "F1"), ("mcc", "MCC"), ("explained_variance", "explained variance")),
        strict=True,
    ):
        for arch in archs:
            rows = sorted((r for r in result.rows if r["architecture"] == arch),
                          key=lambda r: r["l0"])  # fmt: skip
            ax.plot([r["l0"] for r in rows], [r[key] for r in rows], "o-", label=arch,
                    color=COLOURS.get(arch))  # fmt: skip
            if full and key in ("f1", "mcc") and arch in PUBLISHED:
                ax.plot([25], [PUBLISHED[arch][key]], "x", color=COLOURS.get(arch), ms=8)
        ax.set_xlabel("L0 (active latents per sample)")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    syn = result.info.get("synthetic", {})
    fig.suptitle(
        f"SAEs of width {result.info.get('width')} on {syn.get('n_features')} synthetic "
        f"features in {syn.get('n_hidden')} dimensions ({result.size})"
    )
    fig.tight_layout()
    return fig


def absorption(result: BenchResult) -> Figure:
    """Bars per architecture at the leaderboard's L0: absorption, parent misses, hedging."""
    target = result.leaderboard_target
    rows = result.at_target(target)
    archs = list(rows)
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    keys = (("absorption", "absorption"), ("parent_missed", "parent latent silent"),
            ("hedging", "hedging"))  # fmt: skip
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        xs = [j + (i - 1) * width for j in range(len(archs))]
        ax.bar(xs, [rows[a][key] for a in archs], width, label=label)
    ax.set_xticks(range(len(archs)), archs)
    ax.set_ylabel("share")
    ax.set_title(f"Absorption and hedging at target L0 {target}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = {"scores_against_l0": scores_against_l0, "absorption": absorption}


def draw(result: BenchResult, folder: Path) -> list[Path]:
    """Write every figure as PNG and SVG into ``folder``; return the PNGs."""
    out = []
    for name, make in FIGURES.items():
        fig = make(result)
        for ext in ("svg", "png"):
            path = Path(folder) / f"{name}.{ext}"
            fig.savefig(path, dpi=120)
        plt.close(fig)
        out.append(path)
    return out
