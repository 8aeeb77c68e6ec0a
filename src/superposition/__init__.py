"""superposition: toy models of superposition (Elhage et al. 2022), fast, batched and checked.

``import superposition`` stays light: the configs load at once, everything that needs torch loads
on first use (``superposition.training``, ``superposition.load_run`` ...). No plotting library is
imported.

    >>> import superposition as sp
    >>> cfg = sp.RunConfig(
    ...     data=sp.DataConfig(n_features=5, density=(1.0, 0.1), importance_decay=0.9),
    ...     model=sp.ModelConfig(kind="relu", n_hidden=2),
    ...     train=sp.TrainConfig(instances=4, steps=2000),
    ... )
    >>> run = sp.train(cfg)                                   # doctest: +SKIP
    >>> run.loss, sp.geometry.feature_dimensionality(run.W)   # doctest: +SKIP
    >>> sp.save_run(run, "runs/demo"); sp.load_run("runs/demo")  # doctest: +SKIP
"""

import importlib
from typing import Any

__version__ = "0.1.0"

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from superposition.errors import ConfigError, RunDirError  # noqa: E402

_LAZY = {
    "train": ("superposition.training", "train"),
    "Run": ("superposition.results", "Run"),
    "ToyModel": ("superposition.models", "ToyModel"),
    "FeatureDistribution": ("superposition.data", "FeatureDistribution"),
    "save_run": ("superposition.store", "save_run"),
    "load_run": ("superposition.store", "load_run"),
}
_SUBMODULES = {"data", "models", "geometry", "store", "results", "config", "theory"}

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "RunDirError",
    "TrainConfig",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"superposition.{name}")
    raise AttributeError(f"module 'superposition' has no attribute {name!r}")
