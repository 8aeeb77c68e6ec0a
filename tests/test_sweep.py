"""Sweeps: grids, validation, planning, the local backend, the folder, the table and the CLI."""

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from superposition.cli import main
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError, RunDirError
from superposition.store import load_run
from superposition.sweep import (
    Axis,
    LocalBackend,
    SweepConfig,
    SweepResult,
    done_points,
    plan_chunks,
    point_dir,
    run_sweep,
    table_columns,
    train_chunk,
)
from superposition.training import train

TRAIN = {"steps": 200, "batch_size": 64, "instances": 2, "eval_samples": 500, "log_every": 50}


def base_config(n: int = 2, m: int = 1, **train_options: object) -> RunConfig:
    return RunConfig(
        data=DataConfig(n_features=n),
        model=ModelConfig(n_hidden=m),
        train=TrainConfig(**{**TRAIN, "device": "cpu", **train_options}),  # type: ignore[arg-type]
    )


def phase_sweep() -> SweepConfig:
    """Section 3's grid in miniature: 3 densities x 2 relative importances, n=2, m=1."""
    return SweepConfig(
        base_config(),
        (Axis.logspace("density", 0, -1, 3), Axis("relative_importance", [0.5, 2.0])),
    )


SWEEP_TOML = """\
[data]
n_features = 2
[model]
n_hidden = 1
[train]
steps = 200
batch_size = 64
instances = 2
eval_samples = 500
log_every = 50
device = "cpu"
[axes]
density = {logspace = [0, -1, 3]}
relative_importance = [0.5, 2.0]
"""


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():  # type: ignore[no-untyped-def]
    """Tiny trainings on one thread: numba's parallel regions over a handful of instances wait for
    every thread of the pool, which on a busy machine costs far more than the work itself."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(threads)


@pytest.fixture(scope="module")
def phase(one_numba_thread, tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """The sweep in the default, compact layout."""
    return run_sweep(phase_sweep(), tmp_path_factory.mktemp("sweep") / "phase", progress=False)


@pytest.fixture(scope="module")
def phase_points(one_numba_thread, tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """The same sweep with a run directory per point."""
    out = tmp_path_factory.mktemp("sweep") / "phase"
    return run_sweep(phase_sweep(), out, progress=False, layout="points")


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def equal_runs(a, b) -> bool:  # type: ignore[no-untyped-def]
    return (
        a.config == b.config
        and a.params.keys() == b.params.keys()
        and all(torch.equal(a.params[k], b.params[k]) for k in a.params)
        and torch.equal(a.loss, b.loss)
        and torch.equal(a.history_loss, b.history_loss)
    )


# --------------------------------------------------------------------------------------------------
# axes and points


def test_axis_spellings() -> None:
    assert Axis("density", [1, 0.5]).values == (1.0, 0.5)
    assert Axis.linspace("lr", 1e-3, 3e-3, 3).values == pytest.approx((1e-3, 2e-3, 3e-3))
    log = Axis.logspace("density", 0, -2, 5)
    assert log.values == pytest.approx((1.0, 10**-0.5, 0.1, 10**-1.5, 0.01))
    seeds = Axis.linspace("seed", 0, 4, 5)
    assert seeds.values == (0, 1, 2, 3, 4) and all(type(v) is int for v in seeds.values)
    assert Axis("data.density", [0.1]).field == "density"
    assert Axis("model.n_hidden", [1.0, 2]).values == (1, 2)
    assert Axis.from_spec("density", {"logspace": [0, -1, 2]}).values == (1.0, 0.1)
    assert Axis.from_spec("kind", ["linear", "relu"]).values == ("linear", "relu")
    assert Axis.from_spec("seed", 3).values == (3,)
    assert Axis.from_spec("importance", {"values": [[1, 0.5], [1, 2]]}).values == (
        (1.0, 0.5),
        (1.0, 2.0),
    )


def test_points_product_first_axis_slowest() -> None:
    sweep = SweepConfig(
        base_config(n=3, m=2),
        (Axis("density", [1.0, 0.1]), Axis("n_hidden", [1, 2, 3]), Axis("seed", [7])),
    )
    assert sweep.shape == (2, 3, 1) and sweep.n_points == 6
    assert sweep.points[:4] == [
        {"density": 1.0, "n_hidden": 1, "seed": 7},
        {"density": 1.0, "n_hidden": 2, "seed": 7},
        {"density": 1.0, "n_hidden": 3, "seed": 7},
        {"density": 0.1, "n_hidden": 1, "seed": 7},
    ]
    config = sweep.point_config(4)
    assert config.data.density == (0.1,)  # a per-group field: one group per point
    assert config.model.n_hidden == 2 and config.train.seed == 7
    assert config.train.instances == 2 and config.data.n_features == 3
    assert sweep.n_instances == 12


def test_round_trip_and_id() -> None:
    sweep = phase_sweep()
    again = SweepConfig.from_dict(json.loads(json.dumps(sweep.to_dict())))
    assert again == sweep and again.sweep_id == sweep.sweep_id
    assert SweepConfig.from_toml_dict(_toml(SWEEP_TOML)) == sweep
    budget = dataclasses.replace(sweep.base.train, memory_budget_gb=0.5)
    same = SweepConfig(dataclasses.replace(sweep.base, train=budget), sweep.axes)
    assert same.sweep_id == sweep.sweep_id  # the budget changes the chunking, not the results
    other = SweepConfig(sweep.base, (Axis("density", [1.0, 0.1]), sweep.axes[1]))
    assert other.sweep_id != sweep.sweep_id


def _toml(text: str) -> dict:  # type: ignore[type-arg]
    import tomllib

    return tomllib.loads(text)


def test_dotted_axes_in_toml() -> None:
    raw = _toml('[axes]\ndata.density = [1, 0.1]\n"model.n_hidden" = [1, 2]\n')
    sweep = SweepConfig.from_toml_dict(raw)
    assert sweep.names == ("density", "n_hidden")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Axis("densty", [0.1]), "'densty' is not a config field; known fields: n_features"),
        (lambda: Axis("data.n_hidden", [1]), "'data.n_hidden' is not a config field"),
        (lambda: Axis("density", []), "axis density is empty"),
        (lambda: Axis("density", [0.1, 0.1]), "axis density has the value 0.1 twice"),
        (
            lambda: Axis("n_hidden", [1.5]),
            "axis n_hidden has the value 1.5; n_hidden takes integers",
        ),
        (lambda: Axis("density", ["a"]), "axis density has the value 'a'; it takes finite numbers"),
        (lambda: Axis("device", ["cpu"]), "device cannot be an axis"),
        (lambda: Axis.linspace("seed", 0, 1, 0), "linspace num must be an integer >= 1, got 0"),
        (lambda: Axis.from_spec("density", {"range": [1, 2]}), "one of values, linspace or"),
        (lambda: Axis.from_spec("density", {"logspace": [0, -1]}), "takes [start, stop, num]"),
        (
            lambda: SweepConfig(base_config(), (Axis("density", [1.0, 2.0]),)),
            "axis density value 2.0: density must be in (0",
        ),
        (
            lambda: SweepConfig(base_config(), (Axis("n_hidden", [0, 1]),)),
            "axis n_hidden value 0: n_hidden must be an integer >= 1, got 0",
        ),
        (
            lambda: SweepConfig(
                base_config(), (Axis("density", [1.0]), Axis("data.density", [0.1]))
            ),
            "two axes over density",
        ),
        (lambda: SweepConfig(base_config(), ()), "a sweep needs at least one axis"),
        (
            lambda: SweepConfig(
                RunConfig(data=DataConfig(density=(1.0, 0.1))), (Axis("n_hidden", [1, 2]),)
            ),
            "the base config has 2 values of density, but a sweep point is one group",
        ),
        (
            lambda: SweepConfig(
                RunConfig(data=DataConfig(n_features=2, importance=(1.0, 1.0))),
                (Axis("n_features", [2, 3]),),
            ),
            "axis n_features value 3: importance must have one value per feature",
        ),
        (lambda: SweepConfig.from_toml_dict({"data": {}}), "has no [axes] table"),
        (
            lambda: SweepConfig.from_toml_dict({"axes": {"seed": [1]}, "sweep": {}}),
            "unknown table 'sweep'; allowed: data, model, train, axes",
        ),
    ],
)
def test_bad_sweeps_say_what_is_wrong(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------------
# planning


def test_plan_packs_whole_points_into_few_chunks() -> None:
    sweep = SweepConfig(
        base_config(n=3), (Axis("n_hidden", [1, 2]), Axis("density", [1.0, 0.3, 0.1]))
    )
    plan = plan_chunks(sweep, range(sweep.n_points))
    assert [c.points for c in plan] == [(0, 1, 2), (3, 4, 5)]  # one training per shape
    assert [c.instances for c in plan] == [6, 6]
    assert [c.points for c in plan_chunks(sweep, [1, 2, 4])] == [(1, 2), (4,)]
    capped = plan_chunks(sweep, range(6), max_instances=4)
    assert [c.points for c in capped] == [(0, 1), (2,), (3, 4), (5,)]
    assert [c.points for c in plan_chunks(sweep, range(6), parallel=3)] == [
        (0,), (1,), (2,), (3,), (4,), (5,)
    ]  # fmt: skip
    # a memory budget that holds 4 instances of this config packs 2 points per chunk
    from superposition.training import bytes_per_instance

    small = sweep.point_config(0)
    budget = 4.5 * bytes_per_instance(small) / 2**30
    tight = SweepConfig(
        dataclasses.replace(
            sweep.base, train=dataclasses.replace(sweep.base.train, memory_budget_gb=budget)
        ),
        (Axis("density", [1.0, 0.3, 0.1]),),
    )
    assert [c.points for c in plan_chunks(tight, range(3))] == [(0, 1), (2,)]


# --------------------------------------------------------------------------------------------------
# a small sweep, run locally


def test_points_equal_training_each_alone(phase: SweepResult) -> None:
    sweep = phase.sweep
    assert phase.info["chunks"] == 1 and phase.info["trained_points"] == 6
    for i in (0, 3, 5):
        assert equal_runs(phase.run(i), train(sweep.point_config(i), progress=False)), i


def test_table_and_csv(phase: SweepResult) -> None:
    rows = phase.table()
    assert [r["point"] for r in rows] == list(range(6))
    assert [(r["density"], r["relative_importance"]) for r in rows] == [
        (d, q) for d in (1.0, 10**-0.5, 0.1) for q in (0.5, 2.0)
    ]
    with open(phase.path / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == table_columns(phase.sweep)
    assert list(csv_rows[0])[:8] == [
        "point", "density", "relative_importance", "best_instance", "best_loss", "mean_loss",
        "dimensions_per_feature", "geometry",
    ]  # fmt: skip
    assert {"norm_0", "norm_1", "dimensionality_1", "superposition_0"} <= set(csv_rows[0])
    for row, raw in zip(rows, csv_rows, strict=True):
        run = phase.run(row["point"])
        best = int(torch.argmin(run.loss))
        assert row["best_instance"] == best == int(raw["best_instance"])
        assert row["best_loss"] == float(run.loss[best]) == float(raw["best_loss"])
        assert row["mean_loss"] == pytest.approx(float(run.loss.mean()))
        norms = torch.linalg.vector_norm(run.W[best], dim=-1)
        assert [row["norm_0"], row["norm_1"]] == pytest.approx(norms.tolist())
        assert raw["geometry"] == row["geometry"] != ""
    # sparse points store both features as an antipodal pair (Section 3)
    assert rows[-1]["geometry"] == "antipodal pair"
    # reloading reads the CSV back with the same types and values
    loaded = SweepResult.load(phase.path)
    assert loaded.table() == rows and loaded.sweep == phase.sweep


@pytest.mark.parametrize("gone", [("results.csv",), ("results.csv", "metrics.json")])
def test_table_rebuilds_from_the_points(
    phase: SweepResult, phase_points: SweepResult, tmp_path: Path, gone: tuple[str, ...]
) -> None:
    import shutil

    for result in (phase, phase_points):
        copy = tmp_path / result.layout
        shutil.copytree(result.path, copy)
        for name in gone:
            (copy / name).unlink(missing_ok=True)
        assert SweepResult.load(copy).table() == phase.table()


# --------------------------------------------------------------------------------------------------
# the two layouts


def test_layouts_hold_the_same_results(phase: SweepResult, phase_points: SweepResult) -> None:
    """The compact folder is four files; the points folder a run directory per point; loading,
    the table, select and every run agree bit for bit."""
    assert (phase.layout, phase_points.layout) == ("compact", "points")
    assert files_in(phase.path) == [
        "metrics.json", "points.safetensors", "results.csv", "sweep.json"
    ]  # fmt: skip
    assert len(files_in(phase_points.path)) == 2 + 4 * phase.sweep.n_points
    assert (phase.path / "results.csv").read_bytes() == (
        phase_points.path / "results.csv"
    ).read_bytes()
    a, b = SweepResult.load(phase.path), SweepResult.load(phase_points.path)
    assert (a.layout, b.layout) == ("compact", "points")
    assert a.table() == b.table() == phase.table()
    for i in range(phase.sweep.n_points):
        ra, rb = a.run(i), b.run(i)
        assert equal_runs(ra, rb), i
        timing = ("seconds", "steps_per_second")  # two trainings: the clock differs
        assert {k: v for k, v in ra.info.items() if k not in timing} == {
            k: v for k, v in rb.info.items() if k not in timing
        }
        assert ra.info["sweep"] == {
            "id": phase.sweep.sweep_id, "point": i, "values": phase.sweep.point_values(i)
        }  # fmt: skip
    values = {"density": 0.3, "relative_importance": 2.0}
    assert equal_runs(a.select(**values, nearest=True), b.select(**values, nearest=True))
    assert equal_runs(b.run(5), load_run(point_dir(b.path, b.sweep, 5)))
    # metrics.json holds, per point, what the point's run directory's metrics.json holds
    metrics = json.loads((phase.path / "metrics.json").read_text())["points"]
    for i in (0, 5):
        own = json.loads((point_dir(b.path, b.sweep, i) / "metrics.json").read_text())
        assert metrics[i] == own


def test_file_count_does_not_grow_with_points(tmp_path: Path) -> None:
    """A 10 x 10 grid (Section 3's phase diagram, coarser) is the same four files as a 2-point
    sweep: one weights file, one metrics table, the table and sweep.json. (The points layout
    writes a folder of four files and an empty figures/ folder per point.)"""
    base = base_config(steps=5, instances=1, eval_samples=64, log_every=5)
    big = SweepConfig(
        base,
        (Axis.logspace("density", 0, -2, 10), Axis.logspace("relative_importance", -1, 1, 10)),
    )
    small = SweepConfig(base, (Axis("density", [1.0, 0.1]),))
    for sweep, name in ((big, "big"), (small, "small")):
        result = run_sweep(sweep, tmp_path / name, progress=False)
        assert len(result.table()) == sweep.n_points
    assert files_in(tmp_path / "big") == files_in(tmp_path / "small")
    assert len(files_in(tmp_path / "big")) == 4
    loaded = SweepResult.load(tmp_path / "big")
    assert loaded.grid("best_loss").shape == (10, 10)
    last = big.n_points - 1
    assert equal_runs(loaded.run(last), train(big.point_config(last), progress=False))


class StopAfter(LocalBackend):
    """Trains the first ``n`` chunks, then is interrupted (as by Ctrl-C); remembers what it
    trained."""

    def __init__(self, n: int | None = None):
        self.n = n
        self.trained: list[int] = []

    def run(self, sweep, chunks, report, write) -> None:  # type: ignore[no-untyped-def]
        for k, chunk in enumerate(chunks):
            if k == self.n:
                raise KeyboardInterrupt
            self.trained += chunk.points
            write(train_chunk(sweep, chunk.points, report))


@pytest.mark.parametrize("layout", ["compact", "points"])
def test_interrupted_sweep_resumes_in_its_layout(
    phase: SweepResult, tmp_path: Path, layout: str
) -> None:
    out = tmp_path / "out"
    first = StopAfter(2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(phase.sweep, out, backend=first, progress=False, layout=layout,
                  max_chunk_instances=2)  # fmt: skip
    assert first.trained == [0, 1]
    assert done_points(out, phase.sweep) == [0, 1]  # each finished batch is on disk, whole
    with pytest.raises(RunDirError, match="is not finished: 4 of 6 points are missing"):
        SweepResult.load(out)
    if layout == "compact":
        assert len(list((out / "parts").iterdir())) == 2  # a file per finished chunk
    other = "points" if layout == "compact" else "compact"
    with pytest.raises(ConfigError, match=f"holds this sweep in the {layout} layout, not {other}"):
        run_sweep(phase.sweep, out, progress=False, layout=other)
    rest = StopAfter()
    result = run_sweep(phase.sweep, out, backend=rest, progress=False)  # its own layout
    assert rest.trained == [2, 3, 4, 5] and result.layout == layout
    assert result.info["kept_points"] == 2 and result.info["trained_points"] == 4
    assert result.table() == phase.table()
    for i in range(phase.sweep.n_points):
        assert equal_runs(result.run(i), phase.run(i)), i
    if layout == "compact":
        assert len(files_in(out)) == 4  # the parts are merged into one file


def test_grid_and_select(phase: SweepResult) -> None:
    loss = phase.grid("best_loss")
    assert loss.shape == (3, 2) and loss.dtype == np.float64
    assert loss[2, 1] == phase.table()[5]["best_loss"]
    labels = phase.grid("geometry")
    assert labels.shape == (3, 2) and labels[2, 1] == "antipodal pair"
    run = phase.select(density=0.1, relative_importance=2.0)
    assert equal_runs(run, train(phase.sweep.point_config(5), progress=False))
    near = phase.select(density=0.3, relative_importance=0.5, nearest=True)
    assert near.config.data.density == (10**-0.5,)
    with pytest.raises(ConfigError, match=r"density=0\.3 is not on the axis .*nearest=True"):
        phase.select(density=0.3, relative_importance=0.5)
    with pytest.raises(ConfigError, match="give a value of relative_importance too"):
        phase.select(density=0.1)
    with pytest.raises(ConfigError, match="'lr' is not an axis of this sweep"):
        phase.select(lr=0.1)
    with pytest.raises(ConfigError, match="no column 'loss'"):
        phase.grid("loss")
    values = [v for v, _ in phase.runs()]
    assert values == phase.points


def test_shapes_in_several_trainings(tmp_path: Path) -> None:
    """An n_hidden axis changes shapes: one training per shape. An n_features axis too, and the
    per-feature columns become JSON lists since the points have different numbers of features."""
    sweep = SweepConfig(
        base_config(n=3, steps=30, instances=1),
        (Axis("n_hidden", [1, 2]), Axis("density", [1.0, 0.1])),
    )
    result = run_sweep(sweep, tmp_path / "m", progress=False)
    assert result.info["chunks"] == 2
    assert [result.run(i).W.shape[-1] for i in range(4)] == [1, 1, 2, 2]
    assert "norm_2" in result.table()[0]
    for i in (0, 3):
        assert equal_runs(result.run(i), train(sweep.point_config(i), progress=False))

    by_n = SweepConfig(base_config(steps=30, instances=1), (Axis("n_features", [2, 3]),))
    result = run_sweep(by_n, tmp_path / "n", progress=False)
    rows = result.table()
    assert len(rows[0]["norm"]) == 2 and len(rows[1]["norm"]) == 3
    assert SweepResult.load(tmp_path / "n").table() == rows
    with open(tmp_path / "n" / "results.csv", newline="") as f:
        cell = list(csv.DictReader(f))[1]["norm"]
    assert len(json.loads(cell)) == 3


# --------------------------------------------------------------------------------------------------
# the folder: resume, a different sweep, things that are not sweeps


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    stats = {p.name: (p / "weights.safetensors").stat() for p in (folder / "points").iterdir()}
    return {name: (st.st_ino, st.st_mtime_ns) for name, st in stats.items()}


def test_resume_trains_only_missing_points(phase_points: SweepResult, tmp_path: Path) -> None:
    import shutil

    phase = phase_points
    copy = tmp_path / "copy"
    shutil.copytree(phase.path, copy)
    for i in (1, 4):
        shutil.rmtree(point_dir(copy, phase.sweep, i))
    (copy / "results.csv").unlink()
    before = _stamps(copy)
    result = run_sweep(phase.sweep, copy, progress=False)
    assert result.info["trained_points"] == 2 and result.info["kept_points"] == 4
    after = _stamps(copy)
    assert all(after[name] == stamp for name, stamp in before.items())  # not retrained
    assert result.table() == phase.table()
    for i in (1, 4):
        assert equal_runs(result.run(i), phase.run(i))
    again = run_sweep(phase.sweep, copy, progress=False)  # all done: nothing to train
    assert again.info["trained_points"] == 0 and _stamps(copy) == after


def test_folder_holding_another_sweep(phase_points: SweepResult, tmp_path: Path) -> None:
    import shutil

    phase = phase_points
    copy = tmp_path / "copy"
    shutil.copytree(phase.path, copy)
    other = SweepConfig(base_config(steps=20, instances=1), (Axis("density", [1.0]),))
    sweep_json = (copy / "sweep.json").read_text()
    with pytest.raises(ConfigError, match="holds a different sweep .*pass --force"):
        run_sweep(other, copy, progress=False)
    assert (copy / "sweep.json").read_text() == sweep_json
    assert len(list((copy / "points").iterdir())) == 6
    result = run_sweep(other, copy, progress=False, force=True, layout="points")
    assert result.sweep == other and len(list((copy / "points").iterdir())) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temporary folder left


def test_refuses_what_is_not_a_sweep(tmp_path: Path) -> None:
    sweep = SweepConfig(base_config(steps=20, instances=1), (Axis("density", [1.0]),))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(ConfigError, match="is a folder that is not a sweep"):
            run_sweep(sweep, busy, progress=False, force=force)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        run_sweep(sweep, tmp_path / "file", progress=False)
    with pytest.raises(ConfigError, match="max_chunk_instances must be an integer >= 1"):
        run_sweep(sweep, tmp_path / "new", max_chunk_instances=0)
    with pytest.raises(ConfigError, match="layout must be one of compact, points; got 'runs'"):
        run_sweep(sweep, tmp_path / "new", layout="runs")
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------------------------------
# the command line


def test_cli_sweep_end_to_end(phase: SweepResult, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "phase.toml"
    spec.write_text(SWEEP_TOML)
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out), "--no-progress", "--steps", "20"]
    code = main([*argv, "--chunk-instances", "4"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "density x relative_importance = 3 x 2 points, 2 seed(s) each (12 instances)" in stdout
    assert "trained 6 point(s) in 3 chunk(s) on the local backend" in stdout
    assert str(out / "results.csv") in stdout
    result = SweepResult.load(out)
    short = dataclasses.replace(phase.sweep.base.train, steps=20)
    assert result.sweep == SweepConfig(
        dataclasses.replace(phase.sweep.base, train=short), phase.sweep.axes
    )
    assert len(result.table()) == 6

    assert str(out / "points.safetensors") in stdout and len(files_in(out)) == 4

    code = main(argv)  # the same command again: everything is done
    stdout, _ = capsys.readouterr()
    assert code == 0 and "trained 0 point(s) in 0 chunk(s)" in stdout
    assert "6 kept from an earlier run" in stdout

    code = main([*argv, "--layout", "points"])  # not how this folder keeps its points
    _, err = capsys.readouterr()
    assert code == 2 and "holds this sweep in the compact layout, not points" in err
    code = main([*argv[:3], str(tmp_path / "runs"), *argv[4:], "--layout", "points"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert str(tmp_path / "runs" / "points") in stdout
    assert SweepResult.load(tmp_path / "runs").table() == result.table()


@pytest.mark.parametrize(
    ("axes", "extra", "message"),
    [
        ("densty = [1, 0.1]", [], "axis 'densty' is not a config field; known fields:"),
        ("density = []", [], "axis density is empty"),
        ("density = [1, 2.0]", [], "axis density value 2.0: density must be in (0"),
        ("density = {logspace = [0, -1]}", [], "logspace takes [start, stop, num]"),
        ("density = [1, 0.1]", ["--density", "0.5"], "--density sets density, which is an axis"),
        ("density = [1, 0.1]", ["--address", "127.0.0.1:1"], "--address is for the ray backend"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path: Path, capsys, axes: str, extra: list[str], message: str):  # type: ignore[no-untyped-def]  # noqa: E501
    spec = tmp_path / "bad.toml"
    spec.write_text("[data]\nn_features = 2\n[axes]\n" + axes + "\n")
    out = tmp_path / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--no-progress", *extra])
    stdout, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_cli_refuses_other_sweep_folder(phase: SweepResult, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(phase.path, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    spec = tmp_path / "other.toml"
    spec.write_text(SWEEP_TOML.replace("[0.5, 2.0]", "[0.5, 3.0]"))
    code = main(["sweep", str(spec), "--out", str(copy), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2
    assert f"error: {copy} holds a different sweep" in err and "--force" in err
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    code = main(["sweep", str(tmp_path / "missing.toml"), "--out", str(copy)])
    _, err = capsys.readouterr()
    assert code == 2 and "does not exist" in err


def test_infinite_dimensions_per_feature_round_trips() -> None:
    # an all-zero W has m / ||W||^2 = inf: the CSV spells it 'inf' and reads it back
    from superposition.sweep.folder import _cell

    assert _cell(math.inf) == "inf" and float(_cell(math.inf)) == math.inf
