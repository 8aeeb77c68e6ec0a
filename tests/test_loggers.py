"""Loggers: each group's loss and geometry reach TensorBoard's event files and W&B's offline run,
for a toy run, a sweep and SAEs, with the values of the trained weights; a missing extra is one
sentence and exit status 2 before anything trains."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fake_run, tiny_config

from superposition import geometry
from superposition.cli import main
from superposition.errors import ConfigError
from superposition.loggers import METRICS, GroupLog, Logger, open_logger
from superposition.sae.config import SAEConfig
from superposition.sae.train import train_sae
from superposition.store import load_run, save_run
from superposition.sweep import SweepResult

TINY = ["--steps", "120", "--batch-size", "32", "--eval-samples", "200", "--log-every", "40"]
LOGGED_STEPS = [0, 40, 80, 119]  # every log_every and the last step


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``folder``, read back by TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def wandb_history(folder: Path) -> list[dict[str, float]]:
    """The history rows of the one offline run under ``folder``, read back by W&B's own reader
    (``wandb leet inspect --json``)."""
    (run_file,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    wandb = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb), "leet", "inspect", "--json", str(run_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-default"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def group_means(run, rows: range) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """What the last logging step must say for a group: the trained weights' geometry."""
    W = run.W[list(rows)].double()
    return {
        "loss": float(run.history_loss[-1, list(rows)].double().mean()),
        "feature_norm": float(geometry.feature_norms(W).mean()),
        "dimensions_per_feature": float(geometry.dimensions_per_feature(W).mean()),
        "superposition": float(geometry.superposition(W).mean()),
    }


# --------------------------------------------------------------------------------------------------
# toy runs


def test_train_to_tensorboard_logs_each_group_with_the_trained_geometry(tmp_path, capsys):
    out, logs = tmp_path / "run", tmp_path / "logs"
    code, _, err = run_cli(capsys, "train", *TINY, "--density", "1,0.1", "--instances", "2",
                           "--out", out, "--log", "tensorboard", "--log-dir", logs)  # fmt: skip
    assert code == 0, err
    scalars = tensorboard_scalars(logs / "run")
    assert set(scalars) == {f"group{g}/{m}" for g in (0, 1) for m in METRICS}
    assert [s for s, _ in scalars["group1/loss"]] == LOGGED_STEPS
    run = load_run(out)
    for g, rows in enumerate((range(0, 2), range(2, 4))):
        for metric, value in group_means(run, rows).items():
            assert scalars[f"group{g}/{metric}"][-1][1] == pytest.approx(value, rel=1e-5)
    # the sparser group packs more features than it has dimensions (Section 2)
    assert scalars["group1/dimensions_per_feature"][-1][1] < 1


def test_train_to_wandb_offline_writes_the_run_with_the_logged_keys(tmp_path, capsys,
                                                                    offline_wandb):  # fmt: skip
    out, logs = tmp_path / "run", tmp_path / "logs"
    code, _, err = run_cli(capsys, "train", *TINY, "--out", out, "--log", "wandb",
                           "--log-dir", logs)  # fmt: skip
    assert code == 0, err
    history = wandb_history(logs)
    assert [row["train_step"] for row in history] == LOGGED_STEPS
    assert {f"group0/{m}" for m in METRICS} <= set(history[-1])
    run = load_run(out)
    assert history[-1]["group0/loss"] == pytest.approx(group_means(run, range(1))["loss"])


