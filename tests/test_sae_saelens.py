"""The SAELens export read back by SAELens itself (the ``saelens`` extra): every architecture's
folder loads with ``SAE.load_from_disk`` and SAELens's encode and decode compute what ours do."""

import json

import pytest
import torch

from superposition.errors import ConfigError
from superposition.sae.config import SAEConfig
from superposition.sae.export import SAELENS_FORMAT, export_saelens
from superposition.sae.model import SparseAutoencoder
from superposition.sae.synthetic import SyntheticConfig, SyntheticModel
from superposition.sae.synthetic_train import SyntheticSAERun, train_synthetic

ARCHITECTURES = ("relu_l1", "topk", "jumprelu", "batchtopk", "matryoshka")
SAELENS_CLASS = {"relu_l1": "StandardSAE", "topk": "TopKSAE"}  # the others: JumpReLUSAE
MODEL = SyntheticConfig(n_features=24, n_hidden=8, density_profile="zipf", mean_active=2.0)


def train(arch: str) -> SyntheticSAERun:
    """Two seeds of a 16-latent SAE (k = 3 where it applies), a few dozen steps: enough for its
    weights, biases and thresholds to be nothing like their initial values."""
    extra = {"k": (3,)} if arch in ("topk", "batchtopk", "matryoshka") else {}
    config = SAEConfig(architecture=arch, n_latents=(16,), seeds=2, steps=40, batch_size=128,
                       lr=3e-3, eval_samples=500, device="cpu", **extra)  # fmt: skip
    return train_synthetic(SyntheticModel(MODEL), config, progress=False)


def ours(arch: str, run: SyntheticSAERun) -> SparseAutoencoder:
    """Our SAE with the run's final weights, in inference mode (BatchTopK: the threshold)."""
    sae = SparseAutoencoder(
        arch, **{k: v for k, v in run.params.items() if k != "threshold"},
        coefficient=torch.zeros(run.n_instances),
        k=torch.tensor([max(i.k, 1) for i in run.instances]),
        mask=torch.ones(run.n_instances, 16, dtype=torch.bool),
        threshold=run.params.get("threshold"),
    )  # fmt: skip
    sae.training = False
    return sae


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saelens_loads_the_export_and_computes_what_ours_computes(arch, tmp_path):
    from sae_lens import SAE

    run = train(arch)
    folder = export_saelens(arch, run.params, 1, 16, tmp_path / arch, k=run.instances[1].k)
    loaded = SAE.load_from_disk(folder, device="cpu")
    assert type(loaded).__name__ == SAELENS_CLASS.get(arch, "JumpReLUSAE")
    assert (loaded.cfg.d_in, loaded.cfg.d_sae) == (8, 16)
    # read as a SAELens 6 folder: our metadata kept, no language-model defaults added
    meta = loaded.cfg.metadata
    assert meta.source_architecture == arch and meta.exported_by.startswith("superposition")
    assert meta.sae_lens_version == SAELENS_FORMAT and "prepend_bos" not in meta

    h = SyntheticModel(MODEL).sample(400, torch.Generator().manual_seed(9)).h
    mine = ours(arch, run)
    f_ours = mine.encode(h.expand(2, -1, -1))[1]
    with torch.no_grad():
        f = loaded.encode(h)
        assert torch.allclose(f, f_ours, atol=1e-5)
        assert torch.allclose(loaded.decode(f), mine.decode(f_ours.expand(2, -1, -1))[1], atol=1e-5)
        assert torch.allclose(loaded(h), mine.forward(h.expand(2, -1, -1))[1], atol=1e-5)
    # the comparison means something: latents fire, and not all of them on every sample
    assert 0 < (f_ours > 0).float().mean() < 0.9
    # instance 0 is another SAE: SAELens's copy of instance 1 does not compute it
    assert not torch.allclose(f, mine.encode(h.expand(2, -1, -1))[0], atol=1e-3)


def test_export_refuses_a_bad_k_or_width(tmp_path):
    run = train("topk")
    with pytest.raises(ConfigError, match="k of a topk SAE must be in 1..16, got 0"):
        export_saelens("topk", run.params, 0, 16, tmp_path / "a", k=0)
    with pytest.raises(ConfigError, match="n_latents must be in 1..16, got 17"):
        export_saelens("topk", run.params, 0, 17, tmp_path / "b", k=3)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    cfg = json.loads((export_saelens("topk", run.params, 0, 16, tmp_path / "c", k=3)
                      / "cfg.json").read_text())  # fmt: skip
    assert cfg["k"] == 3 and cfg["rescale_acts_by_decoder_norm"] is False
