"""The training loop: schedules, reproducibility, initialisation, chunking, history, snapshots,
best-of-N, optimiser options and callbacks."""

import math

import pytest
import torch
from conftest import tiny_config

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.errors import ConfigError
from superposition.models import ToyModel
from superposition.results import Run
from superposition.training import (
    StepInfo,
    bytes_per_instance,
    chunk_size,
    derive_seed,
    lr_at,
    stack_key,
    train,
    train_many,
)


def _cfg(
    *,
    n=6,
    m=3,
    kind="relu",
    density=(0.3,),
    decay=(0.9,),
    **train_kwargs,
) -> RunConfig:
    defaults = {
        "steps": 200,
        "batch_size": 64,
        "instances": 3,
        "log_every": 50,
        "eval_samples": 2000,
        "device": "cpu",
        "lr": 1e-2,
    }
    defaults.update(train_kwargs)
    return RunConfig(
        data=DataConfig(n_features=n, density=density, importance_decay=decay),
        model=ModelConfig(kind=kind, n_hidden=m),
        train=TrainConfig(**defaults),
    )


ONE_INSTANCE_GB = 1.5 * bytes_per_instance(_cfg()) / 2**30
"""A memory budget that holds one instance of ``_cfg()`` but not two: chunks of one instance."""


# --------------------------------------------------------------------------------------------------
# learning-rate schedules


def test_lr_constant():
    cfg = TrainConfig(steps=100, lr=0.01)
    assert [lr_at(s, cfg) for s in (0, 1, 50, 99)] == [0.01] * 4


def test_lr_warmup_then_constant():
    cfg = TrainConfig(steps=100, lr=0.01, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(0.001)
    assert lr_at(4, cfg) == pytest.approx(0.005)
    assert lr_at(9, cfg) == pytest.approx(0.01)
    assert lr_at(10, cfg) == pytest.approx(0.01)
    assert lr_at(99, cfg) == pytest.approx(0.01)
    # strictly increasing during warm-up
    ramp = [lr_at(s, cfg) for s in range(10)]
    assert all(a < b for a, b in zip(ramp, ramp[1:], strict=False))


def test_lr_linear_decay():
    cfg = TrainConfig(steps=100, lr=0.02, schedule="linear")
    assert lr_at(0, cfg) == pytest.approx(0.02)
    assert lr_at(25, cfg) == pytest.approx(0.015)
    assert lr_at(50, cfg) == pytest.approx(0.01)
    assert lr_at(99, cfg) == pytest.approx(0.0002)


def test_lr_linear_decay_after_warmup():
    cfg = TrainConfig(steps=120, lr=0.02, schedule="linear", warmup_steps=20)
    assert lr_at(0, cfg) == pytest.approx(0.001)
    assert lr_at(19, cfg) == pytest.approx(0.02)
    assert lr_at(20, cfg) == pytest.approx(0.02)
    assert lr_at(70, cfg) == pytest.approx(0.01)
    assert lr_at(119, cfg) == pytest.approx(0.0002)


def test_lr_cosine_decay():
    cfg = TrainConfig(steps=100, lr=0.01, schedule="cosine")
    assert lr_at(0, cfg) == pytest.approx(0.01)
    assert lr_at(25, cfg) == pytest.approx(0.005 * (1 + math.cos(math.pi / 4)))
    assert lr_at(50, cfg) == pytest.approx(0.005)
    assert lr_at(75, cfg) == pytest.approx(0.005 * (1 + math.cos(3 * math.pi / 4)))
    assert 0 < lr_at(99, cfg) < 1e-5


def test_lr_cosine_with_warmup():
    cfg = TrainConfig(steps=110, lr=0.01, schedule="cosine", warmup_steps=10)
    assert lr_at(4, cfg) == pytest.approx(0.005)
    assert lr_at(10, cfg) == pytest.approx(0.01)
    assert lr_at(60, cfg) == pytest.approx(0.005)


def test_lr_schedules_never_negative():
    for schedule in ("constant", "linear", "cosine"):
        cfg = TrainConfig(steps=37, lr=0.1, schedule=schedule, warmup_steps=5)
        assert all(lr_at(s, cfg) > 0 for s in range(37))


# --------------------------------------------------------------------------------------------------
# reproducibility and initialisation


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "init", 1) == derive_seed(0, "init", 1)
    assert derive_seed(0, "init", 1) != derive_seed(0, "init", 2)
    assert derive_seed(0, "init", 1) != derive_seed(1, "init", 1)
    assert 0 <= derive_seed(123, "data") < 2**63


