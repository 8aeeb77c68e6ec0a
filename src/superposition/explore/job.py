"""One training at a time, in a background thread, watched by the page while it runs.

:class:`Trainer` starts :func:`superposition.train` in a thread with a callback that keeps the
latest weights and the loss history (every ``log_every`` steps), from which :meth:`Trainer.status`
builds what the page draws. A second training while one runs is refused (:class:`Busy`); a training
can be stopped, and is stopped by itself after the time limit. The finished :class:`Run` stays in
memory until the next training, and :meth:`Trainer.save` writes it as a run directory.
"""

import datetime
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.errors import ConfigError
from superposition.explore import frames
from superposition.fastpaths import FUSED_MAX_WEIGHTS, numba_available
from superposition.results import Run
from superposition.store import save_run
from superposition.training import StepInfo, train

RECENT = 5
"""Logged losses averaged to pick the instance shown while training."""


class Busy(Exception):
    """A training is running: the request must wait for it (the server answers 409)."""


class _Stop(Exception):
    """Raised from the callback to end a training early."""


@dataclass
class _Job:
    """The state of the current (or last) training; guarded by the trainer's lock."""

    id: int
    config: RunConfig
    form: dict[str, Any]
    started: float
    state: str = "running"  # running, done, stopped, failed
    step: int = 0
    seconds: float = 0.0
    message: str = ""
    version: int = 0
    steps: list[int] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)
    W: torch.Tensor | None = None
    shown: int = 0
    run: Run | None = None
    result: dict[str, Any] | None = None
    saved: str | None = None
    stop_reason: str = ""


