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
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import structlog

from connector.core import lifecycle, policy
from connector.core.offsets import Offsets
from connector.core.partitions import Tracked
from connector.core.ports import ProducerPort, SendHandle
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
        self.reads: dict[str, _Read] = {}
        """Jobs being read off the loop thread (`ctx.reads`), by job id."""
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
                break
            self.guarded(t, "track", partial(self._track, t, now))
        if not stopping:
            self.retry_cleanups(ctx.clock())  # the deletes of the jobs this pass ended

    def guarded(self, t: Tracked, stage: str, fn: Callable[[], T]) -> T | None:
        """Run one job's step; an unexpected exception counts against that job only.

        Kafka failures are not the job's fault: they propagate to the loop, which backs off.
        Anything else (a bug, a response we cannot handle) is retried with backoff and, at
        the QUARANTINE_AFTER-th failure, the job is quarantined: error results, then its end.
        """
        try:
            with self.ctx.unit():  # a failure aborts what the step sent (exactly-once)
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
        self.apply(entry, lifecycle.Quarantine(error))

    def _track(self, t: Tracked, now: float) -> None:
        ctx = self.ctx
        if t.entry.job_id in self.deliveries:
            self._deliver_chunk(t)
            return
        name = t.entry.provider_job
        assert name is not None
        remote: RemoteJob | None
        try:
            remote = self._read(t, name)
            if remote is None:
                return  # being read off the loop thread: looked at again shortly
            state = remote.state
        except ProviderRejected as exc:
            ctx.provider_answered(exc)
            if exc.code != 404 or isinstance(exc, ProviderAuthFailed):
                log.warning("job poll rejected", batch_job=name, error=str(exc))
                ctx.reschedule(t, now)
                return
            self._vanished(t)
            return
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

    def _read(self, t: Tracked, name: str) -> RemoteJob | None:
        """The job as Gemini has it: read now, or with `ctx.reads` off the loop thread and
        picked up by a later pass (None until then; a failed read raises here, as if now).

        A read is used only for the entry it was started for. One changed meanwhile (a
        cancel, a delivery cursor, a take-over that loaded it again) is read afresh, so the
        answer is never older than what this replica did to the job since: the same as a
        slow read on the loop thread, never an answer from before a later step.
        """
        ctx = self.ctx
        if ctx.reads is None:
            return ctx.gemini.get(name)
        job_id = t.entry.job_id
        r = self.reads.get(job_id)
        if r is None or r.entry != t.entry:
            self.reads[job_id] = _Read(t.entry, ctx.reads.submit(ctx.gemini.get, name))
            t.due = ctx.clock() + policy.FETCH_CHECK_S
            return None
        if not r.future.done():
            t.due = ctx.clock() + policy.FETCH_CHECK_S
            return None
        del self.reads[job_id]
        return r.future.result()

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
        ctx = self.ctx
        if ctx.txn is not None and ctx.consumer is not None:
            ctx.prove_ownership([t.entry.key.partition])  # a cancel, like a create or delete
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
        """The job ended at the provider in `state` (see `core.lifecycle`)."""
        ctx = self.ctx
        entry = t.entry
        tr = lifecycle.transition(entry, lifecycle.Polled(state), ctx.retry, ctx.wall_ms())
        outcome = next((a for a in tr.actions if isinstance(a, lifecycle.Deliver)), None)
        if outcome is not None and outcome.error is None and not self._room_for_results(t, remote):
            return  # the next poll reads the job again and looks for room again
        kind = "resubmit" if outcome is None else "deliver" if outcome.error is None else "giveup"
        ctx.obs.job_ended(entry, state, kind)
        self.apply(entry, lifecycle.Polled(state), tr, remote)

    def _vanished(self, t: Tracked) -> None:
        """404 for a job the entry says exists: another replica may have ended it (then
        deleted it) while this one was stalled. The ledger decides: read again, an entry
        ended or gone is forgotten here, one moved on is followed, and only the very entry
        this replica holds is retried (FAILED), for its undelivered requests only."""
        entry = t.entry
        now_ledger = self.ctx.ledger.load(entry.key.partition).get(entry.job_id)
        log.warning(
            "job vanished at the provider; the ledger decides",
            batch_job=entry.provider_job,
            job_id=entry.job_id,
            ledger=None if now_ledger is None else now_ledger.state.value,
        )
        self.apply(entry, lifecycle.NotFound(now_ledger))

    def apply(
        self,
        entry: LedgerEntry,
        event: lifecycle.Event,
        tr: lifecycle.Transition | None = None,
        remote: RemoteJob | None = None,
    ) -> lifecycle.Transition:
        """Carry out what `event` does to the job (`core.lifecycle.transition`), in order:
        answers acked before the end, successors before their parent's record, provider
        deletes and cancels only after a proof of ownership."""
        ctx = self.ctx
        if tr is None:
            tr = lifecycle.transition(entry, event, ctx.retry, ctx.wall_ms())
        p = entry.key.partition
        eos = ctx.settings.exactly_once
        # At-least-once, a resubmission's ledger writes (successor INTENTs, the parent's
        # tombstone or DONE remnant) are fenced like a claim: a replica the group dropped
        # while it polled the job, resuming after the new owner resubmitted, delivered and
        # tombstoned the successor, would write it back to be created again (sim seeds
        # 2852, 50900: `j/r1` created twice).
        fenced = not eos and ctx.txn is not None and ctx.consumer is not None
        st = ctx.owned.get(p)
        pending: list[SendHandle] = []
        for i, a in enumerate(tr.actions):
            match a:
                case lifecycle.Answer(offsets=offsets, error=error):
                    quarantine = isinstance(event, lifecycle.Quarantine)
                    pending += self._answer(entry, offsets, error, eos, by_offset=quarantine)
                case lifecycle.Deliver(error=error):
                    self._start_delivery(entry, remote, error)
                case lifecycle.Write(entries=es):
                    if successors := [e.job_id for e in es if e.state is EntryState.INTENT]:
                        ctx.stats.jobs_resubmitted += 1
                        log.info("job resubmitted", job_id=entry.job_id, successors=successors)
                    live = st.jobs if st is not None else {}
                    new = [e for e in es if e.job_id not in live or e.job_id == entry.job_id]
                    if fenced:  # answers acked first, then successors before their parent
                        ctx.commit(pending, [p])
                        pending = []
                        ctx.prove_ownership([p], [ctx.ledger.write(e, ctx.txn) for e in new])
                    else:
                        pending += [ctx.ledger.write(e) for e in new]
                        if not eos:  # successors acked before their parent's record
                            ctx.commit(pending, [p])
                            pending = []
                    if st is not None:
                        for e in new:
                            st.remove(e.job_id)
                            # New to the ledger (a job is created only after its INTENT is
                            # acked): no job of this name can exist, so no lookup.
                            due = float("inf") if e.state is EntryState.DONE else ctx.clock()
                            st.add(Tracked(e, due=due, lookup=False))
                case lifecycle.Tombstone(entry=gone):
                    if fenced:
                        ctx.commit(pending, [p])
                        ctx.prove_ownership([p], [ctx.ledger.tombstone(gone, ctx.txn)])
                    else:
                        ctx.commit([*pending, ctx.ledger.tombstone(gone)], [p])
                    pending = []
                    ctx.owned.remove_job(gone)
                case lifecycle.End(entry=done, keep=keep):
                    self.end(done, pending, keep)
                    pending = []
                case lifecycle.Delete(job=job, input_file=input_file):
                    self.cleanup(job, input_file, None, partition=p)
                case lifecycle.Forget():
                    ctx.owned.remove_job(entry)
                    if tr.entry is not None and st is not None:  # a DONE entry still covers
                        st.add(Tracked(tr.entry, due=float("inf"), lookup=False))
                case lifecycle.Prove(partition=q):
                    nxt = tr.actions[i + 1] if i + 1 < len(tr.actions) else None
                    if isinstance(nxt, lifecycle.Deliver | lifecycle.Write) and not eos:
                        # Before the first answer or successor: a replica the group dropped
                        # stops here (exactly-once: each transaction is fenced anyway).
                        self._prove([q])
                    # Deletes prove ownership when they run; cancels are the controller's.
                case lifecycle.Cancel():
                    pass
        if pending:
            ctx.commit(pending, [p])
        if (
            tr.entry is not None
            and tr.entry.state is not EntryState.DONE
            and st is not None
            and (t := st.jobs.get(entry.job_id)) is not None
            and not tr.actions
        ):
            t.entry = tr.entry  # moved on elsewhere (a 404's re-read): go on from there
            t.due = ctx.clock()
        return tr

    def _prove(self, partitions: list[int]) -> None:
        if self.ctx.txn is not None and self.ctx.consumer is not None:
            self.ctx.prove_ownership(partitions)

    def _answer(
        self, entry: LedgerEntry, offsets: Offsets, error: ErrorInfo, eos: bool, by_offset: bool
    ) -> list[SendHandle]:
        """Error results for exactly `offsets`, a bounded chunk at a time; acked at once
        (at-least-once) or returned to go with the job's end (exactly-once). `by_offset` (a
        quarantine: the requests themselves may be what fails): requests that cannot even be
        read are answered by offset. Otherwise a failed re-read raises, the unit of work is
        aborted and the job step retried (quarantined at the third failure), so a transient
        failure never answers with results that carry no request id."""
        ctx = self.ctx
        p = entry.key.partition
        pending: list[SendHandle] = []
        st = ctx.owned.get(p)
        t = st.jobs.get(entry.job_id) if st is not None else None
        if t is not None and t.entry != entry:
            t = None  # not the tracked entry: its answers go with the end, as before
        last = offsets[-1] if offsets else None
        for chunk in chunks(offsets, self.chunk_requests):
            try:
                originals = ctx.reader.read(p, chunk)
                outgoing = error_results(
                    entry, originals, error, entry.provider_job, ctx.wall_ms(), chunk
                )
            except KafkaError:
                raise
            except Exception:
                if not by_offset:
                    raise
                outgoing = [
                    Outgoing(None, lost_request(entry, o, ctx.wall_ms(), entry.provider_job, error))
                    for o in chunk
                ]
            sent = self.send(entry, outgoing)
            if not eos:
                ctx.commit(sent, [p])
            elif t is not None and chunk[-1] != last:
                # Exactly-once: each chunk but the last is its own transaction with the entry
                # without it and a DONE entry covering it (`answered`), so no transaction
                # grows with the job and a crash resumes after the last chunk committed.
                self.answered(t, chunk, sent)
            else:
                pending.extend(sent)
        return pending

    def _start_delivery(
        self, entry: LedgerEntry, remote: RemoteJob | None, error: ErrorInfo | None
    ) -> None:
        """Results (or `error` for each) from the cursor on, a chunk per pass."""
        ctx = self.ctx
        if error is None:
            gate = ctx.spool
            d = start_delivery(
                ctx.gemini,
                entry,
                remote,
                self.chunk_requests,
                self.chunk_bytes,
                resume=entry.delivered,
                background=ctx.background,
                open_file=lambda: gate.open("gbc-results-", ctx.settings.spool_results_bytes),
            )
        else:
            log.warning(
                "job gave up; producing error results", job_id=entry.job_id, error=error.message
            )
            d = Delivery(
                entry,
                entry.provider_job,
                lambda: iter(()),
                chunk_requests=self.chunk_requests,
                resume=entry.delivered,
                error=error,
            )
        self.deliveries[entry.job_id] = d
        st = ctx.owned.get(entry.key.partition)
        t = st.jobs.get(entry.job_id) if st is not None else None
        if t is not None:
            self._deliver_chunk(t)

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
        proven = not eos and ctx.txn is not None and ctx.consumer is not None
        p = entry.key.partition
        began = ctx.clock()
        try:
            outgoing = d.next_chunk(ctx.originals, ctx.wall_ms(), ctx.sink.price)
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
            if moved is not None:
                entry = replace(entry, delivered=moved)
            if proven:
                self._deliver_proven(entry, outgoing, moved is not None)
            else:
                sent = self.send(entry, outgoing) if outgoing else []
                if not eos and sent:  # results acked before the cursor past them is sent
                    ctx.commit(sent, [p])
                    sent = []
                if moved is not None:
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
        p = entry.key.partition
        self.cleanup(entry.provider_job, entry.input_file, d.output_file, partition=p)

    def _deliver_proven(self, entry: LedgerEntry, outgoing: list[Outgoing], moved: bool) -> None:
        """At-least-once: a chunk's results and the cursor past them (`entry`) in one
        transaction fenced with the partition's committed offset, as exactly-once does.

        Fenced: a replica the group dropped while it delivered writes no cursor; a plain one
        landed after the new owner delivered and tombstoned the job, and brought it back
        short of its end for the next owner to resubmit the rest (sim seeds 38513, 44249:
        two jobs). One transaction: a crash between the results and their cursor leaves
        neither for a read_committed reader; results acked then a lost cursor met a results
        file gone or a deleted job, and the next owner resubmitted that chunk, answered
        already (sim seed 10421: two jobs). A reader of uncommitted records still sees an
        aborted chunk (duplicate window 1). Any failure aborts what the chunk sent.
        """
        ctx = self.ctx
        assert ctx.txn is not None
        try:
            sent = self.send(entry, outgoing, ctx.txn) if outgoing else []
            if moved:
                sent.append(ctx.ledger.write(entry, ctx.txn))
            if sent:
                ctx.prove_ownership([entry.key.partition], sent, results=True)
        except BaseException:
            ctx.txn.abort_transaction()
            raise

    def _room_for_results(self, t: Tracked, remote: RemoteJob | None) -> bool:
        """Whether a results file (if the job has one) fits in the spool now; if not, the
        job waits, SUCCEEDED at the provider and SUBMITTED in the ledger, and is read again
        when it comes due."""
        if remote is None or remote.inline is not None or not remote.responses_file:
            return True
        ctx = self.ctx
        retry_at = ctx.spool.wait_for_room(
            "results",
            ctx.settings.spool_results_bytes,
            ctx.clock(),
            job_id=t.entry.job_id,
            batch_job=t.entry.provider_job,
        )
        if retry_at is None:
            return True
        t.due = retry_at
        return False

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
            ctx.obs.job_ended(entry, JobState.EXPIRED, "resubmit")
            self.apply(entry, lifecycle.ResultsGone())
        elif isinstance(exc, ProviderError):
            ctx.provider_answered(exc)
            log.warning(
                "fetching results failed; will retry", batch_job=entry.provider_job, error=str(exc)
            )
            ctx.reschedule(t, ctx.clock())  # the next poll reads the job and fetches again
        elif isinstance(exc, OSError):  # the spool filled up meanwhile (ENOSPC), or broke
            log.warning(
                "writing the results file failed; will retry",
                batch_job=entry.provider_job,
                directory=ctx.spool.directory,
                error=str(exc),
            )
            ctx.reschedule(t, ctx.clock())
        else:
            raise exc  # not the provider's answer: counts against the job (`guarded`)

    def _forget_unowned(self) -> None:
        """Drop deliveries of jobs no longer owned (partition revoked) and their temp files;
        close re-read consumers of partitions no longer owned or idle."""
        ctx = self.ctx
        for job_id, d in list(self.deliveries.items()):
            st = ctx.owned.get(d.entry.key.partition)
            t = st.jobs.get(job_id) if st is not None else None
            # Revoked and assigned again, or rebuilt after a Kafka failure, the job goes on
            # where it was only if the ledger still holds the entry it delivers from. Another
            # owner may have delivered chunks meanwhile (the cursor moved on), resubmitted or
            # trimmed the job: then the chunk in hand, from before, was answered already, and
            # a delivery starts again from the entry just loaded (sim seed 52011).
            if t is None or t.entry != d.entry:
                del self.deliveries[job_id]
                d.close()
        for job_id, r in list(self.reads.items()):  # ended, revoked or changed: not wanted
            st = ctx.owned.get(r.entry.key.partition)
            t = st.jobs.get(job_id) if st is not None else None
            if t is None or t.entry != r.entry:
                del self.reads[job_id]
        ctx.reader.retain(ctx.owned.keys())

    def deliver(self, entry: LedgerEntry, outgoing: Iterable[Outgoing]) -> None:
        """Results first, acked; then the job's end. A crash between them repeats results."""
        sent = self.send(entry, outgoing)
        if self.ctx.settings.exactly_once:
            self.end(entry, sent)
        else:
            self.ctx.commit(sent, [entry.key.partition])
            self.end(entry)

    def send(
        self,
        entry: LedgerEntry,
        outgoing: Iterable[Outgoing],
        producer: ProducerPort | None = None,
    ) -> list[SendHandle]:
        """Hand results to the producer (not yet acked: the caller commits them);
        `producer`: the transactional one instead of the sink's."""
        chunk = list(outgoing)
        errors = sum(o.result.error is not None for o in chunk)
        sent = [self.ctx.sink.results(chunk, producer)]  # one handle: acks checked per chunk
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
            if ctx.sidelog is not None:
                spans = [
                    (t.entry.offsets[0], t.entry.offsets.max())
                    for t in st.jobs.values()
                    if t.entry.offsets
                ]
                ctx.sidelog.trim(p, spans, st.committed)
        if sends:
            ctx.commit(sends, touched)

    def give_up(self, entry: LedgerEntry, error: ErrorInfo) -> None:
        """Every request the job has not answered gets `error` as its result, a bounded
        chunk at a time; then its end (`core.lifecycle.GiveUp`)."""
        log.warning(
            "job gave up; producing error results", job_id=entry.job_id, error=error.message
        )
        self.apply(entry, lifecycle.GiveUp(error))

    def answered(self, t: Tracked, offsets: Iterable[int], sent: list[SendHandle]) -> None:
        """`sent` answer `offsets` of `t`'s job before it ends: the entry is written without
        them, and a DONE entry keeps them covered until the commit passes them (a rewind
        must not batch them again). Exactly-once: one transaction with the answers, so a
        crash neither answers them again nor loses them; else the answers first."""
        ctx = self.ctx
        p = t.entry.key.partition
        done_part, rest = policy.answered_part(t.entry, offsets, ctx.wall_ms())
        st = ctx.owned.get(p)
        # Past the committed offset already, no rewind reads them: nothing to cover.
        cover = st is not None and not policy.prunable(done_part, st.committed)
        writes = [*([ctx.ledger.write(done_part)] if cover else []), ctx.ledger.write(rest)]
        if ctx.settings.exactly_once:
            ctx.commit([*sent, *writes], [p])
        else:
            ctx.commit(sent, [p])
            ctx.commit(writes, [p])
        t.entry = rest
        if cover and st is not None:
            st.add(Tracked(done_part, due=float("inf"), lookup=False))

    def cleanup(
        self,
        job: str | None,
        input_file: str | None,
        output_file: str | None,
        partition: int | None = None,
    ) -> None:
        """Best effort: Gemini deletes files after 48 h anyway; a failure here loses nothing.

        Deletes of a job's job and files (`partition` given) need the same proof of ownership
        as creates: they wait for the next `retry_cleanups`, which proves this replica still
        owns their partitions (one transaction) before deleting; a replica the group dropped
        deletes nothing a new owner still polls or delivers from. Files no job uses (an
        orphan upload) go at once. A delete that failed transiently (5xx, 429, timeout, a
        rejected key) is tried again with backoff, `policy.CLEANUP_MAX_ATTEMPTS` times in all.
        """
        now = self.ctx.clock()
        for what, name in (("input file", input_file), ("output file", output_file), ("job", job)):
            if name is None:
                continue
            c = _Cleanup(what, name, partition=partition, due=now)
            if partition is None or self.ctx.txn is None or self.ctx.consumer is None:
                self._delete(c, now)
            elif len(self._cleanups) < policy.CLEANUP_MAX_PENDING:
                self._cleanups.append(c)
            else:
                log.warning("cleanup queue full; left to Gemini's expiry", what=what, name=name)

    def retry_cleanups(self, now: float) -> None:
        """Carry out the queued deletes that are due, after proving ownership of their
        partitions (`Fenced` if the group moved on: they are dropped, never sent)."""
        if not self._cleanups or min(c.due for c in self._cleanups) > now:
            return
        due = [c for c in self._cleanups if c.due <= now]
        self._cleanups = [c for c in self._cleanups if c.due > now]
        owned = self.ctx.owned
        if lost := [c for c in due if c.partition is not None and c.partition not in owned]:
            log.info(
                "deletes dropped: their partitions are no longer owned here",
                names=[c.name for c in lost],
            )
            due = [c for c in due if c not in lost]
        proof = {c.partition for c in due if c.partition is not None}
        if proof and self.ctx.txn is not None and self.ctx.consumer is not None:
            self.ctx.prove_ownership(proof)
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
    partition: int | None = None
    """The request partition whose job this is: deleted only after proving ownership."""


@dataclass(slots=True)
class _Read:
    """A job read (`gemini.get`) running off the loop thread."""

    entry: LedgerEntry
    """The entry it was started for: the answer serves that entry only."""
    future: Future[RemoteJob]
