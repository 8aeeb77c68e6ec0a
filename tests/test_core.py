"""The open training core: losses, data sources, step implementations and the generic loop."""

import math

import pytest
import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.losses import (
    LOSSES,
    CrossEntropy,
    Loss,
    SquaredError,
    get_loss,
    per_sample_loss,
    register_loss,
)
from superposition.models import ToyModel
from superposition.steps import STEPS, Instances, StepSpec, TorchStep, choose_step
from superposition.steps.sources import FreshSource
from superposition.training import (
    EarlyStop,
    FlatParams,
    check,
    init_params,
    train,
)


def _config(n: int = 6, m: int = 3, density: float = 0.2, kind: str = "relu", **kw) -> RunConfig:
    data_kw = {k: kw.pop(k) for k in ("source", "dataset_size") if k in kw}
    options = {"steps": 50, "batch_size": 64, "instances": 2, "eval_samples": 512,
               "log_every": 10, "device": "cpu", **kw}  # fmt: skip
    return RunConfig(
        data=DataConfig(n_features=n, density=density, importance_decay=0.8, **data_kw),
        model=ModelConfig(kind=kind, n_hidden=m),  # type: ignore[arg-type]
        train=TrainConfig(**options),  # type: ignore[arg-type]
    )


def _step(config: RunConfig, name: str):
    spec = StepSpec(config, Instances.of(config), torch.device("cpu"), get_loss(config.train.loss),
                    config.data.source)  # fmt: skip
    flat = FlatParams(init_params(config, spec.instances.seeds), torch.device("cpu"))
    model = ToyModel(config.model.kind, **flat.params)
    return STEPS[name](spec, model, flat.grads), model, flat


# --------------------------------------------------------------------------------------------------
# losses


class Cubed(Loss):
    """A loss defined here, with no gradient of its own: |out - target|^3 weighted by importance,
    summed over features, mean over the batch."""

    def value(self, out, target, importance):
        return ((out - target).abs().pow(3) * importance[:, None, :]).sum(dim=(1, 2)) / out.shape[1]


def test_a_loss_defined_in_a_test_trains_through_the_torch_step_with_the_hand_gradient():
    register_loss("cubed_test", Cubed())
    try:
        cfg = _config(kind="relu", loss="cubed_test")
        step, model, flat = _step(cfg, "torch")
        x = step.source.batch(0, 64)
        step(0, with_loss=True)
        # by hand: o = W_dec h + b, out = relu(o), g = 3 I |out - x| (out - x) / batch
        W, b = model.W, model.b
        h = torch.bmm(x, W)
        o = torch.baddbmm(b[:, None, :], h, W.transpose(1, 2))
        out = o.relu()
        g = 3 * (out - x).abs() * (out - x) * cfg_importance(cfg)[:, None, :] / 64
        g = g * (o > 0)
        grad_b = g.sum(1)
        grad_W = torch.bmm(g.transpose(1, 2), h) + torch.bmm(x.transpose(1, 2), torch.bmm(g, W))
        torch.testing.assert_close(flat.grads["b"], grad_b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(flat.grads["W"], grad_W, rtol=1e-4, atol=1e-6)
        run = train(cfg, progress=False)
        assert run.info["step"] == "torch" and run.info["loss"] == "cubed_test"
        assert run.history_loss[-1].mean() < run.history_loss[0].mean()
    finally:
        LOSSES.pop("cubed_test")


def cfg_importance(cfg: RunConfig) -> torch.Tensor:
    return Instances.of(cfg).importance


def test_squared_error_reductions_and_per_sample_loss():
    out, target = torch.rand(2, 7, 4), torch.rand(2, 7, 4)
    imp = torch.rand(2, 4)
    per = per_sample_loss(out, target, imp)
    assert per.shape == (2, 7)
    torch.testing.assert_close(SquaredError("sum").value(out, target, imp), per.mean(1))
    torch.testing.assert_close(SquaredError("mean").value(out, target, imp), per.mean(1) / 4)
    with pytest.raises(ConfigError, match="reduction must be 'mean' or 'sum', got 'max'"):
        SquaredError("max")


@pytest.mark.parametrize("loss", [SquaredError("mean"), SquaredError("sum"), CrossEntropy()])
def test_closed_form_output_gradients_equal_autograd(loss):
    out = torch.randn(3, 5, 4)
    target = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 5)), 4).float()
    imp = torch.rand(3, 4) + 0.5
    value, grad = loss.output_grad(out.clone(), target, imp)
    auto_value, auto_grad = Loss.output_grad(loss, out.clone(), target, imp)
    torch.testing.assert_close(value, auto_value)
    torch.testing.assert_close(grad, auto_grad)


