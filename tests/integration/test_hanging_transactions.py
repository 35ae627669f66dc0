"""A hanging transaction on a ledger partition, on the real broker (short chaos run on
ed18bb0: a broker restart skipped a transaction's markers, the ledger partition's last
stable offset stayed put, and the partitions whose ledgers could not be loaded were never
served). The ledger load aborts a hanging transaction (KIP-664) and reads on; it leaves a
young one, or one its coordinator still runs, alone.

A hanging transaction is made the way the classic bug made them: a transactional producer
writes to a partition it never added to its transaction, so its coordinator never ends the
transaction there. The broker's KIP-890 check refuses that, so it is turned off on the
broker for the write (`transaction.partition.verification.enable`, dynamic per broker).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from waiting import wait_until

from connector.adapters.clients import CLIENTS, Backend, backend
from connector.adapters.hanging import HangingTransactions
from connector.adapters.ledger import Ledger
from connector.core.codec import Codec
from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry
from connector.errors import OpenTransaction

TopicFactory = Callable[..., str]
VERIFY = "transaction.partition.verification.enable"
HOUR_MS = 3_600_000


@pytest.fixture(params=CLIENTS)
def kc(request: pytest.FixtureRequest) -> Backend:
    if request.param == "confluent-kafka":
        pytest.importorskip("confluent_kafka")
    return backend(request.param)


def entry(job_id: str, offset: int) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=(offset,),
        attempt=0,
        display_name=f"test:{job_id}",
        state=EntryState.INTENT,
        use_file=False,
        est_tokens=1,
        created_ms=1,
        updated_ms=1,
    )


def _verification(admin: KafkaAdminClient, on: bool) -> None:
    broker = str(admin.describe_cluster()["brokers"][0]["broker_id"])
    value = "true" if on else "false"
    res = ConfigResource(ConfigResourceType.BROKER, broker, configs={VERIFY: value})
    admin.alter_configs([res], incremental=True)


def _hang(bootstrap: str, admin: KafkaAdminClient, topic: str, value: bytes) -> None:
    """Leave a transaction open on `topic`[0] that its coordinator knows nothing of."""
    _verification(admin, on=False)
    try:
        p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"hang-{uuid.uuid4()}")
        try:
            p.init_transactions()
            p.begin_transaction()
            tm = p._transaction_manager

            def skip_add(tp: Any) -> None:  # the partition never reaches the coordinator
                with tm._lock:
                    tm._partitions_in_transaction.add(tp)

            tm.maybe_add_partition_to_transaction = skip_add
            p.send(topic, value, key=b"p0-hanging", partition=0).get(timeout=30)
        finally:
            p.close(timeout=0)  # no commit, no abort: the open transaction stays
    finally:
        _verification(admin, on=True)


def _open_transactions(admin: KafkaAdminClient, topic: str) -> list[Any]:
    tp = TopicPartition(topic, 0)
    producers = admin.describe_producers([tp])[tp].active_producers
    return [p for p in producers if p.current_transaction_start_offset >= 0]


def _settles_at(admin: KafkaAdminClient, topic: str, n: int, timeout_s: float = 30.0) -> None:
    """Wait until `n` transactions are open on `topic`[0]: a commit's markers are written
    by its coordinator after `commit_transaction` returns."""
    wait_until(
        lambda: len(_open_transactions(admin, topic)) == n,
        timeout=timeout_s,
        message=lambda: f"{n} open transactions (now {len(_open_transactions(admin, topic))})",
    )


@pytest.fixture
def hung_ledger(kafka_bootstrap: str, admin: KafkaAdminClient, topic_factory: TopicFactory) -> str:
    """A ledger topic whose partition 0 holds a hanging transaction, then a committed entry
    (a read_committed reader sees neither until the hanging one ends)."""
    topic = topic_factory(compact=True)
    codec = Codec()
    _hang(kafka_bootstrap, admin, topic, codec.encode_ledger(entry("p0-0-hanging", 0)))
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"ok-{uuid.uuid4()}")
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, codec.encode_ledger(entry("p0-1-kept", 1)), key=b"p0-1-kept", partition=0)
        p.commit_transaction()
    finally:
        p.close()
    _settles_at(admin, topic, 1)
    return topic


def _ledger(kc: Backend, bootstrap: str, topic: str, hanging: Any) -> Ledger:
    from connector.adapters.kafka import Producer

    read = functools.partial(kc.read_partition, timeout_s=3.0)
    return Ledger(topic, Codec(), Producer(bootstrap, {}), bootstrap, {}, read, hanging)


def test_a_hanging_transaction_is_aborted_and_the_ledger_loads(
    kc: Backend, kafka_bootstrap: str, admin: KafkaAdminClient, hung_ledger: str
) -> None:
    later = HangingTransactions(
        kafka_bootstrap, {}, older_than_s=60, wall_ms=lambda: int(time.time() * 1000) + HOUR_MS
    )
    ledger = _ledger(kc, kafka_bootstrap, hung_ledger, later.abort)
    assert sorted(ledger.load(0)) == ["p0-1-kept"]  # the hanging write is dropped
    assert _open_transactions(admin, hung_ledger) == []


def test_a_young_open_transaction_is_left_to_its_coordinator(
    kc: Backend, kafka_bootstrap: str, admin: KafkaAdminClient, hung_ledger: str
) -> None:
    """Open for less than the threshold: it may be a live transaction, never aborted, and
    the load waits for it rather than end short of the entry committed after it (the
    librdkafka reader did: a read_committed consumer's watermark query answers the last
    stable offset, so it read nothing and said nothing)."""
    now = HangingTransactions(kafka_bootstrap, {}, older_than_s=3_600)
    ledger = _ledger(kc, kafka_bootstrap, hung_ledger, now.abort)
    with pytest.raises(OpenTransaction):
        ledger.load(0)
    assert len(_open_transactions(admin, hung_ledger)) == 1
    never = HangingTransactions(kafka_bootstrap, {}, older_than_s=0)  # 0: never abort
    assert never.abort(hung_ledger, 0) == []
    assert len(_open_transactions(admin, hung_ledger)) == 1


def test_a_running_transaction_is_never_aborted_however_old_it_looks(
    kafka_bootstrap: str, admin: KafkaAdminClient, topic_factory: TopicFactory
) -> None:
    """Its coordinator runs it over this partition: it ends it itself (commit, abort or
    timeout), so even a clock that says it is an hour old aborts nothing."""
    topic = topic_factory(compact=True)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"live-{uuid.uuid4()}")
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"v", key=b"k", partition=0).get(timeout=30)
        later = HangingTransactions(
            kafka_bootstrap, {}, older_than_s=60, wall_ms=lambda: int(time.time() * 1000) + HOUR_MS
        )
        assert later.abort(topic, 0) == []
        assert len(_open_transactions(admin, topic)) == 1
        p.commit_transaction()
    finally:
        p.close()
    _settles_at(admin, topic, 0)
