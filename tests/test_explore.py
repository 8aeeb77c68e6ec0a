"""``superposition explore``: the local page's server over HTTP, the command line, and the page in
headless Chromium.

The server runs in-process on a free port. Over plain HTTP: the status, training a 5-in-2 model
and saving it as a loadable run directory, figures that change while a longer training runs, a
second training refused while one runs, stopping, the time limit, and bad input (bad and
non-numeric values, bounds, malformed or hostile JSON, foreign hosts, too many connections,
clients that send slowly) answered with a message and nothing written. In the browser: set the
form, train, see the figures drawn, save, stop a long training, and get a message on the page for
a bad value (screenshot: test-artifacts/explore.png).
"""

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CHROMIUM, CHROMIUM_ARGS

from superposition.cli import main
from superposition.explore.form import MAX_BODY, MAX_WORK, parse_form
from superposition.explore.server import (
    MAX_CONNECTIONS,
    MAX_SERVING,
    ExploreServer,
    start_server,
)
from superposition.store import load_run

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
FIVE_IN_TWO = {
    "n_features": "5",
    "n_hidden": "2",
    "density": "0.05",
    "importance_decay": "0.9",
    "instances": "4",
    "steps": "5000",
}
# 16 x 40 features in 6 dimensions, dense, 20,000 steps: tens of seconds, so it is surely still
# running while a test looks at it (and then stops it)
LONG = {
    "n_features": "40",
    "n_hidden": "6",
    "density": "1",
    "instances": "16",
    "steps": "20000",
}


# --------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExploreServer]:
    """A running explorer on a free port whose saved runs go to tmp_path/runs (not created)."""
    srv = start_server(0, tmp_path / "runs")
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    assert srv.trainer.ready.wait(60), "the warm-up did not finish"
    yield srv
    srv.close()
    thread.join(10)


def request(
    srv: ExploreServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON) of one request; ``raw`` sends bytes as they are."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        assert exc.headers["Content-Type"] == "application/json", text
        return exc.code, json.loads(text)


