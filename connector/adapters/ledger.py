"""The job ledger: a compacted topic, partition p holding the jobs of request partition p.

A live entry is the latest value under a job id; a tombstone ends the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from connector.adapters.kafka import read_partition
from connector.core.codec import Codec
from connector.core.ports import ProducerPort, SendHandle
from connector.core.records import Headers, LedgerEntry, Record
from connector.errors import DecodeError, LedgerError, OpenTransaction


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
        hanging: Callable[[str, int], list[Any]] | None = None,
    ) -> None:
        self._read = read
        self._hanging = hanging
        """Aborts a partition's hanging transactions, returns them (`adapters.hanging`)."""
        """The Kafka client's group-less reader (`adapters.clients.Backend.read_partition`)."""
        self.topic = topic
        self._codec = codec
        self._producer = producer
        self._bootstrap = bootstrap
        self._extra = kafka_extra
        self._marked: dict[int, dict[str, int]] = {}

    def load(self, partition: int) -> dict[str, LedgerEntry]:
        """Replay partition p from the beginning to its end: the live jobs of p (each with
        the epoch of the record that wrote it), and the partition's take-over markers."""
        try:
            records = self._read_committed(partition)
        except OpenTransaction:
            # Waited in vain: if the transaction is hanging (its markers will never come),
            # abort it and read again; if not, the next load waits again.
            if self._hanging is None or not self._hanging(self.topic, partition):
                raise
            records = self._read_committed(partition)
        where = f"{self.topic}[{partition}]"
        live, self._marked[partition] = replay(records, self._codec, where)
        return live

    def _read_committed(self, partition: int) -> list[Record]:
        return self._read(self.topic, partition, self._bootstrap, self._extra, committed=True)

    def marked(self, partition: int, request_topic: str) -> int:
        """The highest take-over epoch of `request_topic` the last load of p saw (0: none)."""
        return self._marked.get(partition, {}).get(request_topic, 0)

    def mark(
        self, partition: int, request_topic: str, epoch: int, producer: ProducerPort
    ) -> SendHandle:
        """The take-over marker: a tombstone (older versions skip it as an unknown job's)
        under a reserved key, headed with the epoch, sent through `producer` (fenced)."""
        return producer.send(
            self.topic,
            None,
            key=marker_key(request_topic),
            headers=stamp_headers(epoch),
            partition=partition,
        )

    def write(self, entry: LedgerEntry, producer: ProducerPort | None = None) -> SendHandle:
        return self.write_stamped(entry, 0, producer)

    def write_stamped(
        self, entry: LedgerEntry, epoch: int, producer: ProducerPort | None = None
    ) -> SendHandle:
        """The entry headed with a take-over `epoch` (none when 0): a sealed INTENT, or one
        re-stamped at a take-over (`stages.epochs`)."""
        return (producer or self._producer).send(
            self.topic,
            self._codec.encode_ledger(entry),
            key=entry.job_id.encode(),
            headers=stamp_headers(epoch),
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

EPOCH_HEADER = "connector.epoch"
"""Header of a sealed INTENT, an INTENT re-stamped at a take-over and a take-over marker: the
take-over's epoch (`core.recovery.next_epoch`), so recovery tells a stale replica's late
INTENT from one an owner loaded (`core.recovery.landed_late`). Every other write (claims,
SUBMITTED, successors, remnants) goes without: it may rewrite a key an owner knows (a
zombie's successor overwriting the owner's entry, sim seed 1118), and epoch 0 is never
judged late."""

MARKER_PREFIX = "~epoch:"
"""Key prefix of take-over markers (then the request topic); no job id starts with `~`."""


def marker_key(request_topic: str) -> bytes:
    return (MARKER_PREFIX + request_topic).encode()


def epoch_of(headers: Headers) -> int:
    """The epoch header's value (the last one wins); 0 when absent or unreadable."""
    for k, v in reversed(headers):
        if k == EPOCH_HEADER:
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


def replay(
    records: Iterable[Record], codec: Codec, where: str
) -> tuple[dict[str, LedgerEntry], dict[str, int]]:
    """Fold a ledger partition's records into its live entries (each with the epoch of the
    record that wrote it) and the highest marker epoch per request topic."""
    live: dict[str, LedgerEntry] = {}
    marked: dict[str, int] = {}
    for rec in records:
        if rec.key is None:
            continue
        job_id = rec.key.decode()
        if job_id.startswith(MARKER_PREFIX):
            topic = job_id[len(MARKER_PREFIX) :]
            marked[topic] = max(marked.get(topic, 0), epoch_of(rec.headers))
            continue
        if rec.value is None:
            live.pop(job_id, None)
            continue
        try:
            entry = codec.decode_ledger(rec.value)
        except DecodeError as exc:
            # A ledger we cannot read would silently lose jobs: refuse instead.
            raise LedgerError(
                f"unreadable ledger entry {job_id!r} at {where}@{rec.offset}: {exc}"
            ) from exc
        epoch = epoch_of(rec.headers)
        live[job_id] = replace(entry, epoch=epoch) if epoch else entry
    return live, marked


def stamp_headers(epoch: int) -> list[tuple[str, bytes]]:
    return [(EPOCH_HEADER, str(epoch).encode())] if epoch else []
