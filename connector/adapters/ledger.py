"""The job ledger: a compacted topic, partition p holding the jobs of request partition p.

A live entry is the latest value under a job id; a tombstone ends the job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connector.adapters.kafka import read_partition
from connector.core.codec import Codec
from connector.core.ports import ProducerPort, SendHandle
from connector.core.records import LedgerEntry, Record
from connector.errors import DecodeError, LedgerError


class Ledger:
    """Reads a partition's live entries and writes entries and tombstones."""

    def __init__(
        self,
        topic: str,
        codec: Codec,
        producer: ProducerPort,
        bootstrap: str,
        kafka_extra: Mapping[str, Any],
        read: Callable[..., list[Record]] = read_partition,
    ) -> None:
        self._read = read
        """The Kafka client's group-less reader (`adapters.clients.Backend.read_partition`)."""
        self.topic = topic
        self._codec = codec
        self._producer = producer
        self._bootstrap = bootstrap
        self._extra = kafka_extra

    def load(self, partition: int) -> dict[str, LedgerEntry]:
        """Replay partition p from the beginning to its end: the live jobs of p."""
        live: dict[str, LedgerEntry] = {}
        records = self._read(self.topic, partition, self._bootstrap, self._extra, committed=True)
        for rec in records:
            if rec.key is None:
                continue
            job_id = rec.key.decode()
            if rec.value is None:
                live.pop(job_id, None)
                continue
            try:
                live[job_id] = self._codec.decode_ledger(rec.value)
            except DecodeError as exc:
                # A ledger we cannot read would silently lose jobs: refuse instead.
                raise LedgerError(
                    f"unreadable ledger entry {job_id!r} at "
                    f"{self.topic}[{partition}]@{rec.offset}: {exc}"
                ) from exc
        return live

    def write(self, entry: LedgerEntry, producer: ProducerPort | None = None) -> SendHandle:
        return (producer or self._producer).send(
            self.topic,
            self._codec.encode_ledger(entry),
            key=entry.job_id.encode(),
            partition=entry.key.partition,
        )

    def tombstone(self, entry: LedgerEntry, producer: ProducerPort | None = None) -> SendHandle:
        return (producer or self._producer).send(
            self.topic, None, key=entry.job_id.encode(), partition=entry.key.partition
        )

    def claim(self, entry: LedgerEntry, producer: ProducerPort, by: str) -> SendHandle:
        """The INTENT again, through `producer` (in its transaction), headed `claimed_by`."""
        return producer.send(
            self.topic,
            self._codec.encode_ledger(entry),
            key=entry.job_id.encode(),
            headers=[(CLAIM_HEADER, by.encode())],
            partition=entry.key.partition,
        )


CLAIM_HEADER = "connector.claimed_by"
"""Header of a claim record: the transactional.id of the replica that proved ownership."""
