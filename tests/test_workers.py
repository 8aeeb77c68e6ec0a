"""Jobs in worker processes (`superposition.workers`) and `reproduce` with several workers: the
same weights as one process, errors raised here, and nothing left behind on an error."""

import os
import time
from pathlib import Path

import pytest
import torch

from superposition.errors import ConfigError
from superposition.reproduce import reproduce_many
from superposition.store import load_run
from superposition.workers import run_jobs

# the jobs below run in spawned worker processes, which import this module by name (pytest puts
# the tests folder on sys.path, and the workers inherit it)
JOBS = f"{__name__}"


def write_thread_count(path: str) -> None:
    import numba

    Path(path).write_text(f"{torch.get_num_threads()} {numba.get_num_threads()} {os.getpid()}")


def refuse(message: str) -> None:
    raise ConfigError(message)


def crash() -> None:
    raise ValueError("a bug in a job")


def die() -> None:
    os._exit(3)


def write_or_sleep(kind: str, path: str) -> None:
    if kind == "sleep":
        time.sleep(300)
    Path(path).write_text(kind)


def test_jobs_run_in_single_threaded_worker_processes(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{k}.txt") for k in range(4)]
    finished: list[int] = []
    run_jobs(
        f"{JOBS}:write_thread_count", [(p,) for p in paths], workers=2, on_done=finished.append
    )
    assert sorted(finished) == [0, 1, 2, 3]
    seen = [Path(p).read_text().split() for p in paths]
    assert all(t == "1" and n == "1" for t, n, _ in seen)
    pids = {pid for _, _, pid in seen}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2


def test_a_config_error_in_a_job_is_raised_as_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^density must be in \(0, 1\], got 2$"):
        run_jobs(f"{JOBS}:refuse", [("density must be in (0, 1], got 2",)], workers=2)


def test_other_errors_carry_the_workers_traceback() -> None:
    with pytest.raises(RuntimeError, match=r"(?s)failed in a worker process.*ValueError: a bug"):
        run_jobs(f"{JOBS}:crash", [()], workers=1)
    with pytest.raises(RuntimeError, match=r"worker process died \(exit code 3"):
        run_jobs(f"{JOBS}:die", [()], workers=1)


def test_an_interrupt_stops_the_workers_at_once(tmp_path: Path) -> None:
    """The first job's completion raises KeyboardInterrupt here: the other worker, in a 300 s
    sleep, is terminated rather than waited for, and never writes its file. (The bound leaves
    room for starting two Python processes on a loaded machine.)"""

    def interrupt(k: int) -> None:
        raise KeyboardInterrupt

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_jobs(
            f"{JOBS}:write_or_sleep",
            [("sleep", str(tmp_path / "late.txt")), ("write", str(tmp_path / "now.txt"))],
            workers=2,
            on_done=interrupt,
        )
    assert time.perf_counter() - started < 150
    time.sleep(0.5)
    assert (tmp_path / "now.txt").read_text() == "write"
    assert not (tmp_path / "late.txt").exists()


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"workers": 1, "threads": 0}])
def test_bad_worker_counts_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="must be at least 1"):
        run_jobs(f"{JOBS}:crash", [()], **kwargs)


@pytest.mark.slow
def test_reproduce_in_two_workers_gives_the_weights_of_one_process(tmp_path: Path) -> None:
    names = ["intro", "correlated-features"]
    announced: list[str] = []
    one = reproduce_many(names, tmp_path / "one", quick=True, progress=False, workers=1)
    two = reproduce_many(
        names,
        tmp_path / "two",
        quick=True,
        progress=False,
        workers=2,
        on_done=lambda name, folder, claims: announced.append(name),
    )
    assert sorted(announced) == sorted(names)
    for name in names:
        assert [c.to_dict() for c in one[name][1]] == [c.to_dict() for c in two[name][1]]
        for run_dir in sorted((tmp_path / "one" / name / "runs").iterdir()):
            a = load_run(run_dir)
            b = load_run(tmp_path / "two" / name / "runs" / run_dir.name)
            for key in a.params:
                assert torch.equal(a.params[key], b.params[key]), (name, run_dir.name, key)
            assert torch.equal(a.loss, b.loss)
        assert (tmp_path / "two" / name / "figures").is_dir()
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_an_interrupted_reproduce_keeps_finished_experiments_and_leaves_nothing_else(
    tmp_path: Path,
) -> None:
    announced: list[str] = []

    def stop_after_first(name: str, folder: Path, claims: object) -> None:
        announced.append(name)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reproduce_many(
            ["intro", "correlated-features"],
            tmp_path,
            quick=True,
            progress=False,
            workers=2,
            on_done=stop_after_first,
        )
    assert len(announced) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == announced
    assert (tmp_path / announced[0] / "experiment.json").is_file()


def test_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed by SIGKILL cannot stop its workers; they notice and exit by themselves
    instead of training on for a command that has ended."""
    import signal
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from superposition.workers import run_jobs\n"
        "run_jobs('test_workers:write_or_sleep', [('sleep', sys.argv[2])], workers=1)\n"
    )
    late = tmp_path / "late.txt"
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(late)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    children: list[str] = []
    while time.time() < deadline and not children:  # wait for the worker to start
        time.sleep(0.5)
        out = subprocess.run(
            ["pgrep", "-P", str(parent.pid), "-f", "spawn_main"], capture_output=True, text=True
        )
        children = out.stdout.split()
    assert children, "the worker did not start"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.2)
    alive = [c for c in children if Path(f"/proc/{c}").exists()]
    for c in alive:
        os.kill(int(c), signal.SIGKILL)
    assert not alive, "a worker outlived its killed parent"
    assert not late.exists()
