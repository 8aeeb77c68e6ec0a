"""Data sources: where a chunk's training batches and held-out samples come from.

``fresh``
    new samples of the feature distribution every step (Elhage et al. 2022, Section 2: the paper's
    and the notebook's setting). On the CPU every instance draws from its own counter-based stream
    (:mod:`superposition.kernels`), so an instance's batches do not depend on what it is trained
    beside; the torch step's batches are exactly the fused step's. On CUDA the chunk draws from
    one ``torch.Generator`` on the device.
``finite``
    a training set of ``dataset_size`` (T) samples per instance, drawn once from the seed and
    iterated in batches (the setting of Henighan et al. 2023, *Superposition, Memorization, and
    Double Descent*): with ``batch_size >= T`` every step sees the whole set (full batch),
    otherwise each instance goes through its own shuffled order, epoch after epoch. Held-out
    samples are fresh, and the loss on the training set is reported beside it.
``tokens``
    one token per sample: a one-hot vector, each of the ``n_features`` tokens equally likely, new
    every step, with no sparsity (the setting of a model that reads tokens and predicts them with
    the cross-entropy loss). Each instance draws from its own generator, named by its seed pair;
    the config's density is ignored, and feature sets or signed inputs are refused.
``sampler``
    a user's callable ``sampler(batch, generator) -> [batch, inst, feat]`` (passed to
    :func:`superposition.train`), run on the torch step; its held-out samples come from the same
    callable with another generator.

A new source is a subclass of :class:`Source` plus ``register_source(name, cls)``.
"""

from collections.abc import Iterator
from typing import Any

import torch

from superposition._types import Float, Tensor
from superposition.data import FeatureDistribution
from superposition.errors import ConfigError
from superposition.rng import derive_seed
from superposition.steps.base import StepSpec, batches_of


class Source:
    """Training batches and held-out samples for the instances of one chunk."""

    def __init__(self, spec: StepSpec):
        self.spec = spec
        self.device = spec.device

    def batch(self, step: int, size: int) -> Float[Tensor, "inst batch feat"]:
        """The training batch of ``step``."""
        raise NotImplementedError

    def held_out(self, samples: int) -> Iterator[tuple[Tensor, int]]:
        """Fresh held-out samples in batches: ``(x [inst, n, feat], n)``."""
        raise NotImplementedError

    def dataset(self) -> Float[Tensor, "inst sample feat"] | None:
        return None


def distribution(spec: StepSpec) -> FeatureDistribution:
    """The feature distribution of a chunk's instances, on its device."""
    cfg = spec.config
    return FeatureDistribution(
        density=spec.instances.density.to(spec.device),
        correlated=cfg.data.correlated,
        anticorrelated=cfg.data.anticorrelated,
        signed=cfg.signed,
    )


def _chunk_seed(spec: StepSpec, purpose: str) -> int:
    # the chunk's generators (CUDA, user samplers) are named by its first instance and its size
    seed, k = spec.instances.seeds[0]
    return derive_seed(seed, purpose, k, spec.n_instances)


class FreshSource(Source):
    """Fresh samples of the feature distribution every step."""

    def __init__(self, spec: StepSpec):
        super().__init__(spec)
        self.dist = distribution(spec)
        self.on_cpu = spec.device.type == "cpu"
        if self.on_cpu:
            from superposition.fastpaths import DENSE_ABOVE, DENSE_ABOVE_VECTOR, Units

            # training batches as the fused step draws them (its vectorised coins for independent
            # features), held-out batches as every CPU step's evaluation has always drawn them
            independent = not (self.dist.correlated or self.dist.anticorrelated)
            threshold = DENSE_ABOVE_VECTOR if independent else DENSE_ABOVE
            self.units = Units.of(self.dist, threshold)
            self.eval_units = Units.of(self.dist)
            self.keys = spec.instances.stream_keys("data-stream")
            self.eval_keys = spec.instances.stream_keys("eval-stream")
        else:
            self.gen = torch.Generator(device=spec.device).manual_seed(_chunk_seed(spec, "data"))
            self.eval_gen = torch.Generator(device=spec.device)

    def draw(
        self, keys: object, counter: int, size: int, units: Any = None
    ) -> Float[Tensor, "inst batch feat"]:
        """``size`` samples per instance from the CPU streams ``keys`` at ``counter``."""
        from superposition import kernels

        units = units or self.eval_units
        # no zeros first: the sampler writes every element (its sparse paths zero x themselves)
        x = torch.empty((self.dist.n_instances, self.dist.n_features, size))
        kernels.sample_dense(keys, counter, *units.args(), units.signed, x.numpy())
        return x.transpose(1, 2)

    def batch(self, step: int, size: int) -> Float[Tensor, "inst batch feat"]:
        if self.on_cpu:
            return self.draw(self.keys, step, size, self.units)
        return self.dist.sample(size, self.gen)

    def held_out(self, samples: int) -> Iterator[tuple[Tensor, int]]:
        if not self.on_cpu:
            self.eval_gen.manual_seed(_chunk_seed(self.spec, "eval"))
        for i, n in enumerate(batches_of(samples)):
            if self.on_cpu:
                yield self.draw(self.eval_keys, i, n), n
            else:
                yield self.dist.sample(n, self.eval_gen), n


