"""SAEs judged on ground truth: the synthetic model, BatchTopK and Matryoshka SAEs, the scores
against known features, per-instance independence, the leaderboard and the SAELens export."""

import dataclasses
import json
import math

import pytest
import torch

from superposition.cli import main
from superposition.errors import ConfigError
from superposition.sae import bench
from superposition.sae.config import SAEConfig
from superposition.sae.groundtruth import GroundTruthScores, uniqueness
from superposition.sae.model import SparseAutoencoder
from superposition.sae.synthetic import SyntheticConfig, SyntheticModel
from superposition.sae.synthetic_train import train_synthetic

# --------------------------------------------------------------------------------------------------
# the synthetic model


def draw(config: SyntheticConfig, n: int = 20_000, seed: int = 0):
    return SyntheticModel(config).sample(n, torch.Generator().manual_seed(seed))


def test_firing_rates_follow_the_profile_and_h_is_the_sum_of_directions():
    cfg = SyntheticConfig(n_features=6, n_hidden=3, density_profile="linear", mean_active=1.2,
                          density_ratio=0.25, magnitude="constant")  # fmt: skip
    rates = cfg.firing_rates()
    assert math.isclose(sum(rates), 1.2) and math.isclose(rates[-1] / rates[0], 0.25)
    model = SyntheticModel(cfg)
    b = model.sample(40_000, torch.Generator().manual_seed(1))
    observed = (b.x > 0).float().mean(0)
    assert torch.allclose(observed, torch.tensor(rates), atol=0.01)
    assert torch.allclose(b.h, b.x @ model.directions, atol=1e-5)
    assert torch.allclose(model.directions.norm(dim=-1), torch.ones(6))


def test_the_copula_keeps_the_rates_and_correlates_the_firing():
    base = dict(n_features=40, n_hidden=8, density_profile="uniform", mean_active=8.0)
    free = draw(SyntheticConfig(**base)).x > 0
    tied = draw(SyntheticConfig(**base, correlation_rank=1, correlation_strength=0.9)).x > 0
    for on in (free, tied):
        assert abs(on.float().mean().item() - 0.2) < 0.01
    def mean_abs_corr(on):  # noqa: E306
        c = torch.corrcoef(on.float().T)
        return (c - torch.eye(40)).abs().sum() / (40 * 39)
    assert mean_abs_corr(tied) > 5 * mean_abs_corr(free)


def test_children_fire_only_with_their_parent_one_at_a_time_scaled_by_it():
    cfg = SyntheticConfig(n_features=12, n_hidden=12, directions="orthogonal",
                          density_profile="uniform", mean_active=6.0, hierarchy_roots=2,
                          hierarchy_children=3, hierarchy_depth=1, magnitude="constant")
    assert cfg.parent_list()[:8] == [-1, -1, 0, 0, 0, 1, 1, 1]
    b = draw(cfg)
    on = b.x > 0
    for parent, kids in ((0, [2, 3, 4]), (1, [5, 6, 7])):
        assert not (on[:, kids].any(1) & ~on[:, parent]).any()
        assert on[:, kids].sum(1).max() == 1  # mutually exclusive
        assert on[:, kids].any(1).float().mean() > 0.2  # yet they do fire
        kid_on = on[:, kids[0]]
        assert torch.allclose(b.x[kid_on, kids[0]], b.x[kid_on, parent])  # 1 x the parent's 1


def test_grandchildren_are_gated_and_scaled_through_the_whole_chain():
    # an explicit forest numbered out of order: 3 is the root, 0 and 4 its children, 1 and 2
    # the children of 0
    cfg = SyntheticConfig(n_features=5, n_hidden=5, directions="orthogonal",
                          parents=(3, 0, 0, -1, 3), densities=(0.9, 0.8, 0.8, 0.7, 0.9),
                          magnitude="constant", magnitude_spread=0.5)  # fmt: skip
    model = SyntheticModel(cfg)
    b = model.sample(20_000, torch.Generator().manual_seed(2))
    on, mu = b.x > 0, model.magnitude_mean
    assert not (on[:, [0, 4]].any(1) & ~on[:, 3]).any()
    assert not (on[:, [1, 2]].any(1) & ~on[:, 0]).any()
    assert on[:, [0, 4]].sum(1).max() == 1 and on[:, [1, 2]].sum(1).max() == 1
    grand = on[:, 1]
    assert grand.float().mean() > 0.05
    assert torch.allclose(b.x[grand, 1], (mu[1] * mu[0] * mu[3]).expand(int(grand.sum())))
    assert torch.allclose(b.h, b.x @ model.directions, atol=1e-5)


