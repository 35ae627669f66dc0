"""Zombies and exactly-once against the real broker and the emulator (subprocess sidecars).

The unit tests in tests/unit/test_fencing.py pin the same decisions on the doubles.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from sidecar_harness import Topics, collect, emulator_stats, spawn
from test_sidecar_crashes import log_has, prompt, stop
from waiting import wait_until

from connector.client import RequestPublisher
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow

# A small poll interval, so a freeze outlives it quickly; the budget and one HTTP timeout
# fit in half of it (config.validate).
ZOMBIE_ENV = {
    "CONNECTOR_KAFKA_MAX_POLL_INTERVAL_MS": "8000",
    "CONNECTOR_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "CONNECTOR_HTTP_TIMEOUT_S": "3",
    "CONNECTOR_PASS_BUDGET_S": "1",
    "CONNECTOR_BATCH_MAX_REQUESTS": "2",
    "CONNECTOR_BATCH_INLINE_MAX_BYTES": "1",  # file jobs: upload, then (claim,) create
    "CONNECTOR_STATUS_INTERVAL_S": "1",
}


def log_lines(path: Path, event: str) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == event:
            out.append(rec)
    return out


def test_a_frozen_replica_creates_nothing_for_partitions_it_lost(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """SIGSTOP a replica inside an upload, past max.poll.interval.ms; another takes over and
    creates the jobs; SIGCONT: the resumed replica creates nothing. Uploads run off the loop
    thread, so on resuming it either polls first and sees its partitions revoked (the uploads
    are dropped) or finds an upload done first and its claim is fenced."""
    emulator.update_config(latency_ms=1500)  # every Gemini call takes 1.5 s
    env = topics.env(kafka_bootstrap, emulator.base_url, **ZOMBIE_ENV)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = spawn(env, logs[0])
    b = None
    try:
        wait_until(lambda: log_has(logs[0], "partitions assigned"), timeout=60, message="a joined")
        ids = {f"z-{i}" for i in range(8)}
        for i, rid in enumerate(sorted(ids)):
            publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=i % 2)
        publisher.flush()
        # The first jobs' uploads start at once, two at a time, each taking 1.5 s or more.
        wait_until(
            lambda: log_has(logs[0], "uploading input file"), timeout=60, message="a's uploads"
        )
        time.sleep(0.4)
        a.send_signal(signal.SIGSTOP)
        created_by_a = len(log_lines(logs[0], "job created"))
        b = spawn(env, logs[1])
        # b gets both partitions once a's session expires, waits one HTTP timeout, looks the
        # INTENTs up (adopting what a created) and creates the rest.
        wait_until(
            lambda: len(log_lines(logs[1], "job created")) + created_by_a >= 4,
            timeout=120,
            message="b created the remaining jobs",
        )
        a.send_signal(signal.SIGCONT)
        wait_until(
            lambda: noticed(logs[0]) or len(log_lines(logs[0], "job created")) > created_by_a,
            timeout=60,
            message="a noticed",
        )
        time.sleep(6)  # anything a would still create lands by now
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGCONT)
        stop(a)
        if b is not None:
            stop(b)
    assert ids <= set(got.by_id)
    created = emulator_stats(emulator.base_url)["batches"]["by_display_name"]
    assert len(created) == 4
    assert set(created.values()) == {1}, f"jobs created twice: {created}"
    assert noticed(logs[0]), logs[0].read_text()[-3000:]


def noticed(log: Path) -> bool:
    """The replica learnt it lost its partitions: a fenced claim, or a revocation of them."""
    revoked = any(rec.get("partitions") for rec in log_lines(log, "partitions revoked"))
    return revoked or log_has(log, "fenced")
