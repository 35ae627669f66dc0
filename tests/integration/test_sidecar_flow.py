"""The sidecar end to end: real broker, real google-genai SDK over HTTP, the emulator."""

from __future__ import annotations

import orjson
import pytest
from sidecar_harness import Topics, collect, emulator_stats, list_jobs, sidecar_thread
from waiting import wait_until

from connector.adapters.clients import CLIENTS
from connector.client import RequestPublisher
from connector.core.codec import Codec
from connector.core.records import Kind, ResultStatus
from connector.emulator import EmulatorServer


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


@pytest.mark.parametrize("client", CLIENTS)
def test_inline_job_answers_every_request_once(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    client: str,
) -> None:
    """Requests become one inline job per partition; each gets exactly one OK result with usage
    (on either Kafka client)."""
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    ids = {f"inline-{i}" for i in range(12)}
    sent_meta = {rid: {"n": str(i)} for i, rid in enumerate(sorted(ids))}
    for i, rid in enumerate(sorted(ids)):
        publisher.publish(
            rid,
            "gemini-2.5-flash",
            prompt(f"question {i}"),
            metadata={"n": str(i)},
            partition=i % 2,
        )
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url, kafka_client=client)):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        assert len(got.by_id[rid]) == 1, f"{rid} answered {len(got.by_id[rid])} times"
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert r.response_json is not None
        body = orjson.loads(r.response_json)
        assert body["candidates"][0]["content"]["parts"][0]["text"]
        assert r.metadata == sent_meta[rid]  # echoed exactly, nothing added or lost
        assert r.usage is not None
        assert r.usage.total_tokens > 0
        assert r.batch_job
        assert r.batch_job.startswith("batches/")
        assert got.keys[rid] == rid.encode()
    jobs = list_jobs(emulator.base_url)
    # Two partitions -> two jobs: batches never span partitions. Finished jobs are deleted.
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 2
    assert jobs == []


def test_file_job_and_embeddings(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """A batch above the inline limit goes through an uploaded JSONL file; embeddings always do."""
    gen = {f"big-{i}" for i in range(6)}
    emb = {f"emb-{i}" for i in range(4)}
    for rid in sorted(gen):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid + " " + "x" * 600), partition=0)
    for rid in sorted(emb):
        body = {"content": {"parts": [{"text": rid}]}, "outputDimensionality": 8}
        publisher.publish(rid, "gemini-embedding-001", body, kind=Kind.EMBED, partition=1)
    publisher.flush()
    settings = topics.settings(kafka_bootstrap, emulator.base_url, batch_inline_max_bytes=2000)
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, gen | emb, timeout=60)
    for rid in gen:
        assert got.latest(rid).status is ResultStatus.OK
    for rid in emb:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert r.kind is Kind.EMBED
        assert len(orjson.loads(r.response_json or "{}")["embedding"]["values"]) == 8
    stats = emulator_stats(emulator.base_url)
    assert stats["files"]["uploaded_total"] >= 2
    # Input and output files are cleaned up once results are out.
    wait_until(
        lambda: emulator_stats(emulator.base_url)["files"]["count"] == 0,
        timeout=10,
        message="file cleanup",
    )


