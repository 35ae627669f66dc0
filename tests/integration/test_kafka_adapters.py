"""The Kafka adapters of both clients (kafka-python, confluent-kafka) against the real broker.

Every test runs once per client through `adapters.clients.backend`, so both backends are
held to the same port contract: keys, headers and explicit partitions survive; keyed
records land where Java's default partitioner puts them; group membership, commits and
rewinds; transactions fenced by the consumer's group; size errors; admin; group-less reads.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaProducer
from waiting import wait_until

from connector.adapters.clients import CLIENTS, Backend, backend
from connector.adapters.ledger import Ledger
from connector.adapters.reread import RequestReader
from connector.core.codec import Codec
from connector.core.partitioner import partition_for
from connector.core.records import Kind, Record, RequestEvent
from connector.errors import ConfigError, Fenced, ProduceFailed, RecordTooLarge

TopicFactory = Callable[..., str]


@pytest.fixture(params=CLIENTS)
def kc(request: pytest.FixtureRequest) -> Backend:
    if request.param == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    return backend(request.param)


@pytest.fixture
def producer(kc: Backend, kafka_bootstrap: str) -> Iterator[Any]:
    p = kc.producer(kafka_bootstrap, {})
    try:
        yield p
    finally:
        p.close()


def _poll_until(consumer: Any, want: int, timeout: float = 30.0) -> list[Record]:
    got: list[Record] = []

    def enough() -> bool:
        got.extend(consumer.poll(0.2))
        return len(got) >= want

    wait_until(enough, timeout, message=lambda: f"{want} records (have {len(got)})")
    return got


def test_send_keeps_key_headers_and_partition(
    kc: Backend, producer: Any, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=3)
    sent = [
        producer.send(topic, b"v%d" % i, key=b"k%d" % i, headers=[("h", b"%d" % i)], partition=2)
        for i in range(5)
    ]
    sent.append(producer.send(topic, None, key=b"tomb", partition=2))
    producer.flush_and_check(sent)
    assert all(s.ok() and s.error() is None for s in sent)
    recs = kc.read_partition(topic, 2, kafka_bootstrap, {})
    assert [(r.key, r.value, r.headers) for r in recs] == [
        *((b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)]) for i in range(5)),
        (b"tomb", None, []),
    ]
    assert [r.offset for r in recs] == list(range(6))
    assert kc.read_partition(topic, 2, kafka_bootstrap, {}, start=2, stop=4)[0].offset == 2
    assert kc.read_partition(topic, 0, kafka_bootstrap, {}) == []


def test_keyed_records_land_where_java_and_kafka_python_put_them(
    kc: Backend, producer: Any, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """The client's own partitioner (murmur2_random for librdkafka), kafka-python's
    DefaultPartitioner and the sidecar's `partition_for` agree on every key."""
    n = 7
    topic = topic_factory(partitions=n)
    keys = [b"key-%d" % i for i in range(60)] + [b"", "é-ü".encode()]
    sent = [producer.send(topic, b"x", key=k) for k in keys]
    producer.flush_and_check(sent)
    placed = {r.key: p for p in range(n) for r in kc.read_partition(topic, p, kafka_bootstrap, {})}
    expected = {k: partition_for(k, n) for k in keys}
    ref = KafkaProducer(bootstrap_servers=kafka_bootstrap)  # kafka-python's own placement
    try:
        futures = {k: ref.send(topic, b"y", key=k) for k in keys if k}
        ref.flush(timeout=30)
        assert {k: f.get(timeout=5).partition for k, f in futures.items()} == {
            k: expected[k] for k in futures
        }
    finally:
        ref.close()
    assert {k: placed[k] for k in keys if k} == {k: expected[k] for k in keys if k}


