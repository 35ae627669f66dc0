"""Health endpoints for Kubernetes probes and people: /healthz, /readyz, /status.

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


class HealthServer:
    """A tiny HTTP server on its own daemon thread; it only reads what the loop publishes."""

    def __init__(
        self,
        host: str,
        port: int,
        status: Callable[[], dict[str, Any]],
        alive: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    ok = outer._alive()
                    self._send(200 if ok else 503, {"alive": ok})
                elif self.path == "/readyz":
                    ok = outer._ready()
                    self._send(200 if ok else 503, {"ready": ok})
                elif self.path == "/status":
                    try:
                        self._send(200, outer._status())
                    except RuntimeError:  # the loop changed its state mid-read; rare
                        self._send(503, {"error": "status changed while reading; try again"})
                else:
                    self._send(404, {"error": "try /healthz, /readyz or /status"})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = orjson.dumps(body, default=str)
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the log

        self._status, self._alive, self._ready = status, alive, ready
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