def test_cross_entropy_of_the_hand_set_solutions():
    # four equally likely tokens; predicting A when A is present and uniform over B, C, D
    # otherwise costs (3/4) ln 3
    target = torch.eye(4)[None]
    big = 50.0
    logits = torch.tensor([[big, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]])[None] * 1.0
    logits[0, 1:, 0] = -big
    value = CrossEntropy().value(logits, target, torch.ones(1, 4))
    assert value.item() == pytest.approx(0.75 * math.log(3), abs=1e-6)


def test_unknown_loss_and_source_names_are_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown loss 'hinge'; registered losses: mse, mse_sum"):
        check([_config(loss="hinge")])
    with pytest.raises(ConfigError, match="loss must be a registered name"):
        _config(loss="not a name")
    with pytest.raises(ConfigError, match="unknown data source 'tape'; registered sources: fresh"):
        check([_config(source="tape")])


# --------------------------------------------------------------------------------------------------
# the steps


@pytest.mark.parametrize("kind", ["relu", "linear", "privileged", "abs"])
def test_the_three_steps_give_the_same_gradient_on_the_same_batch(kind):
    cfg = _config(n=8, m=3, density=0.3, kind=kind)
    reference, ref_model, ref_flat = _step(cfg, "torch")
    for name in ("fused", "sparse"):
        step, _, flat = _step(cfg, name)
        loss = step(5, with_loss=True)
        # the fast steps draw their batch inside the kernels; run the torch step on that batch
        x = step.drawn_batch(5)
        ref_loss = ref_model.loss_and_grads(x, reference.importance, ref_flat.grads)
        for k in ref_flat.grads:
            torch.testing.assert_close(flat.grads[k], ref_flat.grads[k], rtol=2e-4, atol=1e-6)
        torch.testing.assert_close(loss, ref_loss, rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("density", [0.003, 0.05, 0.5])
def test_torch_and_fused_steps_draw_the_same_fresh_batches_on_the_cpu(density):
    cfg = _config(n=10, m=3, density=density)
    torch_step, _, _ = _step(cfg, "torch")
    fused_step, _, _ = _step(cfg, "fused")
    assert torch.equal(torch_step.source.batch(3, 64), fused_step.drawn_batch(3))


def test_fast_steps_refuse_what_they_cannot_run():
    ce = _config(loss="cross_entropy")
    spec = StepSpec(ce, Instances.of(ce), torch.device("cpu"), get_loss("cross_entropy"), "fresh")
    assert choose_step(spec) is TorchStep
    with pytest.raises(ConfigError, match="the 'fused' step cannot run this training"):
        choose_step(spec, "fused")
    with pytest.raises(ConfigError, match="step must be one of auto, torch, fused, sparse"):
        choose_step(spec, "gpu")


def test_mse_sum_trains_on_the_fast_steps_with_the_paper_scale():
    mean_cfg, sum_cfg = _config(), _config(loss="mse_sum")
    a, b = train(mean_cfg, progress=False), train(sum_cfg, progress=False)
    assert a.info["step"] == b.info["step"] == "fused"
    # the first logged loss (same initial weights, same batch) is n times larger summed
    torch.testing.assert_close(b.history_loss[0], a.history_loss[0] * 6, rtol=1e-5, atol=0)


# --------------------------------------------------------------------------------------------------
# data sources


def test_a_finite_dataset_of_three_samples_is_memorised():
    cfg = _config(n=6, m=6, density=0.5, kind="relu", source="finite", dataset_size=3, steps=1500,
                  lr=1e-2, weight_decay=0.0, instances=2)  # fmt: skip
    run = train(cfg, progress=False)
    assert run.dataset_loss is not None and run.info["source"] == "finite"
    assert run.info["step"] == "torch"
    k = int(run.dataset_loss.argmin())  # the best of the seeds on its training set
    assert float(run.dataset_loss[k]) < 1e-3  # the training set is learnt
    assert float(run.loss[k]) > 10 * float(run.dataset_loss[k])  # fresh samples are not


def test_finite_dataset_batches_go_through_each_instances_own_shuffle():
    cfg = _config(source="finite", dataset_size=10, batch_size=4)
    step, _, _ = _step(cfg, "torch")
    data = step.dataset()
    assert data.shape == (2, 10, 6)
    seen = torch.cat([step.source.batch(i, 4) for i in range(5)], dim=1)  # two epochs
    for k in range(2):
        first_epoch = {tuple(r.tolist()) for r in seen[k, :10]}
        assert first_epoch == {tuple(r.tolist()) for r in data[k]}


def test_finite_dataset_size_is_checked_against_the_memory_budget():
    with pytest.raises(ConfigError, match=r"dataset_size 100000000 needs .* GiB per instance"):
        check([_config(source="finite", dataset_size=10**8, memory_budget_gb=0.5)])
    with pytest.raises(ConfigError, match="dataset_size must be an integer >= 1, got 0"):
        _config(source="finite", dataset_size=0)
    with pytest.raises(ConfigError, match="source 'finite' needs dataset_size"):
        _config(source="finite")
    with pytest.raises(ConfigError, match="dataset_size applies to source 'finite' only"):
        _config(dataset_size=5)


def test_a_user_sampler_trains_on_the_torch_step():
    n = 6

    def sampler(batch, generator):
        # one feature on at a time: a one-hot of a uniform feature, magnitude 1
        which = torch.randint(0, n, (batch, 2), generator=generator)
        return torch.nn.functional.one_hot(which, n).float()

    cfg = _config(n=n, m=2, source="sampler", steps=300)
    run = train(cfg, progress=False, sampler=sampler)
    assert run.info["step"] == "torch" and run.info["source"] == "sampler"
    assert run.history_loss[-1].mean() < run.history_loss[0].mean()


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (lambda b, g: torch.zeros(b, 3, 6), r"shape \(\d+, 3, 6\); it must return .*\[\d+, 2, 6\]"),
        (lambda b, g: torch.zeros(b, 2, 6, dtype=torch.long), "a torch.int64 tensor"),
        (lambda b, g: [[0.0]], "returned a list"),
    ],
)
def test_a_sampler_returning_the_wrong_shape_or_dtype_is_refused(returned, message):
    with pytest.raises(ConfigError, match=message):
        train(_config(source="sampler"), progress=False, sampler=returned)


