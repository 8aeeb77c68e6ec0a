"""The CLI on the open training core: figures of any run or sweep (`plot`, `--plot`), and the new
training options (loss, data source) with their refusals."""

from pathlib import Path

from test_cli import TINY, assert_refused, run_cli

RUN_FIGURES = ("gram", "norms", "dimensionality", "polygons", "loss")
PNG = b"\x89PNG\r\n\x1a\n"


def _check_figures(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        png, svg = folder / f"{name}.png", folder / f"{name}.svg"
        assert png.read_bytes().startswith(PNG), png
        assert png.stat().st_size > 5_000, png
        assert svg.read_text().lstrip().startswith("<?xml"), svg
        assert svg.stat().st_size > 5_000, svg


def test_train_with_plot_writes_the_run_figures(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--n-features", "5", "--n-hidden", "2",
                           "--density", "1,0.1", "--out", str(out), "--plot")  # fmt: skip
    assert code == 0, err
    _check_figures(out / "figures", RUN_FIGURES)


def test_plot_on_a_fresh_run_and_on_a_sweep(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--n-hidden", "3", "--out", str(run_dir))
    assert code == 0, err
    assert list((run_dir / "figures").iterdir()) == []  # nothing drawn without --plot
    figs = tmp_path / "figs"
    code, out, err = run_cli(capsys, "plot", str(run_dir), "--out", str(figs))
    assert code == 0, err
    _check_figures(figs, ("gram", "norms", "dimensionality", "loss"))
    assert not (figs / "polygons.png").exists()  # n_hidden is 3
    assert str(figs / "gram.png") in out

    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        "[data]\nn_features = 2\n[model]\nn_hidden = 1\n"
        "[train]\nsteps = 100\nbatch_size = 64\neval_samples = 500\n"
        "[axes]\ndensity = [1.0, 0.1]\nrelative_importance = [0.5, 2.0]\n"
    )
    sweep_dir = tmp_path / "sweep"
    code, _, err = run_cli(capsys, "sweep", str(sweep_file), "--out", str(sweep_dir),
                           "--no-progress", "--plot")  # fmt: skip
    assert code == 0, err
    _check_figures(sweep_dir / "figures", ("phase-diagram",))
    again = tmp_path / "again"
    code, _, err = run_cli(capsys, "plot", str(sweep_dir), "--out", str(again))
    assert code == 0, err
    _check_figures(again, ("phase-diagram",))
    assert any(p.name.startswith("heatmap-") for p in again.iterdir())

    # the same sweep with a run directory per point draws the same figures, pixel for pixel
    points_dir = tmp_path / "sweep-points"
    code, _, err = run_cli(capsys, "sweep", str(sweep_file), "--out", str(points_dir),
                           "--no-progress", "--layout", "points")  # fmt: skip
    assert code == 0, err
    assert (points_dir / "points").is_dir() and not (sweep_dir / "points").exists()
    from_points = tmp_path / "from-points"
    code, _, err = run_cli(capsys, "plot", str(points_dir), "--out", str(from_points))
    assert code == 0, err
    pngs = sorted(p.name for p in again.glob("*.png"))
    assert pngs == sorted(p.name for p in from_points.glob("*.png")) and len(pngs) >= 2
    for name in pngs:
        assert (from_points / name).read_bytes() == (again / name).read_bytes(), name


def test_plot_refuses_a_folder_that_is_neither_and_writes_nothing(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    figs = tmp_path / "figs"
    code, _, err = run_cli(capsys, "plot", str(plain), "--out", str(figs))
    assert_refused(code, err, str(plain))
    assert not figs.exists()
    code, _, err = run_cli(capsys, "plot", str(tmp_path / "missing"), "--out", str(figs))
    assert_refused(code, err, "missing")
    assert not figs.exists()


def test_train_refuses_unknown_loss_and_source_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--loss", "hinge", "--out", str(out))
    assert_refused(code, err, "unknown loss 'hinge'", "mse")
    code, _, err = run_cli(capsys, "train", *TINY, "--source", "tape", "--out", str(out))
    assert_refused(code, err, "unknown data source 'tape'", "finite")
    code, _, err = run_cli(capsys, "train", *TINY, "--source", "finite", "--out", str(out))
    assert_refused(code, err, "needs dataset_size")
    huge = ["--source", "finite", "--dataset-size", "100000000000", "--memory-budget-gb", "1"]
    code, _, err = run_cli(capsys, "train", *TINY, *huge, "--out", str(out))
    assert_refused(code, err, "dataset_size 100000000000 needs", "memory budget")
    assert not out.exists()


def test_train_on_a_finite_dataset_reports_both_losses(tmp_path, capsys):
    import json

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--source", "finite", "--dataset-size", "16",
                           "--loss", "mse_sum", "--out", str(out))  # fmt: skip
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["dataset_loss"]) == len(metrics["loss"])
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["source"] == "finite" and config["train"]["loss"] == "mse_sum"