def test_mixed_models_become_separate_jobs_and_per_request_errors(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Different models never share a job; a request the model fails gets an error result alone."""
    ids = {"m1-a", "m1-b", "m2-a", "m2-fail"}
    publisher.publish("m1-a", "gemini-2.5-flash", prompt("a"), partition=0)
    publisher.publish("m1-b", "gemini-2.5-flash", prompt("b"), partition=0)
    publisher.publish("m2-a", "gemini-2.5-pro", prompt("c"), partition=0)
    publisher.publish("m2-fail", "gemini-2.5-pro", prompt("please EMULATOR_FAIL now"), partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    assert got.latest("m2-fail").status is ResultStatus.ERROR
    err = got.latest("m2-fail").error
    assert err is not None
    assert err.code >= 400
    assert err.message
    for rid in ("m1-a", "m1-b", "m2-a"):
        assert got.latest(rid).status is ResultStatus.OK
    assert got.latest("m1-a").batch_job == got.latest("m1-b").batch_job
    assert got.latest("m1-a").batch_job != got.latest("m2-a").batch_job
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 2


def test_poison_records_go_to_dead_letter_and_partition_keeps_flowing(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Undecodable and invalid records go to the DLQ with provenance; later requests flow on."""
    from kafka import KafkaConsumer

    publisher.publish_raw(b"not avro at all", key=b"poison-1", partition=0)
    publisher.publish("bad-shape", "gemini-2.5-flash", {"contents": "nope"}, partition=0)
    publisher.publish("good-after", "gemini-2.5-flash", prompt("still here"), partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)):
        got = collect(kafka_bootstrap, topics.results, {"bad-shape", "good-after"}, timeout=60)
    assert got.latest("good-after").status is ResultStatus.OK
    bad = got.latest("bad-shape")
    assert bad.status is ResultStatus.ERROR
    assert bad.error is not None
    assert bad.error.status == "INVALID_ARGUMENT"
    consumer = KafkaConsumer(
        topics.dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    dead: list[object] = []
    try:
        wait_until(
            lambda: (
                dead.extend(r for rs in consumer.poll(500).values() for r in rs) or len(dead) >= 2
            ),
            timeout=20,
            message="two dead letters",
        )
    finally:
        consumer.close()
    by_key = {r.key: r for r in dead}  # type: ignore[attr-defined]
    poison = by_key[b"poison-1"]
    assert poison.value == b"not avro at all"  # the original record, unchanged
    headers = dict(poison.headers)
    assert headers["__connect.errors.topic"] == topics.requests.encode()
    assert headers["__connect.errors.partition"] == b"0"
    assert headers["__connect.errors.offset"] == b"0"
    assert headers["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert b"DecodeError" in headers["__connect.errors.exception.class.name"]
    invalid = dict(by_key[b"bad-shape"].headers)
    assert invalid["__connect.errors.stage"] == b"VALIDATION"
    assert invalid["__connect.errors.exception.message"]


@pytest.mark.parametrize("forced", ["FAILED", "EXPIRED"])
def test_failed_job_is_retried_and_expired_job_is_split(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    forced: str,
) -> None:
    """A FAILED job is retried whole; an EXPIRED one is resubmitted as two halves; all answered."""
    emulator.update_config(queue_delay_s=3600.0)  # hold the first job so it can be forced
    ids = {f"r-{i}" for i in range(6)}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)):
        first = wait_until(lambda: list_jobs(emulator.base_url), timeout=30, message="first job")
        assert len(first) == 1
        emulator.update_config(queue_delay_s=0.1)
        emulator.force_state(first[0]["name"], forced)
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert r.attempt == 1  # one resubmission (0 = first job)
        assert r.batch_job != first[0]["name"]
    created = emulator_stats(emulator.base_url)["batches"]["created_total"]
    assert created == (2 if forced == "FAILED" else 3)


def test_cancelled_job_becomes_error_results(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Someone cancels the job at the provider: each request gets a CANCELLED error, no retry."""
    emulator.update_config(queue_delay_s=3600.0)
    ids = {"cxl-1", "cxl-2"}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)):
        job = wait_until(lambda: list_jobs(emulator.base_url), timeout=30, message="job")[0]
        emulator.force_state(job["name"], "CANCELLED")
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert r.error.status == "CANCELLED"
        assert r.batch_job == job["name"]
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 1


def test_exhausted_retries_become_error_results(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Jobs that keep failing end in error results that say so, not in silence."""
    emulator.update_config(job_failure_rate=1.0)
    ids = {"doomed-1", "doomed-2"}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=1)
    publisher.flush()
    settings = topics.settings(kafka_bootstrap, emulator.base_url, max_failed_retries=1)
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert "failed after 2 attempt" in r.error.message
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 2


