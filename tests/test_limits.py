"""Sizes and destinations that cannot work are refused at once, before anything is allocated or
written: one sentence naming the value, the estimate and the limit, exit status 2 on the command
line, and nothing on disk."""

import os
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import fake_run, tiny_config

from superposition import files
from superposition.cli import main
from superposition.config import (
    MAX_EVAL_SAMPLES,
    MAX_INSTANCES,
    DataConfig,
    RunConfig,
    TrainConfig,
)
from superposition.errors import ConfigError
from superposition.sae.config import SAEConfig
from superposition.store import save_run
from superposition.sweep import Axis, SweepConfig
from superposition.sweep.grid import MAX_POINTS
from superposition.training import check, machine_memory, train

QUICK_S = 2.0
"""A refusal takes arithmetic, not training: well under this even on a busy 2-core machine."""


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> str:
    """Run the command line; assert exit 2, one error line holding ``words``, quickly."""
    started = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert elapsed < QUICK_S, (elapsed, err)
    return err


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# --------------------------------------------------------------------------------------------------
# train


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--n-features", "10000000"], ["n_features 10000000", "GiB", "memory budget"]),
        (["--n-hidden", "10000000"], ["n_hidden 10000000", "GiB", "memory budget"]),
        (["--batch-size", "1000000000"], ["batch_size 1000000000", "GiB", "memory budget"]),
        (
            ["--n-features", "99999999999999999999999999"],
            ["n_features 99999999999999999999999999", "GiB", "memory budget"],
        ),
        (["--instances", "1000000000"], ["instances must be at most 100,000", "1000000000"]),
        (
            ["--eval-samples", "1000000000000"],
            ["eval_samples must be at most 10,000,000", "1000000000000"],
        ),
        (
            ["--steps", "100000000000000", "--log-every", "1"],
            ["keeping the results of 1 instance", "steps 100000000000000", "half of this machine"],
        ),
        (
            ["--source", "finite", "--dataset-size", "100000000", "--memory-budget-gb", "0.5"],
            ["dataset_size 100000000", "per instance", "memory budget of 0.5 GiB"],
        ),
        (
            ["--n-features", "100000000", "--memory-budget-gb", "100000"],
            ["n_features 100000000", "more than all of this machine's"],
        ),
    ],
)
def test_train_refuses_sizes_that_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: list[str]
) -> None:
    out = tmp_path / "run"
    refused(capsys, ["train", *flags, "--device", "cpu", "--out", str(out)], *words)
    assert nothing_in(tmp_path)


def test_train_refuses_a_million_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    densities = ",".join(f"{(i + 1) / 1000:g}" for i in range(1000))
    decays = ",".join(f"{0.5 + i / 2000:g}" for i in range(1000))
    out = tmp_path / "run"
    argv = ["train", "--density", densities, "--importance-decay", decays, "--out", str(out)]
    refused(capsys, argv, "1000 density x 1000 importance_decay", "1,000,000 instances", "100,000")
    assert nothing_in(tmp_path)


# --------------------------------------------------------------------------------------------------
# the Python API says the same


def test_config_errors_name_the_value_and_the_limit() -> None:
    with pytest.raises(ConfigError, match=r"instances must be at most 100,000 .*got 1000000000$"):
        TrainConfig(instances=10**9)
    with pytest.raises(ConfigError, match=r"eval_samples must be at most 10,000,000 .*got 10{12}$"):
        TrainConfig(eval_samples=10**12)
    assert MAX_INSTANCES == 100_000 and MAX_EVAL_SAMPLES == 10_000_000
    many = DataConfig(density=tuple(i / 1000 for i in range(1, 1001)))
    with pytest.raises(ConfigError, match=r"^1000 density x 1 .* make 1,000,000 instances, more "):
        RunConfig(data=many, train=TrainConfig(instances=1000))
    # an integer beyond a float is refused by name, not with an OverflowError
    with pytest.raises(ConfigError, match=r"lr must be a finite number, got 1000"):
        TrainConfig(lr=10**400)


