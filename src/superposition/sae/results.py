"""The record of a dictionary-learning run: every SAE instance's weights, labels and scores."""

from dataclasses import dataclass, field
from typing import Any

import torch

from superposition._types import Bool, Float, Int, Tensor
from superposition.config import RunConfig
from superposition.results import loss_range, shorten
from superposition.sae.config import SAEConfig, SAEInstance

SCORE_KEYS = (
    "mmcs",
    "recovered_fraction",
    "l0",
    "dead",
    "dead_fraction",
    "dense",
    "mse",
    "fvu",
    "toy_loss",
    "spliced_loss",
    "loss_increase",
)
"""Per-instance scalar scores (see :mod:`superposition.sae.metrics`)."""


@dataclass
class SAERun:
    """SAEs trained on one toy-model run: all instances on one ``inst`` axis, on the CPU.

    Instance j is described by ``instances[j]`` (its toy instance, dictionary size, coefficient,
    k and seed); smaller dictionaries are padded to the largest, :attr:`mask` says which latents
    exist. The toy model's parameters for the instances used are kept (``toy_params``, one row
    per entry of ``toy_instances``), so the record can be scored and drawn without the source run.
    """

    config: SAEConfig
    source_config: RunConfig
    source_path: str | None
    toy_instances: list[int]
    toy_params: dict[str, Tensor]
    """The toy model's ``W`` [toy, feat, hidden], ``b`` [toy, feat] (and ``W_dec``)."""
    instances: list[SAEInstance]
    params: dict[str, Tensor]
    """``W_enc``, ``W_dec`` [inst, latent, hidden], ``b_enc`` [inst, latent], ``b_dec``
    [inst, hidden] and, for JumpReLU, ``log_threshold`` [inst, latent]."""
    history_steps: Int[Tensor, " log"]
    history_loss: Float[Tensor, "log inst"]
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: dict[str, Tensor] = field(default_factory=dict)
    """``W_dec`` at ``snapshot_steps``: [snap, inst, latent, hidden]."""
    scores: dict[str, Tensor] = field(default_factory=dict)
    """Per-instance scores: the :data:`SCORE_KEYS` [inst], ``max_cosine`` and ``represented``
    [inst, feat]."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return len(self.instances)

    @property
    def W_dec(self) -> Float[Tensor, "inst latent hidden"]:
        return self.params["W_dec"]

    @property
    def mask(self) -> Bool[Tensor, "inst latent"]:
        n_max = self.W_dec.shape[1]
        sizes = torch.tensor([i.n_latents for i in self.instances])
        return torch.arange(n_max)[None, :] < sizes[:, None]

    @property
    def toy_index(self) -> Int[Tensor, " inst"]:
        """For each SAE instance, its row in ``toy_params``."""
        rows = {t: r for r, t in enumerate(self.toy_instances)}
        return torch.tensor([rows[i.toy_instance] for i in self.instances], dtype=torch.long)

    @property
    def true_directions(self) -> Float[Tensor, "inst feat hidden"]:
        """Each SAE instance's ground truth: the rows of its toy instance's W."""
        return self.toy_params["W"][self.toy_index]

    def __repr__(self) -> str:
        """A few lines, whatever the size: what was trained on what, shapes and scores."""
        cfg = self.source_config
        lines = [
            f"SAERun({self.n_instances} SAE instances on toy instances "
            f"{shorten(str(self.toy_instances))} of a {cfg.model.kind} model "
            f"({cfg.data.n_features} features in {cfg.model.n_hidden} dimensions)"
            + (f" from {self.source_path}" if self.source_path else ""),
            "  params: " + ", ".join(f"{k} {list(v.shape)}" for k, v in self.params.items()),
        ]
        for key in ("mmcs", "l0", "mse"):
            if key in self.scores:
                lines.append(f"  {key}: {loss_range(self.scores[key])}")
        return "\n".join(lines) + ")"

    def groups(self) -> list[tuple[SAEInstance, list[int]]]:
        """Instances that differ only by seed, in layout order: (first instance, members)."""
        out: dict[tuple[int, int, float, int], list[int]] = {}
        for j, inst in enumerate(self.instances):
            out.setdefault(inst.group_key, []).append(j)
        return [(self.instances[members[0]], members) for members in out.values()]