def test_results_decode_with_the_published_schema(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Result records are Avro single-object encoded: magic bytes and a known fingerprint."""
    from kafka import KafkaConsumer

    publisher.publish("schema-1", "gemini-2.5-flash", prompt("hello"), partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)):
        collect(kafka_bootstrap, topics.results, {"schema-1"}, timeout=60)
    consumer = KafkaConsumer(
        topics.results, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    try:
        recs = wait_until(
            lambda: [r for rs in consumer.poll(500).values() for r in rs],
            timeout=10,
            message="a result",
        )
    finally:
        consumer.close()
    assert recs[0].value[:2] == b"\xc3\x01"
    assert Codec().decode_result(recs[0].value).request_id == "schema-1"
    assert dict(recs[0].headers)["request_id"] == b"schema-1"


def test_rebalance_while_batches_are_open_loses_nothing(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """A member joining and leaving mid-batch revokes open batches; their records come again."""
    from kafka import KafkaConsumer

    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, batch_max_wait_s=4.0, status_interval_s=0.2
    )
    ids = {f"reb-{i}" for i in range(8)}
    with sidecar_thread(settings) as sidecar:
        for i, rid in enumerate(sorted(ids)):
            publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=i % 2)
        publisher.flush()
        wait_until(lambda: len(sidecar.batcher) == len(ids), timeout=30, message="open batches")
        intruder = KafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            group_id=topics.group,
            enable_auto_commit=False,  # a peer that commits nothing, like a busy sidecar
            session_timeout_ms=6000,
        )
        try:
            intruder.partitions_for_topic(topics.requests)
            intruder.subscribe([topics.requests])
            wait_until(
                lambda: intruder.poll(200) is not None and intruder.assignment(),
                timeout=30,
                message="join",
            )
        finally:
            intruder.close()
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        assert got.latest(rid).status is ResultStatus.OK


def test_transient_provider_errors_delay_but_never_duplicate(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """With a third of all Gemini calls failing 500/503, every request is still answered once."""
    emulator.update_config(transient_error_rate=0.35, seed=7)
    ids = {f"flaky-{i}" for i in range(10)}
    for i, rid in enumerate(sorted(ids)):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=i % 2)
    publisher.flush()
    settings = topics.settings(kafka_bootstrap, emulator.base_url, batch_max_requests=3)
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
    for rid in ids:
        assert got.latest(rid).status is ResultStatus.OK
        assert len(got.by_id[rid]) == 1
    by_name = emulator_stats(emulator.base_url)["batches"]["by_display_name"]
    assert by_name
    assert max(by_name.values()) == 1, by_name


def test_job_quota_holds_intents_back_but_commits_their_offsets(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Budget of one job: sealed batches wait as INTENTs, offsets committed, and run in turn."""
    from kafka import KafkaConsumer, TopicPartition

    emulator.update_config(queue_delay_s=1.0)
    ids = {f"quota-{i}" for i in range(6)}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    settings = topics.settings(kafka_bootstrap, emulator.base_url, max_jobs=1, batch_max_requests=2)
    most_active = 0

    def watch() -> bool:
        nonlocal most_active
        most_active = max(most_active, emulator_stats(emulator.base_url)["batches"]["active"])
        return False

    with sidecar_thread(settings) as sidecar:
        wait_until(
            lambda: watch() or sidecar.status()["intents"] >= 1,
            timeout=30,
            interval=0.1,
            message="an INTENT waiting for quota",
        )
        reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=topics.group)
        try:
            # All six offsets commit although at most one job may run.
            wait_until(
                lambda: watch() or reader.committed(TopicPartition(topics.requests, 0)) == 6,
                timeout=30,
                interval=0.1,
                message="offsets of waiting INTENTs committed",
            )
        finally:
            reader.close()
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    assert all(got.latest(rid).status is ResultStatus.OK for rid in ids)
    assert most_active == 1
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 3


def test_expired_deadline_gets_an_error_without_a_job(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """A request whose deadline has passed is answered DEADLINE_EXCEEDED and never submitted."""
    publisher.publish("late-1", "gemini-2.5-flash", prompt("too late"), deadline_ms=1, partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)):
        got = collect(kafka_bootstrap, topics.results, {"late-1"}, timeout=30)
    err = got.latest("late-1").error
    assert err is not None
    assert err.status == "DEADLINE_EXCEEDED"
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 0


def test_health_endpoints_of_a_running_sidecar(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer
) -> None:
    """With CONNECTOR_HEALTH_PORT set, probes see a live, ready sidecar and its partitions."""
    import socket

    import httpx2

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, health_port=port, health_host="127.0.0.1"
    )
    base = f"http://127.0.0.1:{port}"
    with sidecar_thread(settings):
        wait_until(
            lambda: httpx2.get(base + "/readyz", timeout=5).status_code == 200,
            timeout=30,
            message="ready",
        )
        assert httpx2.get(base + "/healthz", timeout=5).status_code == 200
        wait_until(
            lambda: httpx2.get(base + "/status", timeout=5).json()["partitions"] == [0, 1],
            timeout=30,
            message="both partitions in /status",
        )


def test_stuck_job_is_cancelled_and_resubmitted_split(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """A job older than CONNECTOR_MAX_JOB_AGE_H is cancelled; its requests go again, in halves."""
    emulator.update_config(queue_delay_s=3600.0)  # the first job never leaves PENDING
    ids = {f"stuck-{i}" for i in range(4)}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=1)
    publisher.flush()
    settings = topics.settings(kafka_bootstrap, emulator.base_url, max_job_age_h=2 / 3600)
    with sidecar_thread(settings):
        first = wait_until(lambda: list_jobs(emulator.base_url), timeout=30, message="first job")
        emulator.update_config(queue_delay_s=0.1)  # successors run normally
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert r.attempt == 1  # one resubmission (0 = first job)
        assert r.batch_job != first[0]["name"]
    stats = emulator_stats(emulator.base_url)
    assert stats["batches"]["created_total"] == 3
    assert stats["calls"].get("batches.cancel") == 1
