"""Result records: what a training run produced, independent of how it is stored or drawn."""

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from superposition import _html
from superposition._types import Float, Int, Tensor
from superposition.config import RunConfig


@dataclass
class Run:
    """A trained run: every instance's parameters, losses and optional weight snapshots.

    Instances are laid out group after group (see :attr:`RunConfig.groups`),
    ``config.train.instances`` seeds per group. All tensors live on the CPU.
    """

    config: RunConfig
    params: dict[str, Tensor]
    """``W`` [inst, feat, hidden], ``b`` [inst, feat] and, for untied models, ``W_dec``."""
    loss: Float[Tensor, " inst"]
    """Final loss of each instance on held-out samples (the number best-of-N compares)."""
    history_steps: Int[Tensor, " log"]
    """Steps at which the training loss was recorded."""
    history_loss: Float[Tensor, "log inst"]
    """Training loss of each instance at those steps (on that step's batch)."""
    snapshots: dict[str, Tensor] = field(default_factory=dict)
    """Copies of each parameter at ``config.train.snapshot_steps``: leading axis ``snap``."""
    info: dict[str, Any] = field(default_factory=dict)
    """How the run was made: device, step, chunk size, wall time, package version."""
    dataset_loss: Float[Tensor, " inst"] | None = None
    """For a finite training set (``DataConfig(source="finite")``): each instance's mean loss on
    its training set, beside the held-out :attr:`loss` on fresh samples."""

    @property
    def W(self) -> Float[Tensor, "inst feat hidden"]:
        return self.params["W"]

    @property
    def b(self) -> Float[Tensor, "inst feat"]:
        return self.params["b"]

    @property
    def n_instances(self) -> int:
        return self.W.shape[0]

    def group_slice(self, group: int) -> slice:
        k = self.config.train.instances
        return slice(group * k, (group + 1) * k)

    def best(self) -> list[int]:
        """Best-of-N: for each group, the instance with the lowest held-out loss (the paper trained
        many models per setting and kept the best)."""
        out = []
        for g in range(self.config.n_groups):
            sl = self.group_slice(g)
            out.append(sl.start + int(torch.argmin(self.loss[sl])))
        return out

    def select(self, instances: list[int]) -> "Run":
        """A run restricted to the given instances (in memory only: its config no longer matches,
        so it cannot be saved as a run directory)."""
        idx = torch.as_tensor(instances, dtype=torch.long)
        return replace(
            self,
            params={k: v[idx] for k, v in self.params.items()},
            loss=self.loss[idx],
            history_loss=self.history_loss[:, idx],
            snapshots={k: v[:, idx] for k, v in self.snapshots.items()},
            info={**self.info, "selected_instances": list(instances)},
            dataset_loss=None if self.dataset_loss is None else self.dataset_loss[idx],
        )

    def __repr__(self) -> str:
        """A few lines, whatever the size: the config in brief, the shapes and the losses (the
        tensors themselves are in :attr:`params`; Jupyter shows :meth:`_repr_html_`)."""
        cfg = self.config
        model, data, tr = cfg.model, cfg.data, cfg.train
        groups = ", ".join(
            f"{k}={list(v) if len(v) > 1 else v[0]}"
            for k in ("density", "importance_decay", "relative_importance")
            if (v := getattr(data, k)) != (1.0,) or k == "density"
        )
        layout = (
            f"{cfg.n_groups} group(s) x {tr.instances} seed(s)"
            if self.n_instances == cfg.n_instances
            else f"selected from the config's {cfg.n_instances}"
        )
        lines = [
            f"Run({model.kind}, {'tied' if model.is_tied else 'untied'}: {data.n_features} "
            f"features in {model.n_hidden} dimensions, {self.n_instances} instances = {layout}",
            f"  data: {shorten(groups)}",
            f"  train: {tr.steps} steps, batch {tr.batch_size}, {tr.optimizer} lr={tr.lr:g}, "
            f"loss {tr.loss}, seed {tr.seed}",
            "  params: " + ", ".join(f"{k} {list(v.shape)}" for k, v in self.params.items()),
            f"  held-out loss: {loss_range(self.loss)}",
        ]
        if self.snapshots:
            snap = next(iter(self.snapshots.values()))
            lines.append(f"  snapshots: {snap.shape[0]} of {', '.join(self.snapshots)}")
        if "selected_instances" in self.info:
            lines.append(f"  selected instances: {shorten(str(self.info['selected_instances']))}")
        return "\n".join(lines) + ")"

    def _repr_html_(self) -> str:
        """Jupyter's view: the config, each group's best-of-N and the best instances' ``W W^T``
        (the paper's ``W^T W``). Shapes are named one layer up: ``geometry.summary``."""
        return _run_html(self)


# --------------------------------------------------------------------------------------------------
# the run as text (print, the REPL)

REPR_WIDTH = 120
"""Characters a field of a record's text form keeps at most (long lists are cut)."""


