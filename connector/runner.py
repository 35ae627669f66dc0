"""The sidecar's loop: consume → batch → record intent → commit → submit → track → produce.

The runner wires and orders; decisions live in the pure core (batcher, watermark,
policy, quota, outcomes) and I/O in the shells (kafka_io, gemini, ledger, replay).
One thread owns the consumer and drives everything, so no state is shared.

Ordering invariants (docs/design.md has the crash table):
1. An offset is committed only after its request is in an acked INTENT or has an
   acked terminal record (dead letter or error result).
2. A job is created only after its INTENT is acked; a recovered INTENT is looked up
   by display name first and adopted if it exists, so no job is created twice.
3. A job's tombstone is written only after its results (or successor INTENTs) are acked.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson
import structlog

from connector import policy
from connector.batcher import Batcher, BatchLimits
from connector.codec import Codec
from connector.config import Settings
from connector.errors import (
    ConnectorError,
    DecodeError,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
)
from connector.gemini import Gemini, JobInput, jsonl_lines, parse_output_file, to_inlined_request
from connector.kafka_io import (
    Admin,
    Producer,
    Record,
    RequestConsumer,
    Sent,
    connect_with_retry,
)
from connector.ledger import Ledger
from connector.outcomes import (
    NO_OUTPUT,
    Original,
    Outgoing,
    correlation_key,
    dead_letter_headers,
    error_results,
    refused,
    result_headers,
    success_results,
)
from connector.quota import Budget, admit, share
from connector.records import (
    EntryState,
    ErrorInfo,
    JobState,
    Kind,
    LedgerEntry,
    OutputItem,
    PendingRequest,
    RequestEvent,
    ResultEvent,
    SealedBatch,
)
from connector.replay import reread
from connector.validation import validate_request
from connector.watermark import Watermark

log = structlog.get_logger("connector")


@dataclass(slots=True)
class Tracked:
    """A live ledger entry plus this process's scheduling state for it."""

    entry: LedgerEntry
    due: float = 0.0
    """Monotonic time of the next submit attempt (INTENT) or poll (SUBMITTED)."""
    tries: int = 0
    lookup: bool = True
    """An INTENT that may already exist remotely (recovered or derived): look it up first."""
    payload: tuple[PendingRequest, ...] | None = None
    """Requests still in memory from sealing, saving a re-read on first submit."""


@dataclass(slots=True)
class PartitionState:
    """What this replica knows about one owned request partition."""

    watermark: Watermark | None = None
    jobs: dict[str, Tracked] = field(default_factory=dict)
    covered: set[int] = field(default_factory=set)
    """Offsets owned by live entries: never batched again."""
    committed: int = -1

    def add(self, t: Tracked) -> None:
        self.jobs[t.entry.job_id] = t
        self.covered.update(t.entry.offsets)

    def remove(self, job_id: str) -> None:
        t = self.jobs.pop(job_id, None)
        if t is not None:
            self.covered.difference_update(t.entry.offsets)


