"""The health port's endpoints for one sidecar: probes, /status, /metrics and the HTML page.

Glue only: every handler reads what the loop published (`Sidecar.snapshot`) and the log's
last problem, on the health server's thread.
"""

from __future__ import annotations

import socket
from typing import Any

from connector import logs
from connector.health import HealthServer
from connector.statusview import connect_status, html_page


def status_document(sidecar: Any, worker_id: str) -> dict[str, Any]:
    """The Kafka Connect-shaped status of `sidecar` (see `connector.statusview`)."""
    snap = sidecar.snapshot
    return connect_status(
        name=sidecar.s.group_id,
        worker_id=worker_id,
        status=snap.status,
        view=snap.view,
        ready=sidecar.ready(),
        alive=sidecar.alive(),
        last_error=logs.last_error(),
    )


def serve(sidecar: Any) -> HealthServer:
    """Start the health server of `sidecar` on its configured host and port."""
    s = sidecar.s
    worker: dict[str, str] = {"id": socket.gethostname()}

    def status() -> dict[str, Any]:
        return status_document(sidecar, worker["id"])

    server = HealthServer(
        s.health_host,
        s.health_port,
        status,
        sidecar.alive,
        sidecar.ready,
        metrics=sidecar.metrics.exposition,
        page=lambda: html_page(status()),
        token=s.health_token,
    )
    worker["id"] = f"{socket.gethostname()}:{server.port}"
    return server.start()
