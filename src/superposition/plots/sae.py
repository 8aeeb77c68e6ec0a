"""Figures of dictionary learning on toy models: records (:class:`SAERun`) in, figures out.

- :func:`recovery`: MMCS and the fraction of true features recovered against the sparsity
  coefficient (k for TopK) and against the dictionary size (Sharkey et al. 2022 sweep both).
- :func:`decoder_directions`: for 2-D toy models, the SAE's decoder rows drawn over the true
  feature arrows, one panel per group (its best seed).
- :func:`training_animation`: the decoder rows of one instance over training, from the snapshots;
  :func:`save_animation` writes it as a GIF (matplotlib's PillowWriter) to a path it is given.
"""

import matplotlib

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    matplotlib.use("Agg")

import math  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from superposition.sae.results import SAERun  # noqa: E402

MAX_PANELS = 8


def _sweep_value(sae_run: SAERun, j: int) -> float:
    inst = sae_run.instances[j]
    return float(inst.k) if sae_run.config.architecture == "topk" else inst.coefficient


def recovery(sae_run: SAERun) -> Figure:
    """Two rows (MMCS, fraction recovered) by two columns (against the coefficient, against the
    dictionary size). Each seed is a dot, the line joins the means over seeds."""
    topk = sae_run.config.architecture == "topk"
    coef_label = "k (active latents)" if topk else "sparsity coefficient λ"
    scores = {"MMCS": sae_run.scores["mmcs"], "fraction recovered": sae_run.scores[
        "recovered_fraction"]}  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(8.0, 5.6), squeeze=False)
    sizes: list[float] = sorted({float(i.n_latents) for i in sae_run.instances})
    coefs: list[float] = sorted({_sweep_value(sae_run, j) for j in range(sae_run.n_instances)})
    toys = sorted({i.toy_instance for i in sae_run.instances})
    cmap = plt.get_cmap("viridis")
    for row, (name, values) in enumerate(scores.items()):
        for col, (x_of, lines, x_label) in enumerate(
            (
                (lambda j: _sweep_value(sae_run, j), sizes, coef_label),
                (lambda j: float(sae_run.instances[j].n_latents), coefs, "dictionary size"),
            )
        ):
            ax: Axes = axes[row, col]
            for li, line in enumerate(lines):
                for toy in toys:
                    members = [
                        j
                        for j, inst in enumerate(sae_run.instances)
                        if inst.toy_instance == toy
                        and (inst.n_latents if col == 0 else _sweep_value(sae_run, j)) == line
                    ]
                    xs = sorted({x_of(j) for j in members})
                    means = [
                        float(values[[j for j in members if x_of(j) == x]].nanmean()) for x in xs
                    ]
                    color = cmap(li / max(len(lines) - 1, 1) * 0.85)
                    label = (
                        f"{'n_latents' if col == 0 else ('k' if topk else 'λ')}={line:g}"
                        + (f", toy {toy}" if len(toys) > 1 else "")
                    )
                    ax.plot(xs, means, "-", color=color, label=label, lw=1.5)
                    ax.plot([x_of(j) for j in members], values[members].tolist(), ".",
                            color=color, alpha=0.5)  # fmt: skip
            positive = [x for x in (coefs if col == 0 else sizes) if x > 0]
            if col == 0 and not topk and len(positive) > 1 and max(positive) / min(positive) > 20:
                ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel(x_label, fontsize=9)
            ax.set_ylabel(name, fontsize=9)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.legend(fontsize=7)
    src = sae_run.source_config
    fig.suptitle(
        f"{sae_run.config.architecture} SAEs on the {src.model.kind} toy model "
        f"(n={src.data.n_features} features in m={src.model.n_hidden} dims), "
        f"{sae_run.config.seeds} seed(s) per point",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _check_2d(sae_run: SAERun) -> None:
    m = sae_run.source_config.model.n_hidden
    if m != 2:
        raise ValueError(f"decoder directions are drawn for 2-D toy models; this one has m={m}")


def _draw_directions(ax: Axes, true: list[list[float]], decoder: list[list[float]]) -> None:
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, lw=0.5, color="0.8"))
    for x, y in true:
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops={
            "arrowstyle": "-|>", "color": "0.55", "lw": 2.5, "shrinkA": 0,
            "shrinkB": 0})  # fmt: skip
    for x, y in decoder:
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops={
            "arrowstyle": "-|>", "color": "tab:red", "lw": 1.2, "ls": "--", "shrinkA": 0,
            "shrinkB": 0})  # fmt: skip
    lim = max([1.25] + [abs(v) * 1.1 for row in true for v in row])
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def decoder_directions(sae_run: SAERun) -> Figure:
    """For each group of seeds (up to 8), its best instance by MMCS: the toy model's feature
    directions W_i (grey) and the SAE's unit decoder rows (red, dashed)."""
    _check_2d(sae_run)
    groups = sae_run.groups()[:MAX_PANELS]
    mmcs = sae_run.scores["mmcs"].nan_to_num(-2.0)
    cols = min(len(groups), 4)
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    true = sae_run.true_directions
    mask = sae_run.mask
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    for ax, (first, members) in zip(axes.flat, groups, strict=False):
        j = members[int(mmcs[members].argmax())]
        _draw_directions(ax, true[j].tolist(), sae_run.W_dec[j][mask[j]].tolist())
        what = f"k={first.k}" if sae_run.config.architecture == "topk" else (
            f"λ={first.coefficient:g}")  # fmt: skip
        ax.set_title(
            f"{first.n_latents} latents, {what}\nMMCS {float(sae_run.scores['mmcs'][j]):.3f}",
            fontsize=8,
        )
    fig.suptitle("true features (grey) and SAE decoder directions (red)", fontsize=9)
    fig.tight_layout()
    return fig