def shorten(text: str, width: int = REPR_WIDTH) -> str:
    """``text`` cut to ``width`` characters, ending in "..." when cut."""
    return text if len(text) <= width else text[: width - 3] + "..."


def loss_range(loss: Tensor) -> str:
    """Min, median and max of per-instance losses in a few characters (non-finite ones counted)."""
    values = loss.detach().float().cpu()
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return f"none finite ({values.numel()} instances)"
    text = (
        f"min {finite.min().item():.4g}, median {finite.median().item():.4g}, "
        f"max {finite.max().item():.4g}"
    )
    bad = values.numel() - finite.numel()
    return text + (f" ({bad} not finite)" if bad else "")


# --------------------------------------------------------------------------------------------------
# the run in a notebook

REPRESENTED = 0.5
"""Norm above which the view counts a feature as represented (geometry.classify's default)."""
MAX_PANELS = 6
"""Gram matrices the view draws at most."""
MAX_FEATURES = 20
"""Features a drawn Gram matrix shows at most."""
MAX_CELLS = 1024
"""Gram cells the view draws at most (fewer panels for big models), so that it stays small."""
_SHORT = {"density": "density", "importance_decay": "decay", "relative_importance": "rel. imp."}


def _run_html(run: Run) -> str:
    cfg = run.config
    model, tr = cfg.model, cfg.train
    n = cfg.data.n_features
    about: list[tuple[str, object]] = [
        ("model", f"{model.kind} ({'tied' if model.is_tied else 'untied'})"),
        ("n_features", n),
        ("n_hidden", model.n_hidden),
        ("groups", cfg.n_groups),
        ("instances per group", tr.instances),
        ("steps", tr.steps),
        ("batch size", tr.batch_size),
        ("lr", tr.lr),
        ("seed", tr.seed),
    ]
    # how it was trained, when the run says so (train() records these)
    about += [(k, run.info[k]) for k in ("device", "step", "seconds") if k in run.info]
    loss = run.loss.detach().cpu().tolist()
    W = run.W.detach().cpu().float()
    represented = (torch.linalg.vector_norm(W, dim=-1) > REPRESENTED).sum(-1).tolist()

    if run.n_instances == cfg.n_instances:
        caption = "best of each group (lowest held-out loss)"
        groups = [group.as_dict() for group in cfg.groups]
        varying = [k for k in _SHORT if len({g[k] for g in groups}) > 1] or ["density"]
        best = run.best()
        header = ["group", *_SHORT, "best instance", "best loss", "mean loss", "represented"]
        rows: list[list[object]] = []
        for g, values in enumerate(groups):
            sl = run.group_slice(g)
            mean = sum(loss[sl]) / len(loss[sl])
            i = best[g]
            rows.append(
                [g, *(values[k] for k in _SHORT), i, loss[i], mean, f"{represented[i]} of {n}"]
            )
        drawn = best
        titles = [
            ", ".join(f"{_SHORT[k]} {_html.number(values[k], 3)}" for k in varying)
            for values in groups
        ]
    else:  # a selection (Run.select): its config no longer describes its instances
        caption = "selected instances"
        original = run.info.get("selected_instances", list(range(run.n_instances)))
        header = ["instance", "loss", "represented"]
        rows = [[original[i], loss[i], f"{represented[i]} of {n}"] for i in range(run.n_instances)]
        drawn = list(range(run.n_instances))
        titles = [f"instance {original[i]}" for i in drawn]

    f = min(n, MAX_FEATURES)
    shown = drawn[: max(1, min(MAX_PANELS, MAX_CELLS // (f * f)))]
    V = W[shown, :f]
    grams = (V @ V.transpose(-1, -2)).numpy()
    figure = _html.heatmaps(
        list(grams), titles[: len(shown)], title="W W^T of the best instances"
    )
    notes = []
    if len(drawn) > len(shown):
        notes.append(f"W W^T drawn for the first {len(shown)} of {len(drawn)}")
    if n > MAX_FEATURES:
        notes.append(f"first {MAX_FEATURES} of {n} features drawn")
    represented_note = f"represented: features with ||W_i|| > {REPRESENTED}"
    name = f"Run: {n} features in {model.n_hidden} dimensions, {run.n_instances} instances"
    return (
        _html.heading(name)
        + _html.side_by_side(
            _html.table(["setting", "value"], about),
            _html.heading(caption)
            + _html.table(header, rows[: _html.MAX_ROWS], more=len(rows) - _html.MAX_ROWS)
            + _html.note(represented_note),
            _html.heading("W W^T (row i: feature i)") + figure
            + "".join(_html.note(t) for t in notes),
        )
    )


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, what this run measured, and whether that bears it out."""

    section: str
    """Where the paper makes the claim (e.g. "Introduction", "Section 2")."""
    text: str
    """The claim in one sentence."""
    measured: str
    """What this run measured, in words and numbers."""
    holds: bool
    """Whether the measurement bears the claim out."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "text": self.text,
            "measured": self.measured,
            "holds": self.holds,
        }
