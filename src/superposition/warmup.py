"""Compile every CPU kernel ahead of time: ``superposition warmup`` (or ``python -m
superposition.warmup``), run once at set-up.

numba compiles the kernels the first time they run and keeps them in its cache
(:mod:`superposition.jit`), so the first training after an install waits for the compiler. Here a
few tiny trainings run each kernel with the argument types training uses (the fused and the
sparse toy steps, in both sampling modes, with correlated features and a finite training set, and
the fused SAE step, and the sparse SAE steps of every architecture on a synthetic model), so that
every later run, the explorer's first Train and the SAE leaderboard included, loads them from the
cache. With a warm cache this takes a few seconds.
"""

import time
from typing import Any

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def _configs() -> list[tuple[RunConfig, str]]:
    train = TrainConfig(instances=1, steps=2, batch_size=8, log_every=1, eval_samples=16)
    fused = RunConfig(
        # density 1 samples every coin, 0.001 draws geometric gaps, 0.5 is between (the
        # explorer's default): each picks its own sampling kernels
        data=DataConfig(n_features=5, density=(1.0, 0.5, 0.001)),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=train,
    )
    correlated = RunConfig(
        data=DataConfig(n_features=6, density=(0.5, 0.001), correlated=(2,), anticorrelated=(2,)),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=train,
    )
    finite = RunConfig(
        data=DataConfig(n_features=5, density=(0.1,), source="finite", dataset_size=16),
        model=ModelConfig(kind="relu", n_hidden=2),
        train=train,
    )
    sparse = RunConfig(
        data=DataConfig(n_features=40, density=(1.0, 0.5, 0.001)),
        model=ModelConfig(kind="relu", n_hidden=8),
        train=train,
    )
    # the explorer's own warm-up (superposition.explore.job.Trainer.warm_up): measured, its runs
    # still compiled a second version of two kernels after the runs above, so they run here too
    explorer = [
        RunConfig(
            data=DataConfig(n_features=n, density=(0.5,)),
            model=ModelConfig(n_hidden=m),
            train=TrainConfig(steps=2, batch_size=8, eval_samples=8, device="cpu"),
        )
        for n, m in ((5, 2), (20, 16))
    ]
    return [
        (fused, "fused"),
        (correlated, "fused"),
        (finite, "auto"),
        (sparse, "sparse"),
        *((config, "auto") for config in explorer),
    ]


def warm_up() -> float:
    """Run every kernel once (compiling it unless numba's cache has it); return the seconds."""
    from superposition.sae.config import SAEConfig
    from superposition.sae.train import train_sae
    from superposition.training import train

    started = time.perf_counter()
    runs = [train(config, progress=False, step=step) for config, step in _configs()]
    sae = SAEConfig(steps=2, batch_size=8, seeds=1, log_every=1, eval_samples=16)
    train_sae(runs[0], sae, progress=False, path="fused")
    _warm_sparse_saes()
    return time.perf_counter() - started


def _warm_sparse_saes() -> None:
    """The sparse SAE kernels (:mod:`superposition.sae.sparse`): a width of 128 at k = 2 keeps
    the k architectures under the sparse step's density bound; JumpReLU's threshold starts far
    above every pre-activation, so it takes the sparse step too (relu_l1 shares topk's kernel)."""
    from superposition.sae.config import SAEConfig
    from superposition.sae.synthetic import SyntheticConfig, SyntheticModel
    from superposition.sae.synthetic_train import train_synthetic

    model = SyntheticModel(SyntheticConfig(n_features=64, n_hidden=8, mean_active=2.0))
    common: dict[str, Any] = dict(n_latents=(128,), seeds=1, steps=2, batch_size=16, log_every=1,
                  eval_samples=16, device="cpu")  # fmt: skip
    for architecture in ("topk", "batchtopk", "matryoshka"):
        train_synthetic(model, SAEConfig(architecture=architecture, k=(2,), **common),
                        progress=False)  # fmt: skip
    jumprelu = SAEConfig(architecture="jumprelu", threshold_init=1e3, **common)
    train_synthetic(model, jumprelu, progress=False)


def main() -> None:
    from superposition.jit import cache_dir

    seconds = warm_up()
    print(f"CPU kernels ready in {seconds:.1f} s (cache: {cache_dir()})")


if __name__ == "__main__":
    main()