def test_same_config_is_bit_identical():
    cfg = _cfg()
    a, b = train(cfg), train(cfg)
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name
    assert torch.equal(a.loss, b.loss)
    assert torch.equal(a.history_loss, b.history_loss)


def test_different_seed_gives_different_weights():
    a, b = train(_cfg(seed=0)), train(_cfg(seed=1))
    assert not torch.allclose(a.W, b.W)


def test_instances_differ_within_a_run():
    run = train(_cfg(instances=4, steps=10))
    W = run.W
    for i in range(4):
        for j in range(i):
            assert not torch.allclose(W[i], W[j])


def test_init_is_xavier_normal_and_independent_of_instance_count():
    n, m = 20, 5
    small = train(_cfg(n=n, m=m, instances=2, steps=1, snapshot_steps=(0,)))
    big = train(_cfg(n=n, m=m, instances=40, steps=1, snapshot_steps=(0,)))
    W0_small, W0_big = small.snapshots["W"][0], big.snapshots["W"][0]
    assert W0_small.shape == (2, n, m)
    assert W0_big.shape == (40, n, m)
    # instance k starts from the same weights whatever the number of instances
    assert torch.equal(W0_small, W0_big[:2])
    # Xavier-normal: zero mean, std sqrt(2 / (n + m)) per instance (not scaled by instance count)
    std = math.sqrt(2 / (n + m))
    values = W0_big.double()
    count = values.numel()  # 4000 values
    assert abs(values.mean().item()) < 4 * std / math.sqrt(count)
    assert values.std().item() == pytest.approx(std, rel=4 * math.sqrt(1 / (2 * count)))
    # b starts at zero
    assert torch.equal(big.snapshots["b"][0], torch.zeros(40, n))


def test_untied_model_has_a_decoder_with_its_own_init():
    run = train(_cfg(kind="abs", steps=5, snapshot_steps=(0,)))
    assert set(run.params) == {"W", "b", "W_dec"}
    assert run.params["W_dec"].shape == run.W.shape
    assert not torch.allclose(run.snapshots["W_dec"][0], run.snapshots["W"][0])
    assert run.config.signed


# --------------------------------------------------------------------------------------------------
# results: shapes, history, snapshots, held-out loss


def test_run_shapes_and_history():
    cfg = _cfg(n=7, m=2, density=(1.0, 0.1), decay=(0.9, 0.7), instances=2, steps=200, log_every=50)
    run = train(cfg)
    assert run.n_instances == 8
    assert run.W.shape == (8, 7, 2)
    assert run.b.shape == (8, 7)
    assert run.loss.shape == (8,)
    assert run.history_steps.tolist() == [0, 50, 100, 150, 199]
    assert run.history_loss.shape == (5, 8)
    assert torch.isfinite(run.history_loss).all()
    assert torch.isfinite(run.loss).all()
    assert run.info["chunks"] >= 1
    # loss decreases over training for every instance
    assert (run.history_loss[-1] < run.history_loss[0]).all()


def test_loss_decreases_a_lot_for_dense_linear_identity():
    # n = m: the linear model can learn the identity exactly
    run = train(_cfg(n=4, m=4, kind="linear", density=(1.0,), steps=400, weight_decay=0.0))
    assert (run.loss < 0.01 * run.history_loss[0]).all()
    assert (run.loss < 1e-3).all()


def test_held_out_loss_matches_a_fresh_evaluation():
    cfg = _cfg(steps=300, eval_samples=20_000)
    run = train(cfg)
    model = ToyModel(cfg.model.kind, run.W, run.b)
    dist = FeatureDistribution.from_config(cfg)
    x = dist.sample(50_000, torch.Generator().manual_seed(12345))
    fresh = model.loss(x, importance_from_config(cfg))
    torch.testing.assert_close(run.loss, fresh, rtol=0.05, atol=1e-4)


def test_snapshots_at_requested_steps():
    cfg = _cfg(n=5, m=2, instances=3, steps=100, snapshot_steps=(0, 40, 100))
    run = train(cfg)
    assert run.snapshots["W"].shape == (3, 3, 5, 2)
    assert run.snapshots["b"].shape == (3, 3, 5)
    # the snapshot at the last step is the final weights; earlier ones differ
    assert torch.equal(run.snapshots["W"][2], run.W)
    assert torch.equal(run.snapshots["b"][2], run.b)
    assert not torch.allclose(run.snapshots["W"][0], run.snapshots["W"][1])
    assert not torch.allclose(run.snapshots["W"][1], run.snapshots["W"][2])
    assert torch.equal(run.snapshots["b"][0], torch.zeros(3, 5))