class FiniteSource(FreshSource):
    """A training set of T samples per instance, drawn once from the seed."""

    def __init__(self, spec: StepSpec):
        super().__init__(spec)
        size = spec.config.data.dataset_size
        assert size is not None  # DataConfig requires it for this source
        self.size = size
        if self.on_cpu:
            self.data = self.draw(spec.instances.stream_keys("dataset"), 0, size).contiguous()
        else:
            gen = torch.Generator(device=spec.device).manual_seed(_chunk_seed(spec, "dataset"))
            self.data = self.dist.sample(size, gen)
        self._orders: dict[int, Tensor] = {}

    def dataset(self) -> Float[Tensor, "inst sample feat"]:
        return self.data

    def _order(self, epoch: int) -> Tensor:
        # each instance's own shuffle of its set for this epoch (named by its seed pair, so it
        # does not depend on the chunk); only the current and next epochs are kept
        if epoch not in self._orders:
            rows = []
            for seed, k in self.spec.instances.seeds:
                gen = torch.Generator().manual_seed(derive_seed(seed, "dataset-order", k, epoch))
                rows.append(torch.randperm(self.size, generator=gen))
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = torch.stack(rows).to(self.device)
        return self._orders[epoch]

    def batch(self, step: int, size: int) -> Float[Tensor, "inst batch feat"]:
        if size >= self.size:
            return self.data
        start = step * size
        first, offset = divmod(start, self.size)
        order = self._order(first)[:, offset : offset + size]
        if order.shape[1] < size:  # the batch runs into the next epoch
            order = torch.cat([order, self._order(first + 1)[:, : size - order.shape[1]]], dim=1)
        index = order[..., None].expand(-1, -1, self.data.shape[2])
        return self.data.gather(1, index)


class TokensSource(Source):
    """One-hot tokens, each of the n features equally likely, fresh every step."""

    def __init__(self, spec: StepSpec):
        super().__init__(spec)
        data = spec.config.data
        if data.correlated or data.anticorrelated or data.feature_density or spec.config.signed:
            raise ConfigError(
                "data source 'tokens' draws one-hot tokens; drop correlated, anticorrelated, "
                "feature_density and signed from the data config"
            )
        self.n = data.n_features
        # one generator per instance, named by its seed pair: an instance's tokens do not depend
        # on what it is trained beside (a few instances, so a call per instance costs little)
        self.gens = [self._generator(seed, "tokens", k) for seed, k in spec.instances.seeds]

    def _generator(self, seed: int, purpose: str, k: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(derive_seed(seed, purpose, k))

    def _draw(self, gens: list[torch.Generator], size: int) -> Float[Tensor, "inst batch feat"]:
        which = torch.stack(
            [torch.randint(0, self.n, (size,), generator=g, device=self.device) for g in gens]
        )
        x = torch.zeros((len(gens), size, self.n), device=self.device)
        return x.scatter_(2, which[..., None], 1.0)

    def batch(self, step: int, size: int) -> Float[Tensor, "inst batch feat"]:
        return self._draw(self.gens, size)

    def held_out(self, samples: int) -> Iterator[tuple[Tensor, int]]:
        gens = [self._generator(seed, "tokens-eval", k) for seed, k in self.spec.instances.seeds]
        for n in batches_of(samples):
            yield self._draw(gens, n), n


class SamplerSource(Source):
    """A user's sampler: ``sampler(batch, generator) -> [batch, inst, feat]``."""

    def __init__(self, spec: StepSpec):
        super().__init__(spec)
        if spec.sampler is None:
            raise ConfigError(
                "data source 'sampler' needs a sampler: pass sampler=fn to superposition.train, "
                "with fn(batch, generator) returning a [batch, inst, feat] tensor"
            )
        self.sampler = spec.sampler
        self.gen = torch.Generator(device=spec.device).manual_seed(_chunk_seed(spec, "sampler"))
        self.eval_gen = torch.Generator(device=spec.device)

    def _call(self, size: int, gen: torch.Generator) -> Float[Tensor, "inst batch feat"]:
        x = self.sampler(size, gen)
        want = (size, self.spec.n_instances, self.spec.config.data.n_features)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or tuple(x.shape) != want:
            got = (
                f"a {x.dtype} tensor of shape {tuple(x.shape)}"
                if isinstance(x, torch.Tensor)
                else f"a {type(x).__name__}"
            )
            raise ConfigError(
                f"the sampler returned {got}; it must return a floating-point tensor of shape "
                f"[batch, inst, feat] = {list(want)}"
            )
        return x.to(self.device, torch.float32).transpose(0, 1)

    def batch(self, step: int, size: int) -> Float[Tensor, "inst batch feat"]:
        return self._call(size, self.gen)

    def held_out(self, samples: int) -> Iterator[tuple[Tensor, int]]:
        self.eval_gen.manual_seed(_chunk_seed(self.spec, "sampler-eval"))
        for n in batches_of(samples):
            yield self._call(n, self.eval_gen), n


SOURCES: dict[str, type[Source]] = {}
"""Registered data sources by name."""


def register_source(name: str, cls: type[Source]) -> type[Source]:
    """Make ``cls`` available as ``DataConfig(source=name)``; returns it."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"a data source name must be an identifier, got {name!r}")
    SOURCES[name] = cls
    return cls


def get_source(name: str) -> type[Source]:
    """The registered source called ``name``; an unknown name is refused with the known ones."""
    if name not in SOURCES:
        raise ConfigError(f"unknown data source {name!r}; registered sources: {', '.join(SOURCES)}")
    return SOURCES[name]


register_source("fresh", FreshSource)
register_source("finite", FiniteSource)
register_source("tokens", TokensSource)
register_source("sampler", SamplerSource)
