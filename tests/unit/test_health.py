"""The health endpoints answer from what the loop publishes, with probe-friendly codes."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx2
import pytest

from connector.health import MAX_CONNECTIONS, HealthServer
from connector.testing import wait_until


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


# -- the server under hostile or careless clients ---------------------------------------


def _tiny(timeout_s: float = 0.5, token: str = "") -> HealthServer:
    return HealthServer(
        "127.0.0.1",
        0,
        status=lambda: {"jobs": ["p0-1"]},
        alive=lambda: True,
        ready=lambda: True,
        metrics=lambda: b"connector_x_total 1.0\n",
        page=lambda: "<p>jobs</p>",
        token=token,
        timeout_s=timeout_s,
    ).start()


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True once the server closes `sock` (recv returns b''), waiting at most `within_s`."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_silent_client_neither_blocks_probes_nor_keeps_its_connection() -> None:
    """A client that connects and sends nothing: /healthz still answers at once, and the
    server drops the silent connection after its read timeout."""
    srv = _tiny(timeout_s=0.5)
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as silent:
            r = httpx2.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=2)
            assert r.status_code == 200
            assert _closed_by_server(silent, within_s=5), "the silent connection stays open"
    finally:
        srv.stop()


def test_a_trickling_client_is_cut_at_the_connection_deadline() -> None:
    """Sending a header line now and then resets a per-read timeout, never the deadline."""
    srv = _tiny(timeout_s=0.5)
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            deadline = time.monotonic() + 5
            closed = False
            while not closed and time.monotonic() < deadline:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    slow.sendall(b"x-slow: 1\r\n")
                closed = _closed_by_server(slow, within_s=0.2)  # each wait under 0.5 s
            assert closed, "a client trickling bytes keeps its connection past the deadline"
    finally:
        srv.stop()


def test_connections_past_the_bound_are_closed_and_probes_recover() -> None:
    """More idle connections than MAX_CONNECTIONS: the extra ones are closed at once (the
    process does not grow a thread per connection), and once the idle ones time out the
    probes answer again."""
    srv = _tiny(timeout_s=0.5)
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as extra:
            assert _closed_by_server(extra, within_s=5)

        def healthy() -> bool:
            with contextlib.suppress(httpx2.TransportError):
                return httpx2.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=1).is_success
            return False

        wait_until(healthy, timeout=10, message="/healthz after the idle connections expire")
    finally:
        for sock in idle:
            sock.close()
        srv.stop()


@pytest.mark.parametrize("path", ["/status", "/", "/index.html"])
def test_a_token_guards_status_and_the_page(path: str) -> None:
    srv = _tiny(token="s3cret-health-token")
    url = f"http://127.0.0.1:{srv.port}{path}"
    try:
        assert httpx2.get(url, timeout=5).status_code == 401
        wrong = httpx2.get(url, headers={"authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        assert "s3cret-health-token" not in wrong.text
        for scheme in ("Bearer", "bearer"):
            ok = httpx2.get(url, headers={"authorization": f"{scheme} s3cret-health-token"})
            assert ok.status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_and_metrics_stay_open_with_a_token(path: str) -> None:
    srv = _tiny(token="s3cret-health-token")
    try:
        assert httpx2.get(f"http://127.0.0.1:{srv.port}{path}", timeout=5).status_code == 200
    finally:
        srv.stop()


def test_without_a_token_status_is_open() -> None:
    srv = _tiny()
    try:
        assert httpx2.get(f"http://127.0.0.1:{srv.port}/status", timeout=5).status_code == 200
    finally:
        srv.stop()
