"""Promises under real faults: oversized records, broker outages, racing replicas (real broker)."""

from __future__ import annotations

from collections.abc import Callable

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
