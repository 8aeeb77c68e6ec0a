"""The CPU fast paths (superposition.kernels / fastpaths): same gradients as the reference maths on
the same batch, the documented feature distribution, and determinism."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution
from superposition.fastpaths import FastStep
from superposition.losses import get_loss
from superposition.models import ToyModel
from superposition.steps import Instances, StepSpec, choose_step
from superposition.training import bytes_per_instance, train

KINDS = [("linear", True), ("relu", True), ("relu", False), ("privileged", True),
         ("privileged", False), ("abs", False)]  # fmt: skip


def _model(kind: str, tied: bool, n_inst: int, n: int, m: int, seed: int = 0) -> ToyModel:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_inst, n, m, generator=g) * 0.6
    b = torch.randn(n_inst, n, generator=g) * 0.2
    W_dec = None if tied else torch.randn(n_inst, n, m, generator=g) * 0.6
    return ToyModel(kind, W, b, W_dec)


def _batch(fast: FastStep, step: int) -> torch.Tensor:
    """The batch the fast path draws at ``step``, dense [inst, batch, feat]."""
    from superposition import kernels

    if fast.path == "fused":
        return fast.sample_dense(step).contiguous()
    idx, val, rowptr = fast.sample_csr(step)
    n_inst, n_feat, _ = fast.model.W.shape
    x = np.zeros((n_inst, fast.batch, n_feat), np.float32)
    kernels.csr_to_dense(idx, val, rowptr, x)
    return torch.from_numpy(x)


@pytest.mark.parametrize("path", ["fused", "sparse"])
@pytest.mark.parametrize("kind,tied", KINDS)
@pytest.mark.parametrize("sets", [((), ()), ((2,), (3,))])
@pytest.mark.parametrize("density", [0.3, 0.1, 0.003])
def test_gradients_match_reference(path, kind, tied, sets, density):
    n_inst, n, m, batch = 3, 9, 3, 256
    g = torch.Generator().manual_seed(1)
    # per-instance and per-feature densities, also below the dense-mode threshold
    dens = density * (0.5 + 0.5 * torch.rand(n_inst, n, generator=g))
    dist = FeatureDistribution(dens, sets[0], sets[1], signed=kind == "abs")
    model = _model(kind, tied, n_inst, n, m)
    importance = 0.5 + torch.rand(n_inst, n, generator=g)
    grads = {k: torch.full_like(v, float("nan")) for k, v in model.params().items()}
    fast = FastStep(path, dist, importance, model, grads, batch, np.arange(99, 99 + n_inst))
    loss = fast(7, with_loss=True)
    x = _batch(fast, 7)
    ref = {k: torch.zeros_like(v) for k, v in model.params().items()}
    ref_loss = model.loss_and_grads(x, importance, ref)
    assert loss is not None and ref_loss is not None
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-7)
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-4, atol=1e-6)


def _marginals(path: str, dist: FeatureDistribution, batch: int, steps: int) -> torch.Tensor:
    model = _model("relu", True, dist.n_instances, dist.n_features, 2)
    grads = {k: torch.zeros_like(v) for k, v in model.params().items()}
    keys = np.arange(3, 3 + dist.n_instances)
    fast = FastStep(path, dist, torch.ones_like(dist.density), model, grads, batch, keys)
    return torch.cat([_batch(fast, s) for s in range(steps)], dim=1)


@pytest.mark.parametrize("path", ["fused", "sparse"])
@pytest.mark.parametrize("signed", [False, True])
def test_sampler_statistics(path, signed):
    # per-feature densities; instance 0 in dense mode, 2 (and on the sparse path 1) drawn by
    # geometric gaps with thinning
    density = torch.tensor([[0.7, 0.3, 0.5, 0.5, 0.25, 0.25, 0.9, 0.4],
                            [0.01, 0.004, 0.02, 0.02, 0.03, 0.03, 0.001, 0.05],
                            [0.004, 0.002, 0.003, 0.003, 0.001, 0.001, 0.004, 0.002]])  # fmt: skip
    for sets in [((), ()), ((2,), (2,))]:
        dist = FeatureDistribution(density, sets[0], sets[1], signed=signed)
        x = _marginals(path, dist, 4096, 10)  # [inst, samples, feat]
        n = x.shape[1]
        present = x != 0
        p = density.clone()
        if sets[0]:  # a set's members have its first member's density
            p[:, 1], p[:, 3] = p[:, 0], p[:, 2]
        se = torch.sqrt(p * (1 - p) / n)
        assert ((present.float().mean(1) - p).abs() < 5 * se + 1e-4).all()
        values = x[present]
        if signed:
            assert values.min() >= -1 and values.max() <= 1
            assert abs(values.mean().item()) < 5 * math.sqrt(1 / 3 / values.numel())
            assert abs(values.abs().mean().item() - 0.5) < 0.01
        else:
            assert values.min() > 0 and values.max() <= 1
            assert abs(values.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / values.numel())
        if sets[0]:
            # a correlated pair shares its coin, an anticorrelated pair is never on together
            assert torch.equal(present[:, :, 0], present[:, :, 1])
            assert not (present[:, :, 2] & present[:, :, 3]).any()
        else:
            # independent features: the joint frequency is the product of the marginals
            both = (present[0, :, 0] & present[0, :, 1]).float().mean().item()
            assert abs(both - 0.21) < 5 * math.sqrt(0.21 * 0.79 / n)


def _config(n_feat: int, n_hidden: int, density, instances: int, **train) -> RunConfig:
    return RunConfig(
        data=DataConfig(n_features=n_feat, density=density),
        model=ModelConfig(kind="relu", n_hidden=n_hidden),
        train=TrainConfig(instances=instances, steps=30, eval_samples=256, batch_size=128,
                          device="cpu", **train),
    )  # fmt: skip


def _chosen(config: RunConfig, device: str = "cpu") -> str:
    spec = StepSpec(config, Instances.of(config), torch.device(device), get_loss("mse"), "fresh")
    return choose_step(spec).name


def test_the_step_is_chosen_by_size_and_density_and_recorded():
    tiny = _config(2, 1, 0.1, 4)
    assert _chosen(tiny) == "fused"
    assert _chosen(_config(20, 5, 0.05, 10)) == "fused"  # the paper's canonical model
    assert _chosen(_config(16, 16, 1.0, 4)) == "fused"
    assert _chosen(tiny, "cuda") == "torch"
    # the same large model: sparse while samples are sparse, plain matmuls once they are dense
    assert _chosen(_config(80, 20, 0.01, 2)) == "sparse"
    assert _chosen(_config(80, 20, 1.0, 2)) == "torch"
    assert _chosen(_config(400, 30, 0.01, 2)) == "sparse"
    assert train(tiny, progress=False).info["step"] == "fused"


def test_each_instance_gets_its_own_cheapest_step():
    from superposition.steps import plan_steps

    cfg = _config(200, 20, (1.0, 0.5, 0.01, 0.005), 2)
    spec = StepSpec(cfg, Instances.of(cfg), torch.device("cpu"), get_loss("mse"), "fresh")
    plan = [(rows, cls.name) for rows, cls in plan_steps(spec)]
    assert plan == [(range(0, 4), "torch"), (range(4, 8), "sparse")]
    # an instance's step is its own: the sparse instances alone still train on the sparse step
    alone = StepSpec(cfg, Instances.of(cfg).rows(slice(4, 8)), torch.device("cpu"),
                     get_loss("mse"), "fresh")  # fmt: skip
    assert [cls.name for _, cls in plan_steps(alone)] == ["sparse"]
    run = train(cfg, progress=False)
    assert run.info["step"] == "torch,sparse" and run.info["chunks"] == 1
    assert plan_steps(spec, "torch")[0][1].name == "torch"


@pytest.mark.parametrize("path", ["fused", "sparse"])
def test_same_seed_same_weights_any_threads(path):
    import numba

    cfg = _config(12, 4, (0.3, 0.02), 6)
    first = train(cfg, progress=False, step=path)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        again = train(cfg, progress=False, step=path)
    finally:
        numba.set_num_threads(old)
    for k in first.params:
        assert torch.equal(first.params[k], again.params[k])
    assert torch.isfinite(first.loss).all()


def test_fast_paths_are_chunking_independent():
    # each instance's random streams are keyed by its own seed and index, not by its chunk
    cfg = _config(6, 2, 0.2, 8)
    whole = train(cfg, progress=False, step="fused")
    chunked = train(
        _config(6, 2, 0.2, 8, memory_budget_gb=3 * bytes_per_instance(cfg) / 2**30),
        progress=False,
        step="fused",
    )
    assert chunked.info["chunks"] > 1
    torch.testing.assert_close(chunked.params["W"], whole.params["W"], rtol=0, atol=0)
    torch.testing.assert_close(chunked.loss, whole.loss, rtol=0, atol=0)


@pytest.mark.parametrize("path", ["fused", "sparse"])
def test_fast_paths_learn_like_the_torch_path(path):
    # different random streams, same distribution and maths: the final losses agree closely
    cfg = _config(5, 2, 0.1, 8, lr=1e-2)
    train_cfg = TrainConfig(**{**cfg.train.__dict__, "steps": 400, "eval_samples": 4096})
    cfg = RunConfig(data=cfg.data, model=cfg.model, train=train_cfg)
    fast = train(cfg, progress=False, step=path).loss.mean().item()
    slow = train(cfg, progress=False, step="torch").loss.mean().item()
    assert abs(fast - slow) < 0.15 * slow


_DIGEST = """
import hashlib, superposition as sp
from superposition.training import train
cfg = sp.RunConfig(data=sp.DataConfig(n_features=6, density=(1.0, 0.1)),
                   model=sp.ModelConfig(n_hidden=3),
                   train=sp.TrainConfig(instances=2, steps=50, batch_size=64, eval_samples=256))
