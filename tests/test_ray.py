"""The Ray backend on a real local cluster: its result equals the local backend's bit for bit."""

import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from test_sweep import SWEEP_TOML

from superposition.cli import main
from superposition.errors import ConfigError
from superposition.sweep import SweepConfig, SweepResult, run_sweep

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
import ray  # noqa: E402 - the dev install has the ray extra; the env var must come first


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    import numba

    spec = tmp_path_factory.mktemp("spec") / "sweep.toml"
    spec.write_text(SWEEP_TOML)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # tiny steps: the thread pool would cost more than the work
    try:
        return run_sweep(
            SweepConfig.from_toml(spec), tmp_path_factory.mktemp("local") / "s", progress=False
        )
    finally:
        numba.set_num_threads(threads)


def _same(a: SweepResult, b: SweepResult) -> None:
    assert a.sweep == b.sweep
    assert a.table() == b.table()
    for i in range(a.sweep.n_points):
        ra, rb = a.run(i), b.run(i)
        assert all(torch.equal(ra.params[k], rb.params[k]) for k in ra.params), i
        assert torch.equal(ra.loss, rb.loss) and torch.equal(ra.history_loss, rb.history_loss), i


def test_ray_equals_local(cluster, local: SweepResult, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from superposition.distributed.ray_backend import RayBackend

    result = run_sweep(local.sweep, tmp_path / "ray", backend=RayBackend(), progress=False)
    # two CPUs: the points are split into two tasks, stacked differently from the local run
    assert result.info["backend"] == "ray" and result.info["chunks"] == 2
    _same(result, local)
    assert ray.is_initialized()  # a cluster it did not start is left running


def test_cli_ray_backend(cluster, local: SweepResult, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP_TOML)
    out = tmp_path / "out"
    address = ray.get_runtime_context().gcs_address  # the running cluster, as host:port
    argv = ["sweep", str(spec), "--out", str(out), "--backend", "ray", "--address", address]
    code = main([*argv, "--no-progress"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "on the ray backend" in stdout
    _same(SweepResult.load(out), local)


def test_unreachable_address_exit_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP_TOML)
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out), "--backend", "ray", "--no-progress"]
    code = main([*argv, "--address", "127.0.0.1:1"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: the Ray cluster at 127.0.0.1:1 does not answer")
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()
    code = main([*argv, "--address", "nowhere"])
    _, err = capsys.readouterr()
    assert code == 2 and "the Ray address must be host:port" in err
    assert not out.exists()


def test_without_ray_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from superposition.distributed.ray_backend import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    sweep = SweepConfig.from_toml_dict({"axes": {"density": [1.0]}})
    with pytest.raises(ConfigError, match=r"pip install 'toy-superposition\[ray\]'"):
        run_sweep(sweep, tmp_path / "out", backend=RayBackend(), progress=False)


def test_ray_that_cannot_start_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what Ray raises when it cannot start a local cluster (here: its temporary folder cannot be
    # made) is not one of a few known types: any of them becomes the sentence
    def cannot_start(**kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "/proc/nope")

    shutdowns: list[bool] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", cannot_start)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(True))
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP_TOML)
    out = tmp_path / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--backend", "ray", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(
        "error: Ray could not start a local cluster (FileNotFoundError: [Errno 2] No such file or "
        "directory: '/proc/nope'); check that `ray start --head` works on this machine"
    )
    assert "Traceback" not in err and err.count("\n") == 1
    assert shutdowns == [True]  # whatever Ray started half-way is stopped
    assert not out.exists()


def _server(reply: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A TCP server on a free local port that answers every connection with ``reply`` (or says
    nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer(conn: socket.socket) -> None:
        if reply is not None:
            conn.sendall(reply)
        time.sleep(2)  # then hang up
        conn.close()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    "reply", [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 400 Bad Request\r\n", None]
)
def test_an_address_that_is_not_ray_is_refused_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reply: bytes | None
) -> None:
    from superposition.distributed.ray_backend import RayBackend

    server, _ = _server(reply)
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        started = time.perf_counter()
        with pytest.raises(ConfigError) as info:
            RayBackend(address, connect_timeout_s=1.0).open()
        assert time.perf_counter() - started < 3.0  # ray.init would retry for minutes
        assert str(info.value) == (
            f"Ray could not start: something answers at {address} but it is not a Ray cluster "
            f"(it does not speak gRPC); check it with `ray status --address {address}`, or run "
            "with --backend local"
        )
        if reply is not None:  # the command line says the same, exit 2, nothing written
            spec = tmp_path / "sweep.toml"
            spec.write_text(SWEEP_TOML)
            out = tmp_path / "out"
            argv = ["sweep", str(spec), "--out", str(out), "--backend", "ray", "--address"]
            assert main([*argv, address, "--no-progress"]) == 2
            assert "it does not speak gRPC" in capsys.readouterr().err
            assert not out.exists()
    finally:
        server.close()
