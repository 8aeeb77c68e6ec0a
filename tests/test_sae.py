"""Dictionary learning on toy models: the SAE maths, scores on hand-made decoders, the trainer,
the SAE directory and the command line."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fake_run, tiny_config

from superposition.cli import main
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError, RunDirError
from superposition.models import ToyModel
from superposition.sae import SAEConfig, layout
from superposition.sae import metrics as M
from superposition.sae.model import SparseAutoencoder
from superposition.sae.store import is_sae_dir, load_sae, save_sae
from superposition.sae.train import (
    AdamFlat,
    _adam_config,
    choose_path,
    resample_dead,
    setup,
    stream_keys,
    train_sae,
)
from superposition.store import save_run

# --------------------------------------------------------------------------------------------------
# helpers


def make_sae(
    arch: str,
    n_inst: int = 3,
    n_lat: int = 6,
    n_hidden: int = 4,
    seed: int = 0,
    sizes: list[int] | None = None,
    k: list[int] | None = None,
) -> SparseAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    sizes = sizes or [n_lat] * n_inst
    mask = torch.arange(n_lat)[None, :] < torch.tensor(sizes)[:, None]
    W_dec = torch.randn(n_inst, n_lat, n_hidden, generator=gen) * mask[..., None]
    return SparseAutoencoder(
        arch,
        W_enc=torch.randn(n_inst, n_lat, n_hidden, generator=gen) * mask[..., None],
        b_enc=torch.randn(n_inst, n_lat, generator=gen) * 0.1,
        W_dec=W_dec,
        b_dec=torch.randn(n_inst, n_hidden, generator=gen) * 0.1,
        coefficient=torch.linspace(0.1, 0.5, n_inst),
        k=torch.tensor(k or [2] * n_inst),
        mask=mask,
        log_threshold=(torch.rand(n_inst, n_lat, generator=gen) * 0.5 + 0.1).log()
        if arch == "jumprelu"
        else None,
        bandwidth=0.5,
    )


def grads_of(sae: SparseAutoencoder, h: torch.Tensor) -> tuple[torch.Tensor, dict]:
    grads = {k: torch.zeros_like(v) for k, v in sae.params().items()}
    loss, _ = sae.loss_and_grads(h, grads)
    assert loss is not None
    return loss, grads


class _JumpReLU(torch.autograd.Function):
    """The paper's pseudo-code (Rajamanoharan et al. 2024): JumpReLU with an STE for theta."""

    @staticmethod
    def forward(ctx, x, theta, eps):  # type: ignore[override]
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return x * (x > theta)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, theta = ctx.saved_tensors
        k = ((x - theta).abs() < ctx.eps / 2).to(x.dtype)
        return g * (x > theta), (-(theta / ctx.eps) * k * g), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, eps):  # type: ignore[override]
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return (x > theta).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, theta = ctx.saved_tensors
        k = ((x - theta).abs() < ctx.eps / 2).to(x.dtype)
        return torch.zeros_like(x), -(1.0 / ctx.eps) * k * g, None


def autograd_loss(sae: SparseAutoencoder, params: dict, h: torch.Tensor) -> torch.Tensor:
    pre = torch.baddbmm(params["b_enc"][:, None], h, params["W_enc"].transpose(1, 2))
    pre = pre.masked_fill(~sae.mask[:, None, :], -1e30)
    if sae.architecture == "relu_l1":
        f = torch.relu(pre)
        penalty = f.sum(-1).mean(-1)
    elif sae.architecture == "topk":
        values, index = pre.topk(sae.k_max, dim=-1)
        values = values.relu() * (torch.arange(sae.k_max) < sae.k[:, None, None])
        f = torch.zeros_like(pre).scatter(-1, index, values)
        penalty = torch.zeros(pre.shape[0])
    else:
        theta = params["log_threshold"].exp()[:, None, :].expand_as(pre)
        f = _JumpReLU.apply(pre, theta, sae.bandwidth)
        penalty = _Step.apply(pre, theta, sae.bandwidth).sum(-1).mean(-1)
    h_hat = torch.baddbmm(params["b_dec"][:, None], f, params["W_dec"])
    return ((h_hat - h) ** 2).sum(-1).mean(-1) + sae.coefficient * penalty


