"""Crashes, restarts and rebalances: every request answered, no job created twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sidecar_harness import (
    ROOT,
    Collected,
    Topics,
    collect,
    emulator_stats,
    running,
    sidecar_thread,
    spawn,
    status_of,
)
from waiting import wait_until

from connector.adapters.ledger import MARKER_PREFIX
from connector.client import RequestPublisher, ResultReader
from connector.core import policy
from connector.core.codec import Codec
from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry, ResultStatus
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def publish(pub: RequestPublisher, prefix: str, n: int) -> set[str]:
    ids = {f"{prefix}-{i}" for i in range(n)}
    for i, rid in enumerate(sorted(ids)):
        pub.publish(rid, "gemini-2.5-flash", prompt(rid), partition=i % 2)
    pub.flush()
    return ids


def assert_no_job_created_twice(base_url: str) -> None:
    """Every display name (one per ledger job) was created at most once at the provider."""
    created = Counter(emulator_stats(base_url)["batches"]["by_display_name"])
    twice = {name: n for name, n in created.items() if n > 1}
    assert created, "no job was created at all"
    assert not twice, f"jobs created twice: {twice}"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def test_kill_minus_9_then_restart_loses_nothing_and_creates_no_job_twice(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """SIGKILL mid-run; a new process recovers from the ledger: all answered, jobs adopted."""
    emulator.update_config(queue_delay_s=2.0)  # keep jobs in flight when the kill lands
    env = topics.env(kafka_bootstrap, emulator.base_url, CONNECTOR_BATCH_MAX_REQUESTS="4")
    ids = publish(publisher, "crash", 24)
    log = tmp_path / "sidecar.log"
    first = spawn(env, log)
    try:
        wait_until(
            lambda: emulator_stats(emulator.base_url)["batches"]["created_total"] >= 3,
            timeout=60,
            message="jobs created",
        )
    finally:
        first.kill()  # SIGKILL: no drain, no goodbye
        first.wait(timeout=30)
    ids |= publish(publisher, "after", 10)
    second = spawn(env, log)
    try:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
    finally:
        assert stop(second) == 0, log.read_text()[-3000:]
    assert ids <= set(got.by_id)
    assert_no_job_created_twice(emulator.base_url)


def test_two_replicas_one_killed_every_request_still_answered(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """Two processes share the group; one is SIGKILLed; the survivor takes its partitions over."""
    emulator.update_config(queue_delay_s=1.5)
    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="3",
    )
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = spawn(env, logs[0])
    b = spawn(env, logs[1])
    try:
        wait_until(
            lambda: all(status_of(proc).get("partitions") for proc in (a, b)),
            timeout=60,
            message="both replicas own partitions",
        )
        ids = publish(publisher, "pair", 30)
        wait_until(
            lambda: emulator_stats(emulator.base_url)["batches"]["created_total"] >= 2,
            timeout=60,
            message="jobs",
        )
        a.kill()
        a.wait(timeout=30)
        ids |= publish(publisher, "later", 10)
        got = collect(kafka_bootstrap, topics.results, ids, timeout=150)
    finally:
        if a.poll() is None:
            a.kill()
        assert stop(b) == 0, logs[1].read_text()[-3000:]
    assert ids <= set(got.by_id)
    assert_no_job_created_twice(emulator.base_url)


def test_sigterm_drains_and_exits_cleanly(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """SIGTERM seals open batches into the ledger, commits them and exits 0; a restart answers."""
    from kafka import KafkaConsumer, TopicPartition

    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_WAIT_S="3600",  # batches cannot seal by age: only the drain seals them
        CONNECTOR_STATUS_INTERVAL_S="0.2",
    )
    log = tmp_path / "sidecar.log"
    proc = spawn(env, log)
    ids = publish(publisher, "drain", 5)
    wait_until(
        lambda: status_of(proc).get("open_requests") == 5, timeout=60, message="5 open requests"
    )
    assert stop(proc) == 0, log.read_text()[-3000:]
    assert log_has(log, '"intents_recorded": 5')
    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=topics.group)
    try:
        committed = [reader.committed(TopicPartition(topics.requests, p)) or 0 for p in (0, 1)]
    finally:
        reader.close()
    assert sum(committed) == 5
    restart = spawn(topics.env(kafka_bootstrap, emulator.base_url), log)
    try:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=90)
    finally:
        assert stop(restart) == 0
    assert ids <= set(got.by_id)


def test_refuses_to_start_without_key_or_endpoint(topics: Topics, tmp_path: Path) -> None:
    """No API key and no explicit emulator URL: a clear error, exit code 2, no fallback."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "GEMINI_", "GOOGLE_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "run"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert b"GEMINI_API_KEY" in proc.stderr
    assert b"CONNECTOR_GEMINI_BASE_URL" in proc.stderr