def test_check_names_the_sizes_the_estimate_and_the_budget() -> None:
    huge = RunConfig(data=DataConfig(n_features=10**26), train=TrainConfig(device="cpu"))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        train(huge)  # train checks first: nothing is allocated
    assert time.perf_counter() - started < QUICK_S
    message = str(info.value)
    assert message.startswith("one instance needs about ")
    assert f"GiB to train (n_features {10**26}, n_hidden 2, batch_size 1024)" in message
    budget = machine_memory(torch.device("cpu")) / 4 / 2**30
    assert f"{budget:.3g} GiB" in message
    # within the budget but beyond a given memory_budget_gb: the limit named is the user's
    small = RunConfig(train=TrainConfig(device="cpu", memory_budget_gb=1e-6))
    with pytest.raises(ConfigError, match=r"memory budget of 1e-06 GiB \(memory_budget_gb"):
        check([small])


def test_a_config_with_absurd_features_is_made_without_listing_them() -> None:
    started = time.perf_counter()
    config = DataConfig(n_features=10**26, density=(0.5, 0.1))
    assert config.n_features == 10**26 and time.perf_counter() - started < QUICK_S


# --------------------------------------------------------------------------------------------------
# sae


@pytest.fixture
def toy_run(tmp_path: Path) -> Path:
    path = tmp_path / "toy"
    save_run(fake_run(tiny_config()), path)
    return path


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ["--n-latents", "1000000000"],
            ["training 8 SAE instance(s) at once", "n_latents up to 1000000000", "memory budget"],
        ),
        (["--seeds", "1000000000"], ["seeds must be at most 100,000", "1000000000"]),
        (["--eval-samples", "100000000000"], ["eval_samples must be at most 10,000,000"]),
        (
            ["--seeds", "60000"],
            [
                "2 toy instance(s) x 1 n_latents x 1 l1_coefficient value(s) x seeds 60000",
                "120,000 SAE instances",
                "100,000",
            ],
        ),  # fmt: skip
    ],
)
def test_sae_refuses_sizes_that_do_not_fit(
    toy_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    words: list[str],
) -> None:
    out = tmp_path / "sae"
    refused(capsys, ["sae", str(toy_run), *flags, "--device", "cpu", "--out", str(out)], *words)
    assert not out.exists()


def test_train_sae_checks_before_allocating() -> None:
    from superposition.sae.train import train_sae

    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"n_latents up to 1000000000.*more than the memory"):
        train_sae(fake_run(tiny_config()), SAEConfig(n_latents=(10**9,), device="cpu"))
    assert time.perf_counter() - started < QUICK_S


# --------------------------------------------------------------------------------------------------
# sweeps


def sweep_file(tmp_path: Path, axes: str) -> Path:
    spec = tmp_path / "sweep.toml"
    base = "[data]\nn_features = 2\n[model]\nn_hidden = 1\n[train]\nsteps = 10\ndevice = 'cpu'\n"
    spec.write_text(base + "[axes]\n" + axes + "\n")
    return spec


@pytest.mark.parametrize(
    ("axes", "words"),
    [
        (
            "instances = [1, 1000000000]",
            ["axis instances value 1000000000: instances must be at most 100,000"],
        ),
        (
            "density = {linspace = [0.1, 1, 1000000000]}",
            ["1,000,000,000 density values, more than the 100,000 points"],
        ),
        (
            "seed = {linspace = [0, 99999, 100000]}\nlr = {linspace = [0.001, 0.1, 100000]}",
            ["100,000 seed x 100,000 lr = 10,000,000,000 points"],
        ),
        (
            "lr = {logspace = [0, 400, 5]}",
            ["axis lr: logspace [0, 400, 5] reaches 10^400, beyond the largest float"],
        ),
        (
            "n_features = [2, 10000000]",
            ["sweep point 1 (n_features=10000000): one instance needs about", "memory budget"],
        ),
    ],
)
def test_sweep_refuses_sizes_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], axes: str, words: list[str]
) -> None:
    spec = sweep_file(tmp_path, axes)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would be printed before
        refused(capsys, ["sweep", str(spec), "--out", str(out), "--no-progress"], *words)
    assert not out.exists()  # no sweep.json, no points/0000


