"""What a sweep costs beyond its training, and Section 3's phase diagram end to end.

Run:  .venv/bin/python benchmarks/bench_sweep.py [--steps N] [--repeats R] [--phase-diagram]

(a) overhead: a sweep of K = 40 points (40 densities log-spaced 1..0.01, 3 seeds each, n=20, m=5)
    run end to end by ``run_sweep`` into a fresh folder (planning, training, one run directory per
    point, the table) against one ``train`` of a single RunConfig holding the same 120 instances
    (40 densities x 3), in the same process. Target: ratio <= 1.2.
(b) --phase-diagram: density (logspace 1..0.01, 40) x relative importance (logspace 0.1..10, 40)
    x 3 seeds = 4,800 instances of n=2, m=1, batch 1024, 10,000 steps, end to end on the local
    backend. Target: under 10 minutes on 2 CPU cores. Takes a few minutes; run it on a quiet
    machine.

Each timing of (a) is repeated and the best kept (other processes only ever slow a run down).
The exit status is 0 when every target is met.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.sweep import Axis, SweepConfig, run_sweep
from superposition.training import train

OVERHEAD_TARGET = 1.2
PHASE_TARGET_S = 600.0


def overhead(steps: int, repeats: int, scratch: Path) -> bool:
    densities = Axis.logspace("density", 0, -2, 40).values
    base = RunConfig(
        data=DataConfig(n_features=20, importance_decay=(0.7,)),
        model=ModelConfig(kind="relu", n_hidden=5),
        train=TrainConfig(steps=steps, instances=3, device="cpu", log_every=100),
    )
    sweep = SweepConfig(base, (Axis("density", densities),))
    single = RunConfig(
        data=DataConfig(n_features=20, density=densities, importance_decay=(0.7,)),
        model=base.model,
        train=base.train,
    )
    assert single.n_instances == sweep.n_instances == 120
    train(RunConfig(data=base.data, model=base.model, train=TrainConfig(steps=5)), progress=False)

    best_sweep = best_train = float("inf")
    chunks = 0
    for r in range(repeats):
        started = time.perf_counter()
        train(single, progress=False)
        best_train = min(best_train, time.perf_counter() - started)
        out = scratch / f"overhead-{r}"
        started = time.perf_counter()
        result = run_sweep(sweep, out, progress=False)
        best_sweep = min(best_sweep, time.perf_counter() - started)
        chunks = result.info["chunks"]
        shutil.rmtree(out)
    ratio = best_sweep / best_train
    ok = ratio <= OVERHEAD_TARGET
    print(
        f"overhead: {sweep.n_points} points x 3 seeds (n=20, m=5, {steps} steps) in {chunks} "
        f"chunk(s): sweep {best_sweep:.2f} s, one train() of 120 instances {best_train:.2f} s, "
        f"ratio {ratio:.3f} (target <= {OVERHEAD_TARGET}) {'PASS' if ok else 'FAIL'}"
    )
    return ok


def phase_diagram(scratch: Path, steps: int) -> bool:
    base = RunConfig(
        data=DataConfig(n_features=2),
        model=ModelConfig(kind="relu", n_hidden=1),
        train=TrainConfig(steps=steps, batch_size=1024, instances=3, device="cpu"),
    )
    sweep = SweepConfig(
        base,
        (Axis.logspace("density", 0, -2, 40), Axis.logspace("relative_importance", -1, 1, 40)),
    )
    started = time.perf_counter()
    result = run_sweep(sweep, scratch / "phase", progress=None)
    elapsed = time.perf_counter() - started
    labels = {label for label in result.grid("geometry").ravel()}
    ok = elapsed < PHASE_TARGET_S or steps != 10_000
    print(
        f"phase diagram: {sweep.describe()} x 3 seeds = {sweep.n_instances} instances, {steps} "
        f"steps, {result.info['chunks']} chunk(s): {elapsed:.1f} s end to end "
        f"(target < {PHASE_TARGET_S:.0f} s) {'PASS' if ok else 'FAIL'}; geometries: "
        f"{', '.join(sorted(labels))}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="Steps of the overhead case.")
    parser.add_argument("--repeats", type=int, default=2, help="Timings of each side.")
    parser.add_argument(
        "--phase-diagram", action="store_true", help="Also run the 40 x 40 x 3 phase diagram."
    )
    parser.add_argument(
        "--phase-steps", type=int, default=10_000, help="Phase-diagram steps (paper: 10,000)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        ok = overhead(args.steps, args.repeats, Path(tmp))
        if args.phase_diagram:
            ok = phase_diagram(Path(tmp), args.phase_steps) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
