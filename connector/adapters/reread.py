"""Re-read requests from the request topic by offset.

The ledger holds offsets, not payloads, so a job's requests are read back when it is
(re)submitted after a restart and when its results are produced.

One group-less consumer per request partition is kept open between reads (assigned to that
partition only) and closed when the partition is no longer owned or has been idle for a
while. A read goes through the wanted offsets' spans (`core.spans.read_spans`) in order:
inside a span, other jobs' records are read and dropped (interleaved batch keys cost one
sequential read, not a seek per offset); between spans, long runs of them are sought past.
A span that starts just past where the last one ended (a delivery's next chunk) is read on
without a seek, and the partition's end is asked only for a span past the end last seen:
no offset look-ups per chunk. A read fails only when it makes no progress for
`stall_timeout_s`, however big the span.
"""

from __future__ import annotations

import time
from collections.abc import (
    Callable,
    Collection,
    Container,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from connector.adapters.kafka import _record, client_config
from connector.core.records import Record, RequestEvent
from connector.core.results import Original
from connector.core.spans import SPAN_GAP, read_spans
from connector.errors import BrokerUnavailable, RegistryUnavailable

log = structlog.get_logger(__name__)

STALL_TIMEOUT_S = 60.0
"""A read fails when its position has not moved for this long (not for its whole length)."""
IDLE_CLOSE_S = 300.0
"""A partition's reader unused for this long is closed; the next read opens a new one."""
FETCH_BYTES = 256 * 1024
"""Per-fetch cap (max_partition_fetch_bytes) unless CONNECTOR_KAFKA_* sets one: what a sparse
read over-fetches past each range is at most about this much."""


class PartitionReader:
    """A kept-open, group-less consumer assigned to one request partition."""

    def __init__(
        self,
        topic: str,
        partition: int,
        bootstrap: str,
        extra: Mapping[str, Any],
        stall_timeout_s: float = STALL_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = client_config(KafkaConsumer, bootstrap, extra, "reread")
        cfg.setdefault("max_partition_fetch_bytes", FETCH_BYTES)
        # earliest: an offset that retention deleted meanwhile resumes at the log start (what
        # is gone is absent from the read), never at the end; so no look-up of the start.
        cfg["auto_offset_reset"] = "earliest"
        self._consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **cfg)
        self._tp = TopicPartition(topic, partition)
        self._consumer.assign([self._tp])
        self._stall = stall_timeout_s
        self._clock = clock
        self.last_used = clock()
        self.fetched = 0
        """Records the consumer returned, wanted or not (for tests and the bench)."""
        self.seeks = 0
        """Seeks made (for tests and the bench): one per span not read on from the last."""
        self._end = -1
        """The partition's end offset as last asked (asked again for a span past it)."""
        self._next = -1
        """Where the consumer goes on, when the last span was read to its end and nothing
        past it was taken (-1: unknown). A span starting at most `SPAN_GAP` past it is read
        on from there, without a seek, keeping what is prefetched."""

    def continues(self, start: int) -> bool:
        """Whether a span from `start` is read on from where the last one ended (no seek)."""
        return 0 <= self._next <= start <= self._next + SPAN_GAP

    def records(
        self, spans: Iterable[tuple[int, int]], keep: Container[int] | None = None
    ) -> Iterator[Record]:
        """The records of each half-open `[start, stop)` span still retained, in order; with
        `keep`, only those at its offsets (the others are dropped unconverted)."""
        tp, consumer = self._tp, self._consumer
        self.last_used = self._clock()
        try:
            for start, stop in spans:
                if stop > self._end:
                    self._end = consumer.end_offsets([tp])[tp]
                last = min(stop, self._end)
                if start >= last:
                    continue
                at = self._next
                if not self.continues(start):
                    consumer.seek(tp, start)
                    self.seeks += 1
                    at = start
                self._next = -1  # unknown until the span is read to its end
                self._next = yield from self._span(at, start, last, keep)
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"re-read of {tp.topic}[{tp.partition}] failed: {exc!r}"
            ) from exc
        finally:
            self.last_used = self._clock()

    def _span(
        self, at: int, first: int, last: int, keep: Container[int] | None
    ) -> Generator[Record, None, int]:
        """The records of [first, last), the consumer being at `at` <= first; returns the
        offset it goes on from. Takes no more records than the span can still hold, so none
        past it is consumed unless the partition skips offsets (compaction, markers)."""
        tp, consumer = self._tp, self._consumer
        progress_at = self._clock()
        position = at
        while position < last:
            polled = consumer.poll(timeout_ms=500, max_records=last - position).get(tp, [])
            self.fetched += len(polled)
            for r in polled:
                if first <= r.offset < last and (keep is None or r.offset in keep):
                    yield _record(r)
            now_at = consumer.position(tp)
            if now_at > position:
                position, progress_at = now_at, self._clock()
            elif self._clock() - progress_at > self._stall:
                raise BrokerUnavailable(
                    f"re-read of {tp.topic}[{tp.partition}] stalled at offset {position} "
                    f"(span {first}..{last}) for {self._stall:.0f}s"
                )
        return position

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception as exc:  # closing must never fail the loop
            log.info("closing a re-read consumer failed", error=str(exc))


