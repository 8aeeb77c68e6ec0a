"""The explorer's default training (5 features in 2 dimensions, 4 seeds, 5,000 steps) against the
same model trained the notebook's way, in one process.

Run:  .venv/bin/python benchmarks/bench_explore.py [--repeats R]

The explorer's side is what pressing Train does: :class:`superposition.explore.job.Trainer` (after
its start-up warm-up) trains the page's default form in its background thread, with its live
callback recording every logged step. The reference is ``bench_train.reference_train`` (the
notebook's trainer) on the same model. Prints both times and the ratio; the target is a 5-in-2
model trained live in under two seconds. Each side is timed --repeats times and the best kept.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import reference_train  # noqa: E402

from superposition.data import FeatureDistribution, importance_from_config  # noqa: E402
from superposition.explore.form import FIELDS, parse_form  # noqa: E402
from superposition.explore.job import Trainer  # noqa: E402

TARGET_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config, form = parse_form({f.name: f.default for f in FIELDS})
    trainer = Trainer()
    trainer.warm_up()
    ours = []
    for _ in range(args.repeats):
        trainer.start(config, form)
        trainer.wait()
        status = trainer.status()
        assert status["state"] == "done", status
        ours.append(float(status["seconds"]))
    dist = FeatureDistribution.from_config(config)
    importance = importance_from_config(config)
    ref = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference_train(dist.density, importance, config.model.n_hidden, config.train.steps,
                        config.train.batch_size)  # fmt: skip
        ref.append(time.perf_counter() - start)
    t_ours, t_ref = min(ours), min(ref)
    d = config.data
    print(f"explorer default: {d.n_features} features in {config.model.n_hidden} dimensions, "
          f"density {d.density[0]:g}, {config.train.instances} seeds, {config.train.steps} steps")
    print(f"  explorer (live, background thread): {t_ours:6.2f} s "
          f"(target < {TARGET_SECONDS:g} s: {'PASS' if t_ours < TARGET_SECONDS else 'FAIL'})")
    print(f"  reference (the notebook's trainer): {t_ref:6.2f} s")
    print(f"  ratio {t_ref / t_ours:.1f}x")
    return 0 if t_ours < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
