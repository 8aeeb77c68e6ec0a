"""Independent jobs run side by side in worker processes (layer 0: imports no torch).

Why processes and not threads: on a small CPU the training kernels of one job use two cores only
about 1.35 times as well as one (their per-step work is too small to split well), while two jobs
in two single-threaded processes use both cores fully. ``superposition reproduce`` therefore
trains its runs in one process per core, each with one thread, longest run first.

Jobs are named by a function's import path (``"package.module:function"``) and plain arguments:
nothing but strings and numbers crosses between processes (a job writes its result to disk, e.g. a
run directory). A worker ignores Ctrl-C; the parent stops every worker on an interrupt or an error,
so nothing goes on training after the command has returned.
"""

import importlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from superposition.errors import ConfigError, RunDirError

_ERRORS: dict[str, type[Exception]] = {"ConfigError": ConfigError, "RunDirError": RunDirError}
_POLL_SECONDS = 0.2


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_jobs(
    function: str,
    jobs: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    threads: int = 1,
    on_done: Callable[[int], None] = lambda k: None,
) -> None:
    """Call ``function(*jobs[k])`` for every job in ``workers`` processes with ``threads`` threads
    each, handing out jobs in the given order (put the longest first), and ``on_done(k)`` in this
    process as each one finishes. The first failure stops every worker and is raised here:
    ConfigError and RunDirError as themselves, anything else as a RuntimeError carrying the
    worker's traceback."""
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be at least 1, got {workers} and {threads}")
    module, _, name = function.partition(":")
    if not module or not name:
        raise ConfigError(f"function must be 'package.module:function', got {function!r}")
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
    tasks: Any = ctx.Queue()
    results: Any = ctx.Queue()
    for k, args in enumerate(jobs):
        tasks.put((k, tuple(args)))
    procs = [
        ctx.Process(
            target=_work, args=(function, tasks, results, threads, os.getpid()), daemon=True
        )
        for _ in range(min(workers, len(jobs)))
    ]
    for _ in procs:
        tasks.put(None)
    pending = set(range(len(jobs)))
    try:
        for p in procs:
            p.start()
        while pending:
            try:
                k, error, message, trace = results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                _check_alive(procs)
                continue
            pending.discard(k)
            if error is not None:
                if error in _ERRORS:
                    raise _ERRORS[error](message)
                raise RuntimeError(f"job {jobs[k]} failed in a worker process:\n{trace}")
            on_done(k)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        tasks.close()
        results.close()


def _check_alive(procs: Sequence[Any]) -> None:
    for p in procs:
        if p.exitcode not in (None, 0):
            raise RuntimeError(
                f"a worker process died (exit code {p.exitcode}; a negative code is the signal "
                "that ended it, e.g. -9 when the system ran out of memory)"
            )
    if all(p.exitcode == 0 for p in procs):
        raise RuntimeError("every worker process ended with jobs unfinished")


def _work(function: str, tasks: Any, results: Any, threads: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt stops
    _exit_with_parent(parent)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    module, _, name = function.partition(":")
    fn = getattr(importlib.import_module(module), name)
    _limit_threads(threads)
    while (item := tasks.get()) is not None:
        k, args = item
        try:
            fn(*args)
        except Exception as exc:
            results.put((k, type(exc).__name__, str(exc), traceback.format_exc()))
        else:
            results.put((k, None, "", ""))


def _exit_with_parent(parent: int) -> None:
    """End this worker when its parent (pid ``parent``, passed in: the parent may already be gone
    when this starts) is gone, killed without a chance to stop its workers: nothing should go on
    training, or writing into folders, for a command that has ended."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_POLL_SECONDS * 5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _limit_threads(threads: int) -> None:
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        import numba
    except ImportError:
        return
    # NUMBA_NUM_THREADS (set above, before numba was imported) caps the pool at ``threads``
    numba.set_num_threads(threads)