class RequestReader:
    """`RequestReaderPort` over the request topic: up to two kept-open readers per partition.

    Two jobs of one partition delivered at once (interleaved batch keys) read chunk after
    chunk, in turns: with one reader each turn would seek back and fetch again what the
    other job's turn just read. A second reader (`spares`) is opened when a read cannot go
    on from where the first stopped, so each job reads on from its own; a third job seeks
    the reader used least recently.
    """

    def __init__(
        self,
        topic: str,
        decode: Callable[[bytes], RequestEvent],
        bootstrap: str,
        kafka_extra: Mapping[str, Any],
        stall_timeout_s: float = STALL_TIMEOUT_S,
        idle_close_s: float = IDLE_CLOSE_S,
        clock: Callable[[], float] = time.monotonic,
        open_reader: Callable[..., Any] | None = None,
    ) -> None:
        self._open_reader = open_reader or PartitionReader
        """(topic, partition, bootstrap, extra, stall_timeout_s, clock) → a reader (the
        Kafka client's: `adapters.clients.Backend.partition_reader`)."""
        self._topic = topic
        self._decode = decode
        self._bootstrap = bootstrap
        self._extra = kafka_extra
        self._stall = stall_timeout_s
        self._idle = idle_close_s
        self._clock = clock
        self.readers: dict[int, Any] = {}
        """The first reader of each partition."""
        self.spares: dict[int, Any] = {}
        """The second, opened when a read does not go on from where the first stopped."""

    def _open(self, partition: int) -> Any:
        return self._open_reader(
            self._topic, partition, self._bootstrap, self._extra, self._stall, self._clock
        )

    def _reader(self, partition: int, start: int) -> tuple[dict[int, Any], Any]:
        """The reader for a read from `start`, and the dict it is kept in."""
        first = self.readers.get(partition)
        if first is None:
            first = self.readers[partition] = self._open(partition)
            return self.readers, first
        if first.continues(start):
            return self.readers, first
        spare = self.spares.get(partition)
        if spare is None:
            spare = self.spares[partition] = self._open(partition)
            return self.spares, spare
        if spare.continues(start) or spare.last_used < first.last_used:
            return self.spares, spare
        return self.readers, first

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Original]:
        """Originals for the wanted offsets; offsets no longer retained are simply absent.

        `decode` is the intake's decoder (any request format); a `RegistryUnavailable` from it
        propagates, so the caller retries later instead of answering with DATA_LOSS.
        """
        wanted = set(offsets)
        if not wanted:
            return {}
        spans = read_spans(wanted)
        kept, reader = self._reader(partition, spans[0][0])
        found: dict[int, Original] = {}
        try:
            # Spans, not ranges: a job interleaved with another (every other offset) is one
            # sequential read; the other job's records are dropped here, never held.
            for rec in reader.records(spans, wanted):
                if rec.offset not in wanted:
                    continue
                try:
                    event = self._decode(rec.value or b"")
                except RegistryUnavailable:
                    raise
                except Exception:  # undecodable (or hostile bytes): answered DATA_LOSS
                    event = None
                found[rec.offset] = Original(partition, rec.offset, rec.key, event)
        except BrokerUnavailable:
            # A consumer in an unknown state is not reused.
            kept.pop(partition, None)
            reader.close()
            raise
        return found

    def retain(self, partitions: Collection[int]) -> None:
        now = self._clock()
        for kept in (self.readers, self.spares):
            for p, reader in list(kept.items()):
                if p not in partitions or now - reader.last_used > self._idle:
                    del kept[p]
                    reader.close()

    def close(self) -> None:
        self.retain(())
