"""The run directory: round trip, atomic writes, and a clear refusal for every kind of damage."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import fake_run, tiny_config
from safetensors.torch import load_file, save_file

from superposition import files, store
from superposition.errors import ConfigError, RunDirError
from superposition.store import is_run_dir, load_run, save_run, write_figure


def assert_same_run(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a.config == b.config
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    assert torch.equal(a.loss, b.loss)
    assert torch.equal(a.history_steps, b.history_steps)
    assert torch.equal(a.history_loss, b.history_loss)
    assert a.snapshots.keys() == b.snapshots.keys()
    for k in a.snapshots:
        assert torch.equal(a.snapshots[k], b.snapshots[k]), k
    assert a.info == b.info


def edit_json(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


# --------------------------------------------------------------------------------------------------
# round trip and layout


def test_round_trip_keeps_everything(tiny_run, tmp_path):
    assert tiny_run.snapshots, "the fixture should have snapshots"
    path = save_run(tiny_run, tmp_path / "run")
    assert path == tmp_path / "run"
    assert is_run_dir(path)
    loaded = load_run(path)
    assert_same_run(tiny_run, loaded)
    assert loaded.best() == tiny_run.best()


def test_layout_and_metadata(tiny_run, tmp_path):
    path = save_run(tiny_run, tmp_path / "run")
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(
        ["config.json", "weights.safetensors", "history.safetensors", "metrics.json", "figures"]
    )
    assert (path / "figures").is_dir()
    config = json.loads((path / "config.json").read_text())
    assert config["schema_version"] == store.SCHEMA_VERSION
    assert config["version"] == __import__("superposition").__version__
    assert config["created_at"].endswith("+00:00")
    assert config["model"] == {
        "kind": "relu",
        "n_hidden": 2,
        "tied": None,
        "hidden_bias_init": None,
        "n_inputs": None,
    }
    assert config["data"]["density"] == [1.0, 0.3]
    assert config["info"] == tiny_run.info

    tensors = load_file(str(path / "weights.safetensors"))
    assert set(tensors) == {"W", "b", "snapshot.W", "snapshot.b", "snapshot_steps"}
    assert tensors["snapshot_steps"].tolist() == [0, 100, 200]
    assert tensors["W"].shape == (4, 5, 2)  # [inst, feat, hidden], never transposed

    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["loss"] == pytest.approx(tiny_run.loss.tolist())
    assert metrics["best"] == tiny_run.best()
    assert metrics["group"] == [0, 0, 1, 1]
    assert metrics["density"] == [1.0, 1.0, 0.3, 0.3]
    assert metrics["importance_decay"] == [0.9] * 4
    assert [g["best"] for g in metrics["groups"]] == tiny_run.best()
    assert [g["instances"] for g in metrics["groups"]] == [[0, 1], [2, 3]]
    geo = metrics["geometry"]
    for key in ("feature_norms", "feature_dimensionality", "superposition", "geometry"):
        assert len(geo[key]) == 4, key
    norms = torch.linalg.vector_norm(tiny_run.W, dim=-1)
    assert torch.allclose(torch.tensor(geo["feature_norms"]), norms, atol=1e-6)


def test_untied_model_round_trip(tmp_path):
    run = fake_run(tiny_config(kind="abs"))
    assert "W_dec" in run.params
    loaded = load_run(save_run(run, tmp_path / "abs"))
    assert_same_run(run, loaded)
    assert not loaded.snapshots


def test_parent_folders_are_created(tiny_run, tmp_path):
    path = save_run(tiny_run, tmp_path / "a" / "b" / "run")
    assert is_run_dir(path)


def test_nan_weights_load_with_a_warning(tiny_run, tmp_path):
    params = {k: v.clone() for k, v in tiny_run.params.items()}
    params["W"][1, 0, 0] = math.nan
    from dataclasses import replace

    run = replace(tiny_run, params=params)
    path = save_run(run, tmp_path / "run")
    with pytest.warns(RuntimeWarning, match=r"non-finite weights in instance\(s\) \[1\]"):
        loaded = load_run(path)
    assert math.isnan(float(loaded.W[1, 0, 0]))


def test_nan_loss_round_trips_as_nan(tiny_run, tmp_path):
    from dataclasses import replace

    loss = tiny_run.loss.clone()
    loss[0] = math.nan
    path = save_run(replace(tiny_run, loss=loss), tmp_path / "run")
    assert json.loads((path / "metrics.json").read_text())["loss"][0] is None
    assert math.isnan(float(load_run(path).loss[0]))


# --------------------------------------------------------------------------------------------------
# atomic writes


def test_crash_mid_write_leaves_no_run(tiny_run, tmp_path, monkeypatch):
    def boom(run):  # type: ignore[no-untyped-def]
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(store, "metrics_dict", boom)  # after the weights were written
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_run(tiny_run, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder went too


def test_crash_while_overwriting_keeps_the_old_run(tiny_run, tmp_path, monkeypatch):
    path = save_run(tiny_run, tmp_path / "run")
    before = (path / "weights.safetensors").read_bytes()

    def boom(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("simulated crash")

    monkeypatch.setattr(files, "move_into_place", boom)
    with pytest.raises(OSError, match="simulated crash"):
        save_run(tiny_run, path, overwrite=True)
    assert (path / "weights.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_stale_temp_folder_is_ignored_then_cleaned(tiny_run, tmp_path):
    # what a hard kill (power loss, SIGKILL) mid-write leaves behind: a hidden, partial folder
    stale = tmp_path / ".run.tmp-999999999-dead"
    stale.mkdir()
    (stale / "config.json").write_text("{")
    assert not is_run_dir(tmp_path / "run")
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "run")
    save_run(tiny_run, tmp_path / "run")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert_same_run(tiny_run, load_run(tmp_path / "run"))


def test_existing_run_needs_overwrite(tiny_run, tmp_path):
    path = save_run(tiny_run, tmp_path / "run")
    with pytest.raises(RunDirError, match=r"already holds a run; pass overwrite=True"):
        save_run(tiny_run, path)
    other = fake_run(tiny_run.config, seed=1)
    save_run(other, path, overwrite=True)
    assert_same_run(other, load_run(path))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the old one is gone


def test_non_run_folders_are_never_replaced(tiny_run, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="is a directory that is not a run"):
        save_run(tiny_run, busy, overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_run_dir(save_run(tiny_run, empty))


def test_run_that_does_not_match_its_config_is_not_written(tiny_run, tmp_path):
    from dataclasses import replace

    bad = replace(tiny_run, params={**tiny_run.params, "W": tiny_run.W[:, :, :1]})
    with pytest.raises(
        RunDirError, match=r"W of shape \[4, 5, 1\] but its config says \[4, 5, 2\]"
    ):
        save_run(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# refusals on load


@pytest.fixture
def saved(tiny_run, tmp_path) -> Path:
    return save_run(tiny_run, tmp_path / "run")


@pytest.mark.parametrize(
    "name", ["config.json", "weights.safetensors", "history.safetensors", "metrics.json"]
)
def test_missing_file_is_named(saved, name):
    (saved / name).unlink()
    assert not is_run_dir(saved)
    with pytest.raises(RunDirError, match=f"missing {name}"):
        load_run(saved)


def test_missing_directory_and_file_instead_of_directory(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a run directory"):
        load_run(tmp_path / "file")


def test_shape_mismatch_names_both_shapes(saved):
    edit_json(saved / "config.json", lambda raw: raw["model"].update(n_hidden=3))
    with pytest.raises(RunDirError) as err:
        load_run(saved)
    # refused from the file's header, before the config is built (see check_stored_sizes)
    assert str(err.value) == (
        f"{saved / 'weights.safetensors'} has W of shape [4, 5, 2] but config.json says "
        "n_hidden=3 (axes [inst, feat, hidden])"
    )


def test_instance_count_mismatch(saved):
    edit_json(saved / "config.json", lambda raw: raw["train"].update(instances=3))
    with pytest.raises(
        RunDirError, match=r"has W of shape \[4, 5, 2\] but config.json says \[6, 5, 2\]"
    ):
        load_run(saved)


def test_history_shape_mismatch(saved):
    save_file(
        {"steps": torch.arange(3), "loss": torch.zeros(3, 7)}, str(saved / "history.safetensors")
    )
    with pytest.raises(RunDirError, match=r"history.safetensors has loss of shape \[3, 7\] but"):
        load_run(saved)


def test_missing_tensor(saved):
    tensors = load_file(str(saved / "weights.safetensors"))
    del tensors["b"]
    save_file(tensors, str(saved / "weights.safetensors"))
    with pytest.raises(RunDirError, match=r"has no tensor 'b'"):
        load_run(saved)


def test_unexpected_tensor(saved):
    tensors = load_file(str(saved / "weights.safetensors"))
    tensors["W_dec"] = tensors["W"].clone()  # a tied model has no decoder
    save_file(tensors, str(saved / "weights.safetensors"))
    with pytest.raises(RunDirError, match=r"unexpected tensor 'W_dec'"):
        load_run(saved)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_corrupt_safetensors(saved, content):
    (saved / "weights.safetensors").write_bytes(content)
    with pytest.raises(
        RunDirError, match=r"weights.safetensors is corrupt or not a safetensors file"
    ):
        load_run(saved)


def test_truncated_safetensors(saved):
    data = (saved / "weights.safetensors").read_bytes()
    (saved / "weights.safetensors").write_bytes(data[: len(data) - 20])
    with pytest.raises(RunDirError, match=r"weights.safetensors is corrupt"):
        load_run(saved)


@pytest.mark.parametrize("name", ["config.json", "metrics.json"])
def test_bad_json(saved, name):
    (saved / name).write_text('{"schema_version": 1,')
    with pytest.raises(RunDirError, match=rf"{name} is not valid JSON \(.* at line 1"):
        load_run(saved)


def test_unknown_top_level_key(saved):
    edit_json(saved / "config.json", lambda raw: raw.update(colour="blue"))
    with pytest.raises(RunDirError, match=r"config.json has unknown key 'colour'; known keys"):
        load_run(saved)


def test_unknown_section_key(saved):
    edit_json(saved / "config.json", lambda raw: raw["data"].update(n_featurez=5))
    with pytest.raises(RunDirError, match=r"config.json \[data\] has unknown key 'n_featurez'"):
        load_run(saved)


def test_invalid_config_value(saved):
    edit_json(saved / "config.json", lambda raw: raw["data"].update(density=[1.5]))
    with pytest.raises(RunDirError, match=r"density must be in \(0.0, 1.0\], got 1.5"):
        load_run(saved)


@pytest.mark.parametrize("version", [99, "1", None])
def test_unknown_schema_version(saved, version):
    edit_json(saved / "config.json", lambda raw: raw.update(schema_version=version))
    with pytest.raises(
        RunDirError, match=rf"schema_version {version!r}, but this version .* reads"
    ):
        load_run(saved)


def test_missing_schema_version(saved):
    edit_json(saved / "config.json", lambda raw: raw.pop("schema_version"))
    with pytest.raises(RunDirError, match="has no schema_version"):
        load_run(saved)


def test_loss_count_mismatch(saved):
    edit_json(saved / "metrics.json", lambda raw: raw.update(loss=[0.1, 0.2]))
    with pytest.raises(RunDirError, match="has 2 values in 'loss' but config.json says 4"):
        load_run(saved)


def test_errors_are_config_errors(saved):
    (saved / "metrics.json").unlink()
    with pytest.raises(ConfigError):  # the CLI catches this one type
        load_run(saved)


# --------------------------------------------------------------------------------------------------
# figures


def test_write_figure_is_atomic_and_named(saved):
    path = write_figure(saved, "plot.svg", "<svg/>")
    assert path == saved / "figures" / "plot.svg"
    assert path.read_text() == "<svg/>"
    write_figure(saved, "plot.png", b"\x89PNG")
    seen = []

    def writer(p: Path) -> None:
        seen.append(p.suffix)
        p.write_bytes(b"data")

    write_figure(saved, "other.pdf", writer)
    assert seen == [".pdf"]  # the temporary name keeps the extension (matplotlib infers the format)
    assert sorted(p.name for p in (saved / "figures").iterdir()) == [
        "other.pdf",
        "plot.png",
        "plot.svg",
    ]
    assert is_run_dir(saved)


def test_write_figure_failure_leaves_nothing(saved):
    def writer(p: Path) -> None:
        p.write_bytes(b"half")
        raise RuntimeError("draw failed")

    with pytest.raises(RuntimeError):
        write_figure(saved, "bad.png", writer)
    assert list((saved / "figures").iterdir()) == []


@pytest.mark.parametrize("name", ["", "../x.png", "a/b.png", ".hidden.png"])
def test_write_figure_refuses_paths(saved, name):
    with pytest.raises(ConfigError, match="figure name must be a plain file name"):
        write_figure(saved, name, b"x")