def test_sweep_grids_are_counted_before_they_are_made() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="1,000,000,000 values, more than the 100,000"):
        Axis.linspace("density", 0.1, 1, 10**9)
    big = tuple(i / 1001 for i in range(1, 1001))
    with pytest.raises(ConfigError, match=r"1,000 density x 1,000 relative_importance = 1,000,000"):
        SweepConfig(RunConfig(), (Axis("density", big), Axis("relative_importance", big)))
    assert time.perf_counter() - started < QUICK_S
    assert MAX_POINTS == 100_000


# --------------------------------------------------------------------------------------------------
# --out, checked before the work by every command


def commands(tmp_path: Path, toy_run: Path, out: str) -> dict[str, list[str]]:
    spec = sweep_file(tmp_path, "density = [1, 0.5]")
    results = tmp_path / "results"
    (results / "intro").mkdir(parents=True)
    return {
        "train": ["train", "--steps", "10", "--out", out],
        "sae": ["sae", str(toy_run), "--steps", "10", "--out", out],
        "sweep": ["sweep", str(spec), "--out", out, "--no-progress"],
        "report": ["report", str(results), "--out", out],
        "reproduce": ["reproduce", "intro", "--quick", "--out", out],
        "reproduce --all": ["reproduce", "--all", "--quick", "--out", out],
        "plot": ["plot", str(toy_run), "--out", out],
    }


COMMANDS = ["train", "sae", "sweep", "report", "reproduce", "reproduce --all", "plot"]


@pytest.mark.parametrize("command", COMMANDS)
def test_out_under_a_file_is_refused(
    tmp_path: Path, toy_run: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    argv = commands(tmp_path, toy_run, str(blocker / "sub"))[command]
    refused(capsys, argv, f"--out {blocker / 'sub'} cannot be written", "is a file, not a folder")
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("command", COMMANDS)
def test_out_with_a_name_too_long_is_refused(
    tmp_path: Path, toy_run: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    out = tmp_path / ("x" * 300)
    before = set(tmp_path.iterdir())
    refused(capsys, commands(tmp_path, toy_run, str(out))[command], "300 bytes long", "shorter")
    assert set(tmp_path.iterdir()) <= before | {tmp_path / "sweep.toml", tmp_path / "results"}


@pytest.mark.parametrize("command", COMMANDS)
def test_out_where_nothing_can_be_created_is_refused(
    tmp_path: Path, toy_run: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # /proc takes no new entries, not even from root (permissions alone would not stop root)
    refused(capsys, commands(tmp_path, toy_run, "/proc/x")[command], "cannot be written")


def test_check_destination_leaves_nothing_behind(tmp_path: Path) -> None:
    files.check_destination(tmp_path / "new" / "run")
    files.check_destination(tmp_path)  # an existing folder is tried inside as well
    assert list(tmp_path.iterdir()) == []
    longest = os.pathconf(tmp_path, "PC_NAME_MAX") - files.TEMPORARY_NAME_EXTRA
    files.check_destination(tmp_path / ("y" * longest))  # room left for its temporary name
    with pytest.raises(ConfigError, match="less room for the temporary name"):
        files.check_destination(tmp_path / ("y" * (longest + 1)))


# --------------------------------------------------------------------------------------------------
# report --out FILE


def test_report_refuses_to_replace_a_file_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    (results / "intro").mkdir(parents=True)
    target = tmp_path / "mine.html"
    target.write_text("my notes")
    refused(capsys, ["report", str(results), "--out", str(target)], "already exists", "--force")
    assert target.read_text() == "my notes"
    assert main(["report", str(results), "--out", str(target), "--force"]) == 0
    capsys.readouterr()
    assert "<html" in target.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# nothing left behind


def test_a_resumed_sweep_removes_what_killed_writers_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = sweep_file(tmp_path, "density = [1, 0.5]")
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out), "--no-progress", "--eval-samples", "10"]
    argv += ["--layout", "points"]
    assert main(argv) == 0
    table = (out / "results.csv").read_text()
    # a run killed while it wrote the table and a point (pid 999999999: no such process)
    (out / ".results.tmp-999999999-0badc0de.csv").write_text("half a table")
    (out / "points" / ".0001.tmp-999999999-0badc0de").mkdir()
    assert main(argv) == 0
    assert "2 kept from an earlier run" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["points", "results.csv", "sweep.json"]
    assert sorted(p.name for p in (out / "points").iterdir()) == ["0000", "0001"]
    assert (out / "results.csv").read_text() == table
