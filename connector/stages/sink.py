"""The producer side: results and dead letters, encoded and keyed as the contract says.

Every record the sink sends fits the topic it goes to: the limits are read from the
topics at start (`Limits`), a result too large becomes an error result for its request,
and a dead letter too large is truncated with a header saying so. A record the broker
still refuses as too large (`RecordTooLarge`) is answered the same way by
`flush_and_check` and, in exactly-once mode, by `commit_transaction` (which sends the
aborted transaction's records again with the fallbacks); any other failed send still stops
the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import structlog

from connector.config import Settings
from connector.core.codec import Codec
from connector.core.formats import Format, ResultEncoder
from connector.core.observe import Observer
from connector.core.partitioner import partition_for
from connector.core.partitions import Stats
from connector.core.ports import (
    ConsumerPort,
    ProducerPort,
    SendHandle,
    TransactionalProducerPort,
)
from connector.core.pricing import load_price_table
from connector.core.records import (
    ErrorInfo,
    Headers,
    Record,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.core.results import Outgoing, dead_letter_headers, result_headers
from connector.errors import ProduceFailed, RecordTooLarge
from connector.redact import redact

log = structlog.get_logger("connector")
_MAX_UNPRICED_WARNINGS = 256
"""Models warned about; past this many the counter alone tells (bounded memory)."""

KAFKA_DEFAULT_LIMIT = 1_048_576
"""The producer's default max_request_size, below the broker's default max.message.bytes."""
TRUNCATED = "__connect.errors.truncated"
"""Dead-letter header: the original value's size in bytes, when the value was cut to fit."""
HEADERS_DROPPED = "__connect.errors.headers.dropped"
"""Dead-letter header: how many of the original record's headers were left out to fit."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Largest record (bytes, as the producer estimates it) each output topic accepts."""

    result_bytes: int = KAFKA_DEFAULT_LIMIT
    dlq_bytes: int = KAFKA_DEFAULT_LIMIT
    result_partitions: int = 0
    """Partitions of the results topic (0: unknown, the client places keyed results)."""


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """An upper bound of the record's size in a batch (kafka-python's estimate plus slack)."""
    size = 61 + 21 + len(key or b"") + len(value or b"")  # v2 batch header, record varints
    return size + sum(len(k.encode()) + len(v) + 10 for k, v in headers)


HEADROOM = 512
"""Bytes a result's key, headers and batch overhead can add to its value without the exact
size being needed (request ids and job names are far shorter): below `limit - HEADROOM`
the size guard is one comparison."""


@dataclass(slots=True)
class _Chunk:
    """The send handles of a chunk of results, checked together, with what to send instead
    of any one the broker refuses as too large."""

    handles: list[SendHandle]
    fallback: Callable[[int], SendHandle]

    def ok(self) -> bool:
        return all(h.ok() for h in self.handles)

    def error(self) -> BaseException | None:
        for h in self.handles:
            if not h.ok():
                return h.error()
        return None


@dataclass(slots=True)
class _Guarded:
    """A send handle plus what to send instead if the broker refuses it as too large."""

    handle: SendHandle
    fallback: Callable[[], SendHandle]

    def ok(self) -> bool:
        return self.handle.ok()

    def error(self) -> BaseException | None:
        return self.handle.error()


