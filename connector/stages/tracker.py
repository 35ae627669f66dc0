"""The tracker: polls submitted jobs and turns each ending into results or successor jobs.

Order within a job's ending: results (or successor INTENTs) are produced and acked, then
the job's DONE entry (or its tombstone, once the commit is past its offsets). DONE keeps the
offsets covered until the committed offset passes them, so a rewind never batches finished
requests again. A SUCCEEDED job's results go out in bounded chunks, one per pass
(`stages.delivery`), each followed by a delivery cursor in the job's ledger entry (in
exactly-once mode: in the chunk's transaction); a crash repeats at most the chunk whose
cursor was not written (the named duplicate window), and the next owner resumes there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import structlog

from connector.core import policy
from connector.core.partitions import Tracked
from connector.core.ports import SendHandle
from connector.core.records import (
    EntryState,
    ErrorInfo,
    JobState,
    LedgerEntry,
    RemoteJob,
)
from connector.core.results import Outgoing, error_results, lost_request
from connector.core.spans import chunks
from connector.errors import (
    ConnectorError,
    KafkaError,
    ProviderAuthFailed,
    ProviderError,
    ProviderFileGone,
    ProviderRejected,
    ProviderRetryable,
    RegistryUnavailable,
)
from connector.stages.context import Context
from connector.stages.delivery import CHUNK_BYTES, Delivery, start_delivery

log = structlog.get_logger("connector")
T = TypeVar("T")


class Tracker:
    """Polls SUBMITTED jobs with backoff and finishes the ones that ended."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cleanups: list[_Cleanup] = []
        self.deliveries: dict[str, Delivery] = {}
        """Jobs whose results are being produced, chunk by chunk, by job id."""
        self.chunk_requests = ctx.settings.delivery_chunk_requests
        self.chunk_bytes = CHUNK_BYTES

    def track_due(self, now: float, stopping: bool = False, deadline: float = float("inf")) -> None:
        """Poll due jobs; none after `deadline` (the pass budget): they stay due."""
        ctx = self.ctx
        if not stopping:
            self.retry_cleanups(now)
        self._forget_unowned()
        for t in ctx.owned.due(EntryState.SUBMITTED, now):
            if stopping or ctx.clock() >= deadline:
                return
            self.guarded(t, "track", partial(self._track, t, now))

    def guarded(self, t: Tracked, stage: str, fn: Callable[[], T]) -> T | None:
        """Run one job's step; an unexpected exception counts against that job only.

        Kafka failures are not the job's fault: they propagate to the loop, which backs off.
        Anything else (a bug, a response we cannot handle) is retried with backoff and, at
        the QUARANTINE_AFTER-th failure, the job is quarantined: error results, then its end.
        """
        try:
            return fn()
        except KafkaError:
            raise
        except Exception as exc:
            self._failed(t, stage, exc)
            return None

    def _failed(self, t: Tracked, stage: str, exc: Exception) -> None:
        ctx = self.ctx
        t.errors += 1
        log.error(
            "processing a job failed",
            job_id=t.entry.job_id,
            batch_job=t.entry.provider_job,
            stage=stage,
            error=f"{type(exc).__name__}: {exc}",
            attempts=t.errors,
            quarantine_after=policy.QUARANTINE_AFTER,
            exc_info=exc,
        )
        if t.errors < policy.QUARANTINE_AFTER:
            ctx.reschedule(t, ctx.clock())
            return
        self.quarantine(t.entry, stage, exc, t.errors)

    def quarantine(self, entry: LedgerEntry, stage: str, exc: Exception, attempts: int) -> None:
        """Answer every request of a job that keeps failing with INTERNAL, then retire it."""
        ctx = self.ctx
        error = ErrorInfo(
            500,
            "INTERNAL",
            f"job {entry.job_id} was quarantined after {attempts} failed attempts to {stage} "
            f"it: {type(exc).__name__}: {exc}",
        )
        ctx.stats.jobs_quarantined += 1
        log.error(
            "job quarantined; producing error results",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            partition=entry.key.partition,
            requests=len(entry.offsets),
            reason=error.message,
        )
        d = self.deliveries.pop(entry.job_id, None)
        if d is not None:
            d.close()
        try:
            self.give_up(entry, error, entry.provider_job)
        except KafkaError:
            raise
        except Exception:  # the requests themselves may be what fails: answer by offset
            outgoing = [
                Outgoing(None, lost_request(entry, o, ctx.wall_ms(), entry.provider_job, error))
                for o in entry.offsets
            ]
            self.deliver(entry, outgoing)
        self.cleanup(entry.provider_job, entry.input_file, None)

    def _track(self, t: Tracked, now: float) -> None:
        ctx = self.ctx
        if t.entry.job_id in self.deliveries:
            self._deliver_chunk(t)
            return
        name = t.entry.provider_job
        assert name is not None
        remote: RemoteJob | None
        try:
            remote = ctx.gemini.get(name)
            state = remote.state
        except ProviderRejected as exc:
            ctx.provider_answered(exc)
            if exc.code != 404 or isinstance(exc, ProviderAuthFailed):
                log.warning("job poll rejected", batch_job=name, error=str(exc))
                ctx.reschedule(t, now)
                return
            log.warning("job vanished at the provider; treating as failed", batch_job=name)
            remote, state = None, JobState.FAILED
        except ProviderError as exc:
            log.warning("job poll failed; backing off", batch_job=name, error=str(exc))
            ctx.reschedule(t, now)
            return
        if not state.terminal and self._too_old(t):
            cancelled = self._cancel_stuck(t, now)
            if cancelled is None:
                return
            state = cancelled
        elif state is JobState.CANCELLED and self._too_old(t):
            # Our own max-age cancel whose reply was lost, or before a crash: the entry's
            # age, durable in the ledger, says so. Resubmit split, never 499 errors.
            log.warning(
                "job past its maximum age found cancelled; resubmitting as if expired",
                job_id=t.entry.job_id,
                batch_job=name,
                max_age_h=ctx.settings.max_job_age_h,
            )
            state = JobState.EXPIRED
        t.failures = 0  # the provider answered
        ctx.provider_answered()
        if not state.terminal:
            t.polls += 1
            t.due = now + policy.poll_delay(t.polls, ctx.retry, ctx.rand.random())
            return
        self.finish(t, state, remote)

    def _too_old(self, t: Tracked) -> bool:
        max_age_ms = self.ctx.settings.max_job_age_h * 3_600_000
        return 0 < max_age_ms <= self.ctx.wall_ms() - t.entry.updated_ms

    def _cancel_stuck(self, t: Tracked, now: float) -> JobState | None:
        """Cancel a job past CONNECTOR_MAX_JOB_AGE_H and treat it as EXPIRED (split, resubmit).

        Users of batch APIs watch for jobs stuck for a day and recreate them smaller; this
        does it for them, before the provider's own 48 h expiry. None: try again later.
        """
        name = t.entry.provider_job
        assert name is not None
        try:
            self.ctx.gemini.cancel(name)
        except ProviderRejected as exc:
            # Finished meanwhile (cancel refused): the next poll sees its real state.
            log.info("cancel of a stuck job refused", batch_job=name, error=str(exc))
            t.due = now
            return None
        except ProviderError as exc:
            log.warning("cancel of a stuck job failed; backing off", batch_job=name, error=str(exc))
            self.ctx.reschedule(t, now)
            return None
        log.warning(
            "job exceeded its maximum age; cancelled, resubmitting as if expired",
            job_id=t.entry.job_id,
            batch_job=name,
            max_age_h=self.ctx.settings.max_job_age_h,
        )
        return JobState.EXPIRED

    def finish(self, t: Tracked, state: JobState, remote: RemoteJob | None) -> None:
        ctx = self.ctx
        entry = t.entry
        outcome = policy.on_terminal(entry, state, ctx.retry, ctx.wall_ms())
        ctx.obs.job_ended(entry, state, type(outcome).__name__.lower())
        if isinstance(outcome, policy.Deliver):
            self.deliveries[entry.job_id] = start_delivery(
                ctx.gemini,
                entry,
                remote,
                self.chunk_requests,
                self.chunk_bytes,
                resume=entry.delivered,
                background=ctx.background,
            )
            self._deliver_chunk(t)
        elif isinstance(outcome, policy.Resubmit):
            self._resubmit(entry, outcome.entries, state)
            self.cleanup(entry.provider_job, entry.input_file, None)
        else:  # error results a chunk per pass, with a cursor, as a delivery's
            log.warning(
                "job gave up; producing error results",
                job_id=entry.job_id,
                error=outcome.error.message,
            )
            self.deliveries[entry.job_id] = Delivery(
                entry,
                entry.provider_job,
                lambda: iter(()),
                chunk_requests=self.chunk_requests,
                resume=entry.delivered,
                error=outcome.error,
            )
            self._deliver_chunk(t)

    def _resubmit(
        self, entry: LedgerEntry, successors: tuple[LedgerEntry, ...], state: JobState
    ) -> None:
        """Successor INTENTs first (only ids not live yet), acked; then the parent's tombstone."""
        ctx = self.ctx
        st = ctx.owned[entry.key.partition]
        new = [e for e in successors if e.job_id not in st.jobs]
        p = entry.key.partition
        if ctx.settings.exactly_once:  # one transaction: successors and parent's tombstone
            ctx.commit([*(ctx.ledger.write(e) for e in new), ctx.ledger.tombstone(entry)], [p])
        else:
            ctx.commit([ctx.ledger.write(e) for e in new], [p])
            ctx.commit([ctx.ledger.tombstone(entry)], [p])
        st.remove(entry.job_id)
        for e in new:
            # New to the ledger, and a job is only created after its INTENT is acked:
            # no job of this name can exist, so no lookup is needed.
            st.add(Tracked(e, due=ctx.clock(), lookup=False))
        ctx.stats.jobs_resubmitted += 1
        log.info(
            "job resubmitted",
            job_id=entry.job_id,
            state=state.value,
            successors=[e.job_id for e in successors],
        )

    def _deliver_chunk(self, t: Tracked) -> None:
        """Produce the next chunk of a SUCCEEDED job's results; after the last, end the job.

        One chunk per job per pass, so the loop keeps polling while a big job is delivered.
        Each chunk's results are acked, then the job's ledger entry records the delivery
        cursor past them (exactly-once: results and cursor in one transaction), so a crash
        repeats at most the chunk whose cursor was not written (none, exactly-once), and a
        restart resumes from the cursor.
        """
        ctx = self.ctx
        entry = t.entry
        d = self.deliveries[entry.job_id]
        if not d.ready():  # the results file is still downloading, off the loop thread
            t.due = ctx.clock() + policy.FETCH_CHECK_S
            return
        if (failed := d.fetch.exception()) is not None:
            del self.deliveries[entry.job_id]
            d.close()
            self._fetch_failed(t, failed)
            return
        eos = ctx.settings.exactly_once
        p = entry.key.partition
        began = ctx.clock()
        try:
            outgoing = d.next_chunk(ctx.reader.read, ctx.wall_ms())
            sent = self.send(entry, outgoing) if outgoing else []
        except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
            log.warning(
                "re-reading requests failed; will retry", job_id=entry.job_id, error=str(exc)
            )
            ctx.reschedule(t, ctx.clock())  # nothing was sent yet: no transaction to abort
            return
        if outgoing is not None:
            moved = d.cursor_in_hand()
            if moved == entry.delivered:
                moved = None
            if not eos and sent:  # results acked before the cursor past them is even sent
                ctx.commit(sent, [p])
                sent = []
            if moved is not None:
                entry = replace(entry, delivered=moved)
                sent.append(ctx.ledger.write(entry))
            if sent:  # exactly-once: results and cursor in one transaction
                ctx.commit(sent, [p])
            d.acked()
            t.entry = d.entry = entry
            if outgoing:
                d.chunk_requests = policy.next_chunk_size(
                    len(outgoing), ctx.clock() - began, self.chunk_requests
                )
            if not d.finished():
                t.due = ctx.clock()  # the next chunk in the next pass
                return
        del self.deliveries[entry.job_id]
        d.close()
        self.end(entry)
        log.info(
            "job delivered", job_id=entry.job_id, batch_job=entry.provider_job, chunks=d.chunks
        )
        self.cleanup(entry.provider_job, entry.input_file, d.output_file)

    def _fetch_failed(self, t: Tracked, exc: BaseException) -> None:
        """The results file of a SUCCEEDED job could not be downloaded."""
        ctx = self.ctx
        entry = t.entry
        if isinstance(exc, ProviderFileGone):
            # Past the Files API's 48 h TTL (or deleted): waiting will not bring it back.
            log.error(
                "results file of a finished job is gone; resubmitting as if expired",
                job_id=entry.job_id,
                batch_job=entry.provider_job,
                error=str(exc),
            )
            self.finish(t, JobState.EXPIRED, None)
        elif isinstance(exc, ProviderError):
            ctx.provider_answered(exc)
            log.warning(
                "fetching results failed; will retry", batch_job=entry.provider_job, error=str(exc)
            )
            ctx.reschedule(t, ctx.clock())  # the next poll reads the job and fetches again
        else:
            raise exc  # not the provider's answer: counts against the job (`guarded`)

    def _forget_unowned(self) -> None:
        """Drop deliveries of jobs no longer owned (partition revoked) and their temp files;
        close re-read consumers of partitions no longer owned or idle."""
        ctx = self.ctx
        for job_id, d in list(self.deliveries.items()):
            st = ctx.owned.get(d.entry.key.partition)
            t = st.jobs.get(job_id) if st is not None else None
            # Revoked and assigned again in one rebalance, the same job goes on where it was.
            if t is None or t.entry.provider_job != d.entry.provider_job:
                del self.deliveries[job_id]
                d.close()
        ctx.reader.retain(ctx.owned.keys())

    def deliver(self, entry: LedgerEntry, outgoing: Iterable[Outgoing]) -> None:
        """Results first, acked; then the job's end. A crash between them repeats results."""
        sent = self.send(entry, outgoing)
        if self.ctx.settings.exactly_once:
            self.end(entry, sent)
        else:
            self.ctx.commit(sent, [entry.key.partition])
            self.end(entry)

    def send(self, entry: LedgerEntry, outgoing: Iterable[Outgoing]) -> list[SendHandle]:
        """Hand results to the producer (not yet acked: the caller commits them)."""
        chunk = list(outgoing)
        errors = sum(o.result.error is not None for o in chunk)
        sent = [self.ctx.sink.results(chunk)]  # one handle: acks checked per chunk
        log.info(
            "results produced",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            ok=len(chunk) - errors,
            errors=errors,
        )
        return sent

    def end(
        self, entry: LedgerEntry, pending: list[SendHandle] | None = None, keep: bool = False
    ) -> None:
        """The job is finished, every result sent: the one place that records it.

        The entry becomes DONE (or its tombstone, once the commit is past its offsets): while
        an uncommitted offset below the job holds the partition's commit, a rewind would read
        the job's requests again, and DONE keeps them covered until `prune_done`. `pending`
        (exactly-once) are this job's results, committed in the same transaction. `keep`:
        DONE even if prunable (an operator cancel still has to cancel its provider job, and
        a crash before that must leave the job's name in the ledger).
        """
        ctx = self.ctx
        p = entry.key.partition
        st = ctx.owned.get(p)
        finished = policy.done(entry, ctx.wall_ms())
        prune_now = st is None or (not keep and policy.prunable(finished, st.committed))
        record = ctx.ledger.tombstone(entry) if prune_now else ctx.ledger.write(finished)
        ctx.commit([*(pending or []), record], [p])
        if prune_now or st is None:
            ctx.owned.remove_job(entry)
        else:
            st.remove(entry.job_id)
            st.add(Tracked(finished, due=float("inf"), lookup=False))
        ctx.stats.jobs_finished += 1

    def prune_done(self) -> None:
        """Tombstone DONE entries once the committed offset is past them.

        Cheap: a partition is looked at only when its committed offset moved since the last
        prune, and the tombstones of one pass are flushed together.
        """
        ctx = self.ctx
        sends = []
        touched = []
        for p, st in ctx.owned.items():
            if st.committed <= st.pruned:
                continue
            st.pruned = st.committed
            for t in [t for t in st.jobs.values() if policy.prunable(t.entry, st.committed)]:
                sends.append(ctx.ledger.tombstone(t.entry))
                st.remove(t.entry.job_id)
                touched.append(p)
        if sends:
            ctx.commit(sends, touched)

    def give_up(
        self, entry: LedgerEntry, error: ErrorInfo, job_name: str | None, keep: bool = False
    ) -> None:
        """Every request of the job gets `error` as its result, a bounded chunk at a time;
        then `end` (`keep`: DONE even if prunable)."""
        ctx = self.ctx
        log.warning(
            "job gave up; producing error results", job_id=entry.job_id, error=error.message
        )
        eos = ctx.settings.exactly_once
        pending: list[SendHandle] = []
        for offsets in chunks(entry.offsets, self.chunk_requests):
            originals = ctx.reader.read(entry.key.partition, offsets)
            outgoing = error_results(entry, originals, error, job_name, ctx.wall_ms(), offsets)
            sent = self.send(entry, outgoing)
            if eos:
                pending.extend(sent)
            else:
                ctx.commit(sent, [entry.key.partition])
        self.end(entry, pending, keep)

    def cleanup(self, job: str | None, input_file: str | None, output_file: str | None) -> None:
        """Best effort: Gemini deletes files after 48 h anyway; a failure here loses nothing.

        A delete that failed transiently (5xx, 429, timeout, a rejected key) is queued and
        tried again with backoff, `policy.CLEANUP_MAX_ATTEMPTS` times in all.
        """
        now = self.ctx.clock()
        for what, name in (("input file", input_file), ("output file", output_file), ("job", job)):
            if name is not None:
                self._delete(_Cleanup(what, name), now)

    def retry_cleanups(self, now: float) -> None:
        """Try the queued deletes that are due."""
        if not self._cleanups or min(c.due for c in self._cleanups) > now:
            return
        due = [c for c in self._cleanups if c.due <= now]
        self._cleanups = [c for c in self._cleanups if c.due > now]
        for c in due:
            self._delete(c, now)

    def _delete(self, c: _Cleanup, now: float) -> None:
        gemini = self.ctx.gemini
        try:
            if c.what == "job":
                gemini.delete_job(c.name)
            else:
                gemini.delete_file(c.name)
        except (ProviderRetryable, ProviderAuthFailed) as exc:
            c.attempts += 1
            if c.attempts >= policy.CLEANUP_MAX_ATTEMPTS:
                log.warning("cleanup given up", what=c.what, name=c.name, error=str(exc))
            elif len(self._cleanups) >= policy.CLEANUP_MAX_PENDING:
                log.warning("cleanup queue full; left to Gemini's expiry", what=c.what, name=c.name)
            else:
                c.due = now + policy.failure_delay(c.attempts, self.ctx.rand.random())
                self._cleanups.append(c)
                log.info("cleanup failed; will retry", what=c.what, name=c.name, error=str(exc))
        except ConnectorError as exc:  # already gone (404/403) or refused for good
            log.info("cleanup failed", what=c.what, name=c.name, error=str(exc))


@dataclass(slots=True)
class _Cleanup:
    """A delete of a finished job's file or of the job itself, retried after a 5xx."""

    what: str
    name: str
    attempts: int = 0
    due: float = 0.0