def test_no_snapshots_by_default():
    run = train(_cfg(steps=10))
    assert run.snapshots == {}


# --------------------------------------------------------------------------------------------------
# chunking


def test_tiny_memory_budget_trains_in_chunks():
    base = _cfg(instances=4, steps=300)
    tiny = _cfg(instances=4, steps=300, memory_budget_gb=ONE_INSTANCE_GB)
    assert chunk_size(tiny, torch.device("cpu")) < 4
    assert chunk_size(base, torch.device("cpu")) == 4
    whole, chunked = train(base), train(tiny)
    assert whole.info["chunks"] == 1
    assert chunked.info["chunks"] > 1
    assert chunked.W.shape == whole.W.shape
    assert chunked.history_loss.shape == whole.history_loss.shape
    assert torch.isfinite(chunked.loss).all()
    # every chunk trained: the loss fell for every instance, to about what the unchunked run reached
    assert (chunked.history_loss[-1] < 0.7 * chunked.history_loss[0]).all()
    ratio = chunked.loss.mean() / whole.loss.mean()
    assert 0.5 < ratio.item() < 2.0
    # initialisation does not depend on chunking
    s_whole = train(_cfg(instances=4, steps=1, snapshot_steps=(0,)))
    s_chunk = train(
        _cfg(instances=4, steps=1, snapshot_steps=(0,), memory_budget_gb=ONE_INSTANCE_GB)
    )
    assert torch.equal(s_whole.snapshots["W"], s_chunk.snapshots["W"])


def test_chunked_run_is_reproducible():
    cfg = _cfg(instances=3, steps=50, memory_budget_gb=ONE_INSTANCE_GB)
    a, b = train(cfg), train(cfg)
    assert torch.equal(a.W, b.W)
    assert torch.equal(a.loss, b.loss)


# --------------------------------------------------------------------------------------------------
# best-of-N


def test_best_picks_argmin_per_group():
    cfg = RunConfig(
        data=DataConfig(n_features=2, density=(1.0, 0.5)),
        model=ModelConfig(n_hidden=1),
        train=TrainConfig(instances=3),
    )
    run = Run(
        config=cfg,
        params={"W": torch.zeros(6, 2, 1), "b": torch.zeros(6, 2)},
        loss=torch.tensor([0.3, 0.1, 0.2, 0.05, 0.5, 0.01]),
        history_steps=torch.tensor([0]),
        history_loss=torch.zeros(1, 6),
    )
    assert run.best() == [1, 5]


def test_best_on_a_trained_run():
    run = train(_cfg(density=(1.0, 0.1), instances=3, steps=100))
    best = run.best()
    assert len(best) == 2
    for g, k in enumerate(best):
        sl = run.group_slice(g)
        assert sl.start <= k < sl.stop
        assert run.loss[k] == run.loss[sl].min()
    sub = run.select(best)
    assert sub.W.shape[0] == 2
    assert torch.equal(sub.W, run.W[best])


# --------------------------------------------------------------------------------------------------
# optimiser options


def test_adam_and_adamw_differ_with_weight_decay():
    a = train(_cfg(optimizer="adam", weight_decay=0.05))
    w = train(_cfg(optimizer="adamw", weight_decay=0.05))
    assert not torch.allclose(a.W, w.W)


def test_adam_and_adamw_agree_without_weight_decay():
    a = train(_cfg(optimizer="adam", weight_decay=0.0))
    w = train(_cfg(optimizer="adamw", weight_decay=0.0))
    torch.testing.assert_close(a.W, w.W)


def test_weight_decay_changes_the_result_and_shrinks_weights():
    no = train(_cfg(weight_decay=0.0, steps=300))
    yes = train(_cfg(weight_decay=0.01, steps=300))
    strong = train(_cfg(weight_decay=0.5, steps=300))
    assert not torch.allclose(no.W, yes.W)
    assert strong.W.norm() < no.W.norm()


def test_schedule_changes_the_result():
    const = train(_cfg(schedule="constant"))
    cos = train(_cfg(schedule="cosine"))
    assert not torch.allclose(const.W, cos.W)


