"""The Ray backend on a two-node cluster without a shared filesystem: results travel back through
Ray and the driver writes them.

Two raylets run on this machine: a head node and a worker node, each with one CPU, started as
separate processes by ``ray.cluster_utils.Cluster`` (what ``ray start --head`` and ``ray start
--address`` do; unlike ``ray stop``, which ends every Ray process on the machine, its shutdown ends
only the nodes this test started). Only the worker node has the custom resource ``worker_node``,
and the backend asks for it, so every chunk trains there.

What is enforced about the sweep folder, honestly: the tasks are never given its path, and every
worker process on the cluster runs an audit hook (``sys.addaudithook``, installed by Ray's
``worker_process_setup_hook``) that raises PermissionError when Python code in it opens a file
under the folder for writing, creates, renames or removes anything there. A writer in native code
that bypasses Python's audit events would not be caught; the package's writers create their files
and folders through Python (``os.mkdir``, ``open``, ``os.replace``), so they would be. A probe task
shows the hook refuses. Both nodes share this machine's disk, so this simulates machines without a
shared filesystem; it does not build them.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_sweep import SWEEP_TOML

from superposition.sweep import SweepConfig, SweepResult, run_sweep

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
import ray  # noqa: E402 - the dev install has the ray extra; the env var must come first
from ray.cluster_utils import Cluster  # noqa: E402


def _forbid_writes_under(folder: str):  # type: ignore[no-untyped-def]
    """A worker_process_setup_hook: Python code in the worker may not write under ``folder``."""

    def setup() -> None:
        import sys

        def hook(event: str, args: tuple) -> None:  # type: ignore[type-arg]
            if event == "open":  # open() and os.open() both give the os-level flags
                path, flags = args[0], args[2]
                writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
                paths = [path] if isinstance(flags, int) and flags & writes else []
            elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "shutil.rmtree"):
                paths = [args[0]]
                paths += [args[1]] if event == "os.rename" else []
            else:
                return
            for p in paths:
                if isinstance(p, str | os.PathLike) and os.path.abspath(p).startswith(folder):
                    raise PermissionError(f"this worker node may not write {p}")

        sys.addaudithook(hook)

    return setup


@pytest.fixture()
def two_nodes() -> Iterator[Cluster]:
    # a short temporary folder of its own: Ray's socket paths must stay under 108 characters
    temp = tempfile.mkdtemp(prefix="sp-ray-")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": temp},
    )
    try:
        cluster.add_node(num_cpus=1, resources={"worker_node": 1}, temp_dir=temp)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_results_travel_back_and_the_driver_writes_them(two_nodes: Cluster, tmp_path: Path):  # type: ignore[no-untyped-def]
    from superposition.distributed.ray_backend import RayBackend

    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP_TOML)
    sweep = SweepConfig.from_toml(spec)
    local = run_sweep(sweep, tmp_path / "local", progress=False)

    out = tmp_path / "ray"
    hook = _forbid_writes_under(str(out.resolve()))
    ray.init(address=two_nodes.address, runtime_env={"worker_process_setup_hook": hook})
    worker = [n for n in ray.nodes() if n["Resources"].get("worker_node")]
    assert len(ray.nodes()) == 2 and len(worker) == 1

    @ray.remote(num_cpus=1, resources={"worker_node": 1})
    def probe(path: str) -> tuple[str, str]:
        try:
            Path(path).mkdir(parents=True)
        except PermissionError as exc:
            return ray.get_runtime_context().get_node_id(), str(exc)
        return ray.get_runtime_context().get_node_id(), "wrote"

    node, said = ray.get(probe.remote(str(out / "probe")))
    assert node == worker[0]["NodeID"] and said.startswith("this worker node may not write")

    backend = RayBackend(resources={"worker_node": 1})
    result = run_sweep(sweep, out, backend=backend, progress=False, max_chunk_instances=4)
    assert result.info["backend"] == "ray" and result.info["chunks"] == 3
    loaded = SweepResult.load(out)
    assert loaded.table() == local.table()
    for i in range(sweep.n_points):
        a, b = loaded.run(i), local.run(i)
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params), i
        assert torch.equal(a.loss, b.loss) and torch.equal(a.history_loss, b.history_loss), i
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json", "points.safetensors", "results.csv", "sweep.json"
    ]  # fmt: skip
