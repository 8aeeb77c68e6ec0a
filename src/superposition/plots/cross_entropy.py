"""Figures of the cross-entropy experiment (layer 4): each seed's neuron against the tokens, and
the sweep over tokens and neurons beside the hand-set losses of :mod:`superposition.tokens`."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from superposition import tokens
from superposition.experiments import cross_entropy as exp
from superposition.results import Run

MAIN = ((exp.CE, "cross-entropy, weight decay 0.01"), (exp.NO_DECAY, "cross-entropy, no decay"),
        (exp.MSE, "squared error, weight decay 0.01"))  # fmt: skip


def neurons(runs: dict[str, Run]) -> Figure:
    """Per main run, each seed's neuron activation on each token relative to its largest (seeds
    down, tokens across); right, every seed's exact loss against the tokens its neuron responds
    to, with the hand-set losses of N = 4 tokens and one neuron."""
    fig, axes = plt.subplots(
        1,
        5,
        figsize=(14, 4.4),
        layout="constrained",
        gridspec_kw={"width_ratios": [1, 1, 1, 0.08, 2.2]},
    )
    n = exp.N_TOKENS
    im = None
    for ax, (name, label) in zip(axes[:3], MAIN, strict=True):
        run = runs[name]
        h = tokens.activations(run.W)[:, :, 0].numpy()  # [seed, token]
        top = h.max(axis=1, keepdims=True)
        rel = np.divide(h, top, out=np.zeros_like(h), where=top > 0)
        im = ax.imshow(rel, cmap="Reds", vmin=0, vmax=1, aspect="auto")
        loss = exp.measure(run).loss
        ax.set_yticks(range(len(loss)), [f"{v:.3f}" for v in loss], fontsize=6)
        ax.set_xticks(range(n), list("ABCDEFGH"[:n]))
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("token")
    axes[0].set_ylabel("seed (label: its exact loss)", fontsize=8)
    if im is not None:
        fig.colorbar(im, cax=axes[3]).set_label("activation / neuron's largest", fontsize=8)
    ax = axes[4]
    for (name, label), marker in zip(MAIN[:2], ("o", "x"), strict=True):
        s = exp.measure(runs[name])
        counts = [t[0] for t in s.tokens]
        jitter = 0.08 if marker == "x" else -0.08
        ax.plot(np.array(counts) + jitter, s.loss, marker, alpha=0.7, label=label)
    refs = (
        (tokens.monosemantic_loss(n, 1), "fires on A only: (3/4) ln 3", "--"),
        (tokens.binary_code_loss(n, 1), "fires on A, B equally: ln 2", ":"),
    )
    for value, label, style in refs:
        ax.axhline(value, color="0.3", ls=style, lw=1, label=label)
    limits = [tokens.graded_code_loss(n, n - r) for r in range(n + 1)]
    ax.plot(range(n + 1), limits, "s", color="0.6", mfc="none",
            label="graded-code limit, N - r silent tokens")  # fmt: skip
    ax.set_xlabel(f"tokens the neuron responds to (> {tokens.RESPONDS:g} of its largest)")
    ax.set_ylabel("exact cross-entropy (nats)")
    ax.set_xticks(range(n + 1))
    ax.legend(fontsize=7)
    ax.set_title("loss against tokens, N = 4, one neuron", fontsize=8)
    fig.suptitle("One ReLU neuron reading four equally likely tokens (no sparsity)", fontsize=10)
    return fig


def sweep(runs: dict[str, Run]) -> Figure:
    """Left, the best seed's exact loss (all seeds faint) against the number of tokens N, per
    number of neurons k, with the hand-set monosemantic and binary-code losses; right, tokens
    per neuron of the best seed, with the monosemantic 1 and the balanced binary code's N/2."""
    points = exp.sweep_points(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    colours = plt.get_cmap("tab10")
    for j, k in enumerate(sorted({p[1] for p in points})):
        mine = [p for p in points if p[1] == k]
        ns = [p[0] for p in mine]
        c = colours(j)
        for nn, _, s in mine:
            left.plot([nn] * len(s.loss), s.loss, ".", color=c, alpha=0.25)
        left.plot(ns, [s.loss[s.best] for _, _, s in mine], "o-", color=c,
                  label=f"k={k}: trained, best seed")  # fmt: skip
        grid = np.arange(min(ns), max(ns) + 1)
        left.plot(grid, [tokens.monosemantic_loss(int(g), k) for g in grid], "--", color=c,
                  lw=1, label=f"k={k}: monosemantic hand-set")  # fmt: skip
        left.plot(grid, [tokens.binary_code_loss(int(g), k) for g in grid], ":", color=c,
                  lw=1, label=f"k={k}: best binary code")  # fmt: skip
        right.plot(ns, [s.mean_tokens(s.best) for _, _, s in mine], "o-", color=c,
                   label=f"k={k}: trained, best seed")  # fmt: skip
    all_n = sorted({p[0] for p in points})
    right.plot(all_n, [1] * len(all_n), "--", color="0.3", lw=1, label="monosemantic: 1")
    right.plot(all_n, [g / 2 for g in all_n], ":", color="0.3", lw=1,
               label="balanced binary code: N/2")  # fmt: skip
    for ax in (left, right):
        ax.set_xticks(all_n)
    left.set_xlabel("tokens N")
    left.set_ylabel("exact cross-entropy (nats)")
    left.legend(fontsize=7)
    right.set_xlabel("tokens N")
    right.set_ylabel(f"tokens per live neuron (> {tokens.RESPONDS:g} of its largest)")
    right.legend(fontsize=7)
    fig.suptitle("Cross-entropy over N tokens with k ReLU neurons, weight decay 0.01", fontsize=10)
    return fig


FIGURES = {
    "neurons": neurons,
    "sweep": sweep,
}