# --------------------------------------------------------------------------------------------------
# callbacks


def test_callbacks_called_at_log_steps():
    seen: list[StepInfo] = []
    cfg = _cfg(instances=2, density=(1.0, 0.2), steps=120, log_every=40)
    run = train(cfg, callbacks=[seen.append])
    assert [s.step for s in seen] == [0, 40, 80, 119]
    assert run.history_steps.tolist() == [0, 40, 80, 119]
    for info in seen:
        assert isinstance(info, StepInfo)
        assert info.instances == range(0, 4)
        assert info.loss.shape == (4,)
        assert torch.isfinite(info.loss).all()
        assert isinstance(info.model, ToyModel)
        assert info.model.W.shape == (4, 6, 3)
    # the losses seen are the recorded history
    torch.testing.assert_close(torch.stack([s.loss for s in seen]), run.history_loss)


def test_callbacks_see_every_chunk():
    seen: list[tuple[int, range]] = []
    cfg = _cfg(instances=3, steps=20, log_every=10, memory_budget_gb=ONE_INSTANCE_GB)
    run = train(cfg, callbacks=[lambda info: seen.append((info.step, info.instances))])
    chunks = run.info["chunks"]
    assert chunks > 1
    assert len(seen) == 3 * chunks  # steps 0, 10, 19 in every chunk
    covered = sorted({k for _, r in seen for k in r})
    assert covered == [0, 1, 2]


# --------------------------------------------------------------------------------------------------
# stacking compatible configs into one training


def test_stacked_configs_equal_their_solo_runs_bit_for_bit():
    # different seeds, densities and importances share one training; each config's result is
    # what it gives alone (its instances' streams derive from its own seed and indices)
    a = _cfg(seed=1, density=(0.3,), decay=(0.9,))
    b = _cfg(seed=7, density=(0.05, 0.5), decay=(0.7,), instances=2)
    stacked = train_many([a, b, a])
    assert [r.config for r in stacked] == [a, b, a]
    assert stacked[0].info["stacked_configs"] == 3
    for run, cfg in zip(stacked, [a, b, a], strict=True):
        alone = train(cfg)
        assert run.n_instances == cfg.n_instances
        for k in alone.params:
            assert torch.equal(run.params[k], alone.params[k])
        assert torch.equal(run.loss, alone.loss)
        assert torch.equal(run.history_loss, alone.history_loss)


def test_stacking_refuses_incompatible_configs():
    with pytest.raises(ConfigError, match="config 1 cannot share a training"):
        train_many([_cfg(m=3), _cfg(m=2)])
    with pytest.raises(ConfigError, match="config 1 cannot share a training"):
        train_many([_cfg(lr=1e-2), _cfg(lr=1e-3)])
    assert stack_key(_cfg(seed=1, density=(0.1,))) == stack_key(_cfg(seed=2, density=(0.9,)))


def test_relative_importance_scales_the_last_feature_and_forms_groups():
    cfg = RunConfig(
        data=DataConfig(n_features=3, density=(0.1, 1.0), relative_importance=(0.5, 4.0)),
        train=TrainConfig(instances=2),
    )
    assert cfg.n_groups == 4 and cfg.n_instances == 8
    assert [g.relative_importance for g in cfg.groups] == [0.5, 4.0, 0.5, 4.0]
    imp = importance_from_config(cfg)
    assert imp[0].tolist() == [1.0, 1.0, 0.5]
    assert imp[2].tolist() == [1.0, 1.0, 4.0]
    with pytest.raises(ConfigError, match="relative_importance must be > 0, got -1"):
        DataConfig(n_features=2, relative_importance=(-1.0,))


def test_stacked_configs_share_one_chunk_when_the_budget_allows():
    runs = train_many([_cfg(seed=s, instances=2) for s in range(5)])
    assert runs[0].info["chunks"] == 1
    assert runs[0].info["chunk_instances"] == 10


def test_sp_train_is_the_function_and_training_the_module() -> None:
    import types

    import superposition as sp
    import superposition.sweep  # noqa: F401  (imports superposition.training, the module)

    assert isinstance(sp.train, types.FunctionType)
    assert isinstance(sp.training, types.ModuleType)

    cfg = tiny_config(steps=5, instances=1)
    first, second = sp.train(cfg, progress=False), sp.train(cfg, progress=False)
    assert torch.equal(first.W, second.W)
    from superposition import train as imported

    assert imported(cfg, progress=False).W.shape == first.W.shape