def test_a_sampler_needs_its_source_and_the_source_its_sampler():
    with pytest.raises(ConfigError, match="data source 'sampler' needs a sampler"):
        train(_config(source="sampler"), progress=False)
    with pytest.raises(ConfigError, match="a sampler was passed but the data source is 'fresh'"):
        train(_config(), progress=False, sampler=lambda b, g: torch.zeros(b, 2, 6))


def test_fresh_source_held_out_batches_do_not_depend_on_the_stacking():
    cfg = _config()
    spec = StepSpec(cfg, Instances.of(cfg), torch.device("cpu"), get_loss("mse"), "fresh")
    alone = StepSpec(cfg, Instances.of(cfg).rows(slice(1, 2)), torch.device("cpu"),
                     get_loss("mse"), "fresh")  # fmt: skip
    both = next(iter(FreshSource(spec).held_out(100)))[0]
    one = next(iter(FreshSource(alone).held_out(100)))[0]
    assert torch.equal(both[1], one[0])


# --------------------------------------------------------------------------------------------------
# the loop


def test_early_stop_ends_training_and_the_run_says_how_far_it_got():
    stopper = EarlyStop(patience=1, min_delta=0.5)
    run = train(_config(steps=400, log_every=10), progress=False, hooks=[stopper])
    assert stopper.stopped_at is not None and stopper.stopped_at < 399
    assert run.info["steps_done"] == stopper.stopped_at + 1
    assert int(run.history_steps[-1]) == stopper.stopped_at
    with pytest.raises(ConfigError, match="patience must be an integer >= 1, got 0"):
        EarlyStop(patience=0)


def test_a_callback_can_stop_training():
    def stop_at_20(info):
        info.stop = info.step >= 20

    run = train(_config(steps=200), progress=False, callbacks=[stop_at_20])
    assert run.info["steps_done"] == 21
