"""Promises under real faults: oversized records, broker outages, racing replicas (real broker)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx2
import kafka_local
from sidecar_harness import Topics, collect, sidecar_thread
from waiting import wait_until

from connector.client import RequestPublisher
from connector.core.records import ResultStatus
from connector.emulator import EmulatorServer


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def test_result_over_max_message_bytes_is_an_error_result_not_a_crash_loop(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    emulator: EmulatorServer,
) -> None:
    """An image-sized answer over the results topic's max.message.bytes: 413 for that request,
    every other request of the job answered once, and the job ends (no repeats)."""
    topics = Topics(
        requests=topic_factory(partitions=1),
        results=topic_factory(partitions=1, configs={"max.message.bytes": "20000"}),
        dlq=topic_factory(partitions=1),
        group=group_factory(),
    )
    ids = {"big", "small-1", "small-2", "small-3"}
    pub = RequestPublisher(kafka_bootstrap, topics.requests)
    try:
        for rid in sorted(ids):
            text = "draw EMULATOR_BIG_60000" if rid == "big" else rid
            pub.publish(rid, "gemini-2.5-flash", prompt(text), partition=0)
        pub.flush()
    finally:
        pub.close()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)) as sidecar:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=45)
        wait_until(lambda: sidecar.stats.jobs_finished == 1, timeout=20)
        assert sidecar.stats.results_too_large == 1
    for rid in ids:
        assert len(got.by_id[rid]) == 1, rid
    big = got.latest("big")
    assert big.status is ResultStatus.ERROR
    assert big.error is not None
    assert (big.error.code, big.error.status) == (413, "FAILED_PRECONDITION")
    assert "20000 bytes" in big.error.message
    for rid in ids - {"big"}:
        assert got.latest(rid).status is ResultStatus.OK


def test_dead_letter_near_one_megabyte_is_truncated_and_intake_goes_on(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """An undecodable record that just fits the request topic; with provenance headers it
    would not fit the dead-letter topic. It is dead-lettered truncated, and the next request
    of the partition is answered."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    value = b"\x00" * (1_048_576 - 200)
    raw = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        raw.send(topics.requests, value=value, key=b"huge", partition=0).get(timeout=30)
    finally:
        raw.close()
    publisher.publish("after", "gemini-2.5-flash", prompt("after"), partition=0)
    publisher.flush()
    with sidecar_thread(topics.settings(kafka_bootstrap, emulator.base_url)) as sidecar:
        got = collect(kafka_bootstrap, topics.results, {"after"}, timeout=45)
        assert sidecar.stats.dead_letters_truncated == 1
    assert got.latest("after").status is ResultStatus.OK
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4_000_000,
    )
    try:
        tps = [TopicPartition(topics.dlq, p) for p in (0, 1)]  # keyed: either partition
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        batches = wait_until(lambda: consumer.poll(1000), timeout=20)
    finally:
        consumer.close()
    (dl,) = [r for recs in batches.values() for r in recs]
    headers = dict(dl.headers)
    assert headers["__connect.errors.truncated"] == str(len(value)).encode()
    assert headers["__connect.errors.offset"] == b"0"
    assert dl.key == b"huge"
    assert 0 < len(dl.value) < len(value)


def _healthz(port: int) -> int:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
    except httpx2.HTTPError:
        return 0


def test_broker_outage_is_waited_out_and_unhealthy_meanwhile(
    tmp_path: Path, group_factory: Callable[[], str], emulator: EmulatorServer
) -> None:
    """Stop the (private) broker under a running replica, start it again on the same port and
    data: the replica never dies, /healthz fails during the outage, and every request is
    answered once the broker is back."""
    broker = kafka_local.LocalKafka(tmp_path / "kafka", port=kafka_local.free_port(), heap="512m")
    broker.start(timeout=180)
    try:
        bootstrap = broker.bootstrap
        topics = Topics("req-outage", "res-outage", "dlq-outage", group_factory())
        health_port = kafka_local.free_port()
        settings = topics.settings(
            bootstrap,
            emulator.base_url,
            health_port=health_port,
            liveness_timeout_s=3.0,
            create_topics=True,  # a private broker: nobody made its topics
            topic_partitions=1,
        )
        pub = RequestPublisher(bootstrap, topics.requests)
        try:
            with sidecar_thread(settings):
                pub.publish("before", "gemini-2.5-flash", prompt("before"))
                pub.flush()
                collect(bootstrap, topics.results, {"before"}, timeout=60)
                assert _healthz(health_port) == 200
                broker.stop()
                wait_until(lambda: _healthz(health_port) == 503, timeout=120)
                broker.start(timeout=180)
                wait_until(lambda: _healthz(health_port) == 200, timeout=120)
                pub.publish("after", "gemini-2.5-flash", prompt("after"))
                pub.flush()
                got = collect(bootstrap, topics.results, {"before", "after"}, timeout=90)
        finally:
            pub.close()
        assert got.latest("after").status is ResultStatus.OK
    finally:
        broker.stop()


def test_replicas_starting_together_do_not_race_on_topic_creation(
    kafka_bootstrap: str, group_factory: Callable[[], str], emulator: EmulatorServer
) -> None:
    """Three replicas start at once on topics nobody created yet (CONNECTOR_CREATE_TOPICS);
    none exits."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"req-{suffix}", f"res-{suffix}", f"dlq-{suffix}", group_factory())
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, create_topics=True, topic_partitions=2
    )
    with contextlib.ExitStack() as stack:
        barrier = threading.Barrier(3)
        errors: list[BaseException] = []

        def run() -> None:
            barrier.wait()
            try:
                stack.enter_context(sidecar_thread(settings))
            except BaseException as exc:
                errors.append(exc)

        starters = [threading.Thread(target=run) for _ in range(3)]
        for s in starters:
            s.start()
        for s in starters:
            s.join(60)
        assert not errors
        pub = RequestPublisher(kafka_bootstrap, topics.requests)
        try:
            pub.publish("r", "gemini-2.5-flash", prompt("r"))
            pub.flush()
        finally:
            pub.close()
        got = collect(kafka_bootstrap, topics.results, {"r"}, timeout=60)
    assert got.latest("r").status is ResultStatus.OK
