"""Draw the small PNGs the documentation shows (docs/img/), from short trainings on the CPU.

    PYTHONPATH=src python scripts/docs_figures.py        # about a minute on 2 cores

The figures are the same functions `superposition train --plot` and `superposition reproduce`
call; the trainings are shorter than the paper's (fewer steps and seeds), enough for the shapes
the pages describe. Re-run after changing a figure; keep the files small (low dpi).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import superposition as sp  # noqa: E402
from superposition.plots import demonstrating_superposition, intro, runs  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
DPI = 70


def save(fig: object, name: str) -> None:
    path = OUT / name
    fig.savefig(path, dpi=DPI)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    print(f"{path.relative_to(OUT.parents[1])}: {path.stat().st_size // 1024} KiB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    # Introduction: 5 features in 2 dimensions, as examples/train.toml
    five = sp.train(
        sp.RunConfig(
            data=sp.DataConfig(n_features=5, density=(1.0, 0.3, 0.1, 0.03), importance_decay=0.9),
            model=sp.ModelConfig(kind="relu", n_hidden=2),
            train=sp.TrainConfig(instances=4, steps=4000, seed=0, device="cpu"),
        ),
        progress=False,
    )
    save(intro.polygons(five), "intro-polygons.png")
    save(runs.loss_curves(five), "loss-curves.png")
    # Section 2: 20 features in 5 dimensions, linear and ReLU output
    section2 = {}
    for kind in ("linear", "relu"):
        section2[kind] = sp.train(
            sp.RunConfig(
                data=sp.DataConfig(n_features=20, density=(1.0, 0.1, 0.01), importance_decay=0.7),
                model=sp.ModelConfig(kind=kind, n_hidden=5),
                train=sp.TrainConfig(instances=2, steps=3000, seed=0, device="cpu"),
            ),
            progress=False,
        )
    save(runs.gram_and_bias(section2["relu"]), "demonstrating-gram.png")
    save(
        demonstrating_superposition.norm_bars(list(section2.values()), "best seed per density"),
        "demonstrating-norm-bars.png",
    )


if __name__ == "__main__":
    main()