def test_exclusive_children_that_all_fire_are_kept_uniformly_at_random():
    cfg = SyntheticConfig(n_features=4, n_hidden=4, parents=(-1, 0, 0, 0),
                          densities=(1.0, 1.0, 1.0, 1.0))  # fmt: skip
    on = SyntheticModel(cfg).fires(30_000, torch.Generator().manual_seed(0))
    assert on[:, 0].all() and (on[:, 1:].sum(1) == 1).all()
    assert torch.allclose(on[:, 1:].float().mean(0), torch.full((3,), 1 / 3), atol=0.015)


def test_same_seed_same_model_and_batch():
    cfg = SyntheticConfig(n_features=30, n_hidden=5, mean_active=3.0, correlation_rank=2,
                          hierarchy_roots=2)  # fmt: skip
    a, b = draw(cfg, 500, seed=3), draw(cfg, 500, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.h, b.h)
    assert not torch.equal(a.x, draw(cfg, 500, seed=4).x)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (dict(n_features=3, parents=(1, 2, 0)), "not a forest"),
        (dict(n_features=3, parents=(0, -1, -1)), "its own parent"),
        (dict(n_features=3, parents=(-1, 7, -1)), "parents[1] = 7"),
        (dict(n_features=2, densities=(0.5, 1.5)), "densities[1] = 1.5 is not a firing rate"),
        (dict(n_features=2, densities=(0.0, 0.5)), "densities[0] = 0.0"),
        (dict(n_features=10, mean_active=9.0), "outside (0, 1]"),
        (dict(n_features=9, n_hidden=3, directions="orthogonal"), "n_features <= n_hidden"),
        (dict(n_features=5, hierarchy_roots=2, hierarchy_children=3), "needs more than"),
        (dict(correlation_strength=1.0), "below 1"),
    ],
)
def test_bad_synthetic_config_is_one_sentence(values, words):
    with pytest.raises(ConfigError) as err:
        SyntheticConfig(**({"mean_active": 1.0} | values))
    assert words in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------------
# BatchTopK and Matryoshka


def make(arch: str, prefixes=()) -> SparseAutoencoder:
    gen = torch.Generator().manual_seed(0)
    mask = torch.arange(8)[None, :] < torch.tensor([8, 8, 6])[:, None]
    return SparseAutoencoder(
        arch,
        W_enc=torch.randn(3, 8, 4, generator=gen) * mask[..., None],
        b_enc=torch.randn(3, 8, generator=gen) * 0.1,
        W_dec=torch.randn(3, 8, 4, generator=gen) * mask[..., None],
        b_dec=torch.randn(3, 4, generator=gen) * 0.1,
        coefficient=torch.zeros(3),
        k=torch.tensor([2, 1, 3]),
        mask=mask,
        prefixes=prefixes,
    )


def reference_loss(sae, p, h):
    """From the papers, with autograd: the batch's k x batch largest pre-activations (per
    instance) kept; Matryoshka sums every prefix's squared error."""
    pre = torch.baddbmm(p["b_enc"][:, None], h, p["W_enc"].transpose(1, 2))
    pre = pre.masked_fill(~sae.mask[:, None, :], -1e30)
    f = torch.zeros_like(pre)
    for i in range(3):
        kth = pre[i].flatten().topk(int(sae.k[i]) * h.shape[1]).values[-1]
        f[i] = torch.where(pre[i] >= kth, pre[i].relu(), 0.0)
    prefixes = sae.prefixes if sae.architecture == "matryoshka" else (8,)
    return sum(
        ((torch.baddbmm(p["b_dec"][:, None], f[..., :m], p["W_dec"][:, :m]) - h) ** 2)
        .sum(-1).mean(-1)
        for m in prefixes
    ), f  # fmt: skip