# --------------------------------------------------------------------------------------------------
# the model


@pytest.mark.parametrize("arch", ["relu_l1", "topk", "jumprelu"])
def test_closed_form_gradients_match_autograd(arch):
    sae = make_sae(arch, sizes=[6, 4, 5], k=[2, 1, 3])
    h = torch.randn(3, 64, 4, generator=torch.Generator().manual_seed(1))
    loss, grads = grads_of(sae, h)
    params = {k: v.clone().requires_grad_(True) for k, v in sae.params().items()}
    ref = autograd_loss(sae, params, h)
    ref.sum().backward()
    assert torch.allclose(loss, ref.detach(), rtol=1e-5, atol=1e-6)
    for name, p in params.items():
        assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-5), name
    if arch == "jumprelu":
        # the straight-through estimator really reaches the threshold
        assert grads["log_threshold"].abs().sum() > 0


def test_topk_has_exactly_k_active_latents():
    sae = make_sae("topk", n_inst=3, n_lat=8, k=[1, 3, 5])
    sae.b_enc.fill_(50.0)  # every pre-activation positive: the ReLU after TopK removes nothing
    h = torch.randn(3, 100, 4, generator=torch.Generator().manual_seed(2))
    f = sae.encode(h)
    active = (f != 0).sum(-1)
    assert active.tolist() == [[1] * 100, [3] * 100, [5] * 100]
    # and the kept latents are the largest pre-activations, their values unchanged
    pre = sae.preactivations(h)
    kept = pre[1] >= pre[1].topk(3, dim=-1).values[:, -1:]
    assert torch.equal(f[1] != 0, kept) and torch.equal(f[1][kept], pre[1][kept])


def test_masked_latents_never_fire_and_get_no_gradient():
    sae = make_sae("relu_l1", sizes=[6, 2, 4])
    sae.b_enc.fill_(10.0)
    h = torch.randn(3, 50, 4, generator=torch.Generator().manual_seed(3))
    f = sae.encode(h)
    assert (f[1, :, 2:] == 0).all() and (f[2, :, 4:] == 0).all() and (f[1, :, :2] > 0).all()
    _, grads = grads_of(sae, h)
    assert (grads["W_dec"][1, 2:] == 0).all() and (grads["b_enc"][2, 4:] == 0).all()


# --------------------------------------------------------------------------------------------------
# scores on hand-made decoders


def test_mmcs_is_one_for_the_true_directions_and_cos45_when_rotated():
    angles = torch.tensor([0.3, 1.5, 2.9, 4.0, 5.2])
    true = torch.stack([angles.cos(), angles.sin()], -1)[None] * 1.2  # [1, 5, 2], norms 1.2
    counted = M.represented(true)
    assert counted.all()
    exact = M.max_cosine(true, true)
    assert torch.allclose(exact, torch.ones(1, 5), atol=1e-6)
    assert torch.allclose(M.mmcs(exact, counted), torch.tensor([1.0]), atol=1e-6)
    turn = torch.tensor([[math.cos(math.pi / 4), math.sin(math.pi / 4)],
                         [-math.sin(math.pi / 4), math.cos(math.pi / 4)]])  # fmt: skip
    # two orthogonal true features, the decoder turned by 45 degrees: each best cosine is cos 45
    eye = torch.eye(2)[None]
    rotated = M.max_cosine(eye @ turn, eye)
    assert torch.allclose(rotated, torch.full((1, 2), math.cos(math.pi / 4)), atol=1e-6)
    assert torch.allclose(M.mmcs(rotated, torch.ones(1, 2, dtype=torch.bool)),
                          torch.tensor([math.sqrt(0.5)]), atol=1e-6)  # fmt: skip
    assert M.recovered_fraction(rotated, torch.ones(1, 2, dtype=torch.bool), 0.7).item() == 1.0
    assert M.recovered_fraction(rotated, torch.ones(1, 2, dtype=torch.bool), 0.72).item() == 0.0


