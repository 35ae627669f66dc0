"""The sidecar's loop: consume → batch → record intent → commit → submit → track → produce.

The runner wires and orders; decisions live in the pure core (batcher, watermark,
policy, quota, outcomes) and the work with Gemini in the submitter and the tracker.
One thread owns the consumer and drives everything, so no state is shared.

Ordering invariants (docs/design.md has the crash table):
1. An offset is committed only after its request is in an acked INTENT or has an
   acked terminal record (dead letter or error result).
2. A job is created only after its INTENT is acked; a recovered INTENT is looked up
   by display name first and adopted if it exists, so no job is created twice.
3. A job's tombstone is written only after its results (or successor INTENTs) are acked.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import structlog

from connector import policy
from connector.batcher import Batcher, BatchLimits
from connector.codec import Codec
from connector.config import Settings
from connector.context import Context
from connector.errors import DecodeError, InvalidRequest
from connector.gemini import Gemini
from connector.health import HealthServer
from connector.jobs import Partitions, PartitionState, Stats, Tracked
from connector.kafka_io import Admin, Producer, Record, RequestConsumer, Sent, connect_with_retry
from connector.ledger import Ledger
from connector.outcomes import refused
from connector.quota import Budget, share, should_pause
from connector.records import EntryState, ErrorInfo, PendingRequest, SealedBatch
from connector.sink import Sink
from connector.submitter import Submitter
from connector.tracker import Tracker
from connector.validation import validate_request
from connector.watermark import Watermark

log = structlog.get_logger("connector")

Resolved = dict[int, list[int]]
"""Offsets per partition that become durable once this pass's sends are acked."""


