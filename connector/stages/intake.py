"""Intake: decode → validate → deadline → batch each consumed record; seal into INTENTs.

Anything refused gets its terminal record (a dead letter and/or an error result) in the
pass's checkpoint, so its offset commits only once that record is acked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace

import structlog

from connector.config import Settings
from connector.core import policy
from connector.core.batcher import Batcher
from connector.core.codec import Codec
from connector.core.formats import RequestDecoder
from connector.core.partitions import Partitions, Stats, Tracked
from connector.core.ports import ConsumerPort, LedgerPort
from connector.core.records import ErrorInfo, PendingRequest, Record, SealedBatch
from connector.core.results import deadline_passed, late, refused
from connector.core.validation import validate_request
from connector.core.watermark import Watermark
from connector.errors import DecodeError, InvalidRequest, RegistryUnavailable
from connector.stages.checkpoint import Checkpoint
from connector.stages.sidelog import SideLog
from connector.stages.sink import Sink
from connector.stages.step import BaseStep
from connector.stages.unit import PassUnit

log = structlog.get_logger("connector")


class Intake:
    """Turns consumed records into open batches, and sealed batches into ledger INTENTs."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        batcher: Batcher,
        owned: Partitions,
        sink: Sink,
        ledger: LedgerPort,
        stats: Stats,
        clock: Callable[[], float],
        wall_ms: Callable[[], int],
        nonce: Callable[[], str] = lambda: secrets.token_hex(4),
        decoder: RequestDecoder | None = None,
        sidelog: SideLog | None = None,
    ) -> None:
        self.s = settings
        self.codec = codec
        self.batcher = batcher
        self.owned = owned
        self.sink = sink
        self.ledger = ledger
        self.stats = stats
        self.clock = clock
        self.wall_ms = wall_ms
        self.nonce = nonce
        self.decoder = decoder or RequestDecoder(codec)
        self.sidelog = sidelog

    def take(self, rec: Record, now: float, cp: Checkpoint) -> list[SealedBatch]:
        """Decode, validate and batch one record; anything refused gets its terminal record.

        Raises `RegistryUnavailable` before the record counts as consumed: the caller seeks
        back to it and tries again later (a registry outage never dead-letters a record).
        """
        st = self.owned.get(rec.partition)
        if st is None:
            return []  # fetched before a revocation; the new owner reads it again
        if st.watermark is None:
            st.watermark = Watermark(rec.offset)
        if rec.offset <= st.watermark.high:
            return []  # before where this partition (re)started: already handled
        wm = st.watermark
        if rec.offset in st.covered:
            self._consume(rec, wm)
            cp.resolve(rec.partition, rec.offset)  # already owned by a live ledger entry
            return []
        try:
            event = self.decoder.decode(rec.value or b"")
        except RegistryUnavailable:
            raise
        except Exception as exc:  # DecodeError, or a decoder's bug on hostile bytes
            bad = (
                exc if isinstance(exc, DecodeError) else DecodeError(f"{type(exc).__name__}: {exc}")
            )
            self._consume(rec, wm)
            cp.send(self.sink.dead_letter(rec, "VALUE_CONVERTER", bad))
            cp.resolve(rec.partition, rec.offset)
            return []
        self._consume(rec, wm)
        error: ErrorInfo | None = None
        try:
            size, tokens = validate_request(
                event, self.s.max_request_bytes, self.s.allow_project_resources
            )
        except Exception as exc:  # InvalidRequest, or a validator's bug on a hostile event
            invalid = (
                exc
                if isinstance(exc, InvalidRequest)
                else InvalidRequest(f"the request could not be checked: {type(exc).__name__}")
            )
            cp.send(self.sink.dead_letter(rec, "VALIDATION", invalid))
            error = ErrorInfo(invalid.code, invalid.status, invalid.reason)
        if error is None and deadline_passed(event, self.wall_ms()):
            error = late("before batching")
            self.stats.deadline_exceeded += 1
        if error is not None:
            result = refused(event, rec.partition, rec.offset, error, self.wall_ms())
            cp.send(self.sink.result(rec.key, result))
            cp.resolve(rec.partition, rec.offset)
            return []
        pending = PendingRequest(rec.partition, rec.offset, event, size, tokens, rec.key)
        if self.sidelog is not None:
            self.sidelog.append(rec.partition, rec.offset, rec.key, event)
        return self.batcher.add(pending, now)

    def _consume(self, rec: Record, wm: Watermark) -> None:
        """The record counts as read (only once it decoded, or failed to for good)."""
        if rec.offset > wm.high + 1:
            self._gap(rec, wm)
        wm.consumed(rec.offset)
        self.stats.consumed += 1

    def _gap(self, rec: Record, wm: Watermark) -> None:
        """Offsets between the last position and this record were never read: say so.

        After a seek (the committed offset) any gap means records were deleted (retention)
        before they were read, or the consumer was reset after an out-of-range fetch. Within
        a run a gap of one offset is what a transaction marker leaves, so only larger gaps
        are reported there.
        """
        first, last = wm.high + 1, rec.offset - 1
        after_seek = wm.high == wm.start - 1
        if not after_seek and first == last:
            return
        count = last - first + 1
        self.stats.records_lost += count
        log.error(
            "request records were deleted before they were read; they get no result",
            topic=rec.topic,
            partition=rec.partition,
            first_offset=first,
            last_offset=last,
            count=count,
            after_seek=after_seek,
        )

    def record_intents(self, sealed: Iterable[SealedBatch], cp: Checkpoint) -> None:
        """One INTENT per sealed batch; its offsets resolve once the INTENT is acked.

        Requests whose deadline passed while their batch was open get their 504 instead.
        """
        now_ms = self.wall_ms()
        for whole in sealed:
            st = self.owned.get(whole.key.partition)
            if st is None:
                continue
            batch = self._without_late(whole, now_ms, cp)
            if not batch.requests:
                continue
            job_id = policy.new_job_id(batch.key.partition, batch.offsets[0], self.nonce())
            entry = policy.new_intent(batch, job_id, self.s.group_id, now_ms, self.s.request_topic)
            cp.send(self.ledger.write_stamped(entry, st.epoch))  # the only sealing write
            # Fresh id: no job of this name can exist yet, so no lookup before create.
            st.add(Tracked(entry, due=self.clock(), lookup=False, payload=batch.requests))
            cp.resolve_all(batch.key.partition, batch.offsets)

    def _without_late(self, batch: SealedBatch, now_ms: int, cp: Checkpoint) -> SealedBatch:
        gone = [r for r in batch.requests if deadline_passed(r.event, now_ms)]
        if not gone:
            return batch
        for r in gone:
            result = refused(r.event, r.partition, r.offset, late("before its job"), now_ms)
            cp.send(self.sink.result(r.kafka_key, result))
            cp.resolve(r.partition, r.offset)
        self.stats.deadline_exceeded += len(gone)
        keep = tuple(r for r in batch.requests if not deadline_passed(r.event, now_ms))
        return replace(batch, requests=keep, size=sum(r.size for r in keep))