def test_oversized_record_is_record_too_large(
    kc: Backend, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(configs={"max.message.bytes": "2000"})
    small = kc.producer(kafka_bootstrap, {"max_request_size": 5000})
    try:
        over_client = small.send(topic, b"x" * 10_000, key=b"a")
        with pytest.raises(ProduceFailed):
            small.flush_and_check([over_client])
        assert isinstance(over_client.error(), RecordTooLarge)
        fine = small.send(topic, b"x" * 10, key=b"c")
        small.flush_and_check([fine])  # refused by the client: the producer goes on
        assert fine.ok()
        over_topic = small.send(topic, b"x" * 3_000, key=b"b")
        with pytest.raises(ProduceFailed):
            small.flush_and_check([over_topic])
        assert isinstance(over_topic.error(), RecordTooLarge)
    finally:
        small.close()


def test_group_consumer_commits_rewinds_and_reports_rebalances(
    kc: Backend,
    producer: Any,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    group_factory: Callable[[], str],
) -> None:
    topic = topic_factory(partitions=2)
    group = group_factory()
    producer.flush_and_check(
        [producer.send(topic, b"%d" % i, key=b"k", partition=i % 2) for i in range(10)]
    )
    c = kc.request_consumer(topic, group, kafka_bootstrap, {}, 100)
    try:
        got = _poll_until(c, 10)
        assert ("assigned", {0, 1}) in c.rebalance_events()
        assert c.assignment() == {0, 1}
        c.commit({0: 2, 1: 3})
        assert c.rewind([0, 1]) == {0: 2, 1: 3}
        again = _poll_until(c, 5)
        assert sorted((r.partition, r.offset) for r in again) == [
            (0, 2), (0, 3), (0, 4), (1, 3), (1, 4)
        ]  # fmt: skip
        c.pause([0])
        c.seek(0, 0)
        c.seek(1, 0)
        only_one = _poll_until(c, 5)
        assert {r.partition for r in only_one} == {1}
        c.resume_all()
        c.seek(0, 4)
        assert [(r.partition, r.offset) for r in _poll_until(c, 1)] == [(0, 4)]
        assert len(got) == 10
        wait_until(lambda: c.highwaters() == {0: 5, 1: 5}, 10, message="highwaters")
    finally:
        c.close()
    c2 = kc.request_consumer(topic, group, kafka_bootstrap, {}, 100)
    try:
        wait_until(lambda: (c2.poll(0.2), c2.assignment())[1] == {0, 1}, 30, message="assigned")
        assert c2.rewind([0, 1]) == {0: 2, 1: 3}
    finally:
        c2.close()


def test_transaction_commits_offsets_with_the_group_and_aborts_cleanly(
    kc: Backend,
    producer: Any,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    group_factory: Callable[[], str],
) -> None:
    src, out = topic_factory(), topic_factory()
    group = group_factory()
    producer.flush_and_check([producer.send(src, b"req", key=b"k", partition=0)])
    c = kc.request_consumer(src, group, kafka_bootstrap, {}, 100)
    txn = kc.transactional_producer(kafka_bootstrap, {}, f"txn-{group}")
    try:
        _poll_until(c, 1)
        aborted = txn.send(out, b"aborted", key=b"k", partition=0)
        txn.flush_and_check([aborted])
        txn.abort_transaction()
        kept = txn.send(out, b"kept", key=b"k", partition=0)
        txn.commit_transaction([kept], {0: 1}, c)
        visible = kc.read_partition(out, 0, kafka_bootstrap, {}, committed=True)
        assert [r.value for r in visible] == [b"kept"]
        assert c.rewind([0]) == {0: 1}
    finally:
        c.close()
        txn.close()


def test_a_transaction_of_a_consumer_that_left_the_group_is_fenced(
    kc: Backend,
    producer: Any,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    group_factory: Callable[[], str],
) -> None:
    """A member whose generation is stale (another member took the partitions) cannot
    commit offsets in a transaction: `Fenced`, and nothing of the transaction shows."""
    src, out = topic_factory(), topic_factory()
    group = group_factory()
    producer.flush_and_check([producer.send(src, b"req", key=b"k", partition=0)])
    extra = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "max_poll_interval_ms": 7000}
    old = kc.request_consumer(src, group, kafka_bootstrap, extra, 100)
    txn = kc.transactional_producer(kafka_bootstrap, {}, f"txn-{group}")
    new = None
    try:
        _poll_until(old, 1)
        # The old member stops polling; a new one joins and takes the partition once the old
        # one has been dropped for exceeding max.poll.interval.ms (shortened here).
        new = kc.request_consumer(src, group, kafka_bootstrap, extra, 100)
        wait_until(lambda: (new.poll(0.2), new.assignment())[1] == {0}, 60, message="new owner")
        sent = txn.send(out, b"zombie", key=b"k", partition=0)
        with pytest.raises(Fenced):
            txn.commit_transaction([sent], {0: 1}, old)
        assert kc.read_partition(out, 0, kafka_bootstrap, {}, committed=True) == []
    finally:
        old.close()
        if new is not None:
            new.close()
        txn.close()


