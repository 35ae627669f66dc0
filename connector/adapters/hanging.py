"""Find and abort hanging transactions on a ledger partition (KIP-664), with kafka-python's
admin client whichever Kafka client the sidecar runs on (librdkafka has no
DescribeProducers; kafka-python is always installed).

The rule is `core.hanging.hanging`; this shell asks the partition's leader for its open
transactions (DescribeProducers), their coordinators for what they still run
(ListTransactions, DescribeTransactions) and the leader to write the abort markers
(WriteTxnMarkers, which needs Alter on the topic or ClusterAction).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin._transactions import AbortTransactionSpec
from kafka.errors import KafkaError, TransactionalIdNotFoundError

from connector.adapters.kafka import client_config
from connector.core.hanging import CoordinatorView, OpenTransaction, hanging
from connector.errors import BrokerUnavailable

log = structlog.get_logger(__name__)


class HangingTransactions:
    """Aborts the hanging transactions of one partition on demand (`abort`)."""

    def __init__(
        self,
        bootstrap: str,
        extra: Mapping[str, Any],
        older_than_s: float,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._bootstrap = bootstrap
        self._extra = extra
        self._older_than_ms = int(older_than_s * 1000)
        self._wall_ms = wall_ms

    def abort(self, topic: str, partition: int) -> list[OpenTransaction]:
        """Abort the hanging transactions of `topic`[`partition`]; return them (none: the
        open transaction is young, or still its coordinator's to end)."""
        if self._older_than_ms <= 0:
            return []
        admin = KafkaAdminClient(**client_config(KafkaAdminClient, self._bootstrap, self._extra))
        try:
            return self._abort(admin, topic, partition)
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"looking for hanging transactions on {topic}[{partition}] failed: {exc!r}"
            ) from exc
        finally:
            admin.close()

    def _abort(self, admin: Any, topic: str, partition: int) -> list[OpenTransaction]:
        tp = TopicPartition(topic, partition)
        now_ms = self._wall_ms()
        opened = [
            OpenTransaction(
                p.producer_id,
                p.producer_epoch,
                p.coordinator_epoch,
                p.last_timestamp,
                p.current_transaction_start_offset,
            )
            for p in admin.describe_producers([tp])[tp].active_producers
            if p.current_transaction_start_offset >= 0
        ]
        old = [t for t in opened if now_ms - t.last_timestamp_ms > self._older_than_ms]
        if not old:
            return []
        listed = admin.list_transactions(producer_id_filters=[t.producer_id for t in old])
        ids = {row.producer_id: row.transactional_id for rows in listed.values() for row in rows}
        coordinator: dict[int, CoordinatorView | None] = {}
        for t in old:
            tid = ids.get(t.producer_id)
            coordinator[t.producer_id] = None if tid is None else _describe(admin, tid)
        gone = hanging(old, coordinator, topic, partition, now_ms, self._older_than_ms)
        for t in gone:
            admin.abort_transaction(
                AbortTransactionSpec(tp, t.producer_id, t.producer_epoch, t.coordinator_epoch)
            )
            log.error(
                "aborted a hanging transaction: its coordinator no longer ends it and it held "
                "the ledger partition's last stable offset (KIP-664); its writes are dropped",
                topic=topic,
                partition=partition,
                producer_id=t.producer_id,
                producer_epoch=t.producer_epoch,
                first_offset=t.start_offset,
                idle_s=round((now_ms - t.last_timestamp_ms) / 1000),
            )
        return gone


def _describe(admin: Any, transactional_id: str) -> CoordinatorView | None:
    try:
        d = admin.describe_transactions([transactional_id])[transactional_id]
    except TransactionalIdNotFoundError:
        return None
    return CoordinatorView(
        d.state.value,
        d.producer_id,
        d.producer_epoch,
        frozenset((p.topic, p.partition) for p in d.topic_partitions),
    )
