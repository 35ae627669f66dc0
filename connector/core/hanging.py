"""Which open transactions on a ledger partition are hanging, and may be aborted (pure).

A read_committed reader stops at a partition's last stable offset, which an open
transaction holds back. The transaction's coordinator ends it with markers, at commit,
abort or its timeout at the latest. A hanging transaction is one whose markers never came
(seen: a broker restart in the short chaos run skipped them, "Couldn't find leader
endpoint ... skipped"); its coordinator has moved on and nothing will ever end it, so the
ledger partition cannot be loaded and its request partition is never served. KIP-664's
remedy is an administrative abort (`kafka-transactions.sh find-hanging` / `abort`); this is
its rule, the same as the Java tool's: open on the partition for longer than any
transaction may last, and not a transaction its coordinator is still running there.

Aborting one that its coordinator had committed drops its writes atomically, as if it had
never been: every ledger write of the sidecar is safe to lose that way (a claim's INTENT is
looked up by display name before any create; a delivery's cursor and results go together;
a tombstone only comes back as a DONE entry that covers offsets).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["CoordinatorView", "OpenTransaction", "hanging"]


@dataclass(frozen=True, slots=True)
class OpenTransaction:
    """A producer with a transaction open on one partition (DescribeProducers)."""

    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    last_timestamp_ms: int
    """The timestamp of the producer's last record on the partition."""
    start_offset: int
    """The first offset of the open transaction."""


@dataclass(frozen=True, slots=True)
class CoordinatorView:
    """What the transaction coordinator says of the producer's transactional id."""

    state: str
    """Kafka's state name: Empty, Ongoing, PrepareCommit, CompleteCommit, ..."""
    producer_id: int
    producer_epoch: int
    partitions: frozenset[tuple[str, int]]


RUNNING = frozenset({"Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence"})
"""States in which the coordinator still ends the transaction by itself."""


def hanging(
    open_txns: Iterable[OpenTransaction],
    coordinator: Mapping[int, CoordinatorView | None],
    topic: str,
    partition: int,
    now_ms: int,
    older_than_ms: int,
) -> list[OpenTransaction]:
    """The transactions of `open_txns` (open on `topic`[`partition`]) to abort.

    - open for longer than `older_than_ms` (set above the brokers'
      `transaction.max.timeout.ms`: no live transaction lasts that long, its coordinator
      aborts it first), counted from the producer's last record, the latest sign of life;
    - and its coordinator (`coordinator`, by producer id; None: no transactional id has it)
      is not running a transaction of that producer and epoch over this partition.

    A producer missing from `coordinator` altogether (the lookup failed) is left alone:
    the rule cannot be checked, and an abort cannot be taken back.
    """
    out = []
    for t in open_txns:
        if t.start_offset < 0 or now_ms - t.last_timestamp_ms <= older_than_ms:
            continue
        if t.producer_id not in coordinator:
            continue
        view = coordinator[t.producer_id]
        if (
            view is not None
            and view.state in RUNNING
            and view.producer_id == t.producer_id
            and view.producer_epoch == t.producer_epoch
            and (topic, partition) in view.partitions
        ):
            continue
        out.append(t)
    return out
