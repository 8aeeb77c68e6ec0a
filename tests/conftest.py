"""Shared fixtures: tiny configs, and runs made up without training (for storage tests)."""

import shutil

import pytest
import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.results import Run

# Debian's chromium, driven by Playwright with executable_path (never `playwright install`)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# flags that let Chromium run as root on a closed network without trying to reach Google
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def tiny_config(kind: str = "relu", **train: object) -> RunConfig:
    """5 features in 2 dimensions, two densities x 2 seeds, a few hundred small steps."""
    options: dict[str, object] = {
        "steps": 200,
        "batch_size": 64,
        "instances": 2,
        "eval_samples": 1000,
        "log_every": 50,
        "device": "cpu",
    }
    options.update(train)
    return RunConfig(
        data=DataConfig(n_features=5, density=(1.0, 0.3), importance_decay=(0.9,)),
        model=ModelConfig(kind=kind, n_hidden=2),  # type: ignore[arg-type]
        train=TrainConfig(**options),  # type: ignore[arg-type]
    )


def fake_run(config: RunConfig, seed: int = 0) -> Run:
    """A run with random parameters of the right shapes (as if trained), snapshots included."""
    gen = torch.Generator().manual_seed(seed)
    inst, n, m = config.n_instances, config.data.n_features, config.model.n_hidden
    params = {"W": torch.randn(inst, n, m, generator=gen), "b": torch.randn(inst, n, generator=gen)}
    if not config.model.is_tied:
        params["W_dec"] = torch.randn(inst, n, m, generator=gen)
    steps = sorted(set(config.train.snapshot_steps))
    snapshots = {k: torch.randn(len(steps), *v.shape, generator=gen) for k, v in params.items()}
    log = list(range(0, config.train.steps, config.train.log_every)) + [config.train.steps - 1]
    return Run(
        config=config,
        params=params,
        loss=torch.rand(inst, generator=gen),
        history_steps=torch.tensor(log, dtype=torch.long),
        history_loss=torch.rand(len(log), inst, generator=gen),
        snapshots=snapshots if steps else {},
        info={"device": "cpu", "seconds": 0.5, "note": ["a", 1, None]},
    )


@pytest.fixture
def tiny_run() -> Run:
    """A made-up run of :func:`tiny_config` with snapshots at steps 0, 100 and 200."""
    return fake_run(tiny_config(snapshot_steps=(0, 100, 200)))
