"""Running the sidecar against the real broker and the emulator, in a thread or a process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx2
from waiting import wait_until

from connector.adapters.gemini import Gemini
from connector.client import ResultReader
from connector.config import Settings
from connector.core.records import ResultEvent
from connector.runner import Sidecar

ROOT = Path(__file__).resolve().parents[2]
KAFKA_CLIENT = os.environ.get("TEST_KAFKA_CLIENT", "").strip() or "kafka-python"
"""The Kafka client the sidecars under test run on (`CONNECTOR_KAFKA_CLIENT`):
`TEST_KAFKA_CLIENT=confluent-kafka` runs these tests on the librdkafka backend (`make test`
does, for the sidecar and chaos tests)."""
sys.path.insert(0, str(ROOT / "deploy" / "local"))
from kafka_local import free_port  # noqa: E402


@dataclass
class Topics:
    requests: str
    results: str
    dlq: str
    group: str

    def settings(self, bootstrap: str, base_url: str, **overrides: Any) -> Settings:
        """Fast settings for tests: short batch waits and polls."""
        s = Settings(
            bootstrap_servers=bootstrap,
            request_topic=self.requests,
            result_topic=self.results,
            dlq_topic=self.dlq,
            group_id=self.group,
            gemini_base_url=base_url,
            batch_max_wait_s=0.5,
            poll_initial_s=0.3,
            poll_max_s=1.0,
            startup_timeout_s=30,
            drain_timeout_s=5,
            http_timeout_s=6,
            log_format="console",
            kafka_client=KAFKA_CLIENT,
        )
        return replace(s, **overrides)

    def env(self, bootstrap: str, base_url: str, **extra: str) -> dict[str, str]:
        """The same settings as environment variables, for `connector run` subprocesses."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONNECTOR_", "GEMINI_", "GOOGLE_"))
        }
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "CONNECTOR_REQUEST_TOPIC": self.requests,
                "CONNECTOR_RESULT_TOPIC": self.results,
                "CONNECTOR_DLQ_TOPIC": self.dlq,
                "CONNECTOR_GROUP_ID": self.group,
                "CONNECTOR_GEMINI_BASE_URL": base_url,
                "CONNECTOR_BATCH_MAX_WAIT_S": "0.5",
                "CONNECTOR_POLL_INITIAL_S": "0.3",
                "CONNECTOR_POLL_MAX_S": "1.0",
                "CONNECTOR_STARTUP_TIMEOUT_S": "60",
                # Short, so recovered INTENTs wait little before their lookup (see _recover)
                # and a killed member leaves the group quickly.
                "CONNECTOR_HTTP_TIMEOUT_S": "6",
                "CONNECTOR_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
                "CONNECTOR_LOG_FORMAT": "json",
                "CONNECTOR_KAFKA_CLIENT": KAFKA_CLIENT,
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(extra)
        return env


@contextmanager
def sidecar_thread(settings: Settings) -> Iterator[Sidecar]:
    """An in-process sidecar; stopped (drained) and joined on exit."""
    gemini = Gemini(settings.api_key or "test-key", settings.gemini_base_url, timeout_s=30)
    sidecar = Sidecar(settings, gemini)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sidecar.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, name="sidecar", daemon=True)
    thread.start()
    try:
        yield sidecar
    finally:
        sidecar.stop()
        thread.join(timeout=60)
        gemini.close()
    assert not thread.is_alive(), "sidecar did not stop within 60 s"
    assert not errors, f"sidecar crashed: {errors[0]!r}"


def spawn(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m connector run` as a real process (for kill -9 and SIGTERM tests).

    Each process serves its health endpoints on a free loopback port (`proc.health_port`),
    so tests wait on `/status` (see `status_of`) instead of scraping log text.
    """
    env = dict(env)
    port = int(env.get("CONNECTOR_HEALTH_PORT") or 0) or free_port()
    env["CONNECTOR_HEALTH_PORT"] = str(port)
    env.setdefault("CONNECTOR_HEALTH_HOST", "127.0.0.1")
    out = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run"],
        env=env,
        cwd=str(ROOT),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    proc.health_port = port  # type: ignore[attr-defined]
    return proc


def status_of(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The process's `/status` (the loop's last published snapshot), or {} while unreachable."""
    port = proc.health_port  # type: ignore[attr-defined]
    try:
        r = httpx2.get(f"http://127.0.0.1:{port}/status", timeout=2)
    except httpx2.TransportError:
        return {}
    if r.status_code != 200:
        return {}
    data: dict[str, Any] = r.json()
    return data


def running(proc: subprocess.Popen[bytes]) -> bool:
    """The process answers /readyz with 200 (its loop is running)."""
    port = proc.health_port  # type: ignore[attr-defined]
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


@dataclass
class Collected:
    """Results read so far, by request id (a list, to see duplicates)."""

    by_id: dict[str, list[ResultEvent]] = field(default_factory=dict)
    keys: dict[str, bytes | None] = field(default_factory=dict)

    def add(self, key: bytes | None, r: ResultEvent) -> None:
        self.by_id.setdefault(r.request_id, []).append(r)
        self.keys[r.request_id] = key

    def latest(self, rid: str) -> ResultEvent:
        return self.by_id[rid][-1]


def collect(
    bootstrap: str,
    topic: str,
    expected: set[str],
    timeout: float,
    reader: ResultReader | None = None,
    got: Collected | None = None,
) -> Collected:
    """Read results until every expected request id has one (or fail at the deadline);
    `got`: add to what an earlier read collected."""
    own = reader is None
    reader = reader or ResultReader(bootstrap, topic)
    got = got if got is not None else Collected()
    try:

        def done() -> bool:
            for key, r in reader.poll(0.5):
                got.add(key, r)
            return expected <= set(got.by_id)

        wait_until(
            done,
            timeout=timeout,
            message=lambda: f"missing results for {sorted(expected - set(got.by_id))[:10]}",
        )
    finally:
        if own:
            reader.close()
    return got


def emulator_stats(base_url: str) -> dict[str, Any]:
    r = httpx2.get(base_url + "/_emulator/stats", timeout=10)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def list_jobs(base_url: str) -> list[dict[str, Any]]:
    """All jobs the emulator knows, via the public REST list (as any client would)."""
    jobs: list[dict[str, Any]] = []
    token = ""
    while True:
        r = httpx2.get(
            base_url + "/v1beta/batches",
            params={"pageSize": 100, **({"pageToken": token} if token else {})},
            headers={"x-goog-api-key": "test-key"},
            timeout=10,
        )
        r.raise_for_status()
        body = r.json()
        jobs.extend(body.get("operations", []))
        token = body.get("nextPageToken", "")
        if not token:
            return jobs
