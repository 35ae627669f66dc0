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
    r = _get(server, "/nope")
    assert r.status_code == 404
    assert "/healthz" in r.json()["error"]


def test_metrics_and_page_are_served_when_given() -> None:
    """/metrics is Prometheus text; / is HTML; both only when the sidecar wires them."""
    srv = HealthServer(
        "127.0.0.1",
        0,
        status=dict,
        alive=lambda: True,
        ready=lambda: True,
        metrics=lambda: b"connector_x_total 1.0\n",
        page=lambda: "<!doctype html><p>hi</p>",
    ).start()
    try:
        m = _get(srv, "/metrics")
        assert m.status_code == 200
        assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert m.text == "connector_x_total 1.0\n"
        page = _get(srv, "/?refresh=1")
        assert page.headers["content-type"].startswith("text/html")
        assert "<p>hi</p>" in page.text
    finally:
        srv.stop()