class IntakeStep(BaseStep):
    """Intake as a loop step: takes the pass's records into batches, seals what is due into
    INTENTs in the pass's unit, and holds a partition back while the schema registry is out."""

    name = "intake"

    def __init__(
        self, intake: Intake, consumer: ConsumerPort, unit: PassUnit, rand: Callable[[], float]
    ) -> None:
        self.intake = intake
        self.consumer = consumer
        self.unit = unit
        self.rand = rand
        self.held: dict[int, float] = {}
        """Partitions waiting for the schema registry, and when they try again."""
        self.held_tries: dict[int, int] = {}
        self.recorded = 0
        """INTENTs' offsets the drain recorded (for its log line)."""

    def on_revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.held.pop(p, None)

    def run(self, now: float, deadline: float) -> None:
        cp = self.unit.cp
        sealed: list[SealedBatch] = []
        self.release_held(now)
        for rec in self.unit.records:
            if rec.partition in self.held:
                continue
            try:
                sealed.extend(self.intake.take(rec, now, cp))
            except RegistryUnavailable as exc:
                self.hold(rec.partition, rec.offset, now, exc)
        sealed.extend(self.intake.batcher.due(now))
        self.intake.record_intents(sealed, cp)

    def drain(self, deadline: float) -> None:
        """Record the open batches as INTENTs so their offsets commit."""
        cp = self.unit.cp
        self.intake.record_intents(self.intake.batcher.drain(), cp)
        self.recorded = sum(len(v) for v in cp.resolved.values())

    def hold(self, p: int, offset: int, now: float, exc: Exception) -> None:
        """The registry is out: read p again from `offset` later; nothing is dead-lettered."""
        tries = self.held_tries.get(p, 0) + 1
        self.held_tries[p] = tries
        self.held[p] = now + policy.failure_delay(tries, self.rand())
        self.consumer.seek(p, offset)
        self.consumer.pause([p])
        log.warning(
            "schema registry unavailable; partition waits",
            partition=p,
            offset=offset,
            error=str(exc),
            retry_in_s=round(self.held[p] - now, 1),
        )

    def release_held(self, now: float) -> None:
        due = [p for p, t in self.held.items() if t <= now]
        for p in due:
            del self.held[p]
        if due:
            self.consumer.resume(due)
        for p in set(self.held_tries) - set(self.held) - set(due):
            self.held_tries.pop(p, None)