run = train(cfg, progress=False, step="fused")
print(hashlib.sha1(run.W.numpy().tobytes() + run.history_loss.numpy().tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_a_freshly_compiled_kernel_gives_the_cached_kernels_bits(tmp_path):
    # numba may compile a kernel differently than it loads it from its cache; the sums must not
    # depend on that, or a resumed sweep or a Ray task would differ from the first run
    import os
    import subprocess
    import sys

    def digest(cache: Path | None) -> str:
        env = {**os.environ, **({"NUMBA_CACHE_DIR": str(cache)} if cache else {})}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    fresh = digest(tmp_path / "numba-cache")  # compiles every kernel in this process
    assert digest(tmp_path / "numba-cache") == fresh  # loads them from the cache it wrote
    assert digest(None) == fresh  # the package's own cache


def _fma32(a, b, c):
    # float32 fused multiply-add: the product is exact in float64, one rounding to float32 (a
    # double rounding through float64 is possible in principle, not for these inputs)
    return (np.asarray(a, np.float64) * b + c).astype(np.float32)


def _vdot_in_documented_order(a: np.ndarray, b: np.ndarray) -> np.float32:
    n = a.shape[0]
    sums = np.zeros((4, 16), np.float32)
    done = n - n % 64
    for o in range(0, done, 64):
        for c in range(4):
            sums[c] = _fma32(a[o + 16 * c : o + 16 * c + 16], b[o + 16 * c : o + 16 * c + 16],
                             sums[c])  # fmt: skip
    tail = n - n % 16
    for o in range(done, tail, 16):
        sums[0] = _fma32(a[o : o + 16], b[o : o + 16], sums[0])
    v = (sums[0] + sums[1]) + (sums[2] + sums[3])
    while v.shape[0] > 1:
        v = v[: v.shape[0] // 2] + v[v.shape[0] // 2 :]
    total = v[0]
    for s in range(tail, n):
        total = _fma32(a[s], b[s], total)
    return total


@pytest.mark.parametrize("n", [0, 5, 16, 77, 200, 1024])
def test_batch_sums_follow_their_documented_order(n):
    # the fused kernel's sums over the batch are fixed by the code, not by the compiler: the
    # same bits as the order spelled out in _vdot's docstring (a plain running sum differs)
    from numba import njit

    from superposition.kernels import _vdot

    g = np.random.default_rng(n)
    a = g.standard_normal(n).astype(np.float32)
    b = g.standard_normal(n).astype(np.float32)
    got = njit(lambda a, b: _vdot(a, b))(a, b)
    assert np.float32(got).tobytes() == _vdot_in_documented_order(a, b).tobytes()
