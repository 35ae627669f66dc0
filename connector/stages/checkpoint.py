"""One pass's sends and the offsets they make durable, committed in the only safe order.

Modelled on Quix Streams' `Checkpoint`: the loop collects what it sent (ledger INTENTs,
dead letters, error results) and which request offsets those sends resolve; `commit` then
flushes and checks every ack, only then lets the watermarks pass those offsets, and only
then commits the consumer. A crash anywhere before the commit re-reads; nothing unacked
is ever committed.
"""

from __future__ import annotations

import structlog

from connector.core.partitions import Partitions
from connector.core.ports import (
    ConsumerPort,
    FlushPort,
    SendHandle,
    TransactionalProducerPort,
)
from connector.errors import CommitFailed
from connector.stages.sink import Sink

log = structlog.get_logger("connector")


class Checkpoint:
    """Sends to ack and the offsets that become durable once they are acked."""

    __slots__ = ("resolved", "sends")

    def __init__(self) -> None:
        self.sends: list[SendHandle] = []
        self.resolved: dict[int, list[int]] = {}

    def send(self, handle: SendHandle) -> None:
        self.sends.append(handle)

    def resolve(self, partition: int, offset: int) -> None:
        self.resolved.setdefault(partition, []).append(offset)

    def resolve_all(self, partition: int, offsets: tuple[int, ...] | list[int]) -> None:
        self.resolved.setdefault(partition, []).extend(offsets)

    @property
    def empty(self) -> bool:
        return not self.sends and not self.resolved

    def commit(
        self,
        producer: FlushPort,
        consumer: ConsumerPort,
        owned: Partitions,
        txn: TransactionalProducerPort | None = None,
    ) -> dict[int, int]:
        """Flush → advance watermarks → commit; return the offsets committed per partition.

        A failed commit (a rebalance in progress) is logged and left to the next pass: the
        watermarks already passed those offsets, so the next commit covers them.

        With `txn` (exactly-once) the sends and the offsets are one transaction: a refusal
        (`Fenced`) aborts both and propagates, and the caller must drop the partitions, as
        their watermarks passed offsets whose records were just aborted.
        """
        if txn is not None:
            return self._commit_transaction(txn, consumer, owned, producer)
        producer.flush_and_check(self.sends)
        for p, offsets in self.resolved.items():
            st = owned.get(p)
            if st is not None and st.watermark is not None:
                st.watermark.resolved(offsets)
        commits = {
            p: c
            for p, st in owned.items()
            if st.watermark is not None and (c := st.watermark.committable()) > st.committed
        }
        self.sends, self.resolved = [], {}
        if not commits:
            return {}
        try:
            consumer.commit(commits)
        except CommitFailed as exc:  # a rebalance in progress: the next pass commits again
            log.warning("commit failed; will retry", error=str(exc))
            return {}
        for p, c in commits.items():
            if p in owned:
                owned[p].committed = c
        return commits

    def _commit_transaction(
        self,
        txn: TransactionalProducerPort,
        consumer: ConsumerPort,
        owned: Partitions,
        producer: FlushPort,
    ) -> dict[int, int]:
        sends, self.sends = self.sends, []
        # Every partition this transaction touches is fenced, also one whose watermark did
        # not move (a dead letter behind an open batch): a zombie must not commit anything.
        fence = {
            p: st.committed for p in self.resolved if (st := owned.get(p)) and st.committed >= 0
        }
        for p, offsets in self.resolved.items():
            st = owned.get(p)
            if st is not None and st.watermark is not None:
                st.watermark.resolved(offsets)
        self.resolved = {}
        commits = {
            p: c
            for p, st in owned.items()
            if st.watermark is not None and (c := st.watermark.committable()) > st.committed
        }
        fenced = {**fence, **commits}
        if isinstance(producer, Sink):  # a record refused as too large: its fallback instead
            producer.commit_transaction(txn, sends, fenced, consumer)
        else:
            txn.commit_transaction(sends, fenced, consumer)
        for p, c in commits.items():
            owned[p].committed = c
        return commits
