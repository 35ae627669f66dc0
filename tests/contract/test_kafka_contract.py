"""One contract, two backends: the Kafka doubles of connector.testing_group and the real
adapters on the real broker pass the same cases, so the doubles cannot drift from Kafka.

Arroyo's backend test mixins are the model: `KafkaContract` holds the cases and asks a
backend for clients; `TestDoubles` and `TestRealBroker` each provide them.
"""

from __future__ import annotations

import abc
import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from waiting import wait_until

from connector.adapters import clients
from connector.adapters.clients import CONFLUENT_KAFKA, KAFKA_PYTHON
from connector.adapters.ledger import Ledger
from connector.core.codec import Codec
from connector.core.ports import ConsumerPort
from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry, Record
from connector.errors import CommitFailed, Fenced
from connector.testing import MemoryKafka, MemoryLedger
from connector.testing_group import ClusterProducer, GroupConsumer, MemoryCluster

WAIT_S = 60.0
# Short enough that a member which stops polling is dropped within a test.
CONSUMER_EXTRA = {
    "max_poll_interval_ms": 4000,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
}


class Backend(abc.ABC):
    """What a contract case needs: topics, clients and a read_committed reader."""

    @abc.abstractmethod
    def topic(self, partitions: int = 1, compact: bool = False) -> str: ...

    @abc.abstractmethod
    def consumer(self, topic: str, group: str) -> ConsumerPort: ...

    @abc.abstractmethod
    def producer(self) -> Any: ...

    @abc.abstractmethod
    def txn_producer(self, transactional_id: str) -> Any: ...

    @abc.abstractmethod
    def read_committed(self, topic: str, partition: int = 0) -> list[Record]: ...

    @abc.abstractmethod
    def ledger(self, topic: str, producer: Any) -> Any: ...

    def group(self) -> str:
        return f"g-{uuid.uuid4().hex[:10]}"


def poll_until(consumer: ConsumerPort, wanted: Callable[[set[int]], bool]) -> set[int]:
    """Poll (the group protocol runs inside poll) until the assignment satisfies `wanted`."""

    def check() -> set[int] | None:
        consumer.poll(0.2)
        got = consumer.assignment()
        return got if wanted(got) else None

    found: set[int] = wait_until(check, timeout=WAIT_S, message="the group to settle")
    return found


def produce(producer: Any, topic: str, n: int, partition: int = 0) -> None:
    sent = [
        producer.send(topic, f"v{i}".encode(), f"k{i}".encode(), partition=partition)
        for i in range(n)
    ]
    producer.flush_and_check(sent)


