"""Zombies and exactly-once against the real broker and the emulator (subprocess sidecars).

The unit tests in tests/unit/test_fencing.py pin the same decisions on the doubles.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from sidecar_harness import Topics, collect, emulator_stats, spawn, status_of
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


def log_records(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def log_lines(path: Path, event: str) -> list[dict[str, object]]:
    return [rec for rec in log_records(path) if rec.get("event") == event]


def was_fenced(path: Path) -> bool:
    """The replica logged that it was fenced (not merely its `"fenced": 0` status counter)."""
    return any(str(rec.get("event", "")).startswith("fenced:") for rec in log_records(path))


def test_a_frozen_replica_creates_nothing_for_partitions_it_lost(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """SIGSTOP a replica inside an upload, past max.poll.interval.ms; another takes over and
    creates the jobs; SIGCONT: the resumed replica creates nothing. Uploads run off the loop
    thread, so on resuming it either polls first and sees its partitions revoked (its uploads
    are dropped) or finds its upload done first and its claim is fenced.

    With the claim switched off, a resumed replica that finds its upload done first creates
    that job (`p0-2`) a second time."""
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
        # One job per pass (the budget); right after one is created, the next pass uploads
        # the next job's input file. The emulator counts that upload in flight from its
        # arrival and answers it only after its 1.5 s latency, and a claims the job only once
        # the upload has returned: stopped while the upload is in flight, a has not claimed.
        # (`calls` counts the upload only after the latency, a few milliseconds before the
        # claim: a stop on that signal often lands after the claim, inside the create.)
        wait_until(lambda: log_has(logs[0], "job created"), timeout=60, message="a's first job")
        wait_until(
            lambda: in_flight(emulator, "files.upload"), timeout=30, message="a's next upload"
        )
        a.send_signal(signal.SIGSTOP)
        assert in_flight(emulator, "files.upload"), "a's upload was answered before the stop"
        created_by_a = len(log_lines(logs[0], "job created"))
        b = spawn(env, logs[1])
        replicas = [a, b]
        # b gets both partitions once a's session expires, waits one HTTP timeout, looks the
        # INTENTs up (adopting what a created) and creates the rest.
        wait_until(
            lambda: len(log_lines(logs[1], "job created")) + created_by_a >= 4,
            timeout=120,
            message="b created the remaining jobs",
        )
        a.send_signal(signal.SIGCONT)
        # a's upload returns; then its claim is refused (fenced: it drops its partitions) or,
        # with the claim switched off, it creates the job a second time.
        wait_until(
            lambda: noticed(logs[0]) or len(log_lines(logs[0], "job created")) > created_by_a,
            timeout=60,
            message="a noticed",
        )
        # Then a rejoins the group. Once the two replicas split the partitions between them,
        # neither holds an INTENT or an open batch, and no upload or create is in flight,
        # nobody has anything left to create: a duplicate would be in the emulator by now.
        wait_until(
            lambda: settled(replicas, partitions={0, 1}, emulator=emulator),
            timeout=120,
            message=lambda: (
                f"the group settled: {[brief(p) for p in replicas]}, "
                f"in flight {emulator.stats()['in_flight']}"
            ),
        )
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
    """The replica learnt it lost its partitions: a fenced claim, or their revocation."""
    revoked = any(rec.get("partitions") for rec in log_lines(log, "partitions revoked"))
    return revoked or was_fenced(log)


def in_flight(emulator: EmulatorServer, call: str) -> int:
    """How many `call`s (e.g. "files.upload") the emulator is answering right now."""
    return int(emulator.stats()["in_flight"].get(call, 0))


def brief(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    """The /status fields `settled` looks at, for a timeout message."""
    st = status_of(proc)
    return {k: st.get(k) for k in ("partitions", "intents", "open_requests", "fenced")}


def settled(
    procs: list[subprocess.Popen[bytes]], partitions: set[int], emulator: EmulatorServer
) -> bool:
    """Every replica owns a share of `partitions` (no two the same one) and has no INTENT and
    no open batch, per its /status; no upload or create is in flight at the emulator."""
    owned: list[set[int]] = []
    for proc in procs:
        st = status_of(proc)  # {} while unreachable: not settled
        if st.get("intents") != 0 or st.get("open_requests") != 0:
            return False
        owned.append(set(st.get("partitions") or ()))
    if not all(owned) or set().union(*owned) != partitions:
        return False
    if sum(len(o) for o in owned) != len(partitions):
        return False  # a stale snapshot still names a partition another replica took over
    return not (in_flight(emulator, "files.upload") or in_flight(emulator, "batches.create"))