@pytest.mark.parametrize(("arch", "prefixes"), [("batchtopk", ()), ("matryoshka", (2, 5))])
def test_batch_topk_and_matryoshka_gradients_match_autograd(arch, prefixes):
    sae = make(arch, prefixes)
    h = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(1))
    grads = {k: torch.zeros_like(v) for k, v in sae.params().items()}
    loss, f = sae.loss_and_grads(h, grads)
    params = {k: v.clone().requires_grad_(True) for k, v in sae.params().items()}
    ref, f_ref = reference_loss(sae, params, h)
    ref.sum().backward()
    assert torch.equal(f != 0, f_ref != 0)
    assert (f != 0).sum(dim=(1, 2)).tolist() == [32, 16, 48]  # k x batch per instance
    assert torch.allclose(loss, ref.detach(), rtol=1e-5)
    for name, p in params.items():
        assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-5), name
    # at inference the running threshold replaces the batch: about k active per sample
    sae.training = False
    assert sae.threshold is not None and (sae.threshold > 0).all()
    per_sample = (sae.encode(h) != 0).sum(-1).float().mean(-1)
    assert torch.allclose(per_sample, sae.k.float(), atol=1.0)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (dict(architecture="matryoshka", n_latents=(16,), matryoshka_prefixes=(8, 4)),
         "strictly increasing, got [8, 4]"),
        (dict(architecture="matryoshka", n_latents=(16,), matryoshka_prefixes=(4, 16)),
         "below the dictionary size 16"),
        (dict(architecture="batchtopk", n_latents=(4,), k=(5,)),
         "k=5 is more than the dictionary size n_latents=4"),
        (dict(architecture="relu_l1", matryoshka_prefixes=(2,)), None),
    ],
)
def test_bad_k_and_prefixes_are_one_sentence(values, words, capsys):
    if words is None:  # prefixes of another architecture are refused where the flag is spelled
        assert main(["sae", "x", "--out", "y", "--matryoshka-prefixes", "2"]) == 2
        assert "--matryoshka-prefixes applies to matryoshka SAEs only" in capsys.readouterr().err
        return
    with pytest.raises(ConfigError) as err:
        SAEConfig(**values)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_default_prefixes_are_nested_fractions_of_the_width():
    assert SAEConfig(architecture="matryoshka").prefixes(64) == (8, 16, 32, 64)


# --------------------------------------------------------------------------------------------------
# scores against the ground truth


def hand_made(decoder, encoder_bias=-0.05):
    n_lat = decoder.shape[0]
    return SparseAutoencoder(
        "relu_l1", W_enc=decoder[None].clone(), b_enc=torch.full((1, n_lat), encoder_bias),
        W_dec=decoder[None].clone(), b_dec=torch.zeros(1, decoder.shape[1]),
        coefficient=torch.zeros(1), k=torch.zeros(1, dtype=torch.long),
        mask=torch.ones(1, n_lat, dtype=torch.bool),
    )  # fmt: skip


def score(model, sae, n=4000):
    b = model.sample(n, torch.Generator().manual_seed(5))
    s = GroundTruthScores(sae.W_dec, sae.mask, model.directions, model.parent)
    f = sae.encode(b.h[None])
    s.update(b.x, b.h, f, sae.decode(f), sae.b_dec)
    return s.result()


def test_the_true_dictionary_scores_perfectly():
    model = SyntheticModel(SyntheticConfig(n_features=8, n_hidden=8, directions="orthogonal",
                                           density_profile="uniform", mean_active=2.0,
                                           magnitude="uniform"))  # fmt: skip
    perm = torch.tensor([3, 1, 7, 0, 2, 6, 4, 5])  # latents in another order than the features
    # a tiny negative bias keeps round-off (1e-8) from firing the other latents
    r = score(model, hand_made(model.directions[perm], encoder_bias=-1e-5))
    for key in ("mcc", "f1", "precision", "recall", "uniqueness", "explained_variance",
                "shrinkage"):  # fmt: skip
        assert r[key].item() == pytest.approx(1.0, abs=1e-3), key
    assert r["dead"].item() == 0 and r["l0"].item() == pytest.approx(2.0, abs=0.1)


def test_duplicated_and_wrong_latents_lose_uniqueness_mcc_and_f1():
    model = SyntheticModel(SyntheticConfig(n_features=8, n_hidden=8, directions="orthogonal",
                                           density_profile="uniform", mean_active=2.0))  # fmt: skip
    D = model.directions
    dup = torch.cat([D[:6], D[:2]])  # latents 6, 7 duplicate features 0, 1
    r = score(model, hand_made(dup))
    assert r["uniqueness"].item() == pytest.approx(6 / 8)
    assert r["mcc"].item() == pytest.approx(6 / 8, abs=1e-5)  # 6, 7 match orthogonal features
    # six perfect latents, two that fire with features 0 and 1 while matched to features 6 and
    # 7 (independent, rate 1/4): F1 1/4 by chance
    assert r["f1"].item() == pytest.approx((6 + 2 * 0.25) / 8, abs=0.03)
    assert uniqueness(torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.bool)) == 1.0


