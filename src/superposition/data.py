"""Synthetic sparse features (paper, Section 2 "Demonstrating Superposition", and Section 4 for the
correlated and anticorrelated sets).

Feature i of instance k is zero with probability ``1 - density[k, i]`` and otherwise uniform in
[0, 1] (in [-1, 1] when ``signed``). All randomness comes from the explicit ``torch.Generator``
passed in, on the device where the model lives.

One uniform draw serves both the coin and the magnitude: with ``u ~ U[0, 1)``, the feature is
present when ``u < p`` and then ``u / p`` is again uniform on [0, 1), independent of the coin. This
halves the random numbers drawn, which dominate the cost of a step. (The magnitudes are quantised
to steps of ``2**-24 / p``: below 1e-4 of the range even at density 0.001.)
"""

import dataclasses
from dataclasses import dataclass

import torch

from superposition._types import Float, Tensor
from superposition.config import RunConfig
from superposition.errors import ConfigError


def _check_density(density: Tensor) -> None:
    if not torch.isfinite(density).all() or (density <= 0).any() or (density > 1).any():
        bad = density[~(torch.isfinite(density) & (density > 0) & (density <= 1))][0].item()
        raise ConfigError(f"density must be in (0, 1], got {bad!r}")


@dataclass(frozen=True)
class FeatureDistribution:
    """Independent, correlated and anticorrelated sparse features for every instance.

    ``density[k, i]`` is the marginal probability that feature i of instance k is non-zero. Sets
    are given by their sizes and occupy consecutive features: first the ``correlated`` sets from
    feature 0, then the ``anticorrelated`` ones; the remaining features are independent.

    - a correlated set shares one coin (with its first member's density): all members are present or
      all absent, magnitudes independent;
    - an anticorrelated set of k members is active with probability k * p (p its first member's
      density) and then exactly one member, chosen uniformly, is present: each member's marginal
      density is p and no two are ever present together.
    """

    density: Float[Tensor, "inst feat"]
    correlated: tuple[int, ...] = ()
    anticorrelated: tuple[int, ...] = ()
    signed: bool = False

    def __post_init__(self) -> None:
        _check_density(self.density)
        n = self.density.shape[1]
        if sum(self.correlated) + sum(self.anticorrelated) > n:
            raise ConfigError(
                f"feature sets cover {sum(self.correlated) + sum(self.anticorrelated)} features "
                f"but there are only {n}"
            )
        for k, start in self.anticorrelated_starts():
            if (self.density[:, start] * k > 1).any():
                raise ConfigError(
                    f"anticorrelated set of {k} features starting at feature {start} needs density "
                    f"<= {1 / k:g}"
                )

    @property
    def n_instances(self) -> int:
        return self.density.shape[0]

    def select(self, instances: int | list[int] | Tensor) -> "FeatureDistribution":
        """The same distribution on some instances only (an index, a list or an index tensor)."""
        density = self.density[instances]
        return dataclasses.replace(self, density=density if density.dim() == 2 else density[None])

    @property
    def n_features(self) -> int:
        return self.density.shape[1]

    def correlated_starts(self) -> list[tuple[int, int]]:
        """``(size, first feature)`` of each correlated set."""
        starts, i = [], 0
        for k in self.correlated:
            starts.append((k, i))
            i += k
        return starts

    def anticorrelated_starts(self) -> list[tuple[int, int]]:
        """``(size, first feature)`` of each anticorrelated set."""
        starts, i = [], sum(self.correlated)
        for k in self.anticorrelated:
            starts.append((k, i))
            i += k
        return starts

    def sample(self, batch: int, generator: torch.Generator) -> Float[Tensor, "inst batch feat"]:
        """Draw ``batch`` samples per instance on the distribution's device."""
        n_inst, n_feat = self.density.shape
        u = torch.rand(
            (n_inst, batch, n_feat), generator=generator, device=self.density.device
        )
        x = self._independent(u)
        for k, start in self.correlated_starts():
            coin = torch.rand((n_inst, batch, 1), generator=generator, device=u.device)
            present = coin < self.density[:, None, start : start + 1]
            # the magnitudes of a set's members are the (independent) uniforms u themselves
            x[:, :, start : start + k] = u[:, :, start : start + k] * present
        for k, start in self.anticorrelated_starts():
            x[:, :, start : start + k] = self._one_of(u[:, :, start], k, start)
        if self.signed:
            # present features are uniform on [-1, 1]: map the magnitude m in [0, 1) to 2m - 1
            x = torch.where(x != 0, 2 * x - 1, x)
        return x

    def _independent(self, u: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch feat"]:
        # x = u / p where u < p, else 0 — written as relu(1 - u/p): 1 - u/p is also uniform on
        # (0, 1] when u < p and is <= 0 otherwise, so one fused pass gives coin and magnitude.
        inv = (1.0 / self.density)[:, None, :]
        return torch.clamp_min_(torch.addcmul(torch.ones((), device=u.device), u, inv, value=-1), 0)

    def _one_of(self, v: Float[Tensor, "inst batch"], k: int, start: int) -> Tensor:
        # v < k p activates the set; v / p in [0, k) then names the member (its integer part) and
        # gives its magnitude (the fractional part, uniform and independent of the member).
        scaled = v / self.density[:, None, start]
        member = scaled.floor()
        magnitude = scaled - member
        onehot = member[..., None] == torch.arange(k, device=v.device, dtype=v.dtype)
        # guard against a zero magnitude colliding with "absent" in the signed map: use 1 - frac
        return (1 - magnitude)[..., None] * onehot

    @classmethod
    def from_config(
        cls, config: RunConfig, device: torch.device | str = "cpu"
    ) -> "FeatureDistribution":
        """The distribution of every instance of a run, groups laid out one after another."""
        rows = []
        for group in config.groups:
            rows += [config.data.feature_densities(group.density)] * config.train.instances
        return cls(
            density=torch.tensor(rows, dtype=torch.float32, device=device),
            correlated=config.data.correlated,
            anticorrelated=config.data.anticorrelated,
            signed=config.signed,
        )


def importance_from_config(
    config: RunConfig, device: torch.device | str = "cpu"
) -> Float[Tensor, "inst feat"]:
    """Per-instance, per-feature importance I (Section 2: ``I_i = r**i`` or explicit values)."""
    rows = []
    for group in config.groups:
        row = config.data.feature_importances(
            group.importance_decay, group.relative_importance
        )
        rows += [row] * config.train.instances
    importance = torch.tensor(rows, dtype=torch.float32, device=device)
    if not torch.isfinite(importance).all():
        raise ConfigError("importance must be finite; got a NaN or infinite value")
    return importance
