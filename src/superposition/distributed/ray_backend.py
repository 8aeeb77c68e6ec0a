"""A sweep's chunks as Ray tasks (``pip install 'toy-superposition[ray]'``).

Each chunk is one task running :func:`superposition.sweep.train_chunk`, exactly what the local
backend runs: it trains the chunk's points as one batched training and returns their records,
plain numpy arrays and dicts, which travel back through Ray's object store (Ray serialises them;
nothing is read from disk with pickle). The task is given the sweep and the chunk's points, never
a path: the driver checks each record against its point's config and writes it into the sweep
folder as the task finishes, so the machines of the cluster need superposition installed but no
access to the folder (no shared filesystem).

Each point's result depends on its own config only (per-instance random streams), and each task
limits torch and numba to the CPUs it reserved, so the merged result equals the local backend's on
the CPU however the points were split into tasks: bit for bit on the fused step, to float rounding
on the sparse and torch steps (see :mod:`superposition.sweep`).
"""

import contextlib
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from superposition.errors import ConfigError, install_hint
from superposition.sweep import Chunk, PointRecord, Report, SweepConfig, Write, train_chunk
from superposition.sweep.run import TRAINED_SHARE

CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a cluster given by address to answer before giving up."""
INSTALL_HINT = install_hint("ray")
LOCAL_HINT = "check that `ray start --head` works on this machine, or run with --backend local"
"""How to see why a local Ray cluster could not start, as the one-sentence error says it."""


def cluster_hint(address: str) -> str:
    """How to see why the cluster at ``address`` could not be used."""
    return f"check it with `ray status --address {address}`, or run with --backend local"


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"""What an HTTP/2 client sends first (RFC 9113, Section 3.4): the preface and an empty SETTINGS
frame. Ray's head (its GCS) and Ray Client's server speak gRPC, which runs on HTTP/2, so they
answer with a SETTINGS frame of their own; anything else there would leave ``ray.init`` retrying
for minutes."""


def _train_task(sweep: dict[str, Any], points: list[int], threads: int) -> list[PointRecord]:
    """One chunk, in a Ray worker: its points' records (arrays and dicts) for the driver."""
    _limit_threads(threads)
    return train_chunk(SweepConfig.from_dict(sweep), points)


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
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            speaks_grpc = _speaks_http2(conn)
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ConfigError(
            f"the Ray cluster at {address} does not answer ({reason} within {timeout_s:g} s); "
            "check the address, or leave it out to start a local cluster"
        ) from None
    if not speaks_grpc:
        raise ConfigError(
            f"Ray could not start: something answers at {address} but it is not a Ray cluster "
            f"(it does not speak gRPC); {cluster_hint(address)}"
        )


def _speaks_http2(conn: socket.socket) -> bool:
    """Whether the server on ``conn`` answers an HTTP/2 preface with a SETTINGS frame."""
    try:
        conn.sendall(HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = conn.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except TimeoutError:
        return False
    return header[3] == 4  # the frame type: SETTINGS


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
        resources: Mapping[str, int | float] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(f"the Ray address must be host:port or auto, got {address!r}")
        for name, value in (("num_cpus", num_cpus), ("cpus_per_task", cpus_per_task)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not gpus_per_task >= 0:
            raise ConfigError(f"gpus_per_task must be >= 0, got {gpus_per_task!r}")
        resources = dict(resources or {})
        for key, amount in resources.items():
            if not isinstance(key, str) or not isinstance(amount, int | float) or not amount > 0:
                raise ConfigError(
                    f"resources maps names of custom Ray resources to amounts > 0, got "
                    f"{key!r}: {amount!r}"
                )
        if not connect_timeout_s > 0:
            raise ConfigError(f"connect_timeout_s must be > 0, got {connect_timeout_s!r}")
        self.address = address.strip() if address is not None else None
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.resources = resources
        """Custom Ray resources each task needs (``{"worker_node": 1}`` pins tasks to the nodes
        started with that resource)."""
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
            except Exception as exc:  # Ray raises many types (OSError, RuntimeError, ...)
                with contextlib.suppress(Exception):  # what it may have started half-way
                    ray.shutdown()
                if self.address is None:
                    where, hint = "a local cluster", LOCAL_HINT
                else:
                    where, hint = f"the cluster at {self.address}", cluster_hint(self.address)
                raise ConfigError(
                    f"Ray could not start {where} ({_first_line(exc)}); {hint}"
                ) from None
            self._started = True
        have = ray.cluster_resources()
        slots = have.get("CPU", 1) // self.cpus_per_task
        for key, amount in self.resources.items():
            if have.get(key, 0) < amount:
                self.close()
                raise ConfigError(
                    f"the Ray cluster has {have.get(key, 0):g} of the resource {key!r}, but each "
                    f"task needs {amount:g}; start a node with it or leave it out"
                )
            slots = min(slots, have[key] // amount)
        return max(1, int(slots))

    def run(
        self, sweep: SweepConfig, chunks: Sequence[Chunk], report: Report, write: Write
    ) -> None:
        ray = _import_ray()
        task = ray.remote(_train_task).options(
            num_cpus=self.cpus_per_task,
            num_gpus=self.gpus_per_task,
            resources=dict(self.resources),
        )
        doc = ray.put(sweep.to_dict())
        pending = {task.remote(doc, list(c.points), self.cpus_per_task): c for c in chunks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    chunk = pending.pop(ref)
                    records = _get(ray, ref)
                    report(TRAINED_SHARE * len(chunk.points))
                    write(records)
        except BaseException:
            # finished chunks are written; the rest is trained again when the sweep is resumed
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._started:
            _import_ray().shutdown()
            self._started = False


def _first_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message`` (Ray's can run to many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, ConfigError):  # the task's one-sentence error, not a traceback
            raise ConfigError(str(exc.cause)) from None
        raise