class KafkaContract(abc.ABC):
    """The cases; a subclass provides `backend`."""

    @pytest.fixture
    @abc.abstractmethod
    def backend(self) -> Iterator[Backend]: ...

    def test_a_lone_member_owns_every_partition_and_reads_from_the_committed_offset(
        self, backend: Backend
    ) -> None:
        topic, group = backend.topic(2), backend.group()
        p = backend.producer()
        produce(p, topic, 3, partition=0)
        a = backend.consumer(topic, group)
        assert poll_until(a, lambda got: got == {0, 1}) == {0, 1}
        a.commit({0: 2})
        a.close()
        b = backend.consumer(topic, group)
        poll_until(b, lambda got: got == {0, 1})
        assert b.rewind([0, 1]) == {0: 2, 1: 0}
        b.close()

    def test_a_second_member_joining_splits_the_partitions(self, backend: Backend) -> None:
        topic, group = backend.topic(2), backend.group()
        a = backend.consumer(topic, group)
        poll_until(a, lambda got: got == {0, 1})
        a.rebalance_events()
        b = backend.consumer(topic, group)

        def split() -> bool:
            a.poll(0.1)
            b.poll(0.1)
            return len(a.assignment()) == 1 and len(b.assignment()) == 1

        wait_until(split, timeout=WAIT_S, message="a rebalance giving each member one partition")
        events = a.rebalance_events()
        assert [kind for kind, _ in events][:2] == ["revoked", "assigned"]
        assert a.assignment() | b.assignment() == {0, 1}
        a.close()
        b.close()

    def test_a_commit_from_a_member_the_group_moved_on_without_is_refused(
        self, backend: Backend
    ) -> None:
        topic, group = backend.topic(2), backend.group()
        a = backend.consumer(topic, group)
        poll_until(a, lambda got: got == {0, 1})
        b = backend.consumer(topic, group)  # a polls no more: a zombie
        poll_until(b, lambda got: len(got) > 0)
        with pytest.raises(CommitFailed):
            a.commit({0: 1})
        b.commit({min(b.assignment()): 1})  # the live member commits
        b.close()
        a.close()

    def test_a_transaction_with_offsets_from_a_stale_member_is_fenced_and_invisible(
        self, backend: Backend
    ) -> None:
        topic, out, group = backend.topic(2), backend.topic(1), backend.group()
        a = backend.consumer(topic, group)
        poll_until(a, lambda got: got == {0, 1})
        txn = backend.txn_producer(f"tx-{uuid.uuid4().hex[:8]}")
        b = backend.consumer(topic, group)
        poll_until(b, lambda got: len(got) > 0)
        sent = [txn.send(out, b"zombie", b"k", partition=0)]
        with pytest.raises(Fenced):
            txn.commit_transaction(sent, {0: 1}, a)
        assert backend.read_committed(out) == []
        b.close()
        a.close()

    def test_an_aborted_transaction_is_invisible_to_read_committed(self, backend: Backend) -> None:
        out = backend.topic(1)
        txn = backend.txn_producer(f"tx-{uuid.uuid4().hex[:8]}")
        txn.send(out, b"aborted", b"k", partition=0)
        txn.abort_transaction()
        sent = [txn.send(out, b"kept", b"k", partition=0)]
        txn.commit_transaction(sent, {}, None)
        assert [r.value for r in backend.read_committed(out)] == [b"kept"]

    def test_a_new_producer_with_the_same_transactional_id_fences_the_old(
        self, backend: Backend
    ) -> None:
        out = backend.topic(1)
        tid = f"tx-{uuid.uuid4().hex[:8]}"
        old = backend.txn_producer(tid)
        new = backend.txn_producer(tid)
        # Its sends fail (ProducerFencedError; librdkafka: a fatal error): the transaction
        # is refused as fenced, and the adapter renews the producer for its next one.
        with pytest.raises(Fenced):
            old.commit_transaction([old.send(out, b"old", b"k", partition=0)], {}, None)
        new.commit_transaction([new.send(out, b"new", b"k", partition=0)], {}, None)
        assert [r.value for r in backend.read_committed(out)] == [b"new"]

    def test_the_ledger_reads_live_entries_without_compaction(self, backend: Backend) -> None:
        topic = backend.topic(1, compact=True)
        producer = backend.producer()
        ledger = backend.ledger(topic, producer)
        entries = [entry(f"p0-{i}", (i,)) for i in range(3)]
        producer.flush_and_check([ledger.write(e) for e in entries])
        producer.flush_and_check([ledger.tombstone(entries[1])])
        done = entry("p0-0", (0,), EntryState.DONE)
        producer.flush_and_check([ledger.write(done)])
        live = ledger.load(0)
        assert sorted(live) == ["p0-0", "p0-2"]
        assert live["p0-0"].state is EntryState.DONE

    def test_the_ledger_keeps_epochs_and_take_over_markers_fenced_like_a_claim(
        self, backend: Backend
    ) -> None:
        """Take-over epochs (`stages.epochs`): each record's epoch header and the marker (a
        tombstone with a header) come back from a load; a stale member's marker is fenced."""
        topic, ledger_topic, group = (
            backend.topic(1),
            backend.topic(1, compact=True),
            backend.group(),
        )
        a = backend.consumer(topic, group)
        poll_until(a, lambda got: got == {0})
        start = a.rewind({0})[0]
        producer = backend.producer()
        ledger = backend.ledger(ledger_topic, producer)
        producer.flush_and_check([ledger.write(entry("p0-0", (0,)))])  # before epochs
        txn = backend.txn_producer(f"tx-{uuid.uuid4().hex[:8]}")
        sent = [
            ledger.mark(0, "requests", 7, txn),
            ledger.write_stamped(entry("p0-1", (1,)), 7, txn),
        ]
        txn.commit_transaction(sent, {0: start}, a)
        live = ledger.load(0)
        assert sorted(live) == ["p0-0", "p0-1"]
        assert (live["p0-0"].epoch, live["p0-1"].epoch) == (0, 7)
        assert (ledger.marked(0, "requests"), ledger.marked(0, "other")) == (7, 0)
        b = backend.consumer(topic, group)
        poll_until(b, lambda got: len(got) > 0)
        with pytest.raises(Fenced):
            txn.commit_transaction([ledger.mark(0, "requests", 9, txn)], {0: start}, a)
        ledger.load(0)
        assert ledger.marked(0, "requests") == 7
        b.close()
        a.close()