@pytest.mark.parametrize("kind", ["wandb", "tensorboard"])
def test_a_missing_extra_is_one_sentence_before_training(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.setitem(sys.modules, kind, None)  # as if it were not installed
    out, logs = tmp_path / "run", tmp_path / "logs"
    code, text, err = run_cli(capsys, "train", *TINY, "--out", out, "--log", kind,
                              "--log-dir", logs)  # fmt: skip
    assert code == 2
    assert err == (
        f"error: the {kind} logger needs the {kind!r} extra; install it with: "
        f"pip install 'toy-superposition[{kind}]'\n"
    )
    assert text == "" and not out.exists() and not logs.exists()


def test_unknown_logger_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown logger 'mlflow'; choose one of wandb"):
        open_logger("mlflow")


class Recorder(Logger):
    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []

    def log(self, step, scalars):  # type: ignore[no-untyped-def]
        self.calls.append((step, dict(scalars)))


def test_a_group_split_over_chunks_is_logged_once_whole() -> None:
    rec = Recorder()
    log = GroupLog(rec, {"a": [0, 1], "b": [2]})
    W = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[3.0, 4.0]]])  # one feature each
    log.add(7, [0, 2], torch.tensor([1.0, 5.0]), W[[0, 2]])  # a chunk of rows 0 and 2
    # m / ||W||_F^2 = 2 / 25 (Section 4)
    expected = dict(zip(METRICS, [5.0, 5.0, 1, 2 / 25, 0], strict=True))
    assert rec.calls == [(7, {f"b/{m}": v for m, v in expected.items()})]
    log.add(7, [1], torch.tensor([3.0]), W[[1]])  # the chunk with row 1 completes group a
    step, scalars = rec.calls[1]
    assert step == 7
    # norms 1 and 0: mean 0.5, one represented of two; D* = 2/1 and 2/0 (not finite: left out)
    assert scalars == {"a/loss": 2.0, "a/feature_norm": 0.5, "a/represented": 0.5,
                       "a/dimensions_per_feature": 2.0, "a/superposition": 0.0}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# sweeps and SAEs

SWEEP = """\
[data]
n_features = 3
[model]
n_hidden = 2
[train]
steps = 120
batch_size = 32
instances = 2
eval_samples = 200
log_every = 40
device = "cpu"
[axes]
density = [1.0, 0.1]
"""


def test_sweep_logs_every_point(tmp_path, capsys, offline_wandb):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out, logs = tmp_path / "sweep", tmp_path / "logs"
    code, _, err = run_cli(capsys, "sweep", tmp_path / "sweep.toml", "--out", out,
                           "--no-progress", "--log", "wandb", "--log-dir", logs)  # fmt: skip
    assert code == 0, err
    last = {}
    for row in wandb_history(logs):
        last.update(row)
    for point in (0, 1):
        assert {f"point{point}/group0/{m}" for m in METRICS} <= set(last)
        run = SweepResult.load(out).run(point)
        assert last[f"point{point}/group0/dimensions_per_feature"] == pytest.approx(
            group_means(run, range(2))["dimensions_per_feature"]
        )


def test_sweep_logger_needs_the_local_backend(tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    code, _, err = run_cli(capsys, "sweep", tmp_path / "sweep.toml", "--out", tmp_path / "s",
                           "--backend", "ray", "--log", "tensorboard")  # fmt: skip
    assert code == 2 and "needs --backend local, not 'ray'" in err
    assert not (tmp_path / "s").exists()


def test_sae_logs_each_group_of_seeds_to_tensorboard(tmp_path):
    config = SAEConfig(n_latents=(3, 5), seeds=2, steps=60, batch_size=64, eval_samples=200,
                       log_every=20, device="cpu")  # fmt: skip
    with open_logger("tensorboard", log_dir=tmp_path, name="sae") as logger:
        sae_run = train_sae(fake_run(tiny_config()), config, progress=False, logger=logger)
    scalars = tensorboard_scalars(tmp_path / "sae")
    # 2 best-of-N toy instances x 2 dictionary sizes, each a group of 2 seeds
    assert set(scalars) == {f"sae{j}/{m}" for j in range(4) for m in METRICS}
    assert [s for s, _ in scalars["sae3/loss"]] == [0, 20, 40, 59]
    # decoder rows are kept on the unit sphere: every live latent has norm 1
    assert scalars["sae0/represented"][-1][1] == 3 and scalars["sae1/represented"][-1][1] == 5
    losses = sae_run.history_loss[-1, :2].double().mean()
    assert scalars["sae0/loss"][-1][1] == pytest.approx(float(losses), rel=1e-5)


def test_sae_command_takes_the_log_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    toy = save_run(fake_run(tiny_config()), tmp_path / "toy")
    code, _, err = run_cli(capsys, "sae", toy, "--out", tmp_path / "sae", "--log", "tensorboard",
                           "--log-dir", tmp_path / "logs")  # fmt: skip
    assert code == 2 and "pip install 'toy-superposition[tensorboard]'" in err
    assert not (tmp_path / "sae").exists() and not (tmp_path / "logs").exists()