def test_never_logs_the_api_key(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The key is used but never printed; the log says which endpoint is in use."""
    secret = "AQ.test-secret-value-1234567890"
    env = topics.env(kafka_bootstrap, emulator.base_url, GEMINI_API_KEY=secret)
    log = tmp_path / "sidecar.log"
    proc = spawn(env, log)
    try:
        wait_until(lambda: running(proc), timeout=60, message="sidecar running")
    finally:
        assert stop(proc) == 0
    text = log.read_text()
    assert secret not in text
    assert "explicit endpoint" in text
    assert emulator.base_url in text


def test_second_signal_exits_at_once_and_the_ledger_makes_it_safe(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """A second SIGTERM mid-drain (inside a slow create) exits now; a restart answers all once."""
    from kafka import KafkaConsumer

    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_WAIT_S="3600",
        CONNECTOR_STATUS_INTERVAL_S="0.2",
        CONNECTOR_DRAIN_TIMEOUT_S="60",
    )
    log = tmp_path / "sidecar.log"
    proc = spawn(env, log)
    ids = publish(publisher, "twice", 4)
    wait_until(
        lambda: status_of(proc).get("open_requests") == 4, timeout=60, message="4 open requests"
    )
    emulator.update_config(latency_ms=4000)  # the drain's create call now hangs for 4 s
    proc.send_signal(signal.SIGTERM)
    # The drain writes the INTENTs, commits, then calls create (which now hangs).
    ledger = KafkaConsumer(
        f"{topics.group}.{topics.requests}.ledger",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
    )

    def drain_intents() -> bool:
        # The drain's INTENTs, not the take-over's epoch markers, which the ledger holds from
        # the start: waiting on those, the second signal could come before the first was
        # handled (librdkafka's consume holds the main thread up to the poll timeout, and
        # two pending SIGTERMs are one), and the drain ran to its end.
        batches = ledger.poll(200).values()
        return any(
            not (r.key or b"").startswith(MARKER_PREFIX.encode()) for b in batches for r in b
        )

    try:
        wait_until(drain_intents, timeout=30, message="drain INTENTs")
    finally:
        ledger.close()
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    assert code == 128 + signal.SIGTERM, log.read_text()[-2000:]
    assert time.monotonic() - sent_at < 3.0
    emulator.update_config(latency_ms=0)
    restart = spawn(topics.env(kafka_bootstrap, emulator.base_url), log)
    try:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=90)
    finally:
        assert stop(restart) == 0
    assert ids <= set(got.by_id)
    assert_no_job_created_twice(emulator.base_url)


@pytest.mark.parametrize("job_exists", [True, False], ids=["created-before-crash", "never-created"])
def test_recovered_intent_is_adopted_or_created_once(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    job_exists: bool,
) -> None:
    """The crash table's rows 'commit..create' and 'create..SUBMITTED', set up exactly.

    A previous owner wrote an INTENT, committed the offsets, and died either before or after
    `batches.create`. The new owner looks the display name up: adopts the job if it exists,
    creates it otherwise; either way exactly one job exists and every request is answered.
    """
    from google import genai
    from google.genai import types

    ids = ["adopt-0", "adopt-1", "adopt-2"]
    for rid in ids:
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    entry = crashed_entry(topics.group, "p0-0-crashed", (0, 1, 2), EntryState.INTENT)
    seed_crashed_owner(kafka_bootstrap, topics, [entry], committed=3)
    if job_exists:
        client = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(base_url=emulator.base_url, api_version="v1beta"),
        )
        client.batches.create(
            model="gemini-2.5-flash",
            src=[
                {"contents": prompt(rid)["contents"], "metadata": {"key": str(i)}}
                for i, rid in enumerate(ids)
            ],
            config={"display_name": entry.display_name},
        )
    with sidecar_thread(
        topics.settings(kafka_bootstrap, emulator.base_url, http_timeout_s=2)
    ) as sidecar:
        got = collect(kafka_bootstrap, topics.results, set(ids), timeout=60)
        assert sidecar.stats.jobs_adopted == (1 if job_exists else 0)
        assert sidecar.stats.jobs_created == (0 if job_exists else 1)
    for rid in ids:
        assert got.latest(rid).status is ResultStatus.OK
    assert emulator_stats(emulator.base_url)["batches"]["by_display_name"] == {
        entry.display_name: 1
    }


def crashed_entry(
    group: str, job_id: str, offsets: tuple[int, ...], state: EntryState, **kw: object
) -> LedgerEntry:
    """A ledger entry as a previous owner of partition 0 would have written it."""
    now_ms = int(time.time() * 1000)
    fields: dict[str, object] = {
        "job_id": job_id,
        "key": BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        "offsets": offsets,
        "attempt": 1,
        "display_name": policy.display_name(group, job_id),
        "state": state,
        "use_file": False,
        "est_tokens": 10 * len(offsets),
        "created_ms": now_ms,
        "updated_ms": now_ms,
    }
    fields.update(kw)
    return LedgerEntry(**fields)  # type: ignore[arg-type]


def seed_crashed_owner(
    bootstrap: str, topics: Topics, entries: list[LedgerEntry], committed: int
) -> None:
    """What a dead owner of partition 0 left: ledger entries and a committed offset."""
    from kafka import (
        KafkaAdminClient,
        KafkaConsumer,
        KafkaProducer,
        OffsetAndMetadata,
        TopicPartition,
    )

    ledger_topic = f"{topics.group}.{topics.requests}.ledger"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        spec = {
            "num_partitions": 2,
            "replication_factor": 1,
            "configs": {"cleanup.policy": "compact"},
        }
        admin.create_topics({ledger_topic: spec}, wait_for_metadata=True)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for e in entries:
            producer.send(
                ledger_topic, Codec().encode_ledger(e), key=e.job_id.encode(), partition=0
            )
        producer.flush()
    finally:
        producer.close()
    committer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=topics.group, enable_auto_commit=False
    )
    try:
        tp = TopicPartition(topics.requests, 0)
        committer.assign([tp])
        committer.commit({tp: OffsetAndMetadata(committed, "", -1)})
    finally:
        committer.close()


def test_parent_with_live_successors_is_retired_not_decided_again(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
) -> None:
    """Crash between an expired job's successor INTENTs and its tombstone, set up exactly.

    The parent still looks SUBMITTED (its provider job is gone). Deciding it again would
    poll a vanished job and retry it; the new owner instead retires it and runs only the
    two halves: two jobs, every request answered once, from attempt 1. The entries are
    seeded as sidecars before 0-based attempts wrote them (fresh job 1, halves 2), so this
    also reads an old ledger: the halves' results say attempt 1, as the schema defines it.
    """
    ids = [f"half-{i}" for i in range(4)]
    for rid in ids:
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    parent = crashed_entry(
        topics.group,
        "p0-0-expired",
        (0, 1, 2, 3),
        EntryState.SUBMITTED,
        provider_job="batches/expiredlongago",
    )
    halves = [
        crashed_entry(topics.group, "p0-0-expired/a", (0, 1), EntryState.INTENT, attempt=2),
        crashed_entry(topics.group, "p0-0-expired/b", (2, 3), EntryState.INTENT, attempt=2),
    ]
    seed_crashed_owner(kafka_bootstrap, topics, [parent, *halves], committed=4)
    settings = topics.settings(kafka_bootstrap, emulator.base_url, http_timeout_s=2)
    with sidecar_thread(settings) as sidecar:
        got = collect(kafka_bootstrap, topics.results, set(ids), timeout=60)
        assert sidecar.stats.jobs_resubmitted == 0
    for rid in ids:
        assert len(got.by_id[rid]) == 1
        assert got.latest(rid).status is ResultStatus.OK
        assert got.latest(rid).attempt == 1
    assert emulator_stats(emulator.base_url)["batches"]["by_display_name"] == {
        halves[0].display_name: 1,
        halves[1].display_name: 1,
    }


@pytest.mark.parametrize(("guarantee", "window"), [("at_least_once", 100), ("exactly_once", 0)])
def test_kill_minus_9_mid_delivery_resumes_from_the_ledger_cursor(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
    guarantee: str,
    window: int,
) -> None:
    """One 6,000-request file job delivered 100 results per pass; SIGKILL once 600 are out.
    The next process resumes from the delivery cursor in the ledger: at most one chunk again
    (at-least-once), none (exactly-once), instead of the 600+ already produced."""
    n, chunk = 6_000, 100
    emulator.update_config(queue_delay_s=0, processing_delay_s=0, per_request_delay_s=0)
    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS=str(n),
        CONNECTOR_BATCH_MAX_WAIT_S="60",
        CONNECTOR_BATCH_INLINE_MAX_BYTES="1000",  # a file job: results streamed from a file
        CONNECTOR_DELIVERY_CHUNK_REQUESTS=str(chunk),
        CONNECTOR_PROCESSING_GUARANTEE=guarantee,
    )
    ids = {f"cur-{i}" for i in range(n)}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    reader = ResultReader(kafka_bootstrap, topics.results, isolation_level=isolation)
    got = Collected()
    log = tmp_path / "sidecar.log"
    first = spawn(env, log)
    try:

        def mid_delivery() -> bool:
            for key, r in reader.poll(0.05):
                got.add(key, r)
            return len(got.by_id) >= 6 * chunk

        wait_until(mid_delivery, timeout=120, message="the delivery under way")
    finally:
        first.kill()  # SIGKILL: no drain, no goodbye
        first.wait(timeout=30)
    before = sum(len(v) for v in got.by_id.values())
    assert before < n, "the delivery ended before the kill: nothing was tested"
    second = spawn(env, log)
    try:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120, reader=reader, got=got)
    finally:
        assert stop(second) == 0, log.read_text()[-3000:]
        reader.close()
    assert ids == set(got.by_id)
    twice = [rid for rid, rs in got.by_id.items() if len(rs) > 1]
    assert len(twice) <= window, f"{len(twice)} answered twice (killed at {before} results)"
    assert all(len(rs) <= 2 for rs in got.by_id.values())
    assert {r.status for rs in got.by_id.values() for r in rs} == {ResultStatus.OK}
    assert_no_job_created_twice(emulator.base_url)
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 1