class Trainer:
    """Runs one training at a time and reports on it (thread-safe)."""

    def __init__(self, time_limit: float = 120.0):
        self.time_limit = time_limit
        self._lock = threading.Lock()  # guards _job and its fields
        self._compute = threading.Lock()  # one numba/torch training at a time, warm-up included
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._job: _Job | None = None
        self._thread: threading.Thread | None = None
        self._cache: tuple[tuple[int, int], dict[str, Any]] | None = None
        self.ready = threading.Event()
        """Set when :meth:`warm_up` has finished (or was not asked for)."""

    # ---- control ------------------------------------------------------------------------------

    def start(self, config: RunConfig, form: dict[str, Any]) -> int:
        """Start training ``config`` in the background and return the job's id."""
        with self._lock:
            if self._job is not None and self._job.state == "running":
                raise Busy("a training is already running; wait for it to finish or press Stop")
            job_id = 1 if self._job is None else self._job.id + 1
            self._job = _Job(id=job_id, config=config, form=form, started=time.perf_counter())
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._train, args=(self._job,), name=f"explore-train-{job_id}", daemon=True
            )
            self._thread.start()
            return job_id

    def stop(self, reason: str = "") -> bool:
        """Ask the running training to stop; False when none runs."""
        with self._lock:
            if self._job is None or self._job.state != "running":
                return False
            self._job.stop_reason = reason
            self._stop.set()
            return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the training thread (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def warm_up(self) -> None:
        """Train two tiny models so numba's kernels are loaded (or compiled) before the first
        request: the first training then takes its usual time."""
        try:
            for n, m in ((5, 2), (20, 16)):  # the fused and the sparse CPU path
                config = RunConfig(
                    data=DataConfig(n_features=n, density=(0.5,)),
                    model=ModelConfig(n_hidden=m),
                    train=TrainConfig(steps=2, batch_size=8, eval_samples=8, device="cpu"),
                )
                _numba_threads_for(config)
                with self._compute:
                    train(config, progress=False)
        finally:
            self.ready.set()

    # ---- the training thread ------------------------------------------------------------------

    def _train(self, job: _Job) -> None:
        _numba_threads_for(job.config)
        try:
            with self._compute:
                run = train(job.config, progress=False, callbacks=[lambda i: self._on_step(job, i)])
            best = run.best()[0]
            result = {
                "loss": [frames.rounded(x) for x in run.loss.tolist()],
                "best": best,
                "geometry": frames.geometry_label(run.W[best]),
                "path": run.info.get("step"),
            }
        except _Stop:
            steps = job.config.train.steps
            self._finish(
                job,
                "stopped",
                f"stopped at step {job.step} of {steps}{job.stop_reason}; there is nothing to save",
            )
        except ConfigError as exc:
            self._finish(job, "failed", str(exc))
        except Exception as exc:  # a bug: the page gets a sentence, the terminal the traceback
            traceback.print_exc(file=sys.stderr)
            self._finish(job, "failed", f"training failed: {type(exc).__name__}: {exc}")
        else:
            with self._lock:
                job.run, job.result = run, result
                job.W, job.shown = run.W.clone(), best
            self._finish(job, "done", "")

    def _on_step(self, job: _Job, info: StepInfo) -> None:
        if self._stop.is_set():
            raise _Stop
        elapsed = time.perf_counter() - job.started
        if elapsed > self.time_limit:
            job.stop_reason = (
                f": the explorer's time limit is {self.time_limit:g} s; fewer steps, seeds or "
                "features train faster"
            )
            raise _Stop
        n_inst = job.config.n_instances
        W = info.model.W.detach().to("cpu", copy=True)
        loss = info.loss.detach().to("cpu").tolist()
        with self._lock:
            if job.W is None:
                job.W = torch.zeros(n_inst, *W.shape[1:])
            job.W[info.instances.start : info.instances.stop] = W
            if not job.steps or job.steps[-1] != info.step:
                job.steps.append(info.step)
                job.losses.append([float("nan")] * n_inst)
            job.losses[-1][info.instances.start : info.instances.stop] = loss
            recent = job.losses[-RECENT:]
            means = [sum(r[k] for r in recent) / len(recent) for k in range(n_inst)]
            job.shown = min(range(n_inst), key=lambda k: (not means[k] < float("inf"), means[k]))
            job.step = info.step + 1
            job.seconds = elapsed
            job.version += 1

    def _finish(self, job: _Job, state: str, message: str) -> None:
        with self._lock:
            job.state, job.message = state, message
            job.seconds = time.perf_counter() - job.started
            job.version += 1

    # ---- reports ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the page shows: state, progress, the shown instance's figures, the loss history."""
        with self._lock:
            job = self._job
            if job is None:
                return {"state": "idle", "job": 0, "version": 0}
            doc: dict[str, Any] = {
                "state": job.state,
                "job": job.id,
                "version": job.version,
                "step": job.step,
                "steps": job.config.train.steps,
                "seconds": round(job.seconds, 3),
                "message": job.message,
                "form": job.form,
                "instance": job.shown,
                "instances": job.config.n_instances,
                "result": job.result,
                "saved": job.saved,
            }
            W = job.W[job.shown].clone() if job.W is not None else None
            steps, losses = list(job.steps), [list(r) for r in job.losses]
        key = (job.id, doc["version"])
        cache = self._cache
        if cache is not None and cache[0] == key:
            figures = cache[1]
        else:
            figures = {
                "frame": frames.frame(W) if W is not None else None,
                "loss": frames.loss_series(steps, losses),
            }
            self._cache = (key, figures)
        return {**doc, **figures}

    def save(self, out_dir: Path) -> Path:
        """Write the last finished training as a new run directory under ``out_dir``."""
        with self._save_lock:
            with self._lock:
                job = self._job
                if job is not None and job.state == "running":
                    raise Busy("a training is running; save when it has finished")
                if job is None or job.run is None:
                    what = "the last training did not finish" if job is not None else "no run yet"
                    raise ConfigError(f"nothing to save: {what}; train a model first")
                if job.saved is not None:
                    return Path(job.saved)
                run = job.run
            target = _fresh_name(out_dir, run.config)
            save_run(run, target)
            with self._lock:
                job.saved = str(target)
                job.version += 1
            return target


def _numba_threads_for(config: RunConfig) -> None:
    """One numba thread for this (training) thread when the model is tiny, all otherwise.

    A tiny model's step takes microseconds, and a parallel kernel waits at its end for every
    worker: on a machine busy with other work a descheduled worker makes each step cost a time
    slice, and a two-second training takes tens of seconds (measured: 0.3 s with one thread,
    2-25 s with two, on 2 busy cores). The fused kernel's results do not depend on the thread
    count. numba's setting is per thread, so the rest of the process is unaffected.
    """
    if not numba_available():
        return
    import numba

    tiny = config.data.n_features * config.model.n_hidden <= FUSED_MAX_WEIGHTS
    numba.set_num_threads(1 if tiny else numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def _fresh_name(out_dir: Path, config: RunConfig) -> Path:
    """``out_dir/explore-YYYYmmdd-HHMMSS-<kind>-<n>in<m>`` (with -2, -3 ... if taken)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"explore-{stamp}-{config.model.kind}-{config.data.n_features}in{config.model.n_hidden}"
    target, k = out_dir / base, 1
    while target.exists():
        k += 1
        target = out_dir / f"{base}-{k}"
    return target
