"""The request re-reader against a real broker: one kept-open consumer per partition that
reads only the wanted offset ranges of a big partition, skipping the long runs in between,
and reads a job interleaved with another (every other offset) as one sequential span."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from sidecar_harness import Topics, collect, sidecar_thread

from connector.adapters.clients import CLIENTS, backend
from connector.adapters.reread import RequestReader
from connector.client import RequestPublisher
from connector.core.codec import Codec
from connector.core.records import Kind, RequestEvent, ResultStatus
from connector.emulator import EmulatorServer

TOTAL = 50_000
RANGES = [(100, 120), (9_000, 9_001), (20_000, 20_050), (33_333, 33_334), (49_990, 50_000)]


MODELS = ("gemini-2.5-flash", "gemini-2.5-flash-lite")


def _fill(bootstrap: str, topic: str, codec: Codec, total: int = TOTAL) -> None:
    """`total` requests in partition 0, the two models alternating offset by offset."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=64 * 1024, acks=1
    )
    try:
        for i in range(total):
            ev = RequestEvent(f"r{i}", MODELS[i % 2], Kind.GENERATE, '{"contents": []}')
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


@pytest.mark.parametrize("client", CLIENTS)
def test_interleaved_job_is_read_as_one_span_chunk_after_chunk(
    kafka_bootstrap: str, topic_factory: Callable[..., str], client: str
) -> None:
    """A job holding every other offset, read in chunks as a delivery reads it: exactly its
    offsets, each once, with one seek for the whole job (each chunk reads on where the last
    stopped) and the other job's records read once and dropped, not fetched range by range."""
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    total, chunk = 6_000, 500
    topic = topic_factory(partitions=1)
    codec = Codec()
    _fill(kafka_bootstrap, topic, codec, total)
    reader = RequestReader(
        topic,
        codec.decode_request,
        kafka_bootstrap,
        {"max_partition_fetch_bytes": 16 * 1024},
        open_reader=backend(client).partition_reader,
    )
    try:
        job = list(range(1, total, 2))  # the second model's requests
        seen: list[int] = []
        for k in range(0, len(job), chunk):
            got = reader.read(0, job[k : k + chunk])
            assert sorted(got) == job[k : k + chunk]
            seen += sorted(got)
            assert {o: got[o].event.request_id for o in got} == {o: f"r{o}" for o in got}  # type: ignore[union-attr]
            assert all(got[o].event.model == MODELS[1] for o in got)  # type: ignore[union-attr]
        assert seen == job
        kept = reader.readers[0]
        assert kept.seeks == 1  # one sequential read of the span, not 3,000 seeks
        assert kept.fetched <= total  # every record of the span read at most once
        assert kept.fetched >= len(job)
    finally:
        reader.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_interleaved_batch_keys_are_delivered_completely_once_in_offset_order(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    emulator: EmulatorServer,
    client: str,
) -> None:
    """Two models alternating offset by offset in one partition: two jobs whose offsets
    interleave, each re-read and delivered in small chunks: every request answered once,
    OK, each job's results in its offset order."""
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    n = 1_200
    topics = Topics(
        requests=topic_factory(partitions=1),
        results=topic_factory(partitions=1),  # one partition: the results' order is seen
        dlq=topic_factory(partitions=1),
        group=group_factory(),
    )
    publisher = RequestPublisher(kafka_bootstrap, topics.requests)
    try:
        for i in range(n):
            body = {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]}
            publisher.publish(f"il-{i}", MODELS[i % 2], body, partition=0)
        publisher.flush()
    finally:
        publisher.close()
    ids = {f"il-{i}" for i in range(n)}
    settings = topics.settings(
        kafka_bootstrap,
        emulator.base_url,
        kafka_client=client,
        batch_max_requests=n // 2,
        delivery_chunk_requests=50,  # many chunks per job: the cursor moves a dozen times
    )
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
    order: dict[str, list[int]] = {}
    for rid in ids:
        assert len(got.by_id[rid]) == 1, f"{rid} answered {len(got.by_id[rid])} times"
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert r.source_offset == int(rid.removeprefix("il-"))
        assert r.model == MODELS[r.source_offset % 2]
    for results in got.by_id.values():
        r = results[0]
        assert r.batch_job is not None
        order.setdefault(r.batch_job, []).append(r.source_offset)
    assert len(order) >= 2  # the models never share a job
    for job, offsets in order.items():
        assert len({o % 2 for o in offsets}) == 1, job  # one model's offsets only
        assert offsets == sorted(offsets), job  # results in the job's offset order


@pytest.mark.parametrize("client", CLIENTS)
def test_offsets_deleted_meanwhile_are_absent_not_waited_for(
    kafka_bootstrap: str, topic_factory: Callable[..., str], client: str
) -> None:
    """Records deleted (retention) after the reader was opened: a span reaching below the
    log start reads from the start (no look-up of it per read), so what is gone is simply
    absent and what remains is read; a span wholly below it reads nothing, at once."""
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    topic = topic_factory(partitions=1)
    codec = Codec()
    _fill(kafka_bootstrap, topic, codec, 300)
    reader = RequestReader(
        topic,
        codec.decode_request,
        kafka_bootstrap,
        {},
        open_reader=backend(client).partition_reader,
    )
    try:
        assert sorted(reader.read(0, [10, 11, 250])) == [10, 11, 250]
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_records({TopicPartition(topic, 0): 200})
        finally:
            admin.close()
        got = reader.read(0, [20, 22, 150, 199, 200, 201, 260])
        assert sorted(got) == [200, 201, 260]
        assert got[260].event is not None
        assert got[260].event.request_id == "r260"
        assert reader.read(0, range(0, 100)) == {}
        assert sorted(reader.read(0, [5, 299])) == [299]
    finally:
        reader.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_two_interleaved_jobs_read_in_turns_each_read_on_from_their_own_consumer(
    kafka_bootstrap: str, topic_factory: Callable[..., str], client: str
) -> None:
    """Both models' jobs delivered at once, a chunk each per pass: each reads its span on
    from its own kept-open consumer (one seek each for the whole job), not back and forth."""
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    total, chunk = 4_000, 250
    topic = topic_factory(partitions=1)
    codec = Codec()
    _fill(kafka_bootstrap, topic, codec, total)
    reader = RequestReader(
        topic,
        codec.decode_request,
        kafka_bootstrap,
        {"max_partition_fetch_bytes": 16 * 1024},
        open_reader=backend(client).partition_reader,
    )
    try:
        jobs = [list(range(0, total, 2)), list(range(1, total, 2))]
        for k in range(0, total // 2, chunk):
            for model, job in zip(MODELS, jobs, strict=True):
                got = reader.read(0, job[k : k + chunk])
                assert sorted(got) == job[k : k + chunk]
                assert all(got[o].event.model == model for o in got)  # type: ignore[union-attr]
        first, spare = reader.readers[0], reader.spares[0]
        assert (first.seeks, spare.seeks) == (1, 1)
        assert first.fetched <= total
        assert spare.fetched <= total
    finally:
        reader.close()
