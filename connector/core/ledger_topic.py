"""How the ledger topic must look, and how big one of its entries may be (pure).

The shell (`adapters.kafka.Admin`) describes the cluster and the topics; these functions
decide: the replication a new ledger gets, whether an existing one is grown, refused or
warned about, and the byte budget the batcher keeps every ledger entry under.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ENTRY_RANGE_BYTES",
    "LedgerCheck",
    "check_ledger",
    "entry_budget",
    "ledger_replication",
]

ENTRY_RANGE_BYTES = 20
"""Upper bound of one offset range in an encoded entry: two Avro longs, 10 bytes each."""
_ENTRY_FIXED_BYTES = 1536
"""Upper bound of everything else in an entry and its Kafka record: job id (also the key),
display name (at most 128), provider job and file names, timestamps, record and batch
headers. The request topic's name and the batch key's strings are added separately."""


def ledger_replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a new ledger on `brokers` brokers.

    The ledger is the only durable record of a running job: losing it loses requests and
    pays for jobs twice, so it gets three replicas where the cluster has them, and acks=all
    writes need two in sync (never more than the replicas there are).
    """
    rf = max(1, min(3, brokers))
    return rf, min(2, rf)


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    grow_to: int | None = None
    """Add partitions up to this count (the request topic grew)."""
    error: str | None = None
    """Refuse to start: this ledger cannot serve the request topic."""
    warnings: tuple[str, ...] = ()


def check_ledger(
    topic: str, partitions: int, wanted: int, replication: int, brokers: int, cleanup: str
) -> LedgerCheck:
    """Check an existing ledger against the request topic's `wanted` partitions.

    Fewer partitions: grow it (partition p of the ledger holds the jobs of request
    partition p, so new request partitions need new ledger partitions). More: refuse, the
    request topic was recreated and the ledger names offsets of a topic that is gone.
    Not compacted: refuse. One replica on a multi-broker cluster: warn.
    """
    if "compact" not in cleanup:
        return LedgerCheck(
            error=f"ledger topic {topic!r} must have cleanup.policy=compact, has {cleanup!r}"
        )
    if partitions > wanted:
        return LedgerCheck(
            error=f"ledger topic {topic!r} has {partitions} partitions but the request topic has "
            f"{wanted}; a ledger never has more (was the request topic recreated?)"
        )
    warnings: list[str] = []
    if replication == 1 and brokers > 1:
        warnings.append(
            f"ledger topic {topic!r} has a single replica on a {brokers}-broker cluster: losing "
            f"that broker loses running jobs; raise its replication factor to "
            f"{ledger_replication(brokers)[0]}"
        )
    return LedgerCheck(grow_to=wanted if partitions < wanted else None, warnings=tuple(warnings))


def entry_budget(max_message_bytes: int, request_topic: str) -> int:
    """Bytes the batcher may give a ledger entry's key strings and offset ranges.

    `max_message_bytes` is the smaller of the ledger topic's `max.message.bytes` and the
    producer's `max_request_size`; the fixed part of an entry and the topic name come off.
    The batcher adds `ENTRY_RANGE_BYTES` per offset range and the key's model and group.
    """
    return max(0, max_message_bytes - _ENTRY_FIXED_BYTES - len(request_topic.encode()))
