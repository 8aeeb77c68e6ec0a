"""The scaling experiment (Liu, Liu & Gore 2025): the power-law fit, the feature frequencies,
negative weight decay (accepted, pulls rows toward unit norm, refused when not finite), and the
quick experiment end to end."""

import math
from pathlib import Path

import pytest
import torch

import superposition as sp
from superposition.cli import main
from superposition.errors import ConfigError
from superposition.experiments import scaling

# --------------------------------------------------------------------------------------------------
# the fit and the frequencies


def test_power_law_fit_is_exact_on_synthetic_data() -> None:
    ms = [8, 11, 16, 23, 32, 45]
    law = scaling.power_law_fit(ms, [3.0 * m**-0.7 for m in ms])
    assert law.exponent == pytest.approx(0.7, abs=1e-12)
    assert law.prefactor == pytest.approx(3.0, rel=1e-12)
    assert law.stderr == pytest.approx(0.0, abs=1e-9)
    assert law(10.0) == pytest.approx(3.0 * 10**-0.7, rel=1e-12)
    # a noisy line has a positive standard error
    noisy = scaling.power_law_fit(ms, [m**-1.0 * (1.1 if i % 2 else 0.9) for i, m in enumerate(ms)])
    assert noisy.stderr > 0 and abs(noisy.exponent - 1.0) < 0.2
    with pytest.raises(ConfigError, match="two or more distinct widths"):
        scaling.power_law_fit([8, 8], [1.0, 0.5])
    with pytest.raises(ConfigError, match="finite losses > 0"):
        scaling.power_law_fit([8, 16], [1.0, 0.0])


def test_frequencies_and_tail_mass() -> None:
    p = scaling.frequencies(4, 1.0)
    total = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert p == pytest.approx([1 / total, 0.5 / total, (1 / 3) / total, 0.25 / total], rel=1e-12)
    assert sum(p) == pytest.approx(1.0, rel=1e-12)
    assert scaling.tail_mass(p, 2) == pytest.approx((1 / 3 + 1 / 4) / total, rel=1e-12)
    assert scaling.tail_mass(p, 4) == 0.0
    # the run's densities reproduce p_i, and alpha reads back from them
    cfg = scaling.configs(quick=True)[scaling.run_name(1.25, 1.0, 6)]
    dens = cfg.data.feature_densities(cfg.data.density[0])
    torch.testing.assert_close(
        torch.tensor(dens), torch.tensor(scaling.frequencies(scaling.QUICK_FEATURES, 1.25))
    )
    with pytest.raises(ConfigError, match="alpha must be a finite number >= 0, got nan"):
        scaling.frequencies(4, math.nan)


# --------------------------------------------------------------------------------------------------
# negative weight decay


def _tiny(weight_decay: float, optimizer: str = "adamw") -> sp.RunConfig:
    return sp.RunConfig(
        data=sp.DataConfig(n_features=20, density=0.05),
        model=sp.ModelConfig(kind="relu", n_hidden=3),
        train=sp.TrainConfig(
            steps=150, batch_size=64, lr=1e-2, weight_decay=weight_decay,
            optimizer=optimizer, eval_samples=256, log_every=50,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_negative_weight_decay_grows_rows_toward_unit_norm(optimizer: str) -> None:
    zero = sp.train(_tiny(0.0, optimizer))
    grow = sp.train(_tiny(-1.0, optimizer))
    rows_zero, rows_grow = zero.W[0].norm(dim=-1), grow.W[0].norm(dim=-1)
    assert float(rows_grow.norm()) > float(rows_zero.norm())
    # 20 features in 3 dimensions: without decay most stay short; the pull brings all near 1
    assert int((rows_zero > 0.5).sum()) < 20
    assert int((rows_grow > 0.5).sum()) == 20
    assert float((rows_grow - 1).abs().max()) < 0.5
    assert torch.isfinite(grow.loss).all()


def test_weight_decay_range() -> None:
    assert sp.TrainConfig(weight_decay=-1.0).weight_decay == -1.0
    for bad, words in ((-1.5, "[-1.0, 1.0], got -1.5"), (math.inf, "finite number, got inf")):
        with pytest.raises(ConfigError, match=r"weight_decay must be"):
            sp.TrainConfig(weight_decay=bad)
        try:
            sp.TrainConfig(weight_decay=bad)
        except ConfigError as exc:
            assert words in str(exc)


@pytest.mark.parametrize("value", ["nan", "inf", "-2"])
def test_cli_refuses_a_bad_weight_decay(tmp_path: Path, capsys, value: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    code = main(["train", "--steps", "2", "--no-progress", f"--weight-decay={value}",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "weight_decay" in err
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# the experiment's claims and figures on tiny runs (the --quick preset takes minutes)


def test_claims_and_figures_on_tiny_runs(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from superposition.plots import scaling as plots
    from superposition.store import load_run, save_run

    runs = {
        scaling.run_name(1.25, wd, m): sp.train(scaling.config(60, 1.25, wd, m, steps=300))
        for wd in scaling.WEIGHT_DECAYS
        for m in (3, 6)
    }
    claims = scaling.claims(runs)
    assert len(claims) == 4
    # the pull toward unit rows keeps more features than weight decay 1 at every m (claim 4)
    assert claims[3].holds, claims[3].measured
    by = scaling.series(runs)
    assert sorted(by) == [(1.25, wd) for wd in scaling.WEIGHT_DECAYS]
    assert [p.m for p in by[(1.25, 1.0)]] == [3, 6]
    for strong, weak in zip(by[(1.25, -1.0)], by[(1.25, 1.0)], strict=True):
        assert strong.fraction > weak.fraction
    # a saved run measures the same (the figures and claims need only the run directories)
    name = scaling.run_name(1.25, 1.0, 6)
    save_run(runs[name], tmp_path / name)
    assert scaling.measure(load_run(tmp_path / name)) == scaling.measure(runs[name])
    fig = plots.loss(runs)
    assert len(fig.axes) == 3
    labels = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert any("exponent" in t for t in labels) and any("account" in t for t in labels)
    plt.close(fig)
    plt.close(plots.represented(runs))
