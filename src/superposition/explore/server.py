"""The explorer's HTTP server: standard library only, bound to 127.0.0.1, bounded in every way.

Routes (JSON in and out for ``/api``; errors are ``{"error": "<one sentence>"}``, never a
traceback):

``GET /``                the page (:mod:`superposition.explore.page`)
``GET /plotly.min.js``   plotly.js from the installed plotly package (no outside request)
``GET /api/status``      the training's state, progress and figures
``POST /api/train``      start a training from the form (400 bad value, 409 one already runs)
``POST /api/stop``       stop the running training
``POST /api/save``       write the last finished run under ``--out-dir`` (400 nothing to save)

Bounds: request bodies of at most :data:`~superposition.explore.form.MAX_BODY` bytes, at most
:data:`MAX_CONNECTIONS` connections open at once and :data:`MAX_SERVING` requests handled at once
(more get 503 at once), one training at a time within the form's limits and the time limit. A
request is read whole (headers and body) before it takes one of the :data:`MAX_SERVING` slots, and
within a total deadline (:data:`REQUEST_DEADLINE`, 408 after it), so clients that send slowly
cannot keep the others waiting: they hold a connection, never a slot, and not for long.

Requests must name this server as their Host (and, when a browser sends one, as their Origin),
and POSTs must be ``application/json``, so other web pages open in the same browser cannot drive
the explorer.
"""

import contextlib
import errno
import io
import json
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from superposition import files
from superposition.errors import ConfigError, install_hint
from superposition.explore import page
from superposition.explore.form import MAX_BODY, parse_form
from superposition.explore.job import Busy, Trainer

HOST = "127.0.0.1"
MAX_CONNECTIONS = 64
"""Connections open at once (being read or served); more are answered 503 at once."""
MAX_SERVING = 16
"""Requests, read whole, handled at once; more are answered 503 at once."""
REQUEST_DEADLINE = 10.0
"""Seconds a client has to send its whole request (headers and body), however it sends it."""
SOCKET_TIMEOUT = 10.0
"""Seconds one send of the answer may wait for a client that does not read."""
MAX_HEAD = 64 * 1024
"""Largest request line and headers read, in bytes."""
DRAIN_LIMIT = 2**20
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\n\r\n"
    b'{"error": "the explorer is serving too many requests at once; try again"}'
)
_TOO_SLOW = (
    b"HTTP/1.0 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\n\r\n"
    b'{"error": "the request was not sent in time"}'
)
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)


class ClientError(Exception):
    """A request the explorer refuses: an HTTP status and one sentence for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def plotly_js() -> bytes:
    """plotly.js as bundled with the installed plotly package."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ConfigError(
            f"superposition explore draws with plotly; install it with: {install_hint('report')}"
        ) from None
    return str(get_plotlyjs()).encode()


class ExploreServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that holds the explorer's state and serves at most
    :data:`MAX_CONNECTIONS` requests at once."""

    daemon_threads = True

    def __init__(
        self,
        port: int,
        out_dir: Path,
        trainer: Trainer,
        *,
        request_deadline: float = REQUEST_DEADLINE,
    ):
        self.out_dir = out_dir
        self.trainer = trainer
        self.page = page.render().encode()
        self.plotly = plotly_js()
        self.request_deadline = request_deadline
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._slots = threading.BoundedSemaphore(MAX_SERVING)
        self._read: dict[socket.socket, bytes] = {}  # each request as read, for its handler
        try:
            super().__init__((HOST, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {HOST} is in use; pick another with --port N, or --port 0 "
                    "for a free one"
                ) from None
            raise ConfigError(
                f"cannot serve on {HOST}:{port} ({exc.strerror or exc}); pick another port with "
                "--port N, or --port 0 for a free one"
            ) from None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # The semaphores are taken and given back in the request's own thread: taken in the
        # accepting thread instead, a Ctrl-C landing there while the request's thread starts
        # would give them back twice (and the ValueError would swallow the Ctrl-C).
        if not self._connections.acquire(blocking=False):
            self._refuse(request, _BUSY)
            return
        try:
            try:
                self._read[request] = read_request(request, self.request_deadline)
            except TimeoutError:
                self._refuse(request, _TOO_SLOW)
                return
            except OSError:  # the client went away
                self.shutdown_request(request)
                return
            # only now, with the whole request in memory, does it take a slot
            if not self._slots.acquire(blocking=False):
                self._refuse(request, _BUSY)
                return
            try:
                super().process_request_thread(request, client_address)
            finally:
                self._slots.release()
        finally:
            self._read.pop(request, None)
            self._connections.release()

    def _refuse(self, request: Any, answer: bytes) -> None:
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall(answer)
        self.shutdown_request(request)

    def request_bytes(self, request: Any) -> bytes | None:
        """The request read whole from ``request`` (its socket) before it was handled."""
        return self._read.get(request)

    def close(self) -> None:
        """Stop any training and the server (call from another thread than serve_forever's)."""
        self.trainer.stop(": the explorer was shut down")
        self.shutdown()
        self.server_close()
        self.trainer.wait(10.0)


def read_request(sock: socket.socket, seconds: float) -> bytes:
    """The request line, headers and body (as long as its Content-Length says, up to
    :data:`DRAIN_LIMIT`) that the client sends on ``sock`` within ``seconds`` in all;
    :class:`TimeoutError` when the deadline passes first.

    What the client sends after that, or a request cut short (the client stopped sending), is
    left to the handler to answer as it would a malformed request.
    """
    end = time.monotonic() + seconds
    data = bytearray()

    def receive() -> bool:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        data.extend(chunk)
        return bool(chunk)

    while (head := _END_OF_HEAD.search(data)) is None:
        if len(data) > MAX_HEAD or not receive():
            return bytes(data)
    match = _CONTENT_LENGTH.search(data, 0, head.start() + 1)
    want = head.end() + min(int(match.group(1)), DRAIN_LIMIT) if match else 0
    while len(data) < want and receive():
        pass
    return bytes(data)


class Handler(BaseHTTPRequestHandler):
    """One request: routed by method and path, answered with JSON, HTML or JavaScript."""

    server: ExploreServer
    timeout = SOCKET_TIMEOUT
    server_version = "superposition-explore"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        data = self.server.request_bytes(self.request)
        if data is not None:  # read whole by the server: the handler reads it from memory
            self.rfile.close()
            self.rfile = io.BytesIO(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ---- routing ------------------------------------------------------------------------------

    def _routes(self) -> dict[tuple[str, str], Callable[[], None]]:
        return {
            ("GET", "/"): self._page,
            ("GET", "/index.html"): self._page,
            ("GET", "/plotly.min.js"): self._plotly,
            ("GET", "/api/status"): self._status,
            ("POST", "/api/train"): self._train,
            ("POST", "/api/stop"): self._stop,
            ("POST", "/api/save"): self._save,
        }

    def _dispatch(self, method: str) -> None:
        try:
            self._check_origin()
            path = urlsplit(self.path).path
            routes = self._routes()
            handler = routes.get((method, path))
            if handler is None:
                if any(p == path for _, p in routes):
                    raise ClientError(405, f"{method} is not allowed on {path}")
                raise ClientError(404, f"no such page: {path}")
            handler()
        except ClientError as exc:
            self._json(exc.status, {"error": str(exc)})
        except ConfigError as exc:
            self._json(400, {"error": str(exc)})
        except Busy as exc:
            self._json(409, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away; nothing to answer
        except Exception:  # a bug: the terminal gets the traceback, the page one sentence
            traceback.print_exc(file=sys.stderr)
            self._json(500, {"error": "internal error in the explorer (see its terminal)"})

    def _check_origin(self) -> None:
        allowed = {f"{HOST}:{self.server.port}", f"localhost:{self.server.port}"}
        host = self.headers.get("Host")
        if host is not None and host not in allowed:
            raise ClientError(
                403,
                f"this explorer answers only to http://{HOST}:"
                f"{self.server.port}/, not to Host {host!r}",
            )
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{a}" for a in allowed}:
            raise ClientError(403, f"requests from {origin!r} are not allowed")

    # ---- routes -------------------------------------------------------------------------------

    def _page(self) -> None:
        self._send(200, self.server.page, "text/html; charset=utf-8")

    def _plotly(self) -> None:
        self._send(
            200,
            self.server.plotly,
            "text/javascript; charset=utf-8",
            {"Cache-Control": "max-age=3600"},
        )

    def _status(self) -> None:
        self._json(200, self.server.trainer.status())

    def _train(self) -> None:
        config, values = parse_form(self._body())
        job = self.server.trainer.start(config, values)
        self._json(202, {"job": job})

    def _stop(self) -> None:
        self._body()
        self._json(200, {"stopping": self.server.trainer.stop()})

    def _save(self) -> None:
        self._body()
        try:
            path = self.server.trainer.save(self.server.out_dir)
        except OSError as exc:
            print(f"superposition explore: saving failed: {exc}", file=sys.stderr)
            raise ClientError(
                500, f"could not save under {self.server.out_dir}: {exc.strerror or exc}"
            ) from None
        self._json(200, {"path": str(path.resolve())})

    # ---- reading and writing ------------------------------------------------------------------

    def _body(self) -> Any:
        """The request's JSON body (``{}`` when empty), refused when too large or not JSON."""
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise ClientError(411, "send the request with a Content-Length, not chunked")
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            raise ClientError(400, f"bad Content-Length {length_text!r}") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            # read (a bounded amount of) what was sent, so that the client sees the answer rather
            # than a connection reset by unread data
            left = min(max(length, 0), DRAIN_LIMIT)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            raise ClientError(413, f"the request body is limited to {MAX_BODY} bytes")
        if length and kind != "application/json":
            raise ClientError(415, "send the form as application/json")
        raw = self.rfile.read(length) if length else b"{}"
        return files.parse_json(raw, "the request body")  # ConfigError: 400 with its sentence

    def _json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc, allow_nan=False).encode()
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    def _send(
        self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests and unknown methods get the same JSON errors as the rest."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._json(code, {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls several times a second; real problems are printed where met."""


def start_server(
    port: int = 0,
    out_dir: Path | str = "explore-runs",
    *,
    time_limit: float = 120.0,
    warm_up: bool = True,
    request_deadline: float = REQUEST_DEADLINE,
) -> ExploreServer:
    """Bind the explorer on 127.0.0.1:``port`` (0: a free one) and return it, not yet serving;
    call ``serve_forever()`` (and ``close()`` from another thread). With ``warm_up`` the CPU
    kernels are loaded in the background so the first training takes its usual time.
    ``request_deadline`` is the seconds a client has to send a whole request."""
    trainer = Trainer(time_limit=time_limit)
    server = ExploreServer(port, Path(out_dir), trainer, request_deadline=request_deadline)
    if not warm_up:
        trainer.ready.set()
    else:
        threading.Thread(
            target=_warm_up, args=(trainer,), name="explore-warm-up", daemon=True
        ).start()
    return server


def _warm_up(trainer: Trainer) -> None:
    try:
        trainer.warm_up()
    except Exception:  # never fatal: the first training would just compile what it needs
        traceback.print_exc(file=sys.stderr)
