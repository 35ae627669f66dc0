"""The health endpoints answer from what the loop publishes, with probe-friendly codes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from connector.health import HealthServer


@pytest.fixture
def state() -> dict[str, bool]:
    return {"alive": True, "ready": False}


@pytest.fixture
def server(state: dict[str, bool]) -> Iterator[HealthServer]:
    srv = HealthServer(
        "127.0.0.1",
        0,
        status=lambda: {"partitions": [0, 1], "consumed": 7},
        alive=lambda: state["alive"],
        ready=lambda: state["ready"],
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


def _get(srv: HealthServer, path: str) -> httpx2.Response:
    return httpx2.get(f"http://127.0.0.1:{srv.port}{path}", timeout=5)


def test_liveness_follows_the_loop(server: HealthServer, state: dict[str, bool]) -> None:
    """/healthz is 200 while the loop completes passes and 503 once it stalls."""
    assert _get(server, "/healthz").status_code == 200
    state["alive"] = False
    r = _get(server, "/healthz")
    assert r.status_code == 503
    assert r.json() == {"alive": False}


def test_readiness_waits_for_the_running_loop(server: HealthServer, state: dict[str, bool]) -> None:
    """/readyz is 503 during start-up (Kafka may not be up yet) and 200 once running."""
    assert _get(server, "/readyz").status_code == 503
    state["ready"] = True
    assert _get(server, "/readyz").status_code == 200


def test_status_is_json_and_unknown_paths_say_what_exists(server: HealthServer) -> None:
    """/status returns the status line as JSON; anything else is a 404 naming the paths."""
    assert _get(server, "/status").json() == {"partitions": [0, 1], "consumed": 7}
    r = _get(server, "/metrics")
    assert r.status_code == 404
    assert "/healthz" in r.json()["error"]
