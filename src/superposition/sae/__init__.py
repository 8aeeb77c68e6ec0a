"""Dictionary learning on toy models: SAEs trained on a toy model's hidden activations and scored
against the feature directions it really uses (layer 3).

``import superposition.sae`` is light (the config only); the rest loads on first use::

    from superposition import load_run
    from superposition.sae import SAEConfig, train_sae, save_sae, load_sae

    run = load_run("runs/x")
    sae_run = train_sae(run, SAEConfig(n_latents=(5, 10), l1_coefficient=(0.003, 0.03)))
    sae_run.scores["mmcs"]            # mean max cosine similarity per SAE instance
    save_sae(sae_run, "runs/x-sae")

Modules: :mod:`~superposition.sae.config` (the sweep), :mod:`~superposition.sae.model` (the five
architectures with closed-form gradients), :mod:`~superposition.sae.metrics` (scores against a toy
model's directions), :mod:`~superposition.sae.train` (the batched trainer),
:mod:`~superposition.sae.store` (the SAE directory); for SAEs judged on ground truth at benchmark
scale, :mod:`~superposition.sae.synthetic` (activations with known features),
:mod:`~superposition.sae.synthetic_train` (the trainer on them),
:mod:`~superposition.sae.groundtruth` (MCC, F1, absorption ...), :mod:`~superposition.sae.bench`
(the leaderboard) and :mod:`~superposition.sae.export` (SAELens's format).
"""

import importlib
from typing import Any

from superposition.sae.config import ARCHITECTURES, SAEConfig, SAEInstance, layout

_LAZY = {
    "train_sae": ("superposition.sae.train", "train_sae"),
    "SAERun": ("superposition.sae.results", "SAERun"),
    "SparseAutoencoder": ("superposition.sae.model", "SparseAutoencoder"),
    "save_sae": ("superposition.sae.store", "save_sae"),
    "load_sae": ("superposition.sae.store", "load_sae"),
    "is_sae_dir": ("superposition.sae.store", "is_sae_dir"),
}

__all__ = ["ARCHITECTURES", "SAEConfig", "SAEInstance", "layout", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'superposition.sae' has no attribute {name!r}")
