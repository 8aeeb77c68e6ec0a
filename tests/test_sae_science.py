"""The reference result of dictionary learning on a toy model (Sharkey et al. 2022's setting in
miniature): on a 5-in-2 ReLU toy model at low density, whose features form a pentagon, an L1 SAE
with 5 latents finds all 5 feature directions for at least one of a few seeds."""

import pytest
import torch

from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.sae import SAEConfig, train_sae
from superposition.training import train


@pytest.mark.slow
def test_sae_with_5_latents_recovers_the_5_features_of_a_pentagon():
    toy = train(
        RunConfig(
            data=DataConfig(n_features=5, density=(0.05,)),
            model=ModelConfig(kind="relu", n_hidden=2),
            train=TrainConfig(steps=3000, instances=4, eval_samples=5000, device="cpu"),
        ),
        progress=False,
    )
    best = toy.best()[0]
    assert (toy.W[best].norm(dim=-1) > 0.5).all(), "the toy model represents all 5 features"
    r = train_sae(
        toy,
        SAEConfig(n_latents=(5,), l1_coefficient=(0.3,), seeds=4, steps=3000, device="cpu",
                  eval_samples=5000),  # fmt: skip
        progress=False,
    )
    assert r.toy_instances == [best]
    assert r.scores["represented"].all()
    full = r.scores["recovered_fraction"] == 1.0
    assert full.any(), f"no seed recovered every feature: {r.scores['max_cosine']}"
    winner = int(torch.nonzero(full)[0])
    assert (r.scores["max_cosine"][winner] > 0.95).all()
    assert r.scores["mmcs"][winner] > 0.95
    # recovered features are also a good dictionary: small reconstruction error and L0 near the
    # expected number of present features (5 x 0.05)
    assert r.scores["fvu"][winner] < 0.2
    assert 0.1 < r.scores["l0"][winner] < 0.5