def training_animation(sae_run: SAERun, instance: int | None = None) -> FuncAnimation:
    """The decoder rows of one instance (default: the best by MMCS) at every snapshot, over the
    true feature arrows."""
    _check_2d(sae_run)
    if "W_dec" not in sae_run.snapshots:
        raise ValueError("this SAE run kept no snapshots (config snapshots=0)")
    if instance is None:
        instance = int(sae_run.scores["mmcs"].nan_to_num(-2.0).argmax())
    snaps = sae_run.snapshots["W_dec"][:, instance][:, sae_run.mask[instance]]
    true = sae_run.true_directions[instance].tolist()
    fig, ax = plt.subplots(figsize=(3.0, 3.2))

    def draw(frame: int) -> list[Artist]:
        ax.clear()
        _draw_directions(ax, true, snaps[frame].tolist())
        ax.set_title(f"SAE instance {instance}, step {sae_run.snapshot_steps[frame]}", fontsize=8)
        return []

    draw(0)
    return FuncAnimation(fig, draw, frames=len(snaps), interval=150, blit=False)


def save_animation(animation: FuncAnimation, path: str | Path, fps: int = 6) -> Path:
    """Write an animation as a GIF at ``path`` (small: low resolution, few frames)."""
    out = Path(path)
    animation.save(str(out), writer=PillowWriter(fps=fps), dpi=60)
    plt.close(animation._fig)  # type: ignore[attr-defined]
    return out


def draw_sae(sae_run: SAERun, out_dir: str | Path) -> list[Path]:
    """Draw an SAE run's figures into ``out_dir`` (created if missing) and return their paths:
    recovery.png, and for 2-D toy models decoder_directions.png and, when snapshots were kept
    and the dictionaries are small, training.gif.

    :func:`superposition.sae.store.save_sae` calls it on its temporary folder, so an SAE
    directory appears with its figures or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figures = [("recovery.png", recovery)]
    if sae_run.source_config.model.n_hidden == 2:
        figures.append(("decoder_directions.png", decoder_directions))
    for name, draw in figures:
        fig = draw(sae_run)
        try:
            fig.savefig(out / name, dpi=110)
        finally:
            plt.close(fig)
        written.append(out / name)
    if (
        sae_run.source_config.model.n_hidden == 2
        and sae_run.snapshots
        and sae_run.W_dec.shape[1] <= 64
    ):
        written.append(save_animation(training_animation(sae_run), out / "training.gif"))
    return written
