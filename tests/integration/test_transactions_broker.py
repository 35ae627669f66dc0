"""Exactly-once units of work against the real broker (issue 16, findings 5 and 6): what a
failed unit sent is aborted, never committed by the next unit, and a record the broker
refuses as too large inside a transaction is answered by its fallback, not retried forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import orjson

from connector.adapters.kafka import TransactionalProducer, read_partition
from connector.config import Settings
from connector.core.codec import Codec
from connector.core.partitions import Stats
from connector.core.records import Kind, ResultEvent, ResultStatus
from connector.stages.sink import Limits, Sink

TopicFactory = Callable[..., str]


def _producer(bootstrap: str) -> TransactionalProducer:
    return TransactionalProducer(bootstrap, {}, f"txn-{uuid.uuid4().hex[:8]}")


def test_a_failed_units_sends_are_aborted_before_the_next_unit(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """A5: a unit sent a record, then failed before its commit; the next unit begins, sends
    and commits: a read_committed reader sees only the second unit's record."""
    topic = topic_factory()
    p = _producer(kafka_bootstrap)
    try:
        p.begin_transaction()
        p.send(topic, b"stray")  # the unit fails here: no commit
        p.begin_transaction()
        kept = p.send(topic, b"kept")
        p.commit_transaction([kept], {}, consumer=None)
    finally:
        p.close()
    got = read_partition(topic, 0, kafka_bootstrap, {}, committed=True)
    assert [r.value for r in got] == [b"kept"]


def test_a_result_the_broker_refuses_as_too_large_in_a_transaction_is_replaced(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """A6: the results topic takes less than the sidecar believes (its limit changed after
    start): the broker refuses the result inside the transaction, which aborts; the unit is
    sent again with a 413 error result in its place, and the rest of it exactly once."""
    results = topic_factory(configs={"max.message.bytes": "4000"})
    ledger = topic_factory()
    codec = Codec()
    settings = Settings(gemini_base_url="http://emulator.invalid", result_topic=results)
    p = _producer(kafka_bootstrap)
    sink = Sink(settings, p, codec, Stats(), limits=Limits(result_bytes=1_000_000))
    big = ResultEvent(
        "big-1",
        ResultStatus.OK,
        "gemini-2.5-flash",
        Kind.GENERATE,
        response_json=orjson.dumps({"text": "x" * 20_000}).decode(),
    )
    try:
        sent = [sink.result(b"big-1", big), p.send(ledger, b"entry", key=b"job")]
        sink.commit_transaction(p, sent, {}, consumer=None)  # type: ignore[arg-type]
    finally:
        p.close()
    got = [
        codec.decode_result(r.value or b"")
        for r in read_partition(results, 0, kafka_bootstrap, {}, committed=True)
    ]
    assert [(r.request_id, r.status) for r in got] == [("big-1", ResultStatus.ERROR)]
    assert got[0].error is not None
    assert got[0].error.code == 413
    entries = read_partition(ledger, 0, kafka_bootstrap, {}, committed=True)
    assert [r.value for r in entries] == [b"entry"]