def wait_for(srv: ExploreServer, until: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll the status until ``until(status)``; return that status."""
    deadline = time.monotonic() + timeout
    while True:
        code, doc = request(srv, "GET", "/api/status")
        assert code == 200, doc
        if until(doc):
            return doc
        assert time.monotonic() < deadline, f"timed out; last status {doc['state']}"
        time.sleep(0.05)


def finished(doc: dict[str, Any]) -> bool:
    return doc["state"] != "running"


# --------------------------------------------------------------------------------------------------
# the happy path over HTTP


def test_page_script_and_idle_status(server: ExploreServer) -> None:
    with urllib.request.urlopen(server.url, timeout=10) as resp:
        page = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/html")
    for name in ("n_features", "n_hidden", "density", "importance_decay", "correlation", "kind",
                 "instances", "seed", "steps"):  # fmt: skip
        assert f'name="{name}"' in page, name
    assert 'id="message"' in page and 'src="/plotly.min.js"' in page
    assert "https://" not in page and "http://" not in page  # nothing from outside
    with urllib.request.urlopen(server.url + "plotly.min.js", timeout=10) as resp:
        js = resp.read()
        assert resp.headers["Content-Type"].startswith("text/javascript")
    assert len(js) > 1_000_000 and b"plotly.js" in js[:1000]
    assert request(server, "GET", "/api/status") == (200, {"state": "idle", "job": 0, "version": 0})


def test_train_five_in_two_then_save_a_loadable_run(server: ExploreServer, tmp_path: Path) -> None:
    code, doc = request(server, "POST", "/api/train", FIVE_IN_TWO)
    assert (code, doc) == (202, {"job": 1})
    done = wait_for(server, finished)
    assert done["state"] == "done", done["message"]
    # (how fast: benchmarks/bench_explore.py; timings are not asserted in tests)
    assert done["seconds"] > 0
    best = done["result"]["best"]
    assert done["instance"] == best and done["step"] == 5000
    frame = done["frame"]
    assert len(frame["gram"]) == 5 and all(len(row) == 5 for row in frame["gram"])
    assert len(frame["directions"]) == 5 and len(frame["norms"]) == 5
    assert len(done["loss"]["instances"]) == 4
    assert len(done["loss"]["steps"]) == len(done["loss"]["instances"][0]) > 100
    assert done["loss"]["instances"][best][-1] < done["loss"]["instances"][best][0]
    assert done["result"]["geometry"] == "pentagon"  # the paper's Section 2 result at this density
    assert not (tmp_path / "runs").exists()  # nothing written before Save

    code, saved = request(server, "POST", "/api/save")
    assert code == 200, saved
    path = Path(saved["path"])
    assert path.parent == (tmp_path / "runs").resolve()
    run = load_run(path)
    assert run.config.data.n_features == 5 and run.config.model.n_hidden == 2
    assert run.config.data.density == (0.05,) and run.n_instances == 4
    assert run.best()[0] == best
    # the figures showed the saved weights
    W = torch.tensor(frame["directions"])
    assert torch.allclose(W, run.W[best], rtol=1e-3, atol=1e-3)
    assert torch.allclose(torch.tensor(frame["gram"]), run.W[best] @ run.W[best].T, atol=2e-3)
    # saving again names the same folder rather than writing a second copy
    assert request(server, "POST", "/api/save") == (200, saved)
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert wait_for(server, finished)["saved"] == str(path)


def test_figures_update_while_training_and_a_second_train_is_refused(
    server: ExploreServer, tmp_path: Path
) -> None:
    assert request(server, "POST", "/api/train", LONG)[0] == 202
    code, doc = request(server, "POST", "/api/train", FIVE_IN_TWO)
    assert code == 409 and "already running" in doc["error"], doc
    assert request(server, "POST", "/api/save")[0] == 409

    first = wait_for(server, lambda d: d["state"] == "running" and d["step"] > 0)
    later = wait_for(server, lambda d: d["step"] > first["step"] + 100 or finished(d))
    assert later["state"] == "running", "the long training ended before it could be watched"
    assert later["version"] > first["version"]
    assert len(later["loss"]["steps"]) > len(first["loss"]["steps"])
    assert later["frame"]["gram"] != first["frame"]["gram"]  # the figures moved
    assert len(later["frame"]["norms"]) == 40 and "directions" not in later["frame"]  # m = 6

    assert request(server, "POST", "/api/stop") == (200, {"stopping": True})
    stopped = wait_for(server, finished, timeout=30)
    assert stopped["state"] == "stopped"
    assert stopped["message"].startswith("stopped at step"), stopped["message"]
    assert "nothing to save" in stopped["message"]
    code, doc = request(server, "POST", "/api/save")
    assert code == 400 and "did not finish" in doc["error"], doc
    assert request(server, "POST", "/api/stop") == (200, {"stopping": False})
    assert not (tmp_path / "runs").exists()
    # the server trains again after a stop
    assert request(server, "POST", "/api/train", {**FIVE_IN_TWO, "steps": "200"})[0] == 202
    assert wait_for(server, finished)["state"] == "done"


def test_time_limit_stops_a_training(tmp_path: Path) -> None:
    srv = start_server(0, tmp_path / "runs", time_limit=0.5, warm_up=False)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        assert request(srv, "POST", "/api/train", LONG)[0] == 202
        doc = wait_for(srv, finished, timeout=30)
        assert doc["state"] == "stopped"
        assert "time limit is 0.5 s" in doc["message"], doc["message"]
    finally:
        srv.close()


# --------------------------------------------------------------------------------------------------
# bad input: a message naming the value, the server keeps serving, nothing written


@pytest.mark.parametrize(
    "form, words",
    [
        ({"density": "abc"}, ["density", "'abc'", "(0, 1]"]),
        ({"density": "2"}, ["density", "'2'", "(0, 1]"]),
        ({"density": "nan"}, ["density", "'nan'"]),
        ({"n_features": "5.5"}, ["n_features", "'5.5'", "integer"]),
        ({"n_features": "1000"}, ["n_features", "'1000'", "[1, 100]", "explorer's limit"]),
        ({"steps": "50000"}, ["steps", "'50000'", "[1, 20000]"]),
        ({"steps": ""}, ["steps", "''"]),
        ({"instances": "0"}, ["instances", "'0'", "[1, 16]"]),
        ({"importance_decay": "-1"}, ["importance_decay", "'-1'"]),
        ({"kind": "transformer"}, ["kind", "'transformer'", "relu"]),
        ({"correlation": "sideways"}, ["correlation", "'sideways'", "anticorrelated"]),
        ({"correlation": "correlated", "set_size": "9"}, ["set_size 9", "n_features 5"]),
        # the config's own check, passed on unchanged
        (
            {"correlation": "anticorrelated", "set_size": "3", "density": "0.5"},
            ["anticorrelated set of 3", "density <= 0.333333"],
        ),
        (
            {"n_features": "100", "n_hidden": "50", "instances": "16", "steps": "20000"},
            ["too large", f"{MAX_WORK:.0g}"],
        ),
        ({"colour": "red"}, ["unknown field 'colour'"]),
        ({"n_hidden": True}, ["n_hidden", "True"]),
        ([1, 2], ["JSON object"]),
    ],
)
def test_bad_values_are_refused_with_a_message(
    server: ExploreServer, tmp_path: Path, form: Any, words: list[str]
) -> None:
    code, doc = request(server, "POST", "/api/train", form)
    assert code == 400, doc
    for w in words:
        assert w in doc["error"], (w, doc["error"])
    assert "Traceback" not in doc["error"]
    assert request(server, "GET", "/api/status")[1]["state"] == "idle"
    assert not (tmp_path / "runs").exists()


def test_malformed_requests(server: ExploreServer, tmp_path: Path) -> None:
    code, doc = request(server, "POST", "/api/train", raw=b"{not json")
    assert code == 400 and "not valid JSON" in doc["error"]
    code, doc = request(server, "POST", "/api/train", raw=b"x" * (MAX_BODY + 1))
    assert code == 413 and str(MAX_BODY) in doc["error"]
    code, doc = request(
        server, "POST", "/api/train", raw=b"n_features=5", headers={"Content-Type": "text/plain"}
    )
    assert code == 415 and "application/json" in doc["error"]
    assert request(server, "GET", "/nope")[0] == 404
    assert request(server, "GET", "/api/train")[0] == 405
    assert request(server, "POST", "/api/status", {})[0] == 405
    code, doc = request(server, "POST", "/api/save")
    assert code == 400 and "nothing to save" in doc["error"], doc
    assert "train a model first" in doc["error"]
    # a page from elsewhere (DNS rebinding, a foreign origin) cannot drive the explorer
    assert request(server, "GET", "/api/status", headers={"Host": "evil.example:80"})[0] == 403
    code, doc = request(
        server, "POST", "/api/train", FIVE_IN_TWO, headers={"Origin": "http://evil.example"}
    )
    assert code == 403
    assert request(server, "GET", "/api/status")[1]["state"] == "idle"
    assert not (tmp_path / "runs").exists()


def test_too_many_connections_get_503_and_serving_goes_on(server: ExploreServer) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        # the server accepts the idle connections in its own time (slowly on a busy machine):
        # ask until it has, and then it must say 503
        deadline = time.monotonic() + 20
        while (answer := request(server, "GET", "/api/status"))[0] == 200:
            assert time.monotonic() < deadline, "the server never ran out of slots"
            time.sleep(0.05)
        code, doc = answer
        assert code == 503 and "too many requests" in doc["error"]
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while request(server, "GET", "/api/status")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def quick_deadline(tmp_path: Path) -> Iterator[ExploreServer]:
    """An explorer that gives each client 1.5 s to send its whole request."""
    srv = start_server(0, tmp_path / "runs", warm_up=False, request_deadline=1.5)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.close()
    thread.join(10)


def test_slow_clients_neither_starve_requests_nor_outlast_the_deadline(
    quick_deadline: ExploreServer,
) -> None:
    srv = quick_deadline
    # more slow clients than there are slots, each sending one header byte every 0.2 s: none of
    # them ever finishes its request, and none may hold a slot while it sends
    slow = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(MAX_SERVING + 8)]
    stop = threading.Event()

    def trickle() -> None:
        for i in range(50):
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"GET /api/status HTTP/1.0\r\nX-Slow: "[i : i + 1] or b"x")
            if stop.wait(0.2):
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(0.3)  # every slow client has started its request
        for _ in range(8):
            start = time.monotonic()
            code, doc = request(srv, "GET", "/api/status")
            assert code == 200 and doc["state"] == "idle", (code, doc)
            assert time.monotonic() - start < 1.0
        # the deadline is for the whole request, not for each read: the slow clients, though
        # they never pause for long, are answered 408 and cut off after about 1.5 s
        for s in slow:
            s.settimeout(5.0)
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.0 408"), answer
    finally:
        stop.set()
        sender.join(5)
        for s in slow:
            s.close()


@pytest.mark.parametrize(
    "body, words",
    [
        (b"[" * 5000 + b"]" * 5000, "nests arrays and objects 5000 deep"),
        (b'{"n_features": ' + b"9" * 5000 + b"}", "number of 5000 characters"),
        (b'{"n_features": 1e400}', "too large for a float"),
        (b'{"n_features": NaN}', "not a JSON number"),
    ],
)
def test_hostile_json_bodies_get_400_and_no_traceback(
    quick_deadline: ExploreServer, capsys: pytest.CaptureFixture[str], body: bytes, words: str
) -> None:
    assert len(body) <= MAX_BODY
    code, doc = request(quick_deadline, "POST", "/api/train", raw=body)
    assert code == 400 and words in doc["error"], doc
    assert doc["error"].startswith("the request body ")
    assert "Traceback" not in capsys.readouterr().err


def test_a_failing_training_or_route_gets_a_sentence_not_a_traceback(
    server: ExploreServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_train(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("superposition.explore.job.train", broken_train)
    assert request(server, "POST", "/api/train", FIVE_IN_TWO)[0] == 202
    doc = wait_for(server, finished)
    assert doc["state"] == "failed" and doc["message"] == "training failed: RuntimeError: boom"
    code, doc = request(server, "POST", "/api/save")
    assert code == 400 and "nothing to save" in doc["error"]

    def broken_status() -> None:
        raise KeyError("oops")

    monkeypatch.setattr(server.trainer, "status", broken_status)
    code, doc = request(server, "GET", "/api/status")
    assert code == 500 and doc == {"error": "internal error in the explorer (see its terminal)"}
    assert "KeyError: 'oops'" in capsys.readouterr().err  # the traceback goes to the terminal
    monkeypatch.undo()
    assert request(server, "GET", "/api/status")[0] == 200  # still serving


def test_parse_form_defaults_are_the_five_in_two_model() -> None:
    config, values = parse_form({})
    assert config.data.n_features == 5 and config.model.n_hidden == 2
    assert config.model.kind == "relu" and config.train.device == "cpu"
    assert values["correlation"] == "none" and config.data.correlated == ()
    config, _ = parse_form({"n_features": 7, "correlation": "correlated", "set_size": "3"})
    assert config.data.correlated == (3, 3)  # as many whole sets as fit


# --------------------------------------------------------------------------------------------------
# the command line


def test_port_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code = main(["explore", "--port", str(port), "--out-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"port {port}" in err and "--port 0" in err
    assert "serving" not in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--port", "70000"], ["--port", "70000"]),
        (["--time-limit", "0"], ["--time-limit", "got 0"]),
    ],
)
def test_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: list[str]
) -> None:
    code = main(["explore", *flags, "--out-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    for w in words:
        assert w in err
    assert not (tmp_path / "runs").exists()


def test_out_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    assert main(["explore", "--out-dir", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_command_serves_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "superposition", "explore", "--out-dir", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("superposition explore: serving on http://127.0.0.1:"), line
        assert line.rstrip().endswith("(Ctrl-C to stop)")
        url = line.split()[4]
        with urllib.request.urlopen(url + "api/status", timeout=10) as resp:
            assert json.loads(resp.read())["state"] == "idle"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------------
# the page in headless Chromium

FIGURES_JS = """() => {
    const plot = (id) => document.getElementById(id);
    const geo = plot('geometry').data || [];
    return {
        gram: (plot('gram').data || []).map((t) => (t.z || []).length),
        geometry: geo.map((t) => t.type + ':' + (t.x || []).filter((v) => v !== null).length),
        loss: (plot('loss').data || []).map((t) => t.x.length),
        svg: ['gram', 'geometry', 'loss'].every((id) =>
            plot(id).querySelector('.main-svg') !== null),
        redraws: window.explore.redraws,
    };
}"""


@pytest.mark.slow
def test_page_in_chromium(server: ExploreServer, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    outside: list[str] = []
    origin = f"http://127.0.0.1:{server.port}/"

    def route(r):  # type: ignore[no-untyped-def]
        if r.request.url.startswith((origin, "data:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    def console(m):  # type: ignore[no-untyped-def]
        # a refused request (400, 409) is logged by Chromium itself; anything else is a bug
        refused = "status of 400" in m.text or "status of 409" in m.text
        if m.type == "error" and not refused:
            console_errors.append(m.text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", console)
            page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))
            page.route("**/*", route)
            page.goto(server.url, wait_until="load")
            page.wait_for_function("document.body.dataset.state === 'idle'")
            before = page.evaluate(FIGURES_JS)
            assert before["gram"] == [] and before["loss"] == [] and before["redraws"] == 0

            # the 5-in-2 model of Section 2, set through the form
            for name, value in FIVE_IN_TWO.items():
                page.fill(f"#f-{name}", value)
            page.select_option("#f-kind", "relu")
            page.select_option("#f-correlation", "none")
            page.click("#train")
            page.wait_for_function("document.body.dataset.state === 'done'", timeout=30_000)
            after = page.evaluate(FIGURES_JS)
            assert after["gram"] == [5] and after["svg"], after
            assert after["geometry"] == ["scatter:10", "scatter:5"], after  # 5 arrows, 5 tips
            assert len(after["loss"]) == 4 and min(after["loss"]) > 100, after
            assert after["redraws"] >= 1
            assert "geometry: pentagon" in page.inner_text("#status")
            assert page.is_enabled("#save") and not page.is_enabled("#stop")
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "explore.png"
            page.screenshot(path=str(shot), full_page=True)

            page.click("#save")
            page.wait_for_function("document.getElementById('message').dataset.kind === 'ok'")
            saved = page.inner_text("#message").removeprefix("saved the run to ").strip()
            assert load_run(saved).config.data.n_features == 5

            # a long training redraws while it runs (bars: 6 hidden dimensions) and stops
            for name, value in LONG.items():
                page.fill(f"#f-{name}", value)
            page.click("#train")
            page.wait_for_function("document.body.dataset.state === 'running'")
            start = page.evaluate("window.explore.redraws")
            page.wait_for_function(
                "n => window.explore.redraws >= n && document.body.dataset.state === 'running'",
                arg=start + 2,
                timeout=30_000,
            )
            running = page.evaluate(FIGURES_JS)
            assert running["geometry"] == ["bar:40"] and running["gram"] == [40], running
            assert page.is_enabled("#stop") and not page.is_enabled("#train")
            page.click("#stop")
            page.wait_for_function("document.body.dataset.state === 'stopped'", timeout=30_000)
            assert "stopped at step" in page.inner_text("#message")

            # bad values: a message on the page, the server still serving, nothing trained
            for value, words in (("abc", ["density", "'abc'"]), ("2", ["density", "'2'"])):
                page.fill("#f-density", value)
                page.click("#train")
                page.wait_for_function(
                    f"document.getElementById('message').textContent.includes(\"'{value}'\")"
                )
                message = page.locator("#message")
                assert message.is_visible() and message.get_attribute("data-kind") == "error"
                for w in words:
                    assert w in message.inner_text()
                status = page.evaluate("fetch('/api/status').then((r) => r.json())")
                assert status["state"] == "stopped" and status["job"] == 2
        finally:
            browser.close()
    assert outside == [], f"the page tried to reach the network: {outside}"
    assert console_errors == [], console_errors
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(Path(saved).parent.iterdir())) == 1