@dataclass(slots=True)
class Stats:
    """Counters for the periodic status line and for tests."""

    consumed: int = 0
    dead_lettered: int = 0
    results_ok: int = 0
    results_error: int = 0
    jobs_created: int = 0
    jobs_adopted: int = 0
    jobs_finished: int = 0
    jobs_resubmitted: int = 0


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
        self._rand = random.Random()
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
        self.owned: dict[int, PartitionState] = {}
        self.total_partitions = 1
        self._paused = False
        self._extra = dict(settings.kafka_extra)

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain and return; safe from any thread or signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        s = self.s
        log.info("starting", endpoint=s.endpoint, settings=s.describe())
        admin: Admin = connect_with_retry(
            lambda: Admin(s.bootstrap_servers, self._extra),
            "admin",
            s.startup_timeout_s,
            self._stop,
        )
        try:
            self.total_partitions = self._prepare_topics(admin)
        finally:
            admin.close()
        self.producer: Producer = connect_with_retry(
            lambda: Producer(s.bootstrap_servers, self._extra),
            "producer",
            s.startup_timeout_s,
            self._stop,
        )
        self.ledger = Ledger(s.ledger, self.codec, self.producer, s.bootstrap_servers, self._extra)
        self.consumer: RequestConsumer = connect_with_retry(
            lambda: RequestConsumer(
                s.request_topic, s.group_id, s.bootstrap_servers, self._extra, max_records=500
            ),
            "consumer",
            s.startup_timeout_s,
            self._stop,
        )
        log.info("running", request_topic=s.request_topic, partitions=self.total_partitions)
        last_status = self.clock()
        try:
            while not self._stop.is_set():
                self.step()
                if self.clock() - last_status >= self.s.status_interval_s:
                    last_status = self.clock()
                    log.info("status", **self.status())
            self._drain()
        finally:
            self.consumer.close()
            self.producer.close()
            log.info("stopped", **self.status())

    def _prepare_topics(self, admin: Admin) -> int:
        s = self.s
        n = admin.ensure_topic(s.request_topic, -1)
        admin.ensure_ledger(s.ledger, n)
        admin.ensure_topic(s.result_topic, n)
        admin.ensure_topic(s.dlq_topic, n)
        retention = admin.topic_config(s.request_topic).get("retention.ms", "-1")
        try:
            retention_h = int(retention) / 3_600_000
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
        jobs = [t.entry for st in self.owned.values() for t in st.jobs.values()]
        return {
            "partitions": sorted(self.owned),
            "open_requests": len(self.batcher),
            "intents": sum(e.state is EntryState.INTENT for e in jobs),
            "submitted": sum(e.state is EntryState.SUBMITTED for e in jobs),
            **asdict(self.stats),
        }

    # -- one iteration -----------------------------------------------------------------

    def step(self) -> None:
        """One pass of the loop; every phase is bounded so polls stay frequent."""
        records = self.consumer.poll(self._poll_timeout())
        rewound = self._apply_rebalance()
        if rewound:
            # Fetched before the rewind: these come again from the committed offset.
            records = [r for r in records if r.partition not in rewound]
        now = self.clock()
        sends: list[Sent] = []
        resolved: dict[int, list[int]] = {}
        sealed: list[SealedBatch] = []
        for rec in records:
            sealed.extend(self._intake(rec, now, sends, resolved))
        sealed.extend(self.batcher.due(now))
        self._record_intents(sealed, sends, resolved)
        self.producer.flush_and_check(sends)
        for p, offsets in resolved.items():
            st = self.owned.get(p)
            if st is not None and st.watermark is not None:
                st.watermark.resolved(offsets)
        self._commit()
        self._submit_due(self.clock())
        self._track_due(self.clock())
        self._backpressure()

    def _poll_timeout(self) -> float:
        now = self.clock()
        wake = [now + 1.0]
        nd = self.batcher.next_due()
        if nd is not None:
            wake.append(nd)
        wake.extend(t.due for st in self.owned.values() for t in st.jobs.values())
        return min(1.0, max(0.0, min(wake) - now))

    # -- partitions --------------------------------------------------------------------

    def _apply_rebalance(self) -> set[int]:
        """Apply queued partition changes; return the partitions assigned (and rewound)."""
        changed = False
        assigned: set[int] = set()
        for kind, partitions in self.consumer.rebalance_events():
            changed = True
            if kind == "revoked":
                for p in partitions:
                    self.batcher.drop_partition(p)
                    self.owned.pop(p, None)
                log.info("partitions revoked", partitions=sorted(partitions))
            else:
                for p in sorted(partitions):
                    self._recover(p)
                assigned |= partitions
                log.info("partitions assigned", partitions=sorted(partitions))
        assigned &= set(self.owned)
        if assigned:
            self.consumer.rewind(assigned)
        if changed:
            self.budget = share(self.project_budget, len(self.owned), self.total_partitions)
        return assigned

    def _recover(self, p: int) -> None:
        """Rebuild partition p from its ledger before any of its records is processed."""
        self.batcher.drop_partition(p)
        st = PartitionState()
        live = self.ledger.load(p)
        now = self.clock()
        sends: list[Sent] = []
        for job_id, entry in live.items():
            # A parent whose successors exist was resubmitted already; only its tombstone is
            # missing (writing the successors again could create a finished one twice).
            if any(other.startswith(job_id + "/") for other in live):
                sends.append(self.ledger.tombstone(entry))
                continue
            st.add(Tracked(entry, due=now, lookup=entry.state is EntryState.INTENT))
        self.producer.flush_and_check(sends)
        self.owned[p] = st
        if st.jobs:
            log.info(
                "recovered jobs from ledger",
                partition=p,
                intents=sum(t.entry.state is EntryState.INTENT for t in st.jobs.values()),
                submitted=sum(t.entry.state is EntryState.SUBMITTED for t in st.jobs.values()),
            )

    # -- intake ------------------------------------------------------------------------

    def _intake(
        self, rec: Record, now: float, sends: list[Sent], resolved: dict[int, list[int]]
    ) -> list[SealedBatch]:
        st = self.owned.get(rec.partition)
        if st is None:
            return []  # fetched before a revocation; the new owner reads it again
        if st.watermark is None:
            st.watermark = Watermark(rec.offset)
        st.watermark.consumed(rec.offset)
        self.stats.consumed += 1
        done = resolved.setdefault(rec.partition, [])
        if rec.offset in st.covered:
            done.append(rec.offset)  # already owned by a live ledger entry
            return []
        try:
            event = self.codec.decode_request(rec.value or b"")
        except DecodeError as exc:
            sends.append(self._dead_letter(rec, "VALUE_CONVERTER", exc))
            done.append(rec.offset)
            return []
        try:
            size, tokens = validate_request(event, self.s.max_request_bytes)
        except InvalidRequest as exc:
            sends.append(self._dead_letter(rec, "VALIDATION", exc))
            sends.append(
                self._send_result(
                    rec.key,
                    refused(
                        event,
                        rec.partition,
                        rec.offset,
                        ErrorInfo(exc.code, exc.status, exc.reason),
                        self.wall_ms(),
                    ),
                )
            )
            done.append(rec.offset)
            return []
        if event.deadline_ms is not None and event.deadline_ms <= self.wall_ms():
            error = ErrorInfo(
                504, "DEADLINE_EXCEEDED", "the request's deadline passed before it was batched"
            )
            sends.append(
                self._send_result(
                    rec.key, refused(event, rec.partition, rec.offset, error, self.wall_ms())
                )
            )
            done.append(rec.offset)
            return []
        return self.batcher.add(PendingRequest(rec.partition, rec.offset, event, size, tokens), now)

    def _dead_letter(self, rec: Record, stage: str, exc: BaseException) -> Sent:
        self.stats.dead_lettered += 1
        log.warning(
            "dead-lettered request",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            stage=stage,
            reason=str(exc),
        )
        headers = dead_letter_headers(
            rec.headers, rec.topic, rec.partition, rec.offset, stage, exc, self.s.group_id
        )
        return self.producer.send(self.s.dlq_topic, rec.value, key=rec.key, headers=headers)

    def _send_result(self, kafka_key: bytes | None, result: ResultEvent) -> Sent:
        if result.status.value == "OK":
            self.stats.results_ok += 1
        else:
            self.stats.results_error += 1
        key = kafka_key if kafka_key is not None else (result.request_id.encode() or None)
        return self.producer.send(
            self.s.result_topic,
            self.codec.encode_result(result),
            key=key,
            headers=result_headers(result, self.s.request_topic),
        )

    def _record_intents(
        self, sealed: Iterable[SealedBatch], sends: list[Sent], resolved: dict[int, list[int]]
    ) -> None:
        now_ms = self.wall_ms()
        for batch in sealed:
            st = self.owned.get(batch.key.partition)
            if st is None:
                continue
            job_id = policy.new_job_id(batch.key.partition, batch.offsets[0], secrets.token_hex(4))
            entry = policy.new_intent(batch, job_id, self.s.group_id, now_ms)
            sends.append(self.ledger.write(entry))
            # Fresh id: no job of this name can exist yet, so no lookup before create.
            st.add(Tracked(entry, due=self.clock(), lookup=False, payload=batch.requests))
            resolved.setdefault(batch.key.partition, []).extend(batch.offsets)

    def _commit(self) -> None:
        offsets: dict[int, int] = {}
        for p, st in self.owned.items():
            if st.watermark is None:
                continue
            c = st.watermark.committable()
            if c > st.committed:
                offsets[p] = c
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as exc:  # a rebalance in progress: the next pass commits again
            log.warning("commit failed; will retry", error=str(exc))
            return
        for p, c in offsets.items():
            if p in self.owned:
                self.owned[p].committed = c

    # -- submit ------------------------------------------------------------------------

    def _live(self) -> Iterator[LedgerEntry]:
        for st in self.owned.values():
            for t in st.jobs.values():
                yield t.entry

    def _submit_due(self, now: float) -> None:
        due = [
            t
            for st in self.owned.values()
            for t in st.jobs.values()
            if t.entry.state is EntryState.INTENT and t.due <= now
        ]
        if not due:
            return
        due.sort(key=lambda t: (-t.entry.key.priority, t.entry.created_ms))
        lookups = {t.entry.display_name for t in due if t.lookup}
        try:
            existing = self.gemini.find_by_display_names(lookups)
        except ProviderError as exc:
            log.warning("job lookup failed; will retry", error=str(exc))
            for t in due:
                self._reschedule(t, now)
            return
        sends: list[Sent] = []
        for t in due:
            if self._stop.is_set() and not self._drain_deadline_ok():
                break
            entry = t.entry
            found = existing.get(entry.display_name) if t.lookup else None
            if found is not None:
                self._mark_submitted(t, found, None, sends, adopted=True)
                continue
            if not admit(entry, self._live(), self.budget):
                t.due = now + 1.0
                continue
            self._create(t, now, sends)
        self.producer.flush_and_check(sends)

    def _drain_deadline_ok(self) -> bool:
        return self.clock() < getattr(self, "_drain_until", float("inf"))

    def _create(self, t: Tracked, now: float, sends: list[Sent]) -> None:
        entry = t.entry
        p = entry.key.partition
        inputs = self._inputs(t)
        if not inputs:
            # Every request is unreadable or unusable: finish the job with error results.
            self._give_up(
                entry,
                ErrorInfo(400, "INVALID_ARGUMENT", "no request of the job could be submitted"),
                None,
            )
            return
        input_file = None
        try:
            if entry.use_file or entry.key.kind is Kind.EMBED:
                input_file = self.gemini.upload_jsonl(jsonl_lines(inputs), entry.display_name)
                name = self.gemini.create(
                    entry.key.model,
                    entry.key.kind,
                    entry.display_name,
                    entry.key.priority,
                    file_name=input_file,
                )
            else:
                inline = []
                for item in inputs:
                    try:
                        inline.append(to_inlined_request(item))
                    except InvalidRequest:
                        continue  # left out; its result explains why (see _explain_missing)
                if not inline:
                    self._give_up(
                        entry,
                        ErrorInfo(400, "INVALID_ARGUMENT", "no request of the job is valid"),
                        None,
                    )
                    return
                name = self.gemini.create(
                    entry.key.model,
                    entry.key.kind,
                    entry.display_name,
                    entry.key.priority,
                    inline=inline,
                )
        except ProviderRejected as exc:
            log.error(
                "job rejected by the provider", job_id=entry.job_id, partition=p, error=str(exc)
            )
            self._cleanup(None, input_file, None)
            self._give_up(entry, ErrorInfo(exc.code or 400, exc.status, str(exc)), None)
            return
        except ProviderError as exc:
            log.warning("job create failed; backing off", job_id=entry.job_id, error=str(exc))
            self._cleanup(None, input_file, None)
            # A 5xx or timeout may hide a job that was created: look it up before trying again.
            # A 429 is a clear refusal.
            t.lookup = exc.code != 429
            self._reschedule(t, now)
            return
        self.stats.jobs_created += 1
        log.info(
            "job created",
            job_id=entry.job_id,
            batch_job=name,
            partition=p,
            model=entry.key.model,
            kind=entry.key.kind.value,
            requests=len(entry.offsets),
            via="file" if input_file else "inline",
            attempt=entry.attempt,
        )
        self._mark_submitted(t, name, input_file, sends, adopted=False)

    def _mark_submitted(
        self, t: Tracked, name: str, input_file: str | None, sends: list[Sent], adopted: bool
    ) -> None:
        if adopted:
            self.stats.jobs_adopted += 1
            log.info("adopted existing job", job_id=t.entry.job_id, batch_job=name)
        t.entry = policy.submitted(t.entry, name, input_file, self.wall_ms())
        t.payload = None
        t.tries = 0
        t.lookup = False
        t.due = self.clock() + self.retry.poll_initial_s
        sends.append(self.ledger.write(t.entry))

    def _reschedule(self, t: Tracked, now: float) -> None:
        t.tries += 1
        t.due = now + 0.5 + policy.backoff_with_jitter(t.tries, 1.0, 60.0, self._rand.random())

    def _originals(self, entry: LedgerEntry) -> dict[int, Original]:
        return reread(
            self.s.request_topic,
            entry.key.partition,
            entry.offsets,
            self.codec,
            self.s.bootstrap_servers,
            self._extra,
        )

    def _inputs(self, t: Tracked) -> list[JobInput]:
        entry = t.entry
        events: list[tuple[int, RequestEvent]] = []
        if t.payload is not None:
            events = [(r.offset, r.event) for r in t.payload]
        else:
            for o in self._originals(entry).values():
                if o.event is not None:  # unreadable ones get DATA_LOSS results at delivery
                    events.append((o.offset, o.event))
        out: list[JobInput] = []
        for offset, ev in events:
            key = correlation_key(offset)
            out.append(
                JobInput(key, orjson.loads(ev.body), {"key": key, "request_id": ev.request_id})
            )
        return out

    # -- track -------------------------------------------------------------------------

    def _track_due(self, now: float) -> None:
        due = [
            t
            for st in self.owned.values()
            for t in list(st.jobs.values())
            if t.entry.state is EntryState.SUBMITTED and t.due <= now
        ]
        for t in due:
            if self._stop.is_set():
                return
            name = t.entry.provider_job
            assert name is not None
            try:
                remote = self.gemini.get(name)
                state = remote.state
            except ProviderRejected as exc:
                if exc.code != 404:
                    log.warning("job poll rejected", batch_job=name, error=str(exc))
                    self._reschedule(t, now)
                    continue
                log.warning("job vanished at the provider; treating as failed", batch_job=name)
                remote, state = None, JobState.FAILED
            except ProviderError as exc:
                log.warning("job poll failed; backing off", batch_job=name, error=str(exc))
                self._reschedule(t, now)
                continue
            if not state.terminal:
                t.tries += 1
                delay = policy.next_poll_delay(t.tries, self.retry)
                t.due = now + delay * (0.8 + 0.4 * self._rand.random())
                continue
            self._finish(t, state, remote)

    def _finish(self, t: Tracked, state: JobState, remote: Any) -> None:
        entry = t.entry
        outcome = policy.on_terminal(entry, state, self.retry, self.wall_ms())
        log.info("job ended", job_id=entry.job_id, batch_job=entry.provider_job, state=state.value)
        if isinstance(outcome, policy.Deliver):
            try:
                outputs = self._outputs(remote)
            except ProviderError as exc:
                log.warning(
                    "fetching results failed; will retry",
                    batch_job=entry.provider_job,
                    error=str(exc),
                )
                self._reschedule(t, self.clock())
                return
            originals = self._originals(entry)
            outgoing = success_results(
                entry, originals, outputs, entry.provider_job, self.wall_ms()
            )
            outgoing = [self._explain_missing(o, originals) for o in outgoing]
            self._deliver(entry, outgoing)
            self._cleanup(
                entry.provider_job, entry.input_file, remote.responses_file if remote else None
            )
        elif isinstance(outcome, policy.Resubmit):
            st = self.owned[entry.key.partition]
            sends = [self.ledger.write(e) for e in outcome.entries if e.job_id not in st.jobs]
            self.producer.flush_and_check(sends)
            self.producer.flush_and_check([self.ledger.tombstone(entry)])
            st.remove(entry.job_id)
            for e in outcome.entries:
                if e.job_id not in st.jobs:
                    # Derived ids are new to the ledger, so no job of that name was ever created.
                    st.add(Tracked(e, due=self.clock(), lookup=False))
            self.stats.jobs_resubmitted += 1
            log.info(
                "job resubmitted",
                job_id=entry.job_id,
                state=state.value,
                successors=[e.job_id for e in outcome.entries],
            )
            self._cleanup(entry.provider_job, entry.input_file, None)
        else:
            self._give_up(entry, outcome.error, entry.provider_job)
            self._cleanup(entry.provider_job, entry.input_file, None)

    def _outputs(self, remote: Any) -> list[OutputItem]:
        if remote.inline is not None:
            return list(remote.inline)
        if remote.responses_file:
            return list(parse_output_file(self.gemini.download(remote.responses_file)))
        return []

    def _explain_missing(self, o: Outgoing, originals: dict[int, Original]) -> Outgoing:
        """A request left out at create (the SDK refused it) gets that reason, not 'no output'."""
        r = o.result
        if r.error != NO_OUTPUT:
            return o
        orig = originals.get(r.source_offset)
        if orig is None or orig.event is None or orig.event.kind is not Kind.GENERATE:
            return o
        key = correlation_key(r.source_offset)
        try:
            to_inlined_request(JobInput(key, orjson.loads(orig.event.body), {"key": key}))
        except InvalidRequest as exc:
            return Outgoing(
                o.kafka_key, replace(r, error=ErrorInfo(exc.code, exc.status, exc.reason))
            )
        return o

    def _deliver(self, entry: LedgerEntry, outgoing: list[Outgoing]) -> None:
        """Results first, acked; then the tombstone. A crash between them repeats results."""
        sends = [self._send_result(o.kafka_key, o.result) for o in outgoing]
        self.producer.flush_and_check(sends)
        self.producer.flush_and_check([self.ledger.tombstone(entry)])
        st = self.owned.get(entry.key.partition)
        if st is not None:
            st.remove(entry.job_id)
        self.stats.jobs_finished += 1
        log.info(
            "results produced",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            ok=sum(o.result.status.value == "OK" for o in outgoing),
            errors=sum(o.result.status.value != "OK" for o in outgoing),
        )

    def _give_up(self, entry: LedgerEntry, error: ErrorInfo, job_name: str | None) -> None:
        originals = self._originals(entry)
        log.warning(
            "job gave up; producing error results", job_id=entry.job_id, error=error.message
        )
        self._deliver(entry, error_results(entry, originals, error, job_name, self.wall_ms()))

    def _cleanup(self, job: str | None, input_file: str | None, output_file: str | None) -> None:
        """Best effort: Gemini deletes files after 48 h anyway; a failure here loses nothing."""
        for what, fn, arg in (
            ("input file", self.gemini.delete_file, input_file),
            ("output file", self.gemini.delete_file, output_file),
            ("job", self.gemini.delete_job, job),
        ):
            if arg is None:
                continue
            try:
                fn(arg)
            except ConnectorError as exc:
                log.info("cleanup failed", what=what, name=arg, error=str(exc))

    # -- flow control and shutdown -------------------------------------------------------

    def _backpressure(self) -> None:
        waiting = sum(
            t.entry.state is EntryState.INTENT
            for st in self.owned.values()
            for t in st.jobs.values()
        )
        should = waiting >= self.s.max_waiting_intents
        if should and not self._paused:
            self.consumer.pause(self.owned)
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
        self._drain_until = self.clock() + self.s.drain_timeout_s
        sends: list[Sent] = []
        resolved: dict[int, list[int]] = {}
        self._record_intents(self.batcher.drain(), sends, resolved)
        self.producer.flush_and_check(sends)
        for p, offsets in resolved.items():
            st = self.owned.get(p)
            if st is not None and st.watermark is not None:
                st.watermark.resolved(offsets)
        self._commit()
        self._submit_due(self.clock())
        log.info("drained", intents_recorded=sum(len(v) for v in resolved.values()))
