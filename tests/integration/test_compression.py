"""Compressed batches from producers that are not kafka-python, and results in every codec.

Other teams publish with librdkafka, Java and Go clients that compress (franz-go: snappy by
default; Java and Connect shops: lz4 or zstd). kcat (librdkafka) writes the request batches
here, one codec per partition, so a missing codec library shows as a partition that is never
answered. Each batch is first shown to really be in its codec: a kafka-python consumer with
that codec's library hidden must fail on it, naming the codec.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest
from sidecar_harness import Topics, collect, sidecar_thread

from connector.adapters.kafka import Producer
from connector.core.records import ResultStatus
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 6
# Compressible on purpose: librdkafka sends a batch uncompressed when compressing does not
# make it smaller.
TEXT = "Сводка заказа номер {i}: доставка, оплата, возврат. " * 20

_PROBE = """
import sys
for name in ("snappy", "lz4", "lz4.frame", "zstandard"):
    sys.modules[name] = None  # kafka-python then lacks every codec but gzip
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic, partition = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
tp = TopicPartition(topic, partition)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
for _ in range(40):
    if any(consumer.poll(timeout_ms=500).values()):
        print("read")
        sys.exit(0)
print("nothing read")
sys.exit(1)
"""


def _kcat() -> str:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is needed (Debian package kcat; .ci/run installs it)"
    return kcat


def probe(bootstrap: str, topic: str, partition: int) -> subprocess.CompletedProcess[str]:
    """Read the partition with a kafka-python that has no snappy, lz4 or zstd library."""
    return subprocess.run(
        [sys.executable, "-c", _PROBE, bootstrap, topic, str(partition)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_compressed_with(bootstrap: str, topic: str, partition: int, codec: str) -> None:
    """The batches of `topic`[`partition`] are in `codec` (gzip: readable without the others)."""
    out = probe(bootstrap, topic, partition)
    if codec == "gzip":
        assert out.returncode == 0, out.stdout + out.stderr
        assert "read" in out.stdout, out.stdout
    else:
        assert out.returncode != 0, f"{codec} batch was read without its library: {out.stdout}"
        assert f"Libraries for {codec} compression codec not found" in out.stderr, out.stderr


def kcat_publish(bootstrap: str, topic: str, partition: int, codec: str, lines: list[str]) -> None:
    subprocess.run(
        [
            _kcat(),
            "-P",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-p",
            str(partition),
            "-z",
            codec,
            "-K",
            "\t",
        ],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=60,
    )


def test_requests_compressed_by_librdkafka_with_every_codec_are_answered(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    emulator: EmulatorServer,
) -> None:
    """kcat publishes JSON requests, one codec per partition; every one gets its OK result,
    and the sidecar writes its results with zstd, which kcat reads back."""
    topics = Topics(
        requests=topic_factory(partitions=len(CODECS)),
        results=topic_factory(partitions=len(CODECS)),
        dlq=topic_factory(partitions=1),
        group=group_factory(),
    )
    ids: set[str] = set()
    for p, codec in enumerate(CODECS):
        lines = []
        for i in range(PER_CODEC):
            rid = f"{codec}-{i}"
            ids.add(rid)
            body = {"contents": [{"role": "user", "parts": [{"text": TEXT.format(i=i)}]}]}
            event = {"request_id": rid, "model": "gemini-2.5-flash", "body": body}
            lines.append(f"{rid}\t{orjson.dumps(event).decode()}")
        kcat_publish(kafka_bootstrap, topics.requests, p, codec, lines)
        assert_compressed_with(kafka_bootstrap, topics.requests, p, codec)

    settings = topics.settings(
        kafka_bootstrap,
        emulator.base_url,
        result_format="json",
        kafka_extra={"compression_type": "zstd"},
    )
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, (rid, r.error)
        assert got.keys[rid] == rid.encode()

    # The results are zstd batches that librdkafka reads back.
    results_read = kcat_consume(kafka_bootstrap, topics.results, len(ids))
    assert {orjson.loads(v)["request_id"] for v in results_read} >= ids
    for p in _partitions_with_data(kafka_bootstrap, topics.results):
        assert_compressed_with(kafka_bootstrap, topics.results, p, "zstd")


@pytest.mark.parametrize("codec", CODECS)
def test_results_produced_with_each_codec_are_read_by_librdkafka(
    kafka_bootstrap: str, topic_factory: Callable[..., str], codec: str
) -> None:
    """The sidecar's producer with CONNECTOR_KAFKA_COMPRESSION_TYPE=<codec>: kcat reads every
    record, key and header, and the batch on the broker is in that codec."""
    topic = topic_factory(partitions=1)
    producer = Producer(kafka_bootstrap, {"compression_type": codec})
    try:
        sent = [
            producer.send(
                topic,
                TEXT.format(i=i).encode(),
                key=f"k-{i}".encode(),
                headers=[("request_id", f"r-{i}".encode())],
                partition=0,
            )
            for i in range(20)
        ]
        producer.flush_and_check(sent)
    finally:
        producer.close()
    lines = kcat_consume(kafka_bootstrap, topic, 20, fmt="%k\t%h\t%s\n")
    assert sorted(lines) == sorted(
        f"k-{i}\trequest_id=r-{i}\t{TEXT.format(i=i)}" for i in range(20)
    )
    assert_compressed_with(kafka_bootstrap, topic, 0, codec)


def kcat_consume(bootstrap: str, topic: str, count: int, fmt: str = "%s\n") -> list[str]:
    """Up to `count` records of `topic` from the beginning, read by kcat (librdkafka)."""
    out = subprocess.run(
        [
            _kcat(),
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-c",
            str(count),
            "-f",
            fmt,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line for line in out.stdout.split("\n") if line]


def _partitions_with_data(bootstrap: str, topic: str) -> list[int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(parts)
        return sorted(tp.partition for tp, end in ends.items() if end > 0)
    finally:
        consumer.close()
