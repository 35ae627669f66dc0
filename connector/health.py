"""Health endpoints for Kubernetes probes and people: /healthz, /readyz, /status, /metrics, /.

Liveness means the loop still completes passes: a loop stuck inside a client call (a
hung broker connection, kafka-python's empty-assignment join stall) stops advancing
`last_pass`, and the probe lets Kubernetes restart the pod, which the ledger makes safe.

The server must stay answerable whatever its clients do: a thread per connection (an idle
client never blocks another), every read and write with a timeout and every connection
with a deadline (a client that connects and sends nothing, or trickles bytes, is dropped),
and at most `MAX_CONNECTIONS` served at once (more are closed at once), so slow or idle
clients can neither block the probes nor grow the process. With a token, `/status` and `/` (job ids,
provider jobs, the last problem logged) need `Authorization: Bearer <token>`; the probes
stay open for the kubelet, and so does `/metrics` (counts and gauges with model and
partition labels only; the port is meant to be reachable from monitoring only).
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT_S = 5.0
"""Socket timeout of each read and write; a connection lives at most twice that."""
MAX_CONNECTIONS = 64
"""Connections served at once; probes take one each for a few milliseconds."""
PROTECTED = frozenset({"/status", "/", "/index.html"})
"""Paths that need the bearer token when one is configured."""


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `MAX_CONNECTIONS` of them, each for at most
    `deadline_s`: the per-read socket timeout alone would let a client that sends one byte
    at a time (slowloris) hold its thread for ever."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        deadline_s: float,
    ) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.deadline_s = deadline_s
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close now rather than queue behind slow ones
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        cut = threading.Timer(self.deadline_s, _cut, (request,))
        cut.daemon = True
        cut.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cut.cancel()
            self.slots.release()


def _cut(sock: socket.socket) -> None:
    """End a connection past its deadline: its blocked read returns and the thread ends."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class HealthServer:
    """A tiny HTTP server on its own daemon thread; it only reads what the loop publishes."""

    def __init__(
        self,
        host: str,
        port: int,
        status: Callable[[], dict[str, Any]],
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        metrics: Callable[[], bytes] | None = None,
        page: Callable[[], str] | None = None,
        token: str = "",
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        """`metrics` returns the Prometheus text exposition; `page` the HTML status page;
        `token`, if set, is the bearer token `/status` and `/` require."""
        outer = self
        expected = token.encode()

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # socketserver applies it to the connection in setup()

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if expected and path in PROTECTED and not self._authorized():
                    self._send(401, {"error": "this path needs Authorization: Bearer <token>"})
                    return
                if path == "/healthz":
                    ok = outer._alive()
                    self._send(200 if ok else 503, {"alive": ok})
                elif path == "/readyz":
                    ok = outer._ready()
                    self._send(200 if ok else 503, {"ready": ok})
                elif path == "/status":
                    try:
                        self._send(200, outer._status())
                    except RuntimeError:  # the loop changed its state mid-read; rare
                        self._send(503, {"error": "status changed while reading; try again"})
                elif path == "/metrics" and outer._metrics is not None:
                    self._send_raw(200, outer._metrics(), METRICS_TYPE)
                elif path in ("/", "/index.html") and outer._page is not None:
                    self._send_raw(200, outer._page().encode(), "text/html; charset=utf-8")
                else:
                    self._send(404, {"error": "try /healthz, /readyz, /status, /metrics or /"})

            def _authorized(self) -> bool:
                scheme, _, got = (self.headers.get("authorization") or "").strip().partition(" ")
                ok = hmac.compare_digest(got.strip().encode(), expected)
                return ok and scheme.lower() == "bearer"

            def _send(self, code: int, body: dict[str, Any]) -> None:
                self._send_raw(code, orjson.dumps(body, default=str), "application/json")

            def _send_raw(self, code: int, data: bytes, content_type: str) -> None:
                self.send_response(code)
                if code == 401:
                    self.send_header("www-authenticate", 'Bearer realm="connector"')
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle(self) -> None:
                try:
                    super().handle()
                except (TimeoutError, ConnectionError):
                    return  # a slow or vanished client: drop it, nothing to report

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the log

        self._status, self._alive, self._ready = status, alive, ready
        self._metrics, self._page = metrics, page
        self._server = _BoundedServer((host, port), Handler, deadline_s=2 * timeout_s)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
