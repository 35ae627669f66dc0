"""Health endpoints for Kubernetes probes and people: /healthz, /readyz, /status, /metrics, /.

Liveness means the loop still completes passes: a loop stuck inside a client call (a
hung broker connection, kafka-python's empty-assignment join stall) stops advancing
`last_pass`, and the probe lets Kubernetes restart the pod, which the ledger makes safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
    ) -> None:
        """`metrics` returns the Prometheus text exposition; `page` the HTML status page."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
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

            def _send(self, code: int, body: dict[str, Any]) -> None:
                self._send_raw(code, orjson.dumps(body, default=str), "application/json")

            def _send_raw(self, code: int, data: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the log

        self._status, self._alive, self._ready = status, alive, ready
        self._metrics, self._page = metrics, page
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
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
