"""An interrupted sweep (Ctrl-C, then a kill) resumes with the same command and ends with the same
result as an uninterrupted run; finished points are kept, not trained again. The command writes
the default, compact layout (test_sweep covers resuming the points layout)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from superposition.cli import main
from superposition.sweep import SweepConfig, SweepResult, done_points, run_sweep

# one instance per chunk and enough steps that a chunk takes a noticeable fraction of a second
SWEEP_TOML = """\
[data]
n_features = 2
[model]
n_hidden = 1
[train]
steps = 6000
batch_size = 1024
instances = 1
eval_samples = 500
log_every = 500
device = "cpu"
[axes]
density = {linspace = [1.0, 0.75, 6]}
"""


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():  # type: ignore[no-untyped-def]
    """One thread: on a busy machine numba's thread pool costs more than these small steps."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(threads)


def _done(out: Path, sweep: SweepConfig) -> list[int]:
    return done_points(out, sweep) if (out / "sweep.json").is_file() else []


def _interrupt_after_new_point(
    argv: list[str], out: Path, sweep: SweepConfig, sig: int
) -> subprocess.CompletedProcess[str]:
    """Start the command, wait until one more point is on disk, then send ``sig``."""
    before = len(_done(out, sweep)) if out.exists() else 0
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(_done(out, sweep)) > before:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    stats = {p.name: p.stat() for p in (out / "parts").iterdir() if not p.name.startswith(".")}
    return {name: (st.st_ino, st.st_mtime_ns) for name, st in stats.items()}


def test_interrupt_kill_and_resume(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP_TOML)
    sweep = SweepConfig.from_toml(spec)
    reference = run_sweep(sweep, tmp_path / "reference", progress=False)

    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out), "--no-progress", "--chunk-instances", "1"]
    command = [sys.executable, "-m", "superposition", *argv]

    # Ctrl-C: exit 130, finished points kept, and the message says how to go on
    first = _interrupt_after_new_point(command, out, sweep, signal.SIGINT)
    assert first.returncode == 130, first.stderr
    assert "run the same command again" in first.stderr and "Traceback" not in first.stderr
    done_first = _done(out, sweep)
    assert 1 <= len(done_first) < sweep.n_points

    # a kill: no chance to clean up; points written before it stay whole
    second = _interrupt_after_new_point(command, out, sweep, signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    done = _done(out, sweep)
    assert set(done_first) < set(done) and len(done) < sweep.n_points
    stamps = _stamps(out)
    assert len(stamps) == len(done)  # one part file per chunk of one point, each whole

    # the same command again finishes the rest
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"trained {sweep.n_points - len(done)} point(s)" in stdout
    assert f"{len(done)} kept from an earlier run" in stdout

    result = SweepResult.load(out)
    assert result.table() == reference.table()
    for i in range(sweep.n_points):
        a, b = result.run(i), reference.run(i)
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params), i
        assert torch.equal(a.loss, b.loss) and torch.equal(a.history_loss, b.history_loss), i
    # the parts are merged into one file; a killed write's temporary file goes with them
    assert sorted(p.name for p in out.rglob("*")) == [
        "metrics.json", "points.safetensors", "results.csv", "sweep.json"
    ]  # fmt: skip