class Sink:
    """Sends results (keyed by the request's Kafka key) and dead letters (the original record)."""

    def __init__(
        self,
        settings: Settings,
        producer: ProducerPort,
        codec: Codec,
        stats: Stats,
        encoder: ResultEncoder | None = None,
        obs: Observer | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._s = settings
        self._producer = producer
        self._codec = codec
        self._stats = stats
        self._encode = (encoder or ResultEncoder(Format.SINGLE_OBJECT, codec)).encode
        self._prices = load_price_table(settings.price_table)
        self._unpriced: set[str] = set()
        self._obs = obs or Observer()
        self.limits = limits or Limits()

    # -- results -------------------------------------------------------------------------

    def price(self, model: str, usage: TokenUsage) -> float | None:
        """The batch cost of `usage`, for a result as it is built (None: the model has no
        price, which `results` warns of when it sends the result)."""
        return self._prices.batch_usd(model, usage)

    def _warn_unpriced(self, model: str) -> None:
        """Once per model: its results go out without cost_usd (connector_unpriced_results
        counts them), and guessing from a similar model's row could be off by 10x."""
        name = model.removeprefix("models/")
        if name in self._unpriced or len(self._unpriced) >= _MAX_UNPRICED_WARNINGS:
            return
        self._unpriced.add(name)
        log.warning(
            "model has no price: its results carry no cost_usd",
            model=name,
            hint="add it to a CONNECTOR_PRICE_TABLE file (see connector/data/prices.json)",
        )

    def results(
        self, outgoing: Sequence[Outgoing], producer: ProducerPort | None = None
    ) -> SendHandle:
        """A chunk of results, sent as `result` sends each, with the per-chunk work done
        once: stats and metrics counted for the chunk, one handle for its acks, the size
        guard a comparison unless a value comes near the limit, and each record's
        partition computed here (murmur2, the client's placement) so the client's own
        partitioner does not run per record. `producer`: another than the sink's (the
        transactional one, so the chunk commits with its delivery cursor)."""
        via = producer or self._producer
        prices, encode, send = self._prices, self._encode, via.send
        topic, source = self._s.result_topic, self._s.request_topic
        limit = self.limits.result_bytes
        near = limit - HEADROOM
        n = self.limits.result_partitions
        handles: list[SendHandle] = []
        sent: list[tuple[bytes | None, ResultEvent]] = []
        ok = 0
        for o in outgoing:
            result = o.result
            if result.usage is not None and result.cost_usd is None:
                cost = prices.batch_usd(result.model, result.usage)
                if cost is None:
                    self._warn_unpriced(result.model)
                else:
                    result = replace(result, cost_usd=cost)
            if result.error is not None:
                result = replace(
                    result, error=replace(result.error, message=redact(result.error.message))
                )
            else:
                ok += result.status is ResultStatus.OK
            key = o.kafka_key if o.kafka_key is not None else (result.request_id.encode() or None)
            value = encode(result)
            headers = result_headers(result, source)
            if len(value) > near:
                size = record_size(key, value, headers)
                if size > limit:
                    result = self._too_large(result, size)
                    value = encode(result)
                    headers = result_headers(result, source)
            partition = partition_for(key, n) if key is not None and n else None
            handles.append(send(topic, value, key=key, headers=headers, partition=partition))
            sent.append((key, result))
        self._obs.result_chunk([r for _, r in sent])
        self._stats.results_ok += ok
        self._stats.results_error += len(sent) - ok

        def fallback(i: int) -> SendHandle:
            return self._resend_small(*sent[i], producer=via)

        return _Chunk(handles, fallback)

    def result(self, kafka_key: bytes | None, result: ResultEvent) -> SendHandle:
        if result.usage is not None and result.cost_usd is None:
            cost = self._prices.batch_usd(result.model, result.usage)
            if cost is None:
                self._warn_unpriced(result.model)
            else:
                result = replace(result, cost_usd=cost)
        if result.error is not None:  # provider and transport messages may quote URLs
            result = replace(
                result, error=replace(result.error, message=redact(result.error.message))
            )
        key = kafka_key if kafka_key is not None else (result.request_id.encode() or None)
        value = self._encode(result)
        headers = result_headers(result, self._s.request_topic)
        size = record_size(key, value, headers)
        if size > self.limits.result_bytes:
            result = self._too_large(result, size)
            value = self._encode(result)
            headers = result_headers(result, self._s.request_topic)
        self._obs.result(result)
        self._count(result)
        n = self.limits.result_partitions
        partition = partition_for(key, n) if key is not None and n else None
        handle = self._producer.send(
            self._s.result_topic, value, key=key, headers=headers, partition=partition
        )
        return _Guarded(handle, lambda: self._resend_small(key, result))

    def _count(self, result: ResultEvent) -> None:
        if result.status is ResultStatus.OK:
            self._stats.results_ok += 1
        else:
            self._stats.results_error += 1

    def _too_large(self, result: ResultEvent, size: int) -> ResultEvent:
        """The error result for a request whose result does not fit the results topic."""
        limit = self.limits.result_bytes
        self._stats.results_too_large += 1
        log.error(
            "result too large for the results topic; producing an error result instead",
            request_id=result.request_id,
            batch_job=result.batch_job,
            size=size,
            limit=limit,
            topic=self._s.result_topic,
        )
        error = ErrorInfo(
            413,
            "FAILED_PRECONDITION",
            f"the result is {size} bytes, over the {limit} bytes the results topic "
            f"{self._s.result_topic!r} accepts (min of its max.message.bytes and the "
            "producer's max_request_size); the response was dropped. Raise the topic's "
            "max.message.bytes or ask for a smaller output",
        )
        return replace(
            result, status=ResultStatus.ERROR, response_json=None, usage=None, error=error
        )

    def _resend_small(
        self, key: bytes | None, result: ResultEvent, producer: ProducerPort | None = None
    ) -> SendHandle:
        """The broker refused `result` as too large (its limit is below what we read)."""
        small = self._too_large(result, len(self._encode(result)))
        value = self._encode(small)
        headers = result_headers(small, self._s.request_topic)
        n = self.limits.result_partitions
        partition = partition_for(key, n) if key is not None and n else None
        return (producer or self._producer).send(
            self._s.result_topic, value, key=key, headers=headers, partition=partition
        )

    # -- dead letters --------------------------------------------------------------------

    def dead_letter(self, rec: Record, stage: str, exc: BaseException) -> SendHandle:
        self._stats.dead_lettered += 1
        self._obs.dead_letter(stage)
        log.warning(
            "dead-lettered request",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            stage=stage,
            reason=str(exc),
        )
        provenance = dead_letter_headers(
            [], rec.topic, rec.partition, rec.offset, stage, exc, self._s.group_id
        )
        value, headers = self._fit_dead_letter(rec, provenance, self.limits.dlq_bytes)
        handle = self._producer.send(self._s.dlq_topic, value, key=rec.key, headers=headers)

        def emptied() -> SendHandle:
            value, headers = self._fit_dead_letter(rec, provenance, 0)
            return self._producer.send(self._s.dlq_topic, value, key=rec.key, headers=headers)

        return _Guarded(handle, emptied)

    def _fit_dead_letter(
        self, rec: Record, provenance: Headers, limit: int
    ) -> tuple[bytes | None, Headers]:
        """The original value and headers plus provenance; cut down to `limit` if needed.

        First the original headers go (counted in a header), then the value is cut to what
        fits (its original size in a header). Provenance always stays: it says where the
        whole record still is.
        """
        headers = [*rec.headers, *provenance]
        if record_size(rec.key, rec.value, headers) <= limit:
            return rec.value, headers
        headers = [*provenance, (HEADERS_DROPPED, str(len(rec.headers)).encode())]
        if record_size(rec.key, rec.value, headers) <= limit:
            return rec.value, headers
        original = len(rec.value or b"")
        headers.append((TRUNCATED, str(original).encode()))
        room = max(0, limit - record_size(rec.key, b"", headers))
        log.error(
            "dead letter too large for the dead-letter topic; value truncated",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            size=original,
            kept=min(room, original),
            limit=limit,
        )
        self._stats.dead_letters_truncated += 1
        return (rec.value or b"")[:room], headers

    # -- acks ----------------------------------------------------------------------------

    def flush_and_check(self, sent: Sequence[SendHandle], timeout_s: float = 60.0) -> None:
        """Block until every send is acked. A record refused as too large is replaced by its
        fallback (an error result, an emptied dead letter) and that is acked instead; any
        other failure raises `ProduceFailed`, so nothing unacked is committed."""
        try:
            self._producer.flush_and_check(sent, timeout_s)
            return
        except ProduceFailed:
            pass
        again: list[SendHandle] = []
        for h in sent:
            if h.ok():
                continue
            if isinstance(h, _Chunk):
                for i, part in enumerate(h.handles):
                    if not part.ok():
                        again.append(_refused(part.error(), partial(h.fallback, i)))
                continue
            err = h.error()
            if not isinstance(h, _Guarded):
                raise ProduceFailed(f"produce failed: {err!r}")
            again.append(_refused(err, h.fallback))
        self._producer.flush_and_check(again, timeout_s)

    def commit_transaction(
        self,
        txn: TransactionalProducerPort,
        sent: Sequence[SendHandle],
        offsets: Mapping[int, int],
        consumer: ConsumerPort,
    ) -> None:
        """`txn.commit_transaction`, with the 413 fallback of `flush_and_check`.

        A record the broker refuses as too large aborts the whole transaction: every record
        of it is sent again in a new one, the refused ones as their fallback (an error
        result, an emptied dead letter), and that is committed. Any other failure raises.
        """
        for _ in range(len(sent) + 1):  # each round replaces at least one record
            try:
                txn.commit_transaction(sent, offsets, consumer)
                return
            except ProduceFailed:
                # Records with a fallback: a guarded one, or any record of a chunk.
                parts = [
                    (p, True) if isinstance(h, _Chunk) else (h, isinstance(h, _Guarded))
                    for h in sent
                    for p in (h.handles if isinstance(h, _Chunk) else [h])
                ]
                refused = [
                    (h, has_fallback)
                    for h, has_fallback in parts
                    if not h.ok() and isinstance(h.error(), RecordTooLarge)
                ]
                if not refused or not all(has_fallback for _, has_fallback in refused):
                    raise
                for h, _ in refused:
                    log.error(
                        "record refused as too large; sending its fallback", error=str(h.error())
                    )
                sent = [self._again(txn, h) for h in sent]
        raise ProduceFailed("records kept being refused as too large")  # pragma: no cover

    @staticmethod
    def _again(txn: TransactionalProducerPort, h: SendHandle) -> SendHandle:
        """`h` sent again after its transaction aborted: its fallback if it was refused as
        too large, else the same record (a chunk: each of its records so)."""
        if isinstance(h, _Chunk):
            return _Chunk(
                [
                    h.fallback(i) if isinstance(part.error(), RecordTooLarge) else txn.resend(part)
                    for i, part in enumerate(h.handles)
                ],
                h.fallback,
            )
        if isinstance(h, _Guarded):
            if isinstance(h.error(), RecordTooLarge):
                return h.fallback()
            return _Guarded(txn.resend(h.handle), h.fallback)
        return txn.resend(h)


def _refused(err: BaseException | None, fallback: Callable[[], SendHandle]) -> SendHandle:
    """The fallback of a record the broker refused as too large; any other failure raises."""
    if not isinstance(err, RecordTooLarge):
        raise ProduceFailed(f"produce failed: {err!r}")
    log.error("record refused as too large; sending its fallback", error=str(err))
    return fallback()
