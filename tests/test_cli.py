"""The command line, end to end on tiny configs: in-process through ``main``, and as a process."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fake_run, tiny_config
from safetensors.torch import load_file, save_file

from superposition import __version__
from superposition.cli import COMMANDS, main
from superposition.config import SECTIONS, field_docs
from superposition.store import load_run, save_run

TINY = ["--steps", "200", "--batch-size", "64", "--eval-samples", "1000", "--no-progress"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------
# train and inspect


def test_train_then_inspect_in_process(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", *TINY, "--density", "1,0.3", "--instances", "3", "--out", str(out_dir)
    )
    assert code == 0, err
    assert "trained 6 instance(s)" in out
    assert f"saved to {out_dir}" in out
    run = load_run(out_dir)
    assert run.n_instances == 6
    assert run.config.n_groups == 2
    assert run.config.data.density == (1.0, 0.3)
    assert run.config.train.steps == 200

    code, out, err = run_cli(capsys, "inspect", str(out_dir))
    assert code == 0, err
    assert "group 0: density 1" in out and "group 1: density 0.3" in out
    best = run.best()
    assert f"best: instance {best[1]}" in out

    code, out, err = run_cli(capsys, "inspect", str(out_dir), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n_instances"] == 6 and doc["n_groups"] == 2
    assert doc["best"] == best
    assert doc["loss"] == pytest.approx(run.loss.tolist())
    assert doc["density"] == [1.0] * 3 + [0.3] * 3
    assert torch.allclose(torch.tensor(doc["bias"]), run.b)

    # the text view shows, per group, the best instance's geometry and rounded feature norms
    code, text, err = run_cli(capsys, "inspect", str(out_dir))
    assert code == 0, err
    for k in best:
        assert f"geometry: {doc['geometry'][k]}" in text
        norms = ", ".join(f"{v:.2g}" for v in doc["feature_norms"][k])
        assert f"feature norms of instance {k}: [{norms}]" in text


def test_subprocess_train_and_inspect_json(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "superposition"]
    proc = subprocess.run(
        [*cmd, "train", *TINY, "--density", "1,0.1", "--instances", "2", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "saved to" in proc.stdout
    proc = subprocess.run(
        [*cmd, "inspect", str(out_dir), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    per_instance = (
        "loss",
        "feature_norms",
        "feature_dimensionality",
        "superposition",
        "bias",
        "density",
        "importance_decay",
        "group",
        "geometry",
    )
    for key in per_instance:
        assert len(doc[key]) == 4, key
    for key in ("feature_norms", "feature_dimensionality", "superposition", "bias"):
        assert all(len(row) == 5 for row in doc[key]), key
    assert doc["group"] == [0, 0, 1, 1]
    assert all(isinstance(label, str) and label for label in doc["geometry"])
    assert [g["density"] for g in doc["groups"]] == [1.0, 0.1]
    assert doc["version"] == __version__
    # the numbers are the run's
    run = load_run(out_dir)
    assert torch.allclose(torch.tensor(doc["bias"]), run.b)
    assert torch.allclose(torch.tensor(doc["feature_norms"]), run.W.norm(dim=-1), atol=1e-6)


def test_example_train_toml_trains(tmp_path, capsys):
    """examples/train.toml (the README's `train` example) is accepted and trains as it says."""
    example = Path(__file__).resolve().parents[1] / "examples" / "train.toml"
    out_dir = tmp_path / "intro"
    code, out, err = run_cli(
        capsys, "train", str(example), "--steps", "30", "--batch-size", "64",
        "--eval-samples", "500", "--no-progress", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    run = load_run(out_dir)
    assert run.config.data.density == (1.0, 0.1, 0.03)
    assert run.config.model.kind == "relu" and run.config.model.n_hidden == 2
    assert run.n_instances == 12 and run.config.train.steps == 30
    assert "3 group(s) x 4 seed(s)" in out


def test_toml_with_flag_override(tmp_path, capsys):
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        "[data]\nn_features = 4\ndensity = [1.0, 0.5]\nimportance_decay = 0.8\n"
        '[model]\nkind = "linear"\nn_hidden = 2\n'
        "[train]\nsteps = 120\nbatch_size = 32\neval_samples = 500\ninstances = 2\nseed = 3\n"
    )
    out_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", str(toml), "--n-hidden", "3", "--steps", "150", "--no-progress",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    cfg = load_run(out_dir).config
    assert cfg.data.n_features == 4  # from the file
    assert cfg.data.density == (1.0, 0.5)
    assert cfg.data.importance_decay == (0.8,)
    assert cfg.model.kind == "linear"
    assert cfg.train.seed == 3 and cfg.train.batch_size == 32
    assert cfg.model.n_hidden == 3  # the flags win
    assert cfg.train.steps == 150


def test_boolean_alias_and_list_flags(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", *TINY, "--model", "linear", "--untied",
        "--importance", "1,0.5,0.5,0.2,0.1", "--snapshot-steps", "0,100", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    run = load_run(out_dir)
    assert run.config.model.kind == "linear" and run.config.model.tied is False
    assert "W_dec" in run.params
    assert run.config.data.importance == (1.0, 0.5, 0.5, 0.2, 0.1)
    assert run.snapshots["W"].shape[0] == 2


def test_help_documents_every_field(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    flat = "".join(out.split())
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in out
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in out, f.name
            assert "".join(docs[f.name].split()) in flat, f"doc of {f.name} missing from --help"
    for flag in ("--model", "--untied", "--no-signed", "--out", "--force", "--no-progress"):
        assert flag in out
    assert "(default: 0.001)" in out  # defaults are shown


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"superposition {__version__}"


def test_python_dash_m_version():
    proc = subprocess.run(
        [sys.executable, "-m", "superposition", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_commands_are_registered():
    assert {"train", "inspect", "reproduce"} <= set(COMMANDS)


# --------------------------------------------------------------------------------------------------
# bad input: exit 2, one line naming the value, no traceback, nothing written


def assert_refused(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--density=-0.5"], ["density", "-0.5"]),
        (["--density", "1.5"], ["density", "1.5"]),
        (["--density", "1,0.3,abc"], ["--density", "'1,0.3,abc'"]),
        (["--n-hidden", "0"], ["n_hidden", "got 0"]),
        (["--importance", "nan,1,1,1,1"], ["importance", "nan"]),
        (["--importance", "1,1"], ["importance", "n_features=5"]),
        (["--kind", "transformer"], ["model kind", "'transformer'", "relu"]),
        (["--steps", "lots"], ["--steps", "'lots'"]),
        (["--steps", "1.5"], ["--steps", "'1.5'"]),
        (["--lr", "fast"], ["--lr", "'fast'"]),
        (["--optimizer", "sgd"], ["optimizer", "'sgd'"]),
        (["--device", "tpu"], ["device", "'tpu'"]),
    ],
)
def test_bad_flags_exit_2(tmp_path, capsys, flags, words):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *TINY, *flags, "--out", str(out_dir))
    assert_refused(code, err, *words)
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, words",
    [
        ("[data]\nn_featurez = 5\n", ["n_featurez", "unknown key", "[data]"]),
        ("[optim]\nlr = 0.1\n", ["'optim'", "unknown section"]),
        ("[data]\ndensity = [1.0, 2.0]\n", ["density", "2.0"]),
        ("[data\nn_features = 5\n", ["not valid TOML"]),
        ("[model]\nkind = 3\n", ["model kind", "3"]),
    ],
)
def test_bad_toml_exit_2(tmp_path, capsys, text, words):
    toml = tmp_path / "cfg.toml"
    toml.write_text(text)
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", str(toml), *TINY, "--out", str(out_dir))
    assert_refused(code, err, *words)
    assert str(toml) in err or "not valid TOML" in err or "model kind" in err or "density" in err
    assert not out_dir.exists()


def test_missing_toml_exit_2(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "train", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "run")
    )
    assert_refused(code, err, "nope.toml", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_bad_value_in_subprocess_has_no_traceback(tmp_path):
    out_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "superposition", "train", "--density", "2", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: density must be in") and "2" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out_dir.exists()


def test_usage_errors_exit_2(capsys):
    assert main(["train"]) == 2  # --out is required
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_existing_run_needs_force(tmp_path, capsys):
    out_dir = save_run(fake_run(tiny_config()), tmp_path / "run")
    before = (out_dir / "weights.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(out_dir))
    assert_refused(code, err, str(out_dir), "--force")
    assert (out_dir / "weights.safetensors").read_bytes() == before
    code, _, err = run_cli(capsys, "train", *TINY, "--seed", "7", "--out", str(out_dir), "--force")
    assert code == 0, err
    assert load_run(out_dir).config.train.seed == 7


def test_non_run_folder_is_refused_even_with_force(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(busy), "--force")
    assert_refused(code, err, "not a run")
    assert (busy / "thesis.tex").read_text() == "precious"


def test_ctrl_c_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import superposition.training as train_module

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(out_dir))
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# inspect on damaged run directories


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_run(fake_run(tiny_config()), tmp_path / "run")


def test_inspect_missing_file(saved, capsys):
    (saved / "metrics.json").unlink()
    code, out, err = run_cli(capsys, "inspect", str(saved), "--json")
    assert_refused(code, err, "missing metrics.json")
    assert out == ""


def test_inspect_missing_directory(tmp_path, capsys):
    code, _, err = run_cli(capsys, "inspect", str(tmp_path / "nope"))
    assert_refused(code, err, "nope", "does not exist")


def test_inspect_shape_mismatch(saved, capsys):
    raw = json.loads((saved / "config.json").read_text())
    raw["data"]["n_features"] = 6
    (saved / "config.json").write_text(json.dumps(raw))
    code, _, err = run_cli(capsys, "inspect", str(saved))
    assert_refused(
        code, err, "weights.safetensors has W of shape [4, 5, 2] but config.json says n_features=6"
    )


def test_inspect_corrupt_weights(saved, capsys):
    (saved / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    code, _, err = run_cli(capsys, "inspect", str(saved))
    assert_refused(code, err, "weights.safetensors is corrupt")


def test_inspect_wrong_tensor_shape(saved, capsys):
    tensors = load_file(str(saved / "weights.safetensors"))
    tensors["b"] = tensors["b"][:, :3].contiguous()
    save_file(tensors, str(saved / "weights.safetensors"))
    code, _, err = run_cli(capsys, "inspect", str(saved))
    assert_refused(code, err, "b of shape [4, 3]", "[inst, feat]")


# --------------------------------------------------------------------------------------------------
# reproduce (wiring only: the experiments are tested in test_reproduce.py)


def test_reproduce_unknown_name(tmp_path, capsys):
    code, _, err = run_cli(capsys, "reproduce", "outro", "--out", str(tmp_path / "out"))
    assert_refused(code, err, "'outro'", "intro")
    assert list(tmp_path.iterdir()) == []


def test_reproduce_passes_its_options(tmp_path, capsys, monkeypatch):
    from superposition import reproduce
    from superposition.results import Claim

    calls = []

    def fake(name, out, *, quick, force, progress, workers, size):  # type: ignore[no-untyped-def]
        calls.append((name, out, quick, force, progress, workers, size))
        return out / name, [Claim("Introduction", "a claim", "measured 1", True)]

    monkeypatch.setattr(reproduce, "reproduce", fake)
    code, out, err = run_cli(
        capsys, "reproduce", "intro", "--out", str(tmp_path), "--quick", "--force", "--no-progress"
    )
    assert code == 0, err
    assert "[holds] Introduction: a claim" in out
    assert str(tmp_path / "intro") in out
    code, out, err = run_cli(capsys, "reproduce", "intro", "--out", str(tmp_path), "--workers", "2")
    assert code == 0, err
    code, out, err = run_cli(capsys, "reproduce", "sae-bench", "--out", str(tmp_path),
                             "--size", "full")  # fmt: skip
    assert code == 0, err
    assert calls == [
        ("intro", tmp_path, True, True, False, None, None),
        ("intro", tmp_path, False, False, None, 2, None),
        ("sae-bench", tmp_path, False, False, None, None, "full"),
    ]


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_reproduce_refuses_a_bad_worker_count(tmp_path, capsys, bad):
    code, _, err = run_cli(
        capsys, "reproduce", "intro", "--out", str(tmp_path / "o"), "--workers", bad
    )
    assert_refused(code, err, f"--workers must be a whole number >= 1, got '{bad}'")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "file, edit, words",
    [
        ("config.json", lambda t: t.replace('"seed": 0', '"seed": ' + "9" * 5000),
         ["config.json has a number of 5000 characters"]),
        ("metrics.json", lambda t: "[" * 100_000 + "]" * 100_000,
         ["metrics.json nests arrays and objects 100000 deep"]),
        ("config.json", lambda t: t.replace('"n_features": 5', '"n_features": 1000000000'),
         ["W of shape [4, 5, 2] but config.json says n_features=1000000000"]),
        ("metrics.json", lambda t: t.replace('"loss": [', '"loss": [1e400, ', 1),
         ["metrics.json has the number 1e400, too large for a float"]),
    ],
)  # fmt: skip
def test_inspect_hostile_json_is_one_sentence(saved, capsys, file, edit, words):
    path = saved / file
    path.write_text(edit(path.read_text()))
    code, _, err = run_cli(capsys, "inspect", str(saved))
    assert_refused(code, err, str(saved), *words)


def test_inspect_on_an_sae_folder_says_what_it_is(saved, capsys):
    raw = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**raw, "kind": "sae"}))
    code, _, err = run_cli(capsys, "inspect", str(saved))
    assert_refused(code, err, "is an SAE directory written by `superposition sae`", "load_sae")
    assert "unknown key" not in err


def test_history_shape_errors_name_the_axes(saved, capsys):
    tensors = load_file(str(saved / "history.safetensors"))
    tensors["loss"] = tensors["loss"][:, :3].contiguous()
    save_file(tensors, str(saved / "history.safetensors"))
    code, _, err = run_cli(capsys, "inspect", str(saved))
    assert_refused(code, err, "history.safetensors has loss of shape", "[log, inst]")
    assert "n_features" not in err
