"""Result records: what a training run produced, independent of how it is stored or drawn."""

from dataclasses import dataclass, field, replace
from typing import Any

import torch

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
    """How the run was made: device, chunk size, wall time, package version."""

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