def entry(
    job_id: str, offsets: tuple[int, ...], state: EntryState = EntryState.INTENT
) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=offsets,
        attempt=1,
        display_name=f"g:{job_id}",
        state=state,
        use_file=False,
        est_tokens=10,
        created_ms=1,
        updated_ms=1,
    )


# -- the doubles -----------------------------------------------------------------------------


class _Doubles(Backend):
    def __init__(self) -> None:
        self.kafka = MemoryKafka()
        self.groups: dict[str, MemoryCluster] = {}
        self.cluster = MemoryCluster(self.kafka, "")
        self._n = 0

    def topic(self, partitions: int = 1, compact: bool = False) -> str:
        self._n += 1
        name = f"t{self._n}"
        self.kafka.create_topic(name, partitions)
        return name

    def consumer(self, topic: str, group: str) -> ConsumerPort:
        # A cluster per group (each double models one group); the transactional ids and
        # the log are shared, as on one broker.
        key = f"{topic}/{group}"
        if key not in self.groups:
            cluster = MemoryCluster(self.kafka, topic)
            cluster.epochs = self.cluster.epochs
            self.groups[key] = cluster
            self.cluster.group = cluster.group  # transactions are fenced by this group
        return GroupConsumer(self.groups[key], topic)

    def producer(self) -> Any:
        return ClusterProducer(self.cluster)

    def txn_producer(self, transactional_id: str) -> Any:
        return ClusterProducer(self.cluster, transactional_id)

    def read_committed(self, topic: str, partition: int = 0) -> list[Record]:
        return self.kafka.records(topic, partition)

    def ledger(self, topic: str, producer: Any) -> Any:
        return MemoryLedger(self.kafka, topic, producer, Codec())


class TestDoubles(KafkaContract):
    @pytest.fixture
    def backend(self) -> Backend:
        return _Doubles()


# -- the real broker -------------------------------------------------------------------------


class _Real(Backend):
    """The real adapters of one Kafka client (`adapters.clients.backend`): kafka-python's,
    or librdkafka's through confluent-kafka, on the real broker."""

    def __init__(
        self, bootstrap: str, topic_factory: Callable[..., str], client: str = KAFKA_PYTHON
    ) -> None:
        self.bootstrap, self.topic_factory = bootstrap, topic_factory
        self.client = clients.backend(client)
        self.closers: list[Callable[[], None]] = []

    def topic(self, partitions: int = 1, compact: bool = False) -> str:
        return self.topic_factory(partitions=partitions, compact=compact)

    def consumer(self, topic: str, group: str) -> ConsumerPort:
        extra = CONSUMER_EXTRA
        if self.client.name == CONFLUENT_KAFKA:  # librdkafka: max.poll >= session timeout
            extra = {**extra, "max_poll_interval_ms": extra["session_timeout_ms"]}
        c = self.client.request_consumer(topic, group, self.bootstrap, extra, max_records=100)
        self.closers.append(c.close)
        return cast(ConsumerPort, c)

    def producer(self) -> Any:
        p = self.client.producer(self.bootstrap, {})
        self.closers.append(p.close)
        return p

    def txn_producer(self, transactional_id: str) -> Any:
        p = self.client.transactional_producer(self.bootstrap, {}, transactional_id, timeout_s=20.0)
        self.closers.append(p.close)
        return p

    def read_committed(self, topic: str, partition: int = 0) -> list[Record]:
        records: list[Record] = self.client.read_partition(
            topic, partition, self.bootstrap, {}, committed=True
        )
        return records

    def ledger(self, topic: str, producer: Any) -> Any:
        return Ledger(topic, Codec(), producer, self.bootstrap, {}, read=self.client.read_partition)

    def close(self) -> None:
        for close in reversed(self.closers):
            # Closing after a fenced producer may complain; there is nothing left to keep.
            with contextlib.suppress(Exception):
                close()


@pytest.mark.kafka
@pytest.mark.slow
class TestRealBroker(KafkaContract):
    @pytest.fixture
    def backend(self, kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Iterator[Backend]:
        real = _Real(kafka_bootstrap, topic_factory)
        yield real
        real.close()


@pytest.mark.kafka
@pytest.mark.slow
class TestRealBrokerConfluent(KafkaContract):
    """The same cases on the librdkafka adapters (`CONNECTOR_KAFKA_CLIENT=confluent-kafka`):
    both clients' adapters answer the sidecar's ports the way the doubles do."""

    @pytest.fixture
    def backend(self, kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Iterator[Backend]:
        pytest.importorskip("confluent_kafka")
        real = _Real(kafka_bootstrap, topic_factory, CONFLUENT_KAFKA)
        yield real
        real.close()