class _StaleMembership:
    """The consumer as a replica that stalled past its session sees it: the offsets it
    means, with a member id the group coordinator no longer knows (UNKNOWN_MEMBER_ID)."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    def transaction_offsets(self, offsets: dict[int, int]) -> tuple[object, object]:
        tps, group = self._consumer.transaction_offsets(offsets)
        return tps, group._replace(member_id="a-member-the-group-dropped")


def test_a_refused_transactions_offsets_never_ride_the_next_commit(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    group_factory: Callable[[], str],
) -> None:
    """kafka-python keeps a refused TxnOffsetCommit's offsets queued past the abort and
    merges them into the next transaction's: a replica refused as stale that rejoins and
    commits for its new partitions would move a lost partition's committed offset back
    (the new owner rewinds there and batches answered requests again: chaos run of
    35813d5). Each transaction commits only the offsets it was given."""
    kc = backend("kafka-python")
    src = topic_factory(partitions=2)
    group = group_factory()
    c = kc.request_consumer(src, group, kafka_bootstrap, {}, 100)
    txn = kc.transactional_producer(kafka_bootstrap, {}, f"txn-{group}")
    p = kc.producer(kafka_bootstrap, {})
    try:
        p.flush_and_check([p.send(src, b"r", key=b"k", partition=q) for q in (0, 1, 0, 1)])
        _poll_until(c, 4)
        txn.commit_transaction([], {0: 2, 1: 2}, c)
        with pytest.raises(Fenced):
            txn.commit_transaction([], {1: 1}, _StaleMembership(c))  # refused, aborted
        txn.commit_transaction([], {0: 2}, c)
        assert c.rewind([0, 1]) == {0: 2, 1: 2}  # partition 1 not moved back to 1
    finally:
        p.close()
        c.close()
        txn.close()


def test_a_unit_of_work_begins_explicitly_and_an_aborted_send_can_be_sent_again(
    kc: Backend, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """The transactional port as the loop uses it (`stages.unit`, `Sink.commit_transaction`):
    `begin_transaction` starts a unit and aborts what a failed one left open; a record whose
    transaction aborted is sent again with `resend` (the sink's 413 fallback does). The
    librdkafka adapter lacked both, so exactly-once on it failed at its first pass."""
    out = topic_factory()
    txn = kc.transactional_producer(kafka_bootstrap, {}, f"txn-unit-{uuid.uuid4().hex[:8]}")
    try:
        txn.begin_transaction()
        stray = txn.send(out, b"stray", key=b"k", partition=0)  # a unit that failed
        txn.begin_transaction()  # the next unit aborts it first
        kept = txn.send(out, b"kept", key=b"k", partition=0)
        txn.abort_transaction()  # say the broker refused something: all of it again
        txn.begin_transaction()
        again = txn.resend(kept)
        txn.commit_transaction([again], {}, None)
        visible = kc.read_partition(out, 0, kafka_bootstrap, {}, committed=True)
        assert [r.value for r in visible] == [b"kept"]
        assert stray is not None
    finally:
        txn.close()


def test_a_fenced_transactional_producer_is_renewed_and_a_shared_id_is_a_config_error(
    kc: Backend, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """A transactional producer fenced once (a unit of work ran past transaction.timeout.ms,
    or a replacement took the id) comes back: the adapter renews it and its next
    transaction commits, never a configuration error (issue 16, A10). Two live producers
    sharing one id fence each other in turn: within a few rounds, a `ConfigError` says so.
    On librdkafka a fencing is a fatal error and the producer is dead for good; a flush
    that meets it raised a SystemError out of the delivery callback (confluent-kafka 2.16)."""
    out = topic_factory()
    tid = f"txn-shared-{uuid.uuid4().hex[:8]}"
    old = kc.transactional_producer(kafka_bootstrap, {}, tid, timeout_s=20.0)
    new = kc.transactional_producer(kafka_bootstrap, {}, tid, timeout_s=20.0)  # fences old

    def attempt(p: Any, value: bytes) -> BaseException | None:
        try:
            p.commit_transaction([p.send(out, value, key=b"k", partition=0)], {}, None)
        except (ProduceFailed, Fenced, ConfigError) as exc:
            return exc
        return None

    try:
        first = attempt(old, b"old-0")
        assert isinstance(first, Fenced), first
        outcomes = [attempt(old, f"old-{i}".encode()) for i in range(1, 3)]
        assert not any(isinstance(o, ConfigError) for o in outcomes), outcomes
        assert outcomes[-1] is None, f"the fenced producer never came back: {outcomes}"
        visible = [r.value for r in kc.read_partition(out, 0, kafka_bootstrap, {}, committed=True)]
        assert visible[-1] == b"old-2"
        assert b"old-0" not in visible

        shared: BaseException | None = None
        for i in range(12):  # the two now take the id from each other
            for p in (new, old):
                shared = attempt(p, f"pingpong-{i}".encode())
                if isinstance(shared, ConfigError):
                    break
            if isinstance(shared, ConfigError):
                break
        assert isinstance(shared, ConfigError), shared
        assert "CONNECTOR_TRANSACTIONAL_ID" in str(shared)
    finally:
        for p in (old, new):
            with contextlib.suppress(Exception):
                p.close()


def test_admin_creates_checks_and_reads_topic_configs(
    kc: Backend, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    admin = kc.admin(kafka_bootstrap, {})
    try:
        name = f"adm-{kc.name}-{time.time_ns()}"
        assert admin.partitions(name) is None
        assert admin.ensure_topic(name, 3, {"max.message.bytes": "5000"}) == 3
        assert admin.ensure_topic(name, 5) == 3  # existing: left as it is
        assert admin.max_message_bytes(name) == 5000
        assert admin.brokers() == 1
        requests = topic_factory(partitions=2)
        ledger = f"{name}.ledger"
        assert admin.ensure_ledger(ledger, 2) > 0
        assert admin.topic_config(ledger)["cleanup.policy"] == "compact"
        assert admin.ensure_ledger(ledger, 4) > 0  # grown to match a grown request topic
        assert admin.partitions(ledger) == 4
        assert admin.partitions(requests) == 2
    finally:
        admin.close()


def test_ledger_and_control_topic_read_back_through_the_client(
    kc: Backend, producer: Any, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    control = topic_factory(compact=True)
    producer.flush_and_check(
        [producer.send(control, b"cmd%d" % i, key=b"c%d" % i, partition=0) for i in range(3)]
    )
    reader = kc.control_topic(control, producer, kafka_bootstrap, {})
    try:
        assert [r.value for r in reader.poll()] == [b"cmd0", b"cmd1", b"cmd2"]
        assert reader.poll() == []
        producer.flush_and_check([reader.retire("c1")])
        wait_until(
            lambda: any(r.key == b"c1" and r.value is None for r in reader.poll()),
            10,
            message="the tombstone read back",
        )
    finally:
        reader.close()
    ledger_topic = topic_factory()
    ledger = Ledger(ledger_topic, Codec(), producer, kafka_bootstrap, {}, read=kc.read_partition)
    assert ledger.load(0) == {}


def test_request_reader_reads_sparse_ranges(
    kc: Backend, producer: Any, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory()
    codec = Codec()

    def request(i: int) -> Any:
        ev = RequestEvent(f"r{i}", "gemini-2.5-flash", Kind.GENERATE, "{}", created_ms=1)
        return producer.send(topic, codec.encode_request(ev), key=b"r%d" % i, partition=0)

    producer.flush_and_check([request(i) for i in range(50)])
    reader = RequestReader(
        topic, codec.decode_request, kafka_bootstrap, {}, open_reader=kc.partition_reader
    )
    try:
        got = reader.read(0, [3, 4, 5, 30, 49, 60])
        assert sorted(got) == [3, 4, 5, 30, 49]
        assert got[30].event is not None
        assert got[30].event.request_id == "r30"
        assert got[30].kafka_key == b"r30"
        # Chunk after chunk, as a delivery reads (the reader goes on where it stopped).
        for lo in (10, 20, 30):
            chunk = reader.read(0, range(lo, lo + 10))
            assert sorted(chunk) == list(range(lo, lo + 10))
            assert {o.event.request_id for o in chunk.values() if o.event} == {
                f"r{i}" for i in range(lo, lo + 10)
            }
        assert sorted(reader.read(0, [5, 6])) == [5, 6]  # and back again
        producer.flush_and_check([request(i) for i in range(50, 60)])  # the partition grows
        assert sorted(reader.read(0, range(45, 60))) == list(range(45, 60))
    finally:
        reader.close()
