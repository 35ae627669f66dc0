"""The request re-reader against a real broker: one kept-open consumer per partition that
reads only the wanted offset ranges of a big partition, skipping the records in between."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from connector.adapters.clients import CLIENTS, backend
from connector.adapters.reread import RequestReader
from connector.core.codec import Codec
from connector.core.records import Kind, RequestEvent

TOTAL = 50_000
RANGES = [(100, 120), (9_000, 9_001), (20_000, 20_050), (33_333, 33_334), (49_990, 50_000)]


def _fill(bootstrap: str, topic: str, codec: Codec) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=64 * 1024, acks=1
    )
    try:
        for i in range(TOTAL):
            ev = RequestEvent(f"r{i}", "gemini-2.5-flash", Kind.GENERATE, '{"contents": []}')
            producer.send(topic, codec.encode_request(ev), key=f"r{i}".encode(), partition=0)
        producer.flush(timeout=120)
    finally:
        producer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_sparse_ranges_of_a_big_partition_read_only_the_wanted_records(
    kafka_bootstrap: str, topic_factory: Callable[..., str], client: str
) -> None:
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    topic = topic_factory(partitions=1)
    codec = Codec()
    _fill(kafka_bootstrap, topic, codec)
    reader = RequestReader(
        topic,
        codec.decode_request,
        kafka_bootstrap,
        {"max_partition_fetch_bytes": 16 * 1024},
        open_reader=backend(client).partition_reader,
    )
    try:
        wanted = [o for start, stop in RANGES for o in range(start, stop)]
        got = reader.read(0, reversed(wanted))  # any order in, offsets out
        assert sorted(got) == wanted
        assert all(got[o].event is not None for o in wanted)
        assert {got[o].event.request_id for o in wanted} == {f"r{o}" for o in wanted}  # type: ignore[union-attr]
        kept = reader.readers[0]
        # Each range costs at most a fetch or two past its end (16 KB ~ 250 records), never
        # the 49,918 records between the ranges.
        assert kept.fetched < len(wanted) + len(RANGES) * 600
        assert kept.fetched < TOTAL // 10

        # The same consumer serves the next read (kept open), also for offsets past the end.
        again = reader.read(0, [5, 6, TOTAL + 7])
        assert sorted(again) == [5, 6]
        assert reader.readers[0] is kept

        reader.retain({1})  # partition 0 no longer owned: its reader is closed
        assert reader.readers == {}
        assert sorted(reader.read(0, [42])) == [42]  # and opened again on demand
    finally:
        reader.close()