def test_mmcs_counts_represented_features_and_unmasked_latents_only():
    true = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.1, 0.1]]])  # feature 2 is not represented
    decoder = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])
    counted = M.represented(true)
    assert counted.tolist() == [[True, True, False]]
    mask = torch.tensor([[True, False, True]])  # latent 1 is padding
    cos = M.max_cosine(decoder, true, mask)
    # feature 1 (+y): the masked latent would match it, the one along -y has cosine -1 (signed: a
    # latent with f >= 0 cannot write +y along -y), so the best is latent 0, at 90 degrees
    assert torch.allclose(cos[0, :2], torch.tensor([1.0, 0.0]), atol=1e-7)
    assert torch.allclose(M.mmcs(cos, counted), torch.tensor([0.5]))


def test_fvu_is_zero_for_a_perfect_reconstruction_and_one_for_the_mean():
    h = torch.randn(2, 100, 3, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(M.fraction_of_variance_unexplained(h, h), torch.zeros(2))
    mean = h.mean(1, keepdim=True).expand_as(h)
    assert torch.allclose(M.fraction_of_variance_unexplained(h, mean), torch.ones(2))


@pytest.mark.parametrize("kind", ["linear", "relu", "privileged", "abs"])
def test_spliced_loss_equals_toy_loss_for_an_exact_reconstruction(kind):
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(2, 5, 3, generator=gen)
    toy = ToyModel(kind, W, torch.randn(2, 5, generator=gen),
                   torch.randn(2, 5, 3, generator=gen) if kind == "abs" else None)  # fmt: skip
    x = torch.rand(2, 64, 5, generator=gen) * 2 - 1
    importance = torch.rand(2, 5, generator=gen)
    exact = M.spliced_loss(toy, x, toy.hidden(x), importance)
    assert torch.allclose(exact, toy.loss(x, importance), rtol=1e-6)
    worse = M.spliced_loss(toy, x, toy.hidden(x) + 0.5, importance)
    assert not torch.allclose(worse, exact)


# --------------------------------------------------------------------------------------------------
# config


def test_config_round_trip_and_layout():
    cfg = SAEConfig(n_latents=[5, 10], l1_coefficient=[0.1, 0.3], seeds=2, instance=1)
    assert SAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    plan = layout(cfg, [1], n_features=5)
    assert len(plan) == 8
    assert [(p.n_latents, p.coefficient, p.seed) for p in plan[:3]] == [
        (5, 0.1, 0), (5, 0.1, 1), (5, 0.3, 0)]  # fmt: skip
    topk = layout(SAEConfig(architecture="topk", k=(1, 2), seeds=1), [0, 3], n_features=5)
    assert [(p.toy_instance, p.n_latents, p.coefficient, p.k) for p in topk] == [
        (0, 5, 0.0, 1), (0, 5, 0.0, 2), (3, 5, 0.0, 1), (3, 5, 0.0, 2)]  # fmt: skip


@pytest.mark.parametrize(
    "values, words",
    [
        ({"n_latents": (0,)}, ["n_latents", "got 0"]),
        ({"l1_coefficient": (-0.1,)}, ["l1_coefficient", "-0.1"]),
        ({"architecture": "sparse"}, ["architecture", "'sparse'"]),
        ({"k": (1, 2)}, ["k", "topk"]),
        ({"architecture": "topk", "k": (6,), "n_latents": (5,)}, ["k=6", "n_latents=5"]),
        ({"bandwidth": 0.0}, ["bandwidth"]),
        ({"seeds": 0}, ["seeds", "got 0"]),
        ({"recovery_threshold": 1.5}, ["recovery_threshold", "1.5"]),
    ],
)
def test_bad_config_is_refused_with_one_sentence(values, words):
    with pytest.raises(ConfigError) as info:
        SAEConfig(**values)
    for w in words:
        assert w in str(info.value)


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'l2'"):
        SAEConfig.from_dict({"l2": 1.0})


# --------------------------------------------------------------------------------------------------
# the trainer


def small(**kw: object) -> SAEConfig:
    options: dict[str, object] = {"steps": 60, "batch_size": 128, "seeds": 2, "eval_samples": 500,
                                  "device": "cpu", "log_every": 20}  # fmt: skip
    options.update(kw)
    return SAEConfig(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def toy_run():
    return fake_run(tiny_config())  # 4 instances (2 groups x 2) of 5 features in 2 dims


def test_training_keeps_relu_l1_decoder_rows_at_unit_norm(toy_run):
    r = train_sae(toy_run, small(n_latents=(3, 7), l1_coefficient=(0.1, 1.0)))
    assert r.n_instances == 2 * 2 * 2 * 2  # 2 best-of-N toy instances x sizes x coefs x seeds
    norms = r.W_dec.norm(dim=-1)
    assert torch.allclose(norms[r.mask], torch.ones(int(r.mask.sum())), atol=1e-5)
    assert (r.W_dec[~r.mask] == 0).all()
    assert r.toy_instances == toy_run.best()
    for key in ("mmcs", "recovered_fraction", "l0", "fvu", "spliced_loss"):
        assert r.scores[key].shape == (r.n_instances,)
    assert r.scores["max_cosine"].shape == (r.n_instances, 5)
    assert r.history_loss.shape == (len(r.history_steps), r.n_instances)


def test_training_is_deterministic_and_seeds_differ(toy_run):
    cfg = small(instance=2, seeds=2)
    a, b = train_sae(toy_run, cfg), train_sae(toy_run, cfg)
    assert a.toy_instances == [2]
    assert torch.equal(a.W_dec, b.W_dec)
    assert not torch.allclose(a.W_dec[0], a.W_dec[1])


def test_instance_out_of_range_is_refused(toy_run):
    with pytest.raises(ConfigError, match="instance must be below the run's 4 instance"):
        train_sae(toy_run, small(instance=4))


def test_jumprelu_l0_responds_to_the_coefficient(toy_run):
    r = train_sae(toy_run, small(architecture="jumprelu", l1_coefficient=(0.0, 3.0), seeds=1,
                                 instance=3, steps=300, n_latents=(8,)))  # fmt: skip
    low, high = r.scores["l0"].tolist()
    assert high < low
    # the thresholds moved away from their initial value: they are trained
    assert not torch.allclose(r.params["log_threshold"], torch.full_like(
        r.params["log_threshold"], math.log(0.01)))  # fmt: skip


def test_topk_training_has_at_most_k_active(toy_run):
    r = train_sae(toy_run, small(architecture="topk", k=(1, 2), n_latents=(4,), seeds=1))
    assert [i.k for i in r.instances] == [1, 2, 1, 2]
    assert (r.scores["l0"] <= torch.tensor([1.0, 2.0, 1.0, 2.0]) + 1e-6).all()


def test_resampling_revives_dead_latents(toy_run):
    cfg = small(n_latents=(6,), seeds=1, instance=0)
    s = setup(toy_run, cfg, torch.device("cpu"))
    s.sae.b_enc[:, 3:] = -100.0  # latents 3, 4, 5 can never fire
    adam = AdamFlat(s.flat, _adam_config(cfg))
    adam.m.fill_(1.0)
    gen = torch.Generator().manual_seed(0)
    h = s.toy.hidden(s.dist.sample(512, gen))
    dead = (s.sae.encode(h) == 0).all(dim=1)
    assert dead[0, 3:].all()
    n = resample_dead(s.sae, adam, s.flat, h, dead, [torch.Generator().manual_seed(1)])
    assert n.tolist() == [int(dead.sum())]
    fired = (s.sae.encode(h) != 0).any(dim=1)
    assert fired[0, 3:].all(), "resampled latents fire again"
    assert torch.allclose(s.sae.W_dec.norm(dim=-1), torch.ones(1, 6), atol=1e-5)
    m_b_enc = adam.m[s.flat.params["W_enc"].numel() : s.flat.params["W_enc"].numel() + 6]
    assert (m_b_enc[3:] == 0).all() and (m_b_enc[~dead[0]] == 1).all()


# --------------------------------------------------------------------------------------------------
# the SAE directory


@pytest.fixture(scope="module")
def sae_run(toy_run):
    return train_sae(toy_run, small(architecture="jumprelu", n_latents=(4, 6), snapshots=3),
                     source_path="somewhere")  # fmt: skip


def test_repr_is_short(sae_run):
    text = repr(sae_run)
    assert len(text) < 700 and "tensor(" not in text
    assert f"SAERun({sae_run.n_instances} SAE instances on toy instances" in text
    assert "from somewhere" in text
    assert "W_dec [" in text and "mmcs: min " in text


def test_save_load_round_trip(sae_run, tmp_path):
    path = save_sae(sae_run, tmp_path / "sae")
    assert is_sae_dir(path)
    back = load_sae(path)
    assert back.config == sae_run.config and back.instances == sae_run.instances
    assert back.source_config == sae_run.source_config and back.source_path == "somewhere"
    for k, v in sae_run.params.items():
        assert torch.equal(back.params[k], v), k
    for k, v in sae_run.toy_params.items():
        assert torch.equal(back.toy_params[k], v), k
    assert back.snapshot_steps == [0, 30, 60]
    assert torch.equal(back.snapshots["W_dec"], sae_run.snapshots["W_dec"])
    for k, v in sae_run.scores.items():
        assert torch.allclose(back.scores[k].float(), v.float(), equal_nan=True), k
    doc = json.loads((path / "config.json").read_text())
    assert doc["kind"] == "sae" and doc["source"]["config"]["data"]["n_features"] == 5


def test_save_is_atomic_and_refuses_a_toy_run(sae_run, tmp_path, monkeypatch, toy_run):
    from superposition.sae import store as sae_store

    def boom(*a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(sae_store, "_write_contents", boom)
    with pytest.raises(OSError):
        save_sae(sae_run, tmp_path / "sae")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary folder
    monkeypatch.undo()
    save_run(toy_run, tmp_path / "toy")
    with pytest.raises(RunDirError, match="holds a toy-model run"):
        save_sae(sae_run, tmp_path / "toy", overwrite=True)
    save_sae(sae_run, tmp_path / "sae")
    with pytest.raises(RunDirError, match="already holds a run"):
        save_sae(sae_run, tmp_path / "sae")
    save_sae(sae_run, tmp_path / "sae", overwrite=True)


def test_load_refuses_a_toy_run_and_a_mismatched_directory(sae_run, tmp_path, toy_run):
    save_run(toy_run, tmp_path / "toy")
    with pytest.raises(RunDirError, match="not an SAE directory"):
        load_sae(tmp_path / "toy")
    path = save_sae(sae_run, tmp_path / "sae")
    doc = json.loads((path / "config.json").read_text())
    doc["sae"]["seeds"] = 3
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match="do not match"):
        load_sae(path)


# --------------------------------------------------------------------------------------------------
# the command line


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def toy_dir(tmp_path, toy_run):
    return save_run(toy_run, tmp_path / "toy")


def test_cli_end_to_end(toy_dir, tmp_path, capsys):
    out = tmp_path / "sae"
    code, text, err = run_cli(capsys, "sae", toy_dir, "--out", out, "--n-latents", "5,6",
                              "--l1-coefficient", "0.1,0.3", "--seeds", "1", "--steps", "40",
                              "--batch-size", "64", "--eval-samples", "300", "--snapshots", "3",
                              "--no-progress", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    r = load_sae(out)
    assert r.n_instances == 2 * 2 * 2 and r.config.steps == 40
    assert "MMCS mean" in text and f"saved to {out}" in text
    assert len([line for line in text.splitlines() if line.strip().startswith(("0 ", "2 "))]) >= 4
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == ["decoder_directions.png", "recovery.png", "training.gif"]
    code, _, err = run_cli(capsys, "sae", toy_dir, "--out", out, "--steps", "5")
    assert code == 2 and "--force" in err


def test_cli_help_documents_every_field(capsys):
    code, out, _ = run_cli(capsys, "sae", "--help")
    assert code == 0
    flat = "".join(out.split())
    for f in dataclasses.fields(SAEConfig):
        assert "--" + f.name.replace("_", "-") in out, f.name
        assert "".join(f.metadata["doc"].split()) in flat, f.name


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--n-latents", "0"], ["n_latents", "got 0"]),
        (["--l1-coefficient=-0.5"], ["l1_coefficient", "-0.5"]),
        (["--architecture", "dense"], ["architecture", "'dense'"]),
        (["--steps", "many"], ["--steps", "'many'"]),
        (["--instance", "9"], ["instance", "9"]),
        (["--k", "2"], ["--k applies to topk, batchtopk or matryoshka SAEs only, not to relu_l1"]),
        (["--architecture", "topk", "--l1-coefficient", "0.5"],
         ["--l1-coefficient applies to relu_l1 or jumprelu SAEs only, not to topk"]),
        (["--threshold-init", "0.1"], ["--threshold-init applies to jumprelu SAEs only"]),
    ],
)  # fmt: skip
def test_cli_bad_values_exit_2_and_write_nothing(toy_dir, tmp_path, capsys, flags, words):
    out = tmp_path / "sae"
    code, _, err = run_cli(capsys, "sae", toy_dir, "--out", out, "--steps", "5", *flags)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


def test_cli_refuses_what_is_not_a_toy_run(tmp_path, capsys, sae_run):
    out = tmp_path / "sae"
    (tmp_path / "empty").mkdir()
    for source, words in [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "empty", "not a toy-model run directory"),
        (save_sae(sae_run, tmp_path / "other"), "is an SAE directory, not a toy-model run"),
    ]:
        code, _, err = run_cli(capsys, "sae", source, "--out", out)
        assert code == 2 and words in err and "Traceback" not in err, err
        assert not out.exists()