class Sidecar:
    """One replica of the sidecar. `run()` blocks; `stop()` asks it to drain and return."""

    def __init__(
        self,
        settings: Settings,
        gemini: Gemini,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.s = settings
        self.gemini = gemini
        self.codec = codec or Codec()
        self.clock = clock
        self.wall_ms = wall_ms
        self.stats = Stats()
        self._stop = threading.Event()
        self.batcher = Batcher(
            BatchLimits(
                max_requests=settings.batch_max_requests,
                max_bytes=settings.batch_max_bytes,
                inline_max_bytes=settings.batch_inline_max_bytes,
                max_wait_s=settings.batch_max_wait_s,
            )
        )
        self.retry = policy.RetryPolicy(
            max_failed_retries=settings.max_failed_retries,
            max_attempts=settings.max_attempts,
            poll_initial_s=settings.poll_initial_s,
            poll_max_s=max(settings.poll_max_s, settings.poll_initial_s),
        )
        self.project_budget = Budget(
            max_jobs=settings.max_jobs, default_tokens=settings.token_budget
        )
        self.budget = self.project_budget
        self.total_partitions = 1
        self.owned = Partitions()
        self.last_pass = clock()
        self.running = False
        self._paused = False
        self._extra = dict(settings.kafka_extra)

    def stop(self) -> None:
        """Ask the loop to drain and return; safe from any thread or signal handler."""
        self._stop.set()

    # -- lifecycle ---------------------------------------------------------------------

    def alive(self) -> bool:
        """The loop completed a pass recently (for a liveness probe)."""
        return self.clock() - self.last_pass < self.s.liveness_timeout_s

    def run(self) -> None:
        s = self.s
        log.info("starting", endpoint=s.endpoint, settings=s.describe())
        health = None
        if s.health_port:
            health = HealthServer(
                s.health_host, s.health_port, self.status, self.alive, lambda: self.running
            ).start()
            log.info("health endpoints", port=health.port, paths=["/healthz", "/readyz", "/status"])
        try:
            self._run()
        finally:
            self.running = False
            if health is not None:
                health.stop()

    def _run(self) -> None:
        s = self.s
        admin: Admin = self._connect(lambda: Admin(s.bootstrap_servers, self._extra), "admin")
        try:
            self.total_partitions = self._prepare_topics(admin)
        finally:
            admin.close()
        producer: Producer = self._connect(
            lambda: Producer(s.bootstrap_servers, self._extra), "producer"
        )
        self.ctx = Context(
            settings=s,
            gemini=self.gemini,
            codec=self.codec,
            producer=producer,
            ledger=Ledger(s.ledger, self.codec, producer, s.bootstrap_servers, self._extra),
            sink=Sink(s, producer, self.codec, self.stats),
            retry=self.retry,
            stats=self.stats,
            clock=self.clock,
            wall_ms=self.wall_ms,
            owned=self.owned,
        )
        self.tracker = Tracker(self.ctx)
        self.submitter = Submitter(self.ctx, self.tracker)
        self.consumer: RequestConsumer = self._connect(
            lambda: RequestConsumer(
                s.request_topic, s.group_id, s.bootstrap_servers, self._extra, max_records=500
            ),
            "consumer",
        )
        log.info("running", request_topic=s.request_topic, partitions=self.total_partitions)
        self.running = True
        last_status = self.clock()
        try:
            while not self._stop.is_set():
                self.step()
                self.last_pass = self.clock()
                if self.clock() - last_status >= s.status_interval_s:
                    last_status = self.clock()
                    log.info("status", **self.status())
            self._drain()
        finally:
            self.consumer.close()
            producer.close()
            log.info("stopped", **self.status())

    def _connect(self, make: Callable[[], Any], what: str) -> Any:
        return connect_with_retry(make, what, self.s.startup_timeout_s, self._stop)

    def _prepare_topics(self, admin: Admin) -> int:
        """Create what is missing; refuse a mismatched ledger; warn on short retention."""
        s = self.s
        n = admin.ensure_topic(s.request_topic, -1)
        admin.ensure_ledger(s.ledger, n)
        admin.ensure_topic(s.result_topic, n)
        admin.ensure_topic(s.dlq_topic, n)
        try:
            retention_h = int(admin.topic_config(s.request_topic).get("retention.ms", "-1")) / 3.6e6
        except ValueError:
            retention_h = -1
        if 0 <= retention_h < s.min_retention_h:
            log.warning(
                "request topic retention is short: jobs re-read requests by offset, so a job "
                "that outlives the retention yields DATA_LOSS error results",
                topic=s.request_topic,
                retention_hours=round(retention_h, 1),
                recommended_hours=s.min_retention_h,
            )
        return n

    def status(self) -> dict[str, Any]:
        return {
            "partitions": sorted(self.owned),
            "open_requests": len(self.batcher),
            "intents": self.owned.count(EntryState.INTENT),
            "submitted": self.owned.count(EntryState.SUBMITTED),
            **asdict(self.stats),
        }

    # -- one pass ----------------------------------------------------------------------

    def step(self) -> None:
        """One pass of the loop; every phase is bounded so polls stay frequent."""
        records = self.consumer.poll(self._poll_timeout())
        rewound = self._apply_rebalance({r.partition for r in records})
        if rewound:
            # Fetched before the rewind: these come again from the committed offset.
            records = [r for r in records if r.partition not in rewound]
        now = self.clock()
        sends: list[Sent] = []
        resolved: Resolved = {}
        sealed: list[SealedBatch] = []
        for rec in records:
            sealed.extend(self._intake(rec, now, sends, resolved))
        sealed.extend(self.batcher.due(now))
        self._record_intents(sealed, sends, resolved)
        self._make_durable(sends, resolved)
        self.submitter.submit_due(self.clock(), self.budget)
        self.tracker.track_due(self.clock(), self._stop.is_set())
        self._backpressure()

    def _poll_timeout(self) -> float:
        now = self.clock()
        wake = [now + 1.0, *(t.due for t in self.ctx.owned.tracked())]
        nd = self.batcher.next_due()
        if nd is not None:
            wake.append(nd)
        return min(1.0, max(0.0, min(wake) - now))

    # -- partitions --------------------------------------------------------------------

    def _apply_rebalance(self, fetched: set[int]) -> set[int]:
        """Apply queued partition changes; return the partitions (re)started, and rewound.

        `fetched` are the partitions of the records just polled: one we hold records of
        but have no state for is treated as newly assigned, never silently skipped.
        """
        owned = self.ctx.owned
        changed = False
        assigned: set[int] = set()
        for kind, partitions in self.consumer.rebalance_events():
            changed = True
            if kind == "revoked":
                for p in partitions:
                    self.batcher.drop_partition(p)
                    owned.pop(p, None)
                log.info("partitions revoked", partitions=sorted(partitions))
            else:
                for p in sorted(partitions):
                    self._recover(p)
                assigned |= partitions
                log.info("partitions assigned", partitions=sorted(partitions))
        stray = fetched - set(owned)
        if stray and (stray := stray & self.consumer.assignment()):
            log.warning(
                "records of a partition without state; recovering it", partitions=sorted(stray)
            )
            for p in sorted(stray):
                self._recover(p)
            assigned |= stray
        assigned &= set(owned)
        if assigned:
            for p, start in self.consumer.rewind(assigned).items():
                owned[p].watermark = Watermark(start)
        if changed:
            self.budget = share(self.project_budget, len(owned), self.total_partitions)
            self._paused = False  # a rebalance resets pauses; the next pass decides again
        return assigned

    def _recover(self, p: int) -> None:
        """Rebuild partition p from its ledger before any of its records is processed."""
        ctx = self.ctx
        self.batcher.drop_partition(p)
        st = PartitionState()
        live = ctx.ledger.load(p)
        now = self.clock()
        sends: list[Sent] = []
        for job_id, entry in live.items():
            # A parent whose successors exist was resubmitted already; only its tombstone is
            # missing (writing the successors again could create a finished one twice).
            if any(other.startswith(job_id + "/") for other in live):
                sends.append(ctx.ledger.tombstone(entry))
                continue
            if entry.state is EntryState.INTENT:
                # The previous owner may have had a create in flight. The SDK sends the client
                # timeout as X-Server-Timeout, so by then that create has landed or died; look
                # the display name up only after it, or the lookup could miss a landing job.
                st.add(Tracked(entry, due=now + self.s.http_timeout_s, lookup=True))
            else:
                st.add(Tracked(entry, due=now, lookup=False))
        ctx.producer.flush_and_check(sends)
        ctx.owned[p] = st
        if st.jobs:
            log.info(
                "recovered jobs from ledger",
                partition=p,
                intents=sum(t.entry.state is EntryState.INTENT for t in st.jobs.values()),
                submitted=sum(t.entry.state is EntryState.SUBMITTED for t in st.jobs.values()),
            )

    # -- intake ------------------------------------------------------------------------

    def _intake(
        self, rec: Record, now: float, sends: list[Sent], resolved: Resolved
    ) -> list[SealedBatch]:
        """Decode, validate and batch one record; anything refused gets its terminal record."""
        st = self.ctx.owned.get(rec.partition)
        if st is None:
            return []  # fetched before a revocation; the new owner reads it again
        if st.watermark is None:
            st.watermark = Watermark(rec.offset)
        if rec.offset <= st.watermark.high:
            return []  # before where this partition (re)started: already handled
        st.watermark.consumed(rec.offset)
        self.stats.consumed += 1
        done = resolved.setdefault(rec.partition, [])
        if rec.offset in st.covered:
            done.append(rec.offset)  # already owned by a live ledger entry
            return []
        sink = self.ctx.sink
        try:
            event = self.codec.decode_request(rec.value or b"")
        except DecodeError as exc:
            sends.append(sink.dead_letter(rec, "VALUE_CONVERTER", exc))
            done.append(rec.offset)
            return []
        error: ErrorInfo | None = None
        try:
            size, tokens = validate_request(event, self.s.max_request_bytes)
        except InvalidRequest as exc:
            sends.append(sink.dead_letter(rec, "VALIDATION", exc))
            error = ErrorInfo(exc.code, exc.status, exc.reason)
        if error is None and event.deadline_ms is not None and event.deadline_ms <= self.wall_ms():
            error = ErrorInfo(504, "DEADLINE_EXCEEDED", "the deadline passed before batching")
        if error is not None:
            result = refused(event, rec.partition, rec.offset, error, self.wall_ms())
            sends.append(sink.result(rec.key, result))
            done.append(rec.offset)
            return []
        return self.batcher.add(PendingRequest(rec.partition, rec.offset, event, size, tokens), now)

    def _record_intents(
        self, sealed: Iterable[SealedBatch], sends: list[Sent], resolved: Resolved
    ) -> None:
        ctx = self.ctx
        now_ms = self.wall_ms()
        for batch in sealed:
            st = ctx.owned.get(batch.key.partition)
            if st is None:
                continue
            job_id = policy.new_job_id(batch.key.partition, batch.offsets[0], secrets.token_hex(4))
            entry = policy.new_intent(batch, job_id, self.s.group_id, now_ms)
            sends.append(ctx.ledger.write(entry))
            # Fresh id: no job of this name can exist yet, so no lookup before create.
            st.add(Tracked(entry, due=self.clock(), lookup=False, payload=batch.requests))
            resolved.setdefault(batch.key.partition, []).extend(batch.offsets)

    def _make_durable(self, sends: list[Sent], resolved: Resolved) -> None:
        """Wait for every ack, then let the watermarks pass those offsets and commit."""
        owned = self.ctx.owned
        self.ctx.producer.flush_and_check(sends)
        for p, offsets in resolved.items():
            st = owned.get(p)
            if st is not None and st.watermark is not None:
                st.watermark.resolved(offsets)
        commits = {
            p: c
            for p, st in owned.items()
            if st.watermark is not None and (c := st.watermark.committable()) > st.committed
        }
        if not commits:
            return
        try:
            self.consumer.commit(commits)
        except Exception as exc:  # a rebalance in progress: the next pass commits again
            log.warning("commit failed; will retry", error=str(exc))
            return
        for p, c in commits.items():
            if p in owned:
                owned[p].committed = c

    # -- flow control and shutdown -------------------------------------------------------

    def _backpressure(self) -> None:
        waiting = self.ctx.owned.count(EntryState.INTENT)
        should = should_pause(waiting, self.s.max_waiting_intents)
        if should and not self._paused:
            self.consumer.pause(self.ctx.owned)
            self._paused = True
            log.warning("paused consumption: too many jobs wait for quota", waiting=waiting)
        elif not should and self._paused:
            self.consumer.resume_all()
            self._paused = False
            log.info("resumed consumption", waiting=waiting)

    def _drain(self) -> None:
        """On stop: record open batches as INTENTs so their offsets commit.

        Running jobs stay in the ledger for the next owner of their partition.
        """
        deadline = self.clock() + self.s.drain_timeout_s
        sends: list[Sent] = []
        resolved: Resolved = {}
        self._record_intents(self.batcher.drain(), sends, resolved)
        self._make_durable(sends, resolved)
        self.submitter.submit_due(self.clock(), self.budget, deadline)
        log.info("drained", intents_recorded=sum(len(v) for v in resolved.values()))