def test_absorption_counts_a_silent_parent_and_a_child_latent_with_its_direction():
    cfg = SyntheticConfig(n_features=4, n_hidden=4, directions="orthogonal",
                          parents=(-1, 0, -1, -1), densities=(0.5, 0.5, 0.3, 0.3),
                          magnitude="constant", scale_children=False)  # fmt: skip
    model = SyntheticModel(cfg)
    D = model.directions
    absorbing = torch.stack([D[0], (D[1] + D[0]) / math.sqrt(2), D[2], D[3]])
    sae = hand_made(absorbing)
    # the parent latent's encoder is silenced whenever the child is present
    sae.W_enc[0, 0] = D[0] - 2 * D[1]
    r = score(model, sae)
    assert r["absorption"].item() == pytest.approx(1.0)
    assert r["parent_missed"].item() == pytest.approx(1.0)
    clean = score(model, hand_made(D.clone()))
    assert clean["absorption"].item() == 0.0 and clean["parent_missed"].item() == 0.0
    # hedging: the parent's latent leaning towards its child
    leaning = torch.stack([(D[0] + D[1]) / math.sqrt(2), D[1], D[2], D[3]])
    assert score(model, hand_made(leaning))["hedging"].item() == pytest.approx(0.5, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# training: matched L0 and independence


TINY = SyntheticConfig(n_features=24, n_hidden=8, density_profile="zipf", mean_active=2.0,
                       hierarchy_roots=2, hierarchy_children=2, correlation_rank=2)  # fmt: skip


def tiny_sae(**kw):
    base = dict(n_latents=(16,), steps=150, batch_size=128, lr=3e-3, eval_samples=2000,
                resample_dead_every=30, log_every=50, device="cpu")  # fmt: skip
    return SAEConfig(**(base | kw))


def test_each_instance_depends_only_on_its_own_config_with_resampling_on():
    # 4 features and 32 latents of which one fires per sample: most latents die and are
    # resampled, each instance from its own generator and its own batch
    model = SyntheticModel(SyntheticConfig(n_features=4, n_hidden=8, directions="orthogonal",
                                           densities=(0.3,) * 4))  # fmt: skip
    wide = dict(architecture="topk", n_latents=(32,), resample_dead_every=20)
    alone = train_synthetic(model, tiny_sae(k=(1,), seeds=1, **wide), progress=False)
    crowd = train_synthetic(model, tiny_sae(k=(2, 1), seeds=2, **wide), progress=False)
    assert alone.scores["resampled"].sum() > 0, "the test needs resampling to happen"
    j = [(i.k, i.seed) for i in crowd.instances].index((1, 0))
    for name, value in alone.params.items():
        assert torch.equal(value[0], crowd.params[name][j]), name
    assert not torch.allclose(crowd.params["W_dec"][j], crowd.params["W_dec"][j + 1])


def test_the_l0_controller_brings_relu_l1_to_its_target():
    model = SyntheticModel(TINY)
    # uncontrolled, these coefficients end at L0 3.9 and 8.2
    r = train_synthetic(model, tiny_sae(l1_coefficient=(0.3, 0.03), seeds=1, steps=1000),
                        target_l0=[2.0, 6.0], progress=False)  # fmt: skip
    assert r.scores["l0"][0] == pytest.approx(2.0, rel=0.2)
    assert r.scores["l0"][1] == pytest.approx(6.0, rel=0.2)
    with pytest.raises(ConfigError, match="target_l0=20 must be above 0 and at most"):
        train_synthetic(model, tiny_sae(), target_l0=20.0)



# --------------------------------------------------------------------------------------------------
# the leaderboard


@pytest.fixture
def tiny_bench(monkeypatch):
    size = bench.BenchSize(TINY, 16, (2, 4), 80, 128, 3e-3, 2000)
    monkeypatch.setitem(bench.SIZES, "quick", size)
    return size


def test_leaderboard_scores_do_not_depend_on_how_many_train_at_once(tiny_bench):
    archs = ("topk", "relu_l1", "matryoshka")
    one = bench.run_bench("quick", architectures=archs, device="cpu", progress=False, workers=1)
    two = bench.run_bench("quick", architectures=archs, device="cpu", progress=False, workers=2)
    assert one.rows == two.rows and len(one.rows) == 6
    for arch in archs:  # the weights kept for export too
        assert all(torch.equal(v, two.params[arch][k]) for k, v in one.params[arch].items())
    assert two.info["workers"] == 2
    with pytest.raises(ConfigError, match="workers must be"):
        bench.run_bench("quick", architectures=archs, workers=0)


def test_a_failing_architecture_stops_the_others(tiny_bench, monkeypatch):
    import threading

    from superposition.sae import synthetic_train

    real = synthetic_train.train_synthetic
    started = threading.Event()

    def fake(model, config, **kwargs):
        if config.architecture == "topk":
            started.wait(10)  # fail while the other architecture trains
            raise RuntimeError("topk broke")
        started.set()
        return real(model, dataclasses.replace(config, steps=10**6), **kwargs)

    monkeypatch.setattr(synthetic_train, "train_synthetic", fake)
    with pytest.raises(RuntimeError, match="topk broke"):
        bench.run_bench("quick", architectures=("relu_l1", "topk"), device="cpu",
                        progress=False, workers=2)  # fmt: skip


@pytest.mark.slow
def test_leaderboard_end_to_end(tiny_bench, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["sae", "--bench", "quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| matryoshka |" in printed and "published F1 / MCC" in printed
    raw = json.loads((out / "results.json").read_text())
    assert {r["architecture"] for r in raw["rows"]} == {
        "relu_l1", "topk", "jumprelu", "batchtopk", "matryoshka"}  # fmt: skip
    assert len(raw["rows"]) == 10
    k_rows = [r for r in raw["rows"] if r["architecture"] == "topk"]
    assert [r["k"] for r in k_rows] == [2, 4]
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 3 and all(isinstance(c["holds"], bool) for c in claims)
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "absorption.png", "absorption.svg", "scores_against_l0.png", "scores_against_l0.svg"]
    loaded = bench.load_bench(out)
    assert loaded.rows == raw["rows"] and loaded.leaderboard_target == 4
    # a second run needs --force; a run directory with --bench is refused
    assert main(["sae", "--bench", "quick", "--out", str(out), "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["sae", "somewhere", "--bench", "quick", "--out", str(tmp_path / "x")]) == 2
    assert "leave out somewhere" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# SAELens export


def saelens_forward(folder, h):
    """SAELens's inference forward pass, written from its documented format: pre = (h - b_dec if
    apply_b_dec_to_input) @ W_enc + b_enc; standard = ReLU, topk = ReLU of the k largest,
    jumprelu = ReLU(pre) * (pre > threshold); out = f @ W_dec + b_dec."""
    from safetensors.torch import load_file

    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (cfg["d_in"], cfg["d_sae"])
    assert w["W_dec"].shape == (cfg["d_sae"], cfg["d_in"])
    x = h - w["b_dec"] if cfg["apply_b_dec_to_input"] else h
    pre = x @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "standard":
        f = pre.relu()
    elif cfg["architecture"] == "topk":
        values, index = pre.topk(cfg["k"], dim=-1)
        f = torch.zeros_like(pre).scatter(-1, index, values.relu())
    else:
        f = pre.relu() * (pre > w["threshold"])
    return f, f @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("arch", ["relu_l1", "topk", "jumprelu", "batchtopk", "matryoshka"])
def test_saelens_export_computes_what_our_sae_computes(arch, tmp_path):
    from superposition.sae.export import export_saelens

    model = SyntheticModel(TINY)
    extra = {"k": (3,)} if arch in ("topk", "batchtopk", "matryoshka") else {}
    run = train_synthetic(model, tiny_sae(architecture=arch, seeds=2, steps=40, **extra),
                          progress=False)  # fmt: skip
    folder = export_saelens(arch, run.params, 1, 16, tmp_path / "sae", k=run.instances[1].k)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == {"relu_l1": "standard", "topk": "topk"}.get(arch, "jumprelu")
    sae = SparseAutoencoder(
        arch, **{k: v[1:2] for k, v in run.params.items() if k != "threshold"},
        coefficient=torch.zeros(1), k=torch.tensor([3]), mask=torch.ones(1, 16, dtype=torch.bool),
        threshold=run.params["threshold"][1:2] if "threshold" in run.params else None,
    )  # fmt: skip
    sae.training = False
    h = model.sample(300, torch.Generator().manual_seed(9)).h
    f, out = saelens_forward(folder, h)
    assert torch.allclose(f, sae.encode(h[None])[0], atol=1e-5)
    assert torch.allclose(out, sae.forward(h[None])[0], atol=1e-5)
    with pytest.raises(ConfigError, match="already exists"):
        export_saelens(arch, run.params, 1, 16, folder)


@pytest.mark.slow
def test_reproduce_sae_bench_writes_and_redraws_its_folder(tiny_bench, tmp_path, capsys):
    from superposition import reproduce
    from superposition.experiments import GROUPS

    assert GROUPS["benchmarks"] == ("sae-bench",)
    assert main(["reproduce", "sae-bench", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    folder = tmp_path / "sae-bench"
    meta = json.loads((folder / "experiment.json").read_text())
    assert meta["name"] == "sae-bench" and meta["quick"] is True and meta["runs"] == []
    (folder / "figures" / "absorption.png").unlink()
    claims = reproduce.redraw(folder)
    assert len(claims) == 3 and (folder / "figures" / "absorption.png").is_file()
    assert [c.to_dict() for c in claims] == json.loads((folder / "claims.json").read_text())


def test_reproduce_sae_bench_size_picks_the_leaderboard_size(tiny_bench, monkeypatch, tmp_path):
    monkeypatch.setitem(bench.SIZES, "full", tiny_bench)  # the 16k size, shrunk to seconds
    args = ["reproduce", "sae-bench", "--size", "full", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "sae-bench" / "experiment.json").read_text())
    assert meta["size"] == "full" and meta["quick"] is False
    assert bench.load_bench(tmp_path / "sae-bench").size == "full"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sae-bench", "--size", "huge"], "size must be one of quick, standard, full for "
         "sae-bench; got 'huge'"),
        (["sae-bench", "--quick", "--size", "full"], "give --quick or --size, not both"),
        (["phase-change", "--size", "full"], "experiment 'phase-change' has no sizes; --size "
         "applies to sae-bench"),
        (["--all", "--size", "full"], "has no sizes"),
    ],
)  # fmt: skip
def test_reproduce_bad_size_exits_2_and_writes_nothing(tmp_path, capsys, args, words):
    out = tmp_path / "out"
    code = main(["reproduce", *args, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("parents = [1, 0]\nn_features = 2\nmean_active = 1.0\nhierarchy_roots = 0\n",
         "not a forest"),
        ("n_features = 3\nhierarchy_roots = 0\ndensities = [0.5, 2.0, 0.1]\n",
         "densities[1] = 2.0 is not a firing rate in (0, 1]"),
        ("n_featurez = 3\n", "unknown key 'n_featurez'"),
    ],
)
def test_bench_bad_synthetic_file_exits_2_and_writes_nothing(tmp_path, capsys, toml, words):
    file = tmp_path / "model.toml"
    file.write_text(toml)
    out = tmp_path / "lb"
    code = main(["sae", "--bench", "quick", "--synthetic", str(file), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# the step over the active latents only


@pytest.mark.parametrize("arch", ["relu_l1", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_the_sparse_step_computes_what_the_dense_step_computes(arch, monkeypatch):
    from superposition.sae import sparse

    gen = torch.Generator().manual_seed(0)
    n_inst, n_lat, n_hidden, n_batch = 2, 48, 12, 40
    W_dec = torch.randn(n_inst, n_lat, n_hidden, generator=gen)
    sae = SparseAutoencoder(
        arch, W_enc=torch.randn(n_inst, n_lat, n_hidden, generator=gen) / 4,
        b_enc=torch.full((n_inst, n_lat), -0.6), W_dec=W_dec / W_dec.norm(dim=-1, keepdim=True),
        b_dec=torch.randn(n_inst, n_hidden, generator=gen), coefficient=torch.tensor([0.1, 0.3]),
        k=torch.tensor([2, 5]), mask=torch.arange(n_lat)[None] < torch.tensor([[40], [48]]),
        log_threshold=torch.full((n_inst, n_lat), math.log(0.8)) if arch == "jumprelu" else None,
        bandwidth=0.3, prefixes=(6, 20) if arch == "matryoshka" else (),
    )  # fmt: skip
    h = torch.randn(n_inst, n_batch, n_hidden, generator=gen)
    out = {}
    for name, limit in (("sparse", 1.0), ("dense", -1.0)):
        monkeypatch.setattr(sparse, "MAX_DENSITY", limit)
        grads = {k: torch.full_like(v, 7.0) for k, v in sae.params().items()}  # stale values
        loss, f = sae.loss_and_grads(h, grads)
        out[name] = (loss, grads, f, sae.active_count)
    (ls, gs, fs, count), (ld, gd, fd, none) = out["sparse"], out["dense"]
    assert torch.equal(fs, fd) and 0 < (fs != 0).float().mean() < 0.3
    assert none is None and torch.equal(count, (fs != 0).sum(1))
    assert torch.allclose(ls, ld, rtol=1e-5)
    for key in gd:
        assert torch.allclose(gs[key], gd[key], rtol=1e-4, atol=1e-6), key
    assert not gs["W_dec"][0, 40:].any()  # padded latents get no gradient
    if arch == "jumprelu":  # some pairs sit near the threshold, and move it
        assert gd["log_threshold"].abs().max() > 0


def test_the_sparse_step_is_chosen_only_for_sparse_float32_cpu_activations():
    from superposition.sae import sparse

    f = torch.zeros(2, 100, 50)
    f[:, :, :2] = 1.0  # 4% active
    assert sparse.usable(f)
    assert not sparse.usable(torch.ones(2, 100, 50))
    assert not sparse.usable(f.double())


def test_batch_topk_keeps_exactly_the_largest_k_times_batch_pre_activations():
    gen = torch.Generator().manual_seed(3)
    n_batch, n_lat, n_hidden = 96, 64, 8
    sae = SparseAutoencoder(
        "batchtopk", W_enc=torch.randn(2, n_lat, n_hidden, generator=gen),
        b_enc=torch.zeros(2, n_lat), W_dec=torch.randn(2, n_lat, n_hidden, generator=gen),
        b_dec=torch.zeros(2, n_hidden), coefficient=torch.zeros(2), k=torch.tensor([3, 7]),
        mask=torch.ones(2, n_lat, dtype=torch.bool),
    )  # fmt: skip
    pre = sae.preactivations(torch.randn(2, n_batch, n_hidden, generator=gen))
    f = sae.activate(pre)
    for i, k in enumerate((3, 7)):
        flat = pre[i].flatten()
        top = torch.zeros_like(flat).scatter_(0, flat.topk(k * n_batch).indices, 1.0)
        expected = torch.where(top.bool(), flat.relu(), 0.0).view(n_batch, n_lat)
        assert torch.equal(f[i], expected)


def test_the_speed_benchmarks_plain_sampler_draws_the_same_distribution():
    # benchmarks/bench_sae.py --scale times ours against a plain trainer on a dense sampler of
    # the same distribution: the comparison is fair only if the two samplers agree
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "bench_sae.py"
    spec = importlib.util.spec_from_file_location("bench_sae", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the quick size's recipe with frequent children, so that siblings would often fire together
    # without the one-child rule
    config = dataclasses.replace(bench.SIZES["quick"].synthetic, n_features=168, mean_active=30.0,
                                 zipf_exponent=0.2)  # fmt: skip
    model = SyntheticModel(config)
    plain, magnitudes = module.plain_sampler(model), module.plain_magnitudes(model)
    n = 40_000
    ours = model.sample(n, torch.Generator().manual_seed(0)).x
    theirs = magnitudes(n, torch.Generator().manual_seed(1))
    rate_ours, rate_theirs = (ours > 0).float().mean(0), (theirs > 0).float().mean(0)
    # firing rates (roots, children and grandchildren) within sampling noise: 5 standard errors
    noise = 5 * (rate_ours * (1 - rate_ours) / n).sqrt() + 5 / n
    assert ((rate_ours - rate_theirs).abs() < noise).float().mean() > 0.99
    assert (theirs > 0).sum(1).float().mean() == pytest.approx(
        float((ours > 0).sum(1).float().mean()), rel=0.02)  # fmt: skip
    mean_ours, mean_theirs = ours.sum() / (ours > 0).sum(), theirs.sum() / (theirs > 0).sum()
    assert mean_theirs == pytest.approx(float(mean_ours), rel=0.02)
    # h = x D
    h = plain(8, torch.Generator().manual_seed(3))
    x = magnitudes(8, torch.Generator().manual_seed(3))
    assert torch.allclose(h, x @ model.directions)