# --------------------------------------------------------------------------------------------------
# the fused CPU step (relu_l1)


def _csr_batch_as_dense(s, keys, step: int, batch: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The batch the fused step draws at ``step``, as dense [inst, batch, feat] inputs."""
    from superposition import kernels
    from superposition.fastpaths import Units

    units = Units.of(s.dist)
    n_inst, n_feat = s.dist.density.shape
    idx = np.empty((n_inst, batch * n_feat), np.int32)
    val = np.empty((n_inst, batch * n_feat), np.float32)
    rowptr = np.empty((n_inst, batch + 1), np.int64)
    kernels.sample_csr(keys, step, *units.args(), units.signed, idx, val, rowptr)
    x = np.zeros((n_inst, batch, n_feat), np.float32)
    kernels.csr_to_dense(idx, val, rowptr, x)
    return torch.from_numpy(x)


@pytest.mark.parametrize("kind", ["relu", "privileged"])
def test_fused_step_gradients_equal_the_torch_step_on_the_same_batch(kind):
    from superposition.sae.fused import FusedSAEStep

    run = fake_run(RunConfig(
        data=DataConfig(n_features=6, density=(0.2,), correlated=(2, 2)),
        model=ModelConfig(kind=kind, n_hidden=3),
        train=TrainConfig(instances=2, device="cpu"),
    ))  # fmt: skip
    cfg = small(n_latents=(3, 6), l1_coefficient=(0.03, 0.3), instance=1)
    s = setup(run, cfg, torch.device("cpu"))
    # biases that make some latents fire on zero inputs and others only on some samples
    s.sae.b_enc.copy_(torch.linspace(-0.3, 0.2, s.sae.b_enc.numel()).view_as(s.sae.b_enc))
    s.sae.b_enc.mul_(s.sae.mask)
    keys = stream_keys(cfg, s.instances)
    fused = FusedSAEStep(s.sae, s.toy, s.dist, s.flat.grads, 64, keys)
    fired = np.zeros(tuple(s.sae.mask.shape), bool)
    loss = fused(7, fired)
    got = {k: v.clone() for k, v in s.flat.grads.items()}
    h = s.toy.hidden(_csr_batch_as_dense(s, keys, 7, 64))
    want_loss, f = s.sae.loss_and_grads(h, s.flat.grads)
    for name, want in s.flat.grads.items():
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-6, msg=name)
    assert want_loss is not None
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-7)
    assert fired.tolist() == (f != 0).any(dim=1).tolist()
    assert (got["W_dec"][~s.sae.mask] == 0).all()


def test_fused_training_of_an_instance_does_not_depend_on_its_neighbours(toy_run):
    # (resampling draws its batch for all instances at once: it is left out here)
    cfg = small(n_latents=(4,), l1_coefficient=(0.1, 0.3), seeds=2, instance=0,
                resample_dead_every=0)  # fmt: skip
    together = train_sae(toy_run, cfg, path="fused")
    assert together.info["path"] == "fused"
    alone = train_sae(toy_run, dataclasses.replace(cfg, l1_coefficient=(0.3,), seeds=2),
                      path="fused")  # fmt: skip
    # instances 2 and 3 (coefficient 0.3, seeds 0 and 1) trained beside other coefficients
    # equal the same two trained on their own, bit for bit
    assert torch.equal(together.W_dec[2:], alone.W_dec)
    assert torch.equal(together.params["b_enc"][2:], alone.params["b_enc"])


def test_path_choice_and_its_errors(toy_run):
    assert choose_path(small(), torch.device("cpu")) == "fused"
    assert choose_path(small(architecture="topk"), torch.device("cpu")) == "torch"
    assert choose_path(small(), torch.device("cpu"), "torch") == "torch"
    with pytest.raises(ConfigError, match="'fused' path cannot run topk SAEs on cpu .*relu_l1"):
        train_sae(toy_run, small(architecture="topk"), path="fused")
    with pytest.raises(ConfigError, match="path must be one of auto, fused, torch; got 'gpu'"):
        train_sae(toy_run, small(), path="gpu")


@pytest.mark.parametrize("path", ["fused", "torch"])
def test_both_paths_learn_the_same_dictionary(toy_run, path):
    # the two paths draw different batches, so they agree in outcome, not in bits
    r = train_sae(toy_run, small(n_latents=(5,), seeds=1, instance=1, steps=800,
                                 l1_coefficient=(0.03,)), path=path)  # fmt: skip
    assert r.info["path"] == path
    assert float(r.scores["fvu"][0]) < 0.05


def test_cli_the_folder_appears_only_with_its_figures(toy_dir, tmp_path, capsys, monkeypatch):
    from superposition import files
    from superposition.plots import sae as sae_plots

    argv = ("sae", toy_dir, "--out", tmp_path / "sae", "--seeds", "1", "--steps", "20",
            "--batch-size", "64", "--eval-samples", "200", "--snapshots", "2", "--no-progress",
            "--device", "cpu")  # fmt: skip
    seen: list[list[str]] = []
    rename = files.move_into_place

    def look_then_rename(tmp: Path, target: Path) -> None:
        seen.append(sorted(p.name for p in (tmp / "figures").iterdir()))
        rename(tmp, target)

    monkeypatch.setattr(files, "move_into_place", look_then_rename)
    assert run_cli(capsys, *argv)[0] == 0
    assert seen == [["decoder_directions.png", "recovery.png", "training.gif"]]

    def killed(*args: object, **kwargs: object) -> None:  # stopped while drawing the last figure
        raise KeyboardInterrupt

    monkeypatch.setattr(sae_plots, "save_animation", killed)
    out = tmp_path / "again"
    code, _, err = run_cli(capsys, *argv[:3], out, *argv[4:])
    assert code == 130 and "nothing was saved" in err
    assert not out.exists() and not list(tmp_path.glob(".again*"))
