"""A sweep's chunks as Ray tasks (``pip install 'toy-superposition[ray]'``).

Each chunk is one task running :func:`superposition.sweep.train_chunk`, exactly what the local
backend runs: it trains the chunk's points as one batched training and writes their run
directories itself. So the workers must see the sweep folder at the driver's path and have
superposition installed: always true for the local cluster this backend starts by default; on a
cluster of several machines put the folder on a shared filesystem. The driver only waits, reports
progress as tasks finish and writes the table at the end.

Each point's result depends on its own config only (per-instance random streams), and each task
limits torch and numba to the CPUs it reserved, so the merged result equals the local backend's on
the CPU however the points were split into tasks: bit for bit on the fused step, to float rounding
on the sparse and torch steps (see :mod:`superposition.sweep`).
"""

import os
import socket
from pathlib import Path
from typing import Any

from superposition.errors import ConfigError, install_hint
from superposition.sweep import Chunk, Report, SweepConfig, train_chunk

CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a cluster given by address to answer before giving up."""
INSTALL_HINT = install_hint("ray")


def _train_task(out: str, sweep: dict[str, Any], points: list[int], threads: int) -> list[int]:
    """One chunk, in a Ray worker."""
    _limit_threads(threads)
    train_chunk(out, SweepConfig.from_dict(sweep), points)
    return points


def _limit_threads(threads: int) -> None:
    # tasks sharing a machine would otherwise each start one thread per core and fight over them
    import torch

    torch.set_num_threads(threads)
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; the torch step runs without
        return
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"the ray backend needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def check_reachable(address: str, timeout_s: float) -> None:
    """Refuse an address that is not host:port (or ray://host:port) or does not answer in time."""
    if address == "auto":
        return  # Ray looks for the cluster started on this machine and says when there is none
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"the Ray address must be host:port, ray://host:port or auto, got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ConfigError(
            f"the Ray cluster at {address} does not answer ({reason} within {timeout_s:g} s); "
            "check the address, or leave it out to start a local cluster"
        ) from None


class RayBackend:
    """Chunks as Ray tasks on the cluster at ``address`` (``None``: a local cluster started here
    and shut down afterwards, or the one this process is already connected to)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: int = 1,
        gpus_per_task: float = 0.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(f"the Ray address must be host:port or auto, got {address!r}")
        for name, value in (("num_cpus", num_cpus), ("cpus_per_task", cpus_per_task)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not gpus_per_task >= 0:
            raise ConfigError(f"gpus_per_task must be >= 0, got {gpus_per_task!r}")
        if not connect_timeout_s > 0:
            raise ConfigError(f"connect_timeout_s must be > 0, got {connect_timeout_s!r}")
        self.address = address.strip() if address is not None else None
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.connect_timeout_s = connect_timeout_s
        self._started = False

    def open(self) -> int:
        ray = _import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address is not None:
            check_reachable(self.address, self.connect_timeout_s)
        if not ray.is_initialized():
            try:
                if self.address is None:
                    ray.init(
                        address="local",
                        num_cpus=self.num_cpus or os.cpu_count() or 1,
                        include_dashboard=False,
                    )
                else:
                    ray.init(address=self.address)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                where = "a local Ray cluster" if self.address is None else self.address
                raise ConfigError(f"could not connect to {where} ({exc})") from None
            self._started = True
        cpus = ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.cpus_per_task))

    def run(self, out: Path, sweep: SweepConfig, chunks: list[Chunk], report: Report) -> None:
        ray = _import_ray()
        task = ray.remote(_train_task).options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task
        )
        doc = ray.put(sweep.to_dict())
        folder = str(Path(out).resolve())
        pending = {task.remote(folder, doc, list(c.points), self.cpus_per_task): c for c in chunks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    chunk = pending.pop(ref)
                    _get(ray, ref)
                    report(float(len(chunk.points)))
        except BaseException:
            # finished chunks are on disk; the rest is trained again when the sweep is resumed
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._started:
            _import_ray().shutdown()
            self._started = False


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, ConfigError):  # the task's one-sentence error, not a traceback
            raise ConfigError(str(exc.cause)) from None
        raise
